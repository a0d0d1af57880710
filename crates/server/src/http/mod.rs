//! The HTTP API (docs/protocol.md): one module per resource, each with its `router()`.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

mod auth;
mod conversations;
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

/// The API's description; the paths come from the handlers' `#[utoipa::path]`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Nexus",
        description = "Real-time messaging: the HTTP API (the Socket.IO gateway at /ws is \
                       described in docs/protocol.md). Errors are `{statusCode, message, error}`."
    ),
    modifiers(&BearerAuth),
    // The error answers name it through `error::documented`, which does not register it.
    components(schemas(nexus_protocol::HttpError)),
    tags(
        (name = "auth", description = "accounts and access tokens"),
        (name = "users", description = "the caller and user search"),
        (name = "messages", description = "messages, history and sync"),
        (name = "conversations", description = "conversations and groups: members, history, read marks"),
        (name = "receipts", description = "delivery and read receipts"),
        (name = "devices", description = "push devices (FCM, Web Push)"),
        (name = "operations", description = "health, readiness, metrics, this document")
    )
)]
struct ApiDoc;

/// The `bearer` security scheme the authenticated routes name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// Every route of the API with its description.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(auth::router())
        .merge(users::router())
        .merge(messages::router())
        .merge(conversations::router())
        .merge(health::router())
        .routes(routes!(openapi_json))
}

/// The OpenAPI 3.1 document of every HTTP route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// This document: OpenAPI 3.1 of every HTTP route.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let json = DOCUMENT.get_or_init(|| openapi().to_json().unwrap_or_else(|_| "{}".into()));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json.clone(),
    )
        .into_response()
}

pub fn router() -> Router<AppState> {
    let (router, _) = api().split_for_parts();
    router
        .fallback(web::fallback)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
