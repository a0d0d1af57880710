//! Migration 0005 (conversations and groups) on a database the previous version filled:
//! every migration but 0005 applied, rows written as that version wrote them, then the
//! application starts (and migrates). Direct conversations, members, stored unread counts
//! and every message's conversation must come out of the old rows.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection};

use crate::helpers::{spawn_on, Backend, TestDb, TestUser};

/// The previous version's schema: every migration of the backend before 0005 (the later
/// ones, e.g. 0009's index on `conversation_members`, may build on 0005).
async fn previous_version(db: &TestDb, backend: Backend) -> AnyPool {
    sqlx::any::install_default_drivers();
    let (dir, url) = match backend {
        Backend::Sqlite => ("sqlite", format!("{}?mode=rwc", db.url)),
        Backend::Postgres => ("postgres", db.url.clone()),
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    let mut migrator = Migrator::new(path).await.unwrap();
    let without: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 5)
        .cloned()
        .collect();
    assert!(without.len() < migrator.migrations.len(), "0005 exists");
    migrator.migrations = without.into();
    let pool = AnyPool::connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    pool
}

async fn exec(pool: &AnyPool, sql: &str, binds: &[Value]) {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b {
            Value::String(s) => q.bind(s.clone()),
            Value::Number(n) => q.bind(n.as_i64().unwrap()),
            Value::Null => q.bind(None::<i64>),
            other => panic!("{other}"),
        };
    }
    q.execute(pool).await.unwrap();
}

