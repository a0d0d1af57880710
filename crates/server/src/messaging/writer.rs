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
//! in the order they were sent, even with several workers. Which waiting commands go
//! together is [`super::schedule`]'s: a batch is bounded by the rows it writes (a group
//! message writes a row per member), and small commands are not held up behind a group
//! load, while each user's commands stay in their order.
//!
//! On PostgreSQL a worker keeps up to two batches in flight, each on a connection of its
//! own ([`crate::store::PG_WRITER_LANES`]): one backend executing one batch at a time left
//! the rest of the machine waiting for it (docs/benchmarks.md, "Third pass: two batches in
//! flight").
//! The second batch keeps clear of the users and conversations of the first (the
//! scheduler's `Busy`): it never holds a command of a user the first is applying, so a
//! user's commands still commit in their order even when the first batch fails and is
//! retried command by command, and it takes nothing that would wait for the first's row
//! locks. It holds only small commands: a large batch (group messages) runs alone, since a
//! 1:1 send answered after it (see below) would otherwise wait for two of them. Beside a
//! large batch the small commands go at once; beside a small one, only once there are at
//! least [`MIN_BESIDE`] of them (two half batches cost more than one whole) or the first is
//! [`OVERDUE`] (waiting for a lock another node holds, say). Batches are answered in the
//! order they started: a later
//! batch that shares a group member with an earlier one committed after it, and its
//! deliveries must not overtake the earlier one's in that member's feed.
//!
//! If a batch fails as a whole because of one of its commands (a constraint, a
//! serialization conflict), each of its commands is retried alone, so one bad command
//! cannot fail its neighbours. If it fails because the database cannot be reached, every
//! command of it is answered `UNAVAILABLE` at once (retrying them one by one would only
//! wait for the same dead server again), and for [`BREAKER`] the worker answers the same
//! without trying, so a queue drains in milliseconds during an outage.
//!
//! Every command has a deadline, [`Writer::start`]'s `timeout` after it was queued
//! (`DATABASE_TIMEOUT_SECONDS`): one still queued then is answered `UNAVAILABLE` without
//! being applied, and a batch may run only until its earliest deadline, after which it is
//! rolled back. Nobody waits longer than that for an answer (see `docs/operations.md`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use nexus_protocol::events::DELETED_CONTENT;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::conversation_info_from_state;
use super::rules::{conversation_of, pair, participants, plan, Snapshot};
use super::schedule::{Busy, Queue, Queued, Sizes, MAX_BATCH};
use super::{Command, Outcome};
use crate::clock::now_ms;
use crate::domain::MessageId;
use crate::error::DomainError;
use crate::metrics;
use crate::store::writes::{Commit, LockOrder, LockedUser, NewMessage, WriteConnection, Writes};
use crate::store::{MessageRow, Store, StoreError, StoredMessage};

/// Commands a worker holds in its own queue (where it chooses each batch from), and as
/// many more in its channel: past both, [`Writer::enqueue`] waits (back-pressure).
const QUEUED: usize = MAX_BATCH * 8;

/// The fewest commands a batch formed beside another may hold, unless that one is overdue:
/// fewer wait for it to finish and go in the next batch (a batch has a cost of its own
/// whatever its size: two half batches cost more than one whole).
const MIN_BESIDE: usize = 48;

/// A batch in flight for this many times the recent batches' time is overdue (it waits
/// for a lock another node holds, say): a batch beside it may then be of any size.
const OVERDUE: u32 = 2;

/// Commits that may wait for their fsync while the writer starts another (SQLite).
const SYNC_BACKLOG: u64 = 2;

/// After a batch found the database unreachable, how long the worker answers
/// `UNAVAILABLE` without trying; the next batch after that is the probe.
pub const BREAKER: Duration = Duration::from_millis(500);

/// A batch gets at least this long, even when its earliest deadline is nearer (a command
/// that waited in the queue almost its whole timeout cannot make its neighbours fail).
const MIN_BATCH_TIME: Duration = Duration::from_millis(250);

type Reply = oneshot::Sender<Result<Outcome, DomainError>>;

/// A batch's answers (one per command, in order) and its commit, which they wait for.
pub type Applied = (Vec<Result<Outcome, DomainError>>, Commit);

