//! The syncer: one thread that fsyncs the WAL for the SQLite writer's commits, and the
//! numbering of commits that lets readers wait for what they saw (see the module above).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::watch;

/// What runs once a commit is on disk (or the fsync failed).
pub type AfterSync = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Pending {
    commit: u64,
    then: Option<AfterSync>,
}

/// The syncer of one SQLite database file's WAL.
pub struct Durable {
    /// The database file (the WAL is `<file>-wal`).
    database: PathBuf,
    /// Commits begun (numbered from 1); a commit takes its number before it runs, so a
    /// reader that saw it also sees its number here.
    begun: AtomicU64,
    /// The highest commit number whose frames are on disk.
    synced: watch::Sender<u64>,
    queue: mpsc::Sender<Pending>,
    /// Set by the checkpointer, taken by the writer before its next batch.
    finish_checkpoint: AtomicBool,
    /// Set for good by the first failed fsync (see [`Durable::failed`]).
    failed: Arc<AtomicBool>,
    /// Becomes true when an fsync failed, for whoever must stop the node.
    fatal: watch::Sender<bool>,
    /// The next fsync fails as if the disk had refused it (see [`Durable::inject_fsync_failure`]).
    inject_failure: Arc<AtomicBool>,
    /// Tests: while locked, the syncer waits before its next fsync.
    #[cfg(test)]
    hold: Arc<std::sync::Mutex<()>>,
}

impl Durable {
    /// Starts the syncer thread for the WAL of `database` (`<file>-wal`).
    pub fn start(database: PathBuf) -> std::io::Result<Arc<Durable>> {
        let mut wal = database.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (queue, pending) = mpsc::channel();
        let (synced, _) = watch::channel(0);
        let (fatal, _) = watch::channel(false);
        let failed = Arc::new(AtomicBool::new(false));
        let inject_failure = Arc::new(AtomicBool::new(false));
        let (failed_in_syncer, inject_in_syncer) = (failed.clone(), inject_failure.clone());
        #[cfg(test)]
        let hold = Arc::new(std::sync::Mutex::new(()));
        #[cfg(test)]
        let held = hold.clone();
        let durable = Arc::new(Durable {
            database,
            begun: AtomicU64::new(0),
            synced,
            queue,
            finish_checkpoint: AtomicBool::new(false),
            failed,
            fatal,
            inject_failure,
            #[cfg(test)]
            hold,
        });
        let weak = Arc::downgrade(&durable);
        std::thread::Builder::new()
            .name("nexus-wal-sync".into())
            .spawn(move || {
                // Ends when the last `Durable` (and with it the queue's sender) is gone.
                while let Ok(first) = pending.recv() {
                    let batch: Vec<Pending> = std::iter::once(first).chain(pending.try_iter()).collect();
                    let upto = batch.iter().map(|p| p.commit).max().unwrap_or(0);
                    #[cfg(test)]
                    drop(held.lock());
                    // After one failed fsync nothing is ever synced again: on Linux a failed
                    // fsync may have dropped the dirty pages it could not write, and a
                    // later fsync that succeeds proves nothing about them (PostgreSQL's
                    // answer, since 2018: fail the node). So every later answer is an error
                    // too, and the node stops (`Durable::fatal`).
                    let result = if failed_in_syncer.load(Ordering::SeqCst) {
                        Err("an earlier fsync of the WAL failed; this node no longer acknowledges writes".to_string())
                    } else if inject_in_syncer.swap(false, Ordering::SeqCst) {
                        Err("injected fsync failure".to_string())
                    } else {
                        // Opened each time: cheap next to the fsync, and never a stale file.
                        std::fs::File::open(&wal)
                            .and_then(|f| f.sync_data())
                            .map_err(|e| e.to_string())
                    };
                    if let Err(e) = &result {
                        if !failed_in_syncer.swap(true, Ordering::SeqCst) {
                            tracing::error!(error = %e, wal = %wal.display(),
                                "fsync of the WAL failed: refusing every write from now on and stopping the node");
                        }
                    }
                    if let Some(durable) = weak.upgrade() {
                        if result.is_err() {
                            durable.fatal.send_replace(true);
                        }
                        // Readers are let go all the same (they would wait forever; the
                        // node stops and readiness is false).
                        durable.synced.send_if_modified(|s| {
                            let advance = upto > *s;
                            *s = (*s).max(upto);
                            advance
                        });
                    }
                    for p in batch {
                        if let Some(then) = p.then {
                            then(result.clone());
                        }
                    }
                }
            })?;
        Ok(durable)
    }

    pub fn database(&self) -> &Path {
        &self.database
    }

    /// True for good once an fsync of the WAL has failed: nothing this node writes is
    /// acknowledged any more.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Resolves once an fsync has failed (the node must stop).
    pub async fn fatal(&self) {
        let mut fatal = self.fatal.subscribe();
        let _ = fatal.wait_for(|f| *f).await;
    }

    /// Makes the next fsync fail as a disk error would. Tests only: the failure path can
    /// be shown without a failing disk.
    #[doc(hidden)]
    pub fn inject_fsync_failure(&self) {
        self.inject_failure.store(true, Ordering::SeqCst);
    }

