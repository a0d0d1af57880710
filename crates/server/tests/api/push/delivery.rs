//! Who gets a push, and what it says.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

async fn offline_receiver_gets_one_push_per_device(backend: Backend) {
    let Some(p) = start(backend, |_| {}).await else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    p.fcm_device(&bob, "bob-phone").await;
    p.fcm_device(&bob, "bob-tablet").await;
    let browser = p.web_device(&bob).await;
    p.fcm_device(&ada, "ada-phone").await;

    let message = p.app.send_ok(&ada, &bob, "Hello! How are you?").await;
    let counts = p.settle(3).await;
    assert_eq!(
        (counts.sent, counts.failed, counts.removed),
        (3, 0, 0),
        "{counts:?}"
    );
    p.assert_nothing_malformed();

    for token in ["bob-phone", "bob-tablet"] {
        let got = p.fcm.accepted_for(token);
        assert_eq!(got.len(), 1, "exactly one push to {token}");
        let m = &got[0]["message"];
        assert_eq!(m["notification"]["title"], "New message from Ada");
        assert_eq!(m["notification"]["body"], "Hello! How are you?");
        assert_eq!(m["data"]["type"], "new_message");
        assert_eq!(m["data"]["messageId"], message["id"]);
        assert_eq!(m["data"]["senderName"], "Ada");
        assert_eq!(m["data"]["clickAction"], "/messages");
        assert!(m["data"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert_eq!(m["android"]["priority"], "high");
        assert_eq!(m["android"]["ttl"], "86400s");
        let tag = m["android"]["notification"]["tag"].as_str().unwrap();
        assert_eq!(
            m["apns"]["payload"]["aps"]["thread-id"], tag,
            "one thread per conversation"
        );
        assert_eq!(m["apns"]["headers"]["apns-priority"], "10");
    }
    assert!(
        p.fcm.accepted_for("ada-phone").is_empty(),
        "the sender is not pushed"
    );

    let web = p.web.received_by(&browser);
    assert_eq!(web.len(), 1, "exactly one push to the browser");
    assert_eq!(web[0].payload["title"], "New message from Ada");
    assert_eq!(web[0].payload["body"], "Hello! How are you?");
    assert_eq!(web[0].payload["data"]["messageId"], message["id"]);
    assert_eq!(web[0].urgency, "high");
    assert_eq!(web[0].ttl, "86400");
    assert_eq!(web[0].vapid_key, p.vapid_public);

    // The operator sees the same counts.
    let metrics = p
        .app
        .client
        .get(p.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"nexus_push_sent_total{kind="fcm"} 2"#,
        r#"nexus_push_sent_total{kind="webpush"} 1"#,
        "nexus_push_dropped_total 0",
        "nexus_push_queued 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_receiver_gets_exactly_one_push_per_device_sqlite() {
    offline_receiver_gets_one_push_per_device(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_receiver_gets_exactly_one_push_per_device_postgres() {
    offline_receiver_gets_one_push_per_device(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_with_a_connected_socket_gets_no_push() {
    let Some(p) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    p.fcm_device(&bob, "bob-phone").await;
    let browser = p.web_device(&bob).await;

    let target = nexus_bench::sio::Target::parse(&p.app.address).unwrap();
    let socket = nexus_bench::sio::SioConn::connect(
        &target,
        &bob.token,
        None,
        nexus_bench::sio::ws_config(4096),
    )
    .await
    .unwrap();
    p.app.send_ok(&ada, &bob, "you are online").await;
    p.settle(0).await;
    assert_eq!(
        p.fcm.script().all_attempts() + p.web.received().len(),
        0,
        "pushed to an online user"
    );

    // Once the socket is gone, the next message is pushed.
    socket.close().await;
    let bob_id = nexus::domain::UserId::parse(&bob.id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p
        .app
        .state
        .presence
        .online_among(&[bob_id])
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "bob never went offline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.app.send_ok(&ada, &bob, "now you are not").await;
    p.settle(2).await;
    assert_eq!(p.fcm.accepted_for("bob-phone").len(), 1);
    assert_eq!(p.web.received_by(&browser).len(), 1);
    assert_eq!(
        p.fcm.accepted_for("bob-phone")[0]["message"]["notification"]["body"],
        "now you are not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_push_carries_only_its_own_conversation() {
    let Some(p) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (ada, bob, cy) = (
        p.app.register("Ada").await,
        p.app.register("Bob").await,
        p.app.register("Cy").await,
    );
    p.fcm_device(&bob, "bob-phone").await;
    let from_ada = p.app.send_ok(&ada, &bob, "ada's secret plan").await;
    p.settle(1).await;
    let from_cy = p.app.send_ok(&cy, &bob, "cy's surprise party").await;
    p.settle(2).await;
    let got = p.fcm.accepted_for("bob-phone");
    assert_eq!(got.len(), 2);
    let (first, second) = (got[0].to_string(), got[1].to_string());
    assert!(
        first.contains("ada's secret plan") && first.contains(from_ada["id"].as_str().unwrap())
    );
    assert!(
        !first.contains("surprise")
            && !first.contains(from_cy["id"].as_str().unwrap())
            && !first.contains("Cy")
    );
    assert!(
        second.contains("cy's surprise party")
            && !second.contains("secret")
            && !second.contains("Ada")
    );
    assert_ne!(
        got[0]["message"]["android"]["notification"]["tag"],
        got[1]["message"]["android"]["notification"]["tag"],
        "two conversations, two notifications"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_changed_hands_pushes_only_to_its_new_owner() {
    let Some(p) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (ada, bob, cy) = (
        p.app.register("Ada").await,
        p.app.register("Bob").await,
        p.app.register("Cy").await,
    );
    p.fcm_device(&bob, "shared-phone").await;
    p.fcm_device(&cy, "shared-phone").await; // Cy logs in on Bob's old phone
    p.app.send_ok(&ada, &bob, "for bob").await;
    p.settle(0).await;
    assert!(
        p.fcm.accepted_for("shared-phone").is_empty(),
        "bob's message reached cy's phone"
    );
    p.app.send_ok(&ada, &cy, "for cy").await;
    p.settle(1).await;
    let got = p.fcm.accepted_for("shared-phone");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"]["notification"]["body"], "for cy");
}
