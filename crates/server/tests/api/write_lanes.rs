//! The messaging writer's two batches in flight on PostgreSQL (`messaging::writer`,
//! `messaging::schedule::Busy`): while one batch waits in the database for a lock that
//! someone else holds (another node's open transaction), the second connection applies
//! what does not need that batch's users or conversations; what does waits in the queue,
//! not on the second connection; nobody is answered before a batch that started earlier;
//! and every feed stays gap-free and in the order each user sent.

use std::time::Duration;

use nexus::domain::{DisplayName, Email, MessageBody, UserId};
use nexus::messaging::writer::{Ticket, Writer};
use nexus::messaging::{Command, Outcome};
use nexus::store::Store;
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{Backend, TestDb};

fn send(sender: UserId, receiver: UserId, text: &str) -> Command {
    Command::Send {
        sender,
        receiver,
        body: MessageBody::parse(text).unwrap(),
        client_message_id: None,
    }
}

async fn sent(ticket: Ticket) -> (i64, String) {
    match ticket.committed().await.unwrap() {
        Outcome::Sent(s) => (s.sender_seq, s.message.unwrap().row.conversation_id),
        other => panic!("not a send: {other:?}"),
    }
}

/// A database with `names` as users, a writer on it, and the first message from the first
/// user to the second (their conversation: the one the tests lock); `None` without
/// PostgreSQL outside CI.
async fn setup(names: &[&str]) -> Option<(TestDb, Store, Vec<UserId>, Writer, String)> {
    let db = TestDb::create(Backend::Postgres).await?;
    let store = Store::connect(&db.url, 16).await.unwrap();
    assert_eq!(store.writer_lanes(), 2);
    let mut users = Vec::new();
    for name in names {
        let id = UserId::new();
        let email = Email::parse(&format!("{name}@example.com")).unwrap();
        store
            .create_user(id, &DisplayName::parse(name).unwrap(), &email, "hash", 0)
            .await
            .unwrap();
        users.push(id);
    }
    let writer = Writer::start(store.clone(), 1, Duration::from_secs(60)).unwrap();
    let first = writer
        .enqueue(send(users[0], users[1], "first"))
        .await
        .unwrap();
    let (_, conversation) = sent(first).await;
    Some((db, store, users, writer, conversation))
}

/// Another transaction (another node's, say) holding `conversation`'s row.
async fn hold(db: &TestDb, conversation: &str) -> PgConnection {
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM conversations WHERE id = $1 FOR UPDATE")
        .bind(conversation)
        .execute(&mut other)
        .await
        .unwrap();
    other
}

/// The messages `sender` has stored, seen by a connection of the test's own.
async fn stored(conn: &mut PgConnection, sender: UserId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE sender_id = $1")
        .bind(sender.as_string())
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Waits until `sender` has `n` messages stored; panics after a minute (the writer is
/// stuck: what this test is about).
async fn until_stored(conn: &mut PgConnection, sender: UserId, n: i64, what: &str) {
    for _ in 0..6000 {
        if stored(conn, sender).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_batch_commits_while_the_first_waits_for_a_lock() {
    let Some((db, store, users, writer, ab)) =
        setup(&["ada", "bob", "cy", "dee", "eve", "fay"]).await
    else {
        return;
    };
    let [ada, bob, cy, dee, eve, fay] = users[..] else {
        unreachable!()
    };
    // Another transaction holds Ada and Bob's conversation.
    let mut other = hold(&db, &ab).await;
    let mut look = PgConnection::connect(&db.url).await.unwrap();

    // Ada's second message: its batch waits for that lock.
    let ada_second = writer.enqueue(send(ada, bob, "second")).await.unwrap();
    until_lock_wait(&mut look).await;
    // Meanwhile: Bob answers Ada (that needs the locked conversation and the batch's
    // users: it waits in the queue), Ada writes to Cy (Ada's: it waits behind her second
    // message), and Eve writes to Fay and Cy to Dee (they need nothing of it).
    let bob_reply = writer.enqueue(send(bob, ada, "reply")).await.unwrap();
    let ada_third = writer.enqueue(send(ada, cy, "third")).await.unwrap();
    let eve_first = writer.enqueue(send(eve, fay, "hello fay")).await.unwrap();
    let cy_first = writer.enqueue(send(cy, dee, "hello dee")).await.unwrap();
    // Those two commit on the second connection while the first batch still waits (had
    // Bob's reply taken that connection, it would be waiting for the lock too).
    until_stored(
        &mut look,
        eve,
        1,
        "the second connection waited for the first batch",
    )
    .await;
    until_stored(
        &mut look,
        cy,
        1,
        "the second connection waited for the first batch",
    )
    .await;
    assert_eq!(
        stored(&mut look, ada).await,
        1,
        "Ada's second went through the lock"
    );
    assert_eq!(
        stored(&mut look, bob).await,
        0,
        "Bob's reply went ahead of Ada's message"
    );

    // The lock goes; everything is applied and answered.
    other.execute("ROLLBACK").await.unwrap();
    let (ada2, _) = sent(ada_second).await;
    let (ada3, _) = sent(ada_third).await;
    let (bob1, _) = sent(bob_reply).await;
    sent(eve_first).await;
    sent(cy_first).await;
    // Ada's in the order she sent them; Bob's reply after the message it answers (his
    // feed: Ada's first, Ada's second, then his reply).
    assert_eq!(
        (ada2, ada3),
        (2, 4),
        "Ada's feed: first, second, Bob's reply, third"
    );
    assert_eq!(bob1, 3);
    for user in [ada, bob, cy, dee, eve, fay] {
        let feed = store.changes_since(user, 0, 100).await.unwrap();
        let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "feed of {user}"
        );
    }
    writer.close().await;
}

/// Nobody is answered before a batch that started earlier is: the second connection's
/// batch commits while the first waits for a lock, and its sender hears of it only once
/// the first is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_the_order_the_batches_started_in() {
    let Some((db, _store, users, writer, ab)) = setup(&["ada", "bob", "eve", "fay"]).await else {
        return;
    };
    let [ada, bob, eve, fay] = users[..] else {
        unreachable!()
    };
    let mut other = hold(&db, &ab).await;
    let mut look = PgConnection::connect(&db.url).await.unwrap();
    let ada_second = tokio::spawn(
        writer
            .enqueue(send(ada, bob, "second"))
            .await
            .unwrap()
            .committed(),
    );
    until_lock_wait(&mut look).await;
    let eve_first = tokio::spawn(
        writer
            .enqueue(send(eve, fay, "hi"))
            .await
            .unwrap()
            .committed(),
    );
    until_stored(
        &mut look,
        eve,
        1,
        "the second connection waited for the first batch",
    )
    .await;
    // Committed, and not answered while the earlier batch waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !eve_first.is_finished(),
        "answered before the batch started earlier"
    );
    other.execute("ROLLBACK").await.unwrap();
    assert!(matches!(
        ada_second.await.unwrap().unwrap(),
        Outcome::Sent(_)
    ));
    assert!(matches!(
        eve_first.await.unwrap().unwrap(),
        Outcome::Sent(_)
    ));
    writer.close().await;
}

/// Waits until one of the database's backends waits for a lock.
async fn until_lock_wait(look: &mut PgConnection) {
    for _ in 0..6000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *look)
        .await
        .unwrap();
        if waiting == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no batch ever waited for the lock");
}
