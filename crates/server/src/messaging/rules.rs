//! Every rule of a state change (docs/design.md, "Sync that never loses an event" and
//! "Conversations and groups"), as a pure function.
//!
//! The writer loads a [`Snapshot`] of what a batch of commands touches (the conversations
//! involved with their members, then the change counters of every user involved, both
//! under lock), then [`plan`] decides each command against it: refuse, or change the
//! snapshot and add the rows to write to a [`WriteSet`], which the writer stores in a few
//! multi-row statements. A later command in the same batch sees the effects of earlier
//! ones (a retry of a send in the same batch, an edit after a delete, a post after an add).
//! A refused command writes nothing and takes no sequence number, so the numbers stay
//! gap-free.
//!
//! Conversations: only current members post, read, mark read and type; only admins rename,
//! add and remove (anyone may leave); the last admin leaving makes the longest-standing
//! member an admin. Each change of a conversation takes one number in the feed of every
//! current member (a member being removed included: that change is the last they get).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nexus_protocol::events::DELETED_CONTENT;
use nexus_protocol::ChangeType;

use super::{Command, ConversationChange, MarkedRead, Outcome, ReceiptKind, Sent, Seqs};
use crate::clock::Millis;
use crate::error::DomainError;
use crate::store::writes::{
    ChangeRow, ConversationState, MemberState, MessageState, NewMessage, ReceiptTable,
};

/// Edits one message may have: each keeps the text it replaced, so edits are capped per
/// message, and so is the history's size (the texts replaced, in characters).
pub const MAX_EDITS_PER_MESSAGE: i64 = 20;
pub const MAX_EDIT_HISTORY_CHARS: i64 = 50_000;

/// What the commands of one batch may read, loaded under the locks.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The change counters of the users involved (unknown users are absent).
    pub counters: BTreeMap<String, i64>,
    /// Messages that edits, deletes, receipts and read marks refer to.
    pub messages: HashMap<String, MessageState>,
    /// Messages already sent with a client message id, by (sender, client id).
    pub by_client_id: HashMap<(String, String), MessageState>,
    /// Receipts that exist, with their time: (message id, user id, table).
    pub receipts: HashMap<(String, String, ReceiptTable), Millis>,
    /// The conversations involved, with every member row.
    pub conversations: HashMap<String, ConversationState>,
    /// Direct conversations by their pair (smaller user id first).
    pub directs: HashMap<(String, String), String>,
    /// For a read mark: the messages (conversation, reader) has not read up to the mark.
    pub unread: HashMap<(String, String), Vec<String>>,
}

/// The rows a batch writes.
#[derive(Debug, Default)]
pub struct WriteSet {
    pub messages: Vec<NewMessage>,
    pub changes: Vec<ChangeRow>,
    /// (message id, previous content, new content)
    pub edits: Vec<(String, String, String)>,
    pub deletes: Vec<String>,
    /// (table, message id, user id)
    pub receipts: Vec<(ReceiptTable, String, String)>,
    /// Counters whose value changed, with their new value.
    pub counters: BTreeMap<String, i64>,
    /// Conversations created or changed, and member rows created or changed.
    pub conversations: Vec<ConversationState>,
    pub members: Vec<(String, MemberState)>,
    touched: BTreeSet<String>,
    touched_members: BTreeSet<(String, String)>,
}

/// A direct conversation's key: its two users, the smaller id first.
pub fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// The conversation a command names, if any (sends to a person name theirs by pair).
pub fn conversation_of(cmd: &Command, messages: &HashMap<String, MessageState>) -> Option<String> {
    match cmd {
        Command::Post { conversation, .. }
        | Command::Rename { conversation, .. }
        | Command::AddMembers { conversation, .. }
        | Command::RemoveMember { conversation, .. }
        | Command::MarkRead { conversation, .. } => Some(conversation.as_string()),
        Command::Edit { message, .. }
        | Command::Delete { message, .. }
        | Command::Receipt { message, .. } => messages
            .get(&message.as_string())
            .map(|m| m.conversation_id.clone()),
        Command::Send { .. } | Command::CreateGroup { .. } => None,
    }
}