async fn check(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let pool = previous_version(&db, backend).await;
    let users = [
        ("00000000-0000-4000-8000-00000000000a", "Ada"),
        ("00000000-0000-4000-8000-00000000000b", "Bob"),
        ("00000000-0000-4000-8000-00000000000c", "Cara"),
    ];
    let hash = "not a hash: these users get their tokens issued directly";
    for (id, name) in users {
        exec(&pool, "INSERT INTO users (id, name, email, password_hash, created_at) VALUES ($1, $2, $3, $4, 0)",
            &[json!(id), json!(name), json!(format!("{}@example.org", name.to_lowercase())), json!(hash)]).await;
    }
    let (ada, bob, cara) = (users[0].0, users[1].0, users[2].0);
    // (id, sender, receiver, content, deleted)
    let messages = [
        (
            "10000000-0000-4000-8000-000000000001",
            ada,
            bob,
            "m1",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000002",
            bob,
            ada,
            "m2",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000003",
            ada,
            bob,
            "m3 v2",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000004",
            ada,
            cara,
            "This message has been deleted",
            true,
        ),
        (
            "10000000-0000-4000-8000-000000000005",
            cara,
            ada,
            "m5",
            false,
        ),
    ];
    let mut seqs = std::collections::HashMap::<&str, i64>::new();
    for (i, (id, s, r, content, deleted)) in messages.iter().enumerate() {
        let at = 1_000 * (i as i64 + 1);
        let ss = {
            let e = seqs.entry(s).or_default();
            *e += 1;
            *e
        };
        let rs = {
            let e = seqs.entry(r).or_default();
            *e += 1;
            *e
        };
        exec(&pool, "INSERT INTO messages (id, sender_id, receiver_id, content, created_at, deleted_at, sender_seq, receiver_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[json!(id), json!(s), json!(r), json!(content), json!(at), if *deleted { json!(at + 1) } else { Value::Null }, json!(ss), json!(rs)]).await;
        for (user, seq) in [(s, ss), (r, rs)] {
            exec(&pool, "INSERT INTO changes (user_id, seq, kind, message_id, actor_id, at) VALUES ($1, $2, 'message.created', $3, $4, $5)",
                &[json!(user), json!(seq), json!(id), json!(s), json!(at)]).await;
        }
    }
    for (id, _) in users {
        exec(
            &pool,
            "INSERT INTO user_seqs (user_id, seq) VALUES ($1, $2)",
            &[json!(id), json!(seqs.get(id).copied().unwrap_or(0))],
        )
        .await;
    }
    exec(
        &pool,
        "INSERT INTO message_edits (message_id, content, replaced_at) VALUES ($1, 'm3', 3500)",
        &[json!(messages[2].0)],
    )
    .await;
    exec(
        &pool,
        "INSERT INTO read_receipts (message_id, user_id, read_at) VALUES ($1, $2, 1500)",
        &[json!(messages[0].0), json!(bob)],
    )
    .await;
    exec(
        &pool,
        "INSERT INTO delivery_receipts (message_id, user_id, delivered_at) VALUES ($1, $2, 2500)",
        &[json!(messages[1].0), json!(ada)],
    )
    .await;
    // The 0002 index as the write path kept it: (user, other party, last position).
    exec(&pool, "INSERT INTO conversations (user_id, other_id, last_pos) SELECT user_id, other_id, MAX(pos) FROM (SELECT sender_id AS user_id, receiver_id AS other_id, pos FROM messages UNION ALL SELECT receiver_id, sender_id, pos FROM messages) t GROUP BY user_id, other_id", &[]).await;
    pool.close().await;

    // The application migrates at start-up.
    let app = spawn_on(db, |_| {}, true).await;
    let login = |id: &str| TestUser {
        id: id.to_string(),
        email: String::new(),
        token: app.state.accounts.tokens().issue(id).unwrap(),
    };
    let (ada_u, bob_u) = (login(ada), login(bob));

    let list = app.get_ok("/messages/conversations/all", &ada_u).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["otherUser"]["id"], cara, "most recent first");
    assert_eq!(list[0]["unreadCount"], 1, "m5");
    assert_eq!(list[0]["lastMessage"]["content"], "m5");
    assert_eq!(list[1]["otherUser"]["id"], bob);
    assert_eq!(list[1]["unreadCount"], 1, "m2, delivered but not read");
    assert_eq!(list[1]["conversation"]["type"], "direct");
    let ada_bob = list[1]["conversation"]["id"].as_str().unwrap().to_string();
    let bob_list = app.get_ok("/messages/conversations/all", &bob_u).await;
    assert_eq!(bob_list[0]["unreadCount"], 1, "m3 (m1 was read)");
    let cara_u = login(cara);
    assert_eq!(
        app.get_ok("/messages/conversations/all", &cara_u).await[0]["unreadCount"],
        0,
        "m4 is deleted"
    );

    // History by pair and by conversation: the same messages, receipts and edits kept.
    let by_pair = app.conversation(&ada_u, &bob_u).await;
    assert_eq!(
        by_pair
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["m1", "m2", "m3 v2"]
    );
    assert!(by_pair
        .iter()
        .all(|m| m["conversationId"] == ada_bob.as_str()));
    assert_eq!(by_pair[0]["readReceipts"][0]["userId"], bob);
    assert_eq!(by_pair[1]["deliveryReceipts"][0]["userId"], ada);
    assert_eq!(by_pair[2]["receiverId"], bob);
    let page = app
        .get_ok(&format!("/conversations/{ada_bob}/messages"), &bob_u)
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    let edits = app
        .get_ok(&format!("/messages/{}/history", messages[2].0), &ada_u)
        .await;
    assert_eq!(edits[0]["content"], "m3");

    // The feed goes on from where it was; new messages join the migrated conversation.
    let feed = app.sync_all(&bob_u, 0).await;
    assert_eq!(feed.len(), 3);
    let sent = app.send_ok(&ada_u, &bob_u, "after the upgrade").await;
    assert_eq!(sent["conversationId"], ada_bob.as_str());
    assert_eq!(
        sent["seq"], 6,
        "ada's counter went on (five messages before)"
    );
    assert_eq!(
        app.get_ok("/messages/conversations/all", &bob_u).await[0]["unreadCount"],
        2
    );
    assert_eq!(
        app.get(&format!("/conversations/{ada_bob}"), &bob_u.token)
            .await
            .status(),
        StatusCode::OK
    );

    // Nothing dangles.
    if let Some(file) = app.db_file() {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{file}"))
            .await
            .unwrap();
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0005_turns_the_previous_versions_rows_into_conversations_sqlite() {
    check(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0005_turns_the_previous_versions_rows_into_conversations_postgres() {
    check(Backend::Postgres).await;
}
