//! Dead devices, retries, OAuth tokens.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_their_push_service_calls_dead_are_removed() {
    let Some(p) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    let fcm = p.fcm.script();
    fcm.script("unregistered", [], Answer::Unregistered);
    fcm.script("invalid-token", [], Answer::InvalidToken);
    fcm.script("other-sender", [], Answer::SenderIdMismatch);
    fcm.script("bad-payload", [], Answer::InvalidPayload);
    for token in [
        "unregistered",
        "invalid-token",
        "other-sender",
        "bad-payload",
        "fine",
    ] {
        p.fcm_device(&bob, token).await;
    }
    let (gone404, gone410, alive) = (
        p.web_device(&bob).await,
        p.web_device(&bob).await,
        p.web_device(&bob).await,
    );
    p.web
        .script()
        .script(&gone404.id, [], Answer::Status(404, None));
    p.web
        .script()
        .script(&gone410.id, [], Answer::Status(410, None));

    p.app.send_ok(&ada, &bob, "anyone there?").await;
    let counts = p.settle(8).await;
    assert_eq!(
        (counts.sent, counts.removed, counts.failed),
        (2, 5, 1),
        "{counts:?}"
    );
    let mut left = p.device_tokens(&bob).await;
    left.sort();
    let mut expected = vec![
        "bad-payload".to_string(),
        "fine".to_string(),
        alive.endpoint.clone(),
    ];
    expected.sort();
    assert_eq!(left, expected, "the dead devices are gone, the others stay");

    // The next message goes only to the devices that are left.
    p.app.send_ok(&ada, &bob, "again").await;
    p.settle(11).await;
    assert_eq!(p.fcm.script().attempts("unregistered").len(), 1);
    assert_eq!(
        p.fcm.script().attempts("bad-payload").len(),
        2,
        "an invalid payload is not the device's fault"
    );
    assert_eq!(p.web.script().attempts(&gone410.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failures_are_retried_honouring_retry_after_and_stop() {
    let Some(p) = start(Backend::Sqlite, |c| c.push_max_retries = 2).await else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    let fcm = p.fcm.script();
    fcm.script(
        "flaky",
        [Answer::Status(503, None), Answer::Status(500, None)],
        Answer::Ok,
    );
    fcm.script("quota", [Answer::Status(429, Some(1))], Answer::Ok);
    fcm.script("down", [], Answer::Status(503, None));
    for token in ["flaky", "quota", "down"] {
        p.fcm_device(&bob, token).await;
    }
    let busy = p.web_device(&bob).await;
    p.web
        .script()
        .script(&busy.id, [Answer::Status(429, Some(1))], Answer::Ok);

    p.app.send_ok(&ada, &bob, "eventually").await;
    let counts = p.settle(4).await;
    assert_eq!((counts.sent, counts.failed), (3, 1), "{counts:?}");
    assert_eq!(counts.retried, 2 + 1 + 2 + 1, "{counts:?}");
    assert_eq!(fcm.attempts("flaky").len(), 3);
    assert_eq!(p.fcm.accepted_for("flaky").len(), 1);
    assert_eq!(
        fcm.attempts("down").len(),
        3,
        "one attempt and PUSH_MAX_RETRIES retries, then it stops"
    );
    let quota = gaps(&fcm.attempts("quota"));
    assert!(
        quota[0] >= Duration::from_secs(1),
        "Retry-After: 1 waited for: {quota:?}"
    );
    let web = gaps(&p.web.script().attempts(&busy.id));
    assert!(
        web[0] >= Duration::from_secs(1),
        "Retry-After: 1 waited for: {web:?}"
    );
    assert_eq!(p.web.received_by(&busy).len(), 1);
    assert_eq!(
        p.device_tokens(&bob).await.len(),
        4,
        "temporary failures remove nothing"
    );
    p.assert_nothing_malformed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_is_cached_and_a_401_renews_it_once() {
    let Some(p) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    p.fcm_device(&bob, "bob-phone").await;
    for i in 0..3 {
        p.app.send_ok(&ada, &bob, &format!("message {i}")).await;
        p.settle(i + 1).await;
    }
    assert_eq!(
        p.fcm.token_requests(),
        1,
        "one access token for three pushes"
    );

    // Google stops taking the token (revoked, or expired early): one renewal, one retry.
    p.fcm
        .script()
        .script("bob-phone", [Answer::Unauthorized], Answer::Ok);
    p.app.send_ok(&ada, &bob, "after a 401").await;
    let counts = p.settle(4).await;
    assert_eq!(counts.sent, 4);
    assert_eq!(p.fcm.token_requests(), 2, "renewed once");
    assert_eq!(p.fcm.accepted_for("bob-phone").len(), 4);

    // A 401 even with a fresh token: renewed once more, then given up (no loop).
    p.fcm.script().script(
        "bob-phone",
        [Answer::Unauthorized, Answer::Unauthorized],
        Answer::Ok,
    );
    p.app.send_ok(&ada, &bob, "refused").await;
    let counts = p.settle(5).await;
    assert_eq!(counts.failed, 1, "{counts:?}");
    assert_eq!(p.fcm.token_requests(), 3);
    assert_eq!(p.fcm.script().attempts("bob-phone").len(), 3 + 2 + 2);
    p.assert_nothing_malformed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_is_renewed_shortly_before_it_expires() {
    let fcm = FakeFcm::start().await;
    // gcp_auth takes a token as expired 20 s before its end: one of 15 s is never reused.
    fcm.state
        .token_lifetime_secs
        .store(15, std::sync::atomic::Ordering::SeqCst);
    let (private, _) = nexus::push::vapid::generate();
    let Some(app) = spawn_app_with_push(Backend::Sqlite, push_config(&fcm, &private)).await else {
        return;
    };
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    app.post_json(
        "/users/fcm/register",
        &json!({"deviceToken": "t"}),
        Some(&bob.token),
    )
    .await;
    for i in 0..2u64 {
        app.send_ok(&ada, &bob, "hi").await;
        while app.state.push.metrics().sent < i + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        fcm.token_requests(),
        2,
        "a token about to expire is not used"
    );
}
