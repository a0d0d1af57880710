//! `/conversations`: conversations and groups, thin adapters over the messaging domain.
//! Every change reaches the members' sockets exactly as if it had come over Socket.IO.

use super::error::documented as E;
use axum::extract::State;
use axum::http::StatusCode;
use nexus_protocol::{ConversationInfo, ConversationPage, MessagePage};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AuthUser, Json, Path, Query};
use crate::delivery::Origin;
use crate::messaging::Outcome;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, rename))
        .routes(routes!(add))
        .routes(routes!(remove))
        .routes(routes!(messages))
        .routes(routes!(read))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReadBody {
    #[schema(value_type = uuid::Uuid)]
    up_to_message_id: String,
}

/// `MARK_CONVERSATION_READ` over REST: answers `CONVERSATION_READ`'s payload.
#[utoipa::path(post, path = "/conversations/{id}/read", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id")), request_body = ReadBody,
    responses((status = 200, description = "the read mark (CONVERSATION_READ's payload)", body = nexus_protocol::events::ConversationRead),
        E::BadRequest, E::NotAdmin, E::NoConversation,
        E::TooLarge,
        E::NotJson,
        E::Unauthorized,
        E::Unavailable))]
async fn read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<ReadBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .mark_conversation_read(me, &id, &body.up_to_message_id)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    /// 1 to 100 characters.
    title: String,
    /// The other members (the creator is its admin).
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    member_ids: Vec<String>,
}

/// 201 with the new group.
#[utoipa::path(post, path = "/conversations", tag = "conversations", security(("bearer" = [])),
    request_body = CreateBody,
    responses((status = 201, description = "the new group", body = ConversationInfo), E::BadRequest, E::NoConversation,
        E::TooLarge,
        E::NotJson,
        E::Unauthorized,
        E::Unavailable))]
async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let outcome = state
        .messaging
        .create_group(me, &body.title, &body.member_ids)
        .await?
        .committed()
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(answer(&state, outcome).await),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// `nextCursor` of the previous page.
    before: Option<String>,
    /// Entries per page (1-200, default 50).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// The caller's conversations, most recent first.
#[utoipa::path(get, path = "/conversations", tag = "conversations", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "a page of conversations", body = ConversationPage), E::BadRequest,
        E::Unauthorized,
        E::Unavailable))]
async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<ConversationPage>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .list_conversations(me, q.before.as_deref(), q.limit.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id")),
    responses((status = 200, description = "the conversation", body = ConversationInfo), E::BadRequest, E::NotAdmin, E::NoConversation,
        E::Unauthorized,
        E::Unavailable))]
async fn show(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<ConversationInfo>, ApiError> {
    Ok(axum::Json(state.messaging.get_conversation(me, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RenameBody {
    /// 1 to 100 characters.
    title: String,
}

#[utoipa::path(patch, path = "/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id")), request_body = RenameBody,
    responses((status = 200, description = "the renamed group", body = ConversationInfo), E::BadRequest, E::NotAdmin, E::NoConversation,
        E::TooLarge,
        E::NotJson,
        E::Unauthorized,
        E::Unavailable))]
async fn rename(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<RenameBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .rename(me, &id, &body.title)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AddBody {
    #[schema(value_type = Vec<uuid::Uuid>)]
    user_ids: Vec<String>,
}

#[utoipa::path(post, path = "/conversations/{id}/members", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id")), request_body = AddBody,
    responses((status = 200, description = "the group with its new members", body = ConversationInfo), E::BadRequest, E::NotAdmin, E::NoConversation,
        E::TooLarge,
        E::NotJson,
        E::Unauthorized,
        E::Unavailable))]
async fn add(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<AddBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .add_members(me, &id, &body.user_ids)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

/// Removes a member (an admin), or leaves (the caller's own id): 200 with the group as it
/// is now.
#[utoipa::path(delete, path = "/conversations/{id}/members/{user}", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id"), ("user" = uuid::Uuid, Path, description = "the member to remove (yourself: leave)")),
    responses((status = 200, description = "the group as it is now", body = ConversationInfo), E::BadRequest, E::NotAdmin, E::NoConversation,
        E::Unauthorized,
        E::Unavailable))]
async fn remove(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let outcome = state
        .messaging
        .remove_member(me, &id, &user)
        .await?
        .committed()
        .await?;
    Ok(axum::Json(answer(&state, outcome).await))
}

/// A conversation's messages, a page at a time, oldest first.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "the conversation's id"), PageQuery),
    responses((status = 200, description = "a page of messages", body = MessagePage), E::BadRequest, E::NotAdmin, E::NoConversation,
        E::Unauthorized,
        E::Unavailable))]
async fn messages(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<MessagePage>, ApiError> {
    Ok(axum::Json(
        state
            .messaging
            .conversation_messages(me, &id, q.before.as_deref(), q.limit.as_deref())
            .await?,
    ))
}

/// Delivers the change to every member's sockets and answers with the conversation.
async fn answer(state: &AppState, outcome: Outcome) -> Value {
    state.delivery.deliver(&outcome, Origin::Http).await;
    outcome.actor_payload()
}
