//! Cluster mode (`REDIS_URL`): what several nodes on one PostgreSQL database share through
//! Redis. [`link`] is the connection (and the Socket.IO adapter's driver over it).
//! See `docs/operations.md` for how a cluster behaves when a node, Redis or the database
//! fails.

pub mod limits;
pub mod link;
pub mod presence;
