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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// One answer of `GET /users?search=`: `email` is shown only for the caller's contacts and
/// for an exact e-mail match, `null` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserFound {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

/// `POST /auth/register` and `POST /auth/login` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub access_token: String,
    pub user: User,
}

/// `POST /users/fcm/register` and `/unregister` answer: the user plus the device token the
/// brief returns (`fcmDeviceToken`, the most recently used one) and every FCM token of the
/// user, since Nexus keeps one per device (Web Push devices: `GET /users/devices`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct UserWithDevices {
    pub id: String,
    pub name: String,
    pub email: String,
    pub fcm_device_token: Option<String>,
    pub device_tokens: Vec<String>,
}

/// What kind of push target a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A Firebase Cloud Messaging registration token (Android, iOS, or a web app using the
    /// Firebase SDK).
    Fcm,
    /// A browser's Web Push subscription (RFC 8030), encrypted per RFC 8291, signed with
    /// VAPID (RFC 8292).
    Webpush,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Fcm => "fcm",
            DeviceKind::Webpush => "webpush",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceKind> {
        match s {
            "fcm" => Some(DeviceKind::Fcm),
            "webpush" => Some(DeviceKind::Webpush),
            _ => None,
        }
    }
}

/// One of the caller's push devices (`GET /users/devices`, `POST /users/webpush/subscribe`).
/// An FCM device shows its `token`, a Web Push device its `endpoint`; a subscription's keys
/// are never sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    pub kind: DeviceKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endpoint: Option<String>,
    pub created_at: String,
    /// The last registration of the device or push delivered to it.
    pub last_used_at: String,
}

/// A browser's `PushSubscription` as `JSON.stringify(subscription)` writes it: the body of
/// `POST /users/webpush/subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebPushSubscription {
    pub endpoint: String,
    /// Milliseconds since the epoch, or null (browsers mostly send null). Not used: an
    /// expired subscription is answered 404/410 by its push service and removed then.
    #[serde(default)]
    pub expiration_time: Option<f64>,
    pub keys: WebPushKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebPushKeys {
    /// The browser's P-256 public key, base64url (65 bytes uncompressed).
    pub p256dh: String,
    /// The browser's authentication secret, base64url (16 bytes).
    pub auth: String,
}

/// `GET /users/webpush/vapid-public-key` answer: the `applicationServerKey` a browser
/// passes to `pushManager.subscribe`, base64url (65 bytes uncompressed P-256 point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VapidPublicKey {
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub user_id: String,
    pub read_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReceipt {
    pub user_id: String,
    pub delivered_at: String,
}

/// A message as the brief shapes it, plus `conversationId`, `seq` (the viewer's sequence
/// number of its creation) and `clientMessageId` where the sender gave one. A group
/// message has no receiver: `receiverId` and `receiver` are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub content: String,
    pub sender_id: String,
    pub receiver_id: Option<String>,
    pub timestamp: String,
    pub is_edited: bool,
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    pub is_encrypted: bool,
    pub encryption_key_id: Option<String>,
    pub sender: User,
    pub receiver: Option<User>,
    pub read_receipts: Vec<ReadReceipt>,
    pub delivery_receipts: Vec<DeliveryReceipt>,
    pub seq: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_message_id: Option<String>,
}

/// `GET /messages/conversation/:otherUserId` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Pass back as `before` for the previous (older) page; `null` at the start of history.
    pub next_cursor: Option<String>,
}

/// One entry of `GET /messages/conversations/all`: the brief's shape for a direct
/// conversation; a group has `otherUser: null` (and may have no message yet). Every entry
/// carries its `conversation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub other_user: Option<User>,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    pub conversation: ConversationInfo,
}

/// Whether a conversation is between two people or a group.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ConversationType {
    Direct,
    Group,
}

/// A member's role in a group (in a direct conversation both are `member`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Admin,
    Member,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationMember {
    pub user: User,
    pub role: MemberRole,
    pub joined_at: String,
}

/// A conversation: `{id, type, title, members, createdAt}` (`title` is `null` for a direct
/// one). Members are listed in the order they joined.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ConversationType,
    pub title: Option<String>,
    pub members: Vec<ConversationMember>,
    pub created_at: String,
}

/// One entry of `GET /conversations`: the conversation, its last message (`null` for a
/// group without messages) and the caller's unread count.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationSummary {
    #[serde(flatten)]
    pub conversation: ConversationInfo,
    pub last_message: Option<Message>,
    pub unread_count: i64,
}

/// `GET /conversations` answer, most recent first; `nextCursor` (a conversation id, `null`
/// at the end) is passed back as `before`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    pub next_cursor: Option<String>,
}

/// The kinds of change in a user's feed (`GET /sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
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
    #[serde(rename = "conversation.created")]
    ConversationCreated,
    #[serde(rename = "conversation.updated")]
    ConversationUpdated,
    #[serde(rename = "conversation.member_added")]
    ConversationMemberAdded,
    #[serde(rename = "conversation.member_removed")]
    ConversationMemberRemoved,
    #[serde(rename = "conversation.read")]
    ConversationRead,
}

impl ChangeType {
    pub const ALL: [ChangeType; 10] = [
        ChangeType::MessageCreated,
        ChangeType::MessageEdited,
        ChangeType::MessageDeleted,
        ChangeType::MessageDelivered,
        ChangeType::MessageRead,
        ChangeType::ConversationCreated,
        ChangeType::ConversationUpdated,
        ChangeType::ConversationMemberAdded,
        ChangeType::ConversationMemberRemoved,
        ChangeType::ConversationRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::MessageCreated => "message.created",
            ChangeType::MessageEdited => "message.edited",
            ChangeType::MessageDeleted => "message.deleted",
            ChangeType::MessageDelivered => "message.delivered",
            ChangeType::MessageRead => "message.read",
            ChangeType::ConversationCreated => "conversation.created",
            ChangeType::ConversationUpdated => "conversation.updated",
            ChangeType::ConversationMemberAdded => "conversation.member_added",
            ChangeType::ConversationMemberRemoved => "conversation.member_removed",
            ChangeType::ConversationRead => "conversation.read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One change of `GET /sync`. `message` is the message's state when the feed is read (a
/// deleted message shows its tombstone), so applying the events in `seq` order converges on
/// the server's state. Receipt events also say who and when. A `conversation.*` change
/// carries `conversationId` and the `conversation` (as the reader may see it now: a
/// former member sees no members) and no `message`; `conversation.read` names the
/// message read up to in `messageId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SyncEvent {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: ChangeType,
    pub message_id: Option<String>,
    pub conversation_id: String,
    /// When the change happened.
    pub at: String,
    /// The user who made the change (sender for created/edited/deleted, reader for
    /// delivered/read, the admin or the leaving member for conversation changes).
    pub user_id: String,
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationInfo>,
}

/// `GET /sync` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    pub events: Vec<SyncEvent>,
    /// Pass back as `since`. Equals `since` when there was nothing new.
    pub next_cursor: i64,
    pub has_more: bool,
}

/// The error body of every HTTP error: `{statusCode, message, error}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub struct HttpError {
    pub status_code: u16,
    pub message: String,
    pub error: String,
}

#[cfg(test)]
mod typescript;
