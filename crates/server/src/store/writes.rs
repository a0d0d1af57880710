//! The write primitives of one transaction. The messaging layer decides what to write (every
//! rule lives there); this module only knows how.

use std::collections::BTreeMap;

use nexus_protocol::ChangeType;
use sqlx::{Any, Transaction};

use super::messages::messages_by_ids;
use super::{Backend, Store, StoreError, StoredMessage};
use crate::clock::Millis;

/// What the rules need to know about an existing message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageState {
    pub id: String,
    pub sender_id: String,
    pub receiver_id: String,
    pub content: String,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
    pub sender_seq: i64,
}

/// A new message row.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub sender_id: &'a str,
    pub receiver_id: &'a str,
    pub content: &'a str,
    pub created_at: Millis,
    pub client_message_id: Option<&'a str>,
    pub sender_seq: i64,
    pub receiver_seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptTable {
    Read,
    Delivery,
}

impl ReceiptTable {
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            ReceiptTable::Read => ("read_receipts", "read_at"),
            ReceiptTable::Delivery => ("delivery_receipts", "delivered_at"),
        }
    }
}

pub struct WriteTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl Store {
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(WriteTx {
            tx: self.write.begin().await?,
            backend: self.backend,
        })
    }
}

impl WriteTx {
    /// Takes the change counters of `users` under lock, in sorted order (so two
    /// transactions touching the same users can never deadlock) and returns their current
    /// values. Users without a counter (unknown ids) are absent from the answer.
    ///
    /// On PostgreSQL the row locks are held until commit, which is what makes sequence
    /// numbers follow commit order. On SQLite the transaction holds the database's single
    /// write lock, which serialises writers the same way.
    pub async fn lock_counters(
        &mut self,
        users: impl IntoIterator<Item = String>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut sorted: Vec<String> = users.into_iter().collect();
        sorted.sort();
        sorted.dedup();
        let sql = match self.backend {
            Backend::Postgres => "SELECT seq FROM user_seqs WHERE user_id = $1 FOR UPDATE",
            Backend::Sqlite => "SELECT seq FROM user_seqs WHERE user_id = $1",
        };
        let mut counters = BTreeMap::new();
        for user in sorted {
            let seq: Option<i64> = sqlx::query_scalar(sql)
                .bind(&user)
                .fetch_optional(&mut *self.tx)
                .await?;
            if let Some(seq) = seq {
                counters.insert(user, seq);
            }
        }
        Ok(counters)
    }

    /// Stores the counters' new values.
    pub async fn store_counters(
        &mut self,
        counters: &BTreeMap<String, i64>,
    ) -> Result<(), StoreError> {
        for (user, seq) in counters {
            sqlx::query("UPDATE user_seqs SET seq = $2 WHERE user_id = $1")
                .bind(user)
                .bind(*seq)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub async fn message_state(&mut self, id: &str) -> Result<Option<MessageState>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, sender_id, receiver_id, content, created_at, deleted_at, sender_seq \
             FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// The message `sender` already sent with this client id, if any.
    pub async fn message_by_client_id(
        &mut self,
        sender: &str,
        client_message_id: &str,
    ) -> Result<Option<MessageState>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, sender_id, receiver_id, content, created_at, deleted_at, sender_seq \
             FROM messages WHERE sender_id = $1 AND client_message_id = $2",
        )
        .bind(sender)
        .bind(client_message_id)
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    pub async fn insert_message(&mut self, m: NewMessage<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO messages (id, sender_id, receiver_id, content, created_at, \
             client_message_id, sender_seq, receiver_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id)
        .bind(m.sender_id)
        .bind(m.receiver_id)
        .bind(m.content)
        .bind(m.created_at)
        .bind(m.client_message_id)
        .bind(m.sender_seq)
        .bind(m.receiver_seq)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_insert)?;
        Ok(())
    }

    /// Keeps the old content in the edit history and stores the new one.
    pub async fn edit_message(
        &mut self,
        id: &str,
        old_content: &str,
        new_content: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO message_edits (message_id, content, replaced_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(old_content)
        .bind(at)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1")
            .bind(id)
            .bind(new_content)
            .bind(at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Keeps the row, replaces its content with `tombstone` and forgets its edit history.
    pub async fn soft_delete(
        &mut self,
        id: &str,
        tombstone: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET content = $2, deleted_at = $3 WHERE id = $1")
            .bind(id)
            .bind(tombstone)
            .bind(at)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("DELETE FROM message_edits WHERE message_id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Stores a receipt unless one exists. Returns the time of the receipt that is stored now
    /// and whether this call stored it.
    pub async fn insert_receipt(
        &mut self,
        table: ReceiptTable,
        message_id: &str,
        user_id: &str,
        at: Millis,
    ) -> Result<(Millis, bool), StoreError> {
        let (table, column) = table.table_and_column();
        let inserted = sqlx::query(&format!(
            "INSERT INTO {table} (message_id, user_id, {column}) VALUES ($1, $2, $3) \
             ON CONFLICT (message_id, user_id) DO NOTHING"
        ))
        .bind(message_id)
        .bind(user_id)
        .bind(at)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok((at, true));
        }
        let existing: Millis = sqlx::query_scalar(&format!(
            "SELECT {column} FROM {table} WHERE message_id = $1 AND user_id = $2"
        ))
        .bind(message_id)
        .bind(user_id)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((existing, false))
    }

    pub async fn append_change(
        &mut self,
        user_id: &str,
        seq: i64,
        kind: ChangeType,
        message_id: &str,
        actor_id: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO changes (user_id, seq, kind, message_id, actor_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user_id)
        .bind(seq)
        .bind(kind.as_str())
        .bind(message_id)
        .bind(actor_id)
        .bind(at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn load_messages(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        messages_by_ids(&mut self.tx, ids).await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
