//! Persistence on SQLite or PostgreSQL, chosen by `DATABASE_URL` at start-up.
//!
//! Reads and the pool's writes (registration, devices, tokens) are one implementation for
//! both backends through sqlx's `Any` driver: every statement is written in the SQL both
//! engines accept (`$N` placeholders, `?` in generated lists on SQLite, `ON CONFLICT`, `RETURNING`,
//! integer times and flags), so there is one copy of each query, not two that drift apart.
//! Where the engines really differ (row locks, connection set-up, DDL) [`Backend`] says which
//! one we talk to, and each backend has its own migrations folder with the same versions.
//!
//! Writes go through a separate pool: on SQLite it has exactly one connection (SQLite has one
//! writer anyway, and a single writer never meets `SQLITE_BUSY`); reads use the other pool,
//! owned by `reads::Reads` (a read of what the messaging writer wrote answers only once
//! that is on disk), and, with WAL, never wait for the writer. The messaging writer's own
//! transactions go through the write side's seam, [`writes`]: one implementation per engine.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub mod conversations;
mod devices;
pub mod durable;
mod memory_writes;
mod messages;
mod pg_writes;
mod reads;
mod rows;
mod sqlite_writes;
mod tokens;
mod users;
pub mod writes;

use durable::{checkpoints, CheckpointPolicy};
use reads::Reads;
use writes::WriteConnection;

pub use devices::{DeviceRecord, NewDevice};
pub use rows::{MessageRow, StoredMessage};
pub use users::UserRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Every read (see [`Reads`]).
    reads: Reads,
    write: AnyPool,
    /// On a SQLite file: the file, where the messaging writer opens its own connection
    /// (`sqlite_writes`), and the syncer of its WAL, through which the writer's commits
    /// become durable. `None` on PostgreSQL and for an in-memory database, which only the
    /// pool's connection can see.
    durable: Option<Arc<durable::Durable>>,
    /// On PostgreSQL: the messaging writers' connections, through sqlx's PostgreSQL driver
    /// (arrays as parameters, see `pg_writes`), one per writer worker, used by nobody else.
    pg_writer: Option<sqlx::PgPool>,
    /// How many messaging writer workers to start (see [`Store::writer_workers`]).
    workers: usize,
    /// Batches a worker may have in flight (see [`Store::writer_lanes`]).
    lanes: usize,
    /// Reloads of retried sends that are to fail (tests of that path).
    failing_reloads: Arc<std::sync::atomic::AtomicU32>,
}

