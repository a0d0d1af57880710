//! The write side's seam: what the messaging writer asks of a database engine for one batch
//! of commands, as one trait pair, [`WriteConnection`] and [`WriteTx`] (batch in, rows out),
//! and the rows that cross it. The messaging layer decides what to write (every rule lives
//! there); an engine only knows how to load what a batch reads and store what it writes.
//!
//! One implementation per engine, each in its own file, chosen once when the writer takes
//! its connection ([`super::Store::write_connection`]):
//! - `sqlite_writes`: an SQLite file, through rusqlite on the writer's own thread, one
//!   prepared statement per row; its commits are made durable by the syncer (`durable`).
//! - `pg_writes`: PostgreSQL, through sqlx's PostgreSQL driver, rows as arrays, a batch in
//!   four round trips; `COMMIT` is durable.
//! - `memory_writes`: an in-memory SQLite database, through the sqlx pool's one connection
//!   (the only one that can see it), borrowed for each transaction; multi-row statements.
//!
//! The engines run different SQL; `tests/api/write_conformance.rs` runs the same batches
//! through each and compares the rows they leave.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use nexus_protocol::ChangeType;

use super::durable::{AfterSync, Durable};
use super::StoreError;
use crate::clock::Millis;

/// What the rules need to know about an existing message.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct MessageState {
    pub id: String,
    pub sender_id: String,
    pub receiver_id: Option<String>,
    pub content: String,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
    pub sender_seq: i64,
    pub conversation_id: String,
    pub pos: i64,
    /// Edits stored so far, and the characters of the texts they replaced (the edit
    /// history); read only where edits are decided (`message_states`).
    #[sqlx(default)]
    pub edits: i64,
    #[sqlx(default)]
    pub history_chars: i64,
}

pub(super) const STATE_COLUMNS: &str =
    "id, sender_id, receiver_id, content, created_at, deleted_at, sender_seq, conversation_id, pos";

/// [`STATE_COLUMNS`] and the size of the message's edit history (on the index
/// `message_edits_by_message`).
pub(super) const STATE_AND_HISTORY_COLUMNS: &str =
    "id, sender_id, receiver_id, content, created_at, deleted_at, sender_seq, conversation_id, \
     pos, (SELECT COUNT(*) FROM message_edits e WHERE e.message_id = messages.id) AS edits, \
     (SELECT COALESCE(SUM(LENGTH(e.content)), 0) FROM message_edits e \
      WHERE e.message_id = messages.id) AS history_chars";

/// A conversation as the rules see it, with every member row (former members included),
/// in the order they joined. `last_message`: a message of this batch that becomes its
/// latest (its position is known only once inserted).
#[derive(Debug, Clone)]
pub struct ConversationState {
    pub id: String,
    /// `direct` or `group`.
    pub kind: String,
    pub title: Option<String>,
    pub user_lo: Option<String>,
    pub user_hi: Option<String>,
    pub created_at: Millis,
    pub last_pos: i64,
    pub last_message: Option<String>,
    pub members: Vec<MemberState>,
    /// Created by this batch: inserted before the messages that refer to it.
    pub created: bool,
}

#[derive(Debug, Clone)]
pub struct MemberState {
    pub user_id: String,
    /// `admin` or `member`.
    pub role: String,
    pub joined_at: Millis,
    pub last_pos: i64,
    pub last_message: Option<String>,
    pub read_up_to_pos: i64,
    pub unread: i64,
    pub removed_at: Option<Millis>,
}

impl ConversationState {
    pub fn is_group(&self) -> bool {
        self.kind == "group"
    }

    /// The member row of `user`, if they are a member now.
    pub fn current(&self, user: &str) -> Option<&MemberState> {
        self.members
            .iter()
            .find(|m| m.user_id == user && m.removed_at.is_none())
    }

    /// The current members' ids, in the order they joined.
    pub fn current_ids(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.removed_at.is_none())
            .map(|m| m.user_id.clone())
            .collect()
    }
}

pub(super) const CONVERSATION_COLUMNS: &str =
    "id, kind, title, user_lo, user_hi, created_at, last_pos";
pub(super) const MEMBER_COLUMNS: &str =
    "conversation_id, user_id, role, joined_at, last_pos, read_up_to_pos, unread, removed_at";

pub(super) type ConversationTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Millis,
    i64,
);
pub(super) type MemberTuple = (
    String,
    String,
    String,
    Millis,
    i64,
    i64,
    i64,
    Option<Millis>,
);

