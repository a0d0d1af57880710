//! The write transaction on PostgreSQL, through sqlx's own PostgreSQL driver on a connection
//! the writer keeps.
//!
//! The same operations as the other engines' paths, shaped for PostgreSQL's costs: every
//! statement's text is fixed whatever the batch's size (rows travel as arrays, expanded by
//! `unnest` on the server), so each is prepared once per connection and then only bound and
//! executed, and a batch of sends is four round trips whatever its size: `BEGIN`; the
//! counters under lock together with the `tempId`s already stored (one statement); every
//! row of the batch (one statement: messages, conversations, change log and counters in
//! data-modifying CTEs); `COMMIT`. Edits, deletes and receipts add one statement each when a
//! batch has them. Durability is PostgreSQL's own: `COMMIT` returns once the commit's WAL is
//! flushed (`synchronous_commit=on`, the server's default), and only then is anyone answered.
//!
//! Counter rows stay the sequence's lock (`FOR UPDATE`, in user-id order, held to the
//! commit): that is what makes `seq` follow commit order across writers and nodes.

use std::collections::{BTreeMap, HashMap};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres, Transaction};

use super::writes::{LockedUser, MessageState, ReceiptTable, Writes, STATE_AND_HISTORY_COLUMNS};
use super::StoreError;
use crate::clock::Millis;

/// The writer's connection.
pub(super) type PgConn = PoolConnection<Postgres>;

/// One transaction.
pub(super) struct PgTx<'c> {
    pub(super) tx: Transaction<'c, Postgres>,
}

pub(super) async fn begin(conn: &mut PgConnection) -> Result<PgTx<'_>, StoreError> {
    Ok(PgTx {
        tx: conn.begin().await?,
    })
}

/// The counters (with each user's name and e-mail) and, in the same statement, the
/// messages already stored under (sender, client message id) keys: one round trip. The
/// lookup is one probe of the unique index per key (`LATERAL … LIMIT 1`, which the planner
/// cannot flatten into a join; the key is unique anyway): as a join, the generic plan
/// a prepared statement gets could hash the whole `messages` table instead (it did, 10 ms a
/// batch, while the table's statistics still described it as small).
const LOAD: &str = "\
WITH locked AS (
    SELECT c.user_id, c.seq, u.name, u.email FROM user_seqs c
    JOIN users u ON u.id = c.user_id
    WHERE c.user_id = ANY($1::text[])
    ORDER BY c.user_id
    FOR UPDATE OF c
), known AS (
    SELECT m.id, m.sender_id, m.receiver_id, m.content, m.created_at, m.deleted_at,
           m.sender_seq, m.client_message_id
    FROM unnest($2::text[], $3::text[]) AS k (sender_id, client_message_id)
    CROSS JOIN LATERAL (
        SELECT * FROM messages m
        WHERE m.sender_id = k.sender_id AND m.client_message_id = k.client_message_id
        LIMIT 1
    ) AS m
)
SELECT 'u' AS what, user_id AS id, seq, name, email, NULL::text AS receiver_id,
       NULL::text AS content, NULL::int8 AS created_at, NULL::int8 AS deleted_at,
       NULL::text AS client_message_id
FROM locked
UNION ALL
SELECT 'm', id, sender_seq, sender_id, NULL, receiver_id, content, created_at, deleted_at,
       client_message_id
FROM known";

type LoadRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Millis>,
    Option<Millis>,
    Option<String>,
);

