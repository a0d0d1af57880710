//! Reading conversations and their members.

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::clock::Millis;

/// A conversation with every member row (former members included), in join order.
#[derive(Debug, Clone)]
pub struct ConversationView {
    pub id: String,
    /// `direct` or `group`.
    pub kind: String,
    pub title: Option<String>,
    pub created_at: Millis,
    pub last_pos: i64,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberView {
    pub conversation_id: String,
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub joined_at: Millis,
    pub last_pos: i64,
    pub read_up_to_pos: i64,
    pub unread: i64,
    pub removed_at: Option<Millis>,
}

impl ConversationView {
    pub fn is_group(&self) -> bool {
        self.kind == "group"
    }

    /// `user`'s member row, current or former.
    pub fn member(&self, user: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.user_id == user)
    }

    pub fn current(&self) -> impl Iterator<Item = &MemberView> {
        self.members.iter().filter(|m| m.removed_at.is_none())
    }
}

/// One entry of a user's conversation list (a conversation they are a member of now).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub conversation_id: String,
    pub last_pos: i64,
    pub unread: i64,
}

/// A page of a user's conversation list: user ($1), after (last position $2, id $3), at
/// most $4. Public so that a test can check its plan on both engines.
pub const LISTED_CONVERSATIONS: &str =
    "SELECT conversation_id, last_pos, unread FROM conversation_members \
     WHERE user_id = $1 AND removed_at IS NULL AND (last_pos, conversation_id) < ($2, $3) \
     ORDER BY last_pos DESC, conversation_id DESC LIMIT $4";

impl Store {
    /// The conversations with these ids (missing ones are absent), members included.
    pub async fn conversation_views(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, ConversationView>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let backend = self.backend;
        self.reads
            .run(async |conn| {
                let mut found = HashMap::new();
                for chunk in ids.chunks(400) {
                    let list = backend.params(1, chunk.len());
                    let sql = format!(
                        "SELECT id, kind, title, created_at, last_pos FROM conversations WHERE id IN ({list})"
                    );
                    let mut q = sqlx::query_as::<_, (String, String, Option<String>, Millis, i64)>(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    for (id, kind, title, created_at, last_pos) in q.fetch_all(&mut *conn).await? {
                        found.insert(
                            id.clone(),
                            ConversationView {
                                id,
                                kind,
                                title,
                                created_at,
                                last_pos,
                                members: Vec::new(),
                            },
                        );
                    }
                    let sql = format!(
                        "SELECT cm.conversation_id, cm.user_id, u.name, u.email, cm.role, cm.joined_at, \
                         cm.last_pos, cm.read_up_to_pos, cm.unread, cm.removed_at \
                         FROM conversation_members cm JOIN users u ON u.id = cm.user_id \
                         WHERE cm.conversation_id IN ({list}) ORDER BY cm.joined_at, cm.user_id"
                    );
                    let mut q = sqlx::query_as::<_, MemberView>(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    for m in q.fetch_all(&mut *conn).await? {
                        if let Some(c) = found.get_mut(&m.conversation_id) {
                            c.members.push(m);
                        }
                    }
                }
                Ok(found)
            })
            .await
    }

    /// The direct conversation of two users, if they have one.
    pub async fn direct_conversation(
        &self,
        a: &str,
        b: &str,
    ) -> Result<Option<String>, StoreError> {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM conversations WHERE user_lo = $1 AND user_hi = $2",
                )
                .bind(lo)
                .bind(hi)
                .fetch_optional(conn)
                .await?)
            })
            .await
    }

    /// `me`'s current conversations, most recent message first (ties, and conversations
    /// without messages, by id, newest first), after the entry `before` (last position, id)
    /// of a previous page, at most `limit`. The row comparison seeks in the index on
    /// (user_id, last_pos, conversation_id) (migration 0009) on both engines: a page reads
    /// its own rows, not the pages before it.
    pub async fn listed_conversations(
        &self,
        me: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        let (pos, id) = before.unwrap_or((i64::MAX, String::new()));
        self.reads
            .run(async |conn| {
                Ok(sqlx::query_as(LISTED_CONVERSATIONS)
                    .bind(me)
                    .bind(pos)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(conn)
                    .await?)
            })
            .await
    }
}
