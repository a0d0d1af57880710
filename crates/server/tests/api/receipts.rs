//! Delivery and read receipts: only the receiver, stored once.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::assert_error;
use crate::on_both_backends;

on_both_backends! {
    async fn only_the_receiver_marks_a_message_delivered_or_read(app) {
        let (ada, bob, eve) = (app.register("Ada").await, app.register("Bob").await, app.register("Eve").await);
        let m = app.send_ok(&ada, &bob, "hi").await;
        let id = m["id"].as_str().unwrap();
        for kind in ["delivered", "read"] {
            assert_error(app.mark(&ada, id, kind).await, StatusCode::FORBIDDEN).await;
            assert_error(app.mark(&eve, id, kind).await, StatusCode::NOT_FOUND).await;
            assert_error(app.mark(&bob, "not-a-uuid", kind).await, StatusCode::BAD_REQUEST).await;
            assert_error(app.mark(&bob, &uuid::Uuid::new_v4().to_string(), kind).await, StatusCode::NOT_FOUND).await;
        }
        let seen = &app.conversation(&ada, &bob).await[0];
        assert_eq!(seen["readReceipts"], serde_json::json!([]));
        assert_eq!(seen["deliveryReceipts"], serde_json::json!([]));

        let d: Value = app.mark(&bob, id, "delivered").await.json().await.unwrap();
        assert_eq!(d["messageId"], id);
        assert_eq!(d["userId"], bob.id.as_str());
        assert!(d["deliveredAt"].is_string());
        let r: Value = app.mark(&bob, id, "read").await.json().await.unwrap();
        assert_eq!(r["userId"], bob.id.as_str());
        assert!(r["readAt"].is_string());

        let seen = &app.conversation(&ada, &bob).await[0];
        assert_eq!(seen["readReceipts"][0]["userId"], bob.id.as_str());
        assert_eq!(seen["readReceipts"][0]["readAt"], r["readAt"]);
        assert_eq!(seen["deliveryReceipts"][0]["deliveredAt"], d["deliveredAt"]);
    }

    async fn a_receipt_is_stored_once(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let id = app.send_ok(&ada, &bob, "hi").await["id"].as_str().unwrap().to_string();
        let first: Value = app.mark(&bob, &id, "read").await.json().await.unwrap();
        let events_after_first = app.sync_all(&ada, 0).await.len();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let second = app.mark(&bob, &id, "read").await;
        assert_eq!(second.status(), StatusCode::OK);
        let second: Value = second.json().await.unwrap();
        assert_eq!(second["readAt"], first["readAt"], "the first read time stands");
        assert_eq!(app.sync_all(&ada, 0).await.len(), events_after_first, "no new change");
        let seen = &app.conversation(&ada, &bob).await[0];
        assert_eq!(seen["readReceipts"].as_array().unwrap().len(), 1);
    }
}