struct Job {
    cmd: Command,
    reply: Reply,
    /// When the command is answered `UNAVAILABLE` if it has not been applied.
    deadline: Instant,
}

impl Queued for Job {
    fn command(&self) -> &Command {
        &self.cmd
    }
}

#[derive(Clone)]
pub struct Writer {
    shards: Vec<mpsc::Sender<Job>>,
    timeout: Duration,
    stop: Arc<watch::Sender<bool>>,
    stopped: Arc<Mutex<Vec<oneshot::Receiver<()>>>>,
}

/// A command in the queue; resolves once its transaction committed (or failed).
pub struct Ticket {
    answer: oneshot::Receiver<Result<Outcome, DomainError>>,
    /// The worker answers by the command's deadline; this is the backstop should a commit
    /// itself hang (then the command may still be applied: a retry with the same `tempId`
    /// finds it, and nothing is ever acknowledged that was not committed).
    backstop: Instant,
}

impl Ticket {
    pub async fn committed(self) -> Result<Outcome, DomainError> {
        match tokio::time::timeout_at(self.backstop, self.answer).await {
            Ok(answer) => answer.map_err(|_| {
                DomainError::internal(anyhow::anyhow!("writer dropped the command"))
            })?,
            Err(_) => {
                tracing::warn!("a write got no answer by its deadline");
                Err(DomainError::Unavailable)
            }
        }
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
    ///
    /// `timeout` bounds how long a command may wait for its answer (see the module's doc).
    pub fn start(store: Store, workers: usize, timeout: Duration) -> std::io::Result<Writer> {
        let (stop, stop_rx) = watch::channel(false);
        let mut shards = Vec::new();
        let mut stopped = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel::<Job>(QUEUED);
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
            timeout,
            stop: Arc::new(stop),
            stopped: Arc::new(Mutex::new(stopped)),
        })
    }

    /// Queues `cmd` behind the acting user's earlier commands. Returns once it is queued;
    /// the ticket resolves after the commit.
    pub async fn enqueue(&self, cmd: Command) -> Result<Ticket, DomainError> {
        let shard = (cmd.actor().as_u128() % self.shards.len() as u128) as usize;
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.timeout;
        // A full queue waits (back-pressure), but never past the deadline.
        match tokio::time::timeout_at(
            deadline,
            self.shards[shard].send(Job {
                cmd,
                reply,
                deadline,
            }),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(DomainError::internal(anyhow::anyhow!("writer stopped"))),
            Err(_) => return Err(DomainError::Unavailable),
        }
        Ok(Ticket {
            answer,
            backstop: deadline + Duration::from_secs(1),
        })
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

/// The worker's loop: takes what arrives into its queue, starts a batch whenever one of its
/// connections is free and the queue holds commands it may take, and answers each batch
/// once it is done, in the order the batches started.
async fn work(store: &Store, mut rx: mpsc::Receiver<Job>, mut stop: watch::Receiver<bool>) {
    let mut worker = Worker::new(store.writer_lanes());
    let mut running: FuturesOrdered<LocalBoxFuture<'_, Done>> = FuturesOrdered::new();
    // What each batch in `running` holds and when it started, in the same order.
    let mut holding: VecDeque<(Busy, Instant)> = VecDeque::new();
    let mut arrived = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        // What arrived meanwhile, without waiting.
        while worker.queue.len() + arrived.len() < QUEUED {
            match rx.try_recv() {
                Ok(job) => arrived.push(job),
                Err(_) => break,
            }
        }
        worker.queue_all(&mut arrived);
        metrics::node()
            .writer_queue
            .set((worker.queue.len() + rx.len()) as i64);
        while !worker.lanes.is_empty() && !worker.queue.is_empty() {
            if running.is_empty() {
                // SQLite's one writer: no more than a few commits waiting for their fsync.
                store.sync_backlog_at_most(SYNC_BACKLOG).await;
            }
            let beside: Vec<&Busy> = holding.iter().map(|(b, _)| b).collect();
            // A large batch (group messages) runs alone: beside another, only small commands
            // go. Beside a large batch they go at once; beside a small one, enough of them to
            // be worth a batch, or any once it is overdue.
            let (at_least, only_small) = match holding.front() {
                None => (0, false),
                Some((busy, _)) if busy.is_large() => (1, true),
                Some((_, started)) if Instant::now() < *started + worker.patience() => {
                    (MIN_BESIDE, true)
                }
                Some(_) => (1, true),
            };
            let Some((jobs, busy)) = worker.next_batch(&beside, at_least, only_small) else {
                break;
            };
            let lane = worker.lanes.pop().unwrap_or_default();
            running.push_back(Box::pin(run_batch(store, lane, jobs)));
            holding.push_back((busy, Instant::now()));
        }
        if stopping && running.is_empty() && worker.queue.is_empty() {
            // Shutting down (or every sender gone): what was queued is applied.
            match rx.try_recv() {
                Ok(job) => arrived.push(job),
                Err(_) => break,
            }
            continue;
        }
        let room = QUEUED.saturating_sub(worker.queue.len());
        // Commands wait beside a batch in flight: they may go once it is overdue.
        // (Once it is overdue, those still waiting wait for its users: for it to finish.)
        let overdue = holding
            .front()
            .filter(|(busy, _)| !busy.is_large())
            .map(|(_, started)| *started + worker.patience())
            .filter(|t| {
                *t > Instant::now() && !worker.lanes.is_empty() && !worker.queue.is_empty()
            });
        tokio::select! {
            Some(done) = running.next() => {
                holding.pop_front();
                worker.finish(done);
            }
            n = rx.recv_many(&mut arrived, room.max(1)), if !stopping && room > 0 => {
                if n == 0 {
                    stopping = true; // every sender is gone
                }
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                // Refuse new commands; apply those already queued.
                stopping = true;
                rx.close();
            }
            _ = tokio::time::sleep_until(overdue.unwrap_or_else(Instant::now)), if overdue.is_some() => {}
        }
    }
}

