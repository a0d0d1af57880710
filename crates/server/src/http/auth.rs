//! `/auth`: register and log in.

use super::error::documented as E;
use axum::extract::State;
use axum::http::StatusCode;
use nexus_protocol::AuthResponse;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AuthSession, ClientIp, Json};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(change_password))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RegisterBody {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[schema(format = "email")]
    email: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 256)]
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginBody {
    email: String,
    password: String,
}

/// Creates an account and logs it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "the account and its access token", body = AuthResponse),
        E::BadRequest,
        E::Conflict,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
async fn register(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(body): Json<RegisterBody>,
) -> Result<(StatusCode, axum::Json<AuthResponse>), ApiError> {
    let answer = state
        .accounts
        .register(&body.name, &body.email, &body.password, client)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

/// Logs in (the same 401 for an unknown e-mail and a wrong password).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "an access token", body = AuthResponse),
        E::BadRequest,
        E::Unauthorized,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(body): Json<LoginBody>,
) -> Result<axum::Json<AuthResponse>, ApiError> {
    Ok(axum::Json(
        state
            .accounts
            .login(&body.email, &body.password, client)
            .await?,
    ))
}

/// 204: this token is refused from now on, and the sockets opened with it are told
/// `FORCE_DISCONNECT {reason: "token_revoked"}` and closed (on every node).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "this token is refused from now on"),
        E::Unauthorized,
        E::Unavailable))]
async fn logout(
    State(state): State<AppState>,
    AuthSession(session): AuthSession,
) -> Result<StatusCode, ApiError> {
    state.accounts.logout(&session).await?;
    if let Some(jti) = session.token_id {
        state.delivery.revoke_token(&jti.to_string()).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// 200 `{accessToken, user}` with a new token; every older token of the user is refused
/// from now on and their sockets are closed with `FORCE_DISCONNECT {reason: "token_revoked"}`.
#[utoipa::path(post, path = "/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "a new access token; every older one is refused", body = AuthResponse),
        E::BadRequest,
        E::Unauthorized,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
async fn change_password(
    State(state): State<AppState>,
    AuthSession(session): AuthSession,
    ClientIp(client): ClientIp,
    Json(body): Json<PasswordBody>,
) -> Result<axum::Json<AuthResponse>, ApiError> {
    let answer = state
        .accounts
        .change_password(
            session.user,
            &body.current_password,
            &body.new_password,
            client,
        )
        .await?;
    state.delivery.revoke_user(&session.user.as_string()).await;
    Ok(axum::Json(answer))
}
