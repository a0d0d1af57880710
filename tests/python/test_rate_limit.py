"""RATE_LIMIT_MESSAGES_PER_MINUTE: the sixth send in a minute is refused (docs/protocol.md §2, §7)."""

import pytest

from conftest import other, start_server

LIMIT = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory, "nexus-ratelimit", RATE_LIMIT_MESSAGES_PER_MINUTE=LIMIT)
    yield s
    s.stop()


def test_sixth_message_in_a_minute_is_refused_and_not_stored(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport, label="alice")
    a_other = connect(alice, other(transport), label="alice-2")
    b = connect(bob, transport, label="bob")

    # Sends refused as invalid do not use up the allowance.
    for _ in range(3):
        assert a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": " "})["code"] == (
            "VALIDATION_FAILED")
    for i in range(LIMIT):
        ack = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": f"ok {i}", "tempId": f"ok{i}"})
        assert ack["messageId"] == f"ok{i}"

    mark = a.mark()
    a.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": "one too many", "tempId": "over"})
    exceeded = a.wait_for("RATE_LIMIT_EXCEEDED", after=mark)
    assert set(exceeded) == {"limit", "retryAfterMs", "tempId"}
    assert exceeded["limit"] == LIMIT and exceeded["tempId"] == "over"
    # GCRA: a burst of 5, then one send every 60/5 = 12 s.
    assert isinstance(exceeded["retryAfterMs"], int) and 0 < exceeded["retryAfterMs"] <= 12_000
    error = a.wait_for("ERROR", after=mark)
    assert error["code"] == "RATE_LIMITED" and error["event"] == "NEW_MESSAGE"
    assert error["tempId"] == "over"
    assert a.names(after=mark) == ["RATE_LIMIT_EXCEEDED", "ERROR"]

    # The limit is the user's, across all of their sockets and REST.
    refused = a_other.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "other device",
                                           "tempId": "over-2"})
    assert refused["code"] == "RATE_LIMITED" and refused["tempId"] == "over-2"
    assert a_other.wait_for("RATE_LIMIT_EXCEEDED")["tempId"] == "over-2"
    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "over REST"})
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1

    # Nothing of the refused sends was stored or delivered; the sockets stay up.
    a.health()
    assert [m["content"] for m in server.conversation(alice, bob)] == [
        f"ok {i}" for i in range(LIMIT)]
    b.wait_for("NEW_MESSAGE", count=LIMIT)
    b.health()
    assert len(b.received("NEW_MESSAGE")) == LIMIT
    assert server.cursor(bob) == LIMIT

    # Other users are not affected.
    assert b.call("NEW_MESSAGE", {"receiverId": alice.id, "content": "still fine"})["seq"] == 6
