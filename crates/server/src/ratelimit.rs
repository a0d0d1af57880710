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
