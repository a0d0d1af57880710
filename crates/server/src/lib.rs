//! # Nexus
//!
//! A real-time 1:1 messaging server: an HTTP API and a Socket.IO gateway on one port, over
//! SQLite (embedded, the default) or PostgreSQL.
//!
//! # Layout
//!
//! The path of one message: a socket event ([`gateway`]) or an HTTP request ([`http`]) is
//! decoded and handed to the domain ([`messaging`]), which applies every rule inside one
//! transaction of the [`store`] (queued for group commit by [`messaging::writer`]) and returns
//! an outcome naming who must hear of it; [`delivery`] sends that to the users' rooms (on any
//! node) and hands new messages for users connected nowhere to the push queue.
//!
//! - [`config`]: environment variables and flags (README, "Configuration").
//! - [`app`]: assembly. [`app::Application::build`] binds, `run_until` serves.
//! - [`state`]: the services every handler shares.
//! - [`delivery`]: the one step that sends what the domain returns.
//! - [`presence`]: who is connected; [`health`]: what `/ready` and `HEALTH_CHECK` report.
//! - [`domain`]: parsed values (`UserId`, `MessageBody`, …).
//! - [`accounts`]: registration, login, tokens.
//! - [`messaging`]: the rules of messaging, sync and their outcomes.
//! - [`push`]: push devices, and FCM / Web Push for users connected nowhere.
//! - [`store`]: SQLite / PostgreSQL persistence and migrations.
//! - [`http`], [`gateway`]: the two transports, thin adapters over the domain.
//! - [`metrics`]: what `/metrics` shows.
//! - [`ratelimit`], [`clock`], [`error`], [`telemetry`]: shared pieces.

pub mod accounts;
pub mod app;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod health;
pub mod http;
pub mod messaging;
pub mod metrics;
pub mod presence;
pub mod push;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod telemetry;