/// Errors of the storage layer. `Conflict` is a unique-constraint violation, which callers
/// turn into a domain answer (409, dedup); everything else is unexpected.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated")]
    Conflict,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// True when the database could not be reached or went away (connection refused or
    /// dropped, the pool's acquire timeout, a server shutting down): retrying the same
    /// statement at once cannot help, and the caller is told `UNAVAILABLE`.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server is shutting
            // down, crashed or not yet accepting connections), 53300 (too many connections).
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }),
            _ => false,
        }
    }

    /// The one place where a unique violation becomes a `Conflict`.
    pub fn from_insert(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

impl Store {
    /// Connects, configures the connections and runs the backend's migrations.
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::connect_within(database_url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`Store::connect`], waiting at most `acquire_timeout` for a pool connection: with
    /// the database unreachable, a request fails after that long instead of hanging.
    pub async fn connect_within(
        database_url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        Store::connect_with(
            database_url,
            max_connections,
            acquire_timeout,
            CheckpointPolicy::SERVER,
        )
        .await
    }

    /// [`Store::connect_within`] with the SQLite checkpointer's policy (tests change it).
    pub(in crate::store) async fn connect_with(
        database_url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        checkpoint: CheckpointPolicy,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if database_url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(database_url))
        } else {
            (Backend::Postgres, database_url.to_string())
        };
        if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
            private_file(SqliteConnectOptions::from_str(&url)?.get_filename())
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));

        let pool_options = || {
            AnyPoolOptions::new()
                .acquire_timeout(acquire_timeout)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute(SQLITE_SETTINGS).await?;
                        }
                        Ok(())
                    })
                })
        };
        let (read_max, write_max) = match backend {
            Backend::Sqlite => (max_connections.max(2), 1),
            Backend::Postgres => (
                max_connections.div_ceil(2).max(1),
                (max_connections / 2).max(1),
            ),
        };
        // One messaging writer on both engines. On PostgreSQL several writers were tried
        // (one per write connection, commands sharded by the acting user): the two users of
        // a conversation land on different shards, so nearly every batch needs counter rows
        // another shard's open transaction holds, and the writers queue on each other's
        // commits (three quarters of their time was spent waiting for such a lock at 200
        // users x 1 in flight, see docs/benchmarks.md) while each commits a smaller batch.
        // One writer takes everything queued into its transactions and chooses what goes
        // together: on PostgreSQL it keeps up to PG_WRITER_LANES batches in flight, each
        // clear of the users and conversations the other holds (`messaging::schedule`), so
        // they do not wait for each other's locks. The write half of the connections is its
        // connections (on a pool of their own) and the pool for the other writes
        // (registration, devices, settings).
        let workers = 1;
        // Within the connections given: at least one is left for the other writes.
        let lanes = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => PG_WRITER_LANES
                .min(write_max.saturating_sub(1) as usize)
                .max(1),
        };
        let pg_writer = match backend {
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .acquire_timeout(acquire_timeout)
                    .max_connections((workers * lanes) as u32)
                    .connect_lazy_with(
                        sqlx::postgres::PgConnectOptions::from_str(&url)?
                            .log_statements(tracing::log::LevelFilter::Trace)
                            .log_slow_statements(
                                tracing::log::LevelFilter::Warn,
                                Duration::from_millis(500),
                            ),
                    ),
            ),
            Backend::Sqlite => None,
        };
        let other_writes = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => write_max.saturating_sub((workers * lanes) as u32).max(1),
        };
        let write = pool_options()
            .max_connections(other_writes)
            .connect_with(options.clone())
            .await?;
        let durable = match backend {
            Backend::Sqlite if !url.contains(":memory:") && !url.contains("mode=memory") => {
                let file = SqliteConnectOptions::from_str(&url)?
                    .get_filename()
                    .to_path_buf();
                Some(
                    durable::Durable::start(file)
                        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?,
                )
            }
            _ => None,
        };
        let store = Store {
            backend,
            reads: Reads::new(write.clone(), durable.clone()),
            write,
            durable,
            pg_writer,
            workers,
            lanes,
            failing_reloads: Default::default(),
        };
        store.migrate().await?;
        if backend == Backend::Sqlite && store.durable.is_none() {
            // An in-memory database exists only inside its one connection: reads share it.
            return Ok(store);
        }
        let read = pool_options()
            .max_connections(read_max)
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoints(read.clone(), store.durable.clone(), checkpoint));
        }
        Ok(Store {
            reads: Reads::new(read, store.durable.clone()),
            ..store
        })
    }

    /// Holds the SQLite writer's fsyncs until the guard is dropped (tests).
    #[cfg(test)]
    pub(crate) fn hold_fsyncs(&self) -> std::sync::MutexGuard<'_, ()> {
        self.durable.as_ref().expect("a SQLite file").hold_fsyncs()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.write)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.write)
                    .await?
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many writer workers to start: one on both engines (see `connect_with` for why
    /// not several on PostgreSQL).
    pub fn writer_workers(&self) -> usize {
        self.workers
    }

    /// How many batches a writer worker may have in flight at once, each on a connection
    /// of its own: one on SQLite (one writer; its fsync already runs beside the next
    /// batch), [`PG_WRITER_LANES`] on PostgreSQL (see `messaging::writer`).
    pub fn writer_lanes(&self) -> usize {
        self.lanes
    }

    /// Waits until every commit of the messaging writer begun so far is on disk (see
    /// [`durable`]); at once where commits sync themselves. Reads do this by themselves
    /// (`reads::Reads`); the writer waits so before it stops.
    pub async fn settled(&self) {
        self.reads.settled().await;
    }

    /// The messaging writer's connection, to the engine's implementation of the write side
    /// ([`writes`]). Blocks its thread while a SQLite file opens: call it on the writer's
    /// thread.
    pub async fn write_connection(&self) -> Result<Box<dyn WriteConnection>, StoreError> {
        if let Some(pool) = &self.pg_writer {
            return Ok(Box::new(pg_writes::PgWrites::new(pool.acquire().await?)));
        }
        Ok(match &self.durable {
            Some(durable) => Box::new(sqlite_writes::SqliteWrites::open(durable.clone())?),
            None => Box::new(memory_writes::MemoryWrites::new(self.write.clone())),
        })
    }

    /// Waits until at most `commits` of the writer's commits wait for their fsync: the
    /// writer collects the next batch meanwhile instead of writing many small ones (each
    /// commit writes every page it touched, so small batches write more per message).
    pub async fn sync_backlog_at_most(&self, commits: u64) {
        if let Some(durable) = &self.durable {
            durable.backlog_at_most(commits).await;
        }
    }

    /// True when the database answers a trivial query, and no fsync of this node's writes
    /// has failed.
    pub async fn ping(&self) -> bool {
        !self.durability_failed() && self.reads.ping().await
    }

    /// True for good once an fsync of the SQLite writer's WAL has failed.
    pub fn durability_failed(&self) -> bool {
        self.durable.as_ref().is_some_and(|d| d.failed())
    }

    /// Resolves once an fsync of the SQLite writer's WAL has failed (never elsewhere).
    pub async fn durability_lost(&self) {
        match &self.durable {
            Some(durable) => durable.fatal().await,
            None => std::future::pending().await,
        }
    }

    /// Makes the next `n` loads of retried sends' messages fail as if the database had
    /// refused them (tests of that path).
    #[doc(hidden)]
    pub fn inject_reload_failures(&self, n: u32) {
        self.failing_reloads
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes one injected reload failure, if any is left.
    fn reload_fails(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.failing_reloads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Makes the SQLite writer's next fsync fail (tests of the failure path).
    #[doc(hidden)]
    pub fn inject_fsync_failure(&self) {
        if let Some(durable) = &self.durable {
            durable.inject_fsync_failure();
        }
    }

    /// The value stored under `key`, inserting `make()` first if there is none. Safe when
    /// several nodes start at once: the first insert wins and everyone reads it back.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(make())
        .execute(&self.write)
        .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.write)
            .await?;
        Ok(value)
    }

    pub async fn close(&self) {
        self.reads.close().await;
        self.write.close().await;
        if let Some(pool) = &self.pg_writer {
            pool.close().await;
        }
    }
}

