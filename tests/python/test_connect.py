"""Connecting to /ws: who is let in, and what they are told (docs/protocol.md §1)."""

import time

import pytest
import socketio

from conftest import JWT_SECRET, is_iso_ms, iso_to_epoch, make_jwt


def _forged_token(kind: str, server) -> str | None:
    victim = server.register("victim")
    now = int(time.time())
    if kind == "missing":
        return None
    if kind == "garbage":
        return "not-a-jwt"
    if kind == "wrong_secret":
        return make_jwt({"sub": victim.id, "iat": now, "exp": now + 3600},
                        secret="some-other-secret-that-is-long-enough-!!")
    if kind == "tampered_payload":
        # A real token of one user with the payload swapped for another user's id.
        attacker = server.register("attacker")
        header, _payload, sig = attacker.token.split(".")
        forged = make_jwt({"sub": victim.id, "iat": now, "exp": now + 3600}).split(".")[1]
        return f"{header}.{forged}.{sig}"
    if kind == "expired":
        return make_jwt({"sub": victim.id, "iat": now - 7200, "exp": now - 3600})
    if kind == "alg_none":
        return make_jwt({"sub": victim.id, "iat": now, "exp": now + 3600}, alg="none")
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "wrong_secret", "tampered_payload", "expired", "alg_none"])
def test_connect_is_refused_without_a_valid_token(server, peer_factory, transport, kind):
    token = _forged_token(kind, server)
    peer = peer_factory(None, transport, label=kind)
    with pytest.raises(socketio.exceptions.ConnectionError):
        peer.connect(token=token, wait_success=False)
    assert peer.connect_errors, "no connect_error was reported"
    assert peer.connect_errors[-1] == {"message": "Unauthorized"}
    assert not peer.sio.connected
    assert peer.received() == [], "a refused socket must not get any event"


def test_token_signed_with_the_server_secret_is_accepted(server, connect, transport):
    """Control for the forged cases above: the same minting code with the right secret works,
    so those refusals are about the signature / expiry, not the token format."""
    user = server.register()
    now = int(time.time())
    token = make_jwt({"sub": user.id, "iat": now, "exp": now + 600}, secret=JWT_SECRET)
    peer = connect(user, transport, token=token)
    assert peer.received("CONNECTION_SUCCESS")[0]["userId"] == user.id


def test_connection_success_payload(server, connect, transport):
    user = server.register()
    before = time.time()
    peer = connect(user, transport)
    payload = peer.wait_for("CONNECTION_SUCCESS")
    # The contract: {userId, socketId, timestamp}; the server adds the user's feed position.
    assert set(payload) == {"userId", "socketId", "timestamp", "seq"}
    assert payload["userId"] == user.id
    assert payload["seq"] == 0  # a new user has no changes yet
    assert payload["socketId"] == peer.sid
    assert is_iso_ms(payload["timestamp"])
    assert before - 2 <= iso_to_epoch(payload["timestamp"]) <= time.time() + 2
    assert len(peer.received("CONNECTION_SUCCESS")) == 1


def test_connection_success_tells_the_feed_position(server, connect, transport):
    """A reconnecting client learns from CONNECTION_SUCCESS.seq whether it missed anything."""
    alice, bob = server.register("alice"), server.register("bob")
    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "while you were away"})
    assert r.status_code == 201, r.text
    first = connect(bob, transport)
    second = connect(bob, transport)
    a, b = first.wait_for("CONNECTION_SUCCESS"), second.wait_for("CONNECTION_SUCCESS")
    assert a["socketId"] != b["socketId"]
    assert a["seq"] == b["seq"] == server.cursor(bob) == 1


def test_authorization_header_is_accepted(server, connect, transport):
    """Non-browser clients may send the token as ``Authorization: Bearer`` instead of auth."""
    user = server.register()
    peer = connect(user, transport, token=None,
                   headers={"Authorization": f"Bearer {user.token}"})
    assert peer.wait_for("CONNECTION_SUCCESS")["userId"] == user.id
    peer.health()



# Regression tests: the server sets a socket up (event queue, disconnect handler) in the
# connect middleware, before Socket.IO tells the client it is connected. Each test repeats
# the race a few times; over WebSocket they failed nearly every run when the handlers were
# registered later.

def test_events_sent_right_after_connect_are_not_lost(server, peer_factory):
    """socket.io-client flushes the emits it buffered while offline as soon as the namespace
    is connected, before CONNECTION_SUCCESS; python-socketio users emit right after connect()
    returns. Each message must get MESSAGE_SENT (or an ERROR), never silence."""
    alice, bob = server.register("alice"), server.register("bob")
    per_cycle = 5
    for cycle in range(25):
        peer = peer_factory(alice, "websocket", label=f"alice-{cycle}")
        peer.connect(wait_success=False)  # connected: Socket.IO CONNECT acknowledged
        for i in range(per_cycle):
            peer.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": f"{cycle}.{i}",
                                      "tempId": f"c{cycle}-{i}"})
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and (
                len(peer.received("MESSAGE_SENT")) + len(peer.received("ERROR")) < per_cycle):
            time.sleep(0.02)
        answered = len(peer.received("MESSAGE_SENT")) + len(peer.received("ERROR"))
        stored = server.cursor(alice)
        assert answered == per_cycle, (
            f"cycle {cycle}: {per_cycle - answered} of {per_cycle} messages sent right after "
            f"connect got neither MESSAGE_SENT nor ERROR (alice's feed has {stored} of "
            f"{(cycle + 1) * per_cycle} messages)")
        peer.close()


def test_quick_disconnect_does_not_leave_user_online(server, connect, peer_factory):
    """A flaky mobile connection that drops right after connecting must not leave its user
    shown online to everyone forever."""
    watcher = server.register("watcher")
    w = connect(watcher, "websocket", label="watcher")
    for cycle in range(25):
        user = server.register(f"flaky{cycle}")
        r = server.http("POST", "/messages", token=user.token,
                        json={"receiverId": watcher.id, "content": "hi"})
        assert r.status_code == 201
        peer = peer_factory(user, "websocket", label=f"flaky-{cycle}")
        peer.connect(wait_success=False)
        peer.close()
        deadline = time.monotonic() + 1.5
        while user.id in w.call("GET_ONLINE_USERS")["userIds"]:
            assert time.monotonic() < deadline, (
                f"cycle {cycle}: a user whose only socket disconnected is still listed online; "
                f"presence updates about them: "
                f"{[p['status'] for p in w.received('USER_PRESENCE_UPDATE', lambda p: p['userId'] == user.id)]}")
            time.sleep(0.05)
