//! `/messages` and `/sync`: thin adapters over the messaging domain. State changes made here
//! reach the users' sockets exactly as if they had come over Socket.IO.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use nexus_protocol::{Conversation, Message, MessagePage, SyncPage};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::{AuthUser, Json, Path, Query};
use crate::delivery::Origin;
use crate::error::DomainError;
use crate::messaging::{Outcome, ReceiptKind};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/messages", post(send))
        .route("/messages/conversation/{other}", get(conversation))
        .route("/messages/conversations/all", get(conversations))
        .route("/messages/sync", get(catch_up))
        .route("/messages/{id}", axum::routing::patch(edit).delete(delete))
        .route("/messages/{id}/history", get(history))
        .route("/messages/{id}/delivered", post(delivered))
        .route("/messages/{id}/read", post(read))
        .route("/sync", get(sync))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    receiver_id: String,
    content: String,
    client_message_id: Option<String>,
}

/// 201 with the stored message (for a retry with the same `clientMessageId`: the original).
async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(body): Json<SendBody>,
) -> Result<(StatusCode, axum::Json<Message>), ApiError> {
    let received = std::time::Instant::now();
    let sent = state
        .messaging
        .send(
            me,
            &body.receiver_id,
            &body.content,
            body.client_message_id.as_deref(),
        )
        .await?
        .committed()
        .await?;
    let message = sent
        .message
        .as_ref()
        .map(|m| m.to_wire(&me.as_string()))
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("sent message not loaded")))?;
    state
        .delivery
        .deliver(&Outcome::Sent(sent), Origin::Http)
        .await;
    crate::metrics::node().sent("http", received);
    Ok((StatusCode::CREATED, axum::Json(message)))
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<String>,
    limit: Option<String>,
}

async fn conversation(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(other): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<MessagePage>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .conversation(me, &other, q.before.as_deref(), q.limit.as_deref())
            .await?,
    ))
}

async fn conversations(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<axum::Json<Vec<Conversation>>, ApiError> {
    Ok(axum::Json(state.messaging.conversations(me).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CatchUpQuery {
    last_message_timestamp: Option<String>,
    limit: Option<String>,
}

async fn catch_up(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<CatchUpQuery>,
) -> Result<axum::Json<Vec<Message>>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .messages_since(me, q.last_message_timestamp.as_deref(), q.limit.as_deref())
            .await?,
    ))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<String>,
    limit: Option<String>,
}

async fn sync(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<SyncQuery>,
) -> Result<axum::Json<SyncPage>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .sync(me, q.since.as_deref(), q.limit.as_deref())
            .await?,
    ))
}

#[derive(Deserialize)]
struct EditBody {
    content: String,
}

async fn edit(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<EditBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .edit(me, &id, &body.content)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

async fn delete(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state.messaging.delete(me, &id).await?.committed().await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

async fn delivered(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .mark(me, &id, ReceiptKind::Delivered)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

async fn read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .mark(me, &id, ReceiptKind::Read)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    content: String,
    replaced_at: String,
}

/// Earlier versions of an edited message, oldest first (empty once deleted).
async fn history(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<HistoryEntry>>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .edit_history(me, &id)
            .await?
            .into_iter()
            .map(|(content, replaced_at)| HistoryEntry {
                content,
                replaced_at,
            })
            .collect(),
    ))
}

/// Delivers a change made over REST to every socket concerned and answers with the acting
/// user's own payload.
async fn answer(state: &AppState, outcome: Outcome) -> Value {
    state.delivery.deliver(&outcome, Origin::Http).await;
    outcome.actor_payload()
}
