"""Typing indicators, presence, online users and the health check (docs/protocol.md §2)."""

import time

from conftest import is_iso_ms, wait_until

SETTLE = 0.3
TYPING_TTL = 5.0
TYPING_THROTTLE = 2.0


def _contacts(server, a, b):
    """Typing goes only to people who share a conversation: give them one."""
    r = server.http("POST", "/messages", token=a.token, json={"receiverId": b.id, "content": "hi"})
    assert r.status_code == 201, r.text


def _typing_from(user):
    return lambda p: p["userId"] == user.id


def test_typing_start_and_stop_reach_the_receiver_only(server, connect, transport):
    alice, bob = server.register("alice"), server.register("bob")
    _contacts(server, alice, bob)
    before = server.cursor(bob)
    a = connect(alice, transport, label="alice")
    a_other = connect(alice, transport, label="alice-2")
    b = connect(bob, transport, label="bob")

    assert a.call("TYPING_START", {"receiverId": bob.id}) == {"userId": alice.id, "isTyping": True}
    assert b.wait_for("USER_TYPING") == {"userId": alice.id, "isTyping": True}
    a.emit("TYPING_STOP", {"receiverId": bob.id})
    assert b.wait_for("USER_TYPING", lambda p: not p["isTyping"]) == {
        "userId": alice.id, "isTyping": False}

    a.health()
    for peer in (a, a_other):
        peer.assert_none("USER_TYPING", within=SETTLE)
    assert len(b.received("USER_TYPING")) == 2
    assert server.cursor(bob) == before  # typing is not stored


def test_typing_expires_after_five_seconds_without_refresh(server, connect):
    """alice starts typing and refreshes once; carol starts and stops at once. bob (on both
    transports) sees alice's indicator drop ~5 s after her *last* refresh, and carol's stop is
    not followed by a second, stale expiry."""
    alice, carol, bob = server.register("alice"), server.register("carol"), server.register("bob")
    _contacts(server, alice, bob)
    _contacts(server, carol, bob)
    a = connect(alice, "websocket", label="alice")
    c = connect(carol, "polling", label="carol")
    b_ws = connect(bob, "websocket", label="bob-ws")
    b_poll = connect(bob, "polling", label="bob-poll")

    t0 = time.monotonic()
    a.call("TYPING_START", {"receiverId": bob.id})
    c.call("TYPING_START", {"receiverId": bob.id})
    c.call("TYPING_STOP", {"receiverId": bob.id})
    time.sleep(TYPING_THROTTLE + 0.3)  # a refresh inside the throttle is not forwarded
    refreshed = time.monotonic()
    a.call("TYPING_START", {"receiverId": bob.id})

    for b in (b_ws, b_poll):
        b.wait_for("USER_TYPING", lambda p: p == {"userId": alice.id, "isTyping": True}, count=2)
        b.wait_for("USER_TYPING", lambda p: p == {"userId": alice.id, "isTyping": False},
                   timeout=TYPING_TTL + 3)
    for b in (b_ws, b_poll):
        [(at, _)] = b.received_timed("USER_TYPING", lambda p: p["userId"] == alice.id
                                     and not p["isTyping"])
        # not at t0 + 5 s (the refresh postponed it), but about 5 s after the refresh
        assert at - refreshed >= TYPING_TTL - 0.3, f"expired {at - refreshed:.2f}s after refresh"
        assert at - refreshed <= TYPING_TTL + 1.5
        assert at - t0 > TYPING_TTL + 1.0
        # carol: one start, one stop, and no second "false" from her cancelled expiry
        carols = [p["isTyping"] for p in b.received("USER_TYPING", _typing_from(carol))]
        assert carols == [True, False]
    assert time.monotonic() - t0 > TYPING_TTL  # carol's expiry would have fired by now


def test_typing_goes_only_to_contacts_throttled_and_the_stop_follows(server, connect, transport):
    """A stranger gets no indicator (FORBIDDEN); a contact gets one start for a burst of
    keystrokes, then the stop."""
    alice, bob, eve = server.register("alice"), server.register("bob"), server.register("eve")
    _contacts(server, alice, bob)
    a = connect(alice, transport, label="alice")
    b = connect(bob, transport, label="bob")
    e = connect(eve, transport, label="eve")

    refused = a.call("TYPING_START", {"receiverId": eve.id})
    assert refused["code"] == "FORBIDDEN", refused
    for _ in range(10):
        a.call("TYPING_START", {"receiverId": bob.id})
    a.call("TYPING_STOP", {"receiverId": bob.id})
    b.wait_for("USER_TYPING", lambda p: not p["isTyping"])
    assert [p["isTyping"] for p in b.received("USER_TYPING")] == [True, False]
    e.assert_none("USER_TYPING", within=SETTLE)
    a.health()


def test_online_users_lists_connected_contacts_only(server, connect, transport):
    alice, bob, eve = server.register("alice"), server.register("bob"), server.register("eve")
    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "hello"})
    assert r.status_code == 201
    a = connect(alice, transport)
    b = connect(bob, transport)
    connect(eve, transport)

    answer = a.call("GET_ONLINE_USERS")
    assert answer == a.wait_for("ONLINE_USERS")
    assert answer["userIds"] == [bob.id]  # the contact; not the stranger eve, not alice
    b.assert_none("ONLINE_USERS")  # only the asker is answered

    b.close()
    wait_until(lambda: bob.id not in a.call("GET_ONLINE_USERS")["userIds"],
               message="bob to leave the online list")
    assert a.call("GET_ONLINE_USERS")["userIds"] == []


def test_health_check(server, connect, transport):
    a = connect(server.register(), transport)
    answer = a.call("HEALTH_CHECK")
    event = a.wait_for("HEALTH_RESPONSE")
    assert answer == event
    assert event["status"] == "ok" and event["database"] == "up"
    assert "redis" in event and is_iso_ms(event["timestamp"])
    a.emit("HEALTH_CHECK")  # without an ack callback: the event alone
    a.wait_for("HEALTH_RESPONSE", count=2)


def test_presence_goes_to_conversation_partners_only(server, connect, transport):
    alice, bob, carol = server.register("alice"), server.register("bob"), server.register("carol")
    r = server.http("POST", "/messages", token=alice.token,
                    json={"receiverId": bob.id, "content": "hello"})
    assert r.status_code == 201
    a = connect(alice, transport, label="alice")
    c = connect(carol, transport, label="carol")  # shares no conversation with bob

    def about_bob(status):
        return lambda p: p["userId"] == bob.id and p["status"] == status

    b1 = connect(bob, transport, label="bob-1")
    online = a.wait_for("USER_PRESENCE_UPDATE", about_bob("online"))
    assert set(online) == {"userId", "status", "lastSeen"} and is_iso_ms(online["lastSeen"])

    # A second device does not make bob "more" online; closing one of two keeps him online.
    b2 = connect(bob, transport, label="bob-2")
    b2.close()
    b1.health()
    time.sleep(SETTLE)
    statuses = [p["status"] for p in a.received("USER_PRESENCE_UPDATE",
                                                 lambda p: p["userId"] == bob.id)]
    assert statuses == ["online"]

    b1.close()
    offline = a.wait_for("USER_PRESENCE_UPDATE", about_bob("offline"))
    assert is_iso_ms(offline["lastSeen"])
    assert len(a.received("USER_PRESENCE_UPDATE", lambda p: p["userId"] == bob.id)) == 2
    c.assert_none("USER_PRESENCE_UPDATE", lambda p: p["userId"] == bob.id)