/// The worker's connection, taken from the pool when it has none (at start, and after an
/// error, which may have been the connection's).
async fn connection<'a>(
    store: &Store,
    slot: &'a mut Option<Box<dyn WriteConnection>>,
) -> Result<&'a mut dyn WriteConnection, StoreError> {
    Ok(match slot {
        Some(conn) => conn.as_mut(),
        None => slot.insert(store.write_connection().await?).as_mut(),
    })
}

/// A worker's connection slot: `None` until its first batch, and after an error.
type Lane = Option<Box<dyn WriteConnection>>;

/// One writer worker's state between batches.
struct Worker {
    /// The connections no batch is using (as many as batches may be in flight).
    lanes: Vec<Lane>,
    /// Set when a batch found the database unreachable: until then, answer without trying.
    broken_until: Option<Instant>,
    /// The commands taken from the channel and not applied yet.
    queue: Queue<Job>,
    /// How long the recent batches took (a moving average).
    recent: Duration,
}

/// Why a batch was not applied.
enum Failed {
    /// The database could not be reached, or did not answer by the batch's deadline.
    Unavailable(String),
    /// Anything else: one of the commands may be the cause.
    Other(StoreError),
}

/// A batch that is done: its connection back, and its commands' answers, to send in the
/// order the batches started (a later batch that shares a user with an earlier one
/// committed after it, and its answers must not overtake the earlier one's).
struct Done {
    lane: Lane,
    /// The commands' answers, each group once its commit is durable (`None`: at once).
    answers: Vec<(Option<Commit>, Vec<Answered>)>,
    /// The database could not be reached.
    unavailable: bool,
    /// When the batch started.
    started: std::time::Instant,
}

impl Worker {
    fn new(lanes: usize) -> Worker {
        Worker {
            lanes: (0..lanes.max(1)).map(|_| None).collect(),
            broken_until: None,
            queue: Queue::default(),
            recent: Duration::from_millis(10),
        }
    }

    /// How long a batch in flight may take before the commands beside it go in a batch of
    /// any size.
    fn patience(&self) -> Duration {
        self.recent * OVERDUE
    }

    fn queue_all(&mut self, arrived: &mut Vec<Job>) {
        for job in arrived.drain(..) {
            self.queue.push(job);
        }
    }

