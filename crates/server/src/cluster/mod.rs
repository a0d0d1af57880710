//! Cluster mode (`REDIS_URL`): what several nodes on one PostgreSQL database share through
//! Redis.
//!
//! - [`link`]: the connections to Redis, their health, and the Socket.IO adapter's driver
//!   (`socketioxide-redis` over a reconnecting, resubscribing link);
//! - [`presence`]: who is online on any node, with node heartbeats;
//! - [`limits`]: the send and login limits, cluster-wide.
//!
//! [`Cluster`] puts them behind the traits the rest of the server uses (`Presence`,
//! `SendLimiter`, `LoginLimiter`, health's `Probe`), so nothing else knows whether it runs
//! alone or in a cluster. `docs/operations.md` says how a cluster behaves when a node, Redis
//! or the database fails.

use std::sync::Arc;
use std::time::Duration;

use nexus_protocol::events::{self, PresenceStatus, Resync, NAMESPACE};
use prometheus_client::registry::Registry;
use socketioxide::adapter::Adapter;
use socketioxide::SocketIo;
use tokio::sync::watch;

use crate::delivery::Origin;
use crate::domain::UserId;
use crate::error::DomainError;
use crate::health::Probe;
use crate::presence::{AtCapacity, Presence};
use crate::ratelimit::{LoginLimiter, SendLimiter};
use crate::state::AppState;

pub mod limits;
pub mod link;
pub mod presence;

use limits::ClusterLimiter;
use link::{Link, LinkError, PubSub};
use presence::RedisPresence;

/// Login attempts per e-mail and minute (the same as on a single node).
pub const LOGINS_PER_MINUTE: u32 = 10;

/// Everything a node shares with the others through Redis.
pub struct Cluster {
    pub link: Link,
    pub presence: Arc<RedisPresence>,
    pub send_limiter: Arc<ClusterLimiter<UserId>>,
    pub login_limiter: Arc<ClusterLimiter<String>>,
    /// The prefix of the Socket.IO adapter's channels.
    pub channel_prefix: String,
}

impl Cluster {
    /// Opens the link (lazily: a node starts while Redis is down, too).
    pub fn open(url: &str, prefix: &str, sends_per_minute: u32) -> Result<Cluster, LinkError> {
        let link = Link::open(url)?;
        Ok(Cluster {
            presence: Arc::new(RedisPresence::new(link.clone(), prefix)),
            send_limiter: Arc::new(ClusterLimiter::new(
                link.clone(),
                prefix,
                "send",
                sends_per_minute,
            )),
            login_limiter: Arc::new(ClusterLimiter::new(
                link.clone(),
                prefix,
                "login",
                LOGINS_PER_MINUTE,
            )),
            channel_prefix: format!("{prefix}sio"),
            link,
        })
    }

    pub fn driver(&self) -> PubSub {
        PubSub::redis(self.link.clone())
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        self.link.stats().register(registry);
        self.presence.register_metrics(registry);
        self.send_limiter.stats().register(registry, "send");
        self.login_limiter.stats().register(registry, "login");
    }

    /// Drops idle keys of the node-local fallback limiters now and then.
    pub fn spawn_shrinker(&self) {
        let (send, login) = (self.send_limiter.clone(), self.login_limiter.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                send.local().shrink();
                login.local().shrink();
            }
        });
    }
}

#[async_trait::async_trait]
impl Presence for RedisPresence {
    async fn connect(&self, user: UserId, _socket: &str) -> bool {
        RedisPresence::connect(self, user).await
    }

    async fn admit(&self, user: UserId, _socket: &str, cap: u32) -> Result<bool, AtCapacity> {
        RedisPresence::admit(self, user, cap).await
    }

    async fn disconnect(&self, user: UserId, _socket: &str) -> bool {
        RedisPresence::disconnect(self, user).await
    }

    async fn online_among(&self, users: &[UserId]) -> Vec<UserId> {
        RedisPresence::online_among(self, users).await
    }

    async fn heartbeat(&self) -> Vec<UserId> {
        RedisPresence::heartbeat(self).await
    }

    fn heartbeat_every(&self) -> Option<Duration> {
        Some(presence::HEARTBEAT_EVERY)
    }

    async fn leave(&self) {
        RedisPresence::leave(self).await
    }
}

#[async_trait::async_trait]
impl SendLimiter for ClusterLimiter<UserId> {
    async fn check(&self, user: UserId) -> Result<(), DomainError> {
        ClusterLimiter::check(self, &user, &user.as_string())
            .await
            .map_err(|wait| DomainError::RateLimited {
                limit: self.per_minute(),
                retry_after_ms: (wait.as_millis() as u64).max(1),
            })
    }
}

#[async_trait::async_trait]
impl LoginLimiter for ClusterLimiter<String> {
    async fn check(&self, key: &str) -> Result<(), DomainError> {
        let key = key.to_string();
        ClusterLimiter::check(self, &key, &key)
            .await
            .map_err(|wait| DomainError::TooManyAttempts {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            })
    }
}

#[async_trait::async_trait]
impl Probe for Link {
    async fn ping(&self) -> bool {
        self.query(async |conn| redis::cmd("PING").query_async::<()>(conn).await)
            .await
            .is_ok()
    }
}

/// The presence heartbeat of this node: every `heartbeat_every`, keeps the node alive in
/// Redis and announces "offline" for the users a dead node (or an outage) left behind.
pub fn spawn_heartbeats(state: AppState) {
    let Some(every) = state.presence.heartbeat_every() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for user in state.presence.heartbeat().await {
                match state
                    .messaging
                    .presence_changed(user, PresenceStatus::Offline)
                    .await
                {
                    Ok(notes) => state.delivery.send(notes, Origin::Http).await,
                    Err(e) => {
                        tracing::warn!(error = ?e, "presence: cannot load the user's contacts")
                    }
                }
            }
        }
    });
}

/// Each time this node may have missed cross-node events (Redis came back, or the
/// adapter's buffer overflowed), tells its own sockets `RESYNC`: a client syncs from its
/// last `seq` at once instead of at its next event. At most one hint per second.
pub fn spawn_resync_hints<A: Adapter>(io: &SocketIo<A>, mut resyncs: watch::Receiver<u64>) {
    let io = io.clone();
    resyncs.mark_unchanged();
    tokio::spawn(async move {
        while resyncs.changed().await.is_ok() {
            // The first connection is no recovery.
            if *resyncs.borrow_and_update() > 1 {
                if let Some(ns) = io.of(NAMESPACE) {
                    let hint = Resync {
                        reason: "cluster_events_missed".into(),
                    };
                    let _ = ns.local().emit(events::RESYNC, &hint).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
