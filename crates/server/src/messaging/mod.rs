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
use crate::domain::{ClientMessageId, ConversationId, GroupTitle, MessageBody, MessageId, UserId};
use crate::error::DomainError;
use crate::presence::Presence;
use crate::ratelimit::{Budgets, SendLimiter};
use crate::store::conversations::ConversationView;
use crate::store::{Store, StoredMessage};
use notify::{Notification, Payload};

pub mod notify;
mod rules;
mod schedule;
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
    /// A message to a conversation by its id (a group, or a direct one).
    Post {
        sender: UserId,
        conversation: ConversationId,
        body: MessageBody,
        client_message_id: Option<ClientMessageId>,
    },
    CreateGroup {
        actor: UserId,
        title: GroupTitle,
        members: Vec<UserId>,
        max_members: usize,
    },
    Rename {
        actor: UserId,
        conversation: ConversationId,
        title: GroupTitle,
    },
    AddMembers {
        actor: UserId,
        conversation: ConversationId,
        users: Vec<UserId>,
        max_members: usize,
    },
    /// Removes `user` (an admin removing a member, or anyone leaving).
    RemoveMember {
        actor: UserId,
        conversation: ConversationId,
        user: UserId,
    },
    MarkRead {
        actor: UserId,
        conversation: ConversationId,
        up_to: MessageId,
    },
}

impl Command {
    /// The user who asked for the change.
    pub fn actor(&self) -> UserId {
        match self {
            Command::Send { sender, .. } | Command::Post { sender, .. } => *sender,
            Command::Edit { actor, .. }
            | Command::Delete { actor, .. }
            | Command::Receipt { actor, .. }
            | Command::CreateGroup { actor, .. }
            | Command::Rename { actor, .. }
            | Command::AddMembers { actor, .. }
            | Command::RemoveMember { actor, .. }
            | Command::MarkRead { actor, .. } => *actor,
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

/// The sequence numbers a receipt got in the sender's and the receiver's (reader's)
/// change logs (0 for a sender who is no longer a member).
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
    /// Every other current member of the conversation with the number the message got in
    /// their feed.
    pub audience: Vec<(String, i64)>,
}

/// A conversation created, renamed, or with members added or removed.
#[derive(Debug, Clone)]
pub struct ConversationChange {
    pub kind: ChangeType,
    pub actor: String,
    pub conversation: crate::store::writes::ConversationState,
    /// Everyone told, with their number (a removed member included).
    pub audience: Vec<(String, i64)>,
    /// The conversation as the wire shows it (filled in by the writer).
    pub info: Option<wire::ConversationInfo>,
}

/// A read mark: what it marked read.
#[derive(Debug, Clone)]
pub struct MarkedRead {
    pub conversation_id: String,
    pub reader: String,
    pub up_to: String,
    pub at: Millis,
    /// The reader's number for `conversation.read`; `None` when nothing changed.
    pub reader_seq: Option<i64>,
    /// (message id, sender id, sender's number; `None` for a sender no longer a member)
    pub marked: Vec<(String, String, Option<i64>)>,
}

/// What a command did, for the transports to deliver.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent(Sent),
    /// `audience`: every current member with their number, the sender first.
    Edited {
        message_id: String,
        conversation_id: String,
        content: String,
        edited_at: Millis,
        audience: Vec<(String, i64)>,
    },
    Deleted {
        message_id: String,
        conversation_id: String,
        deleted_at: Millis,
        audience: Vec<(String, i64)>,
    },
    /// `receiver_id` is the member who marked it.
    Receipt {
        kind: ReceiptKind,
        message_id: String,
        conversation_id: String,
        sender_id: String,
        receiver_id: String,
        at: Millis,
        /// `None` when the receipt already existed: nothing changed, nobody is told.
        seqs: Option<Seqs>,
    },
    Conversation(Box<ConversationChange>),
    MarkedRead(MarkedRead),
}

/// Page sizes for history, sync and catch-up.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_SYNC_PAGE: i64 = 500;
pub const MAX_SYNC_PAGE: i64 = 1000;
pub const MAX_CATCH_UP: i64 = 1000;
pub const DEFAULT_GROUP_MAX_MEMBERS: usize = 256;
pub const DEFAULT_CONVERSATION_PAGE: i64 = 50;
pub const MAX_CONVERSATION_PAGE: i64 = 200;
/// Page sizes of the brief's list (`GET /messages/conversations/all`): the default answers
/// a client that never asks for a second page with 200 conversations, its most recent ones.
pub const DEFAULT_CONVERSATION_LIST_PAGE: i64 = 200;
pub const MAX_CONVERSATION_LIST_PAGE: i64 = 500;

/// A page of the brief's conversation list, and the cursor of the next one (`None` on the
/// last page): the conversation id to pass back as `before`.
#[derive(Debug, Clone)]
pub struct ConversationList {
    pub conversations: Vec<wire::Conversation>,
    pub next_cursor: Option<String>,
    /// The page size used (asked for, or the default): the next page's link keeps it.
    pub limit: i64,
}

/// A page of a user's conversations: each with its last message and the user's unread
/// count, and the next page's cursor.
struct ConversationsPage {
    entries: Vec<(wire::ConversationInfo, Option<wire::Message>, i64)>,
    next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct MessagingService {
    store: Store,
    writer: writer::Writer,
    /// `GROUP_MAX_MEMBERS`.
    group_max_members: usize,
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
            group_max_members: DEFAULT_GROUP_MAX_MEMBERS,
        }
    }

