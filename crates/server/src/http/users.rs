//! `/users`: the current user, user search and push device registration.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use nexus_protocol::{User, UserWithDevices};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{AuthUser, Json, Query};
use crate::error::DomainError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(me))
        .route("/users", get(search))
        .route("/users/fcm/register", post(register_device))
        .route("/users/fcm/unregister", post(unregister_device))
}

async fn me(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.accounts.me(me).await?))
}

#[derive(Deserialize)]
struct SearchQuery {
    search: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    Ok(axum::Json(
        state.accounts.search(me, q.search.as_deref()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterDevice {
    device_token: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UnregisterDevice {
    device_token: Option<String>,
}

async fn register_device(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(body): Json<RegisterDevice>,
) -> Result<axum::Json<UserWithDevices>, ApiError> {
    Ok(axum::Json(
        state
            .accounts
            .register_device(me, &body.device_token)
            .await?,
    ))
}

/// Without a `deviceToken`, every device of the user is unregistered (log out everywhere).
async fn unregister_device(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    body: axum::body::Bytes,
) -> Result<axum::Json<UserWithDevices>, ApiError> {
    let body: UnregisterDevice = if body.iter().all(u8::is_ascii_whitespace) {
        UnregisterDevice::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| DomainError::Validation(format!("invalid JSON body: {e}")))?
    };
    Ok(axum::Json(
        state
            .accounts
            .unregister_device(me, body.device_token.as_deref())
            .await?,
    ))
}
