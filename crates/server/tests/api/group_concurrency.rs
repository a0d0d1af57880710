//! The concurrency test of `concurrency.rs` on overlapping groups: many tasks post to
//! groups that share members, send 1:1, edit, delete, mark read and read up to, while a
//! reader keeps syncing. Every member's feed must be gap-free and end at their counter
//! (on PostgreSQL several batches commit at once, each taking conversations and then
//! counters in sorted order, so overlapping groups cannot deadlock).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestUser;
use crate::on_both_backends;

const USERS: usize = 6;
const OPS_PER_WRITER: usize = 50;

on_both_backends! {
    async fn every_members_feed_stays_gap_free_with_concurrent_writes_to_overlapping_groups(app, config: |c: &mut nexus::config::Config| c.database_max_connections = 10) {
        let app = Arc::new(app);
        let mut users = Vec::new();
        for i in 0..USERS {
            users.push(app.register(&format!("U{i}")).await);
        }
        let users = Arc::new(users);
        // Three groups of four, each sharing members with the others.
        let layout: [&[usize]; 3] = [&[0, 1, 2, 3], &[2, 3, 4, 5], &[0, 1, 4, 5]];
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for members in layout {
            let others: Vec<&TestUser> = members[1..].iter().map(|i| &users[*i]).collect();
            let g = app.group_ok(&users[members[0]], "overlap", &others).await;
            groups.push((g["id"].as_str().unwrap().to_string(), members.to_vec()));
        }
        let groups = Arc::new(groups);
        // (message id, conversation, sender index)
        let sent: Arc<Mutex<Vec<(String, String, usize)>>> = Arc::default();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

        let reader = users[0].clone();
        let reader_task = {
            let (app, done) = (app.clone(), done.clone());
            tokio::spawn(async move {
                let mut cursor = 0i64;
                let mut rounds = 0;
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let page = app.get_ok(&format!("/sync?since={cursor}&limit=50"), &reader).await;
                    for e in page["events"].as_array().unwrap() {
                        let seq = e["seq"].as_i64().unwrap();
                        assert_eq!(seq, cursor + 1, "sequence skipped or repeated");
                        cursor = seq;
                    }
                    rounds += 1;
                    if finished && !page["hasMore"].as_bool().unwrap() {
                        return (cursor, rounds);
                    }
                }
            })
        };

        let mut writers = Vec::new();
        for w in 0..USERS {
            let (app, users, groups, sent) = (app.clone(), users.clone(), groups.clone(), sent.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + w as u64);
                let me: &TestUser = &users[w];
                let mine_groups: Vec<String> = groups.iter().filter(|(_, m)| m.contains(&w)).map(|(g, _)| g.clone()).collect();
                for k in 0..OPS_PER_WRITER {
                    let roll = rng.gen_range(0..10);
                    let snapshot = sent.lock().unwrap().clone();
                    let mine: Vec<&(String, String, usize)> = snapshot.iter().filter(|(_, _, s)| *s == w).collect();
                    let theirs: Vec<&(String, String, usize)> = snapshot.iter().filter(|(_, c, s)| *s != w && mine_groups.contains(c)).collect();
                    if roll < 5 || (mine.is_empty() && theirs.is_empty()) {
                        let g = &mine_groups[rng.gen_range(0..mine_groups.len())];
                        let m = app.post_ok(me, g, &format!("{w}:{k}")).await;
                        sent.lock().unwrap().push((m["id"].as_str().unwrap().to_string(), g.clone(), w));
                    } else if roll < 6 {
                        let to = (w + 1 + rng.gen_range(0..USERS - 1)) % USERS;
                        app.send_ok(me, &users[to], &format!("{w}:{k} direct")).await;
                    } else if roll < 7 && !mine.is_empty() {
                        let (id, ..) = mine[rng.gen_range(0..mine.len())];
                        let r = app.edit(me, id, &format!("{w}:{k} edited")).await;
                        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::CONFLICT, "{}", r.status());
                    } else if roll < 8 && !mine.is_empty() {
                        let (id, ..) = mine[rng.gen_range(0..mine.len())];
                        let r = app.delete(me, id).await;
                        assert!(r.status() == StatusCode::OK || r.status() == StatusCode::CONFLICT, "{}", r.status());
                    } else if roll < 9 && !theirs.is_empty() {
                        let (id, ..) = theirs[rng.gen_range(0..theirs.len())];
                        let kind = if k % 2 == 0 { "read" } else { "delivered" };
                        assert_eq!(app.mark(me, id, kind).await.status(), StatusCode::OK);
                    } else if !theirs.is_empty() {
                        let (id, conversation, _) = theirs[rng.gen_range(0..theirs.len())];
                        assert_eq!(app.read_up_to(me, conversation, id).await.status(), StatusCode::OK);
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (cursor, rounds) = reader_task.await.unwrap();
        assert!(rounds > 1, "the reader synced while writes were going on");

        // Every member's feed is 1..=N, N their counter, and holds every message of their
        // groups exactly once as message.created.
        let sent = sent.lock().unwrap().clone();
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
            let mut created: HashMap<String, usize> = HashMap::new();
            for e in feed.iter().filter(|e| e["type"] == "message.created") {
                *created.entry(e["messageId"].as_str().unwrap().to_string()).or_default() += 1;
            }
            for (mid, conversation, _) in &sent {
                let member = groups.iter().any(|(g, m)| g == conversation && m.contains(&i));
                assert_eq!(created.get(mid).copied().unwrap_or(0), usize::from(member), "user {i}, message {mid}");
            }
            // Stored unread counts agree with the messages' receipts.
            for (g, members) in groups.iter().filter(|(_, m)| m.contains(&i)) {
                let history = app.history_ok(u, g).await;
                let unread = history
                    .iter()
                    .filter(|m| m["senderId"] != u.id.as_str() && m["deletedAt"].is_null())
                    .filter(|m| !m["readReceipts"].as_array().unwrap().iter().any(|r: &Value| r["userId"] == u.id.as_str()))
                    .count() as i64;
                assert_eq!(app.unread(u, g).await, unread, "user {i} in a group of {members:?}");
            }
        }
    }
}
