//! The HTTP API (docs/protocol.md): one module per resource, each with its `router()`.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::state::AppState;

mod auth;
pub mod error;
pub mod extract;
mod health;
mod messages;
mod users;
pub mod web;

/// Largest request body accepted; larger ones are answered 413. Above the largest valid
/// request: a message of `MessageBody::MAX_CHARS` characters outside the Basic Multilingual
/// Plane, each JSON-escaped as a surrogate pair (`\ud83d\ude00`, 12 bytes), is 120 kB, so
/// content over the limit is refused by the domain (400) with a reason, not here.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Largest Socket.IO packet (and WebSocket message) accepted: socket.io's own default, far
/// above the largest valid event, so an oversized message is answered `VALIDATION_FAILED`
/// by the domain and the socket stays up. Only a packet beyond this closes the connection.
pub const MAX_SOCKET_PAYLOAD_BYTES: usize = 1_000_000;

/// Counts every request and its duration by method, declared route and status
/// (`nexus_http_requests_total`, `nexus_http_request_duration_seconds`).
async fn observe(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let labels = crate::metrics::HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    let node = crate::metrics::node();
    node.http_requests.get_or_create(&labels).inc();
    node.http_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(messages::router())
        .merge(health::router())
        .fallback(web::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
