//! # Nexus wire types
//!
//! Everything that crosses the wire between a Nexus server and its clients is defined here
//! once: the JSON shapes of the HTTP API (camelCase, ids as UUID strings, times as ISO-8601
//! UTC with milliseconds) and the Socket.IO event names and payloads of the `/ws` namespace.
//! The server, the load generator and the tests all use these types, so a change to the
//! contract is a change to this crate.
//!
//! Times are carried as `String`s already formatted by the server: the wire format is the
//! contract, and clients in other languages parse it the same way.

use serde::{Deserialize, Serialize};

pub mod events;

/// The public face of an account. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// `POST /auth/register` and `POST /auth/login` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub access_token: String,
    pub user: User,
}

/// `POST /users/fcm/register` and `/unregister` answer: the user plus the device token the
/// brief returns (`fcmDeviceToken`, the most recently registered one) and every registered
/// token, since Nexus keeps one per device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserWithDevices {
    pub id: String,
    pub name: String,
    pub email: String,
    pub fcm_device_token: Option<String>,
    pub device_tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub user_id: String,
    pub read_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReceipt {
    pub user_id: String,
    pub delivered_at: String,
}

/// A message as the brief shapes it, plus `seq` (the viewer's sequence number of its
/// creation) and `clientMessageId` where the sender gave one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub content: String,
    pub sender_id: String,
    pub receiver_id: String,
    pub timestamp: String,
    pub is_edited: bool,
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    pub is_encrypted: bool,
    pub encryption_key_id: Option<String>,
    pub sender: User,
    pub receiver: User,
    pub read_receipts: Vec<ReadReceipt>,
    pub delivery_receipts: Vec<DeliveryReceipt>,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_message_id: Option<String>,
}

/// `GET /messages/conversation/:otherUserId` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Pass back as `before` for the previous (older) page; `null` at the start of history.
    pub next_cursor: Option<String>,
}

/// One entry of `GET /messages/conversations/all`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub other_user: User,
    pub last_message: Message,
    pub unread_count: i64,
}

/// The kinds of change in a user's feed (`GET /sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeType {
    #[serde(rename = "message.created")]
    MessageCreated,
    #[serde(rename = "message.edited")]
    MessageEdited,
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.read")]
    MessageRead,
}

impl ChangeType {
    pub const ALL: [ChangeType; 5] = [
        ChangeType::MessageCreated,
        ChangeType::MessageEdited,
        ChangeType::MessageDeleted,
        ChangeType::MessageDelivered,
        ChangeType::MessageRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::MessageCreated => "message.created",
            ChangeType::MessageEdited => "message.edited",
            ChangeType::MessageDeleted => "message.deleted",
            ChangeType::MessageDelivered => "message.delivered",
            ChangeType::MessageRead => "message.read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One change of `GET /sync`. `message` is the message's state when the feed is read (a
/// deleted message shows its tombstone), so applying the events in `seq` order converges on
/// the server's state. Receipt events also say who and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncEvent {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: ChangeType,
    pub message_id: String,
    /// When the change happened.
    pub at: String,
    /// The user who made the change (sender for created/edited/deleted, receiver for
    /// delivered/read).
    pub user_id: String,
    pub message: Message,
}

/// `GET /sync` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    pub events: Vec<SyncEvent>,
    /// Pass back as `since`. Equals `since` when there was nothing new.
    pub next_cursor: i64,
    pub has_more: bool,
}

/// The error body of every HTTP error: `{statusCode, message, error}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpError {
    pub status_code: u16,
    pub message: String,
    pub error: String,
}