/// Batches the messaging writer keeps in flight on PostgreSQL, each on its own connection:
/// while one waits for its statements or its commit, the other's run (a single batch kept
/// one backend busy and the rest of the machine waiting for it; see docs/benchmarks.md).
pub const PG_WRITER_LANES: usize = 2;

/// How long a request waits for a pool connection unless told otherwise.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every SQLite connection's settings, the sqlx pools' and the writer's
/// (`sqlite_writes`). WAL: readers never block the writer. synchronous=FULL: a commit
/// is on disk before it is acknowledged (docs/design.md, "Durability"); group commit pays for the fsync.
/// busy_timeout: another writer (the messaging writer and the pool's writes share the file)
/// or a checkpoint makes us wait, not fail. wal_autocheckpoint: see `durable::checkpoints`.
const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
     PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8000; \
     PRAGMA wal_autocheckpoint = 65536;";

/// Creates the SQLite file readable by its owner only (mode 0600) when it does not exist:
/// it holds every message and, unless `JWT_SECRET` is set, the secret that signs tokens.
/// SQLite gives its `-wal` and `-shm` files the database file's mode. An existing file that
/// others may read is left as it is, with a warning.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        file = %path.display(),
                        mode = format!("{:o}", mode & 0o777),
                        "the database file is readable by other users (chmod 600 it)"
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// `sqlite://nexus.db` → a URL that creates the file when missing.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Backend {
    /// Placeholder number `i` (1-based) of a generated statement. SQLite gets anonymous `?`
    /// (bound in order): sqlx-sqlite looks every named parameter up by name, which makes a
    /// statement with many `$N` cost time quadratic in their number.
    fn param(self, i: usize) -> String {
        match self {
            Backend::Postgres => format!("${i}"),
            Backend::Sqlite => "?".to_string(),
        }
    }

    /// `n` placeholders from number `from`, comma-separated: an `IN (…)` list or a row.
    fn params(self, from: usize, n: usize) -> String {
        (from..from + n)
            .map(|i| self.param(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(…), (…), …`: `n` rows of `width` placeholders for a multi-row `INSERT`.
    fn rows(self, n: usize, width: usize) -> String {
        (0..n)
            .map(|r| format!("({})", self.params(r * width + 1, width)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::durable::checkpoint_pass;
    use super::writes::{Commit, LockOrder, WriteConnection, Writes};
    use super::*;
    use crate::domain::{DisplayName, Email, MessageId, UserId};

    /// What the SQLite writer committed is visible at once but not yet on disk: a reader
    /// that saw it answers only after the syncer's fsync (here: only once the commit is
    /// handed to the syncer at all).
    #[tokio::test]
    async fn a_read_of_the_writers_commit_waits_until_it_is_on_disk() {
        let (store, user, mut conn, _dir) = quiet_store().await;
        let commit = write_seq(&mut *conn, user, 7).await;

        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.current_seq(user).await.unwrap() })
        };
        let durable = store.durable.clone().unwrap();
        while durable.waiting() == 0 && !reader.is_finished() {
            tokio::task::yield_now().await; // the reader has read and now waits
        }
        assert!(
            !reader.is_finished(),
            "answered before the commit was synced"
        );

        commit.when_durable(|synced| synced.unwrap());
        assert_eq!(reader.await.unwrap(), 7);
    }

    /// Every read of what the messaging writer writes goes through `Reads::run`: with one
    /// of the writer's commits not yet on disk, none of them answers.
    #[tokio::test]
    async fn every_read_of_the_writers_tables_waits_until_its_commits_are_on_disk() {
        let (store, user, mut conn, _dir) = quiet_store().await;
        let commit = write_seq(&mut *conn, user, 7).await;
        let message = MessageId::new();
        let other: &'static str = "00000000-0000-4000-8000-000000000001";
        macro_rules! read {
            ($name:literal, |$s:ident| $read:expr) => {{
                let $s = store.clone();
                let task = tokio::spawn(async move {
                    $read.await.unwrap();
                });
                ($name, task)
            }};
        }
        let reads = vec![
            read!("current_seq", |s| s.current_seq(user)),
            read!("changes_since", |s| s.changes_since(user, 0, 10)),
            read!("messages_by_ids", |s| s
                .messages_by_ids(&[other.to_string()])),
            read!("message_place", |s| s.message_place(message)),
            read!("conversation_page", |s| s
                .conversation_page(other, None, None, 10)),
            read!("messages_at", |s| s.messages_at(&[1])),
            read!("messages_changed_since", |s| s
                .messages_changed_since(user, 0, 10)),
            read!("partners", |s| s.partners(user)),
            read!("edit_history", |s| s.edit_history(message)),
            read!("conversation_views", |s| s
                .conversation_views(&[other.to_string()])),
            read!("direct_conversation", |s| s
                .direct_conversation(other, other)),
            read!("listed_conversations", |s| s
                .listed_conversations(other, None, 10)),
        ];
        let durable = store.durable.clone().unwrap();
        while durable.waiting() < reads.len() && !reads.iter().any(|(_, r)| r.is_finished()) {
            tokio::task::yield_now().await; // each reads, then waits
        }
        for (name, read) in &reads {
            assert!(
                !read.is_finished(),
                "{name} answered before the commit was synced"
            );
        }

        commit.when_durable(|synced| synced.unwrap());
        for (_, read) in reads {
            read.await.unwrap();
        }
    }

    /// A store on a fresh SQLite file whose own checkpointer never runs, one user, and the
    /// writer's connection.
    async fn quiet_store() -> (Store, UserId, Box<dyn WriteConnection>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let never = CheckpointPolicy {
            every: Duration::from_secs(3600),
            ..CheckpointPolicy::SERVER
        };
        let store = Store::connect_with(&url, 4, DEFAULT_ACQUIRE_TIMEOUT, never)
            .await
            .unwrap();
        let user = UserId::new();
        let name = DisplayName::parse("Ada").unwrap();
        let email = Email::parse("ada@example.com").unwrap();
        store
            .create_user(user, &name, &email, "hash", 0)
            .await
            .unwrap();
        let conn = store.write_connection().await.unwrap();
        (store, user, conn, dir)
    }

    /// One commit of the writer, `user`'s change counter set to `seq` (a frame or two),
    /// answered once it is on disk.
    async fn commit_seq(conn: &mut dyn WriteConnection, user: UserId, seq: i64) {
        write_seq(conn, user, seq)
            .await
            .when_durable(|synced| synced.unwrap());
    }

    /// The same commit, on its way to disk.
    async fn write_seq(conn: &mut dyn WriteConnection, user: UserId, seq: i64) -> Commit {
        let mut tx = conn.begin().await.unwrap();
        tx.lock_and_load(&LockOrder::new([user.as_string()]), &[])
            .await
            .unwrap();
        let counters = BTreeMap::from([(user.as_string(), seq)]);
        tx.write(&Writes {
            conversations: &[],
            members: &[],
            messages: &[],
            changes: &[],
            edits: &[],
            deletes: &[],
            tombstone: "",
            receipts: &[],
            counters: &counters,
            now: 0,
        })
        .await
        .unwrap();
        tx.commit().await.unwrap()
    }

    /// The WAL header's salts: they change each time the WAL starts over.
    fn wal_salts(store: &Store) -> Vec<u8> {
        let mut wal = store
            .durable
            .as_ref()
            .unwrap()
            .database()
            .as_os_str()
            .to_owned();
        wal.push("-wal");
        std::fs::read(wal).unwrap()[16..24].to_vec()
    }

    /// A checkpoint pass copied what was there, but the writer went on: the WAL cannot start
    /// over by itself. Asked, the writer copies the rest before its next transaction, and
    /// that transaction starts the WAL over; nothing committed is lost.
    #[tokio::test]
    async fn asked_to_finish_the_checkpoint_the_writer_lets_the_wal_start_over() {
        let (store, user, mut conn, _dir) = quiet_store().await;
        commit_seq(&mut *conn, user, 1).await;
        checkpoint_pass(store.reads.pool()).await.unwrap();
        commit_seq(&mut *conn, user, 2).await; // a frame no pass copied

        let before = wal_salts(&store);
        commit_seq(&mut *conn, user, 3).await;
        assert_eq!(
            wal_salts(&store),
            before,
            "started over with frames not copied"
        );

        store.durable.as_ref().unwrap().ask_to_finish_checkpoint();
        commit_seq(&mut *conn, user, 4).await;
        assert_ne!(wal_salts(&store), before, "the WAL did not start over");
        assert!(!store.durable.as_ref().unwrap().checkpoint_requested());
        assert_eq!(store.current_seq(user).await.unwrap(), 4);
    }

    /// The checkpointer leaves a small WAL alone and asks the writer to finish once the WAL
    /// has reached `restart_at` frames and a pass has caught up.
    #[tokio::test]
    async fn the_checkpointer_asks_the_writer_once_the_wal_is_large() {
        let (store, user, mut conn, _dir) = quiet_store().await;
        commit_seq(&mut *conn, user, 1).await;
        checkpoint_pass(store.reads.pool()).await.unwrap();
        commit_seq(&mut *conn, user, 2).await; // starts the WAL over: a frame or two
        let policy = CheckpointPolicy {
            every: Duration::from_millis(1),
            soon: Duration::from_millis(1),
            restart_at: 20,
            caught_up: 8,
            passes: 8,
        };
        tokio::spawn(checkpoints(
            store.reads.pool().clone(),
            store.durable.clone(),
            policy,
        ));
        let durable = store.durable.clone().unwrap();
        for _ in 0..10 {
            // The checkpointer runs meanwhile (and may make this pass find it busy).
            let _ = checkpoint_pass(store.reads.pool()).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !durable.checkpoint_requested(),
            "asked while the WAL was small"
        );

        // A writer that does not pause: these commits never yield to the checkpointer.
        for seq in 3..=50 {
            commit_seq(&mut *conn, user, seq).await;
        }
        let frames = loop {
            if let Some((frames, _)) = checkpoint_pass(store.reads.pool()).await {
                break frames; // None: the checkpointer's pass was running
            }
        };
        assert!(frames >= policy.restart_at, "the test wrote too little");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !durable.checkpoint_requested() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(durable.checkpoint_requested(), "never asked the writer");
    }
}
