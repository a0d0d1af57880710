"""Bad input: one ERROR, the socket stays up, nothing is stored (docs/protocol.md §3)."""

import uuid

import pytest

from conftest import TRANSPORTS, Peer, is_iso_ms

NO_PAYLOAD = object()


@pytest.fixture(scope="module", params=TRANSPORTS)
def ctx(request, server):
    """alice and bob connected on one transport, with one message alice -> bob."""
    alice, bob = server.register("alice"), server.register("bob")
    a = Peer(server, alice, request.param, "alice").connect()
    b = Peer(server, bob, request.param, "bob").connect()
    sent = a.call("NEW_MESSAGE", {"receiverId": bob.id, "content": "seed"})
    b.wait_for("NEW_MESSAGE")
    yield dict(alice=alice, bob=bob, a=a, b=b, message=sent["dbMessageId"])
    a.close()
    b.close()


def _unknown():
    return str(uuid.uuid4())


# (case id, event, payload(ctx), expected code, tempId echoed in ERROR)
CASES = [
    ("send_payload_is_a_string", "NEW_MESSAGE", lambda c: "hello", "VALIDATION_FAILED", None),
    ("send_payload_is_an_array", "NEW_MESSAGE",
     lambda c: [{"receiverId": c["bob"].id, "content": "hi"}], "VALIDATION_FAILED", None),
    ("send_without_payload", "NEW_MESSAGE", lambda c: NO_PAYLOAD, "VALIDATION_FAILED", None),
    ("send_receiver_wrong_type", "NEW_MESSAGE",
     lambda c: {"receiverId": 42, "content": "hi", "tempId": "t-type"}, "VALIDATION_FAILED",
     "t-type"),
    ("send_content_wrong_type", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "content": ["hi"]}, "VALIDATION_FAILED", None),
    ("send_missing_content", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "tempId": "t-miss"}, "VALIDATION_FAILED", "t-miss"),
    ("send_missing_receiver", "NEW_MESSAGE", lambda c: {"content": "hi"}, "VALIDATION_FAILED",
     None),
    ("send_receiver_not_uuid", "NEW_MESSAGE",
     lambda c: {"receiverId": "bob", "content": "hi"}, "VALIDATION_FAILED", None),
    ("send_unknown_receiver", "NEW_MESSAGE",
     lambda c: {"receiverId": _unknown(), "content": "hi", "tempId": "t-404"}, "NOT_FOUND",
     "t-404"),
    ("send_to_self", "NEW_MESSAGE",
     lambda c: {"receiverId": c["alice"].id, "content": "hi", "tempId": "t-self"},
     "VALIDATION_FAILED", "t-self"),
    ("send_empty_content", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "content": ""}, "VALIDATION_FAILED", None),
    ("send_blank_content", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "content": " \n\t "}, "VALIDATION_FAILED", None),
    ("send_oversized_content", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "content": "x" * 10001, "tempId": "t-big"},
     "VALIDATION_FAILED", "t-big"),
    ("send_temp_id_too_long", "NEW_MESSAGE",
     lambda c: {"receiverId": c["bob"].id, "content": "hi", "tempId": "t" * 129},
     "VALIDATION_FAILED", "t" * 129),
    ("delivered_id_not_uuid", "MESSAGE_DELIVERED", lambda c: {"messageId": "abc"},
     "VALIDATION_FAILED", None),
    ("delivered_unknown_id", "MESSAGE_DELIVERED", lambda c: {"messageId": _unknown()},
     "NOT_FOUND", None),
    ("read_missing_id", "MESSAGE_READ", lambda c: {}, "VALIDATION_FAILED", None),
    ("read_payload_not_object", "MESSAGE_READ", lambda c: 12, "VALIDATION_FAILED", None),
    ("edit_empty_content", "EDIT_MESSAGE", lambda c: {"messageId": c["message"], "content": ""},
     "VALIDATION_FAILED", None),
    ("edit_oversized_content", "EDIT_MESSAGE",
     lambda c: {"messageId": c["message"], "content": "y" * 10001}, "VALIDATION_FAILED", None),
    ("edit_unknown_id", "EDIT_MESSAGE", lambda c: {"messageId": _unknown(), "content": "x"},
     "NOT_FOUND", None),
    ("delete_id_wrong_type", "DELETE_MESSAGE", lambda c: {"messageId": 7}, "VALIDATION_FAILED",
     None),
    ("delete_unknown_id", "DELETE_MESSAGE", lambda c: {"messageId": _unknown()}, "NOT_FOUND",
     None),
    ("typing_receiver_not_uuid", "TYPING_START", lambda c: {"receiverId": "x"},
     "VALIDATION_FAILED", None),
    ("typing_to_self", "TYPING_START", lambda c: {"receiverId": c["alice"].id},
     "VALIDATION_FAILED", None),
    ("typing_unknown_receiver", "TYPING_START", lambda c: {"receiverId": _unknown()},
     "FORBIDDEN", None),
    ("unknown_event", "SEND_EVERYTHING", lambda c: {}, "VALIDATION_FAILED", None),
]


@pytest.mark.parametrize("event,payload,code,temp_id", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_one_error_and_changes_nothing(server, ctx, event, payload, code, temp_id):
    a, b = ctx["a"], ctx["b"]
    cursors = (server.cursor(ctx["alice"]), server.cursor(ctx["bob"]))
    mark_a, mark_b = a.mark(), b.mark()

    data = payload(ctx)
    if data is NO_PAYLOAD:
        a.emit(event)
    else:
        a.emit(event, data)

    error = a.wait_for("ERROR", after=mark_a)
    assert error["code"] == code, error
    assert error["event"] == event
    assert isinstance(error["message"], str) and error["message"]
    assert is_iso_ms(error["timestamp"])
    if temp_id is None:
        assert set(error) == {"message", "code", "event", "timestamp"}
    else:
        assert error["tempId"] == temp_id

    # Still connected and served. Events of one socket are handled in order, so anything
    # else the bad event caused would have arrived before this answer.
    a.health()
    assert a.connected
    assert a.names(after=mark_a) == ["ERROR", "HEALTH_RESPONSE"]
    assert b.names(after=mark_b) == []  # the other party hears nothing
    assert (server.cursor(ctx["alice"]), server.cursor(ctx["bob"])) == cursors
    assert len(server.conversation(ctx["alice"], ctx["bob"])) == 1


def test_refusal_also_comes_through_the_ack(server, ctx):
    a = ctx["a"]
    mark = a.mark()
    ack = a.call("NEW_MESSAGE", {"receiverId": ctx["alice"].id, "content": "me", "tempId": "x1"})
    event = a.wait_for("ERROR", after=mark)
    assert ack == event
    assert ack["code"] == "VALIDATION_FAILED" and ack["tempId"] == "x1"
    assert len(a.received("ERROR", after=mark)) == 1
