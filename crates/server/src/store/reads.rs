//! Every read of the database goes through [`Reads`], which owns the read pool: a read of
//! what the messaging writer writes cannot answer before that is on disk.
//!
//! On an SQLite file the writer's commits become visible before their fsync (`durable`), so
//! a reader could otherwise hand out a message or a `seq` that a crash then takes back.
//! [`Reads::run`] therefore waits, after the read, until every commit begun by then is
//! synced: a commit takes its number before it runs, so any commit the read saw is among
//! them (the wait must come after the read; before it, a commit could start and be seen
//! unwaited). Elsewhere (PostgreSQL, an in-memory database) commits are durable when they
//! become visible and the wait is nothing.

use std::sync::Arc;

use sqlx::{AnyConnection, AnyPool};

use super::durable::Durable;
use super::StoreError;

#[derive(Clone)]
pub(super) struct Reads {
    pool: AnyPool,
    /// The SQLite writer's syncer, when its commits are synced after they are visible.
    durable: Option<Arc<Durable>>,
}

impl Reads {
    pub(super) fn new(pool: AnyPool, durable: Option<Arc<Durable>>) -> Reads {
        Reads { pool, durable }
    }

    /// Runs `read` on a connection of the read pool, gives the connection back, then waits
    /// until every commit the read may have seen is on disk.
    pub(super) async fn run<T>(
        &self,
        read: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let found = self.unsettled(read).await?;
        self.settled().await;
        Ok(found)
    }

    /// [`Reads::run`] without the wait, for two kinds of read only: the messaging writer's
    /// own (its answers wait for the fsync of their commit anyway, and waiting here for
    /// its own commit would stall it for a whole fsync), and reads of tables that only the
    /// pool's connections write (users, tokens, devices), whose commits are synced before
    /// they become visible (`synchronous=FULL`).
    pub(super) async fn unsettled<T>(
        &self,
        read: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn).await
    }

    /// Waits until every commit of the messaging writer begun so far is on disk; at once
    /// where commits sync themselves.
    pub(super) async fn settled(&self) {
        if let Some(durable) = &self.durable {
            durable.settled().await;
        }
    }

    /// True when the database answers a trivial query.
    pub(super) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    #[cfg(test)]
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}
