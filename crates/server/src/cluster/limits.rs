//! Cluster-wide rate limits: one GCRA state per key in Redis, updated by one atomic script,
//! so `RATE_LIMIT_MESSAGES_PER_MINUTE=100` means 100 a minute across every node.
//!
//! GCRA (the algorithm `governor` uses on a single node) keeps one number per key: the
//! theoretical arrival time `tat` of the next event. With `interval = 60 s / limit` and a
//! burst of `limit`, an event at `now` is allowed when `max(tat, now) + interval - now <=
//! limit * interval`, and then `tat` moves on by `interval`. The script reads Redis' own
//! clock (`TIME`), so nodes with skewed clocks share one timeline; the key expires once its
//! state is back to "full allowance".
//!
//! If Redis cannot be reached (or does not answer within the link's command timeout), the
//! node-local limiter decides instead: the limit then holds per node rather than across
//! the cluster, which is logged (once per outage) and counted on `/metrics`
//! (`nexus_rate_limit_send_fallbacks_total`, `…_login_…`), and sends are never refused because Redis is down.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::Script;

use super::link::Link;
use crate::ratelimit::KeyedLimiter;

/// KEYS: the limit's key. ARGV: interval µs, burst tolerance µs (`limit * interval`).
/// Returns 0 when allowed, else the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next = tat + interval
if next - now > tolerance then
  return math.ceil(next - now - tolerance)
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
return 0
";

fn gcra() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(GCRA))
}

/// How often the fallback was used, for `/metrics`.
#[derive(Debug, Default)]
pub struct LimitStats {
    pub fallbacks: Counter,
}

impl LimitStats {
    pub fn register(&self, registry: &mut Registry, name: &str) {
        registry.register(
            format!("nexus_rate_limit_{name}_fallbacks"),
            format!("{name} limit checks decided by the node-local limiter because Redis was unreachable"),
            self.fallbacks.clone(),
        );
    }
}

/// A limit of `per_minute` events per key and minute, shared through Redis, with the
/// node-local limiter as fallback.
pub struct ClusterLimiter<K: Hash + Eq + Clone> {
    link: Link,
    /// `<REDIS_KEY_PREFIX>limit:<name>:`
    prefix: String,
    per_minute: u32,
    local: KeyedLimiter<K>,
    falling_back: AtomicBool,
    stats: Arc<LimitStats>,
}

impl<K: Hash + Eq + Clone> ClusterLimiter<K> {
    pub fn new(link: Link, key_prefix: &str, name: &str, per_minute: u32) -> Self {
        ClusterLimiter {
            link,
            prefix: format!("{key_prefix}limit:{name}:"),
            per_minute: per_minute.max(1),
            local: KeyedLimiter::per_minute(per_minute),
            falling_back: AtomicBool::new(false),
            stats: Arc::default(),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    pub fn stats(&self) -> Arc<LimitStats> {
        self.stats.clone()
    }

    /// The node-local limiter, for its periodic shrinking.
    pub fn local(&self) -> &KeyedLimiter<K> {
        &self.local
    }

    /// `Ok` when allowed (and counted); `Err(wait)` with the time until the next allowance.
    /// `key` names the key in Redis.
    pub async fn check(&self, key: &K, name: &str) -> Result<(), Duration> {
        let interval_us = 60_000_000f64 / f64::from(self.per_minute);
        let tolerance_us = interval_us * f64::from(self.per_minute);
        let redis_key = format!("{}{name}", self.prefix);
        let answer = self
            .link
            .query(async move |conn| {
                gcra()
                    .key(&redis_key)
                    .arg(interval_us)
                    .arg(tolerance_us)
                    .invoke_async::<u64>(conn)
                    .await
            })
            .await;
        match answer {
            Ok(0) => {
                if self.falling_back.swap(false, Ordering::AcqRel) {
                    tracing::info!("rate limits are cluster-wide again");
                }
                Ok(())
            }
            Ok(wait_us) => Err(Duration::from_micros(wait_us)),
            Err(e) => {
                self.stats.fallbacks.inc();
                if !self.falling_back.swap(true, Ordering::AcqRel) {
                    tracing::warn!(error = %e, "redis unreachable: rate limits hold per node until it returns");
                }
                self.local.check_key(key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::link::tests::{wait_up, PrivateRedis};
    use crate::domain::UserId;

    /// Two nodes share one allowance: 5 a minute means 5 in all, whichever node serves.
    #[tokio::test]
    async fn the_limit_holds_across_nodes() {
        let redis = PrivateRedis::start();
        let link = Link::open(&redis.url()).unwrap();
        wait_up(&link).await;
        let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
        let a = ClusterLimiter::<UserId>::new(link.clone(), &prefix, "send", 5);
        let b =
            ClusterLimiter::<UserId>::new(Link::open(&redis.url()).unwrap(), &prefix, "send", 5);
        wait_up(&b.link).await;
        let (ada, bob) = (UserId::new(), UserId::new());
        let mut allowed = 0;
        for i in 0..10 {
            let node = if i % 2 == 0 { &a } else { &b };
            if node.check(&ada, &ada.as_string()).await.is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        let wait = a.check(&ada, &ada.as_string()).await.unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert!(
            b.check(&bob, &bob.as_string()).await.is_ok(),
            "another user is not affected"
        );
        assert_eq!(a.stats().fallbacks.get(), 0);
    }

    /// With Redis down, sends are still allowed up to the node-local limit, and counted.
    #[tokio::test]
    async fn redis_down_falls_back_to_the_local_limit() {
        let mut redis = PrivateRedis::start();
        let link = Link::open(&redis.url()).unwrap();
        wait_up(&link).await;
        let limiter = ClusterLimiter::<UserId>::new(link, "t:", "send", 3);
        redis.stop();
        let ada = UserId::new();
        let mut allowed = 0;
        for _ in 0..5 {
            if limiter.check(&ada, &ada.as_string()).await.is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3, "the local limit applies");
        assert!(limiter.stats().fallbacks.get() >= 5);
    }
}
