//! Who must hear of an [`Outcome`], with which event and payload (the events of
//! docs/protocol.md), and who should be pushed if connected nowhere. The delivery step
//! (`crate::delivery`) sends the notifications to user rooms; the REST API answers with the
//! acting user's own payload, the gateway with its acknowledgement.

use nexus_protocol as wire;
use nexus_protocol::events::{
    self, ConversationRead, ConversationUpdated, DeliveredUpdate, IncomingMessage, MessageDeleted,
    MessageEdited, MessageSent, PresenceUpdate, ReadUpdate, UserTyping, DELETED_CONTENT,
};
use serde_json::Value;

use super::{Outcome, ReceiptKind, Sent};
use crate::clock::{iso, Millis};
use crate::domain::UserId;

/// The payload of a notification, serialized straight from its wire type when emitted.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Payload {
    Message(Box<IncomingMessage>),
    Edited(MessageEdited),
    Deleted(MessageDeleted),
    Delivered(DeliveredUpdate),
    Read(ReadUpdate),
    Presence(PresenceUpdate),
    Typing(UserTyping),
    Forced(events::ForceDisconnect),
    Conversation(Box<ConversationUpdated>),
    ConversationRead(ConversationRead),
}

/// One event for every socket of one user.
#[derive(Debug, Clone)]
pub struct Notification {
    pub user_id: String,
    pub event: &'static str,
    pub payload: Payload,
    /// `false`: skip the socket the request came from (it gets its own answer instead).
    pub to_origin: bool,
}

/// A new message for a user who, if connected nowhere, should get a push notification. The
/// message is shaped as its recipient sees it; it carries nothing of other conversations.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub recipient: UserId,
    pub message: wire::Message,
}

impl Sent {
    /// `MESSAGE_SENT`: the sender's acknowledgement, correlated by the client's `tempId`.
    pub fn ack(&self) -> MessageSent {
        let temp_id = self
            .message
            .as_ref()
            .and_then(|m| m.row.client_message_id.clone());
        MessageSent {
            message_id: temp_id.unwrap_or_else(|| self.message_id.clone()),
            db_message_id: self.message_id.clone(),
            timestamp: iso(self.created_at),
            seq: self.sender_seq,
        }
    }
}

impl Outcome {
    /// Every notification this outcome causes. Retries and repeated receipts cause none.
    pub fn notifications(&self) -> Vec<Notification> {
        let note = |user_id: &str, event, payload: Payload, to_origin| Notification {
            user_id: user_id.to_string(),
            event,
            payload,
            to_origin,
        };
        match self {
            Outcome::Sent(sent) => {
                let (Some(message), false) = (&sent.message, sent.duplicate) else {
                    return Vec::new();
                };
                let r = &message.row;
                let incoming = |viewer: &str, seq: i64| {
                    let mut m = message.to_wire(viewer);
                    m.seq = seq;
                    Payload::Message(Box::new(IncomingMessage {
                        message: m,
                        temp_id: r.client_message_id.clone(),
                    }))
                };
                let mut notes: Vec<Notification> = sent
                    .audience
                    .iter()
                    .map(|(user, seq)| note(user, events::NEW_MESSAGE, incoming(user, *seq), true))
                    .collect();
                notes.push(note(
                    &r.sender_id,
                    events::NEW_MESSAGE,
                    incoming(&r.sender_id, sent.sender_seq),
                    false,
                ));
                notes
            }
            Outcome::Edited {
                message_id,
                content,
                edited_at,
                audience,
                ..
            } => audience
                .iter()
                .map(|(user, seq)| {
                    note(
                        user,
                        events::MESSAGE_EDITED,
                        Payload::Edited(MessageEdited {
                            id: message_id.clone(),
                            content: content.clone(),
                            is_edited: true,
                            edited_at: iso(*edited_at),
                            timestamp: iso(*edited_at),
                            seq: *seq,
                        }),
                        true,
                    )
                })
                .collect(),
            Outcome::Deleted {
                message_id,
                deleted_at,
                audience,
                ..
            } => audience
                .iter()
                .map(|(user, seq)| {
                    note(
                        user,
                        events::MESSAGE_DELETED,
                        Payload::Deleted(MessageDeleted {
                            id: message_id.clone(),
                            deleted_at: iso(*deleted_at),
                            content: DELETED_CONTENT.to_string(),
                            timestamp: iso(*deleted_at),
                            seq: *seq,
                        }),
                        true,
                    )
                })
                .collect(),
            Outcome::Receipt { seqs: None, .. } => Vec::new(),
            Outcome::Receipt {
                kind,
                message_id,
                sender_id,
                receiver_id,
                at,
                seqs: Some(seqs),
                ..
            } => {
                let event = match kind {
                    ReceiptKind::Delivered => events::MESSAGE_DELIVERED_UPDATE,
                    ReceiptKind::Read => events::MESSAGE_READ_UPDATE,
                };
                // The sender is told; the receiver's sockets hear it too, so their other
                // devices clear the unread mark and their `seq` stream has no hole. A
                // sender no longer in the group (no number) is not told.
                let payload = |seq| receipt_payload(*kind, message_id, receiver_id, *at, seq);
                let mut notes = Vec::new();
                if seqs.sender > 0 {
                    notes.push(note(sender_id, event, payload(seqs.sender), true));
                }
                notes.push(note(receiver_id, event, payload(seqs.receiver), true));
                notes
            }
            Outcome::Conversation(change) => {
                let Some(info) = &change.info else {
                    return Vec::new();
                };
                change
                    .audience
                    .iter()
                    .map(|(user, seq)| {
                        note(
                            user,
                            events::CONVERSATION_UPDATED,
                            Payload::Conversation(Box::new(ConversationUpdated {
                                conversation: info.clone(),
                                change: change.kind,
                                seq: *seq,
                            })),
                            true,
                        )
                    })
                    .collect()
            }
            Outcome::MarkedRead(read) => {
                let Some(seq) = read.reader_seq else {
                    return Vec::new();
                };
                let mut notes: Vec<Notification> = read
                    .marked
                    .iter()
                    .filter_map(|(message_id, sender, sender_seq)| {
                        let seq = (*sender_seq)?;
                        Some(note(
                            sender,
                            events::MESSAGE_READ_UPDATE,
                            receipt_payload(
                                ReceiptKind::Read,
                                message_id,
                                &read.reader,
                                read.at,
                                seq,
                            ),
                            true,
                        ))
                    })
                    .collect();
                notes.push(note(
                    &read.reader,
                    events::CONVERSATION_READ,
                    Payload::ConversationRead(conversation_read(read, seq)),
                    false,
                ));
                notes
            }
        }
    }

