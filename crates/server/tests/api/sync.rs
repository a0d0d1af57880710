//! The gap-free change feed (`GET /sync`) and the brief's timestamp catch-up.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::assert_error;
use crate::on_both_backends;

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

on_both_backends! {
    async fn every_change_reaches_both_feeds_in_order_without_gaps(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let m = app.send_ok(&ada, &bob, "v1").await;
        let id = m["id"].as_str().unwrap();
        app.edit(&ada, id, "v2").await;
        app.mark(&bob, id, "delivered").await;
        app.mark(&bob, id, "read").await;
        app.delete(&ada, id).await;

        let expected = ["message.created", "message.edited", "message.delivered", "message.read", "message.deleted"];
        for user in [&ada, &bob] {
            let events = app.sync_all(user, 0).await;
            assert_eq!(kinds(&events), expected);
            assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
            for e in &events {
                assert_eq!(e["messageId"], id);
                assert_eq!(e["message"]["content"], "This message has been deleted", "events carry the current state");
            }
            assert_eq!(events[2]["userId"], bob.id.as_str(), "the receiver made the receipt");
            assert_eq!(events[1]["userId"], ada.id.as_str());
        }
        assert_eq!(m["seq"], 1);
        // an unrelated user's feed is untouched
        let carl = app.register("Carl").await;
        assert!(app.sync_all(&carl, 0).await.is_empty());
    }

    async fn the_feed_pages_with_a_cursor(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        for i in 0..7 {
            app.send_ok(&ada, &bob, &format!("m{i}")).await;
        }
        let p1 = app.get_ok("/sync?since=0&limit=3", &bob).await;
        assert_eq!(seqs(p1["events"].as_array().unwrap()), [1, 2, 3]);
        assert_eq!(p1["hasMore"], true);
        assert_eq!(p1["nextCursor"], 3);
        let p2 = app.get_ok("/sync?since=3&limit=3", &bob).await;
        assert_eq!(seqs(p2["events"].as_array().unwrap()), [4, 5, 6]);
        let p3 = app.get_ok("/sync?since=6&limit=3", &bob).await;
        assert_eq!(seqs(p3["events"].as_array().unwrap()), [7]);
        assert_eq!(p3["hasMore"], false);
        let p4 = app.get_ok("/sync?since=7", &bob).await;
        assert_eq!(p4["events"], serde_json::json!([]));
        assert_eq!(p4["nextCursor"], 7, "nothing new: the cursor stays");
        let contents: Vec<&str> = p1["events"].as_array().unwrap().iter().map(|e| e["message"]["content"].as_str().unwrap()).collect();
        assert_eq!(contents, ["m0", "m1", "m2"]);

        let ahead = assert_error(app.get("/sync?since=8", &bob.token).await, StatusCode::BAD_REQUEST).await;
        assert!(ahead.contains("latest seq is 7"), "{ahead}");
        for bad in ["/sync?since=-1", "/sync?since=abc", "/sync?limit=0", "/sync?limit=100000"] {
            assert_error(app.get(bad, &bob.token).await, StatusCode::BAD_REQUEST).await;
        }
    }

    async fn timestamp_catch_up_also_returns_older_messages_changed_since(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let old_edited = app.send_ok(&ada, &bob, "old, to be edited").await;
        let old_read = app.send_ok(&ada, &bob, "old, to be read").await;
        let old_deleted = app.send_ok(&ada, &bob, "old, to be deleted").await;
        let _untouched = app.send_ok(&ada, &bob, "old, untouched").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cut = app.get_ok("/health", &bob).await["timestamp"].as_str().unwrap().to_string();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        app.edit(&ada, old_edited["id"].as_str().unwrap(), "edited").await;
        app.mark(&bob, old_read["id"].as_str().unwrap(), "read").await;
        app.delete(&ada, old_deleted["id"].as_str().unwrap()).await;
        let new = app.send_ok(&bob, &ada, "new").await;

        let got = app.get_ok(&format!("/messages/sync?lastMessageTimestamp={cut}"), &bob).await;
        let ids: Vec<&str> = got.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [&old_edited["id"], &old_read["id"], &old_deleted["id"], &new["id"]].map(|v| v.as_str().unwrap()));
        assert_eq!(got[0]["content"], "edited");
        assert_eq!(got[1]["readReceipts"][0]["userId"], bob.id.as_str());
        assert!(got[2]["deletedAt"].is_string());

        let all = app.get_ok("/messages/sync", &bob).await;
        assert_eq!(all.as_array().unwrap().len(), 5, "no timestamp: everything");
        assert_error(app.get("/messages/sync?lastMessageTimestamp=yesterday", &bob.token).await, StatusCode::BAD_REQUEST).await;
    }
}
