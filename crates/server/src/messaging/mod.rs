//! The messaging domain: the one place for every rule of messaging (docs/design.md).
//!
//! [`MessagingService`] takes what a client asked for (raw strings, as both transports
//! receive them), parses it, applies the rules and returns what happened: an [`Outcome`]
//! that names every user who must hear of it and the sequence number each one's change log
//! gave it. It knows nothing of HTTP or Socket.IO; the transports translate.
//!
//! Reads (history, conversations, sync) query the store directly; writes go through the
//! group-commit [`writer`] and the transactional [`rules`].

use std::collections::HashMap;
use std::sync::Arc;

use nexus_protocol::events::{self, PresenceStatus, PresenceUpdate, UserTyping};
use nexus_protocol::{self as wire, ChangeType};

use crate::clock::{iso, now_ms, parse_iso, Millis};
use crate::domain::{ClientMessageId, MessageBody, MessageId, UserId};
use crate::error::DomainError;
use crate::presence::Presence;
use crate::ratelimit::{Budgets, SendLimiter};
use crate::store::{Store, StoredMessage};
use notify::{Notification, Payload};

pub mod notify;
mod rules;
pub mod writer;

/// A state change a user asked for, parsed.
#[derive(Debug, Clone)]
pub enum Command {
    Send {
        sender: UserId,
        receiver: UserId,
        body: MessageBody,
        client_message_id: Option<ClientMessageId>,
    },
    Edit {
        actor: UserId,
        message: MessageId,
        body: MessageBody,
    },
    Delete {
        actor: UserId,
        message: MessageId,
    },
    Receipt {
        actor: UserId,
        message: MessageId,
        kind: ReceiptKind,
    },
}

impl Command {
    /// The user who asked for the change.
    pub fn actor(&self) -> UserId {
        match self {
            Command::Send { sender, .. } => *sender,
            Command::Edit { actor, .. }
            | Command::Delete { actor, .. }
            | Command::Receipt { actor, .. } => *actor,
        }
    }
}

/// A queued change: resolves to its outcome once committed. Transports enqueue in the order
/// a client's requests arrived and may wait for several commits at once.
pub struct Pending<T> {
    ticket: writer::Ticket,
    map: fn(Outcome) -> Result<T, DomainError>,
}

impl<T> Pending<T> {
    pub async fn committed(self) -> Result<T, DomainError> {
        (self.map)(self.ticket.committed().await?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

impl ReceiptKind {
    fn verb(self) -> &'static str {
        match self {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Read => "read",
        }
    }
}

/// The sequence numbers a change got in its two parties' change logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seqs {
    pub sender: i64,
    pub receiver: i64,
}

/// A stored (or, for a retry, previously stored) message.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub created_at: Millis,
    pub sender_seq: i64,
    /// A retry: nothing new was stored, nobody is to be told.
    pub duplicate: bool,
    /// The message as stored (filled in by the writer before commit).
    pub message: Option<Box<StoredMessage>>,
}

/// What a command did, for the transports to deliver.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent(Sent),
    Edited {
        message_id: String,
        sender_id: String,
        receiver_id: String,
        content: String,
        edited_at: Millis,
        seqs: Seqs,
    },
    Deleted {
        message_id: String,
        sender_id: String,
        receiver_id: String,
        deleted_at: Millis,
        seqs: Seqs,
    },
    Receipt {
        kind: ReceiptKind,
        message_id: String,
        sender_id: String,
        receiver_id: String,
        at: Millis,
        /// `None` when the receipt already existed: nothing changed, nobody is told.
        seqs: Option<Seqs>,
    },
}

/// Page sizes for history, sync and catch-up.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_SYNC_PAGE: i64 = 500;
pub const MAX_SYNC_PAGE: i64 = 1000;
pub const MAX_CATCH_UP: i64 = 1000;

#[derive(Clone)]
pub struct MessagingService {
    store: Store,
    writer: writer::Writer,
    limiter: Arc<dyn SendLimiter>,
    /// Edits, deletes, receipts, typing and online lists: budgets of their own.
    budgets: Arc<Budgets>,
}

