//! # nexus-bench
//!
//! A load generator for any server that implements the Nexus contract
//! (docs/protocol.md): it registers its own users through `POST /auth/register`, connects
//! them to the Socket.IO namespace `/ws` over WebSocket and uses only the contract's events
//! (`NEW_MESSAGE` with a `tempId`, the `MESSAGE_SENT` acknowledgement, the receiver's
//! `NEW_MESSAGE`), so the same tool measures Nexus and any other implementation.
//!
//! Every scenario checks correctness while it measures: each acknowledged message must reach
//! its receiver exactly once and in send order, or the run fails (exit status 1).
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap) and the entry point `main` calls.
//! - [`sio`]: a Socket.IO v4 client over one WebSocket, built on the codec crates the
//!   server itself uses (`engineioxide-core`, `socketioxide-core`,
//!   `socketioxide-parser-common`) and `tokio-tungstenite`.
//! - [`api`]: the HTTP calls the bench needs (register, sync).
//! - [`link`]: one connection as the load driver sees it (Socket.IO or the raw echo
//!   protocol): send a numbered message, turn frames into acks and deliveries.
//! - [`pairs`]: the pair driver shared by `throughput`, `latency`, `cluster` and `ws-echo`:
//!   two users, both sending to each other, closed-loop (window) or open-loop (fixed rate).
//! - [`check`]: the per-conversation correctness ledger (exactly once, in order).
//! - [`scenario`]: one module per subcommand; [`compare`] runs `throughput` against
//!   several servers side by side.
//! - [`echo`]: the raw WebSocket relay server used as a ceiling.
//! - [`report`], [`stats`], [`plot`], [`progress`], [`procfs`]: output and measurement.
//! - [`clock`], [`content`]: the process-wide clock and the message body format.

pub mod api;
pub mod check;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod content;
pub mod echo;
pub mod link;
pub mod pairs;
pub mod plot;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod sio;
pub mod stats;
