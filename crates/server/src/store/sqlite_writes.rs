//! The write transaction on an SQLite file, through rusqlite on the writer's own thread.
//!
//! sqlx runs each SQLite connection on a worker thread of its own, so every statement of a
//! batch would be a round trip between two threads (and each multi-row statement one more
//! compile, since batch sizes vary). A batch is a chain of such statements; under load each
//! hop waited for a busy core, and the hops, not SQLite, bounded the single writer. Here
//! every statement is prepared once and run on the calling thread, which is the writer's,
//! so a blocking call costs nobody else anything. Commits are made durable by the syncer
//! (`durable`), beside the writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::durable::{finish_checkpoint, Durable};
use super::writes::{
    attach_members, conversation_from, member_from, resolved, Commit, ConversationState, Loaded,
    LockOrder, LockedUser, MessageState, ReceiptTable, WriteConnection, WriteTx, Writes,
    CONVERSATION_COLUMNS, MEMBER_COLUMNS, STATE_AND_HISTORY_COLUMNS, STATE_COLUMNS,
    UPSERT_CONVERSATION, UPSERT_MEMBER,
};
use super::{StoreError, SQLITE_SETTINGS};
use crate::clock::Millis;

/// The writer's connection to the file, and the syncer of the file's WAL.
pub(super) struct SqliteWrites {
    conn: Connection,
    durable: Arc<Durable>,
}

impl SqliteWrites {
    /// Opens the writer's connection (blocks the thread while the file opens: call it on
    /// the writer's thread).
    pub(super) fn open(durable: Arc<Durable>) -> Result<SqliteWrites, StoreError> {
        Ok(SqliteWrites {
            conn: open(durable.database())?,
            durable,
        })
    }
}

#[async_trait(?Send)]
impl WriteConnection for SqliteWrites {
    async fn begin(&mut self) -> Result<Box<dyn WriteTx + '_>, StoreError> {
        // Between two batches: the few frames the checkpointer left (see `durable`).
        finish_checkpoint(&self.durable, &self.conn);
        // Holds SQLite's write lock from its first statement: the counters it reads cannot
        // change before it commits.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteTx {
            tx,
            durable: &self.durable,
        }))
    }
}

struct SqliteTx<'c> {
    tx: Transaction<'c>,
    durable: &'c Arc<Durable>,
}

#[async_trait(?Send)]
impl WriteTx for SqliteTx<'_> {
    async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError> {
        message_states(&self.tx, ids)
    }

    async fn direct_conversations(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        direct_conversations(&self.tx, pairs)
    }

    async fn lock_conversations(
        &mut self,
        ids: &LockOrder,
    ) -> Result<HashMap<String, ConversationState>, StoreError> {
        lock_conversations(&self.tx, ids.ids())
    }

    async fn lock_and_load(
        &mut self,
        users: &LockOrder,
        client_ids: &[(String, String)],
    ) -> Result<Loaded, StoreError> {
        let locked = lock_users(&self.tx, users.ids())?;
        Ok((locked, messages_by_client_ids(&self.tx, client_ids)?))
    }

    async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
        receipts_of(&self.tx, ids)
    }

    async fn unread_between(
        &mut self,
        conversation: &str,
        reader: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<MessageState>, StoreError> {
        unread_between(&self.tx, conversation, reader, after, up_to)
    }

    async fn write(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        write(&self.tx, w)
    }

    /// The commit takes its number from the syncer before it runs, so a reader that sees
    /// it also waits for it (`Reads::run`).
    async fn commit(self: Box<Self>) -> Result<Commit, StoreError> {
        let SqliteTx { tx, durable } = *self;
        let n = durable.begin_commit();
        match tx.commit() {
            Ok(()) => Ok(Commit::synced_by(durable.clone(), n)),
            Err(e) => {
                durable.after(n, None);
                Err(e.into())
            }
        }
    }
}

