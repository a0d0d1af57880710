//! `/health` (the process answers), `/ready` (its dependencies answer too) and `/metrics`
//! (Prometheus text; bind or firewall it as operators do).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::{iso, now_ms};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// `/health` and `/ready` answers.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the handlers build the JSON
struct Status {
    /// `ok` (`/health`); `ready` or `unavailable` (`/ready`).
    status: String,
    timestamp: String,
    /// `/ready`: `up` or `down`.
    database: Option<String>,
    /// `/ready`: `sqlite` or `postgres`.
    backend: Option<String>,
    /// `/ready`: `up`, `down` or `not_configured`.
    redis: Option<String>,
}

/// Prometheus (OpenMetrics) text: bind or firewall it as operators do.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "the metrics", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "alive", body = Status)))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "timestamp": iso(now_ms()) }))
}

/// Readiness: 200 only when the database (and Redis, if configured) answer.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready", body = Status),
        (status = 503, description = "a dependency does not answer", body = Status)))]
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
