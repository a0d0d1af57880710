"""Receipts, edits and deletes over the socket, and who may do them (docs/protocol.md §2)."""

import pytest

from conftest import is_iso_ms

SETTLE = 0.3
DELETED = "This message has been deleted"


@pytest.fixture
def chat(server, connect, transport):
    """alice -> bob, one message; both connected, plus a stranger carol."""
    alice, bob, carol = server.register("alice"), server.register("bob"), server.register("carol")
    a = connect(alice, transport, label="alice")
    b = connect(bob, transport, label="bob")
    c = connect(carol, transport, label="carol")
    sent = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "original", "tempId": "m1"})
    b.wait_for("NEW_MESSAGE")
    return dict(alice=alice, bob=bob, carol=carol, a=a, b=b, c=c,
                id=sent["dbMessageId"], sent=sent)


@pytest.mark.parametrize("event,update,time_field", [
    ("MESSAGE_DELIVERED", "MESSAGE_DELIVERED_UPDATE", "deliveredAt"),
    ("MESSAGE_READ", "MESSAGE_READ_UPDATE", "readAt"),
])
def test_receipt_reaches_the_sender_once(server, chat, event, update, time_field):
    a, b, mid = chat["a"], chat["b"], chat["id"]
    ack = b.call(event, {"messageId": mid})

    got = a.wait_for(update)
    assert got["messageId"] == mid
    assert got["userId"] == chat["bob"].id
    assert is_iso_ms(got[time_field])
    if update == "MESSAGE_READ_UPDATE":
        assert got["timestamp"] == got["readAt"]
    assert got["seq"] == chat["sent"]["seq"] + 1  # alice's feed, no gap
    assert ack["messageId"] == mid and ack[time_field] == got[time_field]

    # A receipt is stored once: repeating it tells nobody and keeps the first time.
    mark = a.mark()
    again = b.call(event, {"messageId": mid})
    assert again[time_field] == got[time_field]
    a.health()
    a.assert_none(update, after=mark, within=SETTLE)
    feed = server.sync(chat["alice"], chat["sent"]["seq"])
    assert [e["type"] for e in feed["events"]] == [
        "message.delivered" if event == "MESSAGE_DELIVERED" else "message.read"]


@pytest.mark.parametrize("event", ["MESSAGE_DELIVERED", "MESSAGE_READ"])
def test_receipt_refused_for_sender_and_stranger(server, chat, event):
    a, c, mid = chat["a"], chat["c"], chat["id"]
    before = server.cursor(chat["alice"])

    by_sender = a.call(event, {"messageId": mid})
    assert by_sender["code"] == "FORBIDDEN" and by_sender["event"] == event
    assert a.wait_for("ERROR")["code"] == "FORBIDDEN"

    by_stranger = c.call(event, {"messageId": mid})
    assert by_stranger["code"] == "NOT_FOUND"  # a stranger cannot tell the id exists
    assert c.wait_for("ERROR")["code"] == "NOT_FOUND"

    a.health()
    a.assert_none(event + "_UPDATE", within=SETTLE)
    assert server.cursor(chat["alice"]) == before
    assert server.conversation(chat["alice"], chat["bob"])[0]["readReceipts"] == []


def test_edit_reaches_both_users(server, chat):
    a, b, mid = chat["a"], chat["b"], chat["id"]
    ack = a.call("EDIT_MESSAGE", {"messageId": mid, "content": "edited"})

    for peer in (a, b):  # the editing socket hears it too
        got = peer.wait_for("MESSAGE_EDITED")
        assert set(got) >= {"id", "content", "isEdited", "editedAt", "timestamp", "seq"}
        assert got["id"] == mid and got["content"] == "edited" and got["isEdited"] is True
        assert is_iso_ms(got["editedAt"]) and got["timestamp"] == got["editedAt"]
    assert a.wait_for("MESSAGE_EDITED")["seq"] == chat["sent"]["seq"] + 1
    assert b.wait_for("MESSAGE_EDITED")["seq"] == b.wait_for("NEW_MESSAGE")["seq"] + 1
    assert ack == a.wait_for("MESSAGE_EDITED")
    chat["c"].assert_none("MESSAGE_EDITED")

    stored = server.conversation(chat["bob"], chat["alice"])[0]
    assert stored["content"] == "edited" and stored["isEdited"] is True


def test_edit_and_delete_refused_for_everyone_but_the_sender(server, chat):
    a, b, c, mid = chat["a"], chat["b"], chat["c"], chat["id"]

    assert b.call("EDIT_MESSAGE", {"messageId": mid, "content": "hacked"})["code"] == "FORBIDDEN"
    assert b.call("DELETE_MESSAGE", {"messageId": mid})["code"] == "FORBIDDEN"
    assert c.call("EDIT_MESSAGE", {"messageId": mid, "content": "hacked"})["code"] == "NOT_FOUND"
    assert c.call("DELETE_MESSAGE", {"messageId": mid})["code"] == "NOT_FOUND"
    assert [e["code"] for e in b.received("ERROR")] == ["FORBIDDEN", "FORBIDDEN"]
    assert [e["event"] for e in b.received("ERROR")] == ["EDIT_MESSAGE", "DELETE_MESSAGE"]

    a.health()
    for peer in (a, b):
        peer.assert_none("MESSAGE_EDITED")
        peer.assert_none("MESSAGE_DELETED")
    stored = server.conversation(chat["alice"], chat["bob"])[0]
    assert stored["content"] == "original" and stored["deletedAt"] is None


def test_delete_reaches_both_users_and_is_final(server, chat):
    a, b, mid = chat["a"], chat["b"], chat["id"]
    ack = a.call("DELETE_MESSAGE", {"messageId": mid})

    for peer in (a, b):
        got = peer.wait_for("MESSAGE_DELETED")
        assert set(got) >= {"id", "deletedAt", "content", "timestamp", "seq"}
        assert got["id"] == mid and got["content"] == DELETED
        assert is_iso_ms(got["deletedAt"]) and got["timestamp"] == got["deletedAt"]
    assert ack == a.wait_for("MESSAGE_DELETED")

    # The row stays, as a tombstone.
    stored = server.conversation(chat["bob"], chat["alice"])
    assert len(stored) == 1
    assert stored[0]["content"] == DELETED and stored[0]["deletedAt"] is not None

    edit = a.call("EDIT_MESSAGE", {"messageId": mid, "content": "resurrect"})
    assert edit["code"] == "ALREADY_DELETED" and edit["event"] == "EDIT_MESSAGE"
    assert a.call("DELETE_MESSAGE", {"messageId": mid})["code"] == "ALREADY_DELETED"
    a.health()
    b.assert_none("MESSAGE_EDITED", within=SETTLE)
    assert len(b.received("MESSAGE_DELETED")) == 1
    assert server.conversation(chat["alice"], chat["bob"])[0]["content"] == DELETED