/// The users whose counters `cmd` may advance: the parties of a send, the current members
/// of the conversation it touches, and the people a command adds.
pub fn participants(
    cmd: &Command,
    messages: &HashMap<String, MessageState>,
    conversations: &HashMap<String, ConversationState>,
) -> Vec<String> {
    let mut users = vec![cmd.actor().as_string()];
    match cmd {
        Command::Send { receiver, .. } => users.push(receiver.as_string()),
        Command::CreateGroup { members, .. } => users.extend(members.iter().map(|u| u.as_string())),
        Command::AddMembers { users: added, .. } => {
            users.extend(added.iter().map(|u| u.as_string()))
        }
        _ => {}
    }
    if let Some(c) = conversation_of(cmd, messages).and_then(|id| conversations.get(&id)) {
        users.extend(c.current_ids());
    }
    users
}

/// Decides every command in order. `new_id` names new messages and conversations.
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
    let touched = std::mem::take(&mut writes.touched);
    writes.conversations = touched
        .iter()
        .filter_map(|id| snapshot.conversations.get(id).cloned())
        .collect();
    let touched_members = std::mem::take(&mut writes.touched_members);
    writes.members = touched_members
        .into_iter()
        .filter_map(|(cid, user)| {
            let c = snapshot.conversations.get(&cid)?;
            let m = c.members.iter().find(|m| m.user_id == user)?;
            Some((cid, m.clone()))
        })
        .collect();
    (results, writes)
}

fn not_member() -> DomainError {
    DomainError::Forbidden("you are not a member of this conversation".into())
}

fn not_admin(what: &str) -> DomainError {
    DomainError::Forbidden(format!("only a group admin may {what}"))
}

/// The conversation, which `actor` must be a current member of (403 otherwise; 404 when
/// there is no such conversation).
fn member_of<'s>(
    snap: &'s Snapshot,
    id: &str,
    actor: &str,
) -> Result<&'s ConversationState, DomainError> {
    let c = snap
        .conversations
        .get(id)
        .ok_or_else(|| DomainError::NotFound("conversation not found".into()))?;
    if c.current(actor).is_none() {
        return Err(not_member());
    }
    Ok(c)
}

fn group_admin_of<'s>(
    snap: &'s Snapshot,
    id: &str,
    actor: &str,
    what: &str,
) -> Result<&'s ConversationState, DomainError> {
    let c = member_of(snap, id, actor)?;
    if !c.is_group() {
        return Err(DomainError::Validation(
            "a direct conversation has no title or members to change".into(),
        ));
    }
    if c.current(actor).is_some_and(|m| m.role != "admin") {
        return Err(not_admin(what));
    }
    Ok(c)
}

fn member_mut<'s>(c: &'s mut ConversationState, user: &str) -> Option<&'s mut MemberState> {
    c.members.iter_mut().find(|m| m.user_id == user)
}

/// One number in each of `users`' feeds for a change, with its change-log rows.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    snap: &mut Snapshot,
    w: &mut WriteSet,
    users: &[String],
    kind: ChangeType,
    message_id: &str,
    conversation_id: &str,
    actor: &str,
    at: Millis,
) -> Result<Vec<(String, i64)>, DomainError> {
    let mut audience = Vec::with_capacity(users.len());
    for user in users {
        let seq = next(snap, user)?;
        w.changes.push(ChangeRow {
            user_id: user.clone(),
            seq,
            kind,
            message_id: message_id.to_string(),
            conversation_id: (!kind.as_str().starts_with("message."))
                .then(|| conversation_id.to_string()),
            actor_id: actor.to_string(),
            at,
        });
        audience.push((user.clone(), seq));
    }
    Ok(audience)
}

