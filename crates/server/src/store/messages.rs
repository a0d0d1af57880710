//! Reading messages, conversations and the change log.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::rows::{MessageRow, ReceiptRow, MESSAGE_SELECT};
use super::{Backend, Store, StoreError, StoredMessage};
use crate::clock::Millis;
use crate::domain::{MessageId, UserId};

/// One entry of a user's change log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub seq: i64,
    pub kind: String,
    pub message_id: String,
    pub conversation_id: Option<String>,
    pub actor_id: String,
    pub at: Millis,
}

/// Where a message sits: its history position, its conversation and its sender (which
/// never change).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessagePlace {
    pub pos: i64,
    pub conversation_id: String,
    pub sender_id: String,
}

/// Loads the messages with the given ids (any order; missing ids are skipped), receipts
/// included, in `pos` order.
pub(crate) async fn messages_by_ids(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[String],
) -> Result<Vec<StoredMessage>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{MESSAGE_SELECT} WHERE m.id IN ({}) ORDER BY m.pos",
        backend.params(1, ids.len())
    );
    let mut q = sqlx::query_as::<_, MessageRow>(&sql);
    for id in ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    with_receipts(conn, backend, rows).await
}

/// Attaches read and delivery receipts to message rows, keeping their order.
async fn with_receipts(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: Vec<MessageRow>,
) -> Result<Vec<StoredMessage>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let list = backend.params(1, ids.len());
    let mut receipts: HashMap<String, (Vec<_>, Vec<_>)> = HashMap::new();
    for (table, column, is_read) in [
        ("read_receipts", "read_at", true),
        ("delivery_receipts", "delivered_at", false),
    ] {
        let sql = format!(
            "SELECT message_id, user_id, {column} AS at FROM {table} \
             WHERE message_id IN ({list}) ORDER BY {column}, user_id"
        );
        let mut q = sqlx::query_as::<_, ReceiptRow>(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let entry = receipts.entry(r.message_id).or_default();
            let list = if is_read { &mut entry.0 } else { &mut entry.1 };
            list.push((r.user_id, r.at));
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let (reads, deliveries) = receipts.remove(&row.id).unwrap_or_default();
            StoredMessage {
                row,
                reads,
                deliveries,
            }
        })
        .collect())
}

impl Store {
    pub async fn message_place(&self, id: MessageId) -> Result<Option<MessagePlace>, StoreError> {
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT pos, conversation_id, sender_id FROM messages WHERE id = $1",
                )
                .bind(id.as_string())
                .fetch_optional(conn)
                .await?)
            })
            .await
    }

    pub async fn messages_by_ids(&self, ids: &[String]) -> Result<Vec<StoredMessage>, StoreError> {
        let backend = self.backend;
        self.reads
            .run(async |conn| messages_by_ids(conn, backend, ids).await)
            .await
    }

    /// [`Store::messages_by_ids`] without waiting for the syncer: for the writer, whose
    /// answers wait for the fsync anyway (and which must not wait for its own commit).
    pub(crate) async fn committed_messages_by_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if self.reload_fails() {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        let backend = self.backend;
        self.reads
            .unsettled(async |conn| messages_by_ids(conn, backend, ids).await)
            .await
    }

    /// Up to `limit` messages of `conversation` older than position `before` and not
    /// after `up_to` (newest first from the database, returned oldest first).
    pub async fn conversation_page(
        &self,
        conversation: &str,
        before: Option<i64>,
        up_to: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let sql = format!(
            "{MESSAGE_SELECT} WHERE m.conversation_id = $1 AND m.pos < $2 AND m.pos <= $3 \
             ORDER BY m.pos DESC LIMIT $4"
        );
        let backend = self.backend;
        self.reads
            .run(async |conn| {
                let mut rows = sqlx::query_as::<_, MessageRow>(&sql)
                    .bind(conversation)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(up_to.unwrap_or(i64::MAX))
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.reverse();
                with_receipts(conn, backend, rows).await
            })
            .await
    }

    /// Messages at these positions, receipts included.
    pub async fn messages_at(&self, positions: &[i64]) -> Result<Vec<StoredMessage>, StoreError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{MESSAGE_SELECT} WHERE m.pos IN ({}) ORDER BY m.pos DESC",
            self.backend.params(1, positions.len())
        );
        let backend = self.backend;
        self.reads
            .run(async |conn| {
                let mut q = sqlx::query_as::<_, MessageRow>(&sql);
                for pos in positions {
                    q = q.bind(*pos);
                }
                let rows = q.fetch_all(&mut *conn).await?;
                with_receipts(conn, backend, rows).await
            })
            .await
    }

    /// The brief's catch-up: messages of `me` created, edited, deleted or read (by anyone)
    /// after `since`, in history order, at most `limit`: those of the conversations `me` is
    /// a member of (a former member's up to the removal).
    pub async fn messages_changed_since(
        &self,
        me: UserId,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let sql = format!(
            "{MESSAGE_SELECT} JOIN conversation_members cm ON cm.conversation_id = m.conversation_id \
             AND cm.user_id = $1 \
             WHERE (cm.removed_at IS NULL OR m.pos <= cm.last_pos) AND ( \
               m.created_at > $2 OR m.edited_at > $2 OR m.deleted_at > $2 \
               OR EXISTS (SELECT 1 FROM read_receipts rr \
                          WHERE rr.message_id = m.id AND rr.read_at > $2)) \
             ORDER BY m.pos LIMIT $3"
        );
        let backend = self.backend;
        self.reads
            .run(async |conn| {
                let rows = sqlx::query_as::<_, MessageRow>(&sql)
                    .bind(me.as_string())
                    .bind(since)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?;
                with_receipts(conn, backend, rows).await
            })
            .await
    }

    /// `me`'s changes after `since`, in order, at most `limit`.
    pub async fn changes_since(
        &self,
        me: UserId,
        since: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StoreError> {
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT seq, kind, message_id, conversation_id, actor_id, at FROM changes \
                     WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(me.as_string())
                .bind(since)
                .bind(limit)
                .fetch_all(conn)
                .await?)
            })
            .await
    }

    /// The users `me` shares a conversation with (both members now).
    pub async fn partners(&self, me: UserId) -> Result<Vec<String>, StoreError> {
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT o.user_id FROM conversation_members mine \
                     JOIN conversation_members o ON o.conversation_id = mine.conversation_id \
                     WHERE mine.user_id = $1 AND mine.removed_at IS NULL \
                       AND o.removed_at IS NULL AND o.user_id <> $1",
                )
                .bind(me.as_string())
                .fetch_all(conn)
                .await?)
            })
            .await
    }

    /// The last sequence number allocated to `me` (0 when nothing happened yet).
    pub async fn current_seq(&self, me: UserId) -> Result<i64, StoreError> {
        self.reads
            .run(async |conn| {
                Ok(
                    sqlx::query_scalar("SELECT seq FROM user_seqs WHERE user_id = $1")
                        .bind(me.as_string())
                        .fetch_optional(conn)
                        .await?
                        .unwrap_or(0),
                )
            })
            .await
    }

    /// Earlier contents of a message, oldest first (empty once it is deleted).
    pub async fn edit_history(&self, id: MessageId) -> Result<Vec<(String, Millis)>, StoreError> {
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT content, replaced_at FROM message_edits WHERE message_id = $1 ORDER BY id",
                )
                .bind(id.as_string())
                .fetch_all(conn)
                .await?)
            })
            .await
    }
}