/// Opens the writer's connection with the settings of every other connection to the file
/// (`SQLITE_SETTINGS`: WAL, checkpoints left to the background checkpointer) except one: its
/// commits do not wait for the fsync of the WAL, which the syncer thread does for them
/// (`durable`); nobody is answered before that fsync.
fn open(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.execute_batch(SQLITE_SETTINGS)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn lock_users(
    tx: &Transaction<'_>,
    users: &[String],
) -> Result<BTreeMap<String, LockedUser>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT c.seq, u.name, u.email FROM user_seqs c JOIN users u ON u.id = c.user_id \
         WHERE c.user_id = ?1",
    )?;
    let mut locked = BTreeMap::new();
    for user in users {
        let found = stmt
            .query_row([user], |r| {
                Ok(LockedUser {
                    seq: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                })
            })
            .optional()?;
        if let Some(l) = found {
            locked.insert(user.clone(), l);
        }
    }
    Ok(locked)
}

fn state(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageState> {
    Ok(MessageState {
        id: r.get(0)?,
        sender_id: r.get(1)?,
        receiver_id: r.get(2)?,
        content: r.get(3)?,
        created_at: r.get(4)?,
        deleted_at: r.get(5)?,
        sender_seq: r.get(6)?,
        conversation_id: r.get(7)?,
        pos: r.get(8)?,
        ..Default::default()
    })
}

/// [`state`] with the size of the edit history.
fn state_and_history(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageState> {
    Ok(MessageState {
        edits: r.get(9)?,
        history_chars: r.get(10)?,
        ..state(r)?
    })
}

fn message_states(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<HashMap<String, MessageState>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {STATE_AND_HISTORY_COLUMNS} FROM messages WHERE id = ?1"
    ))?;
    let mut states = HashMap::new();
    for id in ids {
        if let Some(m) = stmt.query_row([id], state_and_history).optional()? {
            states.insert(m.id.clone(), m);
        }
    }
    Ok(states)
}

fn messages_by_client_ids(
    tx: &Transaction<'_>,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), MessageState>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {STATE_COLUMNS} FROM messages WHERE sender_id = ?1 AND client_message_id = ?2"
    ))?;
    let mut found = HashMap::new();
    for (sender, cid) in keys {
        if let Some(m) = stmt.query_row([sender, cid], state).optional()? {
            found.insert((sender.clone(), cid.clone()), m);
        }
    }
    Ok(found)
}

fn receipts_of(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
    let mut found = HashMap::new();
    for table in [ReceiptTable::Read, ReceiptTable::Delivery] {
        let (name, column) = table.table_and_column();
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT user_id, {column} FROM {name} WHERE message_id = ?1"
        ))?;
        for id in ids {
            let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
            for row in rows {
                let (user, at) = row?;
                found.insert((id.clone(), user, table), at);
            }
        }
    }
    Ok(found)
}

fn direct_conversations(
    tx: &Transaction<'_>,
    pairs: &[(String, String)],
) -> Result<HashMap<(String, String), String>, StoreError> {
    let mut stmt =
        tx.prepare_cached("SELECT id FROM conversations WHERE user_lo = ?1 AND user_hi = ?2")?;
    let mut found = HashMap::new();
    for (lo, hi) in pairs {
        if let Some(id) = stmt
            .query_row([lo, hi], |r| r.get::<_, String>(0))
            .optional()?
        {
            found.insert((lo.clone(), hi.clone()), id);
        }
    }
    Ok(found)
}

fn lock_conversations(
    tx: &Transaction<'_>,
    ids: &[String],
) -> Result<HashMap<String, ConversationState>, StoreError> {
    let mut conv = tx.prepare_cached(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"
    ))?;
    let mut mem = tx.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM conversation_members WHERE conversation_id = ?1"
    ))?;
    let mut found = HashMap::new();
    let mut members = Vec::new();
    for id in ids {
        let c = conv
            .query_row([id], |r| {
                Ok(conversation_from((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                )))
            })
            .optional()?;
        let Some(c) = c else { continue };
        found.insert(c.id.clone(), c);
        let rows = mem.query_map([id], |r| {
            Ok(member_from((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            )))
        })?;
        for row in rows {
            members.push(row?);
        }
    }
    attach_members(&mut found, members);
    Ok(found)
}

