//! Sending, history, conversations, edit and delete over REST, with every refusal.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::assert_error;
use crate::on_both_backends;

on_both_backends! {
    async fn a_sent_message_has_the_brief_shape(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let m = app.send_ok(&ada, &bob, "Hello!").await;
        assert_eq!(m["content"], "Hello!");
        assert_eq!(m["senderId"], ada.id.as_str());
        assert_eq!(m["receiverId"], bob.id.as_str());
        assert_eq!(m["sender"], json!({"id": ada.id, "name": "Ada", "email": ada.email}));
        assert_eq!(m["receiver"], json!({"id": bob.id, "name": "Bob", "email": bob.email}));
        assert_eq!(m["isEdited"], false);
        assert_eq!(m["editedAt"], Value::Null);
        assert_eq!(m["deletedAt"], Value::Null);
        assert_eq!(m["isEncrypted"], false);
        assert_eq!(m["encryptionKeyId"], Value::Null);
        assert_eq!(m["readReceipts"], json!([]));
        assert_eq!(m["seq"], 1);
        let ts = m["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "ISO-8601 with milliseconds: {ts}");
        uuid::Uuid::parse_str(m["id"].as_str().unwrap()).unwrap();

        // both parties see it in their history
        assert_eq!(app.conversation(&bob, &ada).await[0]["id"], m["id"]);
        assert_eq!(app.conversation(&ada, &bob).await[0]["id"], m["id"]);
    }

    async fn bad_sends_are_refused_and_store_nothing(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let post = |body: Value| {
            let (app, token) = (&app, ada.token.clone());
            async move { app.post_json("/messages", &body, Some(&token)).await }
        };
        let cases = [
            (json!({"receiverId": ada.id, "content": "me"}), StatusCode::BAD_REQUEST, "yourself"),
            (json!({"receiverId": uuid::Uuid::new_v4(), "content": "x"}), StatusCode::NOT_FOUND, "receiver"),
            (json!({"receiverId": "not-a-uuid", "content": "x"}), StatusCode::BAD_REQUEST, "UUID"),
            (json!({"receiverId": bob.id, "content": ""}), StatusCode::BAD_REQUEST, "empty"),
            (json!({"receiverId": bob.id, "content": "   \n"}), StatusCode::BAD_REQUEST, "empty"),
            (json!({"receiverId": bob.id, "content": "x".repeat(10_001)}), StatusCode::BAD_REQUEST, "at most"),
            (json!({"receiverId": bob.id, "content": 42}), StatusCode::BAD_REQUEST, "invalid type"),
            (json!({"receiverId": bob.id}), StatusCode::BAD_REQUEST, "missing field"),
            (json!({"receiverId": bob.id, "content": "x", "clientMessageId": ""}), StatusCode::BAD_REQUEST, "client message id"),
        ];
        for (body, status, why) in cases {
            let msg = assert_error(post(body.clone()).await, status).await;
            assert!(msg.contains(why), "{body}: {msg}");
        }
        let bad_json = app.client.post(app.url("/messages")).bearer_auth(&ada.token)
            .header("content-type", "application/json").body("{\"receiverId\": ").send().await.unwrap();
        assert_error(bad_json, StatusCode::BAD_REQUEST).await;
        // Over the content limit but under the body limit: the domain says why.
        let long = json!({"receiverId": bob.id, "content": "x".repeat(100_000)});
        let msg = assert_error(post(long).await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("at most"), "{msg}");
        let huge = json!({"receiverId": bob.id, "content": "x".repeat(300_000)});
        assert_error(post(huge).await, StatusCode::PAYLOAD_TOO_LARGE).await;

        assert!(app.conversation(&ada, &bob).await.is_empty());
        assert!(app.sync_all(&ada, 0).await.is_empty(), "no change was logged");
        assert!(app.sync_all(&bob, 0).await.is_empty());
    }

    async fn a_retry_with_the_same_client_message_id_stores_nothing_new(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let body = json!({"receiverId": bob.id, "content": "once", "clientMessageId": "tmp-1"});
        let first: Value = app.post_json("/messages", &body, Some(&ada.token)).await.json().await.unwrap();
        let again = app.post_json("/messages", &body, Some(&ada.token)).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        let again: Value = again.json().await.unwrap();
        assert_eq!(first["id"], again["id"]);
        assert_eq!(first["clientMessageId"], "tmp-1");
        assert_eq!(app.conversation(&bob, &ada).await.len(), 1);
        assert_eq!(app.sync_all(&bob, 0).await.len(), 1);
        // the same id from another sender is another message
        let carl = app.register("Carl").await;
        let other: Value = app.post_json("/messages", &body, Some(&carl.token)).await.json().await.unwrap();
        assert_ne!(other["id"], first["id"]);
    }

    async fn a_retry_whose_message_cannot_be_reloaded_is_still_answered_201(app) {
        // The retry commits (nothing new) and only the load of the original after the
        // commit fails: the answer comes from what the writer read, not a 500.
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let body = json!({"receiverId": bob.id, "content": "once", "clientMessageId": "tmp-r"});
        let first: Value = app.post_json("/messages", &body, Some(&ada.token)).await.json().await.unwrap();
        app.state.store.inject_reload_failures(1);
        let again = app.post_json("/messages", &body, Some(&ada.token)).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        let again: Value = again.json().await.unwrap();
        for field in ["id", "content", "senderId", "receiverId", "timestamp", "seq", "clientMessageId", "sender", "receiver"] {
            assert_eq!(first[field], again[field], "{field}");
        }
        assert_eq!(app.conversation(&bob, &ada).await.len(), 1);
    }

    async fn history_pages_backwards_and_is_stable_under_new_messages(app) {
        let (ada, bob, carl) = (app.register("Ada").await, app.register("Bob").await, app.register("Carl").await);
        let mut ids = Vec::new();
        for i in 0..25 {
            let (from, to) = if i % 2 == 0 { (&ada, &bob) } else { (&bob, &ada) };
            ids.push(app.send_ok(from, to, &format!("m{i}")).await["id"].as_str().unwrap().to_string());
            app.send_ok(&carl, &ada, "elsewhere").await;
        }
        let page = |before: Option<String>| {
            let path = match before {
                Some(b) => format!("/messages/conversation/{}?limit=10&before={b}", bob.id),
                None => format!("/messages/conversation/{}?limit=10", bob.id),
            };
            let ada = ada.clone();
            let app = &app;
            async move { app.get_ok(&path, &ada).await }
        };
        let p1 = page(None).await;
        let got = |p: &Value| p["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(got(&p1), ids[15..25]);
        // new messages arrive between page loads: older pages do not shift
        app.send_ok(&bob, &ada, "late 1").await;
        app.send_ok(&ada, &bob, "late 2").await;
        let p2 = page(p1["nextCursor"].as_str().map(String::from)).await;
        assert_eq!(got(&p2), ids[5..15]);
        let p3 = page(p2["nextCursor"].as_str().map(String::from)).await;
        assert_eq!(got(&p3), ids[0..5]);
        assert_eq!(p3["nextCursor"], Value::Null, "start of history");

        // a cursor from another conversation, a bad limit, an unknown user
        let foreign = app.send_ok(&carl, &ada, "x").await["id"].as_str().unwrap().to_string();
        let r = app.get(&format!("/messages/conversation/{}?before={foreign}", bob.id), &ada.token).await;
        assert_error(r, StatusCode::BAD_REQUEST).await;
        let r = app.get(&format!("/messages/conversation/{}?limit=0", bob.id), &ada.token).await;
        assert_error(r, StatusCode::BAD_REQUEST).await;
        let r = app.get(&format!("/messages/conversation/{}", uuid::Uuid::new_v4()), &ada.token).await;
        assert_error(r, StatusCode::NOT_FOUND).await;
        let r = app.get("/messages/conversation/not-a-uuid", &ada.token).await;
        assert_error(r, StatusCode::BAD_REQUEST).await;
    }

    async fn conversations_list_last_message_and_unread_count_most_recent_first(app) {
        let (ada, bob, carl) = (app.register("Ada").await, app.register("Bob").await, app.register("Carl").await);
        let b1 = app.send_ok(&bob, &ada, "from bob 1").await;
        app.send_ok(&bob, &ada, "from bob 2").await;
        app.send_ok(&carl, &ada, "from carl").await;
        app.send_ok(&ada, &carl, "to carl").await;

        let list = app.get_ok("/messages/conversations/all", &ada).await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["otherUser"]["name"], "Carl");
        assert_eq!(list[0]["lastMessage"]["content"], "to carl");
        assert_eq!(list[0]["unreadCount"], 1);
        assert_eq!(list[1]["otherUser"]["name"], "Bob");
        assert_eq!(list[1]["lastMessage"]["content"], "from bob 2");
        assert_eq!(list[1]["unreadCount"], 2);

        assert_eq!(app.mark(&ada, b1["id"].as_str().unwrap(), "read").await.status(), StatusCode::OK);
        let list = app.get_ok("/messages/conversations/all", &ada).await;
        assert_eq!(list[1]["unreadCount"], 1);
        let bobs = app.get_ok("/messages/conversations/all", &bob).await;
        assert_eq!(bobs[0]["unreadCount"], 0, "your own messages are never unread");
    }

    async fn only_the_sender_edits_and_edits_keep_a_history(app) {
        let (ada, bob, eve) = (app.register("Ada").await, app.register("Bob").await, app.register("Eve").await);
        let m = app.send_ok(&ada, &bob, "first").await;
        let id = m["id"].as_str().unwrap();

        let r = app.edit(&ada, id, "second").await;
        assert_eq!(r.status(), StatusCode::OK);
        let edited: Value = r.json().await.unwrap();
        assert_eq!(edited["id"], id);
        assert_eq!(edited["content"], "second");
        assert_eq!(edited["isEdited"], true);
        assert!(edited["editedAt"].is_string());
        app.edit(&ada, id, "third").await;

        assert_error(app.edit(&bob, id, "hijack").await, StatusCode::FORBIDDEN).await;
        let msg = assert_error(app.edit(&eve, id, "hijack").await, StatusCode::NOT_FOUND).await;
        assert!(!msg.contains("third"), "a stranger learns nothing: {msg}");
        assert_error(app.edit(&ada, id, "").await, StatusCode::BAD_REQUEST).await;
        assert_error(app.edit(&ada, &uuid::Uuid::new_v4().to_string(), "x").await, StatusCode::NOT_FOUND).await;
        assert_error(app.edit(&ada, "nope", "x").await, StatusCode::BAD_REQUEST).await;

        let seen = &app.conversation(&bob, &ada).await[0];
        assert_eq!(seen["content"], "third");
        assert_eq!(seen["isEdited"], true);
        let history = app.get_ok(&format!("/messages/{id}/history"), &bob).await;
        let old: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["content"].as_str().unwrap()).collect();
        assert_eq!(old, ["first", "second"]);
        assert_error(app.get(&format!("/messages/{id}/history"), &eve.token).await, StatusCode::NOT_FOUND).await;
    }

    async fn deletion_keeps_the_row_replaces_content_and_forbids_later_edits(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let m = app.send_ok(&ada, &bob, "secret").await;
        let id = m["id"].as_str().unwrap();
        app.edit(&ada, id, "secret 2").await;

        assert_error(app.delete(&bob, id).await, StatusCode::FORBIDDEN).await;
        let r = app.delete(&ada, id).await;
        assert_eq!(r.status(), StatusCode::OK);
        let deleted: Value = r.json().await.unwrap();
        assert_eq!(deleted["content"], "This message has been deleted");
        assert!(deleted["deletedAt"].is_string());

        let seen = &app.conversation(&bob, &ada).await[0];
        assert_eq!(seen["id"], id, "the row is kept");
        assert_eq!(seen["content"], "This message has been deleted");
        assert!(seen["deletedAt"].is_string());
        let history = app.get_ok(&format!("/messages/{id}/history"), &ada).await;
        assert_eq!(history, json!([]), "the edit history is gone too");
        let everything = app.get_ok("/messages/sync", &bob).await.to_string();
        assert!(!everything.contains("secret"), "old content must not survive anywhere: {everything}");

        let msg = assert_error(app.edit(&ada, id, "revive").await, StatusCode::CONFLICT).await;
        assert!(msg.contains("deleted"), "{msg}");
        assert_error(app.delete(&ada, id).await, StatusCode::CONFLICT).await;
    }

    async fn sending_leaves_connections_for_the_other_writes(app, config: |c: &mut nexus::config::Config| c.database_max_connections = 2) {
        // The smallest pool: on PostgreSQL one write connection, which the messaging writer
        // must not keep while it has nothing to do.
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        for i in 0..3 {
            app.send_ok(&ada, &bob, &format!("m{i}")).await;
        }
        let cyd = app.register("Cyd").await;
        let r = app.post_json("/users/fcm/register", &json!({"deviceToken": "phone"}), Some(&cyd.token)).await;
        assert!(r.status().is_success(), "{}", r.status());
        app.send_ok(&cyd, &ada, "hello").await;
        assert_eq!(app.conversation(&ada, &cyd).await.len(), 1);
    }

    async fn the_send_rate_limit_refuses_and_stores_nothing(app, config: |c: &mut nexus::config::Config| c.rate_limit_messages_per_minute = 5) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        for i in 0..5 {
            app.send_ok(&ada, &bob, &format!("m{i}")).await;
        }
        let r = app.send(&ada, &bob, "one too many").await;
        assert!(r.headers().contains_key("retry-after"));
        assert_error(r, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(app.conversation(&bob, &ada).await.len(), 5);
        // the limit is per user
        app.send_ok(&bob, &ada, "bob is fine").await;
    }
}

