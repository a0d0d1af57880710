//! `/metrics`: Prometheus text of what an operator watches (docs/operations.md, "Metrics").
//! The core metrics are per process and this binary runs many applications at once, so
//! these tests check what their own requests add, never exact totals (the python suite
//! checks exact values against a server of its own).

use reqwest::StatusCode;

use crate::helpers::TestApp;
use crate::on_both_backends;

/// The value of the sample `series` (name and labels exactly as exposed), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    resp.text().await.unwrap()
}

on_both_backends! {
    async fn a_send_over_http_shows_in_the_metrics(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let before = scrape(&app).await;
        let stored = |t: &str| sample(t, "nexus_messages_stored_total").unwrap_or(0.0);
        let posts = |t: &str| {
            sample(t, r#"nexus_http_requests_total{method="POST",route="/messages",status="201"}"#)
                .unwrap_or(0.0)
        };
        let timed = |t: &str| {
            sample(t, r#"nexus_send_duration_seconds_count{transport="http"}"#).unwrap_or(0.0)
        };
        app.send_ok(&ada, &bob, "hello").await;
        app.send_ok(&ada, &bob, "again").await;

        let after = scrape(&app).await;
        assert!(stored(&after) >= stored(&before) + 2.0, "{after}");
        assert!(posts(&after) >= posts(&before) + 2.0, "{after}");
        assert!(timed(&after) >= timed(&before) + 2.0, "{after}");
        assert!(sample(&after, "nexus_writer_batch_size_count").unwrap() >= 2.0);
        for name in [
            "nexus_sockets_connected",
            "nexus_writer_queue_depth",
            "nexus_password_hashes_waiting",
            "# TYPE nexus_writer_commit_duration_seconds histogram",
            "# TYPE nexus_database_duration_seconds histogram",
            "# TYPE nexus_rate_limited counter",
        ] {
            assert!(after.contains(name), "{name} missing:\n{after}");
        }
        // Routes are labelled as declared, never with the ids of a request.
        assert!(!after.contains(&bob.id), "an id in a label:\n{after}");
    }

    async fn an_unknown_path_is_labelled_unmatched(app) {
        let resp = app.client.get(app.url(&format!("/no/such/{}", uuid::Uuid::new_v4()))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let text = scrape(&app).await;
        assert!(
            sample(&text, r#"nexus_http_requests_total{method="GET",route="unmatched",status="404"}"#).unwrap_or(0.0) >= 1.0,
            "{text}"
        );
    }
}
