//! Group commit: state changes queue here, and each worker applies as many as are waiting in
//! one transaction, commits once, then answers every caller once the commit is on disk.
//! Nobody is answered before that (docs/design.md, "Durability"); throughput comes from sharing the commit's
//! fsync, not from acknowledging early. On SQLite the fsync runs beside the writer
//! (`store::durable`): while one batch's frames are being synced the writer applies the
//! next, and it starts a new batch only while at most [`SYNC_BACKLOG`] commits wait for
//! their fsync, so that a slow disk makes batches larger rather than more numerous.
//!
//! Commands are sharded by the acting user: all of one user's commands go to the same
//! worker, in the order they were enqueued, so a user's messages are stored (and numbered)
//! in the order they were sent, even with several workers.
//!
//! If a batch fails as a whole (a database error, a serialization conflict), each of its
//! commands is retried alone, so one bad command cannot fail its neighbours.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nexus_protocol::events::DELETED_CONTENT;
use tokio::sync::{mpsc, oneshot, watch};

use super::rules::{participants, plan, Snapshot};
use super::{Command, Outcome};
use crate::clock::now_ms;
use crate::domain::MessageId;
use crate::error::DomainError;
use crate::metrics;
use crate::store::writes::{Commit, LockedUser, NewMessage, WriteConnection, Writes};
use crate::store::{MessageRow, Store, StoreError, StoredMessage};

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 512;

/// Commits that may wait for their fsync while the writer starts another (SQLite).
const SYNC_BACKLOG: u64 = 2;

type Reply = oneshot::Sender<Result<Outcome, DomainError>>;

/// A batch's answers (one per command, in order) and its commit, which they wait for.
type Applied = (Vec<Result<Outcome, DomainError>>, Commit);

struct Job {
    cmd: Command,
    reply: Reply,
}

#[derive(Clone)]
pub struct Writer {
    shards: Vec<mpsc::Sender<Job>>,
    stop: Arc<watch::Sender<bool>>,
    stopped: Arc<Mutex<Vec<oneshot::Receiver<()>>>>,
}

/// A command in the queue; resolves once its transaction committed (or failed).
pub struct Ticket(oneshot::Receiver<Result<Outcome, DomainError>>);

impl Ticket {
    pub async fn committed(self) -> Result<Outcome, DomainError> {
        self.0
            .await
            .map_err(|_| DomainError::internal(anyhow::anyhow!("writer dropped the command")))?
    }
}

impl Writer {
    /// Starts `workers` batch workers. SQLite wants one (it has one writer); PostgreSQL
    /// gains from several, since batches that share no user do not wait for each other.
    ///
    /// Each worker runs on a thread of its own (a single-threaded runtime). A batch is a
    /// chain of round trips to the database, and every one of them ends by waking the
    /// worker: on the shared runtime that wake-up waits behind every socket's work (a few
    /// milliseconds under load, several times per batch); on its own thread it does not.
    pub fn start(store: Store, workers: usize) -> std::io::Result<Writer> {
        let (stop, stop_rx) = watch::channel(false);
        let mut shards = Vec::new();
        let mut stopped = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * 16);
            let (done, done_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (store, stop_rx) = (store.clone(), stop_rx.clone());
            std::thread::Builder::new()
                .name(format!("nexus-writer-{i}"))
                .spawn(move || {
                    runtime.block_on(worker(store, rx, stop_rx));
                    let _ = done.send(());
                })?;
            shards.push(tx);
            stopped.push(done_rx);
        }
        Ok(Writer {
            shards,
            stop: Arc::new(stop),
            stopped: Arc::new(Mutex::new(stopped)),
        })
    }

    /// Queues `cmd` behind the acting user's earlier commands. Returns once it is queued;
    /// the ticket resolves after the commit.
    pub async fn enqueue(&self, cmd: Command) -> Result<Ticket, DomainError> {
        let shard = (cmd.actor().as_u128() % self.shards.len() as u128) as usize;
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .send(Job { cmd, reply })
            .await
            .map_err(|_| DomainError::internal(anyhow::anyhow!("writer stopped")))?;
        Ok(Ticket(answer))
    }

    /// Stops taking commands, applies those already queued, and returns when every worker
    /// has finished and given its connection back.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        let stopped = std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|e| e.into_inner()));
        for done in stopped {
            let _ = done.await;
        }
    }
}

async fn worker(store: Store, rx: mpsc::Receiver<Job>, stop: watch::Receiver<bool>) {
    work(&store, rx, stop).await;
    // Done once the last answers are on their way: their commits are on disk.
    store.settled().await;
}

async fn work(store: &Store, mut rx: mpsc::Receiver<Job>, mut stop: watch::Receiver<bool>) {
    let mut conn = None;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        store.sync_backlog_at_most(SYNC_BACKLOG).await;
        tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_BATCH) => {
                if n == 0 {
                    break; // every sender is gone
                }
                metrics::node().writer_queue.set((n + rx.len()) as i64);
                run_batch(store, &mut conn, std::mem::take(&mut jobs)).await;
                // A pool connection goes back while there is nothing to do, so the pool's
                // other users (registration, devices) are never starved by idle writers.
                if rx.is_empty() && conn.as_ref().is_some_and(WriteConnection::is_pooled) {
                    conn = None;
                }
            }
            _ = stop.wait_for(|stop| *stop) => {
                // Shutting down: refuse new commands, apply what is queued.
                rx.close();
                while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                    run_batch(store, &mut conn, std::mem::take(&mut jobs)).await;
                }
                break;
            }
        }
    }
}

