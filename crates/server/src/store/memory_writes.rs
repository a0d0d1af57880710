//! The write transaction on an in-memory SQLite database (`sqlite::memory:`), through the
//! sqlx pool's one connection: an in-memory database exists only inside the connection that
//! opened it, so each transaction borrows that connection and gives it back when it ends
//! (the pool's other writes and every read need it too, the writer's own reload of retried
//! sends included). Multi-row statements, sqlx's SQLite driver; nothing to make durable.
//! For tests and trying the server out: an SQLite file goes through `sqlite_writes`.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Transaction};

use super::writes::{
    attach_members, conversation_from, member_from, resolved, Commit, ConversationState,
    ConversationTuple, Loaded, LockOrder, LockedUser, MemberTuple, MessageState, ReceiptTable,
    WriteConnection, WriteTx, Writes, CONVERSATION_COLUMNS, MEMBER_COLUMNS,
    STATE_AND_HISTORY_COLUMNS, STATE_COLUMNS, UPSERT_CONVERSATION, UPSERT_MEMBER,
};
use super::{Backend, StoreError};
use crate::clock::Millis;

const SQLITE: Backend = Backend::Sqlite;

/// Ids per `IN (…)` list.
const CHUNK: usize = 400;

/// Rows per multi-row `INSERT`: a whole batch (`messaging::writer::MAX_BATCH`) in one
/// statement per table, within SQLite's parameter limit. Generated statements use
/// anonymous `?` (`Backend::param`), so binding stays linear in their size.
const ROWS: usize = 512;

/// The pool whose one connection holds the database.
pub(super) struct MemoryWrites {
    pool: AnyPool,
}

impl MemoryWrites {
    pub(super) fn new(pool: AnyPool) -> MemoryWrites {
        MemoryWrites { pool }
    }
}

#[async_trait(?Send)]
impl WriteConnection for MemoryWrites {
    async fn begin(&mut self) -> Result<Box<dyn WriteTx + '_>, StoreError> {
        Ok(Box::new(MemoryTx {
            tx: self.pool.begin().await?,
        }))
    }
}

struct MemoryTx<'c> {
    tx: Transaction<'c, Any>,
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

impl MemoryTx<'_> {
    /// The rows of `sql` for every one of `ids`, [`CHUNK`] ids per statement: `sql(list)`
    /// is the statement with `list` (the chunk's placeholders) where its `IN (…)` goes.
    async fn rows_in<T>(
        &mut self,
        ids: &[String],
        sql: impl Fn(&str) -> String,
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut rows = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql = sql(&SQLITE.params(1, chunk.len()));
            let mut q = sqlx::query_as::<_, T>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            rows.extend(q.fetch_all(&mut *self.tx).await?);
        }
        Ok(rows)
    }

    async fn lock_users(
        &mut self,
        sorted: &[String],
    ) -> Result<BTreeMap<String, LockedUser>, StoreError> {
        let rows: Vec<(String, i64, String, String)> = self
            .rows_in(sorted, |list| {
                format!(
                    "SELECT c.user_id, c.seq, u.name, u.email FROM user_seqs c \
                     JOIN users u ON u.id = c.user_id WHERE c.user_id IN ({list}) \
                     ORDER BY c.user_id"
                )
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(user, seq, name, email)| (user, LockedUser { seq, name, email }))
            .collect())
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
}

#[async_trait(?Send)]
impl WriteTx for MemoryTx<'_> {
    async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError> {
        let states: Vec<MessageState> = self
            .rows_in(ids, |list| {
                format!("SELECT {STATE_AND_HISTORY_COLUMNS} FROM messages WHERE id IN ({list})")
            })
            .await?;
        Ok(states.into_iter().map(|m| (m.id.clone(), m)).collect())
    }

    async fn lock_and_load(
        &mut self,
        users: &LockOrder,
        client_ids: &[(String, String)],
    ) -> Result<Loaded, StoreError> {
        let locked = self.lock_users(users.ids()).await?;
        let known = if client_ids.is_empty() {
            HashMap::new()
        } else {
            self.messages_by_client_ids(client_ids).await?
        };
        Ok((locked, known))
    }

    async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
        let mut found = HashMap::new();
        for table in [ReceiptTable::Read, ReceiptTable::Delivery] {
            let (name, column) = table.table_and_column();
            let rows: Vec<(String, String, Millis)> = self
                .rows_in(ids, |list| {
                    format!(
                        "SELECT message_id, user_id, {column} FROM {name} \
                         WHERE message_id IN ({list})"
                    )
                })
                .await?;
            for (id, user, at) in rows {
                found.insert((id, user, table), at);
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
        ids: &LockOrder,
    ) -> Result<HashMap<String, ConversationState>, StoreError> {
        let sorted = ids.ids();
        let conversations: Vec<ConversationTuple> = self
            .rows_in(sorted, |list| {
                format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({list}) \
                     ORDER BY id"
                )
            })
            .await?;
        let mut found: HashMap<String, ConversationState> = conversations
            .into_iter()
            .map(|t| {
                let c = conversation_from(t);
                (c.id.clone(), c)
            })
            .collect();
        let members: Vec<MemberTuple> = self
            .rows_in(sorted, |list| {
                format!(
                    "SELECT {MEMBER_COLUMNS} FROM conversation_members \
                     WHERE conversation_id IN ({list})"
                )
            })
            .await?;
        let members: Vec<_> = members.into_iter().map(member_from).collect();
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
            let sql = UPSERT_CONVERSATION.replace("{rows}", &SQLITE.rows(chunk.len(), 7));
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
                SQLITE.rows(chunk.len(), 9)
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
            let sql = UPSERT_CONVERSATION.replace("{rows}", &SQLITE.rows(chunk.len(), 7));
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
            let sql = UPSERT_MEMBER.replace("{rows}", &SQLITE.rows(chunk.len(), 8));
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
                SQLITE.rows(chunk.len(), 7)
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
                    SQLITE.rows(chunk.len(), 3)
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
                SQLITE.rows(chunk.len(), 2)
            );
            let mut q: AnyQuery<'_> = sqlx::query(&sql);
            for (user, seq) in chunk {
                q = q.bind(*user).bind(**seq);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(positions)
    }

    async fn commit(self: Box<Self>) -> Result<Commit, StoreError> {
        self.tx.commit().await?;
        Ok(Commit::durable())
    }
}