/// Every change of every command: refuse, or record it. Counters are advanced only once
/// a command is known to succeed.
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
            if let Some(dup) = retried(snap, &sender, client_message_id.as_ref()) {
                return Ok(dup);
            }
            let key = pair(&sender, &receiver);
            let conversation = match snap.directs.get(&key) {
                Some(id) => id.clone(),
                None => {
                    // The first message of a pair creates its conversation.
                    let id = new_id();
                    let member = |user: &str| MemberState {
                        user_id: user.to_string(),
                        role: "member".into(),
                        joined_at: now,
                        last_pos: 0,
                        last_message: None,
                        read_up_to_pos: 0,
                        unread: 0,
                        removed_at: None,
                    };
                    let c = ConversationState {
                        id: id.clone(),
                        kind: "direct".into(),
                        title: None,
                        user_lo: Some(key.0.clone()),
                        user_hi: Some(key.1.clone()),
                        created_at: now,
                        last_pos: 0,
                        last_message: None,
                        members: vec![member(&key.0), member(&key.1)],
                        created: true,
                    };
                    snap.conversations.insert(id.clone(), c);
                    snap.directs.insert(key, id.clone());
                    id
                }
            };
            post(
                snap,
                w,
                &conversation,
                &sender,
                Some(receiver),
                body.as_str(),
                client_message_id.as_ref().map(|c| c.as_str()),
                now,
                new_id,
            )
        }

        Command::Post {
            sender,
            conversation,
            body,
            client_message_id,
        } => {
            let sender = sender.as_string();
            let c = member_of(snap, &conversation.as_string(), &sender)?;
            let receiver = (!c.is_group())
                .then(|| c.current_ids().into_iter().find(|u| *u != sender))
                .flatten();
            let cid = c.id.clone();
            if let Some(dup) = retried(snap, &sender, client_message_id.as_ref()) {
                return Ok(dup);
            }
            post(
                snap,
                w,
                &cid,
                &sender,
                receiver,
                body.as_str(),
                client_message_id.as_ref().map(|c| c.as_str()),
                now,
                new_id,
            )
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
            let users = sender_first(snap, &m);
            let content = body.as_str().to_string();
            let audience = fan_out(
                snap,
                w,
                &users,
                ChangeType::MessageEdited,
                &m.id,
                &m.conversation_id,
                &m.sender_id,
                now,
            )?;
            w.edits
                .push((m.id.clone(), m.content.clone(), content.clone()));
            if let Some(stored) = snap.messages.get_mut(&m.id) {
                stored.content = content.clone();
                stored.edits += 1;
                stored.history_chars += replaced_chars;
            }
            Ok(Outcome::Edited {
                message_id: m.id,
                conversation_id: m.conversation_id,
                content,
                edited_at: now,
                audience,
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
            let users = sender_first(snap, &m);
            let audience = fan_out(
                snap,
                w,
                &users,
                ChangeType::MessageDeleted,
                &m.id,
                &m.conversation_id,
                &m.sender_id,
                now,
            )?;
            w.deletes.push(m.id.clone());
            // A deleted message is no longer unread for anyone.
            let unread_for: Vec<String> = users
                .iter()
                .filter(|u| **u != m.sender_id)
                .filter(|u| {
                    !snap
                        .receipts
                        .contains_key(&(m.id.clone(), (*u).clone(), ReceiptTable::Read))
                })
                .cloned()
                .collect();
            if let Some(c) = snap.conversations.get_mut(&m.conversation_id) {
                for u in unread_for {
                    if let Some(member) = member_mut(c, &u) {
                        if m.pos > member.read_up_to_pos && member.unread > 0 {
                            member.unread -= 1;
                            w.touched_members.insert((c.id.clone(), u));
                        }
                    }
                }
            }
            if let Some(stored) = snap.messages.get_mut(&m.id) {
                stored.deleted_at = Some(now);
                stored.content = DELETED_CONTENT.to_string();
            }
            Ok(Outcome::Deleted {
                message_id: m.id,
                conversation_id: m.conversation_id,
                deleted_at: now,
                audience,
            })
        }

        Command::Receipt {
            actor,
            message,
            kind,
        } => {
            let reader = actor.as_string();
            let m = existing_for(snap, &message.as_string(), &reader)?;
            if m.sender_id == reader {
                return Err(DomainError::Forbidden(format!(
                    "only the receiver may mark a message {}",
                    kind.verb()
                )));
            }
            let (table, change) = match kind {
                ReceiptKind::Delivered => (ReceiptTable::Delivery, ChangeType::MessageDelivered),
                ReceiptKind::Read => (ReceiptTable::Read, ChangeType::MessageRead),
            };
            // A receipt is stored once per (message, member); repeating it changes nothing
            // and tells no one.
            let key = (m.id.clone(), reader.clone(), table);
            let (at, seqs) = match snap.receipts.get(&key) {
                Some(at) => (*at, None),
                None => {
                    let sender_current = snap
                        .conversations
                        .get(&m.conversation_id)
                        .is_some_and(|c| c.current(&m.sender_id).is_some());
                    let mut users = Vec::new();
                    if sender_current {
                        users.push(m.sender_id.clone());
                    }
                    users.push(reader.clone());
                    let audience = fan_out(
                        snap,
                        w,
                        &users,
                        change,
                        &m.id,
                        &m.conversation_id,
                        &reader,
                        now,
                    )?;
                    w.receipts.push((table, m.id.clone(), reader.clone()));
                    snap.receipts.insert(key, now);
                    if table == ReceiptTable::Read && m.deleted_at.is_none() {
                        if let Some(c) = snap.conversations.get_mut(&m.conversation_id) {
                            if let Some(member) = member_mut(c, &reader) {
                                if m.pos > member.read_up_to_pos && member.unread > 0 {
                                    member.unread -= 1;
                                    w.touched_members.insert((c.id.clone(), reader.clone()));
                                }
                            }
                        }
                    }
                    let seq_of = |u: &str| {
                        audience
                            .iter()
                            .find(|(user, _)| user == u)
                            .map(|(_, s)| *s)
                            .unwrap_or(0)
                    };
                    (
                        now,
                        Some(Seqs {
                            sender: seq_of(&m.sender_id),
                            receiver: seq_of(&reader),
                        }),
                    )
                }
            };
            Ok(Outcome::Receipt {
                kind: *kind,
                message_id: m.id,
                conversation_id: m.conversation_id,
                sender_id: m.sender_id,
                receiver_id: reader,
                at,
                seqs,
            })
        }

        Command::CreateGroup {
            actor,
            title,
            members,
            max_members,
        } => {
            let actor = actor.as_string();
            let mut ids: Vec<String> = vec![actor.clone()];
            for u in members {
                let u = u.as_string();
                if !ids.contains(&u) {
                    ids.push(u);
                }
            }
            if ids.len() > *max_members {
                return Err(DomainError::Validation(format!(
                    "a group has at most {max_members} members"
                )));
            }
            if let Some(unknown) = ids.iter().find(|u| !snap.counters.contains_key(*u)) {
                return Err(DomainError::NotFound(format!("user {unknown} not found")));
            }
            let id = new_id();
            let c = ConversationState {
                id: id.clone(),
                kind: "group".into(),
                title: Some(title.as_str().to_string()),
                user_lo: None,
                user_hi: None,
                created_at: now,
                last_pos: 0,
                last_message: None,
                members: ids
                    .iter()
                    .map(|u| MemberState {
                        user_id: u.clone(),
                        role: if *u == actor { "admin" } else { "member" }.into(),
                        joined_at: now,
                        last_pos: 0,
                        last_message: None,
                        read_up_to_pos: 0,
                        unread: 0,
                        removed_at: None,
                    })
                    .collect(),
                created: true,
            };
            snap.conversations.insert(id.clone(), c);
            w.touched.insert(id.clone());
            for u in &ids {
                w.touched_members.insert((id.clone(), u.clone()));
            }
            conversation_change(
                snap,
                w,
                &id,
                ChangeType::ConversationCreated,
                &actor,
                &ids,
                now,
            )
        }

        Command::Rename {
            actor,
            conversation,
            title,
        } => {
            let actor = actor.as_string();
            let c = group_admin_of(snap, &conversation.as_string(), &actor, "rename it")?;
            let (id, users) = (c.id.clone(), c.current_ids());
            if let Some(c) = snap.conversations.get_mut(&id) {
                c.title = Some(title.as_str().to_string());
            }
            w.touched.insert(id.clone());
            conversation_change(
                snap,
                w,
                &id,
                ChangeType::ConversationUpdated,
                &actor,
                &users,
                now,
            )
        }

        Command::AddMembers {
            actor,
            conversation,
            users,
            max_members,
        } => {
            let actor = actor.as_string();
            let c = group_admin_of(snap, &conversation.as_string(), &actor, "add members")?;
            let id = c.id.clone();
            let mut added: Vec<String> = Vec::new();
            for u in users {
                let u = u.as_string();
                if c.current(&u).is_none() && !added.contains(&u) {
                    added.push(u);
                }
            }
            if added.is_empty() {
                return Err(DomainError::Validation(
                    "everyone named is a member already".into(),
                ));
            }
            if let Some(unknown) = added.iter().find(|u| !snap.counters.contains_key(*u)) {
                return Err(DomainError::NotFound(format!("user {unknown} not found")));
            }
            let count = c.current_ids().len() + added.len();
            if count > *max_members {
                return Err(DomainError::Validation(format!(
                    "a group has at most {max_members} members"
                )));
            }
            if let Some(c) = snap.conversations.get_mut(&id) {
                for u in &added {
                    let fresh = MemberState {
                        user_id: u.clone(),
                        role: "member".into(),
                        joined_at: now,
                        last_pos: c.last_pos,
                        last_message: c.last_message.clone(),
                        read_up_to_pos: 0,
                        unread: 0,
                        removed_at: None,
                    };
                    match member_mut(c, u) {
                        // A former member comes back.
                        Some(m) => {
                            let read = m.read_up_to_pos;
                            *m = MemberState {
                                read_up_to_pos: read,
                                ..fresh
                            };
                        }
                        None => c.members.push(fresh),
                    }
                    w.touched_members.insert((id.clone(), u.clone()));
                }
                c.members
                    .sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
            }
            let everyone = snap
                .conversations
                .get(&id)
                .map(|c| c.current_ids())
                .unwrap_or_default();
            conversation_change(
                snap,
                w,
                &id,
                ChangeType::ConversationMemberAdded,
                &actor,
                &everyone,
                now,
            )
        }

        Command::RemoveMember {
            actor,
            conversation,
            user,
        } => {
            let (actor, user) = (actor.as_string(), user.as_string());
            let c = member_of(snap, &conversation.as_string(), &actor)?;
            if !c.is_group() {
                return Err(DomainError::Validation(
                    "nobody can leave a direct conversation".into(),
                ));
            }
            if c.current(&user).is_none() {
                return Err(DomainError::NotFound(
                    "that user is not a member of this conversation".into(),
                ));
            }
            if actor != user && c.current(&actor).is_some_and(|m| m.role != "admin") {
                return Err(not_admin("remove members"));
            }
            let (id, everyone) = (c.id.clone(), c.current_ids());
            if let Some(c) = snap.conversations.get_mut(&id) {
                if let Some(m) = member_mut(c, &user) {
                    m.removed_at = Some(now);
                }
                w.touched_members.insert((id.clone(), user.clone()));
                // The last admin gone: the longest-standing member becomes one.
                let admins = c
                    .members
                    .iter()
                    .filter(|m| m.removed_at.is_none() && m.role == "admin")
                    .count();
                if admins == 0 {
                    if let Some(m) = c.members.iter_mut().find(|m| m.removed_at.is_none()) {
                        m.role = "admin".into();
                        w.touched_members.insert((id.clone(), m.user_id.clone()));
                    }
                }
            }
            // Everyone who was a member hears of it, the removed one last of all.
            conversation_change(
                snap,
                w,
                &id,
                ChangeType::ConversationMemberRemoved,
                &actor,
                &everyone,
                now,
            )
        }

        Command::MarkRead {
            actor,
            conversation,
            up_to,
        } => {
            let reader = actor.as_string();
            let c = member_of(snap, &conversation.as_string(), &reader)?;
            let id = c.id.clone();
            let up = snap
                .messages
                .get(&up_to.as_string())
                .filter(|m| m.conversation_id == id && m.pos != i64::MAX)
                .cloned()
                .ok_or_else(|| {
                    DomainError::NotFound(
                        "upToMessageId is not a message of this conversation".into(),
                    )
                })?;
            let pointer = c.current(&reader).map(|m| m.read_up_to_pos).unwrap_or(0);
            let senders_current: BTreeSet<String> = c.current_ids().into_iter().collect();
            let candidates = snap
                .unread
                .get(&(id.clone(), reader.clone()))
                .cloned()
                .unwrap_or_default();
            let mut marked = Vec::new();
            for mid in candidates {
                let Some(m) = snap.messages.get(&mid).cloned() else {
                    continue;
                };
                let key = (m.id.clone(), reader.clone(), ReceiptTable::Read);
                if m.deleted_at.is_some() || snap.receipts.contains_key(&key) {
                    continue;
                }
                let sender_seq = if senders_current.contains(&m.sender_id) {
                    fan_out(
                        snap,
                        w,
                        std::slice::from_ref(&m.sender_id),
                        ChangeType::MessageRead,
                        &m.id,
                        &id,
                        &reader,
                        now,
                    )?
                    .first()
                    .map(|(_, s)| *s)
                } else {
                    None
                };
                w.receipts
                    .push((ReceiptTable::Read, m.id.clone(), reader.clone()));
                snap.receipts.insert(key, now);
                marked.push((m.id.clone(), m.sender_id.clone(), sender_seq));
            }
            if marked.is_empty() && up.pos <= pointer {
                // Nothing new: nobody is told, no number is taken.
                return Ok(Outcome::MarkedRead(MarkedRead {
                    conversation_id: id,
                    reader,
                    up_to: up.id,
                    at: now,
                    reader_seq: None,
                    marked,
                }));
            }
            if let Some(c) = snap.conversations.get_mut(&id) {
                if let Some(m) = member_mut(c, &reader) {
                    m.read_up_to_pos = m.read_up_to_pos.max(up.pos);
                    m.unread = (m.unread - marked.len() as i64).max(0);
                }
            }
            w.touched_members.insert((id.clone(), reader.clone()));
            let seq = fan_out(
                snap,
                w,
                std::slice::from_ref(&reader),
                ChangeType::ConversationRead,
                &up.id,
                &id,
                &reader,
                now,
            )?
            .first()
            .map(|(_, s)| *s);
            Ok(Outcome::MarkedRead(MarkedRead {
                conversation_id: id,
                reader,
                up_to: up.id,
                at: now,
                reader_seq: seq,
                marked,
            }))
        }
    }
}