impl MessagingService {
    /// Applies the commands already queued and stops the writer (at shutdown, before the
    /// store closes).
    pub async fn close(&self) {
        self.writer.close().await;
    }

    pub fn new(store: Store, writer: writer::Writer, limiter: Arc<dyn SendLimiter>) -> Self {
        MessagingService {
            store,
            writer,
            limiter,
            budgets: Arc::default(),
        }
    }

    /// Shares `budgets` with the other services.
    pub fn with_budgets(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// Queues a message from `sender` (deduplicated on `client_message_id`); it is stored
    /// when the returned [`Pending`] resolves.
    pub async fn send(
        &self,
        sender: UserId,
        receiver: &str,
        content: &str,
        client_message_id: Option<&str>,
    ) -> Result<Pending<Sent>, DomainError> {
        let receiver = UserId::parse(receiver)
            .map_err(|_| DomainError::Validation("receiverId must be a UUID".into()))?;
        let body = MessageBody::parse(content)?;
        let client_message_id = client_message_id.map(ClientMessageId::parse).transpose()?;
        self.limiter
            .check(sender)
            .await
            .inspect_err(|_| crate::metrics::node().limited("send"))?;
        let ticket = self
            .writer
            .enqueue(Command::Send {
                sender,
                receiver,
                body,
                client_message_id,
            })
            .await?;
        Ok(Pending {
            ticket,
            map: |outcome| match outcome {
                Outcome::Sent(sent) => Ok(sent),
                other => Err(unexpected(other)),
            },
        })
    }

    /// Queues an edit, delete or receipt, within the actor's budget of changes.
    async fn change(&self, cmd: Command) -> Result<Pending<Outcome>, DomainError> {
        Budgets::take(&self.budgets.changes, cmd.actor(), "changes")?;
        Ok(Pending {
            ticket: self.writer.enqueue(cmd).await?,
            map: Ok,
        })
    }

    /// Queues an edit (sender only, not after deletion; the old content goes to history).
    pub async fn edit(
        &self,
        actor: UserId,
        message: &str,
        content: &str,
    ) -> Result<Pending<Outcome>, DomainError> {
        let message = MessageId::parse(message)?;
        let body = MessageBody::parse(content)?;
        self.change(Command::Edit {
            actor,
            message,
            body,
        })
        .await
    }

    /// Queues a soft delete (sender only, once).
    pub async fn delete(
        &self,
        actor: UserId,
        message: &str,
    ) -> Result<Pending<Outcome>, DomainError> {
        let message = MessageId::parse(message)?;
        self.change(Command::Delete { actor, message }).await
    }

    /// Queues a delivery or read receipt (receiver only; stored once).
    pub async fn mark(
        &self,
        actor: UserId,
        message: &str,
        kind: ReceiptKind,
    ) -> Result<Pending<Outcome>, DomainError> {
        let message = MessageId::parse(message)?;
        self.change(Command::Receipt {
            actor,
            message,
            kind,
        })
        .await
    }

    /// One page of the conversation between `me` and `other`, oldest first. `before` is the
    /// `nextCursor` of the previous answer (a message id).
    pub async fn conversation(
        &self,
        me: UserId,
        other: &str,
        before: Option<&str>,
        limit: Option<&str>,
    ) -> Result<wire::MessagePage, DomainError> {
        let other = UserId::parse(other)?;
        let limit = parse_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        if self.store.user_by_id(other).await?.is_none() {
            return Err(DomainError::NotFound("user not found".into()));
        }
        let before_pos = match before.filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => {
                let id = MessageId::parse(b)
                    .map_err(|_| DomainError::Validation("before must be a message id".into()))?;
                let (me_s, other_s) = (me.as_string(), other.as_string());
                match self.store.message_place(id).await? {
                    Some(p)
                        if (p.sender_id == me_s && p.receiver_id == other_s)
                            || (p.sender_id == other_s && p.receiver_id == me_s) =>
                    {
                        Some(p.pos)
                    }
                    _ => {
                        return Err(DomainError::Validation(
                            "before is not a message of this conversation".into(),
                        ))
                    }
                }
            }
        };
        // One extra row tells whether older messages remain.
        let mut page = self
            .store
            .conversation_page(me, other, before_pos, limit + 1)
            .await?;
        let more = page.len() as i64 > limit;
        if more {
            page.remove(0);
        }
        let viewer = me.as_string();
        Ok(wire::MessagePage {
            next_cursor: if more {
                page.first().map(|m| m.row.id.clone())
            } else {
                None
            },
            messages: page.iter().map(|m| m.to_wire(&viewer)).collect(),
        })
    }