async fn in_memory_app() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |c| {
        c.database_url = "sqlite::memory:".into()
    })
    .await
    .expect("sqlite app")
}

/// On an in-memory database the writer borrows the one connection only for each
/// transaction, so its reload of a retried send (a read on that same connection) finds the
/// message as it is now: edited here. (It used to hold the connection, the reload timed out
/// after the pool's 5 s and the answer fell back to the message as first stored.)
#[tokio::test]
async fn on_an_in_memory_database_a_retry_is_answered_with_the_message_as_stored() {
    let app = in_memory_app().await;
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    let body = json!({"receiverId": bob.id, "content": "once", "clientMessageId": "tmp-m"});
    let first: Value = app
        .post_json("/messages", &body, Some(&ada.token))
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap();
    assert_eq!(app.edit(&ada, id, "twice").await.status(), StatusCode::OK);
    let again = app.post_json("/messages", &body, Some(&ada.token)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["content"], "twice");
    assert_eq!(again["isEdited"], true, "{again}");
    assert!(again["editedAt"].is_string(), "{again}");
}

/// `DATABASE_URL=sqlite::memory:` keeps nothing, but works: what one connection writes, the
/// readers see (each connection to `:memory:` would otherwise be a database of its own).
#[tokio::test]
async fn an_in_memory_database_serves_reads_and_writes() {
    let app = in_memory_app().await;
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    let m = app.send_ok(&ada, &bob, "kept in memory").await;
    assert_eq!(app.conversation(&bob, &ada).await[0]["id"], m["id"]);
    let feed = app.sync_all(&bob, 0).await;
    assert_eq!(feed.len(), 1, "{feed:?}");
    let login = app
        .post_json(
            "/auth/login",
            &json!({"email": ada.email, "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(login.status(), StatusCode::OK);
}
