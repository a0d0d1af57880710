//! Socket.IO events of the `/ws` namespace: names and payloads (docs/protocol.md §2).

use serde::{Deserialize, Serialize};

use crate::{ConversationInfo, Message};

/// The namespace every client connects to.
pub const NAMESPACE: &str = "/ws";

// client → server
pub const NEW_MESSAGE: &str = "NEW_MESSAGE";
pub const MESSAGE_DELIVERED: &str = "MESSAGE_DELIVERED";
pub const MESSAGE_READ: &str = "MESSAGE_READ";
pub const EDIT_MESSAGE: &str = "EDIT_MESSAGE";
pub const DELETE_MESSAGE: &str = "DELETE_MESSAGE";
pub const TYPING_START: &str = "TYPING_START";
pub const TYPING_STOP: &str = "TYPING_STOP";
pub const GET_ONLINE_USERS: &str = "GET_ONLINE_USERS";
pub const HEALTH_CHECK: &str = "HEALTH_CHECK";
pub const MARK_CONVERSATION_READ: &str = "MARK_CONVERSATION_READ";

// server → client
pub const CONNECTION_SUCCESS: &str = "CONNECTION_SUCCESS";
pub const MESSAGE_SENT: &str = "MESSAGE_SENT";
pub const MESSAGE_DELIVERED_UPDATE: &str = "MESSAGE_DELIVERED_UPDATE";
pub const MESSAGE_READ_UPDATE: &str = "MESSAGE_READ_UPDATE";
pub const MESSAGE_EDITED: &str = "MESSAGE_EDITED";
pub const MESSAGE_DELETED: &str = "MESSAGE_DELETED";
pub const USER_TYPING: &str = "USER_TYPING";
pub const ONLINE_USERS: &str = "ONLINE_USERS";
pub const USER_PRESENCE_UPDATE: &str = "USER_PRESENCE_UPDATE";
pub const HEALTH_RESPONSE: &str = "HEALTH_RESPONSE";
pub const ERROR: &str = "ERROR";
pub const RATE_LIMIT_EXCEEDED: &str = "RATE_LIMIT_EXCEEDED";
pub const FORCE_DISCONNECT: &str = "FORCE_DISCONNECT";
/// Cluster mode: this node may have missed events from other nodes; sync from your last
/// `seq` (docs/protocol.md, "Extensions").
pub const RESYNC: &str = "RESYNC";
pub const CONVERSATION_UPDATED: &str = "CONVERSATION_UPDATED";
pub const CONVERSATION_READ: &str = "CONVERSATION_READ";

/// The content a deleted message shows from then on.
pub const DELETED_CONTENT: &str = "This message has been deleted";

/// Error codes of the `ERROR` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    NotFound,
    Forbidden,
    AlreadyDeleted,
    RateLimited,
    /// The database cannot be reached: nothing was stored, retry later.
    Unavailable,
    Internal,
}

/// `RESYNC {reason}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Resync {
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
/// A send: to a person (`receiverId`, the brief's 1:1 form) or to a conversation
/// (`conversationId`); exactly one of them.
pub struct NewMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub message_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct EditMessage {
    pub message_id: String,
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
/// Typing to a person (`receiverId`) or in a conversation (`conversationId`).
pub struct Typing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// `MARK_CONVERSATION_READ`: everything up to (and including) that message is read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MarkConversationRead {
    pub conversation_id: String,
    pub up_to_message_id: String,
}

/// `CONVERSATION_READ`, to the reader's other sockets (and as the acknowledgement).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationRead {
    pub conversation_id: String,
    pub user_id: String,
    pub up_to_message_id: String,
    pub read_at: String,
    /// How many messages this call marked read.
    pub marked: i64,
    pub seq: i64,
}

/// `CONVERSATION_UPDATED`: a conversation was created, renamed, or its members changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationUpdated {
    pub conversation: ConversationInfo,
    /// What changed: `conversation.created`, `.updated`, `.member_added`, `.member_removed`.
    pub change: crate::ChangeType,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSuccess {
    pub user_id: String,
    pub socket_id: String,
    pub timestamp: String,
    /// The user's latest change-feed number: a client whose last seen `seq` is lower
    /// missed something and catches up with `GET /sync?since=<its seq>`.
    pub seq: i64,
}

/// The acknowledgement of a stored message, to the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    /// The client's `tempId` when it gave one, else the stored id.
    pub message_id: String,
    pub db_message_id: String,
    pub timestamp: String,
    pub seq: i64,
}

/// `NEW_MESSAGE` as the receiver (and the sender's other sockets) get it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct IncomingMessage {
    #[serde(flatten)]
    pub message: Message,
    pub temp_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveredUpdate {
    pub message_id: String,
    pub user_id: String,
    pub delivered_at: String,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadUpdate {
    pub message_id: String,
    pub user_id: String,
    pub read_at: String,
    pub timestamp: String,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageEdited {
    pub id: String,
    pub content: String,
    pub is_edited: bool,
    pub edited_at: String,
    pub timestamp: String,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageDeleted {
    pub id: String,
    pub deleted_at: String,
    pub content: String,
    pub timestamp: String,
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct UserTyping {
    pub user_id: String,
    pub is_typing: bool,
    /// Typing in a group conversation (absent for the brief's 1:1 typing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct OnlineUsers {
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct PresenceUpdate {
    pub user_id: String,
    pub status: PresenceStatus,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    pub status: String,
    pub database: String,
    pub redis: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    pub message: String,
    pub code: ErrorCode,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct RateLimitExceeded {
    pub limit: u32,
    pub retry_after_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ForceDisconnect {
    pub reason: String,
}
