#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP-level specification of Nexus: every test talks to the real application on a random
//! port, and every `on_both_backends!` test runs once on SQLite and once on PostgreSQL.

mod helpers;

mod abuse;
mod auth;
mod concurrency;
mod conversation_list;
mod delivery;
mod devices;
mod durability;
mod fakes;
mod group_concurrency;
mod groups;
mod messages;
mod metrics;
mod migration;
mod openapi;
mod push;
mod receipts;
mod slow_reader;
mod socket_fuzz;
mod startup;
mod sync;
mod write_batches;
mod write_conformance;
mod write_lanes;