    /// Numbers a commit about to run; pass the number to [`Durable::after`] whether the
    /// commit succeeds or not.
    pub fn begin_commit(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runs `then` once commit `commit` is on disk, on the syncer's thread.
    pub fn after(&self, commit: u64, then: Option<AfterSync>) {
        if let Err(mpsc::SendError(p)) = self.queue.send(Pending { commit, then }) {
            // The syncer is gone (shutting down): nothing more can be synced.
            if let Some(then) = p.then {
                then(Err("the WAL syncer has stopped".into()));
            }
        }
    }

    /// The checkpointer has copied all but the last few frames of a large WAL: the writer
    /// should copy the rest between two batches, so that the WAL starts over.
    pub fn ask_to_finish_checkpoint(&self) {
        self.finish_checkpoint.store(true, Ordering::SeqCst);
    }

    /// True once after each [`Durable::ask_to_finish_checkpoint`] (the writer asks).
    pub fn take_checkpoint_request(&self) -> bool {
        self.finish_checkpoint.swap(false, Ordering::SeqCst)
    }

    /// Whether the writer has been asked and not yet taken the request (tests).
    #[cfg(test)]
    pub(in crate::store) fn checkpoint_requested(&self) -> bool {
        self.finish_checkpoint.load(Ordering::SeqCst)
    }

    /// Waits until at most `commits` commits are still waiting for their fsync.
    pub async fn backlog_at_most(&self, commits: u64) {
        let mut synced = self.synced.subscribe();
        let _ = synced
            .wait_for(|s| self.begun.load(Ordering::SeqCst).saturating_sub(*s) <= commits)
            .await;
    }

    /// Holds the syncer before its next fsync until the guard is dropped (tests).
    #[cfg(test)]
    pub(crate) fn hold_fsyncs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.hold.lock().unwrap()
    }

    /// Readers waiting in [`Durable::settled`] or [`Durable::backlog_at_most`] (tests).
    #[cfg(test)]
    pub(in crate::store) fn waiting(&self) -> usize {
        self.synced.receiver_count()
    }

    /// Waits until every commit begun so far is on disk.
    pub async fn settled(&self) {
        let target = self.begun.load(Ordering::SeqCst);
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s >= target).await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use tokio::sync::oneshot;

    use super::*;

    fn is_pending<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        f.poll(&mut Context::from_waker(Waker::noop())).is_pending()
    }

    /// A database file in a fresh directory, with its WAL present when `wal` is true.
    fn database(wal: bool) -> (PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        if wal {
            std::fs::write(dir.path().join("n.db-wal"), b"frames").unwrap();
        }
        (dir.path().join("n.db"), dir)
    }

    #[tokio::test]
    async fn an_answer_goes_out_after_the_wal_is_synced_and_readers_wait_for_begun_commits() {
        let (db, _dir) = database(true);
        let durable = Durable::start(db).unwrap();
        durable.settled().await; // nothing begun: no wait

        let commit = durable.begin_commit();
        // A reader that may have seen this commit must not answer before it is on disk.
        let mut reader = pin!(durable.settled());
        assert!(is_pending(reader.as_mut()));

        let (tx, rx) = oneshot::channel();
        durable.after(commit, Some(Box::new(move |r| tx.send(r).unwrap())));
        assert_eq!(rx.await.unwrap(), Ok(()));
        reader.await;
        assert_eq!(*durable.synced.borrow(), commit);
    }

    #[tokio::test]
    async fn a_failed_commit_does_not_hold_readers() {
        let (db, _dir) = database(true);
        let durable = Durable::start(db).unwrap();
        let commit = durable.begin_commit();
        durable.after(commit, None); // what the SQLite writer does when its commit fails
        durable.settled().await;
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_the_answers_and_readers_go_on() {
        let (db, _dir) = database(false); // no WAL to sync: the sync fails
        let durable = Durable::start(db).unwrap();
        let commit = durable.begin_commit();
        let (tx, rx) = oneshot::channel();
        durable.after(commit, Some(Box::new(move |r| tx.send(r).unwrap())));
        assert!(rx.await.unwrap().is_err());
        durable.settled().await;
    }

    /// After one failed fsync no later commit is answered as durable, even when the disk
    /// would sync it now, and the node is told to stop.
    #[tokio::test]
    async fn after_a_failed_fsync_nothing_is_acknowledged_again() {
        let (db, _dir) = database(true);
        let durable = Durable::start(db).unwrap();
        let answer = |durable: &Durable| {
            let commit = durable.begin_commit();
            let (tx, rx) = oneshot::channel();
            durable.after(commit, Some(Box::new(move |r| tx.send(r).unwrap())));
            rx
        };
        assert_eq!(answer(&durable).await.unwrap(), Ok(()));
        assert!(!durable.failed());
        durable.inject_fsync_failure();
        assert!(answer(&durable).await.unwrap().is_err());
        tokio::time::timeout(std::time::Duration::from_secs(10), durable.fatal())
            .await
            .expect("the node was not told to stop");
        assert!(durable.failed());
        for _ in 0..3 {
            assert!(
                answer(&durable).await.unwrap().is_err(),
                "acknowledged after a failure"
            );
        }
    }

    #[tokio::test]
    async fn the_backlog_bound_waits_for_older_commits() {
        let (db, _dir) = database(true);
        let durable = Durable::start(db).unwrap();
        let (first, second) = (durable.begin_commit(), durable.begin_commit());
        durable.backlog_at_most(2).await;
        let mut writer = pin!(durable.backlog_at_most(1));
        assert!(is_pending(writer.as_mut()));
        durable.after(first, None);
        writer.await;
        durable.after(second, None);
        durable.backlog_at_most(0).await;
    }
}
