//! Group commit: state changes queue here, and each worker applies as many as are waiting in
//! one transaction, commits once, then answers every caller. Nobody is answered before the
//! commit (DESIGN.md §6); throughput comes from sharing the commit's fsync, not from
//! acknowledging early.
//!
//! If a batch fails as a whole (a database error, a serialization conflict), each of its
//! commands is retried alone, so one bad command cannot fail its neighbours.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::rules::{apply, participants, Counters};
use super::{Command, Outcome};
use crate::clock::now_ms;
use crate::error::DomainError;
use crate::store::{Store, StoreError};

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Outcome, DomainError>>;

struct Job {
    cmd: Command,
    reply: Reply,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts `workers` batch workers. SQLite wants one (it has one writer); PostgreSQL
    /// gains from several, since batches that share no user do not wait for each other.
    pub fn start(store: Store, workers: usize) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * 16);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(worker(store.clone(), rx.clone()));
        }
        Writer { tx }
    }

    /// Applies `cmd` and waits for its commit.
    pub async fn submit(&self, cmd: Command) -> Result<Outcome, DomainError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { cmd, reply })
            .await
            .map_err(|_| DomainError::internal(anyhow::anyhow!("writer stopped")))?;
        answer
            .await
            .map_err(|_| DomainError::internal(anyhow::anyhow!("writer dropped the command")))?
    }
}

async fn worker(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                return; // every sender is gone: the app is shutting down
            }
        }
        run_batch(&store, jobs).await;
    }
}

async fn run_batch(store: &Store, jobs: Vec<Job>) {
    let cmds: Vec<&Command> = jobs.iter().map(|j| &j.cmd).collect();
    match apply_batch(store, &cmds).await {
        Ok(results) => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
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
                let result = match apply_batch(store, &[&job.cmd]).await {
                    Ok(mut r) => r.pop().unwrap_or_else(|| {
                        Err(DomainError::internal(anyhow::anyhow!("empty batch result")))
                    }),
                    Err(e) => {
                        tracing::error!(error = ?e, "write failed");
                        Err(DomainError::internal(e))
                    }
                };
                let _ = job.reply.send(result);
            }
        }
    }
}

/// One transaction for all `cmds`. Domain refusals are per command; a database error fails
/// the batch (and nothing of it is committed).
#[tracing::instrument(skip_all, fields(batch = cmds.len()), err)]
async fn apply_batch(
    store: &Store,
    cmds: &[&Command],
) -> Result<Vec<Result<Outcome, DomainError>>, StoreError> {
    let mut tx = store.begin_write().await?;
    let mut users = Vec::with_capacity(cmds.len() * 2);
    for cmd in cmds {
        users.extend(participants(&mut tx, cmd).await?);
    }
    let mut counters = Counters(tx.lock_counters(users).await?);
    let before = counters.0.clone();
    let now = now_ms();
    let mut results = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        match apply(&mut tx, &mut counters, cmd, now).await {
            Err(DomainError::Internal(e)) => {
                // Unexpected: abandon the whole transaction.
                return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                    "{e:#}"
                ))));
            }
            other => results.push(other),
        }
    }
    let changed: std::collections::BTreeMap<String, i64> = counters
        .0
        .into_iter()
        .filter(|(user, seq)| before.get(user) != Some(seq))
        .collect();
    tx.store_counters(&changed).await?;
    // The full messages the transports deliver, read in the same transaction.
    let sent_ids: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(Outcome::Sent(s)) => Some(s.message_id.clone()),
            _ => None,
        })
        .collect();
    let loaded: std::collections::HashMap<String, _> = tx
        .load_messages(&sent_ids)
        .await?
        .into_iter()
        .map(|m| (m.row.id.clone(), m))
        .collect();
    for r in results.iter_mut() {
        if let Ok(Outcome::Sent(s)) = r {
            s.message = loaded.get(&s.message_id).cloned().map(Box::new);
        }
    }
    tx.commit().await?;
    Ok(results)
}
