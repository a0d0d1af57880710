//! `/auth`: register and log in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use nexus_protocol::AuthResponse;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ClientIp, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
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
