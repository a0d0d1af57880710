//! The write transaction itself, below the messaging rules: a batch is all or nothing on
//! both engines, whatever the engine's statements look like (on PostgreSQL the whole batch
//! is one statement over arrays, on SQLite one statement per row).

use std::collections::BTreeMap;

use nexus::domain::{DisplayName, Email, UserId};
use nexus::store::writes::{ChangeRow, ConversationState, LockOrder, NewMessage, Writes};
use nexus::store::Store;
use nexus_protocol::ChangeType;

use crate::helpers::{Backend, TestDb};

async fn store_with_users(backend: Backend, n: usize) -> Option<(TestDb, Store, Vec<String>)> {
    let db = TestDb::create(backend).await?;
    let store = Store::connect(&db.url, 4).await.unwrap();
    let mut users = Vec::new();
    for i in 0..n {
        let id = UserId::new();
        let name = DisplayName::parse(&format!("user {i}")).unwrap();
        let email = Email::parse(&format!("u{i}-{}@example.com", id.as_string())).unwrap();
        store
            .create_user(id, &name, &email, "hash", 0)
            .await
            .unwrap();
        users.push(id.as_string());
    }
    Some((db, store, users))
}

fn message(id: &str, from: &str, to: &str, seqs: (i64, i64), cid: &str) -> NewMessage {
    NewMessage {
        id: id.into(),
        conversation_id: conversation_of(from, to),
        sender_id: from.into(),
        receiver_id: Some(to.into()),
        content: format!("content of {id}"),
        created_at: 1,
        client_message_id: Some(cid.into()),
        sender_seq: seqs.0,
        receiver_seq: seqs.1,
    }
}

/// The pair's direct conversation (a fixed id per pair: the messages refer to it).
fn conversation_of(a: &str, b: &str) -> String {
    let id = |u: &str| uuid::Uuid::parse_str(u).unwrap().as_u128();
    uuid::Uuid::from_u128(id(a) ^ id(b).rotate_left(1) ^ id(b) ^ id(a).rotate_left(1)).to_string()
}

fn created(user: &str, seq: i64, message: &str, actor: &str) -> ChangeRow {
    ChangeRow {
        user_id: user.into(),
        seq,
        kind: ChangeType::MessageCreated,
        message_id: message.into(),
        conversation_id: None,
        actor_id: actor.into(),
        at: 1,
    }
}

/// Stores `messages` (each creating a change for both parties) and the counters they end at.
async fn write(
    store: &Store,
    messages: &[NewMessage],
    changes: &[ChangeRow],
) -> Result<(), nexus::store::StoreError> {
    let mut conn = store.write_connection().await?;
    let mut tx = conn.begin().await?;
    let users: Vec<String> = messages
        .iter()
        .flat_map(|m| [m.sender_id.clone(), m.receiver_id.clone().unwrap()])
        .collect();
    let mut conversations: Vec<ConversationState> = Vec::new();
    for m in messages {
        if conversations.iter().any(|c| c.id == m.conversation_id) {
            continue;
        }
        let (a, b) = (m.sender_id.clone(), m.receiver_id.clone().unwrap());
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        conversations.push(ConversationState {
            id: m.conversation_id.clone(),
            kind: "direct".into(),
            title: None,
            user_lo: Some(lo),
            user_hi: Some(hi),
            created_at: 1,
            last_pos: 0,
            last_message: Some(m.id.clone()),
            members: Vec::new(),
            created: true,
        });
    }
    let cids: Vec<(String, String)> = messages
        .iter()
        .map(|m| (m.sender_id.clone(), m.client_message_id.clone().unwrap()))
        .collect();
    let (locked, known) = tx.lock_and_load(&LockOrder::new(users), &cids).await?;
    assert!(known.is_empty(), "{known:?}");
    let mut counters: BTreeMap<String, i64> =
        locked.iter().map(|(u, l)| (u.clone(), l.seq)).collect();
    for c in changes {
        let seq = counters.entry(c.user_id.clone()).or_default();
        *seq = (*seq).max(c.seq);
    }
    let positions = tx
        .write(&Writes {
            conversations: &conversations,
            members: &[],
            messages,
            changes,
            edits: &[],
            deletes: &[],
            tombstone: "",
            receipts: &[],
            counters: &counters,
            now: 1,
        })
        .await?;
    assert_eq!(positions.len(), messages.len());
    tx.commit().await?.when_durable(|synced| synced.unwrap());
    Ok(())
}

async fn count(store: &Store, user: &str) -> (i64, usize) {
    let seq = store
        .current_seq(UserId::parse(user).unwrap())
        .await
        .unwrap();
    let feed = store
        .changes_since(UserId::parse(user).unwrap(), 0, 1000)
        .await
        .unwrap();
    (seq, feed.len())
}

/// A batch whose last rows break a constraint (a change-log entry under a `seq` that is
/// taken) stores none of its rows, not even those before the failing one, leaves every
/// counter where it was, and the connection takes the next batch.
async fn a_batch_that_fails_halfway_stores_nothing(backend: Backend) {
    let Some((_db, store, u)) = store_with_users(backend, 4).await else {
        return;
    };
    let (a, b, c, d) = (&u[0], &u[1], &u[2], &u[3]);
    let m1 = message("00000000-0000-7000-8000-000000000001", a, b, (1, 1), "a:1");
    write(
        &store,
        std::slice::from_ref(&m1),
        &[created(a, 1, &m1.id, a), created(b, 1, &m1.id, a)],
    )
    .await
    .unwrap();

    // c→d is fine; a→b reuses b's seq 1 for its change: the change log's key refuses it.
    let m2 = message("00000000-0000-7000-8000-000000000002", c, d, (1, 1), "c:1");
    let m3 = message("00000000-0000-7000-8000-000000000003", a, b, (2, 2), "a:2");
    let changes = [
        created(c, 1, &m2.id, c),
        created(d, 1, &m2.id, c),
        created(a, 2, &m3.id, a),
        created(b, 1, &m3.id, a),
    ];
    let failed = write(&store, &[m2.clone(), m3.clone()], &changes).await;
    assert!(failed.is_err(), "the batch was stored");
    for (user, expected) in [(a, (1, 1)), (b, (1, 1)), (c, (0, 0)), (d, (0, 0))] {
        assert_eq!(count(&store, user).await, expected, "user {user}");
    }
    let found = store
        .messages_by_ids(&[m2.id.clone(), m3.id.clone()])
        .await
        .unwrap();
    assert!(found.is_empty(), "rows of the failed batch were stored");

    // The same rows, right this time, go through.
    let changes = [
        created(c, 1, &m2.id, c),
        created(d, 1, &m2.id, c),
        created(a, 2, &m3.id, a),
        created(b, 2, &m3.id, a),
    ];
    write(&store, &[m2, m3], &changes).await.unwrap();
    for (user, expected) in [(a, (2, 2)), (b, (2, 2)), (c, (1, 1)), (d, (1, 1))] {
        assert_eq!(count(&store, user).await, expected, "user {user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_halfway_stores_nothing_on_sqlite() {
    a_batch_that_fails_halfway_stores_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_halfway_stores_nothing_on_postgres() {
    a_batch_that_fails_halfway_stores_nothing(Backend::Postgres).await;
}
