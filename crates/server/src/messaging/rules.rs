//! Every rule of a state change (docs/design.md, "Sync that never loses an event"), as a
//! pure function.
//!
//! The writer loads a [`Snapshot`] of what a batch of commands touches (taking the change
//! counters of every user involved under lock), then [`plan`] decides each command against
//! it: refuse, or change the snapshot and add the rows to write to a [`WriteSet`], which the
//! writer stores in a few multi-row statements. A later command in the same batch sees the
//! effects of earlier ones (a retry of a send in the same batch, an edit after a delete).
//! A refused command writes nothing and takes no sequence number, so the numbers stay
//! gap-free.

use std::collections::{BTreeMap, HashMap};

use nexus_protocol::events::DELETED_CONTENT;
use nexus_protocol::ChangeType;

use super::{Command, Outcome, ReceiptKind, Sent, Seqs};
use crate::clock::Millis;
use crate::error::DomainError;
use crate::store::writes::{ChangeRow, MessageState, NewMessage, ReceiptTable};

/// Edits one message may have: each keeps the text it replaced, so edits are capped per
/// message, and so is the history's size (the texts replaced, in characters).
pub const MAX_EDITS_PER_MESSAGE: i64 = 20;
pub const MAX_EDIT_HISTORY_CHARS: i64 = 50_000;

/// What the commands of one batch may read, loaded under the counters' locks.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The change counters of the users involved (unknown users are absent).
    pub counters: BTreeMap<String, i64>,
    /// Messages that edits, deletes and receipts refer to.
    pub messages: HashMap<String, MessageState>,
    /// Messages already sent with a client message id, by (sender, client id).
    pub by_client_id: HashMap<(String, String), MessageState>,
    /// Receipts that exist, with their time: (message id, table). Only the receiver
    /// stores receipts, so the message names whose they are.
    pub receipts: HashMap<(String, ReceiptTable), Millis>,
}

/// The rows a batch writes.
#[derive(Debug, Default)]
pub struct WriteSet {
    pub messages: Vec<NewMessage>,
    pub changes: Vec<ChangeRow>,
    /// (message id, previous content, new content)
    pub edits: Vec<(String, String, String)>,
    pub deletes: Vec<String>,
    /// (table, message id, receiver id)
    pub receipts: Vec<(ReceiptTable, String, String)>,
    /// Counters whose value changed, with their new value.
    pub counters: BTreeMap<String, i64>,
}

/// The users whose counters `cmd` may advance: both parties of its message. Edits, deletes
/// and receipts name a message, whose parties come from `messages` (they never change).
pub fn participants(cmd: &Command, messages: &HashMap<String, MessageState>) -> Vec<String> {
    match cmd {
        Command::Send {
            sender, receiver, ..
        } => vec![sender.as_string(), receiver.as_string()],
        Command::Edit { message, .. }
        | Command::Delete { message, .. }
        | Command::Receipt { message, .. } => messages
            .get(&message.as_string())
            .map(|m| vec![m.sender_id.clone(), m.receiver_id.clone()])
            .unwrap_or_default(),
    }
}

/// Decides every command in order. `new_id` names new messages.
pub fn plan(
    snapshot: &mut Snapshot,
    cmds: &[&Command],
    now: Millis,
    mut new_id: impl FnMut() -> String,
) -> (Vec<Result<Outcome, DomainError>>, WriteSet) {
    let mut writes = WriteSet::default();
    let results = cmds
        .iter()
        .map(|cmd| decide(snapshot, &mut writes, cmd, now, &mut new_id))
        .collect();
    writes.counters = snapshot.counters.clone();
    (results, writes)
}