/// A send repeated with its client message id: nothing new is stored or delivered; the
/// first answer again.
fn retried(
    snap: &Snapshot,
    sender: &str,
    client_message_id: Option<&crate::domain::ClientMessageId>,
) -> Option<Outcome> {
    let key = (sender.to_string(), client_message_id?.as_str().to_string());
    let existing = snap.by_client_id.get(&key)?;
    Some(Outcome::Sent(Sent {
        message_id: existing.id.clone(),
        created_at: existing.created_at,
        sender_seq: existing.sender_seq,
        duplicate: true,
        message: None,
        audience: Vec::new(),
    }))
}

/// A new message in conversation `cid`: a number in every current member's feed, one more
/// unread for each member but the sender.
#[allow(clippy::too_many_arguments)]
fn post(
    snap: &mut Snapshot,
    w: &mut WriteSet,
    cid: &str,
    sender: &str,
    receiver: Option<String>,
    content: &str,
    client_message_id: Option<&str>,
    now: Millis,
    new_id: &mut impl FnMut() -> String,
) -> Result<Outcome, DomainError> {
    let members = snap
        .conversations
        .get(cid)
        .map(|c| c.current_ids())
        .unwrap_or_default();
    // The others first, the sender last (the sender's own socket gets MESSAGE_SENT).
    let mut users: Vec<String> = members.iter().filter(|u| *u != sender).cloned().collect();
    users.push(sender.to_string());
    let id = new_id();
    let mut audience = fan_out(
        snap,
        w,
        &users,
        ChangeType::MessageCreated,
        &id,
        cid,
        sender,
        now,
    )?;
    let (_, sender_seq) = audience.pop().unwrap_or_default();
    let receiver_seq = receiver
        .as_ref()
        .and_then(|r| audience.iter().find(|(u, _)| u == r))
        .map(|(_, s)| *s)
        .unwrap_or(0);
    let state = MessageState {
        id: id.clone(),
        sender_id: sender.to_string(),
        receiver_id: receiver.clone(),
        content: content.to_string(),
        created_at: now,
        deleted_at: None,
        sender_seq,
        conversation_id: cid.to_string(),
        // Not known before the insert: later than any read pointer.
        pos: i64::MAX,
        ..Default::default()
    };
    w.messages.push(NewMessage {
        id: id.clone(),
        conversation_id: cid.to_string(),
        sender_id: sender.to_string(),
        receiver_id: receiver,
        content: content.to_string(),
        created_at: now,
        client_message_id: client_message_id.map(str::to_string),
        sender_seq,
        receiver_seq,
    });
    if let Some(c) = snap.conversations.get_mut(cid) {
        c.last_message = Some(id.clone());
        for m in c.members.iter_mut().filter(|m| m.removed_at.is_none()) {
            m.last_message = Some(id.clone());
            if m.user_id != sender {
                m.unread += 1;
            }
            w.touched_members
                .insert((cid.to_string(), m.user_id.clone()));
        }
        w.touched.insert(cid.to_string());
    }
    if let Some(cid) = client_message_id {
        snap.by_client_id
            .insert((sender.to_string(), cid.to_string()), state.clone());
    }
    snap.messages.insert(id.clone(), state);
    Ok(Outcome::Sent(Sent {
        message_id: id,
        created_at: now,
        sender_seq,
        duplicate: false,
        message: None,
        audience,
    }))
}

