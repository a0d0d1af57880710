//! SQLite's durability machinery, off the writer's path: the syncer of the writer's WAL
//! ([`Durable`]) and the background checkpointer (`checkpointer`).
//!
//! With `synchronous=FULL` every commit writes its WAL frames and then waits for the fsync
//! of the WAL before it returns, and the writer can do nothing else meanwhile: on this kind
//! of disk the fsync of a batch's frames takes about as long as the batch itself, so the
//! writer sat idle half of the time. Instead the writer's connection commits with
//! `synchronous=NORMAL` (the frames are written, not yet synced) and hands the batch's
//! answers to a syncer thread, which fsyncs the WAL file once for every commit that
//! arrived meanwhile and only then lets the answers go, while the writer already works on
//! the next batch. SQLite's WAL recovery replays a frame only when it belongs to a complete
//! commit with a valid checksum chain, so after a crash the database holds every commit
//! whose fsync completed, which includes every acknowledged one (docs/design.md, "Durability and group commit").
//!
//! A committed but not yet synced change is visible to readers. So that nobody learns of a
//! change a crash could still take back (a `seq` a client saw and that would later name a
//! different change), readers of what the writer writes wait for [`Durable::settled`]
//! before they answer: until every commit begun before they finished reading is synced.
//! Every such read goes through `store::reads::Reads`, which does that wait for it.
//!
//! The WAL only starts over from its beginning when a write transaction begins while every
//! frame in it has been copied into the database. The background checkpointer
//! (`checkpoints`) copies frames beside a writer that never pauses, so it can never
//! get there alone: left to itself the WAL grows until the writer's own automatic
//! checkpoint copies what is left, on the writer's path (15–20 ms, every half second at
//! 25,000 messages/s: the p99 of every message behind it). Instead, once the WAL is large
//! the checkpointer copies until it is close behind the writer and then asks the writer
//! ([`Durable::ask_to_finish_checkpoint`]) to copy the last few frames itself between two
//! batches (`finish_checkpoint`), a pause of a few milliseconds after which the WAL
//! starts over.

mod checkpointer;
mod syncer;

#[cfg(test)]
pub(super) use checkpointer::checkpoint_pass;
pub(super) use checkpointer::{checkpoints, finish_checkpoint, CheckpointPolicy};
pub use syncer::{AfterSync, Durable};
