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

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Postgres, Transaction};

use super::writes::{
    attach_members, conversation_from, member_from, Commit, ConversationState, Loaded, LockOrder,
    LockedUser, MessageState, NewMessage, ReceiptTable, WriteConnection, WriteTx, Writes,
    CONVERSATION_COLUMNS, MEMBER_COLUMNS, STATE_AND_HISTORY_COLUMNS, STATE_COLUMNS,
};
use super::StoreError;
use crate::clock::Millis;

/// The writer's connection, from the writers' own pool.
pub(super) struct PgWrites {
    conn: PoolConnection<Postgres>,
}

impl PgWrites {
    pub(super) fn new(conn: PoolConnection<Postgres>) -> PgWrites {
        PgWrites { conn }
    }
}

#[async_trait(?Send)]
impl WriteConnection for PgWrites {
    async fn begin(&mut self) -> Result<Box<dyn WriteTx + '_>, StoreError> {
        Ok(Box::new(PgTx {
            tx: self.conn.begin().await?,
        }))
    }
}

/// One transaction.
struct PgTx<'c> {
    tx: Transaction<'c, Postgres>,
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
           m.sender_seq, m.client_message_id, m.conversation_id, m.pos
    FROM unnest($2::text[], $3::text[]) AS k (sender_id, client_message_id)
    CROSS JOIN LATERAL (
        SELECT * FROM messages m
        WHERE m.sender_id = k.sender_id AND m.client_message_id = k.client_message_id
        LIMIT 1
    ) AS m
)
SELECT 'u' AS what, user_id AS id, seq, name, email, NULL::text AS receiver_id,
       NULL::text AS content, NULL::int8 AS created_at, NULL::int8 AS deleted_at,
       NULL::text AS client_message_id, NULL::text AS conversation_id, NULL::int8 AS pos
FROM locked
UNION ALL
SELECT 'm', id, sender_seq, sender_id, NULL, receiver_id, content, created_at, deleted_at,
       client_message_id, conversation_id, pos
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
    Option<String>,
    Option<i64>,
);

/// Messages, conversations, change log and counters of a batch in one statement. A
/// conversation's last position is known only once its messages have theirs, so it is
/// computed from the inserted rows; positions are assigned in the order of the rows.
const WRITE: &str = "\
WITH m AS (
    INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, created_at,
                          client_message_id, sender_seq, receiver_seq)
    SELECT * FROM unnest($1::text[], $17::text[], $2::text[], $3::text[], $4::text[],
                         $5::int8[], $6::text[], $7::int8[], $8::int8[])
    RETURNING id, pos
), conv AS (
    INSERT INTO conversations (id, kind, title, user_lo, user_hi, created_at, last_pos)
    SELECT c.id, c.kind, c.title, c.lo, c.hi, c.created_at, COALESCE(m.pos, c.last_pos)
    FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::int8[],
                $24::int8[], $25::text[])
         AS c (id, kind, title, lo, hi, created_at, last_pos, last_message)
    LEFT JOIN m ON m.id = c.last_message
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, last_pos = excluded.last_pos
), mem AS (
    INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, last_pos,
                                      read_up_to_pos, unread, removed_at)
    SELECT x.cid, x.uid, x.role, x.joined_at, COALESCE(m.pos, x.last_pos), x.read_up_to,
           x.unread, x.removed_at
    FROM unnest($26::text[], $27::text[], $28::text[], $29::int8[], $30::int8[], $31::text[],
                $32::int8[], $33::int8[], $34::int8[])
         AS x (cid, uid, role, joined_at, last_pos, last_message, read_up_to, unread, removed_at)
    LEFT JOIN m ON m.id = x.last_message
    ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role,
        joined_at = excluded.joined_at, last_pos = excluded.last_pos,
        read_up_to_pos = excluded.read_up_to_pos, unread = excluded.unread,
        removed_at = excluded.removed_at
), ch AS (
    INSERT INTO changes (user_id, seq, kind, message_id, conversation_id, actor_id, at)
    SELECT * FROM unnest($9::text[], $10::int8[], $11::text[], $12::text[], $35::text[],
                         $13::text[], $14::int8[])
), counters AS (
    INSERT INTO user_seqs (user_id, seq)
    SELECT * FROM unnest($15::text[], $16::int8[])
    ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq
)
SELECT id, pos FROM m";

