//! Persistence on SQLite or PostgreSQL, chosen by `DATABASE_URL` at start-up.
//!
//! One implementation serves both backends through sqlx's `Any` driver: every statement is
//! written in the SQL both engines accept (`$N` placeholders, `?` in generated lists on SQLite, `ON CONFLICT`, `RETURNING`,
//! integer times and flags), so there is one copy of each query, not two that drift apart.
//! Where the engines really differ (row locks, connection set-up, DDL) [`Backend`] says which
//! one we talk to, and each backend has its own migrations folder with the same versions.
//!
//! Writes go through a separate pool: on SQLite it has exactly one connection (SQLite has one
//! writer anyway, and a single writer never meets `SQLITE_BUSY`); reads use the other pool and,
//! with WAL, never wait for the writer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub mod durable;
mod messages;
mod rows;
mod sqlite_writes;
mod users;
pub mod writes;

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
    read: AnyPool,
    write: AnyPool,
    /// On a SQLite file: the file, where the messaging writer opens its own connection
    /// (`writes::WriteConnection`), and the syncer of its WAL, through which the writer's
    /// commits become durable. `None` on PostgreSQL and for an in-memory database, which
    /// only the pool's connection can see.
    durable: Option<Arc<durable::Durable>>,
    /// Connections the messaging writer may hold (one per worker).
    writer_workers: usize,
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
        sqlx::any::install_default_drivers();
        let (backend, url) = if database_url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(database_url))
        } else {
            (Backend::Postgres, database_url.to_string())
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));

        let pool_options = || {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
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
        let write = pool_options()
            .max_connections(write_max)
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
        // On PostgreSQL each writer worker holds a connection of the write pool; one is left
        // for the other writes (registration, devices, settings).
        let writer_workers = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => (write_max as usize).saturating_sub(1).max(1),
        };
        let store = Store {
            backend,
            read: write.clone(),
            write,
            durable,
            writer_workers,
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
            tokio::spawn(checkpoints(read.clone()));
        }
        Ok(Store { read, ..store })
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

    /// How many writer workers to start: SQLite has one writer; on PostgreSQL batches that
    /// share no user commit in parallel, each on a write-pool connection of its own.
    pub fn writer_workers(&self) -> usize {
        self.writer_workers
    }

    /// Waits until every commit of the messaging writer that a read may have seen is on
    /// disk (see [`durable`]); at once where commits sync themselves.
    pub async fn settled(&self) {
        if let Some(durable) = &self.durable {
            durable.settled().await;
        }
    }

    /// Waits until at most `commits` of the writer's commits wait for their fsync: the
    /// writer collects the next batch meanwhile instead of writing many small ones (each
    /// commit writes every page it touched, so small batches write more per message).
    pub async fn sync_backlog_at_most(&self, commits: u64) {
        if let Some(durable) = &self.durable {
            durable.backlog_at_most(commits).await;
        }
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
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
        self.read.close().await;
        self.write.close().await;
    }
}

/// Every SQLite connection's settings, the sqlx pools' and the writer's
/// (`sqlite_writes::open`). WAL: readers never block the writer. synchronous=FULL: a commit
/// is on disk before it is acknowledged (DESIGN.md §6); group commit pays for the fsync.
/// busy_timeout: another writer (the messaging writer and the pool's writes share the file)
/// or a checkpoint makes us wait, not fail. wal_autocheckpoint: see `checkpoints`.
const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
     PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8000; \
     PRAGMA wal_autocheckpoint = 65536;";

/// How often the SQLite checkpointer copies committed pages from the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// SQLite's checkpoints, off the writer's path. By default the connection whose commit
/// takes the WAL past 1,000 pages copies them into the database file then and there: the
/// writer stalls, every few batches, and a page changed by many batches (the end of a
/// user's index range) is written again each time. Here a read connection checkpoints
/// every [`CHECKPOINT_EVERY`] (PASSIVE: never blocks the writer), so each hot page is
/// copied once per interval. The writer's own automatic checkpoint stays as a backstop at
/// 65,536 pages (256 MiB with 4 KiB pages): a checkpoint running alongside a writer that
/// never pauses cannot catch up with the WAL's end, and only a checkpoint that does lets
/// the next commit start the WAL over from its beginning.
async fn checkpoints(pool: AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
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

    use super::writes::Writes;
    use super::*;
    use crate::domain::{DisplayName, Email, UserId};

    /// What the SQLite writer committed is visible at once but not yet on disk: a reader
    /// that saw it answers only after the syncer's fsync (here: only once the commit is
    /// handed to the syncer at all).
    #[tokio::test]
    async fn a_read_of_the_writers_commit_waits_until_it_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        let user = UserId::new();
        let name = DisplayName::parse("Ada").unwrap();
        let email = Email::parse("ada@example.com").unwrap();
        store
            .create_user(user, &name, &email, "hash", 0)
            .await
            .unwrap();

        let mut conn = store.write_connection().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        tx.lock_users([user.as_string()]).await.unwrap();
        let counters = BTreeMap::from([(user.as_string(), 7)]);
        tx.write(&Writes {
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
        let commit = tx.commit().await.unwrap();

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
}