/// Messages, conversations, change log and counters of a batch in one statement. A
/// conversation's last position is known only once its messages have theirs, so it is
/// computed from the inserted rows; positions are assigned in the order of the rows.
const WRITE: &str = "\
WITH m AS (
    INSERT INTO messages (id, sender_id, receiver_id, content, created_at, client_message_id,
                          sender_seq, receiver_seq)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[],
                         $6::text[], $7::int8[], $8::int8[])
    RETURNING id, sender_id, receiver_id, pos
), conv AS (
    INSERT INTO conversations (user_id, other_id, last_pos)
    SELECT user_id, other_id, max(pos) FROM (
        SELECT sender_id, receiver_id, pos FROM m
        UNION ALL
        SELECT receiver_id, sender_id, pos FROM m
    ) AS t (user_id, other_id, pos)
    GROUP BY user_id, other_id
    ON CONFLICT (user_id, other_id) DO UPDATE SET last_pos = excluded.last_pos
), ch AS (
    INSERT INTO changes (user_id, seq, kind, message_id, actor_id, at)
    SELECT * FROM unnest($9::text[], $10::int8[], $11::text[], $12::text[], $13::text[],
                         $14::int8[])
), counters AS (
    INSERT INTO user_seqs (user_id, seq)
    SELECT * FROM unnest($15::text[], $16::int8[])
    ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq
)
SELECT id, pos FROM m";

