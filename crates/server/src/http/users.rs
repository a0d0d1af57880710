//! `/users`: the current user, user search and push devices (FCM tokens, Web Push
//! subscriptions).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use nexus_protocol::{
    Device, User, UserFound, UserWithDevices, VapidPublicKey, WebPushSubscription,
};
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
        .route("/users/webpush/subscribe", post(subscribe))
        .route("/users/webpush/unsubscribe", post(unsubscribe))
        .route("/users/webpush/vapid-public-key", get(vapid_public_key))
        .route("/users/devices", get(devices))
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
) -> Result<axum::Json<Vec<UserFound>>, ApiError> {
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
            .push
            .devices
            .register_fcm(me, &body.device_token)
            .await?,
    ))
}

/// Without a `deviceToken`, every FCM token of the user is unregistered (log out
/// everywhere).
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
            .push
            .devices
            .unregister_fcm(me, body.device_token.as_deref())
            .await?,
    ))
}

async fn subscribe(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(subscription): Json<WebPushSubscription>,
) -> Result<(StatusCode, axum::Json<Device>), ApiError> {
    let device = state
        .push
        .devices
        .subscribe_webpush(me, &subscription)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(device)))
}

#[derive(Deserialize)]
struct Unsubscribe {
    endpoint: String,
}

async fn unsubscribe(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(body): Json<Unsubscribe>,
) -> Result<StatusCode, ApiError> {
    state
        .push
        .devices
        .unsubscribe_webpush(me, &body.endpoint)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn vapid_public_key(
    State(state): State<AppState>,
) -> Result<axum::Json<VapidPublicKey>, ApiError> {
    Ok(axum::Json(state.push.devices.vapid_public_key()?))
}

async fn devices(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<Vec<Device>>, ApiError> {
    Ok(axum::Json(state.push.devices.list(me).await?))
}