    /// The next batch to apply beside the batches in flight (`beside`), of `at_least`
    /// commands (only small ones with `only_small`), and what it holds; `None` when nothing
    /// queued may go now. Commands whose deadline passed are answered `UNAVAILABLE` without
    /// being applied; so is everything while the breaker is open.
    fn next_batch(
        &mut self,
        beside: &[&Busy],
        at_least: usize,
        only_small: bool,
    ) -> Option<(Vec<Job>, Busy)> {
        loop {
            let now = Instant::now();
            unavailable(self.queue.take_expired(|j| j.deadline <= now));
            let (jobs, _rows) = self.queue.next_batch_of(beside, at_least, only_small);
            if jobs.is_empty() {
                return None;
            }
            if self.broken_until.is_some_and(|until| now < until) {
                unavailable(jobs);
                continue;
            }
            let busy = Busy::of(jobs.iter().map(|j| &j.cmd), &self.queue.sizes);
            return Some((jobs, busy));
        }
    }

    /// A batch is done: its connection is free again, what it learned is kept, and its
    /// commands are answered once their commit is durable.
    fn finish(&mut self, done: Done) {
        self.lanes.push(done.lane);
        self.recent = (self.recent * 7 + done.started.elapsed()) / 8;
        if done.unavailable {
            self.broken_until = Some(Instant::now() + BREAKER);
        } else if done.answers.iter().any(|(commit, _)| commit.is_some()) {
            self.broken_until = None;
        }
        let started = done.started;
        for (commit, answers) in done.answers {
            learn(&mut self.queue.sizes, answers.iter().map(|(_, r)| r));
            match commit {
                Some(commit) => commit.when_durable(move |synced| {
                    metrics::node().database("commit_to_disk", started);
                    for (job, result) in answers {
                        answer(job, result, &synced);
                    }
                }),
                None => {
                    for (job, result) in answers {
                        let _ = job.reply.send(result);
                    }
                }
            }
        }
    }

    /// Applies the next batch and answers it (tests: one batch at a time).
    #[cfg(test)]
    async fn step(&mut self, store: &Store) {
        if let Some((jobs, _)) = self.next_batch(&[], 0, false) {
            self.run_batch(store, jobs).await;
        }
    }

    /// Applies `jobs` as one batch on a free connection and answers them (tests).
    #[cfg(test)]
    async fn run_batch(&mut self, store: &Store, jobs: Vec<Job>) {
        let lane = self.lanes.pop().unwrap_or_default();
        let done = run_batch(store, lane, jobs).await;
        self.finish(done);
    }
}

/// Applies `cmds` on `lane`'s connection, within `until`; a failure gives the connection
/// back (it may have been the connection's), a timeout rolls back.
async fn apply(
    store: &Store,
    lane: &mut Lane,
    cmds: &[&Command],
    until: Instant,
) -> Result<Applied, Failed> {
    let until = until.max(Instant::now() + MIN_BATCH_TIME);
    let attempt = async {
        let conn = connection(store, lane).await?;
        apply_batch(store, conn, cmds).await
    };
    let result = match tokio::time::timeout_at(until, attempt).await {
        Ok(Ok(applied)) => return Ok(applied),
        Ok(Err(e)) if e.is_unavailable() => Failed::Unavailable(e.to_string()),
        Ok(Err(e)) => Failed::Other(e),
        Err(_) => Failed::Unavailable("no answer from the database in time".into()),
    };
    *lane = None;
    Err(result)
}

