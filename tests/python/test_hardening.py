"""Abuse paths closed by the hardening work (docs/operations.md, "Limits"): each test here
fails against a server without the fix it names."""

import json
import uuid

import pytest

from conftest import TRANSPORTS, Peer


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