pub(super) fn conversation_from(t: ConversationTuple) -> ConversationState {
    ConversationState {
        id: t.0,
        kind: t.1,
        title: t.2,
        user_lo: t.3,
        user_hi: t.4,
        created_at: t.5,
        last_pos: t.6,
        last_message: None,
        members: Vec::new(),
        created: false,
    }
}

pub(super) fn member_from(t: MemberTuple) -> (String, MemberState) {
    (
        t.0,
        MemberState {
            user_id: t.1,
            role: t.2,
            joined_at: t.3,
            last_pos: t.4,
            last_message: None,
            read_up_to_pos: t.5,
            unread: t.6,
            removed_at: t.7,
        },
    )
}

/// Members in the order they joined (ties by id), attached to their conversations.
pub(super) fn attach_members(
    conversations: &mut HashMap<String, ConversationState>,
    members: Vec<(String, MemberState)>,
) {
    for (cid, m) in members {
        if let Some(c) = conversations.get_mut(&cid) {
            c.members.push(m);
        }
    }
    for c in conversations.values_mut() {
        c.members
            .sort_by(|a, b| (a.joined_at, &a.user_id).cmp(&(b.joined_at, &b.user_id)));
    }
}

/// A new message row.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub receiver_id: Option<String>,
    pub content: String,
    pub created_at: Millis,
    pub client_message_id: Option<String>,
    pub sender_seq: i64,
    pub receiver_seq: i64,
}

/// One entry of a user's change log. `message_id` is empty for a conversation change
/// (except `conversation.read`: the message read up to).
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub user_id: String,
    pub seq: i64,
    pub kind: ChangeType,
    pub message_id: String,
    pub conversation_id: Option<String>,
    pub actor_id: String,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptTable {
    Read,
    Delivery,
}

impl ReceiptTable {
    pub(super) fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            ReceiptTable::Read => ("read_receipts", "read_at"),
            ReceiptTable::Delivery => ("delivery_receipts", "delivered_at"),
        }
    }
}

/// A locked change counter and its user's public name and e-mail.
#[derive(Debug, Clone)]
pub struct LockedUser {
    pub seq: i64,
    pub name: String,
    pub email: String,
}

/// Everything the write path stores at once (see `messaging::rules::WriteSet`).
pub struct Writes<'a> {
    /// Conversations created or changed (title, latest message), written whole.
    pub conversations: &'a [ConversationState],
    /// Member rows created or changed, written whole: (conversation id, row).
    pub members: &'a [(String, MemberState)],
    pub messages: &'a [NewMessage],
    pub changes: &'a [ChangeRow],
    /// (message id, previous content, new content)
    pub edits: &'a [(String, String, String)],
    pub deletes: &'a [String],
    pub tombstone: &'a str,
    /// (table, message id, receiver id)
    pub receipts: &'a [(ReceiptTable, String, String)],
    pub counters: &'a BTreeMap<String, i64>,
    pub now: Millis,
}

/// The writer's connection to one engine, held by one writer for as long as it works:
/// taking it from a pool for every batch would put a pool round trip (and a task switch) on
/// the critical path of every commit.
#[async_trait(?Send)]
pub trait WriteConnection {
    /// Starts a write transaction; dropped without [`WriteTx::commit`], it rolls back.
    async fn begin(&mut self) -> Result<Box<dyn WriteTx + '_>, StoreError>;
}

/// One write transaction of the messaging writer: the loads a batch needs (counters and
/// conversations under lock, existing messages, receipts), the batch's rows, the commit.
/// Every engine answers each call with the same rows for the same database
/// (`tests/api/write_conformance.rs`).
#[async_trait(?Send)]
pub trait WriteTx {
    /// The messages with these ids (missing ids are absent), with the size of their edit
    /// history.
    async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError>;