/// Applies `jobs` in one transaction on `lane`; if it fails because of one of them, each
/// alone. Answers nobody: [`Worker::finish`] does, in the order the batches started.
async fn run_batch(store: &Store, mut lane: Lane, jobs: Vec<Job>) -> Done {
    let mut done = Done {
        lane: None,
        answers: Vec::new(),
        unavailable: false,
        started: std::time::Instant::now(),
    };
    let Some(until) = jobs.iter().map(|j| j.deadline).min() else {
        done.lane = lane;
        return done;
    };
    let cmds: Vec<&Command> = jobs.iter().map(|j| &j.cmd).collect();
    let applied = apply(store, &mut lane, &cmds, until).await;
    let node = metrics::node();
    node.writer_batch.observe(cmds.len() as f64);
    node.writer_commit_seconds
        .observe(done.started.elapsed().as_secs_f64());
    drop(cmds);
    match applied {
        Ok((results, commit)) => {
            done.answers
                .push((Some(commit), jobs.into_iter().zip(results).collect()));
        }
        Err(Failed::Unavailable(e)) => {
            tracing::warn!(error = %e, size = jobs.len(), "database unavailable: batch answered UNAVAILABLE");
            done.unavailable = true;
            done.answers.push((None, refused(jobs)));
        }
        Err(Failed::Other(e)) if jobs.len() == 1 => {
            tracing::error!(error = ?e, "write failed");
            let failed = jobs
                .into_iter()
                .map(|job| (job, Err(DomainError::internal(anyhow::anyhow!("{e}")))))
                .collect();
            done.answers.push((None, failed));
        }
        Err(Failed::Other(e)) => {
            tracing::warn!(error = %e, size = jobs.len(), "batch failed, retrying its commands one by one");
            let mut jobs = jobs.into_iter();
            while let Some(job) = jobs.next() {
                match apply(store, &mut lane, &[&job.cmd], job.deadline).await {
                    Ok((mut results, commit)) => {
                        let result = results.pop().unwrap_or_else(|| {
                            Err(DomainError::internal(anyhow::anyhow!("empty batch result")))
                        });
                        done.answers.push((Some(commit), vec![(job, result)]));
                    }
                    Err(Failed::Unavailable(e)) => {
                        tracing::warn!(error = %e, "database unavailable during retries");
                        done.unavailable = true;
                        done.answers
                            .push((None, refused(std::iter::once(job).chain(jobs))));
                        break;
                    }
                    Err(Failed::Other(e)) => {
                        tracing::error!(error = ?e, "write failed");
                        done.answers
                            .push((None, vec![(job, Err(DomainError::internal(e)))]));
                    }
                }
            }
        }
    }
    done.lane = lane;
    done
}

/// What a batch's outcomes tell of the size of conversations, for the estimates of
/// [`super::schedule`].
fn learn<'r>(
    sizes: &mut Sizes,
    results: impl IntoIterator<Item = &'r Result<Outcome, DomainError>>,
) {
    for outcome in results.into_iter().flatten() {
        match outcome {
            Outcome::Sent(sent) if !sent.duplicate => {
                if let Some(m) = &sent.message {
                    sizes.members(&m.row.conversation_id, sent.audience.len() + 1);
                    sizes.message(&sent.message_id, &m.row.conversation_id);
                }
            }
            Outcome::Edited {
                message_id,
                conversation_id,
                audience,
                ..
            }
            | Outcome::Deleted {
                message_id,
                conversation_id,
                audience,
                ..
            } => {
                sizes.members(conversation_id, audience.len());
                sizes.message(message_id, conversation_id);
            }
            Outcome::Receipt {
                message_id,
                conversation_id,
                ..
            } => sizes.message(message_id, conversation_id),
            Outcome::Conversation(change) => sizes.members(
                &change.conversation.id,
                change.conversation.current_ids().len(),
            ),
            _ => {}
        }
    }
}

/// Answers each job `UNAVAILABLE`: none of them was applied.
fn unavailable(jobs: impl IntoIterator<Item = Job>) {
    for (job, refusal) in refused(jobs) {
        let _ = job.reply.send(refusal);
    }
}

/// A command and its answer.
type Answered = (Job, Result<Outcome, DomainError>);

