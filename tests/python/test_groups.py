"""Group conversations through python-socketio (docs/protocol.md, "Conversations and groups"):
creation announced to every member, posts by conversationId, typing, the read mark, and a
removed member who hears nothing more."""

from conftest import is_iso_ms

SETTLE = 0.3


def _group(server, admin, title, members):
    r = server.http("POST", "/conversations", admin.token,
                    json={"title": title, "memberIds": [m.id for m in members]})
    assert r.status_code == 201, r.text
    return r.json()


def test_group_events_reach_every_member(server, connect, transport):
    ada, bob, cara, eve = (server.register(n) for n in ("ada", "bob", "cara", "eve"))
    sa, sb, sc, se = (connect(u, transport, label=u.name) for u in (ada, bob, cara, eve))
    group = _group(server, ada, "Crew", [bob, cara])
    gid = group["id"]
    assert group["type"] == "group" and group["title"] == "Crew"
    for s in (sa, sb, sc):
        update = s.wait_for("CONVERSATION_UPDATED")
        assert update["change"] == "conversation.created"
        assert update["conversation"]["id"] == gid
        assert update["seq"] >= 1

    sa.emit("NEW_MESSAGE", {"conversationId": gid, "content": "hello crew", "tempId": "py-1"})
    sent = sa.wait_for("MESSAGE_SENT")
    assert sent["messageId"] == "py-1"
    for s in (sb, sc):
        m = s.wait_for("NEW_MESSAGE")
        assert m["id"] == sent["dbMessageId"]
        assert m["conversationId"] == gid
        assert m["receiverId"] is None and m["receiver"] is None

    sc.emit("TYPING_START", {"conversationId": gid})
    typing = sa.wait_for("USER_TYPING")
    assert typing == {"userId": cara.id, "isTyping": True, "conversationId": gid}

    sb.emit("MARK_CONVERSATION_READ", {"conversationId": gid, "upToMessageId": sent["dbMessageId"]})
    read = sa.wait_for("MESSAGE_READ_UPDATE")
    assert read["messageId"] == sent["dbMessageId"] and read["userId"] == bob.id
    assert is_iso_ms(read["readAt"])

    se.emit("NEW_MESSAGE", {"conversationId": gid, "content": "let me in", "tempId": "e-1"})
    error = se.wait_for("ERROR")
    assert error["code"] == "FORBIDDEN" and error["event"] == "NEW_MESSAGE"
    mark = se.mark()
    se.emit("MARK_CONVERSATION_READ", {"conversationId": gid, "upToMessageId": sent["dbMessageId"]})
    assert se.wait_for("ERROR", after=mark)["code"] == "FORBIDDEN"
    se.assert_none("NEW_MESSAGE", within=SETTLE)
    se.assert_none("CONVERSATION_UPDATED")


def test_a_removed_member_hears_nothing_after_the_removal(server, connect, transport):
    ada, bob = server.register("ada"), server.register("bob")
    sa, sb = connect(ada, transport), connect(bob, transport)
    gid = _group(server, ada, "Duo", [bob])["id"]
    sb.wait_for("CONVERSATION_UPDATED")

    mark = sb.mark()
    r = server.http("DELETE", f"/conversations/{gid}/members/{bob.id}", ada.token)
    assert r.status_code == 200, r.text
    removal = sb.wait_for("CONVERSATION_UPDATED", after=mark)
    assert removal["change"] == "conversation.member_removed"
    assert all(m["user"]["id"] != bob.id for m in removal["conversation"]["members"])

    after_removal = sb.mark()
    sa.emit("NEW_MESSAGE", {"conversationId": gid, "content": "after bob", "tempId": "a-1"})
    sa.wait_for("MESSAGE_SENT")
    assert server.http("PATCH", f"/conversations/{gid}", ada.token, json={"title": "Solo"}).status_code == 200
    sb.assert_none("NEW_MESSAGE", within=SETTLE)
    sb.assert_none("CONVERSATION_UPDATED", after=after_removal)
    feed = server.http("GET", "/sync?since=0", bob.token).json()["events"]
    assert feed[-1]["type"] == "conversation.member_removed"