    /// The direct conversations of these pairs (smaller id first) that exist.
    async fn direct_conversations(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, StoreError>;

    /// The conversations with these ids and all their member rows, locked (on PostgreSQL,
    /// in id order, before any counter: every transaction takes conversations first, then
    /// counters, each in [`LockOrder`], so none waits for another in a cycle). While a
    /// transaction holds a conversation nobody else changes its members. Unknown ids are
    /// absent.
    async fn lock_conversations(
        &mut self,
        ids: &LockOrder,
    ) -> Result<HashMap<String, ConversationState>, StoreError>;

    /// The change counters of `users` under lock, with each user's name and e-mail
    /// (unknown users are absent), and the messages already stored under the (sender,
    /// client message id) keys `client_ids`.
    ///
    /// On PostgreSQL the row locks are held until commit, which is what makes sequence
    /// numbers follow commit order; it is one statement there, so one round trip, and its
    /// lookup reads what was committed when the statement began, which may be before the
    /// locks were granted: a message another writer committed meanwhile under the same key
    /// is not seen, and the insert then meets the unique index instead (the batch fails and
    /// its commands are retried one by one, which finds it). On SQLite the transaction
    /// holds the database's single write lock from its start, which serialises writers the
    /// same way.
    async fn lock_and_load(
        &mut self,
        users: &LockOrder,
        client_ids: &[(String, String)],
    ) -> Result<Loaded, StoreError>;

    /// The receipts stored for these messages, by (message, user, table), with their time.
    async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError>;

    /// Messages of `conversation` after position `after` up to `up_to` not sent by
    /// `reader`, not deleted and not yet read by `reader`, oldest first.
    async fn unread_between(
        &mut self,
        conversation: &str,
        reader: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<MessageState>, StoreError>;

    /// Stores a batch's rows, all or nothing with the transaction. New messages get their
    /// history position back. A message or new conversation whose key is taken is
    /// [`StoreError::Conflict`]; any failure leaves the transaction to be dropped.
    async fn write(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError>;

    /// Commits, and says when the commit is durable.
    async fn commit(self: Box<Self>) -> Result<Commit, StoreError>;
}

/// What [`WriteTx::lock_and_load`] answers: the locked counters by user, and the messages
/// already stored by (sender, client message id).
pub type Loaded = (
    BTreeMap<String, LockedUser>,
    HashMap<(String, String), MessageState>,
);

/// Ids in the order their rows are locked: sorted, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockOrder(Vec<String>);

impl LockOrder {
    pub fn new(ids: impl IntoIterator<Item = String>) -> LockOrder {
        let mut sorted: Vec<String> = ids.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        LockOrder(sorted)
    }

    pub fn ids(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A committed transaction on its way to disk.
#[must_use = "answer only once the commit is durable"]
pub struct Commit {
    pending: Option<(Arc<Durable>, u64)>,
}

impl Commit {
    /// A commit that was durable when it returned (PostgreSQL, the pool's SQLite
    /// connections).
    pub(super) fn durable() -> Commit {
        Commit { pending: None }
    }

    /// A commit numbered `commit` by the syncer `durable`, durable once that has synced it.
    pub(super) fn synced_by(durable: Arc<Durable>, commit: u64) -> Commit {
        Commit {
            pending: Some((durable, commit)),
        }
    }

    /// Runs `then` once the commit is on disk: at once where the commit synced itself,
    /// after the WAL's fsync on the SQLite writer, on the syncer's thread. An `Err` means
    /// the fsync failed: the change is committed but may not survive a crash.
    pub fn when_durable(self, then: impl FnOnce(Result<(), String>) + Send + 'static) {
        match self.pending {
            None => then(Ok(())),
            Some((durable, commit)) => durable.after(commit, Some(Box::new(then) as AfterSync)),
        }
    }
}

/// The latest position of a conversation or member row: the batch's newest message, once
/// inserted, else what it was.
pub(super) fn resolved(
    last_pos: i64,
    last_message: &Option<String>,
    positions: &HashMap<String, i64>,
) -> i64 {
    last_message
        .as_ref()
        .and_then(|id| positions.get(id).copied())
        .unwrap_or(last_pos)
}

/// The SQL that writes conversations and member rows whole (insert, or update on conflict).
pub(super) const UPSERT_CONVERSATION: &str = "INSERT INTO conversations \
     (id, kind, title, user_lo, user_hi, created_at, last_pos) VALUES {rows} \
     ON CONFLICT (id) DO UPDATE SET title = excluded.title, last_pos = excluded.last_pos";
pub(super) const UPSERT_MEMBER: &str = "INSERT INTO conversation_members \
     (conversation_id, user_id, role, joined_at, last_pos, read_up_to_pos, unread, removed_at) \
     VALUES {rows} ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, \
     joined_at = excluded.joined_at, last_pos = excluded.last_pos, \
     read_up_to_pos = excluded.read_up_to_pos, unread = excluded.unread, \
     removed_at = excluded.removed_at";
