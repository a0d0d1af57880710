//! Push notifications end to end, against the fake FCM and the fake Web Push service:
//! one push per device of a user connected nowhere, none while they are online, dead
//! devices removed, retries that honour `Retry-After` and stop, OAuth tokens cached and
//! renewed, a push service that hangs or a full queue never slowing or failing a send.

use std::time::{Duration, Instant};

use nexus::config::Config;
use nexus::push::PushCounts;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::fcm::FakeFcm;
use crate::fakes::webpush::{FakePushService, Subscription};
use crate::fakes::{gaps, Answer};
use crate::helpers::{spawn_app_with_push, Backend, TestApp, TestUser};

/// A configuration pushing to the fakes, with short retries.
fn push_config(fcm: &FakeFcm, vapid_private: &str) -> impl FnOnce(&mut Config) {
    let (json, base) = (fcm.service_account_json.clone(), fcm.base_url.clone());
    let vapid = vapid_private.to_string();
    move |c: &mut Config| {
        c.fcm_service_account_json = Some(json);
        c.fcm_api_base_url = base;
        c.vapid_private_key = Some(vapid);
        c.vapid_subject = Some("mailto:ops@example.org".into());
        c.webpush_allow_insecure_endpoints = true;
        c.push_max_retries = 2;
        c.push_timeout_seconds = 300;
    }
}

struct Push {
    app: TestApp,
    fcm: FakeFcm,
    web: FakePushService,
    vapid_public: String,
}

async fn start(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Push> {
    let fcm = FakeFcm::start().await;
    let web = FakePushService::start().await;
    let (private, public) = nexus::push::vapid::generate();
    let base = push_config(&fcm, &private);
    let app = spawn_app_with_push(backend, |c| {
        base(c);
        adjust(c);
    })
    .await?;
    Some(Push {
        app,
        fcm,
        web,
        vapid_public: public,
    })
}

impl Push {
    async fn fcm_device(&self, user: &TestUser, token: &str) {
        let resp = self
            .app
            .post_json(
                "/users/fcm/register",
                &json!({"deviceToken": token}),
                Some(&user.token),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    async fn web_device(&self, user: &TestUser) -> Subscription {
        let sub = self.web.subscribe();
        let resp = self
            .app
            .post_json("/users/webpush/subscribe", &sub.json(), Some(&user.token))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        sub
    }

    /// Waits until `finished` pushes to devices are done and the queue is idle.
    async fn settle(&self, finished: u64) -> PushCounts {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let counts = self.app.state.push.metrics();
            if counts.finished() >= finished && self.app.state.push.is_idle() {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "pushes did not finish: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn device_tokens(&self, user: &TestUser) -> Vec<String> {
        let devices = self.app.get_ok("/users/devices", user).await;
        devices
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["token"]
                    .as_str()
                    .or(d["endpoint"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn assert_nothing_malformed(&self) {
        assert!(
            self.fcm.rejected().is_empty(),
            "fake FCM refused: {:?}",
            self.fcm.rejected()
        );
        assert!(
            self.web.rejected().is_empty(),
            "fake push service refused: {:?}",
            self.web.rejected()
        );
    }
}

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

/// Sends `n` messages over REST from `from` to `to`; returns each one's latency.
async fn send_latencies(app: &TestApp, from: &TestUser, to: &TestUser, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let resp = app.send(from, to, &format!("latency probe {i}")).await;
        took.push(start.elapsed());
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    took
}

/// p50, p99 and max.
fn summary(mut took: Vec<Duration>) -> (Duration, Duration, Duration) {
    took.sort();
    let n = took.len();
    (took[n / 2], took[n * 99 / 100], took[n - 1])
}

/// Rounds of sends with both push services answering and with both hung, taken in turns so
/// that the machine's load falls on both alike; the figures go to the test's output
/// (`--nocapture`), never into an assertion. What is asserted: while the push services hang,
/// every send is answered with pushes still held open and the queue dropping the surplus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_push_service_does_not_slow_sends() {
    let Some(p) = start(Backend::Sqlite, |c| {
        c.push_workers = 2;
        c.push_queue_size = 16;
    })
    .await
    else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    p.fcm_device(&bob, "bob-phone").await;
    let browser = p.web_device(&bob).await;
    let (rounds, per_phase) = (5, 40);
    send_latencies(&p.app, &ada, &bob, 20).await; // warm-up
    p.settle(40).await;

    let (mut answering, mut stuck) = (Vec::new(), Vec::new());
    let mut dropped_while_stuck = 0;
    for _ in 0..rounds {
        answering.extend(send_latencies(&p.app, &ada, &bob, per_phase).await);
        let done = p.app.state.push.metrics().finished();
        p.settle(done).await;

        // Both push services stop answering: every worker ends up stuck on a request.
        let (held, before) = (
            p.fcm.script().held() + p.web.script().held(),
            p.app.state.push.metrics(),
        );
        p.fcm.script().hang_all(true);
        p.web.script().hang_all(true);
        let took = tokio::time::timeout(
            Duration::from_secs(120),
            send_latencies(&p.app, &ada, &bob, per_phase),
        )
        .await
        .expect("sends waited for a hung push service");
        stuck.extend(took);
        assert!(
            p.fcm.script().held() + p.web.script().held() > held,
            "the push services were never reached while hung"
        );
        assert!(
            !p.app.state.push.is_idle(),
            "pushes still hang while every send has been answered"
        );
        let after = p.app.state.push.metrics();
        assert!(
            after.dropped > before.dropped,
            "a stuck queue fills up and drops: {after:?}"
        );
        dropped_while_stuck += after.dropped - before.dropped;

        p.fcm.script().hang_all(false);
        p.web.script().hang_all(false);
        let counts = p.app.state.push.metrics();
        p.settle(counts.finished()).await;
    }
    let (a, s) = (summary(answering), summary(stuck));
    eprintln!(
        "send latency over REST, {rounds} rounds of {per_phase} sends in each state (p50 / p99 / max): \
         push answering {:?} / {:?} / {:?}; push hung {:?} / {:?} / {:?}; {dropped_while_stuck} pushes dropped while hung",
        a.0, a.1, a.2, s.0, s.1, s.2
    );
    // Every message is stored and reaches bob by sync whatever happened to its push.
    let created = p
        .app
        .sync_all(&bob, 0)
        .await
        .iter()
        .filter(|e| e["type"] == "message.created")
        .count();
    assert_eq!(created, 20 + 2 * rounds * per_phase);
    assert!(
        p.web.received_by(&browser).len() >= 20 + rounds * per_phase,
        "the browser got every push while answering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_pushes_never_messages() {
    let Some(p) = start(Backend::Sqlite, |c| {
        c.push_workers = 1;
        c.push_queue_size = 1;
    })
    .await
    else {
        return;
    };
    let (ada, bob) = (p.app.register("Ada").await, p.app.register("Bob").await);
    p.fcm_device(&bob, "bob-phone").await;
    p.fcm.script().hang_all(true);

    p.app.send_ok(&ada, &bob, "first").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while p
        .fcm
        .script()
        .held
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the first push never reached FCM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The one worker is stuck on "first"; "second" waits in the queue; the rest do not fit.
    for text in ["second", "third", "fourth", "fifth"] {
        p.app.send_ok(&ada, &bob, text).await;
    }
    let counts = p.app.state.push.metrics();
    assert_eq!(counts.dropped, 3, "{counts:?}");
    let history: Vec<String> = p
        .app
        .conversation(&bob, &ada)
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(history, ["first", "second", "third", "fourth", "fifth"]);
}
