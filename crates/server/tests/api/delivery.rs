//! The delivery step's push hand-off: a new message for a user connected nowhere goes to the
//! push queue, once, shaped as its recipient sees it; nothing else does.

use crate::on_both_backends;

on_both_backends! {
    async fn a_message_to_a_user_connected_nowhere_is_handed_to_the_push_queue(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let sent = app
            .post_json(
                "/messages",
                &serde_json::json!({"receiverId": bob.id, "content": "are you there?", "clientMessageId": "c1"}),
                Some(&ada.token),
            )
            .await;
        assert_eq!(sent.status(), 201);
        let pushes = app.pushes.take();
        assert_eq!(pushes.len(), 1, "one push for the offline receiver, none for the sender");
        assert_eq!(pushes[0].recipient.as_string(), bob.id);
        assert_eq!(pushes[0].message.content, "are you there?");
        assert_eq!(pushes[0].message.sender.name, "Ada");

        // A retry stores nothing new and pushes nothing; receipts and edits push nothing.
        let again = app
            .post_json(
                "/messages",
                &serde_json::json!({"receiverId": bob.id, "content": "are you there?", "clientMessageId": "c1"}),
                Some(&ada.token),
            )
            .await;
        assert_eq!(again.status(), 201);
        let id = pushes[0].message.id.clone();
        assert_eq!(app.mark(&bob, &id, "read").await.status(), 200);
        assert_eq!(app.edit(&ada, &id, "still there?").await.status(), 200);
        assert!(app.pushes.take().is_empty());
    }
}
