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
//! an outcome naming who must hear of it; the transport fans that out to user rooms.
//!
//! - [`config`]: environment variables and flags (DESIGN.md §2).
//! - [`app`]: assembly. [`app::Application::build`] binds, `run_until` serves.
//! - [`domain`]: parsed values (`UserId`, `MessageBody`, …).
//! - [`accounts`]: registration, login, tokens, devices.
//! - [`messaging`]: the rules of messaging, sync and their outcomes.
//! - [`store`]: SQLite / PostgreSQL persistence and migrations.
//! - [`http`], [`gateway`]: the two transports, thin adapters over the domain.
//! - [`ratelimit`], [`clock`], [`error`], [`telemetry`]: shared pieces.

pub mod accounts;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod http;
pub mod messaging;
pub mod ratelimit;
pub mod store;
pub mod telemetry;
