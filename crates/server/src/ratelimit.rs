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

/// What protects password hashing from abuse (docs/operations.md, "Limits"): attempts per
/// client address, and failed logins per e-mail counted without ever locking the right
/// password out.
///
/// - Every login and every registration first takes one of its client address's budget
///   (`per_ip_logins`, `per_ip_registrations`): one address cannot make the node hash more
///   than that, whatever e-mails it tries.
/// - Only a *failed* login takes one of the e-mail's budget (`failures`, 10 a minute). A
///   failure beyond it is answered 429, and the address it came from may not try that
///   e-mail again until the budget has room: so a guesser is stopped, while the owner, from
///   any other address, still logs in with the right password (a success never counts).
pub struct LoginGuard {
    pub per_ip_logins: Arc<dyn LoginLimiter>,
    pub per_ip_registrations: Arc<dyn LoginLimiter>,
    pub failures: Arc<dyn LoginLimiter>,
    /// (e-mail, address) pairs refused until the given time, after a failure beyond the
    /// e-mail's budget. Node-local: another node refuses such a pair after its first failure
    /// there. Bounded: entries go when they expire.
    blocked:
        std::sync::Mutex<std::collections::HashMap<(String, std::net::IpAddr), std::time::Instant>>,
}

impl LoginGuard {
    /// Failed logins per e-mail per minute.
    pub const FAILURES_PER_MINUTE: u32 = 10;

    pub fn new(
        per_ip_logins: Arc<dyn LoginLimiter>,
        per_ip_registrations: Arc<dyn LoginLimiter>,
        failures: Arc<dyn LoginLimiter>,
    ) -> LoginGuard {
        LoginGuard {
            per_ip_logins,
            per_ip_registrations,
            failures,
            blocked: Default::default(),
        }
    }

    /// Node-local limiters: `per_ip_per_minute` logins and as many registrations per
    /// address, [`LoginGuard::FAILURES_PER_MINUTE`] failures per e-mail.
    pub fn local(per_ip_per_minute: u32) -> LoginGuard {
        LoginGuard::new(
            Arc::new(KeyedLimiter::<String>::per_minute(per_ip_per_minute)),
            Arc::new(KeyedLimiter::<String>::per_minute(per_ip_per_minute)),
            Arc::new(KeyedLimiter::<String>::per_minute(
                Self::FAILURES_PER_MINUTE,
            )),
        )
    }

    /// Before a login's hash: the address's budget, and whether it is barred from `email`.
    pub async fn before_login(&self, email: &str, ip: std::net::IpAddr) -> Result<(), DomainError> {
        let barred = {
            let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            blocked.retain(|_, until| *until > now);
            blocked
                .get(&(email.to_string(), ip))
                .map(|until| *until - now)
        };
        if let Some(wait) = barred {
            crate::metrics::node().limited("login_email");
            return Err(DomainError::TooManyAttempts {
                retry_after_ms: (wait.as_millis() as u64).max(1),
            });
        }
        self.per_ip_logins
            .check(&format!("login:{ip}"))
            .await
            .inspect_err(|_| crate::metrics::node().limited("login_ip"))
    }

    /// After a failed login: counts it against `email`; beyond the budget the answer is 429
    /// and `ip` is barred from `email` until the budget has room.
    pub async fn failed(&self, email: &str, ip: std::net::IpAddr) -> Result<(), DomainError> {
        match self.failures.check(email).await {
            Ok(()) => Ok(()),
            Err(e) => {
                crate::metrics::node().limited("login_email");
                let wait = match &e {
                    DomainError::TooManyAttempts { retry_after_ms } => *retry_after_ms,
                    _ => 60_000,
                };
                let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
                blocked.insert(
                    (email.to_string(), ip),
                    std::time::Instant::now() + Duration::from_millis(wait),
                );
                Err(e)
            }
        }
    }

    /// Before a registration's hash: the address's budget.
    pub async fn before_registration(&self, ip: std::net::IpAddr) -> Result<(), DomainError> {
        self.per_ip_registrations
            .check(&format!("register:{ip}"))
            .await
            .inspect_err(|_| crate::metrics::node().limited("register_ip"))
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
