//! Every rule of a state change, applied inside one transaction (DESIGN.md §4, §5).
//!
//! A command first names the users whose change counters it needs ([`participants`]); the
//! batch takes all those counters under lock, then [`apply`] checks the rules against the
//! current state and writes. All checks come before the first write, so a refused command
//! leaves nothing behind, and a refused command never consumes a sequence number.

use std::collections::BTreeMap;

use nexus_protocol::events::DELETED_CONTENT;
use nexus_protocol::ChangeType;

use super::{Command, Outcome, ReceiptKind, Sent, Seqs};
use crate::clock::Millis;
use crate::error::DomainError;
use crate::store::writes::{MessageState, NewMessage, ReceiptTable, WriteTx};
use crate::store::StoreError;

/// The users whose counters `cmd` may advance: both parties of the message.
pub(super) async fn participants(
    tx: &mut WriteTx,
    cmd: &Command,
) -> Result<Vec<String>, StoreError> {
    Ok(match cmd {
        Command::Send {
            sender, receiver, ..
        } => vec![sender.as_string(), receiver.as_string()],
        Command::Edit { message, .. }
        | Command::Delete { message, .. }
        | Command::Receipt { message, .. } => tx
            .message_state(&message.as_string())
            .await?
            .map(|m| vec![m.sender_id, m.receiver_id])
            .unwrap_or_default(),
    })
}

/// The counters taken for this transaction; `next` allocates the following number.
pub(super) struct Counters(pub BTreeMap<String, i64>);