fn decide(
    snap: &mut Snapshot,
    w: &mut WriteSet,
    cmd: &Command,
    now: Millis,
    new_id: &mut impl FnMut() -> String,
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
            if !snap.counters.contains_key(&receiver) {
                return Err(DomainError::NotFound("receiver not found".into()));
            }
            let key = client_message_id
                .as_ref()
                .map(|c| (sender.clone(), c.as_str().to_string()));
            if let Some(existing) = key.as_ref().and_then(|k| snap.by_client_id.get(k)) {
                // A retry: nothing new is stored or delivered; the first answer again.
                return Ok(Outcome::Sent(Sent {
                    message_id: existing.id.clone(),
                    created_at: existing.created_at,
                    sender_seq: existing.sender_seq,
                    duplicate: true,
                    message: None,
                }));
            }
            let seqs = Seqs {
                sender: next(snap, &sender)?,
                receiver: next(snap, &receiver)?,
            };
            let id = new_id();
            let state = MessageState {
                id: id.clone(),
                sender_id: sender.clone(),
                receiver_id: receiver.clone(),
                content: body.as_str().to_string(),
                created_at: now,
                deleted_at: None,
                sender_seq: seqs.sender,
                ..Default::default()
            };
            w.messages.push(NewMessage {
                id: id.clone(),
                sender_id: sender.clone(),
                receiver_id: receiver.clone(),
                content: body.as_str().to_string(),
                created_at: now,
                client_message_id: client_message_id.as_ref().map(|c| c.as_str().to_string()),
                sender_seq: seqs.sender,
                receiver_seq: seqs.receiver,
            });
            record(w, &state, seqs, ChangeType::MessageCreated, &sender, now);
            if let Some(k) = key {
                snap.by_client_id.insert(k, state.clone());
            }
            snap.messages.insert(id.clone(), state);
            Ok(Outcome::Sent(Sent {
                message_id: id,
                created_at: now,
                sender_seq: seqs.sender,
                duplicate: false,
                message: None,
            }))
        }

        Command::Edit {
            actor,
            message,
            body,
        } => {
            let m = existing_for(snap, &message.as_string(), &actor.as_string())?;
            if m.sender_id != actor.as_string() {
                return Err(DomainError::Forbidden(
                    "only the sender may edit a message".into(),
                ));
            }
            if m.deleted_at.is_some() {
                return Err(DomainError::AlreadyDeleted);
            }
            let replaced_chars = m.content.chars().count() as i64;
            if m.edits >= MAX_EDITS_PER_MESSAGE {
                return Err(DomainError::Validation(format!(
                    "a message can be edited at most {MAX_EDITS_PER_MESSAGE} times"
                )));
            }
            if m.history_chars + replaced_chars > MAX_EDIT_HISTORY_CHARS {
                return Err(DomainError::Validation(format!(
                    "the edit history of a message is limited to {MAX_EDIT_HISTORY_CHARS} \
                     characters: this message cannot be edited again"
                )));
            }
            let seqs = pair(snap, &m)?;
            let content = body.as_str().to_string();
            w.edits
                .push((m.id.clone(), m.content.clone(), content.clone()));
            record(w, &m, seqs, ChangeType::MessageEdited, &m.sender_id, now);
            if let Some(stored) = snap.messages.get_mut(&m.id) {
                stored.content = content.clone();
                stored.edits += 1;
                stored.history_chars += replaced_chars;
            }
            Ok(Outcome::Edited {
                message_id: m.id,
                sender_id: m.sender_id,
                receiver_id: m.receiver_id,
                content,
                edited_at: now,
                seqs,
            })
        }

        Command::Delete { actor, message } => {
            let m = existing_for(snap, &message.as_string(), &actor.as_string())?;
            if m.sender_id != actor.as_string() {
                return Err(DomainError::Forbidden(
                    "only the sender may delete a message".into(),
                ));
            }
            if m.deleted_at.is_some() {
                return Err(DomainError::AlreadyDeleted);
            }
            let seqs = pair(snap, &m)?;
            w.deletes.push(m.id.clone());
            record(w, &m, seqs, ChangeType::MessageDeleted, &m.sender_id, now);
            if let Some(stored) = snap.messages.get_mut(&m.id) {
                stored.deleted_at = Some(now);
                stored.content = DELETED_CONTENT.to_string();
            }
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
            let m = existing_for(snap, &message.as_string(), &actor.as_string())?;
            if m.receiver_id != actor.as_string() {
                return Err(DomainError::Forbidden(format!(
                    "only the receiver may mark a message {}",
                    kind.verb()
                )));
            }
            let (table, change) = match kind {
                ReceiptKind::Delivered => (ReceiptTable::Delivery, ChangeType::MessageDelivered),
                ReceiptKind::Read => (ReceiptTable::Read, ChangeType::MessageRead),
            };
            // A receipt is stored once; repeating it changes nothing and tells no one.
            let key = (m.id.clone(), table);
            let (at, seqs) = match snap.receipts.get(&key) {
                Some(at) => (*at, None),
                None => {
                    let seqs = pair(snap, &m)?;
                    w.receipts
                        .push((table, m.id.clone(), m.receiver_id.clone()));
                    record(w, &m, seqs, change, &m.receiver_id, now);
                    snap.receipts.insert(key, now);
                    (now, Some(seqs))
                }
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
fn existing_for(snap: &Snapshot, id: &str, actor: &str) -> Result<MessageState, DomainError> {
    match snap.messages.get(id) {
        Some(m) if m.sender_id == actor || m.receiver_id == actor => Ok(m.clone()),
        _ => Err(DomainError::NotFound("message not found".into())),
    }
}

fn next(snap: &mut Snapshot, user: &str) -> Result<i64, DomainError> {
    let seq = snap.counters.get_mut(user).ok_or_else(|| {
        DomainError::internal(anyhow::anyhow!("counter of {user} was not locked"))
    })?;
    *seq += 1;
    Ok(*seq)
}

/// One number for each party of a message.
fn pair(snap: &mut Snapshot, m: &MessageState) -> Result<Seqs, DomainError> {
    Ok(Seqs {
        sender: next(snap, &m.sender_id)?,
        receiver: next(snap, &m.receiver_id)?,
    })
}

/// The change-log entries of one change: one in each party's feed.
fn record(
    w: &mut WriteSet,
    m: &MessageState,
    seqs: Seqs,
    kind: ChangeType,
    actor: &str,
    at: Millis,
) {
    for (user, seq) in [(&m.sender_id, seqs.sender), (&m.receiver_id, seqs.receiver)] {
        w.changes.push(ChangeRow {
            user_id: user.clone(),
            seq,
            kind,
            message_id: m.id.clone(),
            actor_id: actor.to_string(),
            at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientMessageId, MessageBody, MessageId, UserId};

    struct World {
        snap: Snapshot,
        a: UserId,
        b: UserId,
        ids: u32,
    }

    impl World {
        fn new() -> World {
            let (a, b) = (UserId::new(), UserId::new());
            let mut snap = Snapshot::default();
            snap.counters.insert(a.as_string(), 0);
            snap.counters.insert(b.as_string(), 0);
            World { snap, a, b, ids: 0 }
        }

        fn run(&mut self, cmds: &[Command]) -> (Vec<Result<Outcome, DomainError>>, WriteSet) {
            let refs: Vec<&Command> = cmds.iter().collect();
            let ids = &mut self.ids;
            plan(&mut self.snap, &refs, 1_000, || {
                *ids += 1;
                MessageId::new().as_string()
            })
        }

        fn send(&self, from: UserId, to: UserId, cid: Option<&str>) -> Command {
            Command::Send {
                sender: from,
                receiver: to,
                body: MessageBody::parse("hi").unwrap(),
                client_message_id: cid.map(|c| ClientMessageId::parse(c).unwrap()),
            }
        }
    }

    fn sent_id(r: &Result<Outcome, DomainError>) -> String {
        match r {
            Ok(Outcome::Sent(s)) => s.message_id.clone(),
            other => panic!("expected Sent, got {other:?}"),
        }
    }

    #[test]
    fn a_send_numbers_both_feeds_and_a_retry_in_the_same_batch_stores_nothing() {
        let mut w = World::new();
        let cmds = [w.send(w.a, w.b, Some("t1")), w.send(w.a, w.b, Some("t1"))];
        let (results, writes) = w.run(&cmds);
        assert_eq!(sent_id(&results[0]), sent_id(&results[1]));
        assert!(matches!(&results[1], Ok(Outcome::Sent(s)) if s.duplicate));
        assert_eq!(writes.messages.len(), 1);
        assert_eq!(writes.changes.len(), 2);
        assert_eq!(writes.counters[&w.a.as_string()], 1);
        assert_eq!(writes.counters[&w.b.as_string()], 1);
    }

    #[test]
    fn refused_commands_take_no_number() {
        let mut w = World::new();
        let stranger = UserId::new();
        let cmds = [
            w.send(w.a, w.a, None),
            w.send(w.a, stranger, None),
            w.send(w.a, w.b, None),
        ];
        let (results, writes) = w.run(&cmds);
        assert!(matches!(results[0], Err(DomainError::Validation(_))));
        assert!(matches!(results[1], Err(DomainError::NotFound(_))));
        assert!(results[2].is_ok());
        let seqs: Vec<i64> = writes.changes.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [1, 1], "one number in each feed, no gap");
    }

    #[test]
    fn edit_delete_and_receipt_rules() {
        let mut w = World::new();
        let (results, _) = w.run(&[w.send(w.a, w.b, None)]);
        let id = MessageId::parse(&sent_id(&results[0])).unwrap();
        let edit = |actor| Command::Edit {
            actor,
            message: id,
            body: MessageBody::parse("v2").unwrap(),
        };
        let read = |actor| Command::Receipt {
            actor,
            message: id,
            kind: ReceiptKind::Read,
        };
        let (a, b) = (w.a, w.b);
        let cmds = [
            edit(b),
            edit(a),
            read(a),
            read(b),
            read(b),
            Command::Delete {
                actor: b,
                message: id,
            },
            Command::Delete {
                actor: a,
                message: id,
            },
            edit(a),
            Command::Delete {
                actor: a,
                message: id,
            },
        ];
        let (r, writes) = w.run(&cmds);
        assert!(
            matches!(r[0], Err(DomainError::Forbidden(_))),
            "receiver edits"
        );
        assert!(matches!(r[1], Ok(Outcome::Edited { .. })));
        assert!(
            matches!(r[2], Err(DomainError::Forbidden(_))),
            "sender marks read"
        );
        assert!(matches!(r[3], Ok(Outcome::Receipt { seqs: Some(_), .. })));
        assert!(
            matches!(r[4], Ok(Outcome::Receipt { seqs: None, .. })),
            "stored once"
        );
        assert!(
            matches!(r[5], Err(DomainError::Forbidden(_))),
            "receiver deletes"
        );
        assert!(matches!(r[6], Ok(Outcome::Deleted { .. })));
        assert!(
            matches!(r[7], Err(DomainError::AlreadyDeleted)),
            "edit after delete"
        );
        assert!(
            matches!(r[8], Err(DomainError::AlreadyDeleted)),
            "delete twice"
        );
        assert_eq!(writes.edits.len(), 1);
        assert_eq!(writes.deletes.len(), 1);
        assert_eq!(writes.receipts.len(), 1);
        // send (1) + edit (2) + read (3) + delete (4) in both feeds
        assert_eq!(writes.counters[&a.as_string()], 4);
        assert_eq!(writes.counters[&b.as_string()], 4);
    }

    #[test]
    fn strangers_learn_nothing() {
        let mut w = World::new();
        let (results, _) = w.run(&[w.send(w.a, w.b, None)]);
        let id = MessageId::parse(&sent_id(&results[0])).unwrap();
        let eve = UserId::new();
        w.snap.counters.insert(eve.as_string(), 0);
        let (r, writes) = w.run(&[Command::Delete {
            actor: eve,
            message: id,
        }]);
        assert!(matches!(r[0], Err(DomainError::NotFound(_))));
        assert!(writes.changes.is_empty() && writes.messages.is_empty());
    }
}
