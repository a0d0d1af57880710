//! `/auth`: register and log in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use nexus_protocol::AuthResponse;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{AuthSession, ClientIp, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/password", post(change_password))
}

#[derive(Deserialize)]
struct RegisterBody {
    name: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// 200 `{accessToken, user}` with a new token; every older token of the user is refused
/// from now on and their sockets are closed with `FORCE_DISCONNECT {reason: "token_revoked"}`.
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