/// Each job with the answer `UNAVAILABLE`.
fn refused(jobs: impl IntoIterator<Item = Job>) -> Vec<Answered> {
    jobs.into_iter()
        .map(|job| (job, Err(DomainError::Unavailable)))
        .collect()
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
///
/// Public for `tests/api/write_conformance.rs`, which runs the same batches through every
/// engine's write side; the server itself calls it only from a writer worker.
#[doc(hidden)]
#[tracing::instrument(skip_all, fields(batch = cmds.len()), err)]
pub async fn apply_batch(
    store: &Store,
    conn: &mut dyn WriteConnection,
    cmds: &[&Command],
) -> Result<Applied, StoreError> {
    // A pair's first messages, sent by both at once through two workers (PostgreSQL), may
    // both find no conversation yet; the second learns of the first's under the counters'
    // locks and starts again (then it finds it).
    for _ in 0..3 {
        if let Some(applied) = try_apply(store, conn, cmds).await? {
            return Ok(applied);
        }
    }
    Err(StoreError::Conflict)
}

/// [`apply_batch`] once; `None` when a direct conversation it was to create appeared
/// meanwhile (rolled back).
async fn try_apply(
    store: &Store,
    conn: &mut dyn WriteConnection,
    cmds: &[&Command],
) -> Result<Option<Applied>, StoreError> {
    let mut tx = conn.begin().await?;

    // The messages edits, deletes, receipts and read marks name: their conversation and
    // sender never change, so they can be read before the locks to learn what to lock.
    let mut named: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Edit { message, .. }
            | Command::Delete { message, .. }
            | Command::Receipt { message, .. } => Some(message.as_string()),
            Command::MarkRead { up_to, .. } => Some(up_to.as_string()),
            _ => None,
        })
        .collect();
    named.sort();
    named.dedup();
    let before_lock = if named.is_empty() {
        HashMap::new()
    } else {
        tx.message_states(&named).await?
    };
    // Sends to a person: their pair's direct conversation, if it exists yet.
    let mut pairs: Vec<(String, String)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                sender, receiver, ..
            } if sender != receiver => Some(pair(&sender.as_string(), &receiver.as_string())),
            _ => None,
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    let directs = if pairs.is_empty() {
        HashMap::new()
    } else {
        tx.direct_conversations(&pairs).await?
    };
    // Conversations first, then counters, each in sorted order (see `lock_conversations`).
    let conversation_ids = cmds
        .iter()
        .filter_map(|c| conversation_of(c, &before_lock))
        .chain(directs.values().cloned());
    let conversations = tx
        .lock_conversations(&LockOrder::new(conversation_ids))
        .await?;
    let users = cmds
        .iter()
        .flat_map(|c| participants(c, &before_lock, &conversations));
    let client_ids: Vec<(String, String)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                sender,
                client_message_id: Some(cid),
                ..
            }
            | Command::Post {
                sender,
                client_message_id: Some(cid),
                ..
            } => Some((sender.as_string(), cid.as_str().to_string())),
            _ => None,
        })
        .collect();
    // The counters under lock and the sends already stored under these tempIds (one round
    // trip on PostgreSQL).
    let (locked, by_client_id) = tx
        .lock_and_load(&LockOrder::new(users), &client_ids)
        .await?;
    let missing: Vec<(String, String)> = pairs
        .iter()
        .filter(|p| !directs.contains_key(*p))
        .cloned()
        .collect();
    if !missing.is_empty() && !tx.direct_conversations(&missing).await?.is_empty() {
        return Ok(None);
    }

    // Under the locks nobody else changes these users' messages: read their state now.
    let mut snapshot = Snapshot {
        counters: locked.iter().map(|(u, l)| (u.clone(), l.seq)).collect(),
        messages: if named.is_empty() {
            Default::default()
        } else {
            tx.message_states(&named).await?
        },
        by_client_id,
        conversations,
        directs,
        ..Default::default()
    };
    let receipt_ids: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Receipt { message, .. } | Command::Delete { message, .. } => {
                Some(message.as_string())
            }
            _ => None,
        })
        .collect();
    if !receipt_ids.is_empty() {
        snapshot.receipts = tx.receipts_of(&receipt_ids).await?;
    }
    // Read marks: what each reader has not read up to the mark.
    for c in cmds {
        let Command::MarkRead {
            actor,
            conversation,
            up_to,
        } = c
        else {
            continue;
        };
        let (cid, reader) = (conversation.as_string(), actor.as_string());
        let Some(up) = snapshot.messages.get(&up_to.as_string()) else {
            continue;
        };
        let Some(member) = snapshot
            .conversations
            .get(&cid)
            .and_then(|c| c.current(&reader))
        else {
            continue;
        };
        if up.conversation_id != cid || up.pos <= member.read_up_to_pos {
            continue;
        }
        let (after, up_pos) = (member.read_up_to_pos, up.pos);
        let unread = tx.unread_between(&cid, &reader, after, up_pos).await?;
        let ids = unread.iter().map(|m| m.id.clone()).collect();
        for m in unread {
            snapshot.messages.entry(m.id.clone()).or_insert(m);
        }
        snapshot.unread.insert((cid, reader), ids);
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
            conversations: &writes.conversations,
            members: &writes.members,
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
        match r {
            Ok(Outcome::Sent(s)) => {
                s.message = match new.get(s.message_id.as_str()) {
                    Some(m) => stored_message(m, &locked, &positions),
                    None => loaded
                        .get(&s.message_id)
                        .cloned()
                        .or_else(|| as_first_stored(&snapshot, &s.message_id, &locked)),
                }
                .map(Box::new);
            }
            Ok(Outcome::Conversation(change)) => {
                change.info = Some(conversation_info_from_state(&change.conversation, &locked));
            }
            _ => {}
        }
    }
    Ok(Some((results, commit)))
}

