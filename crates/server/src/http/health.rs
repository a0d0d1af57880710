//! `/health` (the process answers) and `/ready` (its dependencies answer too).

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
