//! `/messages` and `/sync`: thin adapters over the messaging domain. State changes made here
//! reach the users' sockets exactly as if they had come over Socket.IO.

use super::error::documented as E;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use nexus_protocol::events::{DeliveredUpdate, MessageDeleted, MessageEdited, ReadUpdate};
use nexus_protocol::{Conversation, Message, MessagePage, SyncPage};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AuthUser, Json, Path, Query};
use crate::delivery::Origin;
use crate::error::DomainError;
use crate::messaging::{Outcome, ReceiptKind};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(conversation))
        .routes(routes!(conversations))
        .routes(routes!(catch_up))
        .routes(routes!(edit, delete))
        .routes(routes!(history))
        .routes(routes!(delivered))
        .routes(routes!(read))
        .routes(routes!(sync))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    /// The person (1:1); give this or `conversationId`.
    #[schema(value_type = Option<uuid::Uuid>)]
    receiver_id: Option<String>,
    /// A conversation (a group, or a direct one by its id); give this or `receiverId`.
    #[schema(value_type = Option<uuid::Uuid>)]
    conversation_id: Option<String>,
    /// 1 to 10,000 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 10000)]
    content: String,
    /// The sender's id for this send: a retry with the same one stores nothing new.
    #[schema(min_length = 1, max_length = 128)]
    client_message_id: Option<String>,
}

/// 201 with the stored message (for a retry with the same `clientMessageId`: the original).
#[utoipa::path(post, path = "/messages", tag = "messages", security(("bearer" = [])),
    request_body = SendBody,
    responses((status = 201, description = "the stored message (a retry: the original)", body = Message),
        E::BadRequest,
        E::Unauthorized,
        E::NotFound,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(body): Json<SendBody>,
) -> Result<(StatusCode, axum::Json<Message>), ApiError> {
    let received = std::time::Instant::now();
    let sent = state
        .messaging
        .send_to(
            me,
            body.receiver_id.as_deref(),
            body.conversation_id.as_deref(),
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// `nextCursor` of the previous page.
    before: Option<String>,
    /// Messages per page (1-100, default 50).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// One conversation's messages, a page at a time, oldest first.
#[utoipa::path(get, path = "/messages/conversation/{other}", tag = "messages", security(("bearer" = [])),
    params(("other" = uuid::Uuid, Path, description = "the other user's id"), PageQuery),
    responses((status = 200, description = "a page of messages", body = MessagePage), E::BadRequest,
        E::Unauthorized,
        E::NotFound,
        E::Unavailable))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The previous page's cursor (its `X-Next-Cursor`, a conversation id).
    before: Option<String>,
    /// Entries per page (1-500, default 200).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// The caller's conversations, most recent first, a page at a time: the brief's array, with
/// the next page (if any) in the `Link` and `X-Next-Cursor` headers.
#[utoipa::path(get, path = "/messages/conversations/all", tag = "messages", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, description = "a page of conversations (the last page: no `Link`, no `X-Next-Cursor`)", body = Vec<Conversation>,
            headers(("Link" = String, description = "`</messages/conversations/all?before=…&limit=…>; rel=\"next\"` (RFC 8288): the next page; absent on the last page"),
                ("X-Next-Cursor" = String, description = "the next page's `before` (a conversation id); absent on the last page"))),
        E::BadRequest,
        E::Unauthorized,
        E::Unavailable))]
async fn conversations(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .messaging
        .conversations(me, q.before.as_deref(), q.limit.as_deref())
        .await?;
    let mut headers = HeaderMap::new();
    if let Some(cursor) = &page.next_cursor {
        // A conversation id (a UUID): nothing to escape.
        let next = format!(
            "</messages/conversations/all?before={cursor}&limit={}>; rel=\"next\"",
            page.limit
        );
        if let (Ok(link), Ok(cursor)) =
            (HeaderValue::from_str(&next), HeaderValue::from_str(cursor))
        {
            headers.insert(header::LINK, link);
            headers.insert("x-next-cursor", cursor);
        }
    }
    Ok((headers, axum::Json(page.conversations)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct CatchUpQuery {
    /// ISO-8601 time: messages created or changed after it.
    last_message_timestamp: Option<String>,
    /// At most this many (1-1000).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// The brief's catch-up by time (see `/sync` for the gap-free feed).
#[utoipa::path(get, path = "/messages/sync", tag = "messages", security(("bearer" = [])), params(CatchUpQuery),
    responses((status = 200, description = "messages created or changed since then", body = Vec<Message>), E::BadRequest,
        E::Unauthorized,
        E::Unavailable))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncQuery {
    /// `nextCursor` of the previous page (0: from the start).
    #[param(value_type = Option<i64>)]
    since: Option<String>,
    /// Events per page.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// The caller's gap-free change feed after `since`, in `seq` order.
#[utoipa::path(get, path = "/sync", tag = "messages", security(("bearer" = [])), params(SyncQuery),
    responses((status = 200, description = "a page of the feed", body = SyncPage), E::BadRequest,
        E::Unauthorized,
        E::Unavailable))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct EditBody {
    #[schema(min_length = 1, max_length = 10000)]
    content: String,
}

/// Edits one's own message (20 edits per message at most).
#[utoipa::path(patch, path = "/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the message id")), request_body = EditBody,
    responses((status = 200, description = "MESSAGE_EDITED with the sender's seq", body = MessageEdited), E::BadRequest,
        E::Unauthorized,
        E::Forbidden,
        E::NotFound,
        E::Conflict,
        E::TooLarge,
        E::NotJson,
        E::RateLimited,
        E::Unavailable))]
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

/// Deletes one's own message (the row stays, its content is replaced).
#[utoipa::path(delete, path = "/messages/{id}", tag = "messages", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "the message id")),
    responses((status = 200, description = "MESSAGE_DELETED with the sender's seq", body = MessageDeleted), E::BadRequest,
        E::Unauthorized,
        E::Forbidden,
        E::NotFound,
        E::Conflict,
        E::RateLimited,
        E::Unavailable))]
async fn delete(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state.messaging.delete(me, &id).await?.committed().await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

/// The receiver's delivery receipt (stored once).
#[utoipa::path(post, path = "/messages/{id}/delivered", tag = "receipts", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "the message id")),
    responses((status = 200, description = "MESSAGE_DELIVERED_UPDATE (seq 0 if it was stored before)", body = DeliveredUpdate), E::BadRequest,
        E::Unauthorized,
        E::Forbidden,
        E::NotFound,
        E::RateLimited,
        E::Unavailable))]
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

/// The receiver's read receipt (stored once).
#[utoipa::path(post, path = "/messages/{id}/read", tag = "receipts", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "the message id")),
    responses((status = 200, description = "MESSAGE_READ_UPDATE (seq 0 if it was stored before)", body = ReadUpdate), E::BadRequest,
        E::Unauthorized,
        E::Forbidden,
        E::NotFound,
        E::RateLimited,
        E::Unavailable))]
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

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    content: String,
    replaced_at: String,
}

/// Earlier versions of an edited message, oldest first (empty once deleted).
#[utoipa::path(get, path = "/messages/{id}/history", tag = "messages", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "the message id")),
    responses((status = 200, description = "the texts the edits replaced, oldest first", body = Vec<HistoryEntry>), E::BadRequest,
        E::Unauthorized,
        E::NotFound,
        E::Unavailable))]
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