    /// The recipients of a new message, each with the message as they see it: the delivery
    /// step pushes it to those connected nowhere. Nothing else is pushed.
    pub fn pushes(&self) -> Vec<PushRequest> {
        match self {
            Outcome::Sent(Sent {
                message: Some(message),
                duplicate: false,
                audience,
                ..
            }) => audience
                .iter()
                .filter_map(|(user, _)| {
                    Some(PushRequest {
                        recipient: UserId::parse(user).ok()?,
                        message: message.to_wire(user),
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The payload the acting user gets back (REST answer, Socket.IO acknowledgement).
    pub fn actor_payload(&self) -> Value {
        match self {
            Outcome::Sent(sent) => to_value(&sent.ack()),
            Outcome::Conversation(change) => {
                change.info.as_ref().map(to_value).unwrap_or(Value::Null)
            }
            Outcome::MarkedRead(read) => {
                to_value(&conversation_read(read, read.reader_seq.unwrap_or(0)))
            }
            Outcome::Edited { .. } | Outcome::Deleted { .. } => self
                .notifications()
                .into_iter()
                .next()
                .map(|n| to_value(&n.payload))
                .unwrap_or(Value::Null),
            Outcome::Receipt {
                kind,
                message_id,
                receiver_id,
                at,
                seqs,
                ..
            } => to_value(&receipt_payload(
                *kind,
                message_id,
                receiver_id,
                *at,
                seqs.map(|s| s.receiver).unwrap_or(0),
            )),
        }
    }
}

fn conversation_read(read: &super::MarkedRead, seq: i64) -> ConversationRead {
    ConversationRead {
        conversation_id: read.conversation_id.clone(),
        user_id: read.reader.clone(),
        up_to_message_id: read.up_to.clone(),
        read_at: iso(read.at),
        marked: read.marked.len() as i64,
        seq,
    }
}

/// `MESSAGE_DELIVERED_UPDATE` / `MESSAGE_READ_UPDATE` with `seq` of one recipient (0 when the
/// receipt already existed and so changed nothing).
fn receipt_payload(
    kind: ReceiptKind,
    message_id: &str,
    receiver_id: &str,
    at: Millis,
    seq: i64,
) -> Payload {
    match kind {
        ReceiptKind::Delivered => Payload::Delivered(DeliveredUpdate {
            message_id: message_id.to_string(),
            user_id: receiver_id.to_string(),
            delivered_at: iso(at),
            seq,
        }),
        ReceiptKind::Read => Payload::Read(ReadUpdate {
            message_id: message_id.to_string(),
            user_id: receiver_id.to_string(),
            read_at: iso(at),
            timestamp: iso(at),
            seq,
        }),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
