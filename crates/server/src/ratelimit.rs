//! Limits: messages per user per minute (`RATE_LIMIT_MESSAGES_PER_MINUTE`) and login
//! attempts per e-mail.
//!
//! Both are GCRA limiters from `governor`, kept in process memory. [`SendLimiter`] and
//! [`LoginLimiter`] are the interfaces the domain sees, so a cluster-wide (Redis) limiter
//! can replace the in-process one without touching the rules.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::UserId;
use crate::error::DomainError;

/// Decides whether a user may send one more message now.
#[async_trait::async_trait]
pub trait SendLimiter: Send + Sync + 'static {
    /// `Ok` consumes one send; `Err(RateLimited)` says when to retry.
    async fn check(&self, user: UserId) -> Result<(), DomainError>;
}

/// Decides whether one more login attempt for a key (a normalised e-mail) may run now.
#[async_trait::async_trait]
pub trait LoginLimiter: Send + Sync + 'static {
    /// `Ok` consumes one attempt; `Err(TooManyAttempts)` says when to retry.
    async fn check(&self, key: &str) -> Result<(), DomainError>;
}

/// A keyed GCRA limiter: `per_minute` events per minute, bursts up to `per_minute`.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    per_minute: u32,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        KeyedLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            per_minute: n.get(),
        }
    }

    /// `Ok` when allowed (and counted); `Err(wait)` with the time until the next allowance.
    pub fn check_key(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose limit has fully replenished (bounded memory).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[async_trait::async_trait]
impl SendLimiter for KeyedLimiter<UserId> {
    async fn check(&self, user: UserId) -> Result<(), DomainError> {
        self.check_key(&user)
            .map_err(|wait| DomainError::RateLimited {
                limit: self.per_minute,
                retry_after_ms: (wait.as_millis() as u64).max(1),
            })
    }
}

#[async_trait::async_trait]
impl LoginLimiter for KeyedLimiter<String> {
    async fn check(&self, key: &str) -> Result<(), DomainError> {
        self.check_key(&key.to_string())
            .map_err(|wait| DomainError::TooManyAttempts {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            })
    }
}

/// Per-user budgets for what is not a send, each its own GCRA limiter, so that no one of
/// them can use up another (docs/operations.md, "Limits"). They are node-local: each bounds
/// what one user can make this node do, and a user spreading sockets over several nodes
/// gets each node's budget (the writer's queue they protect is per node too).
pub struct Budgets {
    /// Edits, deletes and receipts (`RATE_LIMIT_CHANGES_PER_MINUTE`).
    pub changes: KeyedLimiter<UserId>,
    /// User searches.
    pub search: KeyedLimiter<UserId>,
    /// `GET_ONLINE_USERS`.
    pub online: KeyedLimiter<UserId>,
    /// Typing indicators forwarded.
    pub typing: KeyedLimiter<UserId>,
}

impl Budgets {
    /// Searches per user per minute.
    pub const SEARCH_PER_MINUTE: u32 = 30;
    /// `GET_ONLINE_USERS` per user per minute.
    pub const ONLINE_PER_MINUTE: u32 = 30;
    /// Typing indicators per user per minute (after the per-conversation throttle).
    pub const TYPING_PER_MINUTE: u32 = 120;

    pub fn new(changes_per_minute: u32) -> Budgets {
        Budgets {
            changes: KeyedLimiter::per_minute(changes_per_minute),
            search: KeyedLimiter::per_minute(Self::SEARCH_PER_MINUTE),
            online: KeyedLimiter::per_minute(Self::ONLINE_PER_MINUTE),
            typing: KeyedLimiter::per_minute(Self::TYPING_PER_MINUTE),
        }
    }

    /// Consumes one of `user`'s `kind` budget, or refuses (`TooManyAttempts`: HTTP 429,
    /// `ERROR RATE_LIMITED`), counted on `/metrics` under `kind`.
    pub fn take(
        limiter: &KeyedLimiter<UserId>,
        user: UserId,
        kind: &'static str,
    ) -> Result<(), DomainError> {
        limiter.check_key(&user).map_err(|wait| {
            crate::metrics::node().limited(kind);
            DomainError::TooManyAttempts {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            }
        })
    }

    fn shrink(&self) {
        for l in [&self.changes, &self.search, &self.online, &self.typing] {
            l.shrink();
        }
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(600)
    }
}

/// Drops idle keys of `budgets` every minute, for as long as they are in use.
pub fn spawn_budget_shrinker(budgets: &Arc<Budgets>) {
    let weak = Arc::downgrade(budgets);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(b) => b.shrink(),
                None => return,
            }
        }
    });
}

/// Starts a task that periodically drops idle keys of the given limiters.
pub fn spawn_shrinker(send: Arc<KeyedLimiter<UserId>>, login: Arc<KeyedLimiter<String>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            send.shrink();
            login.shrink();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allows_the_quota_then_refuses_with_a_retry_time() {
        let l = KeyedLimiter::<UserId>::per_minute(3);
        let (a, b) = (UserId::new(), UserId::new());
        for _ in 0..3 {
            l.check(a).await.unwrap();
        }
        match l.check(a).await {
            Err(DomainError::RateLimited {
                limit,
                retry_after_ms,
            }) => {
                assert_eq!(limit, 3);
                assert!(
                    retry_after_ms > 0 && retry_after_ms <= 20_000,
                    "{retry_after_ms}"
                );
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        // another user is not affected
        l.check(b).await.unwrap();
    }
}
