//! A hung push service and a full queue: sends are never slowed or failed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::*;

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
