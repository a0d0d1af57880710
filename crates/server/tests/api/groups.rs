//! Conversations and groups (docs/design.md, "Conversations and groups"): the life cycle of
//! a group, every refusal, receipts per member, the read pointer and stored unread counts,
//! a removed member who hears nothing more, and the socket events of a group.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::{assert_error, TestApp, TestUser};
use crate::on_both_backends;

impl TestApp {
    pub async fn create_group(
        &self,
        by: &TestUser,
        title: &str,
        members: &[&TestUser],
    ) -> Response {
        let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
        self.post_json(
            "/conversations",
            &json!({"title": title, "memberIds": ids}),
            Some(&by.token),
        )
        .await
    }

    pub async fn group_ok(&self, by: &TestUser, title: &str, members: &[&TestUser]) -> Value {
        let resp = self.create_group(by, title, members).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "create group");
        resp.json().await.unwrap()
    }

    pub async fn post(&self, from: &TestUser, conversation: &str, content: &str) -> Response {
        self.post_json(
            "/messages",
            &json!({"conversationId": conversation, "content": content}),
            Some(&from.token),
        )
        .await
    }

    pub async fn post_ok(&self, from: &TestUser, conversation: &str, content: &str) -> Value {
        let resp = self.post(from, conversation, content).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "post");
        resp.json().await.unwrap()
    }

    pub async fn rename(&self, by: &TestUser, conversation: &str, title: &str) -> Response {
        self.client
            .patch(self.url(&format!("/conversations/{conversation}")))
            .bearer_auth(&by.token)
            .json(&json!({ "title": title }))
            .send()
            .await
            .unwrap()
    }

    pub async fn add(&self, by: &TestUser, conversation: &str, users: &[&str]) -> Response {
        self.post_json(
            &format!("/conversations/{conversation}/members"),
            &json!({ "userIds": users }),
            Some(&by.token),
        )
        .await
    }

    pub async fn remove(&self, by: &TestUser, conversation: &str, user: &str) -> Response {
        self.client
            .delete(self.url(&format!("/conversations/{conversation}/members/{user}")))
            .bearer_auth(&by.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn read_up_to(&self, by: &TestUser, conversation: &str, message: &str) -> Response {
        self.post_json(
            &format!("/conversations/{conversation}/read"),
            &json!({ "upToMessageId": message }),
            Some(&by.token),
        )
        .await
    }

    pub async fn history(&self, by: &TestUser, conversation: &str) -> Response {
        self.get(
            &format!("/conversations/{conversation}/messages?limit=200"),
            &by.token,
        )
        .await
    }

    pub async fn history_ok(&self, by: &TestUser, conversation: &str) -> Vec<Value> {
        let resp = self.history(by, conversation).await;
        assert_eq!(resp.status(), StatusCode::OK, "history");
        let page: Value = resp.json().await.unwrap();
        page["messages"].as_array().unwrap().clone()
    }

    /// The caller's entry for `conversation` in `GET /conversations`, if listed.
    pub async fn listed(&self, by: &TestUser, conversation: &str) -> Option<Value> {
        let page = self.get_ok("/conversations?limit=200", by).await;
        page["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == conversation)
            .cloned()
    }

    pub async fn unread(&self, by: &TestUser, conversation: &str) -> i64 {
        self.listed(by, conversation).await.expect("listed")["unreadCount"]
            .as_i64()
            .unwrap()
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn role_of(c: &Value, user: &TestUser) -> Option<String> {
    c["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"]["id"] == user.id.as_str())
        .map(|m| m["role"].as_str().unwrap().to_string())
}

/// A Socket.IO client of the test: events arrive on a channel; emits go out through it.
pub struct Sock {
    events: mpsc::UnboundedReceiver<(String, Value)>,
    out: mpsc::UnboundedSender<(String, Value)>,
}

impl Sock {
    pub async fn connect(app: &TestApp, user: &TestUser) -> Sock {
        let target = nexus_bench::sio::Target::parse(&app.address).unwrap();
        let mut conn = nexus_bench::sio::SioConn::connect(
            &target,
            &user.token,
            None,
            nexus_bench::sio::ws_config(65536),
        )
        .await
        .unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let (out, mut out_rx) = mpsc::unbounded_channel::<(String, Value)>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = conn.recv() => {
                        match conn.decode(frame) {
                            nexus_bench::sio::Incoming::Event(mut v) => {
                                let name = nexus_bench::sio::event_name(&v).unwrap().to_string();
                                let payload: Value = nexus_bench::sio::payload(&mut v).unwrap_or(Value::Null);
                                if tx.send((name, payload)).is_err() {
                                    return;
                                }
                            }
                            nexus_bench::sio::Incoming::Closed(_) => return,
                            _ => {}
                        }
                        if conn.flush().await.is_err() {
                            return;
                        }
                    }
                    emit = out_rx.recv() => {
                        let Some((event, payload)) = emit else {
                            conn.close().await;
                            return;
                        };
                        conn.feed_event(&event, &payload, None).await.unwrap();
                        conn.flush().await.unwrap();
                    }
                }
            }
        });
        // `connect` returns once CONNECTION_SUCCESS has arrived.
        Sock { events, out }
    }

    pub fn emit(&self, event: &str, payload: Value) {
        self.out.send((event.to_string(), payload)).unwrap();
    }

    /// The next event named `name` (others before it are skipped).
    pub async fn expect(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((event, payload))) if event == name => return payload,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("socket closed while waiting for {name}"),
                Err(_) => panic!("no {name} within 10 s"),
            }
        }
    }

    /// Every event that arrives within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            got.push(e);
        }
        got
    }
}