/// The worker's connection, taken from the pool when it has none (at start, and after an
/// error, which may have been the connection's).
async fn connection<'a>(
    store: &Store,
    slot: &'a mut Option<WriteConnection>,
) -> Result<&'a mut WriteConnection, StoreError> {
    Ok(match slot {
        Some(conn) => conn,
        None => slot.insert(store.write_connection().await?),
    })
}

/// Applies `cmds` on the worker's connection; a database error gives the connection back.
async fn apply_on(
    store: &Store,
    slot: &mut Option<WriteConnection>,
    cmds: &[&Command],
) -> Result<Applied, StoreError> {
    let result = match connection(store, slot).await {
        Ok(conn) => apply_batch(store, conn, cmds).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        *slot = None;
    }
    result
}

async fn run_batch(store: &Store, conn: &mut Option<WriteConnection>, jobs: Vec<Job>) {
    let cmds: Vec<&Command> = jobs.iter().map(|j| &j.cmd).collect();
    let started = Instant::now();
    let applied = apply_on(store, conn, &cmds).await;
    let node = metrics::node();
    node.writer_batch.observe(cmds.len() as f64);
    node.writer_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    drop(cmds);
    match applied {
        Ok((results, commit)) => commit.when_durable(move |synced| {
            node.database("commit_to_disk", started);
            for (job, result) in jobs.into_iter().zip(results) {
                answer(job, result, &synced);
            }
        }),
        Err(e) if jobs.len() == 1 => {
            tracing::error!(error = ?e, "write failed");
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(DomainError::internal(anyhow::anyhow!("{e}"))));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = jobs.len(), "batch failed, retrying its commands one by one");
            for job in jobs {
                match apply_on(store, conn, &[&job.cmd]).await {
                    Ok((mut results, commit)) => {
                        let result = results.pop().unwrap_or_else(|| {
                            Err(DomainError::internal(anyhow::anyhow!("empty batch result")))
                        });
                        commit.when_durable(move |synced| answer(job, result, &synced));
                    }
                    Err(e) => {
                        tracing::error!(error = ?e, "write failed");
                        let _ = job.reply.send(Err(DomainError::internal(e)));
                    }
                }
            }
        }
    }
}

/// Answers a command once its commit is durable; if the fsync failed the change is
/// committed but not promised, so the sender hears of a failure (a retry with the same
/// `tempId` finds the message).
fn answer(job: Job, result: Result<Outcome, DomainError>, synced: &Result<(), String>) {
    let result = match synced {
        Ok(()) => {
            if let Ok(Outcome::Sent(sent)) = &result {
                if !sent.duplicate {
                    metrics::node().messages.inc();
                }
            }
            result
        }
        Err(e) => Err(DomainError::internal(anyhow::anyhow!(
            "the commit could not be made durable: {e}"
        ))),
    };
    let _ = job.reply.send(result);
}