/// A retried send's message when it could not be loaded after the commit: as the batch read
/// it under the locks (content, time, parties, deletion), without later edits' time and
/// receipts. The send did commit, so its sender gets an answer rather than an error.
fn as_first_stored(
    snapshot: &Snapshot,
    id: &str,
    users: &BTreeMap<String, LockedUser>,
) -> Option<StoredMessage> {
    let state = snapshot.by_client_id.values().find(|m| m.id == id)?;
    let sender = users.get(&state.sender_id)?;
    let receiver = match &state.receiver_id {
        Some(r) => Some(users.get(r)?),
        None => None,
    };
    let client_message_id = snapshot
        .by_client_id
        .iter()
        .find(|(_, m)| m.id == id)
        .map(|((_, cid), _)| cid.clone());
    Some(StoredMessage {
        row: MessageRow {
            pos: 0,
            id: state.id.clone(),
            conversation_id: state.conversation_id.clone(),
            sender_id: state.sender_id.clone(),
            receiver_id: state.receiver_id.clone(),
            content: state.content.clone(),
            created_at: state.created_at,
            edited_at: None,
            deleted_at: state.deleted_at,
            is_encrypted: 0,
            encryption_key_id: None,
            client_message_id,
            sender_seq: state.sender_seq,
            receiver_seq: 0,
            sender_name: sender.name.clone(),
            sender_email: sender.email.clone(),
            receiver_name: receiver.map(|r| r.name.clone()),
            receiver_email: receiver.map(|r| r.email.clone()),
        },
        reads: Vec::new(),
        deliveries: Vec::new(),
    })
}

