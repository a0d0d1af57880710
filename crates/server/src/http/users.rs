//! `/users`: the current user, user search and push devices (FCM tokens, Web Push
//! subscriptions).

use super::error::documented as E;
use axum::extract::State;
use axum::http::StatusCode;
use nexus_protocol::{
    Device, User, UserFound, UserWithDevices, VapidPublicKey, WebPushSubscription,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AuthUser, Json, Query};
use crate::error::DomainError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(search))
        .routes(routes!(register_device))
        .routes(routes!(unregister_device))
        .routes(routes!(subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(vapid_public_key))
        .routes(routes!(devices))
}

#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "the caller", body = User), E::Unauthorized,
        E::Unavailable))]
async fn me(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.accounts.me(me).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    search: Option<String>,
}

/// Users to start a conversation with, by name or exact e-mail (20 at most).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, description = "matching users; e-mails only of contacts and an exact match", body = Vec<UserFound>),
        E::BadRequest,
        E::Unauthorized,
        E::RateLimited,
        E::Unavailable))]
async fn search(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Vec<UserFound>>, ApiError> {
    Ok(axum::Json(
        state.accounts.search(me, q.search.as_deref()).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegisterDevice {
    device_token: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct UnregisterDevice {
    device_token: Option<String>,
}

#[utoipa::path(post, path = "/users/fcm/register", tag = "devices", security(("bearer" = [])),
    request_body = RegisterDevice,
    responses((status = 200, description = "the user with its FCM tokens", body = UserWithDevices),
        E::BadRequest,
        E::Unauthorized,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
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
#[utoipa::path(post, path = "/users/fcm/unregister", tag = "devices", security(("bearer" = [])),
    request_body(content = Option<UnregisterDevice>, description = "empty: every FCM token of the caller"),
    responses((status = 200, description = "the user with its remaining FCM tokens", body = UserWithDevices),
        E::BadRequest,
        E::Unauthorized,
        E::TooLarge,
        E::Unavailable))]
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

#[utoipa::path(post, path = "/users/webpush/subscribe", tag = "devices", security(("bearer" = [])),
    request_body = WebPushSubscription,
    responses((status = 201, description = "the device", body = Device), E::BadRequest,
        E::Unauthorized,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct Unsubscribe {
    endpoint: String,
}

#[utoipa::path(post, path = "/users/webpush/unsubscribe", tag = "devices", security(("bearer" = [])),
    request_body = Unsubscribe,
    responses((status = 204, description = "unsubscribed (or was not subscribed)"), E::BadRequest,
        E::Unauthorized,
        E::NotFound,
        E::TooLarge,
        E::NotJson,
        E::Unavailable))]
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

#[utoipa::path(get, path = "/users/webpush/vapid-public-key", tag = "devices",
    responses((status = 200, description = "the applicationServerKey for pushManager.subscribe", body = VapidPublicKey),
        E::NotFound,
        E::Unavailable))]
async fn vapid_public_key(
    State(state): State<AppState>,
) -> Result<axum::Json<VapidPublicKey>, ApiError> {
    Ok(axum::Json(state.push.devices.vapid_public_key()?))
}

#[utoipa::path(get, path = "/users/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, description = "the caller's own push devices", body = Vec<Device>), E::Unauthorized,
        E::Unavailable))]
async fn devices(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<Vec<Device>>, ApiError> {
    Ok(axum::Json(state.push.devices.list(me).await?))
}
