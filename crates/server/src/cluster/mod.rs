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

/// The presence heartbeat of this node: every `heartbeat_every`, and at once whenever the
/// Redis link comes up (`came_up`: the first connection, every return of Redis), keeps the
/// node alive in Redis, writes its sockets back after Redis lost them, and announces
/// "offline" for the users a dead node (or an outage) left behind.
pub fn spawn_heartbeats(state: AppState, came_up: watch::Receiver<u64>) {
    let Some(every) = state.presence.heartbeat_every() else {
        return;
    };
    let presence = state.presence.clone();
    tokio::spawn(heartbeats(presence, every, came_up, move |user| {
        let state = state.clone();
        async move {
            match state
                .messaging
                .presence_changed(user, PresenceStatus::Offline)
                .await
            {
                Ok(notes) => state.delivery.send(notes, Origin::Http).await,
                Err(e) => tracing::warn!(error = ?e, "presence: cannot load the user's contacts"),
            }
        }
    }));
}

/// [`spawn_heartbeats`]' loop: a heartbeat every `every` and one each time `came_up`
/// changes (without it a node started during an outage, or a node after Redis returned,
/// would be missing from Redis until its next tick); `gone` announces each user it reports.
async fn heartbeats<F: std::future::Future<Output = ()>>(
    presence: Arc<dyn Presence>,
    every: Duration,
    mut came_up: watch::Receiver<u64>,
    gone: impl Fn(UserId) -> F,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watching = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = came_up.changed(), if watching => watching = changed.is_ok(),
        }
        for user in presence.heartbeat().await {
            gone(user).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::link::tests::{wait_up, PrivateRedis};

    /// A node that started while Redis was down is written into Redis as soon as Redis is
    /// there, not at its next heartbeat (here an hour away): its users are online for the
    /// other nodes at once.
    #[tokio::test]
    async fn a_node_beats_as_soon_as_the_link_comes_up() {
        let mut redis = PrivateRedis::start();
        redis.stop();
        let link = Link::open(&redis.url()).unwrap();
        let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
        let node = Arc::new(RedisPresence::new(link.clone(), &prefix));
        let ada = UserId::new();
        node.connect(ada).await; // Redis is down: counted on this node only
        let presence: Arc<dyn Presence> = node.clone();
        let every = Duration::from_secs(3600);
        let beats = tokio::spawn(heartbeats(presence, every, link.came_up(), |_| async {}));
        // Let the loop's first beat (at once) find Redis down.
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis.restart();
        let other_link = Link::open(&redis.url()).unwrap();
        wait_up(&other_link).await;
        let other = RedisPresence::new(other_link, &prefix);
        for _ in 0..500 {
            if other.online_among(&[ada]).await == [ada] {
                beats.abort();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the node was not written into Redis when its link came up");
    }
}