impl PgTx<'_> {
    /// See `WriteTx::lock_and_load`.
    #[allow(clippy::type_complexity)]
    pub(super) async fn lock_and_load(
        &mut self,
        sorted_users: &[String],
        client_ids: &[(String, String)],
    ) -> Result<
        (
            BTreeMap<String, LockedUser>,
            HashMap<(String, String), MessageState>,
        ),
        StoreError,
    > {
        let (senders, cids): (Vec<&str>, Vec<&str>) = client_ids
            .iter()
            .map(|(s, c)| (s.as_str(), c.as_str()))
            .unzip();
        let rows: Vec<LoadRow> = sqlx::query_as(LOAD)
            .bind(sorted_users)
            .bind(&senders)
            .bind(&cids)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut locked = BTreeMap::new();
        let mut known = HashMap::new();
        for (what, id, seq, name_or_sender, email, receiver, content, created, deleted, cid) in rows
        {
            if what == "u" {
                locked.insert(
                    id,
                    LockedUser {
                        seq,
                        name: name_or_sender,
                        email: email.unwrap_or_default(),
                    },
                );
                continue;
            }
            let sender_id = name_or_sender;
            known.insert(
                (sender_id.clone(), cid.unwrap_or_default()),
                MessageState {
                    id,
                    sender_id,
                    receiver_id: receiver.unwrap_or_default(),
                    content: content.unwrap_or_default(),
                    created_at: created.unwrap_or_default(),
                    deleted_at: deleted,
                    sender_seq: seq,
                    ..Default::default()
                },
            );
        }
        Ok((locked, known))
    }

    pub(super) async fn message_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, MessageState>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql =
            format!("SELECT {STATE_AND_HISTORY_COLUMNS} FROM messages WHERE id = ANY($1::text[])");
        let found: Vec<MessageState> = sqlx::query_as(&sql)
            .bind(ids)
            .fetch_all(&mut *self.tx)
            .await?;
        Ok(found.into_iter().map(|m| (m.id.clone(), m)).collect())
    }

    pub(super) async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, ReceiptTable), Millis>, StoreError> {
        let rows: Vec<(String, bool, Millis)> = sqlx::query_as(
            "SELECT message_id, true, read_at FROM read_receipts WHERE message_id = ANY($1::text[]) \
             UNION ALL \
             SELECT message_id, false, delivered_at FROM delivery_receipts \
             WHERE message_id = ANY($1::text[])",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, read, at)| {
                let table = if read {
                    ReceiptTable::Read
                } else {
                    ReceiptTable::Delivery
                };
                ((id, table), at)
            })
            .collect())
    }

    /// Stores a batch's writes: one statement for its messages, conversations, change log
    /// and counters, one more per kind of edit, delete or receipt it holds.
    pub(super) async fn write(
        &mut self,
        w: &Writes<'_>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut positions = HashMap::new();
        if !w.messages.is_empty() || !w.changes.is_empty() || !w.counters.is_empty() {
            positions = self.write_rows(w).await?;
        }
        if !w.edits.is_empty() {
            let (ids, old, new): (Vec<&str>, Vec<&str>, Vec<&str>) = unzip3(
                w.edits
                    .iter()
                    .map(|(id, old, new)| (id.as_str(), old.as_str(), new.as_str())),
            );
            sqlx::query(
                "WITH e AS (INSERT INTO message_edits (message_id, content, replaced_at) \
                 SELECT id, old, $4 FROM unnest($1::text[], $2::text[]) AS e (id, old)) \
                 UPDATE messages m SET content = v.new, edited_at = $4 \
                 FROM unnest($1::text[], $3::text[]) AS v (id, new) WHERE m.id = v.id",
            )
            .bind(&ids)
            .bind(&old)
            .bind(&new)
            .bind(w.now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !w.deletes.is_empty() {
            // The row stays; its content and its edit history do not.
            sqlx::query(
                "WITH d AS (DELETE FROM message_edits WHERE message_id = ANY($1::text[])) \
                 UPDATE messages SET content = $2, deleted_at = $3 WHERE id = ANY($1::text[])",
            )
            .bind(w.deletes)
            .bind(w.tombstone)
            .bind(w.now)
            .execute(&mut *self.tx)
            .await?;
        }
        for table in [ReceiptTable::Read, ReceiptTable::Delivery] {
            let (name, column) = table.table_and_column();
            let (messages, users): (Vec<&str>, Vec<&str>) = w
                .receipts
                .iter()
                .filter(|r| r.0 == table)
                .map(|(_, m, u)| (m.as_str(), u.as_str()))
                .unzip();
            if messages.is_empty() {
                continue;
            }
            sqlx::query(&format!(
                "INSERT INTO {name} (message_id, user_id, {column}) \
                 SELECT m, u, $3 FROM unnest($1::text[], $2::text[]) AS r (m, u) \
                 ON CONFLICT (message_id, user_id) DO NOTHING"
            ))
            .bind(&messages)
            .bind(&users)
            .bind(w.now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(positions)
    }

    async fn write_rows(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        let ms = w.messages;
        let col = |f: fn(&super::writes::NewMessage) -> &str| ms.iter().map(f).collect::<Vec<_>>();
        let ids = col(|m| &m.id);
        let senders = col(|m| &m.sender_id);
        let receivers = col(|m| &m.receiver_id);
        let contents = col(|m| &m.content);
        let created: Vec<Millis> = ms.iter().map(|m| m.created_at).collect();
        let cids: Vec<Option<&str>> = ms.iter().map(|m| m.client_message_id.as_deref()).collect();
        let sender_seqs: Vec<i64> = ms.iter().map(|m| m.sender_seq).collect();
        let receiver_seqs: Vec<i64> = ms.iter().map(|m| m.receiver_seq).collect();

        let c = &w.changes;
        let ch_users: Vec<&str> = c.iter().map(|c| c.user_id.as_str()).collect();
        let ch_seqs: Vec<i64> = c.iter().map(|c| c.seq).collect();
        let ch_kinds: Vec<&str> = c.iter().map(|c| c.kind.as_str()).collect();
        let ch_messages: Vec<&str> = c.iter().map(|c| c.message_id.as_str()).collect();
        let ch_actors: Vec<&str> = c.iter().map(|c| c.actor_id.as_str()).collect();
        let ch_at: Vec<Millis> = c.iter().map(|c| c.at).collect();
        let (counter_users, counter_seqs): (Vec<&str>, Vec<i64>) =
            w.counters.iter().map(|(u, s)| (u.as_str(), *s)).unzip();

        let rows: Vec<(String, i64)> = sqlx::query_as(WRITE)
            .bind(&ids)
            .bind(&senders)
            .bind(&receivers)
            .bind(&contents)
            .bind(&created)
            .bind(&cids)
            .bind(&sender_seqs)
            .bind(&receiver_seqs)
            .bind(&ch_users)
            .bind(&ch_seqs)
            .bind(&ch_kinds)
            .bind(&ch_messages)
            .bind(&ch_actors)
            .bind(&ch_at)
            .bind(&counter_users)
            .bind(&counter_seqs)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_insert)?;
        Ok(rows.into_iter().collect())
    }
}

fn unzip3<A, B, C>(it: impl Iterator<Item = (A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in it {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}
