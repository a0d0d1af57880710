//! The HTTP API (docs/protocol.md): one module per resource, each with its `router()`.

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::state::AppState;

mod auth;
pub mod error;
pub mod extract;
mod health;
mod messages;
mod users;

/// Largest request body accepted; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(messages::router())
        .merge(health::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