fn unread_between(
    tx: &Transaction<'_>,
    conversation: &str,
    reader: &str,
    after: i64,
    up_to: i64,
) -> Result<Vec<MessageState>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {STATE_COLUMNS} FROM messages m WHERE conversation_id = ?1 AND pos > ?2 \
         AND pos <= ?3 AND sender_id <> ?4 AND deleted_at IS NULL AND NOT EXISTS ( \
           SELECT 1 FROM read_receipts r WHERE r.message_id = m.id AND r.user_id = ?4) \
         ORDER BY pos"
    ))?;
    let rows = stmt.query_map(rusqlite::params![conversation, after, up_to, reader], state)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A unique violation on insert is a `Conflict`, as on the other engines.
fn from_insert(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation)
            if matches!(
                e.sqlite_error().map(|f| f.extended_code),
                Some(
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
            ) =>
        {
            StoreError::Conflict
        }
        _ => StoreError::Sqlite(e),
    }
}

fn write(tx: &Transaction<'_>, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
    let one_row = |n: usize| {
        format!(
            "({})",
            (1..=n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    {
        let mut upsert = tx.prepare_cached(&UPSERT_CONVERSATION.replace("{rows}", &one_row(7)))?;
        for c in w.conversations.iter().filter(|c| c.created) {
            upsert
                .execute(params![
                    c.id,
                    c.kind,
                    c.title,
                    c.user_lo,
                    c.user_hi,
                    c.created_at,
                    c.last_pos
                ])
                .map_err(from_insert)?;
        }
    }
    let mut positions = HashMap::with_capacity(w.messages.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, \
             created_at, client_message_id, sender_seq, receiver_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for m in w.messages {
            insert
                .execute(params![
                    m.id,
                    m.conversation_id,
                    m.sender_id,
                    m.receiver_id,
                    m.content,
                    m.created_at,
                    m.client_message_id,
                    m.sender_seq,
                    m.receiver_seq
                ])
                .map_err(from_insert)?;
            positions.insert(m.id.clone(), tx.last_insert_rowid());
        }
    }
    {
        let mut upsert = tx.prepare_cached(&UPSERT_CONVERSATION.replace("{rows}", &one_row(7)))?;
        for c in w.conversations {
            let last = resolved(c.last_pos, &c.last_message, &positions);
            upsert
                .execute(params![
                    c.id,
                    c.kind,
                    c.title,
                    c.user_lo,
                    c.user_hi,
                    c.created_at,
                    last
                ])
                .map_err(from_insert)?;
        }
    }
    {
        let mut upsert = tx.prepare_cached(&UPSERT_MEMBER.replace("{rows}", &one_row(8)))?;
        for (cid, m) in w.members {
            let last = resolved(m.last_pos, &m.last_message, &positions);
            upsert.execute(params![
                cid,
                m.user_id,
                m.role,
                m.joined_at,
                last,
                m.read_up_to_pos,
                m.unread,
                m.removed_at
            ])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO changes (user_id, seq, kind, message_id, conversation_id, actor_id, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for c in w.changes {
            insert.execute(params![
                c.user_id,
                c.seq,
                c.kind.as_str(),
                c.message_id,
                c.conversation_id,
                c.actor_id,
                c.at
            ])?;
        }
    }
    for (id, old, new) in w.edits {
        tx.prepare_cached(
            "INSERT INTO message_edits (message_id, content, replaced_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, old, w.now])?;
        tx.prepare_cached("UPDATE messages SET content = ?2, edited_at = ?3 WHERE id = ?1")?
            .execute(params![id, new, w.now])?;
    }
    for id in w.deletes {
        // The row stays; its content and its edit history do not.
        tx.prepare_cached("UPDATE messages SET content = ?2, deleted_at = ?3 WHERE id = ?1")?
            .execute(params![id, w.tombstone, w.now])?;
        tx.prepare_cached("DELETE FROM message_edits WHERE message_id = ?1")?
            .execute([id])?;
    }
    for (table, message_id, user_id) in w.receipts {
        let (name, column) = table.table_and_column();
        tx.prepare_cached(&format!(
            "INSERT INTO {name} (message_id, user_id, {column}) VALUES (?1, ?2, ?3) \
             ON CONFLICT (message_id, user_id) DO NOTHING"
        ))?
        .execute(params![message_id, user_id, w.now])?;
    }
    let mut update = tx.prepare_cached("UPDATE user_seqs SET seq = ?2 WHERE user_id = ?1")?;
    for (user, seq) in w.counters {
        update.execute(params![user, seq])?;
    }
    Ok(positions)
}
