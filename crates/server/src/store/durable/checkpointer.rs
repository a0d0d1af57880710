//! SQLite's checkpoints, off the writer's path (see the module above).

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;

use super::Durable;
use crate::store::StoreError;

/// When the background checkpointer runs and when it has the WAL start over.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct CheckpointPolicy {
    /// How often it copies committed pages from the WAL into the database.
    pub every: Duration,
    /// … and how often once the WAL is half way to `restart_at`: a writer at full speed
    /// appends 10,000 frames in 100 ms, and the backstop must not come first.
    pub soon: Duration,
    /// WAL frames beyond which the WAL is to start over.
    pub restart_at: i64,
    /// A pass that copied fewer frames than this has caught up with the writer: the
    /// writer can copy the rest in a few milliseconds.
    pub caught_up: i64,
    /// Passes in a row while catching up, at most (the writer may outrun the copy).
    pub passes: usize,
}

impl CheckpointPolicy {
    /// Every 250 ms; the WAL starts over past 40,960 frames (160 MiB of 4 KiB pages), well
    /// before the writer's automatic checkpoint, the backstop, at 65,536 (256 MiB).
    pub const SERVER: CheckpointPolicy = CheckpointPolicy {
        every: Duration::from_millis(250),
        soon: Duration::from_millis(50),
        restart_at: 40_960,
        caught_up: 2_048,
        passes: 8,
    };
}

/// SQLite's checkpoints, off the writer's path. By default the connection whose commit
/// takes the WAL past 1,000 pages copies them into the database file then and there: the
/// writer stalls, every few batches, and a page changed by many batches (the end of a
/// user's index range) is written again each time. Here a read connection checkpoints
/// every `policy.every` (PASSIVE: never blocks the writer), so each hot page is copied
/// once per interval.
///
/// A checkpoint beside a writer that never pauses cannot reach the WAL's end, and only one
/// that does lets the next commit start the WAL over. So once the WAL holds
/// `policy.restart_at` frames, passes follow each other until one copies fewer than
/// `policy.caught_up`, and then the writer is asked to copy the last few itself, between
/// two batches ([`finish_checkpoint`]): a pause of 5–10 ms, mostly the two fsyncs any
/// checkpoint needs, whatever the WAL's size (hence a large WAL, restarted seldom). The
/// writer's own automatic checkpoint stays as the backstop at 65,536 frames: it copies
/// everything since the last pass on the writer's path (15–20 ms at 25,000 messages/s).
pub(in crate::store) async fn checkpoints(
    pool: AnyPool,
    durable: Option<Arc<Durable>>,
    policy: CheckpointPolicy,
) {
    let mut wait = policy.every;
    loop {
        tokio::time::sleep(wait).await;
        if pool.is_closed() {
            return;
        }
        wait = policy.every;
        let Some((log, mut copied)) = checkpoint_pass(&pool).await else {
            continue;
        };
        if log >= policy.restart_at / 2 {
            wait = policy.soon;
        }
        let Some(durable) = durable.as_ref().filter(|_| log >= policy.restart_at) else {
            continue;
        };
        for _ in 0..policy.passes {
            let Some((log, now_copied)) = checkpoint_pass(&pool).await else {
                break;
            };
            // Copied little, and all there was when it started: a reader that still needs
            // old frames would stop the writer's copy short too, so it is not asked then.
            let caught_up =
                now_copied - copied < policy.caught_up && log - now_copied < policy.caught_up;
            copied = now_copied;
            if caught_up {
                durable.ask_to_finish_checkpoint();
                wait = policy.every;
                break;
            }
        }
    }
}

/// One PASSIVE checkpoint: (frames in the WAL, frames copied into the database so far), or
/// `None` when it failed (logged) or the database is not in WAL mode.
pub(in crate::store) async fn checkpoint_pass(pool: &AnyPool) -> Option<(i64, i64)> {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
    {
        Ok((_, log, copied)) if log >= 0 => Some((log, copied)),
        Ok(_) => None,
        Err(e) => {
            if !pool.is_closed() {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
            None
        }
    }
}

/// On the writer's connection, between two batches: if the checkpointer asked, copies the
/// WAL's last frames into the database (PASSIVE: what no reader still needs), so that the
/// next transaction can start the WAL over. A failure costs only the WAL's restart (logged);
/// the writer's own automatic checkpoint remains the backstop.
pub(in crate::store) fn finish_checkpoint(durable: &Durable, conn: &rusqlite::Connection) {
    if !durable.take_checkpoint_request() {
        return;
    }
    let copied: Result<(), StoreError> = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(StoreError::from);
    if let Err(e) = copied {
        tracing::warn!(error = %e, "the writer's WAL checkpoint failed");
    }
}