/// A just-inserted message as the transports need it (no receipts yet).
fn stored_message(
    m: &NewMessage,
    users: &BTreeMap<String, LockedUser>,
    positions: &HashMap<String, i64>,
) -> Option<StoredMessage> {
    let sender = users.get(&m.sender_id)?;
    let receiver = match &m.receiver_id {
        Some(r) => Some(users.get(r)?),
        None => None,
    };
    Some(StoredMessage {
        row: MessageRow {
            pos: *positions.get(&m.id)?,
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
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
            receiver_name: receiver.map(|r| r.name.clone()),
            receiver_email: receiver.map(|r| r.email.clone()),
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
        let writer = Writer::start(store.clone(), 1, Duration::from_secs(5)).unwrap();

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

    fn job(cmd: Command) -> (Job, oneshot::Receiver<Result<Outcome, DomainError>>) {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(60);
        (
            Job {
                cmd,
                reply,
                deadline,
            },
            answer,
        )
    }

    fn sent(outcome: Result<Result<Outcome, DomainError>, oneshot::error::RecvError>) -> i64 {
        match outcome.unwrap().unwrap() {
            Outcome::Sent(s) => s.sender_seq,
            other => panic!("not a send: {other:?}"),
        }
    }

    /// A 1:1 send queued while a saturating load of 100-member group messages is being
    /// written goes in the next batch, which holds only small commands; every batch stays
    /// within its rows; a user's 1:1 send queued behind their own group messages does not
    /// overtake them; every member's feed stays gap-free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_behind_a_group_load_goes_in_the_next_batch() {
        use super::super::schedule::{BATCH_ROWS, SMALL};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.db");
        let store = Store::connect(&format!("sqlite://{}", file.display()), 4)
            .await
            .unwrap();
        let mut users = Vec::new();
        for i in 0..402 {
            let user = UserId::new();
            let email = Email::parse(&format!("u{i}@example.com")).unwrap();
            let name = DisplayName::parse(&format!("u{i}")).unwrap();
            store
                .create_user(user, &name, &email, "hash", 0)
                .await
                .unwrap();
            users.push(user);
        }
        let (bob, eve) = (users[400], users[401]);
        let mut worker = Worker::new(1);
        // Four groups of 100, each with two senders.
        let mut groups = Vec::new();
        for g in 0..4 {
            let members = &users[g * 100..(g + 1) * 100];
            let (j, answer) = job(Command::CreateGroup {
                actor: members[0],
                title: crate::domain::GroupTitle::parse("g").unwrap(),
                members: members[1..].to_vec(),
                max_members: 256,
            });
            worker.queue.push(j);
            worker.step(&store).await;
            match answer.await.unwrap().unwrap() {
                Outcome::Conversation(c) => {
                    groups.push(crate::domain::ConversationId::parse(&c.conversation.id).unwrap())
                }
                other => panic!("{other:?}"),
            }
        }
        let senders: Vec<UserId> = (0..8).map(|i| users[(i / 2) * 100 + i % 2]).collect();
        let ada = senders[7];
        let post = |sender: UserId, conversation| Command::Post {
            sender,
            conversation,
            body: MessageBody::parse("to the group").unwrap(),
            client_message_id: None,
        };
        let send = |sender: UserId, receiver: UserId| Command::Send {
            sender,
            receiver,
            body: MessageBody::parse("to one").unwrap(),
            client_message_id: None,
        };
        // 16 messages from each sender, as they would arrive.
        let mut answers: Vec<(UserId, _)> = Vec::new();
        for _ in 0..16 {
            for (i, s) in senders.iter().enumerate() {
                let (j, answer) = job(post(*s, groups[i / 2]));
                worker.queue.push(j);
                answers.push((*s, answer));
            }
        }
        let mut batches: Vec<(u32, Vec<Command>)> = Vec::new();
        let mut run = |worker: &mut Worker| {
            let (jobs, rows) = worker.queue.next_batch(&[]);
            batches.push((rows, jobs.iter().map(|j| j.cmd.clone()).collect()));
            jobs
        };
        let jobs = run(&mut worker);
        worker.run_batch(&store, jobs).await;
        // While that batch was written, Bob sends to Eve and Ada to Bob.
        let (j, bobs) = job(send(bob, eve));
        worker.queue.push(j);
        let (j, adas) = job(send(ada, bob));
        worker.queue.push(j);
        while !worker.queue.is_empty() {
            let jobs = run(&mut worker);
            worker.run_batch(&store, jobs).await;
        }

        let posts = |cmds: &[Command]| {
            cmds.iter()
                .filter(|c| matches!(c, Command::Post { .. }))
                .count()
        };
        // 128 messages of 200 rows: 81 fit in a batch.
        assert_eq!(posts(&batches[0].1), (BATCH_ROWS / 200) as usize);
        for (rows, _) in &batches {
            assert!(*rows <= BATCH_ROWS, "a batch of {rows} rows");
        }
        // Bob's send is in the next batch, with no group message: only Ada's waits.
        assert_eq!(batches[1].1.len(), 1);
        assert!(matches!(batches[1].1[0], Command::Send { sender, .. } if sender == bob));
        assert!(batches[1].0 <= SMALL);
        sent(bobs.await);
        // Ada's send comes after every message she queued before it, in the feed's order too.
        let ada_send_batch = batches
            .iter()
            .position(|(_, cmds)| {
                cmds.iter()
                    .any(|c| matches!(c, Command::Send { sender, .. } if *sender == ada))
            })
            .unwrap();
        assert!(ada_send_batch > 1);
        let ada_send = sent(adas.await);
        let mut ada_posts = Vec::new();
        for (sender, answer) in answers {
            let seq = sent(answer.await);
            if sender == ada {
                ada_posts.push(seq);
            }
        }
        assert_eq!(ada_posts.len(), 16);
        assert!(ada_posts.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ada_posts.iter().all(|s| *s < ada_send),
            "{ada_posts:?} then {ada_send}"
        );
        // Every member's feed: 1, 2, 3, … (the group's creation, then 32 messages).
        for user in &users[..400] {
            let feed = store.changes_since(*user, 0, 1000).await.unwrap();
            let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
            let extra = i64::from(*user == ada);
            assert_eq!(seqs, (1..=33 + extra).collect::<Vec<_>>(), "feed of {user}");
        }
    }
}