on_both_backends! {
    async fn a_group_lives_from_creation_to_its_last_member(app) {
        let (ada, bob, cara, dan) = (
            app.register("Ada").await,
            app.register("Bob").await,
            app.register("Cara").await,
            app.register("Dan").await,
        );
        let g = app.group_ok(&ada, "  Climbing  ", &[&bob, &cara, &bob]).await;
        let gid = id(&g);
        assert_eq!(g["type"], "group");
        assert_eq!(g["title"], "Climbing", "trimmed");
        assert_eq!(g["members"].as_array().unwrap().len(), 3, "deduplicated: {g}");
        assert_eq!(role_of(&g, &ada).as_deref(), Some("admin"));
        assert_eq!(role_of(&g, &bob).as_deref(), Some("member"));
        assert!(g["createdAt"].as_str().unwrap().ends_with('Z'));

        // Listed for every member before any message, without one.
        let entry = app.listed(&bob, &gid).await.expect("bob lists the group");
        assert!(entry["lastMessage"].is_null());
        assert_eq!(entry["unreadCount"], 0);
        assert!(app.listed(&dan, &gid).await.is_none(), "not a member");
        assert_eq!(app.get_ok(&format!("/conversations/{gid}"), &cara).await["title"], "Climbing");

        // Messages carry the conversation and no receiver.
        let m = app.post_ok(&ada, &gid, "hello all").await;
        assert_eq!(m["conversationId"], gid.as_str());
        assert!(m["receiverId"].is_null() && m["receiver"].is_null(), "{m}");
        let m2 = app.post_ok(&bob, &gid, "hi ada").await;
        for u in [&ada, &bob, &cara] {
            let h = app.history_ok(u, &gid).await;
            assert_eq!(h.iter().map(id).collect::<Vec<_>>(), [id(&m), id(&m2)]);
        }
        assert_eq!(app.unread(&cara, &gid).await, 2);
        assert_eq!(app.unread(&bob, &gid).await, 1);
        assert_eq!(app.unread(&ada, &gid).await, 1);

        // The brief's list shows the group with otherUser null, beside direct ones, and
        // a direct conversation carries its conversation too.
        app.send_ok(&dan, &ada, "psst").await;
        let all = app.get_ok("/messages/conversations/all", &ada).await;
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["otherUser"]["id"], dan.id.as_str(), "most recent first");
        assert_eq!(all[0]["conversation"]["type"], "direct");
        assert_eq!(all[0]["lastMessage"]["conversationId"], all[0]["conversation"]["id"]);
        assert!(all[1]["otherUser"].is_null());
        assert_eq!(all[1]["conversation"]["id"], gid.as_str());
        assert_eq!(all[1]["lastMessage"]["id"], m2["id"]);
        assert_eq!(all[1]["unreadCount"], 1);
        // GET /conversations pages through both kinds.
        let first = app.get_ok("/conversations?limit=1", &ada).await;
        assert_eq!(first["conversations"].as_array().unwrap().len(), 1);
        let cursor = first["nextCursor"].as_str().unwrap().to_string();
        let second = app.get_ok(&format!("/conversations?limit=1&before={cursor}"), &ada).await;
        assert_eq!(second["conversations"][0]["id"], gid.as_str());
        assert!(second["nextCursor"].is_null());
        // A direct message can also be sent by its conversation id.
        let direct = all[0]["conversation"]["id"].as_str().unwrap().to_string();
        let by_id = app.post_ok(&ada, &direct, "by id").await;
        assert_eq!(by_id["receiverId"], dan.id.as_str());

        // Rename, add, leave.
        let renamed: Value = app.rename(&ada, &gid, "Bouldering").await.json().await.unwrap();
        assert_eq!(renamed["title"], "Bouldering");
        let added: Value = app.add(&ada, &gid, &[&dan.id]).await.json().await.unwrap();
        assert_eq!(role_of(&added, &dan).as_deref(), Some("member"));
        assert_eq!(app.history_ok(&dan, &gid).await.len(), 2, "a new member reads the history");
        let left = app.remove(&bob, &gid, &bob.id).await;
        assert_eq!(left.status(), StatusCode::OK);
        assert!(app.listed(&bob, &gid).await.is_none(), "bob left");

        // The last admin leaving makes the longest-standing member an admin.
        let after: Value = app.remove(&ada, &gid, &ada.id).await.json().await.unwrap();
        assert_eq!(role_of(&after, &cara).as_deref(), Some("admin"), "{after}");
        assert_eq!(role_of(&after, &dan).as_deref(), Some("member"));
        assert_eq!(app.rename(&cara, &gid, "Cara's").await.status(), StatusCode::OK);
        let removed: Value = app.remove(&cara, &gid, &dan.id).await.json().await.unwrap();
        assert_eq!(removed["members"].as_array().unwrap().len(), 1);

        // Every member's feed tells the story, gap-free.
        let feed = app.sync_all(&cara, 0).await;
        let kinds: Vec<&str> = feed.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, [
            "conversation.created", "message.created", "message.created",
            "conversation.updated", "conversation.member_added",
            "conversation.member_removed", "conversation.member_removed",
            "conversation.updated", "conversation.member_removed",
        ]);
        let seqs: Vec<i64> = feed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        assert_eq!(feed[0]["conversation"]["id"], gid.as_str());
        assert_eq!(feed[0]["conversationId"], gid.as_str());
        assert!(feed[0]["message"].is_null());
        assert_eq!(feed[1]["message"]["conversationId"], gid.as_str());
        assert_eq!(feed[1]["message"]["seq"], 2, "the member's own number");
    }

    async fn every_refusal_is_an_error_and_stores_nothing(app, config: |c: &mut nexus::config::Config| c.group_max_members = 3) {
        let (ada, bob, cara, eve) = (
            app.register("Ada").await,
            app.register("Bob").await,
            app.register("Cara").await,
            app.register("Eve").await,
        );
        let g = app.group_ok(&ada, "Trio", &[&bob, &cara]).await;
        let gid = id(&g);
        let m = app.post_ok(&ada, &gid, "members only").await;
        let ghost = uuid::Uuid::new_v4().to_string();

        // A non-member posts, reads, marks read, renames, adds, removes, looks.
        assert_error(app.post(&eve, &gid, "let me in").await, StatusCode::FORBIDDEN).await;
        assert_error(app.history(&eve, &gid).await, StatusCode::FORBIDDEN).await;
        assert_error(app.read_up_to(&eve, &gid, &id(&m)).await, StatusCode::FORBIDDEN).await;
        assert_error(app.rename(&eve, &gid, "Mine").await, StatusCode::FORBIDDEN).await;
        assert_error(app.add(&eve, &gid, &[&eve.id]).await, StatusCode::FORBIDDEN).await;
        assert_error(app.remove(&eve, &gid, &bob.id).await, StatusCode::FORBIDDEN).await;
        assert_error(app.get(&format!("/conversations/{gid}"), &eve.token).await, StatusCode::FORBIDDEN).await;
        assert_error(app.mark(&eve, &id(&m), "read").await, StatusCode::NOT_FOUND).await;
        assert_error(app.edit(&eve, &id(&m), "x").await, StatusCode::NOT_FOUND).await;
        // A member (not an admin) renames, adds, removes an admin.
        assert_error(app.rename(&bob, &gid, "Bob's").await, StatusCode::FORBIDDEN).await;
        assert_error(app.add(&bob, &gid, &[&eve.id]).await, StatusCode::FORBIDDEN).await;
        assert_error(app.remove(&bob, &gid, &ada.id).await, StatusCode::FORBIDDEN).await;
        assert_error(app.remove(&bob, &gid, &cara.id).await, StatusCode::FORBIDDEN).await;
        // Over the member limit (3 with the creator), at creation and by adding.
        assert_error(app.create_group(&ada, "Four", &[&bob, &cara, &eve]).await, StatusCode::BAD_REQUEST).await;
        assert_error(app.add(&ada, &gid, &[&eve.id]).await, StatusCode::BAD_REQUEST).await;
        // Unknown users, conversations, malformed ids.
        assert_eq!(app.create_group(&ada, "Alone", &[]).await.status(), StatusCode::CREATED, "a group of one");
        let unknown = app.post_json("/conversations", &json!({"title": "G", "memberIds": [ghost]}), Some(&ada.token)).await;
        assert_error(unknown, StatusCode::NOT_FOUND).await;
        assert_error(app.add(&ada, &gid, &[&ghost]).await, StatusCode::NOT_FOUND).await;
        assert_error(app.post(&ada, &ghost, "anyone?").await, StatusCode::NOT_FOUND).await;
        assert_error(app.history(&ada, &ghost).await, StatusCode::NOT_FOUND).await;
        assert_error(app.post(&ada, "not-a-uuid", "x").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.add(&ada, &gid, &["nope"]).await, StatusCode::BAD_REQUEST).await;
        let both = app.post_json("/messages", &json!({"conversationId": gid, "receiverId": bob.id, "content": "x"}), Some(&ada.token)).await;
        assert_error(both, StatusCode::BAD_REQUEST).await;
        // Bad titles.
        for title in ["", "   ", &"t".repeat(101), "nul\0here", "ctl\u{7}", "Ada\u{202E}nimda"] {
            assert_error(app.create_group(&ada, title, &[&bob]).await, StatusCode::BAD_REQUEST).await;
            assert_error(app.rename(&ada, &gid, title).await, StatusCode::BAD_REQUEST).await;
        }
        // Marking one's own message, or a message of another conversation, read.
        assert_error(app.mark(&ada, &id(&m), "read").await, StatusCode::FORBIDDEN).await;
        let direct = app.send_ok(&bob, &ada, "elsewhere").await;
        assert_error(app.read_up_to(&cara, &gid, &id(&direct)).await, StatusCode::NOT_FOUND).await;
        // A direct conversation has no title and nobody leaves it.
        let dcid = direct["conversationId"].as_str().unwrap().to_string();
        assert_error(app.rename(&ada, &dcid, "Us").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.remove(&ada, &dcid, &ada.id).await, StatusCode::BAD_REQUEST).await;
        assert_error(app.history(&cara, &dcid).await, StatusCode::FORBIDDEN).await;

        // Nothing of it was stored.
        let g2 = app.get_ok(&format!("/conversations/{gid}"), &ada).await;
        assert_eq!(g2["title"], "Trio");
        assert_eq!(g2["members"].as_array().unwrap().len(), 3);
        assert_eq!(app.history_ok(&ada, &gid).await.len(), 1);
        assert!(app.sync_all(&eve, 0).await.is_empty(), "eve's feed is empty");
        let listed = app.get_ok("/conversations", &ada).await;
        assert_eq!(listed["conversations"].as_array().unwrap().len(), 3, "the trio, alone, bob");
    }

    async fn receipts_are_per_member_and_the_message_carries_them_all(app) {
        let (ada, bob, cara) = (app.register("Ada").await, app.register("Bob").await, app.register("Cara").await);
        let gid = id(&app.group_ok(&ada, "Three", &[&bob, &cara]).await);
        let m = app.post_ok(&ada, &gid, "read me").await;
        let mid = id(&m);
        let ada_seq = app.sync_all(&ada, 0).await.len() as i64;

        assert_eq!(app.mark(&bob, &mid, "delivered").await.status(), StatusCode::OK);
        let read: Value = app.mark(&bob, &mid, "read").await.json().await.unwrap();
        assert_eq!(read["userId"], bob.id.as_str());
        assert_eq!(app.mark(&cara, &mid, "read").await.status(), StatusCode::OK);
        // Repeated: stored once, nobody told again.
        assert_eq!(app.mark(&cara, &mid, "read").await.status(), StatusCode::OK);

        let h = app.history_ok(&ada, &gid).await;
        let readers: Vec<&str> = h[0]["readReceipts"].as_array().unwrap().iter().map(|r| r["userId"].as_str().unwrap()).collect();
        assert_eq!(readers.len(), 2, "{readers:?}");
        assert!(readers.contains(&bob.id.as_str()) && readers.contains(&cara.id.as_str()));
        assert_eq!(h[0]["deliveryReceipts"].as_array().unwrap().len(), 1);

        // The sender's feed: a receipt per reader; each reader's feed: their own.
        let ada_feed = app.sync_all(&ada, ada_seq).await;
        let got: Vec<(String, String)> = ada_feed.iter().map(|e| (e["type"].as_str().unwrap().to_string(), e["userId"].as_str().unwrap().to_string())).collect();
        assert_eq!(got, [
            ("message.delivered".to_string(), bob.id.clone()),
            ("message.read".to_string(), bob.id.clone()),
            ("message.read".to_string(), cara.id.clone()),
        ]);
        let cara_feed = app.sync_all(&cara, 0).await;
        assert_eq!(cara_feed.iter().filter(|e| e["type"] == "message.read").count(), 1);
        assert!(app.sync_all(&bob, 0).await.iter().all(|e| e["userId"] != cara.id.as_str()), "bob is not told of cara's receipts");
    }

    async fn the_read_pointer_marks_up_to_a_message_and_unread_counts_follow(app) {
        let (ada, bob, cara) = (app.register("Ada").await, app.register("Bob").await, app.register("Cara").await);
        let gid = id(&app.group_ok(&ada, "Counting", &[&bob, &cara]).await);
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(id(&app.post_ok(&ada, &gid, &format!("m{i}")).await));
        }
        assert_eq!(app.unread(&bob, &gid).await, 4);
        assert_eq!(app.unread(&ada, &gid).await, 0, "own messages are not unread");

        // One message read on its own, then everything up to the third at once.
        assert_eq!(app.mark(&bob, &ids[0], "read").await.status(), StatusCode::OK);
        assert_eq!(app.unread(&bob, &gid).await, 3);
        let ada_before = app.sync_all(&ada, 0).await.len() as i64;
        let bob_before = app.sync_all(&bob, 0).await.len() as i64;
        let r = app.read_up_to(&bob, &gid, &ids[2]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r: Value = r.json().await.unwrap();
        assert_eq!(r["upToMessageId"], ids[2].as_str());
        assert_eq!(r["marked"], 2, "the first was read already");
        assert_eq!(app.unread(&bob, &gid).await, 1);
        let ada_feed = app.sync_all(&ada, ada_before).await;
        assert_eq!(ada_feed.iter().map(|e| e["messageId"].as_str().unwrap()).collect::<Vec<_>>(), [ids[1].as_str(), ids[2].as_str()]);
        assert!(ada_feed.iter().all(|e| e["type"] == "message.read" && e["userId"] == bob.id.as_str()));
        let bob_feed = app.sync_all(&bob, bob_before).await;
        assert_eq!(bob_feed.len(), 1);
        assert_eq!(bob_feed[0]["type"], "conversation.read");
        assert_eq!(bob_feed[0]["messageId"], ids[2].as_str());
        let h = app.history_ok(&ada, &gid).await;
        let read_by_bob: Vec<bool> = h.iter().map(|m| m["readReceipts"].as_array().unwrap().iter().any(|r| r["userId"] == bob.id.as_str())).collect();
        assert_eq!(read_by_bob, [true, true, true, false]);

        // Marking again changes nothing and takes no number; marking back changes nothing.
        let again: Value = app.read_up_to(&bob, &gid, &ids[1]).await.json().await.unwrap();
        assert_eq!(again["marked"], 0);
        assert_eq!(app.sync_all(&bob, 0).await.len() as i64, bob_before + 1);
        assert_eq!(app.unread(&bob, &gid).await, 1);

        // A deleted unread message is unread no more; the rest read at once.
        assert_eq!(app.unread(&cara, &gid).await, 4);
        assert_eq!(app.delete(&ada, &ids[3]).await.status(), StatusCode::OK);
        assert_eq!(app.unread(&cara, &gid).await, 3);
        assert_eq!(app.unread(&bob, &gid).await, 0);
        app.read_up_to(&cara, &gid, &ids[3]).await;
        assert_eq!(app.unread(&cara, &gid).await, 0);

        // The same pointer in a direct conversation; the brief's list agrees.
        let d: Vec<String> = [app.send_ok(&ada, &bob, "1").await, app.send_ok(&ada, &bob, "2").await].iter().map(id).collect();
        let dcid = app.get_ok("/messages/conversations/all", &bob).await[0]["conversation"]["id"].as_str().unwrap().to_string();
        assert_eq!(app.unread(&bob, &dcid).await, 2);
        app.read_up_to(&bob, &dcid, &d[1]).await;
        assert_eq!(app.unread(&bob, &dcid).await, 0);
        assert_eq!(app.get_ok("/messages/conversations/all", &bob).await[0]["unreadCount"], 0);
    }

    async fn a_removed_member_gets_the_removal_and_nothing_after_it(app) {
        let (ada, bob, cara) = (app.register("Ada").await, app.register("Bob").await, app.register("Cara").await);
        let gid = id(&app.group_ok(&ada, "Soon without Bob", &[&bob, &cara]).await);
        let before = app.post_ok(&ada, &gid, "bob still here").await;
        let mut bob_sock = Sock::connect(&app, &bob).await;
        assert_eq!(app.remove(&ada, &gid, &bob.id).await.status(), StatusCode::OK);
        let removal = bob_sock.expect("CONVERSATION_UPDATED").await;
        assert_eq!(removal["change"], "conversation.member_removed");
        assert!(removal["conversation"]["members"].as_array().unwrap().iter().all(|m| m["user"]["id"] != bob.id.as_str()));
        let bob_seq = removal["seq"].as_i64().unwrap();

        let after = app.post_ok(&ada, &gid, "bob is gone").await;
        assert_eq!(app.rename(&ada, &gid, "Just us").await.status(), StatusCode::OK);
        assert_eq!(app.edit(&ada, &id(&before), "edited after").await.status(), StatusCode::OK);
        let heard = bob_sock.drain(Duration::from_millis(500)).await;
        assert!(heard.is_empty(), "bob heard {heard:?}");
        let feed = app.sync_all(&bob, 0).await;
        assert_eq!(feed.last().unwrap()["type"], "conversation.member_removed");
        assert_eq!(feed.last().unwrap()["seq"].as_i64().unwrap(), bob_seq);
        assert!(feed.last().unwrap()["conversation"]["members"].as_array().unwrap().is_empty(), "a former member is shown nobody");

        // The history up to the removal stays readable; nothing after it.
        let h = app.history_ok(&bob, &gid).await;
        assert_eq!(h.iter().map(id).collect::<Vec<_>>(), [id(&before)]);
        assert_ne!(h[0]["id"], after["id"]);
        assert_error(app.post(&bob, &gid, "still here?").await, StatusCode::FORBIDDEN).await;
        assert_error(app.mark(&bob, &id(&before), "read").await, StatusCode::FORBIDDEN).await;
        assert_error(app.read_up_to(&bob, &gid, &id(&before)).await, StatusCode::FORBIDDEN).await;
        assert!(app.listed(&bob, &gid).await.is_none());
        let caught_up = app.get_ok("/messages/sync?lastMessageTimestamp=1970-01-01T00:00:00.000Z", &bob).await;
        assert!(caught_up.as_array().unwrap().iter().all(|m| m["id"] != after["id"]));

        // Back in: everything again.
        assert_eq!(app.add(&ada, &gid, &[&bob.id]).await.status(), StatusCode::OK);
        assert_eq!(bob_sock.expect("CONVERSATION_UPDATED").await["change"], "conversation.member_added");
        assert_eq!(app.history_ok(&bob, &gid).await.len(), 2);
    }

    async fn group_events_reach_every_members_sockets(app) {
        let (ada, bob, cara, eve) = (app.register("Ada").await, app.register("Bob").await, app.register("Cara").await, app.register("Eve").await);
        let mut ada_s = Sock::connect(&app, &ada).await;
        let mut ada_2 = Sock::connect(&app, &ada).await;
        let mut bob_s = Sock::connect(&app, &bob).await;
        let mut cara_s = Sock::connect(&app, &cara).await;
        let mut eve_s = Sock::connect(&app, &eve).await;

        let gid = id(&app.group_ok(&ada, "Live", &[&bob, &cara]).await);
        for s in [&mut ada_s, &mut bob_s, &mut cara_s] {
            let u = s.expect("CONVERSATION_UPDATED").await;
            assert_eq!(u["change"], "conversation.created");
            assert_eq!(u["conversation"]["id"], gid.as_str());
            assert!(u["seq"].as_i64().unwrap() >= 1);
        }

        ada_s.emit("NEW_MESSAGE", json!({"conversationId": gid, "content": "over the socket", "tempId": "t1"}));
        let sent = ada_s.expect("MESSAGE_SENT").await;
        assert_eq!(sent["messageId"], "t1");
        let mid = sent["dbMessageId"].as_str().unwrap().to_string();
        for s in [&mut bob_s, &mut cara_s, &mut ada_2] {
            let m = s.expect("NEW_MESSAGE").await;
            assert_eq!(m["id"], mid.as_str());
            assert_eq!(m["conversationId"], gid.as_str());
            assert!(m["receiverId"].is_null());
            assert_eq!(m["tempId"], "t1");
            assert!(m["seq"].as_i64().unwrap() > 0);
        }

        // Typing by conversation, to the other members only.
        bob_s.emit("TYPING_START", json!({"conversationId": gid}));
        for s in [&mut ada_s, &mut cara_s] {
            let t = s.expect("USER_TYPING").await;
            assert_eq!(t["userId"], bob.id.as_str());
            assert_eq!(t["conversationId"], gid.as_str());
            assert_eq!(t["isTyping"], true);
        }
        eve_s.emit("TYPING_START", json!({"conversationId": gid}));
        let e = eve_s.expect("ERROR").await;
        assert_eq!(e["code"], "FORBIDDEN");
        eve_s.emit("NEW_MESSAGE", json!({"conversationId": gid, "content": "hi", "tempId": "x"}));
        assert_eq!(eve_s.expect("ERROR").await["code"], "FORBIDDEN");
        eve_s.emit("MARK_CONVERSATION_READ", json!({"conversationId": gid, "upToMessageId": mid}));
        assert_eq!(eve_s.expect("ERROR").await["code"], "FORBIDDEN");

        // A read mark: the sender hears of each message read, the reader's other sockets
        // of the mark.
        let mut bob_2 = Sock::connect(&app, &bob).await;
        bob_s.emit("MARK_CONVERSATION_READ", json!({"conversationId": gid, "upToMessageId": mid}));
        let r = ada_s.expect("MESSAGE_READ_UPDATE").await;
        assert_eq!(r["messageId"], mid.as_str());
        assert_eq!(r["userId"], bob.id.as_str());
        let c = bob_2.expect("CONVERSATION_READ").await;
        assert_eq!(c["conversationId"], gid.as_str());
        assert_eq!(c["userId"], bob.id.as_str());
        assert_eq!(c["upToMessageId"], mid.as_str());
        assert!(c["readAt"].as_str().unwrap().ends_with('Z'));

        // Edits and deletes reach every member; a rename too.
        ada_s.emit("EDIT_MESSAGE", json!({"messageId": mid, "content": "edited"}));
        for s in [&mut bob_s, &mut cara_s] {
            assert_eq!(s.expect("MESSAGE_EDITED").await["content"], "edited");
        }
        ada_s.emit("DELETE_MESSAGE", json!({"messageId": mid}));
        for s in [&mut bob_s, &mut cara_s] {
            assert_eq!(s.expect("MESSAGE_DELETED").await["id"], mid.as_str());
        }
        assert_eq!(app.rename(&ada, &gid, "Renamed").await.status(), StatusCode::OK);
        for s in [&mut bob_s, &mut cara_s] {
            let u = s.expect("CONVERSATION_UPDATED").await;
            assert_eq!(u["change"], "conversation.updated");
            assert_eq!(u["conversation"]["title"], "Renamed");
        }
        let eve_heard: Vec<String> = eve_s.drain(Duration::from_millis(300)).await.into_iter().map(|(n, _)| n).collect();
        assert!(eve_heard.iter().all(|n| n == "ERROR"), "eve heard {eve_heard:?}");
    }
}
