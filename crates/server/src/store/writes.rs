//! The write side of one transaction: loading what a batch of commands reads, and storing
//! what it writes in a few multi-row statements. The messaging layer decides what to write
//! (every rule lives there); this module only knows how.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use nexus_protocol::ChangeType;
use sqlx::any::AnyArguments;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, Connection, Transaction};

use super::durable::{AfterSync, Durable};
use super::pg_writes::{self, PgConn, PgTx};
use super::{sqlite_writes, Backend, Store, StoreError};
use crate::clock::Millis;

/// Ids per `IN (…)` list.
const CHUNK: usize = 400;

/// Rows per multi-row `INSERT`: a whole batch (`messaging::writer::MAX_BATCH`) in one
/// statement per table, within both engines' parameter limits. Generated statements use
/// anonymous `?` on SQLite (`Backend::param`), so binding stays linear in their size.
const ROWS: usize = 512;

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

type ConversationTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Millis,
    i64,
);
type MemberTuple = (
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

/// A connection for the writer, held by one writer for as long as it works: taking it
/// from the pool for every batch would put a pool round trip (and a task switch) on the
/// critical path of every commit. On a SQLite file it is an in-process rusqlite
/// connection (`sqlite_writes`); on PostgreSQL a connection of the writers' own pool
/// (`pg_writes`); for an in-memory SQLite database the pool's one connection.
pub struct WriteConnection {
    conn: Conn,
    /// The WAL syncer, for a connection whose commits do not sync themselves.
    durable: Option<Arc<Durable>>,
}

enum Conn {
    Pool(PoolConnection<Any>, Backend),
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

/// One write transaction. Dropped without `commit`, it rolls back.
pub struct WriteTx<'c> {
    tx: Tx<'c>,
    durable: Option<Arc<Durable>>,
}

/// A committed transaction on its way to disk.
#[must_use = "answer only once the commit is durable"]
pub struct Commit {
    pending: Option<(Arc<Durable>, u64)>,
}

impl Commit {
    /// Runs `then` once the commit is on disk: at once where the commit synced itself
    /// (PostgreSQL, the pool's SQLite connections), after the WAL's fsync on the SQLite
    /// writer, on the syncer's thread. An `Err` means the fsync failed: the change is
    /// committed but may not survive a crash.
    pub fn when_durable(self, then: impl FnOnce(Result<(), String>) + Send + 'static) {
        match self.pending {
            None => then(Ok(())),
            Some((durable, commit)) => durable.after(commit, Some(Box::new(then) as AfterSync)),
        }
    }
}

enum Tx<'c> {
    Pool(PoolTx<'c>),
    Sqlite(rusqlite::Transaction<'c>),
    Postgres(PgTx<'c>),
}

impl Store {
    /// A connection for the writer. Blocks its thread while a SQLite file opens: call it
    /// on the writer's thread.
    pub async fn write_connection(&self) -> Result<WriteConnection, StoreError> {
        if let Some(pool) = &self.pg_writer {
            return Ok(WriteConnection {
                conn: Conn::Postgres(pool.acquire().await?),
                durable: None,
            });
        }
        Ok(match &self.durable {
            Some(durable) => WriteConnection {
                conn: Conn::Sqlite(sqlite_writes::open(durable.database())?),
                durable: Some(durable.clone()),
            },
            None => WriteConnection {
                conn: Conn::Pool(self.write.acquire().await?, self.backend),
                durable: None,
            },
        })
    }
}

impl WriteConnection {
    /// True for a connection borrowed from the write pool (which other writes share; the
    /// PostgreSQL writers' pool is theirs alone).
    pub fn is_pooled(&self) -> bool {
        matches!(self.conn, Conn::Pool(..))
    }

    pub async fn begin(&mut self) -> Result<WriteTx<'_>, StoreError> {
        let tx = match &mut self.conn {
            Conn::Pool(conn, backend) => Tx::Pool(PoolTx {
                tx: conn.begin().await?,
                backend: *backend,
            }),
            Conn::Sqlite(conn) => {
                if self
                    .durable
                    .as_ref()
                    .is_some_and(|d| d.take_checkpoint_request())
                {
                    // Between two batches: the few frames the checkpointer left (see
                    // `durable`). A failure costs only the WAL's restart; the writer's own
                    // automatic checkpoint remains the backstop.
                    if let Err(e) = sqlite_writes::checkpoint(conn) {
                        tracing::warn!(error = %e, "the writer's WAL checkpoint failed");
                    }
                }
                Tx::Sqlite(sqlite_writes::begin(conn)?)
            }
            Conn::Postgres(conn) => Tx::Postgres(pg_writes::begin(conn).await?),
        };
        Ok(WriteTx {
            tx,
            durable: self.durable.clone(),
        })
    }
}

impl WriteTx<'_> {
    /// Takes the change counters of `users` under lock, in sorted order (so two
    /// transactions touching the same users never deadlock), with each user's name and
    /// e-mail. Unknown users are absent from the answer.
    ///
    /// On PostgreSQL the row locks are held until commit, which is what makes sequence
    /// numbers follow commit order. On SQLite the transaction holds the database's single
    /// write lock (from its start), which serialises writers the same way.
    pub async fn lock_users(
        &mut self,
        users: impl IntoIterator<Item = String>,
    ) -> Result<BTreeMap<String, LockedUser>, StoreError> {
        let mut sorted: Vec<String> = users.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        match &mut self.tx {
            Tx::Pool(tx) => tx.lock_users(&sorted).await,
            Tx::Sqlite(tx) => sqlite_writes::lock_users(tx, &sorted),
            Tx::Postgres(tx) => Ok(tx.lock_and_load(&sorted, &[]).await?.0),
        }
    }

    /// [`WriteTx::lock_users`] and [`WriteTx::messages_by_client_ids`] at once: on
    /// PostgreSQL one statement, so one round trip. The lookup reads what was committed
    /// when the statement began, which may be before the locks were granted: a message
    /// another writer committed meanwhile under the same key is not seen, and the insert
    /// then meets the unique index instead (the batch fails and its commands are retried
    /// one by one, which finds it). A sender's own commands are applied in order by one
    /// worker, so on one node this happens only for the same `tempId` sent through two.
    #[allow(clippy::type_complexity)]
    pub async fn lock_and_load(
        &mut self,
        users: impl IntoIterator<Item = String>,
        client_ids: &[(String, String)],
    ) -> Result<
        (
            BTreeMap<String, LockedUser>,
            HashMap<(String, String), MessageState>,
        ),
        StoreError,
    > {
        if let Tx::Postgres(tx) = &mut self.tx {
            let mut sorted: Vec<String> = users.into_iter().collect();
            sorted.sort();
            sorted.dedup();
            return tx.lock_and_load(&sorted, client_ids).await;
        }
        let locked = self.lock_users(users).await?;
        let known = if client_ids.is_empty() {
            HashMap::new()
        } else {
            self.messages_by_client_ids(client_ids).await?
        };
        Ok((locked, known))
    }

    /// The messages with these ids (missing ids are absent).
    pub async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.message_states(ids).await,
            Tx::Sqlite(tx) => sqlite_writes::message_states(tx, ids),
            Tx::Postgres(tx) => tx.message_states(ids).await,
        }
    }

    /// Messages already stored under these (sender, client message id) keys. One lookup of
    /// the `(sender_id, client_message_id)` unique index per key.
    pub async fn messages_by_client_ids(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), MessageState>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.messages_by_client_ids(keys).await,
            Tx::Sqlite(tx) => sqlite_writes::messages_by_client_ids(tx, keys),
            Tx::Postgres(tx) => Ok(tx.lock_and_load(&[], keys).await?.1),
        }
    }

    /// The receipts stored for these messages, by (message, user, table), with their time.
    pub async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.receipts_of(ids).await,
            Tx::Sqlite(tx) => sqlite_writes::receipts_of(tx, ids),
            Tx::Postgres(tx) => tx.receipts_of(ids).await,
        }
    }

    /// The direct conversations of these pairs (smaller id first) that exist.
    pub async fn direct_conversations(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.direct_conversations(pairs).await,
            Tx::Sqlite(tx) => sqlite_writes::direct_conversations(tx, pairs),
            Tx::Postgres(tx) => tx.direct_conversations(pairs).await,
        }
    }

    /// The conversations with these ids and all their member rows, locked (on PostgreSQL,
    /// in id order, before any counter: every transaction takes conversations first, then
    /// counters, each in sorted order, so none waits for another in a cycle). While a
    /// transaction holds a conversation nobody else changes its members.
    pub async fn lock_conversations(
        &mut self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, ConversationState>, StoreError> {
        let mut sorted: Vec<String> = ids.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        if sorted.is_empty() {
            return Ok(HashMap::new());
        }
        match &mut self.tx {
            Tx::Pool(tx) => tx.lock_conversations(&sorted).await,
            Tx::Sqlite(tx) => sqlite_writes::lock_conversations(tx, &sorted),
            Tx::Postgres(tx) => tx.lock_conversations(&sorted).await,
        }
    }

    /// Messages of `conversation` after position `after` up to `up_to` not sent by
    /// `reader`, not deleted and not yet read by `reader`, oldest first.
    pub async fn unread_between(
        &mut self,
        conversation: &str,
        reader: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<MessageState>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.unread_between(conversation, reader, after, up_to).await,
            Tx::Sqlite(tx) => sqlite_writes::unread_between(tx, conversation, reader, after, up_to),
            Tx::Postgres(tx) => tx.unread_between(conversation, reader, after, up_to).await,
        }
    }

    /// Stores a batch's writes. New messages get their history position back.
    pub async fn write(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        match &mut self.tx {
            Tx::Pool(tx) => tx.write(w).await,
            Tx::Sqlite(tx) => sqlite_writes::write(tx, w),
            Tx::Postgres(tx) => tx.write(w).await,
        }
    }

    /// Commits. The commit takes its number from the syncer before it runs, so a reader
    /// that sees it also waits for it (`Store::settled`).
    pub async fn commit(self) -> Result<Commit, StoreError> {
        let pending = self.durable.map(|d| {
            let n = d.begin_commit();
            (d, n)
        });
        let committed = match self.tx {
            Tx::Pool(tx) => tx.tx.commit().await.map_err(StoreError::from),
            Tx::Sqlite(tx) => tx.commit().map_err(StoreError::from),
            Tx::Postgres(tx) => tx.tx.commit().await.map_err(StoreError::from),
        };
        match committed {
            Ok(()) => Ok(Commit { pending }),
            Err(e) => {
                if let Some((durable, n)) = pending {
                    durable.after(n, None);
                }
                Err(e)
            }
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

/// A transaction on a pool connection (PostgreSQL, or an in-memory SQLite database).
struct PoolTx<'c> {
    tx: Transaction<'c, Any>,
    backend: Backend,
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

impl PoolTx<'_> {
    async fn lock_users(
        &mut self,
        sorted: &[String],
    ) -> Result<BTreeMap<String, LockedUser>, StoreError> {
        let mut locked = BTreeMap::new();
        for chunk in sorted.chunks(CHUNK) {
            let lock = match self.backend {
                Backend::Postgres => " FOR UPDATE OF c",
                Backend::Sqlite => "",
            };
            let sql = format!(
                "SELECT c.user_id, c.seq, u.name, u.email FROM user_seqs c \
                 JOIN users u ON u.id = c.user_id WHERE c.user_id IN ({}) \
                 ORDER BY c.user_id{lock}",
                self.backend.params(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64, String, String)>(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for (user, seq, name, email) in q.fetch_all(&mut *self.tx).await? {
                locked.insert(user, LockedUser { seq, name, email });
            }
        }
        Ok(locked)
    }

    async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError> {
        let mut states = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT {STATE_AND_HISTORY_COLUMNS} FROM messages WHERE id IN ({})",
                self.backend.params(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, MessageState>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for m in q.fetch_all(&mut *self.tx).await? {
                states.insert(m.id.clone(), m);
            }
        }
        Ok(states)
    }

    async fn messages_by_client_ids(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), MessageState>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct ByClient {
            #[sqlx(flatten)]
            state: MessageState,
            client_message_id: String,
        }
        let mut found = HashMap::new();
        for chunk in keys.chunks(ROWS) {
            let matches = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(sender_id = ${} AND client_message_id = ${})",
                        2 * i + 1,
                        2 * i + 2
                    )
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql =
                format!("SELECT {STATE_COLUMNS}, client_message_id FROM messages WHERE {matches}");
            let mut q = sqlx::query_as::<_, ByClient>(&sql);
            for (sender, cid) in chunk {
                q = q.bind(sender).bind(cid);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                found.insert(
                    (row.state.sender_id.clone(), row.client_message_id),
                    row.state,
                );
            }
        }
        Ok(found)
    }

    async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
        let mut found = HashMap::new();
        for table in [ReceiptTable::Read, ReceiptTable::Delivery] {
            let (name, column) = table.table_and_column();
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "SELECT message_id, user_id, {column} FROM {name} WHERE message_id IN ({})",
                    self.backend.params(1, chunk.len())
                );
                let mut q = sqlx::query_as::<_, (String, String, Millis)>(&sql);
                for id in chunk {
                    q = q.bind(id);
                }
                for (id, user, at) in q.fetch_all(&mut *self.tx).await? {
                    found.insert((id, user, table), at);
                }
            }
        }
        Ok(found)
    }

    async fn direct_conversations(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        let mut found = HashMap::new();
        for chunk in pairs.chunks(ROWS) {
            let matches = (0..chunk.len())
                .map(|i| format!("(user_lo = ${} AND user_hi = ${})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!("SELECT id, user_lo, user_hi FROM conversations WHERE {matches}");
            let mut q = sqlx::query_as::<_, (String, String, String)>(&sql);
            for (lo, hi) in chunk {
                q = q.bind(lo).bind(hi);
            }
            for (id, lo, hi) in q.fetch_all(&mut *self.tx).await? {
                found.insert((lo, hi), id);
            }
        }
        Ok(found)
    }

    async fn lock_conversations(
        &mut self,
        sorted: &[String],
    ) -> Result<HashMap<String, ConversationState>, StoreError> {
        let mut found = HashMap::new();
        let mut members = Vec::new();
        for chunk in sorted.chunks(CHUNK) {
            let lock = match self.backend {
                Backend::Postgres => " FOR UPDATE",
                Backend::Sqlite => "",
            };
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({}) ORDER BY id{lock}",
                self.backend.params(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, ConversationTuple>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for t in q.fetch_all(&mut *self.tx).await? {
                let c = conversation_from(t);
                found.insert(c.id.clone(), c);
            }
            let sql = format!(
                "SELECT {MEMBER_COLUMNS} FROM conversation_members WHERE conversation_id IN ({})",
                self.backend.params(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, MemberTuple>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            members.extend(
                q.fetch_all(&mut *self.tx)
                    .await?
                    .into_iter()
                    .map(member_from),
            );
        }
        attach_members(&mut found, members);
        Ok(found)
    }

    async fn unread_between(
        &mut self,
        conversation: &str,
        reader: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<MessageState>, StoreError> {
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM messages m WHERE conversation_id = $1 AND pos > $2 \
             AND pos <= $3 AND sender_id <> $4 AND deleted_at IS NULL AND NOT EXISTS ( \
               SELECT 1 FROM read_receipts r WHERE r.message_id = m.id AND r.user_id = $4) \
             ORDER BY pos"
        );
        Ok(sqlx::query_as::<_, MessageState>(&sql)
            .bind(conversation)
            .bind(after)
            .bind(up_to)
            .bind(reader)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn write(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        // New conversations first (messages and members refer to them); every changed
        // one gets its latest position once the messages are in.
        let created: Vec<&ConversationState> =
            w.conversations.iter().filter(|c| c.created).collect();
        for chunk in created.chunks(ROWS) {
            let sql = UPSERT_CONVERSATION.replace("{rows}", &self.backend.rows(chunk.len(), 7));
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(&c.id)
                    .bind(&c.kind)
                    .bind(&c.title)
                    .bind(&c.user_lo)
                    .bind(&c.user_hi)
                    .bind(c.created_at)
                    .bind(c.last_pos);
            }
            q.execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_insert)?;
        }
        let mut positions = HashMap::new();
        for chunk in w.messages.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, \
                 created_at, client_message_id, sender_seq, receiver_seq) VALUES {} \
                 RETURNING id, pos",
                self.backend.rows(chunk.len(), 9)
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
            for m in chunk {
                q = q
                    .bind(&m.id)
                    .bind(&m.conversation_id)
                    .bind(&m.sender_id)
                    .bind(&m.receiver_id)
                    .bind(&m.content)
                    .bind(m.created_at)
                    .bind(&m.client_message_id)
                    .bind(m.sender_seq)
                    .bind(m.receiver_seq);
            }
            positions.extend(
                q.fetch_all(&mut *self.tx)
                    .await
                    .map_err(StoreError::from_insert)?,
            );
        }
        for chunk in w.conversations.chunks(ROWS) {
            let sql = UPSERT_CONVERSATION.replace("{rows}", &self.backend.rows(chunk.len(), 7));
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(&c.id)
                    .bind(&c.kind)
                    .bind(&c.title)
                    .bind(&c.user_lo)
                    .bind(&c.user_hi)
                    .bind(c.created_at)
                    .bind(resolved(c.last_pos, &c.last_message, &positions));
            }
            q.execute(&mut *self.tx).await?;
        }
        for chunk in w.members.chunks(ROWS) {
            let sql = UPSERT_MEMBER.replace("{rows}", &self.backend.rows(chunk.len(), 8));
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for (cid, m) in chunk {
                q = q
                    .bind(cid)
                    .bind(&m.user_id)
                    .bind(&m.role)
                    .bind(m.joined_at)
                    .bind(resolved(m.last_pos, &m.last_message, &positions))
                    .bind(m.read_up_to_pos)
                    .bind(m.unread)
                    .bind(m.removed_at);
            }
            q.execute(&mut *self.tx).await?;
        }
        for chunk in w.changes.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO changes (user_id, seq, kind, message_id, conversation_id, actor_id, at) \
                 VALUES {}",
                self.backend.rows(chunk.len(), 7)
            );
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(&c.user_id)
                    .bind(c.seq)
                    .bind(c.kind.as_str())
                    .bind(&c.message_id)
                    .bind(&c.conversation_id)
                    .bind(&c.actor_id)
                    .bind(c.at);
            }
            q.execute(&mut *self.tx).await?;
        }
        for (id, old, new) in w.edits {
            sqlx::query(
                "INSERT INTO message_edits (message_id, content, replaced_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(old)
            .bind(w.now)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1")
                .bind(id)
                .bind(new)
                .bind(w.now)
                .execute(&mut *self.tx)
                .await?;
        }
        for id in w.deletes {
            // The row stays; its content and its edit history do not.
            sqlx::query("UPDATE messages SET content = $2, deleted_at = $3 WHERE id = $1")
                .bind(id)
                .bind(w.tombstone)
                .bind(w.now)
                .execute(&mut *self.tx)
                .await?;
            sqlx::query("DELETE FROM message_edits WHERE message_id = $1")
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        }
        for table in [ReceiptTable::Read, ReceiptTable::Delivery] {
            let (name, column) = table.table_and_column();
            let of_table: Vec<_> = w.receipts.iter().filter(|r| r.0 == table).collect();
            for chunk in of_table.chunks(ROWS) {
                let sql = format!(
                    "INSERT INTO {name} (message_id, user_id, {column}) VALUES {} \
                     ON CONFLICT (message_id, user_id) DO NOTHING",
                    self.backend.rows(chunk.len(), 3)
                );
                let mut q: AnyQuery<'_> = sqlx::query(&sql);
                for (_, message_id, user_id) in chunk {
                    q = q.bind(message_id).bind(user_id).bind(w.now);
                }
                q.execute(&mut *self.tx).await?;
            }
        }
        let counters: Vec<(&String, &i64)> = w.counters.iter().collect();
        for chunk in counters.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO user_seqs (user_id, seq) VALUES {} \
                 ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq",
                self.backend.rows(chunk.len(), 2)
            );
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for (user, seq) in chunk {
                q = q.bind(*user).bind(**seq);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(positions)
    }
}
