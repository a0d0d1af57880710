//! Gap-free sync under concurrency (docs/design.md): many tasks send, edit, delete and mark
//! read at once while a reader keeps syncing. The reader must see every sequence number
//! exactly once, in order, and end with the server's state. On PostgreSQL the writer runs
//! several batches at once on a connection pool, so commits really interleave.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestUser;
use crate::on_both_backends;

const USERS: usize = 6;
const OPS_PER_WRITER: usize = 60;

/// The fields of a message that changes can touch.
fn observable(m: &Value) -> Value {
    serde_json::json!({
        "content": m["content"], "isEdited": m["isEdited"], "deletedAt": m["deletedAt"],
        "readReceipts": m["readReceipts"], "deliveryReceipts": m["deliveryReceipts"],
    })
}

on_both_backends! {
    async fn a_reader_syncing_during_concurrent_writes_misses_nothing(app, config: |c: &mut nexus::config::Config| c.database_max_connections = 10) {
        let app = Arc::new(app);
        let mut users = Vec::new();
        for i in 0..USERS {
            users.push(app.register(&format!("U{i}")).await);
        }
        let users = Arc::new(users);
        // (message id, sender index, receiver index)
        let sent: Arc<Mutex<Vec<(String, usize, usize)>>> = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

        let reader = users[0].clone();
        let reader_task = {
            let (app, done) = (app.clone(), done.clone());
            tokio::spawn(async move {
                let mut cursor = 0i64;
                let mut state: HashMap<String, Value> = HashMap::new();
                let mut rounds = 0;
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let page = app.get_ok(&format!("/sync?since={cursor}&limit=50"), &reader).await;
                    for e in page["events"].as_array().unwrap() {
                        let seq = e["seq"].as_i64().unwrap();
                        assert_eq!(seq, cursor + 1, "sequence skipped or repeated");
                        cursor = seq;
                        state.insert(e["messageId"].as_str().unwrap().to_string(), observable(&e["message"]));
                    }
                    rounds += 1;
                    if finished && !page["hasMore"].as_bool().unwrap() {
                        return (cursor, state, rounds);
                    }
                }
            })
        };

        let mut writers = Vec::new();
        for w in 0..USERS {
            let (app, users, sent) = (app.clone(), users.clone(), sent.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
                let me: &TestUser = &users[w];
                for k in 0..OPS_PER_WRITER {
                    let roll = rng.gen_range(0..10);
                    let mine: Vec<String> = sent.lock().unwrap().iter().filter(|(_, s, _)| *s == w).map(|(id, ..)| id.clone()).collect();
                    let to_me: Vec<String> = sent.lock().unwrap().iter().filter(|(_, _, r)| *r == w).map(|(id, ..)| id.clone()).collect();
                    if roll < 5 || (mine.is_empty() && to_me.is_empty()) {
                        let mut to = rng.gen_range(0..USERS);
                        if to == w { to = (to + 1) % USERS; }
                        let m = app.send_ok(me, &users[to], &format!("{w}:{k}")).await;
                        sent.lock().unwrap().push((m["id"].as_str().unwrap().to_string(), w, to));
                    } else if roll < 7 && !mine.is_empty() {
                        let id = &mine[rng.gen_range(0..mine.len())];
                        let r = app.edit(me, id, &format!("{w}:{k} edited")).await;
                        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::CONFLICT, "{}", r.status());
                    } else if roll < 8 && !mine.is_empty() {
                        let id = &mine[rng.gen_range(0..mine.len())];
                        let r = app.delete(me, id).await;
                        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::CONFLICT, "{}", r.status());
                    } else if !to_me.is_empty() {
                        let id = &to_me[rng.gen_range(0..to_me.len())];
                        let kind = if roll % 2 == 0 { "read" } else { "delivered" };
                        assert_eq!(app.mark(me, id, kind).await.status(), StatusCode::OK);
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (cursor, state, rounds) = reader_task.await.unwrap();
        assert!(rounds > 1, "the reader synced while writes were going on");

        // The reader's final state equals the server's.
        let mut server: BTreeMap<String, Value> = BTreeMap::new();
        for other in users.iter().skip(1) {
            for m in app.conversation(&users[0], other).await {
                server.insert(m["id"].as_str().unwrap().to_string(), observable(&m));
            }
        }
        let local: BTreeMap<String, Value> = state.into_iter().collect();
        assert!(!server.is_empty());
        assert_eq!(local, server);

        // Every user's feed is 1..=N with nothing skipped or repeated, N = their counter.
        for (i, u) in users.iter().enumerate() {
            let feed = app.sync_all(u, 0).await;
            let seqs: Vec<i64> = feed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
            let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
            assert_eq!(seqs, expected, "user {i}");
            let id = nexus::domain::UserId::parse(&u.id).unwrap();
            assert_eq!(app.state.messaging.current_seq(id).await.unwrap(), seqs.len() as i64);
            if i == 0 {
                assert_eq!(cursor, seqs.len() as i64);
            }
        }
    }
}
