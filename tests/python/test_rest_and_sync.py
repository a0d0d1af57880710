"""REST sends reach sockets; a receiver that was away catches up with GET /sync (§3, §5)."""

import threading
import time

from conftest import wait_until

SETTLE = 0.3


def test_rest_message_reaches_the_receivers_socket(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport, label="alice")
    b = connect(bob, transport, label="bob")

    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "via REST", "clientMessageId": "c-1"})
    assert r.status_code == 201, r.text
    stored = r.json()

    incoming = b.wait_for("NEW_MESSAGE")
    assert incoming["id"] == stored["id"]
    assert incoming["content"] == "via REST" and incoming["tempId"] == "c-1"
    assert incoming["senderId"] == alice.id and incoming["sender"]["id"] == alice.id
    assert incoming["seq"] == 1
    # With no origin socket, every socket of the sender hears of it too (other devices).
    assert a.wait_for("NEW_MESSAGE")["id"] == stored["id"]
    a.assert_none("MESSAGE_SENT")

    # A REST retry with the same clientMessageId is not delivered again.
    again = server.http("POST", "/messages", token=alice.token,
                        json={"receiverId": bob.id, "content": "via REST", "clientMessageId": "c-1"})
    assert again.json()["id"] == stored["id"]
    b.health()
    b.assert_none("NEW_MESSAGE", lambda m: m is not incoming, within=SETTLE)
    assert len(b.received("NEW_MESSAGE")) == 1


def test_receiver_catches_up_on_missed_messages_with_sync(server, connect, peer_factory,
                                                          transport):
    """bob drops off while alice keeps sending; after reconnecting, GET /sync?since=<last seq
    bob saw> returns exactly what he missed, in order, and live delivery resumes without gap."""
    alice, bob = server.register("alice"), server.register("bob")
    a = connect(alice, transport, label="alice")
    b = connect(bob, transport, label="bob")

    sent: list[tuple[str, str]] = []  # (dbMessageId, content), in send order
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_sending():
        try:
            i = 0
            while not stop.is_set() and i < 60:
                content = f"msg {i}"
                ack = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": content,
                                             "tempId": f"s{i}"})
                sent.append((ack["dbMessageId"], content))
                i += 1
                time.sleep(0.01)
        except BaseException as e:  # surfaced in the main thread
            failures.append(e)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        b.wait_for("NEW_MESSAGE", count=5, timeout=5)
        b.close()  # mid-stream
        seen_count = len(b.received("NEW_MESSAGE"))
        wait_until(lambda: len(sent) >= seen_count + 5 or failures, timeout=5,
                   message="alice to send 5 more")
    finally:
        stop.set()
        sender.join(timeout=10)
    assert not failures, failures
    # While bob is away alice also edits his first message: sync must not miss that either.
    first_id = sent[0][0]
    a.call("EDIT_MESSAGE", {"messageId": first_id, "content": "msg 0 (edited)"})

    # What bob saw, as a client keeps it: the last seq up to which it has everything.
    seen = b.received("NEW_MESSAGE")
    last_seq = 0
    for m in seen:
        if m["seq"] == last_seq + 1:
            last_seq = m["seq"]
    seen_ids = [m["id"] for m in seen if m["seq"] <= last_seq]
    assert seen_ids == [mid for mid, _ in sent[:len(seen_ids)]]
    missed = sent[len(seen_ids):]
    assert len(missed) >= 5

    again = peer_factory(bob, transport, label="bob-again").connect()
    hello = again.wait_for("CONNECTION_SUCCESS")
    assert hello["seq"] == len(sent) + 1 > last_seq  # tells bob he missed something

    page = server.sync(bob, last_seq)
    events = page["events"]
    assert [e["seq"] for e in events] == list(range(last_seq + 1, last_seq + 1 + len(events)))
    created = [e for e in events if e["type"] == "message.created"]
    assert [(e["messageId"], e["message"]["content"]) for e in created] == missed
    assert all(e["userId"] == alice.id for e in events)
    assert [e["type"] for e in events] == ["message.created"] * len(missed) + ["message.edited"]
    assert events[-1]["messageId"] == first_id
    assert events[-1]["message"]["content"] == "msg 0 (edited)"
    assert page["hasMore"] is False and page["nextCursor"] == events[-1]["seq"]
    assert server.sync(bob, page["nextCursor"])["events"] == []

    # Live delivery resumes exactly where the feed ends.
    a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "welcome back"})
    live = again.wait_for("NEW_MESSAGE")
    assert live["content"] == "welcome back" and live["seq"] == page["nextCursor"] + 1
