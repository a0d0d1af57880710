//! `/health` (the process answers), `/ready` (its dependencies answer too) and `/metrics`
//! (Prometheus text; bind or firewall it as operators do).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::clock::{iso, now_ms};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "timestamp": iso(now_ms()) }))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let report = state.health.check().await;
    let status = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if report.ready() { "ready" } else { "unavailable" },
            "database": report.database_status(),
            "backend": state.store.backend().name(),
            "redis": report.redis_status(),
            "timestamp": iso(now_ms()),
        })),
    )
}
