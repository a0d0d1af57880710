"""Sending messages over the socket: acknowledgement, fan-out, retries (docs/protocol.md §2)."""

import uuid

from conftest import is_iso_ms, is_uuid, other

SETTLE = 0.3  # how long to watch for an event that must not come


def _user_shape(u, user):
    assert u == {"id": user.id, "name": user.name, "email": user.email}


def test_send_is_acknowledged_and_reaches_receiver_and_other_devices(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    phone = connect(alice, transport, label="alice-phone")
    laptop = connect(alice, other(transport), label="alice-laptop")
    bob_socket = connect(bob, transport, label="bob")
    temp_id = f"tmp-{uuid.uuid4()}"

    phone.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": "hi Bob", "tempId": temp_id})

    sent = phone.wait_for("MESSAGE_SENT")
    assert set(sent) == {"messageId", "dbMessageId", "timestamp", "seq"}
    assert sent["messageId"] == temp_id
    assert is_uuid(sent["dbMessageId"])
    assert is_iso_ms(sent["timestamp"])
    assert sent["seq"] == 1  # alice's first change

    incoming = bob_socket.wait_for("NEW_MESSAGE")
    assert incoming["tempId"] == temp_id
    assert incoming["id"] == sent["dbMessageId"]
    assert incoming["content"] == "hi Bob"
    assert incoming["senderId"] == alice.id and incoming["receiverId"] == bob.id
    _user_shape(incoming["sender"], alice)
    _user_shape(incoming["receiver"], bob)
    assert incoming["timestamp"] == sent["timestamp"]
    assert incoming["isEdited"] is False and incoming["editedAt"] is None
    assert incoming["deletedAt"] is None
    assert incoming["readReceipts"] == []
    assert incoming["seq"] == 1  # bob's own numbering

    # The sender's other device learns of it too, numbered in alice's feed.
    echo = laptop.wait_for("NEW_MESSAGE")
    assert echo["id"] == sent["dbMessageId"] and echo["tempId"] == temp_id
    assert echo["seq"] == sent["seq"]

    # ...but the sending socket gets MESSAGE_SENT only, not its own message back.
    phone.health()
    phone.assert_none("NEW_MESSAGE", within=SETTLE)
    assert len(phone.received("MESSAGE_SENT")) == 1
    assert len(bob_socket.received("NEW_MESSAGE")) == 1
    bob_socket.assert_none("MESSAGE_SENT")


def test_ack_callback_returns_the_message_sent_payload(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport)
    connect(bob, transport)

    ack = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "with ack", "tempId": "t-ack"})
    event = a.wait_for("MESSAGE_SENT")
    assert ack == event
    assert ack["messageId"] == "t-ack"

    # Without a tempId the stored id stands in for it.
    ack2 = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "no temp id"})
    assert ack2["messageId"] == ack2["dbMessageId"]
    assert ack2["seq"] == ack["seq"] + 1


def test_retry_with_same_temp_id_stores_and_delivers_nothing_new(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport, label="alice")
    a_other = connect(alice, other(transport), label="alice-2")
    b = connect(bob, transport, label="bob")
    msg = {"receiverId": bob.id, "content": "exactly once", "tempId": "retry-1"}

    first = a.call("NEW_MESSAGE", msg)
    # Same socket retries (lost ack), then another device retries (reconnect), and two
    # copies are fired back to back without waiting (a network-level duplicate).
    again = a.call("NEW_MESSAGE", msg)
    from_other_device = a_other.call("NEW_MESSAGE", msg)
    a.emit("NEW_MESSAGE", msg)
    a.emit("NEW_MESSAGE", msg)
    a.wait_for("MESSAGE_SENT", count=4)

    assert again == first
    assert from_other_device == first
    assert all(p == first for p in a.received("MESSAGE_SENT"))

    b.wait_for("NEW_MESSAGE")
    a_other.wait_for("NEW_MESSAGE")  # the echo of the original
    b.health()
    a_other.health()
    b.assert_none("NEW_MESSAGE", lambda m: m["id"] != first["dbMessageId"], within=SETTLE)
    assert len(b.received("NEW_MESSAGE")) == 1
    assert len(a_other.received("NEW_MESSAGE")) == 1

    stored = server.conversation(alice, bob)
    assert [m["id"] for m in stored] == [first["dbMessageId"]]
    assert server.cursor(alice) == first["seq"] == 1
    assert server.cursor(bob) == 1


def test_one_senders_pipelined_messages_are_stored_and_announced_in_order(
        server, connect, transport):
    """Sends fired without waiting are stored in the order sent; the sender's MESSAGE_SENT and
    the receiver's NEW_MESSAGE come in that order with gap-free seq."""
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport)
    b = connect(bob, transport)
    n = 40
    for i in range(n):
        a.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": f"m{i}", "tempId": f"p{i}"})

    acks = a.wait_for("MESSAGE_SENT", count=n, timeout=10)
    got = b.wait_for("NEW_MESSAGE", count=n, timeout=10)
    assert [p["messageId"] for p in acks] == [f"p{i}" for i in range(n)]
    assert [p["seq"] for p in acks] == list(range(1, n + 1))
    assert [m["content"] for m in got] == [f"m{i}" for i in range(n)]
    assert [m["seq"] for m in got] == list(range(1, n + 1))
    assert [m["content"] for m in server.conversation(bob, alice)] == [f"m{i}" for i in range(n)]


def test_concurrent_senders_every_message_arrives_exactly_once(server, connect, transport):
    """Two users fire messages at bob at the same time. Each one reaches him once, his seq
    numbers cover 1..N with no gap or repeat, and each sender's own messages keep their order.
    (Across senders the socket order may differ from seq order: docs/protocol.md §1.)"""
    alice, carol, bob = server.register("alice"), server.register("carol"), server.register("bob")
    a = connect(alice, transport, label="alice")
    c = connect(carol, other(transport), label="carol")
    b = connect(bob, transport, label="bob")
    n = 30
    for i in range(n):
        a.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": f"a{i}", "tempId": f"a{i}"})
        c.emit("NEW_MESSAGE", {"receiverId": bob.id, "content": f"c{i}", "tempId": f"c{i}"})

    got = b.wait_for("NEW_MESSAGE", count=2 * n, timeout=10)
    b.health()
    assert len(b.received("NEW_MESSAGE")) == 2 * n
    assert sorted(m["seq"] for m in got) == list(range(1, 2 * n + 1))
    assert len({m["id"] for m in got}) == 2 * n
    for sender, prefix in ((alice, "a"), (carol, "c")):
        mine = [m for m in got if m["senderId"] == sender.id]
        assert [m["content"] for m in mine] == [f"{prefix}{i}" for i in range(n)]
        assert [m["seq"] for m in mine] == sorted(m["seq"] for m in mine)


def test_content_limit_counts_characters_not_bytes(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport)
    b = connect(bob, transport)
    content = "é" * 5000 + "a" * 5000  # 10 000 characters, 15 000 bytes of UTF-8
    ack = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": content, "tempId": "big"})
    assert ack["messageId"] == "big"
    assert b.wait_for("NEW_MESSAGE")["content"] == content

    refused = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": content + "!"})
    assert refused["code"] == "VALIDATION_FAILED"
    assert len(server.conversation(alice, bob)) == 1