impl Counters {
    fn has(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    fn next(&mut self, user: &str) -> Result<i64, DomainError> {
        let seq = self.0.get_mut(user).ok_or_else(|| {
            DomainError::internal(anyhow::anyhow!("counter of {user} was not locked"))
        })?;
        *seq += 1;
        Ok(*seq)
    }

    /// Allocates one number for each party of a message, in a fixed order.
    fn pair(&mut self, m: &MessageState) -> Result<Seqs, DomainError> {
        Ok(Seqs {
            sender: self.next(&m.sender_id)?,
            receiver: self.next(&m.receiver_id)?,
        })
    }
}

/// Checks `cmd` against the current state and writes its effects and change-log entries.
pub(super) async fn apply(
    tx: &mut WriteTx,
    counters: &mut Counters,
    cmd: &Command,
    now: Millis,
) -> Result<Outcome, DomainError> {
    match cmd {
        Command::Send {
            sender,
            receiver,
            body,
            client_message_id,
        } => {
            let (sender, receiver) = (sender.as_string(), receiver.as_string());
            if sender == receiver {
                return Err(DomainError::Validation(
                    "cannot send a message to yourself".into(),
                ));
            }
            if !counters.has(&receiver) {
                return Err(DomainError::NotFound("receiver not found".into()));
            }
            if let Some(cid) = client_message_id {
                if let Some(existing) = tx.message_by_client_id(&sender, cid.as_str()).await? {
                    // A retry: nothing new is stored or delivered; the first answer again.
                    return Ok(Outcome::Sent(Sent {
                        message_id: existing.id,
                        created_at: existing.created_at,
                        sender_seq: existing.sender_seq,
                        receiver_seq: None,
                        duplicate: true,
                        message: None,
                    }));
                }
            }
            let id = crate::domain::MessageId::new().as_string();
            let seqs = Seqs {
                sender: counters.next(&sender)?,
                receiver: counters.next(&receiver)?,
            };
            tx.insert_message(NewMessage {
                id: &id,
                sender_id: &sender,
                receiver_id: &receiver,
                content: body.as_str(),
                created_at: now,
                client_message_id: client_message_id.as_ref().map(|c| c.as_str()),
                sender_seq: seqs.sender,
                receiver_seq: seqs.receiver,
            })
            .await?;
            append_both(
                tx,
                &sender,
                &receiver,
                seqs,
                ChangeType::MessageCreated,
                &id,
                &sender,
                now,
            )
            .await?;
            Ok(Outcome::Sent(Sent {
                message_id: id,
                created_at: now,
                sender_seq: seqs.sender,
                receiver_seq: Some(seqs.receiver),
                duplicate: false,
                message: None,
            }))
        }

        Command::Edit {
            actor,
            message,
            body,
        } => {
            let m = existing_for(tx, message, actor).await?;
            if m.sender_id != actor.as_string() {
                return Err(DomainError::Forbidden(
                    "only the sender may edit a message".into(),
                ));
            }
            if m.deleted_at.is_some() {
                return Err(DomainError::AlreadyDeleted);
            }
            let seqs = counters.pair(&m)?;
            tx.edit_message(&m.id, &m.content, body.as_str(), now)
                .await?;
            append_both(
                tx,
                &m.sender_id,
                &m.receiver_id,
                seqs,
                ChangeType::MessageEdited,
                &m.id,
                &m.sender_id,
                now,
            )
            .await?;
            Ok(Outcome::Edited {
                message_id: m.id,
                sender_id: m.sender_id,
                receiver_id: m.receiver_id,
                content: body.as_str().to_string(),
                edited_at: now,
                seqs,
            })
        }

        Command::Delete { actor, message } => {
            let m = existing_for(tx, message, actor).await?;
            if m.sender_id != actor.as_string() {
                return Err(DomainError::Forbidden(
                    "only the sender may delete a message".into(),
                ));
            }
            if m.deleted_at.is_some() {
                return Err(DomainError::AlreadyDeleted);
            }
            let seqs = counters.pair(&m)?;
            tx.soft_delete(&m.id, DELETED_CONTENT, now).await?;
            append_both(
                tx,
                &m.sender_id,
                &m.receiver_id,
                seqs,
                ChangeType::MessageDeleted,
                &m.id,
                &m.sender_id,
                now,
            )
            .await?;
            Ok(Outcome::Deleted {
                message_id: m.id,
                sender_id: m.sender_id,
                receiver_id: m.receiver_id,
                deleted_at: now,
                seqs,
            })
        }

        Command::Receipt {
            actor,
            message,
            kind,
        } => {
            let m = existing_for(tx, message, actor).await?;
            if m.receiver_id != actor.as_string() {
                return Err(DomainError::Forbidden(format!(
                    "only the receiver may mark a message {}",
                    kind.verb()
                )));
            }
            let table = match kind {
                ReceiptKind::Delivered => ReceiptTable::Delivery,
                ReceiptKind::Read => ReceiptTable::Read,
            };
            let (at, stored_now) = tx.insert_receipt(table, &m.id, &m.receiver_id, now).await?;
            // A receipt is stored once; repeating it changes nothing and tells no one.
            let seqs = if stored_now {
                let seqs = counters.pair(&m)?;
                let change = match kind {
                    ReceiptKind::Delivered => ChangeType::MessageDelivered,
                    ReceiptKind::Read => ChangeType::MessageRead,
                };
                append_both(
                    tx,
                    &m.sender_id,
                    &m.receiver_id,
                    seqs,
                    change,
                    &m.id,
                    &m.receiver_id,
                    at,
                )
                .await?;
                Some(seqs)
            } else {
                None
            };
            Ok(Outcome::Receipt {
                kind: *kind,
                message_id: m.id,
                sender_id: m.sender_id,
                receiver_id: m.receiver_id,
                at,
                seqs,
            })
        }
    }
}

/// The message, if it exists and `actor` is one of its parties. A stranger learns nothing,
/// not even that the id exists.
async fn existing_for(
    tx: &mut WriteTx,
    id: &crate::domain::MessageId,
    actor: &crate::domain::UserId,
) -> Result<MessageState, DomainError> {
    let actor = actor.as_string();
    match tx.message_state(&id.as_string()).await? {
        Some(m) if m.sender_id == actor || m.receiver_id == actor => Ok(m),
        _ => Err(DomainError::NotFound("message not found".into())),
    }
}

#[allow(clippy::too_many_arguments)]
async fn append_both(
    tx: &mut WriteTx,
    sender: &str,
    receiver: &str,
    seqs: Seqs,
    kind: ChangeType,
    message_id: &str,
    actor: &str,
    at: Millis,
) -> Result<(), StoreError> {
    tx.append_change(sender, seqs.sender, kind, message_id, actor, at)
        .await?;
    tx.append_change(receiver, seqs.receiver, kind, message_id, actor, at)
        .await
}