/// One transaction for all `cmds`: load what they read (counters under lock), let the
/// rules decide, store the result in a few multi-row statements, commit. Domain refusals
/// are per command; a database error fails the batch (and nothing of it is committed).
#[tracing::instrument(skip_all, fields(batch = cmds.len()), err)]
async fn apply_batch(
    store: &Store,
    conn: &mut WriteConnection,
    cmds: &[&Command],
) -> Result<Applied, StoreError> {
    let mut tx = conn.begin().await?;

    // The messages edits, deletes and receipts name: their parties never change, so they
    // can be read before the locks to learn whose counters to take.
    let mut named: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Send { .. } => None,
            Command::Edit { message, .. }
            | Command::Delete { message, .. }
            | Command::Receipt { message, .. } => Some(message.as_string()),
        })
        .collect();
    named.sort();
    named.dedup();
    let before_lock = tx.message_states(&named).await?;
    let users = cmds.iter().flat_map(|c| participants(c, &before_lock));
    let locked = tx.lock_users(users).await?;

    // Under the locks nobody else changes these users' messages: read their state now.
    let mut snapshot = Snapshot {
        counters: locked.iter().map(|(u, l)| (u.clone(), l.seq)).collect(),
        messages: if named.is_empty() {
            Default::default()
        } else {
            tx.message_states(&named).await?
        },
        ..Default::default()
    };
    let client_ids: Vec<(String, String)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                sender,
                client_message_id: Some(cid),
                ..
            } => Some((sender.as_string(), cid.as_str().to_string())),
            _ => None,
        })
        .collect();
    if !client_ids.is_empty() {
        snapshot.by_client_id = tx.messages_by_client_ids(&client_ids).await?;
    }
    let receipt_ids: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Receipt { message, .. } => Some(message.as_string()),
            _ => None,
        })
        .collect();
    if !receipt_ids.is_empty() {
        snapshot.receipts = tx.receipts_of(&receipt_ids).await?;
    }

    let now = now_ms();
    let before = snapshot.counters.clone();
    let (mut results, writes) = plan(&mut snapshot, cmds, now, || MessageId::new().as_string());
    if results
        .iter()
        .any(|r| matches!(r, Err(DomainError::Internal(_))))
    {
        return Err(StoreError::Database(sqlx::Error::Protocol(
            "a command failed unexpectedly".into(),
        )));
    }
    let changed: BTreeMap<String, i64> = writes
        .counters
        .iter()
        .filter(|(user, seq)| before.get(*user) != Some(*seq))
        .map(|(u, s)| (u.clone(), *s))
        .collect();
    let positions = tx
        .write(&Writes {
            messages: &writes.messages,
            changes: &writes.changes,
            edits: &writes.edits,
            deletes: &writes.deletes,
            tombstone: DELETED_CONTENT,
            receipts: &writes.receipts,
            counters: &changed,
            now,
        })
        .await?;

    let commit = tx.commit().await?;

    // The messages the transports deliver: new ones from what was just written, retried
    // ones (committed earlier) from the database.
    let new: HashMap<&str, &NewMessage> =
        writes.messages.iter().map(|m| (m.id.as_str(), m)).collect();
    let retried: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(Outcome::Sent(s)) if s.duplicate && !new.contains_key(s.message_id.as_str()) => {
                Some(s.message_id.clone())
            }
            _ => None,
        })
        .collect();
    let loaded: HashMap<String, StoredMessage> = if retried.is_empty() {
        HashMap::new()
    } else {
        match store.committed_messages_by_ids(&retried).await {
            Ok(found) => found.into_iter().map(|m| (m.row.id.clone(), m)).collect(),
            Err(e) => {
                // Committed already: the senders get their answer without the message.
                tracing::error!(error = %e, "cannot load the messages of retried sends");
                HashMap::new()
            }
        }
    };
    for r in results.iter_mut() {
        if let Ok(Outcome::Sent(s)) = r {
            s.message = match new.get(s.message_id.as_str()) {
                Some(m) => stored_message(m, &locked, &positions),
                None => loaded.get(&s.message_id).cloned(),
            }
            .map(Box::new);
        }
    }
    Ok((results, commit))
}

/// A just-inserted message as the transports need it (no receipts yet).
fn stored_message(
    m: &NewMessage,
    users: &BTreeMap<String, LockedUser>,
    positions: &HashMap<String, i64>,
) -> Option<StoredMessage> {
    let (sender, receiver) = (users.get(&m.sender_id)?, users.get(&m.receiver_id)?);
    Some(StoredMessage {
        row: MessageRow {
            pos: *positions.get(&m.id)?,
            id: m.id.clone(),
            sender_id: m.sender_id.clone(),
            receiver_id: m.receiver_id.clone(),
            content: m.content.clone(),
            created_at: m.created_at,
            edited_at: None,
            deleted_at: None,
            is_encrypted: 0,
            encryption_key_id: None,
            client_message_id: m.client_message_id.clone(),
            sender_seq: m.sender_seq,
            receiver_seq: m.receiver_seq,
            sender_name: sender.name.clone(),
            sender_email: sender.email.clone(),
            receiver_name: receiver.name.clone(),
            receiver_email: receiver.email.clone(),
        },
        reads: Vec::new(),
        deliveries: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{DisplayName, Email, MessageBody, UserId};

    /// Nobody hears of a commit before it is on disk: with the WAL's fsync held back, a
    /// send stays unanswered although its row is committed, and is answered once the fsync
    /// has run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::await_holding_lock)] // held on purpose: it stops the syncer's thread
    async fn a_send_is_answered_only_after_the_wal_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.db");
        let store = Store::connect(&format!("sqlite://{}", file.display()), 4)
            .await
            .unwrap();
        let (ada, bob) = (UserId::new(), UserId::new());
        for (user, name) in [(ada, "ada"), (bob, "bob")] {
            let email = Email::parse(&format!("{name}@example.com")).unwrap();
            let name = DisplayName::parse(name).unwrap();
            store
                .create_user(user, &name, &email, "hash", 0)
                .await
                .unwrap();
        }
        let writer = Writer::start(store.clone(), 1).unwrap();

        let held = store.hold_fsyncs();
        let ticket = writer
            .enqueue(Command::Send {
                sender: ada,
                receiver: bob,
                body: MessageBody::parse("hello").unwrap(),
                client_message_id: None,
            })
            .await
            .unwrap();
        // The store's readers wait for the fsync too: look with a connection of our own.
        let raw = rusqlite::Connection::open(&file).unwrap();
        let stored = || -> i64 {
            raw.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
                .unwrap()
        };
        while stored() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let answer = tokio::spawn(ticket.committed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!answer.is_finished(), "answered before the WAL was synced");

        drop(held);
        let outcome = answer.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Sent(_)));
        writer.close().await;
    }
}
