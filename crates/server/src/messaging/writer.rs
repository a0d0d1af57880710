//! Group commit: state changes queue here, and each worker applies as many as are waiting in
//! one transaction, commits once, then answers every caller. Nobody is answered before the
//! commit (DESIGN.md §6); throughput comes from sharing the commit's fsync, not from
//! acknowledging early.
//!
//! Commands are sharded by the acting user: all of one user's commands go to the same
//! worker, in the order they were enqueued, so a user's messages are stored (and numbered)
//! in the order they were sent, even with several workers.
//!
//! If a batch fails as a whole (a database error, a serialization conflict), each of its
//! commands is retried alone, so one bad command cannot fail its neighbours.

use tokio::sync::{mpsc, oneshot};

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
    shards: Vec<mpsc::Sender<Job>>,
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
    pub fn start(store: Store, workers: usize) -> Writer {
        let shards = (0..workers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * 16);
                tokio::spawn(worker(store.clone(), rx));
                tx
            })
            .collect();
        Writer { shards }
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
}

async fn worker(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        run_batch(&store, std::mem::take(&mut jobs)).await;
    }
    // every sender is gone: the app is shutting down
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
