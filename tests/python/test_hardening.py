"""Abuse paths closed by the hardening work (docs/operations.md, "Limits"): each test here
fails against a server without the fix it names."""

import json
import uuid

import pytest

from conftest import TRANSPORTS, Peer, start_server, wait_until


@pytest.fixture(scope="module", params=TRANSPORTS)
def pair(request, server):
    alice, bob = server.register("alice"), server.register("bob")
    a = Peer(server, alice, request.param, "alice").connect()
    b = Peer(server, bob, request.param, "bob").connect()
    yield dict(alice=alice, bob=bob, a=a, b=b)
    a.close()
    b.close()


def test_a_long_message_is_refused_and_the_socket_stays_up(pair):
    """100,000 characters: over the content limit, far under the transport's payload limit:
    ERROR VALIDATION_FAILED, and the event sent right after it is answered."""
    a, bob = pair["a"], pair["bob"]
    mark = a.mark()
    a.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": "x" * 100_000, "tempId": "big"})
    after = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "still here", "tempId": "n"})
    assert "dbMessageId" in after, after
    err = a.wait_for("ERROR", lambda e: e.get("tempId") == "big", after=mark)
    assert err["code"] == "VALIDATION_FAILED" and "10000" in err["message"], err
    assert a.connected
    a.health()


def test_the_largest_valid_message_passes_both_transports_and_rest(server, pair):
    """10,000 characters outside the BMP, JSON-escaped as surrogate pairs (what Python's
    json.dumps sends by default): 120 kB on the wire, a valid message."""
    a, bob = pair["a"], pair["bob"]
    content = "\U0001F600" * 10_000
    ack = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": content})
    assert "dbMessageId" in ack, ack
    body = json.dumps({"receiverId": bob.id, "content": content})  # ensure_ascii
    assert len(body) > 120_000
    r = server.http("POST", "/messages", token=pair["alice"].token, data=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:200]
    over = json.dumps({"receiverId": bob.id, "content": content + "!"})
    r = server.http("POST", "/messages", token=pair["alice"].token, data=over,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "10000" in r.json()["message"], r.text[:200]


def test_online_users_is_limited_per_user(pair):
    """GET_ONLINE_USERS could be spammed (each call copied and sorted the whole map)."""
    a = pair["a"]
    for i in range(30):
        answer = a.call("GET_ONLINE_USERS")
        assert "userIds" in answer, f"call {i + 1} of 30: {answer}"
    refused = a.call("GET_ONLINE_USERS")
    assert refused["code"] == "RATE_LIMITED" and refused["event"] == "GET_ONLINE_USERS", refused
    assert "userIds" in pair["b"].call("GET_ONLINE_USERS"), "another user is not affected"
    a.health()


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A server holding at most 3 sockets per user and 5 in all."""
    s = start_server(tmp_path_factory, "capped", MAX_SOCKETS_PER_USER=3, MAX_CONNECTIONS=5)
    yield s
    s.stop()


def _refused(peer) -> str:
    try:
        peer.connect(wait_success=False)
    except Exception:  # python-socketio raises ConnectionError after connect_error
        pass
    assert not peer.connected
    assert peer.connect_errors, "no connect_error"
    data = peer.connect_errors[-1]
    return data.get("message", "") if isinstance(data, dict) else str(data)


def test_sockets_per_user_and_per_node_are_capped_at_connect(capped, transport):
    ada, bob = capped.register("ada"), capped.register("bob")
    peers = []
    try:
        for i in range(3):
            peers.append(Peer(capped, ada, transport, f"ada-{i}").connect())
        fourth = Peer(capped, ada, transport, "ada-3")
        assert "too many connections" in _refused(fourth)
        # The refusal is per user: bob connects, up to the node's 5.
        peers.append(Peer(capped, bob, transport, "bob-0").connect())
        peers.append(Peer(capped, bob, transport, "bob-1").connect())
        sixth = Peer(capped, bob, transport, "bob-2")
        assert "connection limit" in _refused(sixth)
        # A socket that goes frees its place.
        peers.pop(0).close()
        wait_until(lambda: "nexus_sockets_connected 4" in capped.http("GET", "/metrics").text,
                   message="the closed socket is gone")
        peers.append(Peer(capped, ada, transport, "ada-again").connect())
        peers[-1].health()
    finally:
        for p in peers:
            p.close()


def _login(server, user) -> str:
    r = server.http("POST", "/auth/login", json={"email": user.email,
                                                 "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    return r.json()["accessToken"]


def test_a_logout_closes_the_sockets_of_that_token_only(server, transport):
    """FORCE_DISCONNECT {reason: "token_revoked"} to the sockets opened with the token, then
    closed; a socket of another token of the same user stays; the token cannot reconnect."""
    ada = server.register("ada")
    other_token = _login(server, ada)
    revoked = Peer(server, ada, transport, "revoked").connect()
    kept = Peer(server, ada, transport, "kept").connect(token=other_token)
    try:
        r = server.http("POST", "/auth/logout", token=ada.token)
        assert r.status_code == 204, r.text
        assert revoked.wait_for("FORCE_DISCONNECT") == {"reason": "token_revoked"}
        revoked.wait_disconnected()
        kept.assert_none("FORCE_DISCONNECT", within=0.3)
        kept.health()
        again = Peer(server, ada, transport, "again")
        assert "Unauthorized" in _refused(again)
    finally:
        revoked.close()
        kept.close()


def test_a_password_change_closes_every_socket_of_the_user(server, transport):
    ada = server.register("ada")
    a1 = Peer(server, ada, transport, "a1").connect()
    a2 = Peer(server, ada, transport, "a2").connect(token=_login(server, ada))
    try:
        r = server.http("POST", "/auth/password", token=ada.token,
                        json={"currentPassword": "correct horse battery",
                              "newPassword": "staple battery horse"})
        assert r.status_code == 200, r.text
        for p in (a1, a2):
            assert p.wait_for("FORCE_DISCONNECT") == {"reason": "token_revoked"}
            p.wait_disconnected()
        fresh = Peer(server, ada, transport, "fresh").connect(token=r.json()["accessToken"])
        fresh.health()
        fresh.close()
    finally:
        a1.close()
        a2.close()


def test_an_expected_refusal_is_not_an_error_and_file_logs_have_no_colours(tmp_path_factory):
    """A duplicate registration logged `unique constraint violated` at ERROR, and text logs
    carried ANSI colour codes into files."""
    s = start_server(tmp_path_factory, "logs", RUST_LOG="info")
    try:
        body = {"name": "Ada", "email": "ada@example.org", "password": "correct horse battery"}
        assert s.http("POST", "/auth/register", json=body).status_code == 201
        assert s.http("POST", "/auth/register", json=body).status_code == 409
        s.http("GET", "/users/me", token="not-a-token")
        log = s.log_path.read_text(errors="replace")
        assert "nexus listening" in log, log[-2000:]
        assert "\x1b[" not in log, "ANSI escape codes in a log file"
        assert " ERROR " not in log and "unique constraint" not in log, log[-2000:]
    finally:
        s.stop()