/// The current members of a message's conversation, its sender first.
fn sender_first(snap: &Snapshot, m: &MessageState) -> Vec<String> {
    let mut users = vec![m.sender_id.clone()];
    if let Some(c) = snap.conversations.get(&m.conversation_id) {
        users.extend(c.current_ids().into_iter().filter(|u| *u != m.sender_id));
    } else if let Some(r) = &m.receiver_id {
        users.push(r.clone());
    }
    users
}

/// A conversation change: one number in each of `users`' feeds.
fn conversation_change(
    snap: &mut Snapshot,
    w: &mut WriteSet,
    id: &str,
    kind: ChangeType,
    actor: &str,
    users: &[String],
    now: Millis,
) -> Result<Outcome, DomainError> {
    let audience = fan_out(snap, w, users, kind, "", id, actor, now)?;
    let conversation = snap
        .conversations
        .get(id)
        .cloned()
        .ok_or_else(|| DomainError::internal(anyhow::anyhow!("conversation {id} vanished")))?;
    Ok(Outcome::Conversation(Box::new(ConversationChange {
        kind,
        actor: actor.to_string(),
        conversation,
        audience,
        info: None,
    })))
}

/// The message, if it exists and `actor` is a current member of its conversation (or,
/// for a message whose conversation was not loaded, one of its two parties). A stranger
/// learns nothing, not even that the id exists; a former member is told they are not a
/// member any more.
fn existing_for(snap: &Snapshot, id: &str, actor: &str) -> Result<MessageState, DomainError> {
    let Some(m) = snap.messages.get(id) else {
        return Err(DomainError::NotFound("message not found".into()));
    };
    match snap.conversations.get(&m.conversation_id) {
        Some(c) if c.current(actor).is_some() => Ok(m.clone()),
        Some(c) if c.members.iter().any(|x| x.user_id == actor) => Err(not_member()),
        None if m.sender_id == actor || m.receiver_id.as_deref() == Some(actor) => Ok(m.clone()),
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