#[async_trait(?Send)]
impl WriteTx for PgTx<'_> {
    /// One statement: the counters under lock and the messages of the keys.
    async fn lock_and_load(
        &mut self,
        users: &LockOrder,
        client_ids: &[(String, String)],
    ) -> Result<Loaded, StoreError> {
        let (senders, cids): (Vec<&str>, Vec<&str>) = client_ids
            .iter()
            .map(|(s, c)| (s.as_str(), c.as_str()))
            .unzip();
        let rows: Vec<LoadRow> = sqlx::query_as(LOAD)
            .bind(users.ids())
            .bind(&senders)
            .bind(&cids)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut locked = BTreeMap::new();
        let mut known = HashMap::new();
        for (
            what,
            id,
            seq,
            name_or_sender,
            email,
            receiver,
            content,
            created,
            deleted,
            cid,
            conversation,
            pos,
        ) in rows
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
                    receiver_id: receiver,
                    content: content.unwrap_or_default(),
                    created_at: created.unwrap_or_default(),
                    deleted_at: deleted,
                    sender_seq: seq,
                    conversation_id: conversation.unwrap_or_default(),
                    pos: pos.unwrap_or_default(),
                    ..Default::default()
                },
            );
        }
        Ok((locked, known))
    }

    async fn message_states(
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

    async fn receipts_of(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String, ReceiptTable), Millis>, StoreError> {
        let rows: Vec<(String, String, bool, Millis)> = sqlx::query_as(
            "SELECT message_id, user_id, true, read_at FROM read_receipts \
             WHERE message_id = ANY($1::text[]) \
             UNION ALL \
             SELECT message_id, user_id, false, delivered_at FROM delivery_receipts \
             WHERE message_id = ANY($1::text[])",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, user, read, at)| {
                let table = if read {
                    ReceiptTable::Read
                } else {
                    ReceiptTable::Delivery
                };
                ((id, user, table), at)
            })
            .collect())
    }

    async fn direct_conversations(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        let (lo, hi): (Vec<&str>, Vec<&str>) =
            pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).unzip();
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT c.id, c.user_lo, c.user_hi FROM unnest($1::text[], $2::text[]) AS p (lo, hi) \
             JOIN conversations c ON c.user_lo = p.lo AND c.user_hi = p.hi",
        )
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, lo, hi)| ((lo, hi), id))
            .collect())
    }

    /// The conversations under lock (`FOR UPDATE`, in id order), then their members.
    async fn lock_conversations(
        &mut self,
        ids: &LockOrder,
    ) -> Result<HashMap<String, ConversationState>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sorted = ids.ids();
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Millis,
            i64,
        );
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ANY($1::text[]) \
             ORDER BY id FOR UPDATE"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(sorted)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut found: HashMap<String, ConversationState> = rows
            .into_iter()
            .map(|t| {
                let c = conversation_from(t);
                (c.id.clone(), c)
            })
            .collect();
        type MRow = (
            String,
            String,
            String,
            Millis,
            i64,
            i64,
            i64,
            Option<Millis>,
        );
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM conversation_members \
             WHERE conversation_id = ANY($1::text[])"
        );
        let members: Vec<MRow> = sqlx::query_as(&sql)
            .bind(sorted)
            .fetch_all(&mut *self.tx)
            .await?;
        attach_members(&mut found, members.into_iter().map(member_from).collect());
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
        Ok(sqlx::query_as(&sql)
            .bind(conversation)
            .bind(after)
            .bind(up_to)
            .bind(reader)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Stores a batch's writes: one statement for its messages, conversations, change log
    /// and counters, one more per kind of edit, delete or receipt it holds.
    async fn write(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        let mut positions = HashMap::new();
        if !w.messages.is_empty()
            || !w.changes.is_empty()
            || !w.counters.is_empty()
            || !w.conversations.is_empty()
            || !w.members.is_empty()
        {
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

    /// Durable when it returns (`synchronous_commit=on`).
    async fn commit(self: Box<Self>) -> Result<Commit, StoreError> {
        self.tx.commit().await?;
        Ok(Commit::durable())
    }
}

impl PgTx<'_> {
    async fn write_rows(&mut self, w: &Writes<'_>) -> Result<HashMap<String, i64>, StoreError> {
        let ms = w.messages;
        let col = |f: fn(&NewMessage) -> &str| ms.iter().map(f).collect::<Vec<_>>();
        let ids = col(|m| &m.id);
        let senders = col(|m| &m.sender_id);
        let receivers: Vec<Option<&str>> = ms.iter().map(|m| m.receiver_id.as_deref()).collect();
        let message_conversations = col(|m| &m.conversation_id);
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
        let ch_conversations: Vec<Option<&str>> =
            c.iter().map(|c| c.conversation_id.as_deref()).collect();
        let cs = w.conversations;
        let c_ids: Vec<&str> = cs.iter().map(|c| c.id.as_str()).collect();
        let c_kinds: Vec<&str> = cs.iter().map(|c| c.kind.as_str()).collect();
        let c_titles: Vec<Option<&str>> = cs.iter().map(|c| c.title.as_deref()).collect();
        let c_lo: Vec<Option<&str>> = cs.iter().map(|c| c.user_lo.as_deref()).collect();
        let c_hi: Vec<Option<&str>> = cs.iter().map(|c| c.user_hi.as_deref()).collect();
        let c_created: Vec<Millis> = cs.iter().map(|c| c.created_at).collect();
        let c_last: Vec<i64> = cs.iter().map(|c| c.last_pos).collect();
        let c_last_message: Vec<Option<&str>> =
            cs.iter().map(|c| c.last_message.as_deref()).collect();
        let mb = w.members;
        let m_cids: Vec<&str> = mb.iter().map(|(c, _)| c.as_str()).collect();
        let m_users: Vec<&str> = mb.iter().map(|(_, m)| m.user_id.as_str()).collect();
        let m_roles: Vec<&str> = mb.iter().map(|(_, m)| m.role.as_str()).collect();
        let m_joined: Vec<Millis> = mb.iter().map(|(_, m)| m.joined_at).collect();
        let m_last: Vec<i64> = mb.iter().map(|(_, m)| m.last_pos).collect();
        let m_last_message: Vec<Option<&str>> =
            mb.iter().map(|(_, m)| m.last_message.as_deref()).collect();
        let m_read: Vec<i64> = mb.iter().map(|(_, m)| m.read_up_to_pos).collect();
        let m_unread: Vec<i64> = mb.iter().map(|(_, m)| m.unread).collect();
        let m_removed: Vec<Option<Millis>> = mb.iter().map(|(_, m)| m.removed_at).collect();
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
            .bind(&message_conversations)
            .bind(&c_ids)
            .bind(&c_kinds)
            .bind(&c_titles)
            .bind(&c_lo)
            .bind(&c_hi)
            .bind(&c_created)
            .bind(&c_last)
            .bind(&c_last_message)
            .bind(&m_cids)
            .bind(&m_users)
            .bind(&m_roles)
            .bind(&m_joined)
            .bind(&m_last)
            .bind(&m_last_message)
            .bind(&m_read)
            .bind(&m_unread)
            .bind(&m_removed)
            .bind(&ch_conversations)
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
