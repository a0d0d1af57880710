//! Rows as the database returns them, and their conversion to wire types.

use nexus_protocol as wire;

use crate::clock::{iso, Millis};

/// The columns every message query selects, with the sender's and receiver's names joined.
pub(super) const MESSAGE_SELECT: &str = "SELECT m.pos, m.id, m.conversation_id, \
     m.sender_id, m.receiver_id, m.content, m.created_at, m.edited_at, m.deleted_at, m.is_encrypted, m.encryption_key_id, \
     m.client_message_id, m.sender_seq, m.receiver_seq, \
     s.name AS sender_name, s.email AS sender_email, \
     r.name AS receiver_name, r.email AS receiver_email \
     FROM messages m JOIN users s ON s.id = m.sender_id LEFT JOIN users r ON r.id = m.receiver_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub pos: i64,
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    /// `None` for a group message.
    pub receiver_id: Option<String>,
    pub content: String,
    pub created_at: Millis,
    pub edited_at: Option<Millis>,
    pub deleted_at: Option<Millis>,
    pub is_encrypted: i64,
    pub encryption_key_id: Option<String>,
    pub client_message_id: Option<String>,
    pub sender_seq: i64,
    pub receiver_seq: i64,
    pub sender_name: String,
    pub sender_email: String,
    pub receiver_name: Option<String>,
    pub receiver_email: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct ReceiptRow {
    pub message_id: String,
    pub user_id: String,
    pub at: Millis,
}

/// A message with its receipts: everything needed to answer any viewer.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub row: MessageRow,
    /// (user id, read at)
    pub reads: Vec<(String, Millis)>,
    /// (user id, delivered at)
    pub deliveries: Vec<(String, Millis)>,
}

impl StoredMessage {
    /// The wire shape as `viewer` sees it: `seq` is the viewer's sequence number of the
    /// message's creation (for a group message, known to the sender only: 0 for the other
    /// members, whose numbers come with the events).
    pub fn to_wire(&self, viewer: &str) -> wire::Message {
        let r = &self.row;
        wire::Message {
            id: r.id.clone(),
            conversation_id: r.conversation_id.clone(),
            content: r.content.clone(),
            sender_id: r.sender_id.clone(),
            receiver_id: r.receiver_id.clone(),
            timestamp: iso(r.created_at),
            is_edited: r.edited_at.is_some(),
            edited_at: r.edited_at.map(iso),
            deleted_at: r.deleted_at.map(iso),
            is_encrypted: r.is_encrypted != 0,
            encryption_key_id: r.encryption_key_id.clone(),
            sender: wire::User {
                id: r.sender_id.clone(),
                name: r.sender_name.clone(),
                email: r.sender_email.clone(),
            },
            receiver: r.receiver_id.as_ref().map(|id| wire::User {
                id: id.clone(),
                name: r.receiver_name.clone().unwrap_or_default(),
                email: r.receiver_email.clone().unwrap_or_default(),
            }),
            read_receipts: self
                .reads
                .iter()
                .map(|(user_id, at)| wire::ReadReceipt {
                    user_id: user_id.clone(),
                    read_at: iso(*at),
                })
                .collect(),
            delivery_receipts: self
                .deliveries
                .iter()
                .map(|(user_id, at)| wire::DeliveryReceipt {
                    user_id: user_id.clone(),
                    delivered_at: iso(*at),
                })
                .collect(),
            seq: if viewer == r.sender_id {
                r.sender_seq
            } else if r.receiver_id.as_deref() == Some(viewer) {
                r.receiver_seq
            } else {
                0
            },
            client_message_id: r.client_message_id.clone(),
        }
    }
}