    /// Every conversation of `me`, most recent first.
    pub async fn conversations(&self, me: UserId) -> Result<Vec<wire::Conversation>, DomainError> {
        let viewer = me.as_string();
        Ok(self
            .store
            .conversations(me)
            .await?
            .into_iter()
            .map(|c| {
                let msg = c.last.to_wire(&viewer);
                let other_user = if msg.sender_id == viewer {
                    msg.receiver.clone()
                } else {
                    msg.sender.clone()
                };
                wire::Conversation {
                    other_user,
                    last_message: msg,
                    unread_count: c.unread,
                }
            })
            .collect())
    }

    /// The brief's timestamp catch-up, widened to messages edited, deleted or read since.
    pub async fn messages_since(
        &self,
        me: UserId,
        last_message_timestamp: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Vec<wire::Message>, DomainError> {
        let since = match last_message_timestamp.filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => parse_iso(s).ok_or_else(|| {
                DomainError::Validation("lastMessageTimestamp must be an ISO-8601 time".into())
            })?,
        };
        let limit = parse_limit(limit, MAX_CATCH_UP, MAX_CATCH_UP)?;
        let viewer = me.as_string();
        Ok(self
            .store
            .messages_changed_since(me, since, limit)
            .await?
            .iter()
            .map(|m| m.to_wire(&viewer))
            .collect())
    }