    /// Sets the largest group (`GROUP_MAX_MEMBERS`).
    pub fn with_group_max_members(mut self, max: usize) -> Self {
        self.group_max_members = max;
        self
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
        self.queue_message(
            sender,
            content,
            client_message_id,
            |body, client_message_id| Command::Send {
                sender,
                receiver,
                body,
                client_message_id,
            },
        )
        .await
    }

    /// What [`Self::send`] and [`Self::post`] share: the content and the client's id checked,
    /// the sender's budget taken, then `command` queued.
    async fn queue_message(
        &self,
        sender: UserId,
        content: &str,
        client_message_id: Option<&str>,
        command: impl FnOnce(MessageBody, Option<ClientMessageId>) -> Command,
    ) -> Result<Pending<Sent>, DomainError> {
        let body = MessageBody::parse(content)?;
        let client_message_id = client_message_id.map(ClientMessageId::parse).transpose()?;
        self.limiter
            .check(sender)
            .await
            .inspect_err(|_| crate::metrics::node().limited("send"))?;
        let ticket = self
            .writer
            .enqueue(command(body, client_message_id))
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

    /// Queues a message to conversation `conversation` (a group, or a direct one by its id).
    pub async fn post(
        &self,
        sender: UserId,
        conversation: &str,
        content: &str,
        client_message_id: Option<&str>,
    ) -> Result<Pending<Sent>, DomainError> {
        let conversation = ConversationId::parse(conversation)
            .map_err(|_| DomainError::Validation("conversationId must be a UUID".into()))?;
        self.queue_message(
            sender,
            content,
            client_message_id,
            |body, client_message_id| Command::Post {
                sender,
                conversation,
                body,
                client_message_id,
            },
        )
        .await
    }

    /// A send by `receiverId` (the brief's 1:1 form) or by `conversationId`: exactly one.
    pub async fn send_to(
        &self,
        sender: UserId,
        receiver: Option<&str>,
        conversation: Option<&str>,
        content: &str,
        client_message_id: Option<&str>,
    ) -> Result<Pending<Sent>, DomainError> {
        match (receiver, conversation) {
            (Some(r), None) => self.send(sender, r, content, client_message_id).await,
            (None, Some(c)) => self.post(sender, c, content, client_message_id).await,
            _ => Err(DomainError::Validation(
                "give exactly one of receiverId and conversationId".into(),
            )),
        }
    }

    fn parse_user_ids(ids: &[String], field: &str) -> Result<Vec<UserId>, DomainError> {
        ids.iter()
            .map(|id| {
                UserId::parse(id).map_err(|_| {
                    DomainError::Validation(format!("{field} must be user ids (UUIDs)"))
                })
            })
            .collect()
    }

    fn conversation_id(id: &str) -> Result<ConversationId, DomainError> {
        ConversationId::parse(id)
            .map_err(|_| DomainError::Validation("conversation id must be a UUID".into()))
    }

    /// Queues a new group with `actor` as its first admin and `members` as members.
    pub async fn create_group(
        &self,
        actor: UserId,
        title: &str,
        members: &[String],
    ) -> Result<Pending<Outcome>, DomainError> {
        let title = GroupTitle::parse(title)?;
        let members = Self::parse_user_ids(members, "memberIds")?;
        if members.len() > self.group_max_members {
            return Err(DomainError::Validation(format!(
                "a group has at most {} members",
                self.group_max_members
            )));
        }
        self.change(Command::CreateGroup {
            actor,
            title,
            members,
            max_members: self.group_max_members,
        })
        .await
    }

    pub async fn rename(
        &self,
        actor: UserId,
        conversation: &str,
        title: &str,
    ) -> Result<Pending<Outcome>, DomainError> {
        let conversation = Self::conversation_id(conversation)?;
        let title = GroupTitle::parse(title)?;
        self.change(Command::Rename {
            actor,
            conversation,
            title,
        })
        .await
    }

    pub async fn add_members(
        &self,
        actor: UserId,
        conversation: &str,
        users: &[String],
    ) -> Result<Pending<Outcome>, DomainError> {
        let conversation = Self::conversation_id(conversation)?;
        let users = Self::parse_user_ids(users, "userIds")?;
        if users.is_empty() {
            return Err(DomainError::Validation("userIds must not be empty".into()));
        }
        if users.len() > self.group_max_members {
            return Err(DomainError::Validation(format!(
                "a group has at most {} members",
                self.group_max_members
            )));
        }
        self.change(Command::AddMembers {
            actor,
            conversation,
            users,
            max_members: self.group_max_members,
        })
        .await
    }

    /// Removes `user` from a group (an admin), or leaves it (`user` is the caller).
    pub async fn remove_member(
        &self,
        actor: UserId,
        conversation: &str,
        user: &str,
    ) -> Result<Pending<Outcome>, DomainError> {
        let conversation = Self::conversation_id(conversation)?;
        let user = UserId::parse(user)
            .map_err(|_| DomainError::Validation("userId must be a UUID".into()))?;
        self.change(Command::RemoveMember {
            actor,
            conversation,
            user,
        })
        .await
    }

    /// Marks everything in `conversation` up to `up_to` read for `actor`.
    pub async fn mark_conversation_read(
        &self,
        actor: UserId,
        conversation: &str,
        up_to: &str,
    ) -> Result<Pending<Outcome>, DomainError> {
        let conversation = Self::conversation_id(conversation)?;
        let up_to = MessageId::parse(up_to)
            .map_err(|_| DomainError::Validation("upToMessageId must be a UUID".into()))?;
        self.change(Command::MarkRead {
            actor,
            conversation,
            up_to,
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
        let direct = self
            .store
            .direct_conversation(&me.as_string(), &other.as_string())
            .await?;
        self.page_of(me, direct.as_deref(), None, before, limit)
            .await
    }

    /// One page of a conversation's history by its id, oldest first (a former member: up
    /// to their removal).
    pub async fn conversation_messages(
        &self,
        me: UserId,
        conversation: &str,
        before: Option<&str>,
        limit: Option<&str>,
    ) -> Result<wire::MessagePage, DomainError> {
        let id = Self::conversation_id(conversation)?;
        let limit = parse_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
        let view = self.view(&id.as_string()).await?;
        let member = view.member(&me.as_string()).ok_or_else(not_a_member)?;
        let up_to = member.removed_at.map(|_| member.last_pos);
        self.page_of(me, Some(&view.id), up_to, before, limit).await
    }

    async fn page_of(
        &self,
        me: UserId,
        conversation: Option<&str>,
        up_to: Option<i64>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<wire::MessagePage, DomainError> {
        let before_pos = match before.filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => {
                let id = MessageId::parse(b)
                    .map_err(|_| DomainError::Validation("before must be a message id".into()))?;
                match (self.store.message_place(id).await?, conversation) {
                    (Some(p), Some(c)) if p.conversation_id == c => Some(p.pos),
                    _ => {
                        return Err(DomainError::Validation(
                            "before is not a message of this conversation".into(),
                        ))
                    }
                }
            }
        };
        let Some(conversation) = conversation else {
            return Ok(wire::MessagePage {
                messages: Vec::new(),
                next_cursor: None,
            });
        };
        // One extra row tells whether older messages remain.
        let mut page = self
            .store
            .conversation_page(conversation, before_pos, up_to, limit + 1)
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

    async fn view(&self, id: &str) -> Result<ConversationView, DomainError> {
        self.store
            .conversation_views(&[id.to_string()])
            .await?
            .remove(id)
            .ok_or_else(|| DomainError::NotFound("conversation not found".into()))
    }

    /// A conversation `me` is a member of.
    pub async fn get_conversation(
        &self,
        me: UserId,
        conversation: &str,
    ) -> Result<wire::ConversationInfo, DomainError> {
        let id = Self::conversation_id(conversation)?;
        let view = self.view(&id.as_string()).await?;
        let me = me.as_string();
        if view.member(&me).is_none_or(|m| m.removed_at.is_some()) {
            return Err(not_a_member());
        }
        Ok(conversation_info(&view, &me))
    }

    /// `me`'s current conversations, most recent first, each with its last message and
    /// `me`'s unread count; `before` is the previous page's `nextCursor`.
    pub async fn list_conversations(
        &self,
        me: UserId,
        before: Option<&str>,
        limit: Option<&str>,
    ) -> Result<wire::ConversationPage, DomainError> {
        let limit = parse_limit(limit, DEFAULT_CONVERSATION_PAGE, MAX_CONVERSATION_PAGE)?;
        let page = self.conversations_page(me, before, limit).await?;
        Ok(wire::ConversationPage {
            next_cursor: page.next_cursor,
            conversations: page
                .entries
                .into_iter()
                .map(
                    |(conversation, last_message, unread_count)| wire::ConversationSummary {
                        conversation,
                        last_message,
                        unread_count,
                    },
                )
                .collect(),
        })
    }

    /// The page of `me`'s current conversations after `before` (a conversation id: the
    /// previous page's cursor; one of `me`'s, current or left), at most `limit`: the cursor
    /// rule of both conversation lists. Its cost is bounded by `limit`: the store seeks to
    /// the cursor, and views and last messages are loaded for this page only.
    async fn conversations_page(
        &self,
        me: UserId,
        before: Option<&str>,
        limit: i64,
    ) -> Result<ConversationsPage, DomainError> {
        let viewer = me.as_string();
        let before = match before.filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => {
                let id = Self::conversation_id(b)
                    .map_err(|_| {
                        DomainError::Validation("before must be a conversation id".into())
                    })?
                    .as_string();
                let view = self
                    .store
                    .conversation_views(std::slice::from_ref(&id))
                    .await?;
                match view.get(&id).and_then(|v| v.member(&viewer)) {
                    Some(m) => Some((m.last_pos, id)),
                    None => {
                        return Err(DomainError::Validation(
                            "before is not one of your conversations".into(),
                        ))
                    }
                }
            }
        };
        // One extra row tells whether more remain.
        let mut listed = self
            .store
            .listed_conversations(&viewer, before, limit + 1)
            .await?;
        let more = listed.len() as i64 > limit;
        listed.truncate(limit as usize);
        Ok(ConversationsPage {
            entries: self.summaries(&viewer, &listed).await?,
            next_cursor: if more {
                listed.last().map(|l| l.conversation_id.clone())
            } else {
                None
            },
        })
    }

    /// The conversations listed, with their last messages, in the listed order.
    async fn summaries(
        &self,
        viewer: &str,
        listed: &[crate::store::conversations::Listed],
    ) -> Result<Vec<(wire::ConversationInfo, Option<wire::Message>, i64)>, DomainError> {
        let ids: Vec<String> = listed.iter().map(|l| l.conversation_id.clone()).collect();
        let views = self.store.conversation_views(&ids).await?;
        let positions: Vec<i64> = listed
            .iter()
            .map(|l| l.last_pos)
            .filter(|p| *p > 0)
            .collect();
        let last: HashMap<i64, StoredMessage> = self
            .store
            .messages_at(&positions)
            .await?
            .into_iter()
            .map(|m| (m.row.pos, m))
            .collect();
        Ok(listed
            .iter()
            .filter_map(|l| {
                let view = views.get(&l.conversation_id)?;
                Some((
                    conversation_info(view, viewer),
                    last.get(&l.last_pos).map(|m| m.to_wire(viewer)),
                    l.unread,
                ))
            })
            .collect())
    }

    /// The brief's list of `me`'s conversations, most recent first, a page at a time
    /// (`otherUser` is the other person of a direct conversation, `null` for a group):
    /// after `before` (the previous page's cursor), `limit` entries (default 200, at most
    /// 500), with the same cursor rule as [`MessagingService::list_conversations`].
    pub async fn conversations(
        &self,
        me: UserId,
        before: Option<&str>,
        limit: Option<&str>,
    ) -> Result<ConversationList, DomainError> {
        let limit = parse_limit(
            limit,
            DEFAULT_CONVERSATION_LIST_PAGE,
            MAX_CONVERSATION_LIST_PAGE,
        )?;
        let viewer = me.as_string();
        let page = self.conversations_page(me, before, limit).await?;
        let conversations = page
            .entries
            .into_iter()
            .map(|(conversation, last_message, unread_count)| {
                let other_user = match conversation.kind {
                    wire::ConversationType::Direct => conversation
                        .members
                        .iter()
                        .find(|m| m.user.id != viewer)
                        .map(|m| m.user.clone()),
                    wire::ConversationType::Group => None,
                };
                wire::Conversation {
                    other_user,
                    last_message,
                    unread_count,
                    conversation,
                }
            })
            .collect();
        Ok(ConversationList {
            conversations,
            next_cursor: page.next_cursor,
            limit,
        })
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
        let mut ids: Vec<String> = changes
            .iter()
            .filter(|c| c.conversation_id.is_none())
            .map(|c| c.message_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        let messages: HashMap<String, StoredMessage> = self
            .store
            .messages_by_ids(&ids)
            .await?
            .into_iter()
            .map(|m| (m.row.id.clone(), m))
            .collect();
        let mut cids: Vec<String> = changes
            .iter()
            .filter_map(|c| c.conversation_id.clone())
            .collect();
        cids.sort();
        cids.dedup();
        let views = self.store.conversation_views(&cids).await?;
        let viewer = me.as_string();
        let mut events = Vec::with_capacity(changes.len());
        for c in &changes {
            let kind = ChangeType::parse(&c.kind).ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("unknown change kind {}", c.kind))
            })?;
            let event = match &c.conversation_id {
                None => {
                    let message = messages.get(&c.message_id).ok_or_else(|| {
                        DomainError::internal(anyhow::anyhow!(
                            "change {} names a missing message",
                            c.seq
                        ))
                    })?;
                    let mut wire_message = message.to_wire(&viewer);
                    if kind == ChangeType::MessageCreated && wire_message.seq == 0 {
                        wire_message.seq = c.seq;
                    }
                    wire::SyncEvent {
                        seq: c.seq,
                        kind,
                        message_id: Some(c.message_id.clone()),
                        conversation_id: wire_message.conversation_id.clone(),
                        at: iso(c.at),
                        user_id: c.actor_id.clone(),
                        message: Some(wire_message),
                        conversation: None,
                    }
                }
                Some(cid) => wire::SyncEvent {
                    seq: c.seq,
                    kind,
                    message_id: (!c.message_id.is_empty()).then(|| c.message_id.clone()),
                    conversation_id: cid.clone(),
                    at: iso(c.at),
                    user_id: c.actor_id.clone(),
                    message: None,
                    conversation: views.get(cid).map(|v| conversation_info(v, &viewer)),
                },
            };
            events.push(event);
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
                conversation_id: None,
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
        let Some(place) = self.store.message_place(id).await? else {
            return Err(DomainError::NotFound("message not found".into()));
        };
        let views = self
            .store
            .conversation_views(std::slice::from_ref(&place.conversation_id))
            .await?;
        let visible = views
            .get(&place.conversation_id)
            .and_then(|v| v.member(&me))
            .is_some_and(|m| m.removed_at.is_none() || place.pos <= m.last_pos);
        if !visible {
            return Err(DomainError::NotFound("message not found".into()));
        }
        Ok(self
            .store
            .edit_history(id)
            .await?
            .into_iter()
            .map(|(content, at)| (content, iso(at)))
            .collect())
    }

    /// The other current members of a group `from` types in (403 for a non-member), and
    /// the group's id. Forwarded starts take from `from`'s typing budget.
    pub async fn group_typing_audience(
        &self,
        from: UserId,
        conversation: &str,
        forwarded_start: bool,
    ) -> Result<(String, Vec<String>), DomainError> {
        let id = ConversationId::parse(conversation)
            .map_err(|_| DomainError::Validation("conversationId must be a UUID".into()))?
            .as_string();
        if forwarded_start {
            Budgets::take(&self.budgets.typing, from, "typing")?;
        }
        let view = self.view(&id).await?;
        let me = from.as_string();
        if view.member(&me).is_none_or(|m| m.removed_at.is_some()) {
            return Err(not_a_member());
        }
        let others = view
            .current()
            .filter(|m| m.user_id != me)
            .map(|m| m.user_id.clone())
            .collect();
        Ok((id, others))
    }

    /// `USER_TYPING {userId, isTyping, conversationId}` for each of `to`.
    pub fn group_typing_notifications(
        &self,
        from: UserId,
        conversation: &str,
        to: &[String],
        is_typing: bool,
    ) -> Vec<Notification> {
        to.iter()
            .map(|user| Notification {
                user_id: user.clone(),
                event: events::USER_TYPING,
                payload: Payload::Typing(UserTyping {
                    user_id: from.as_string(),
                    is_typing,
                    conversation_id: Some(conversation.to_string()),
                }),
                to_origin: true,
            })
            .collect()
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

fn not_a_member() -> DomainError {
    DomainError::Forbidden("you are not a member of this conversation".into())
}

fn role(r: &str) -> wire::MemberRole {
    if r == "admin" {
        wire::MemberRole::Admin
    } else {
        wire::MemberRole::Member
    }
}

fn kind(k: &str) -> wire::ConversationType {
    if k == "group" {
        wire::ConversationType::Group
    } else {
        wire::ConversationType::Direct
    }
}

/// The wire shape of a conversation as `viewer` may see it: its current members, or none
/// for a former member (who is told of nothing after the removal).
pub fn conversation_info(view: &ConversationView, viewer: &str) -> wire::ConversationInfo {
    let former = view.member(viewer).is_none_or(|m| m.removed_at.is_some());
    wire::ConversationInfo {
        id: view.id.clone(),
        kind: kind(&view.kind),
        title: view.title.clone(),
        members: if former {
            Vec::new()
        } else {
            view.current()
                .map(|m| wire::ConversationMember {
                    user: wire::User {
                        id: m.user_id.clone(),
                        name: m.name.clone(),
                        email: m.email.clone(),
                    },
                    role: role(&m.role),
                    joined_at: iso(m.joined_at),
                })
                .collect()
        },
        created_at: iso(view.created_at),
    }
}

/// The same from the writer's state, with the names of the locked users.
pub(crate) fn conversation_info_from_state(
    c: &crate::store::writes::ConversationState,
    users: &std::collections::BTreeMap<String, crate::store::writes::LockedUser>,
) -> wire::ConversationInfo {
    wire::ConversationInfo {
        id: c.id.clone(),
        kind: kind(&c.kind),
        title: c.title.clone(),
        members: c
            .members
            .iter()
            .filter(|m| m.removed_at.is_none())
            .map(|m| {
                let u = users.get(&m.user_id);
                wire::ConversationMember {
                    user: wire::User {
                        id: m.user_id.clone(),
                        name: u.map(|u| u.name.clone()).unwrap_or_default(),
                        email: u.map(|u| u.email.clone()).unwrap_or_default(),
                    },
                    role: role(&m.role),
                    joined_at: iso(m.joined_at),
                }
            })
            .collect(),
        created_at: iso(c.created_at),
    }
}

fn unexpected(o: Outcome) -> DomainError {
    DomainError::internal(anyhow::anyhow!("unexpected outcome {o:?}"))
}