    /// The gap-free change feed after `since` (docs/protocol.md, "Sync").
    pub async fn sync(
        &self,
        me: UserId,
        since: Option<&str>,
        limit: Option<&str>,
    ) -> Result<wire::SyncPage, DomainError> {
        let since = match since.filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                DomainError::Validation("since must be a non-negative integer".into())
            })?,
        };
        let limit = parse_limit(limit, DEFAULT_SYNC_PAGE, MAX_SYNC_PAGE)?;
        let mut changes = self.store.changes_since(me, since, limit + 1).await?;
        if changes.is_empty() && since > 0 {
            let latest = self.store.current_seq(me).await?;
            if since > latest {
                // The client remembers a feed this server never had (e.g. a restored
                // database): it must start again from 0.
                return Err(DomainError::Validation(format!(
                    "since is ahead of the feed (latest seq is {latest}); sync again from 0"
                )));
            }
        }
        let has_more = changes.len() as i64 > limit;
        changes.truncate(limit as usize);
        let mut ids: Vec<String> = changes.iter().map(|c| c.message_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let messages: HashMap<String, StoredMessage> = self
            .store
            .messages_by_ids(&ids)
            .await?
            .into_iter()
            .map(|m| (m.row.id.clone(), m))
            .collect();
        let viewer = me.as_string();
        let mut events = Vec::with_capacity(changes.len());
        for c in &changes {
            let kind = ChangeType::parse(&c.kind).ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("unknown change kind {}", c.kind))
            })?;
            let message = messages.get(&c.message_id).ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("change {} names a missing message", c.seq))
            })?;
            events.push(wire::SyncEvent {
                seq: c.seq,
                kind,
                message_id: c.message_id.clone(),
                at: iso(c.at),
                user_id: c.actor_id.clone(),
                message: message.to_wire(&viewer),
            });
        }
        Ok(wire::SyncPage {
            next_cursor: changes.last().map(|c| c.seq).unwrap_or(since),
            has_more,
            events,
        })
    }

    /// The user a typing indicator names (a UUID, not the typist).
    pub async fn typing_target(&self, from: UserId, to: &str) -> Result<UserId, DomainError> {
        let to = UserId::parse(to)
            .map_err(|_| DomainError::Validation("receiverId must be a UUID".into()))?;
        if to == from {
            return Err(DomainError::Validation("cannot type to yourself".into()));
        }
        Ok(to)
    }

    /// Whether `from` may show `to` a typing indicator now: within `from`'s budget, and,
    /// for an indicator not shown yet (`new`), only to someone they share a conversation
    /// with (a stranger learns nothing from typing).
    pub async fn may_show_typing(
        &self,
        from: UserId,
        to: UserId,
        new: bool,
    ) -> Result<(), DomainError> {
        Budgets::take(&self.budgets.typing, from, "typing")?;
        if new
            && !self
                .presence_audience(from)
                .await?
                .contains(&to.as_string())
        {
            return Err(DomainError::Forbidden(
                "you can only show typing to someone you share a conversation with".into(),
            ));
        }
        Ok(())
    }

    /// `USER_TYPING` for `to`, once [`MessagingService::typing_target`] allowed it.
    pub fn typing_notification(&self, from: UserId, to: UserId, is_typing: bool) -> Notification {
        Notification {
            user_id: to.as_string(),
            event: events::USER_TYPING,
            payload: Payload::Typing(UserTyping {
                user_id: from.as_string(),
                is_typing,
            }),
            to_origin: true,
        }
    }

    /// The users who hear of `user` coming online or going offline: everyone who shares a
    /// conversation with them (their contacts), nobody else.
    pub async fn presence_audience(&self, user: UserId) -> Result<Vec<String>, DomainError> {
        Ok(self.store.partners(user).await?)
    }

    /// `USER_PRESENCE_UPDATE` for everyone in `user`'s presence audience.
    pub async fn presence_changed(
        &self,
        user: UserId,
        status: PresenceStatus,
    ) -> Result<Vec<Notification>, DomainError> {
        let update = PresenceUpdate {
            user_id: user.as_string(),
            status,
            last_seen: iso(now_ms()),
        };
        Ok(self
            .presence_audience(user)
            .await?
            .into_iter()
            .map(|contact| Notification {
                user_id: contact,
                event: events::USER_PRESENCE_UPDATE,
                payload: Payload::Presence(update.clone()),
                to_origin: true,
            })
            .collect())
    }

    /// Whom `me` may see online: their contacts (users who share a conversation with them)
    /// who are connected somewhere. Never strangers, never `me`.
    pub async fn online_contacts(
        &self,
        me: UserId,
        presence: &dyn Presence,
    ) -> Result<Vec<String>, DomainError> {
        Budgets::take(&self.budgets.online, me, "online_users")?;
        let contacts: Vec<UserId> = self
            .presence_audience(me)
            .await?
            .iter()
            .filter_map(|c| UserId::parse(c).ok())
            .collect();
        let mut online: Vec<String> = presence
            .online_among(&contacts)
            .await
            .iter()
            .map(UserId::as_string)
            .collect();
        online.sort();
        Ok(online)
    }

    /// The last sequence number of `me`'s change log.
    pub async fn current_seq(&self, me: UserId) -> Result<i64, DomainError> {
        Ok(self.store.current_seq(me).await?)
    }

    /// Earlier versions of a message its parties may see (empty after deletion).
    pub async fn edit_history(
        &self,
        me: UserId,
        message: &str,
    ) -> Result<Vec<(String, String)>, DomainError> {
        let id = MessageId::parse(message)?;
        let me = me.as_string();
        match self.store.message_place(id).await? {
            Some(p) if p.sender_id == me || p.receiver_id == me => Ok(self
                .store
                .edit_history(id)
                .await?
                .into_iter()
                .map(|(content, at)| (content, iso(at)))
                .collect()),
            _ => Err(DomainError::NotFound("message not found".into())),
        }
    }
}

fn parse_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, DomainError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                DomainError::Validation(format!("limit must be an integer from 1 to {max}"))
            }),
    }
}

fn unexpected(o: Outcome) -> DomainError {
    DomainError::internal(anyhow::anyhow!("unexpected outcome {o:?}"))
}
