//! Accounts: registration, login, access tokens and user search (push devices:
//! `push::devices`).
//!
//! Passwords are hashed with argon2id (on the blocking pool: a hash costs tens of
//! milliseconds of CPU). Access tokens are HS256 JWTs that name the user in `sub`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use nexus_protocol as wire;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::domain::{DisplayName, Email, Password, UserId};
use crate::error::DomainError;
use crate::ratelimit::{Budgets, LoginGuard, LoginLimiter};
use crate::store::{Store, StoreError, UserRecord};

/// The answer to every failed login, whatever the cause.
const BAD_CREDENTIALS: &str = "invalid email or password";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// The token's id, by which a logout revokes it.
    #[serde(default)]
    jti: Option<uuid::Uuid>,
    /// When it was issued, in milliseconds (a password change invalidates every token
    /// issued before it, to the millisecond).
    #[serde(default)]
    iat_ms: Option<i64>,
}

/// An authenticated connection: who, with which token, and until when (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub user: UserId,
    pub expires_at_secs: u64,
    /// The token's id (`None` for a token without one: it cannot be logged out alone).
    pub token_id: Option<uuid::Uuid>,
    /// When the token was issued (ms).
    pub issued_at_ms: i64,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_secs: u64,
}

impl Tokens {
    pub fn new(secret: &[u8], lifetime_secs: u64) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime_secs,
        }
    }

    pub fn issue(&self, user: &str) -> Result<String, DomainError> {
        let now = now_ms();
        let iat = (now / 1000) as u64;
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + self.lifetime_secs,
            jti: Some(uuid::Uuid::new_v4()),
            iat_ms: Some(now),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(DomainError::internal)
    }

    /// The user a token names, if its signature, algorithm and expiry are valid.
    pub fn verify(&self, token: &str) -> Result<UserId, DomainError> {
        self.verify_session(token).map(|s| s.user)
    }

    /// The user a token names and when it stops being valid.
    pub fn verify_session(&self, token: &str) -> Result<Session, DomainError> {
        let unauthorized = || DomainError::Unauthorized("Unauthorized".into());
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| unauthorized())?;
        Ok(Session {
            user: UserId::parse(&data.claims.sub).map_err(|_| unauthorized())?,
            expires_at_secs: data.claims.exp,
            token_id: data.claims.jti,
            issued_at_ms: data
                .claims
                .iat_ms
                .unwrap_or((data.claims.iat as i64).saturating_mul(1000)),
        })
    }
}

#[derive(Clone)]
pub struct AccountService {
    store: Store,
    tokens: Tokens,
    guard: Arc<LoginGuard>,
    budgets: Arc<Budgets>,
    /// `TRUST_X_FORWARDED_FOR`: whether a request's client address is the last one of its
    /// `X-Forwarded-For` header (set by the balancer in front) rather than its peer.
    trust_forwarded_for: bool,
}

/// Logins (and registrations) per client address and minute, by default.
pub const DEFAULT_AUTH_PER_IP: u32 = 20;

/// Most people one search answers.
pub const SEARCH_RESULTS: i64 = 20;

impl AccountService {
    /// `login_limiter` counts failed logins per e-mail; the per-address limits are
    /// node-local ones at [`DEFAULT_AUTH_PER_IP`] until [`AccountService::with_per_ip`].
    pub fn new(store: Store, tokens: Tokens, login_limiter: Arc<dyn LoginLimiter>) -> Self {
        let local = LoginGuard::local(DEFAULT_AUTH_PER_IP);
        AccountService {
            store,
            tokens,
            guard: Arc::new(LoginGuard::new(
                local.per_ip_logins,
                local.per_ip_registrations,
                login_limiter,
            )),
            budgets: Arc::default(),
            trust_forwarded_for: false,
        }
    }

    /// Logins and registrations per client address and minute (node-local limiters), and
    /// whether the address comes from `X-Forwarded-For`.
    pub fn with_per_ip(mut self, per_minute: u32, trust_forwarded_for: bool) -> Self {
        let local = LoginGuard::local(per_minute);
        self.guard = Arc::new(LoginGuard::new(
            local.per_ip_logins,
            local.per_ip_registrations,
            self.guard.failures.clone(),
        ));
        self.trust_forwarded_for = trust_forwarded_for;
        self
    }

    /// See [`AccountService::with_per_ip`].
    pub fn trusts_forwarded_for(&self) -> bool {
        self.trust_forwarded_for
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The session of a valid token: signed by us, not expired, of a user who still
    /// exists, not logged out, and issued after the user's last password change. Checked
    /// on every HTTP request and at every socket connect.
    pub async fn authenticate(&self, token: &str) -> Result<Session, DomainError> {
        let unauthorized = || DomainError::Unauthorized("Unauthorized".into());
        let session = self.tokens.verify_session(token)?;
        let jti = session.token_id.map(|j| j.to_string()).unwrap_or_default();
        match self.store.token_state(session.user, &jti).await? {
            Some(state) if !state.revoked && session.issued_at_ms >= state.valid_from => {
                Ok(session)
            }
            _ => Err(unauthorized()),
        }
    }

    /// Revokes the token of `session` (a logout): refused from now on, everywhere.
    pub async fn logout(&self, session: &Session) -> Result<(), DomainError> {
        let Some(jti) = session.token_id else {
            return Err(DomainError::Validation(
                "this token has no id and cannot be logged out alone; change the password to \
                 revoke it"
                    .into(),
            ));
        };
        let expires_at = (session.expires_at_secs as i64).saturating_mul(1000);
        self.store
            .revoke_token(session.user, &jti.to_string(), expires_at, now_ms())
            .await?;
        Ok(())
    }

    /// Changes `me`'s password after checking the current one; every token issued before
    /// is refused from now on. Answers with a new token.
    pub async fn change_password(
        &self,
        me: UserId,
        current: &str,
        new: &str,
        client: IpAddr,
    ) -> Result<wire::AuthResponse, DomainError> {
        let new = Password::parse(new)?;
        let user = self
            .store
            .user_by_id(me)
            .await?
            .ok_or_else(|| DomainError::Unauthorized("Unauthorized".into()))?;
        self.guard.before_login(&user.email, client).await?;
        if !verify_password(current.to_string(), Some(user.password_hash.clone())).await? {
            self.guard.failed(&user.email, client).await?;
            return Err(DomainError::Forbidden(
                "the current password is wrong".into(),
            ));
        }
        let hash = hash_password(new).await?;
        self.store.set_password(me, &hash, now_ms()).await?;
        self.answer(&user)
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn register(
        &self,
        name: &str,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<wire::AuthResponse, DomainError> {
        let name = DisplayName::parse(name)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        self.guard.before_registration(client).await?;
        let hash = hash_password(password).await?;
        let user = match self
            .store
            .create_user(UserId::new(), &name, &email, &hash, now_ms())
            .await
        {
            Ok(u) => u,
            Err(StoreError::Conflict) => {
                return Err(DomainError::Conflict("email is already registered".into()))
            }
            Err(e) => return Err(e.into()),
        };
        self.answer(&user)
    }

    /// One answer for an unknown e-mail and a wrong password; both cost one argon2 verify.
    /// Limited per client address and, for failures only, per e-mail ([`LoginGuard`]).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<wire::AuthResponse, DomainError> {
        let bad = || DomainError::Unauthorized(BAD_CREDENTIALS.into());
        let key = email.trim().to_lowercase();
        self.guard.before_login(&key, client).await?;
        let user = match Email::parse(email) {
            Ok(e) => self.store.user_by_email(&e).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = verify_password(password.to_string(), hash).await?;
        match user {
            Some(u) if ok => self.answer(&u),
            _ => {
                self.guard.failed(&key, client).await?;
                Err(bad())
            }
        }
    }

    fn answer(&self, user: &UserRecord) -> Result<wire::AuthResponse, DomainError> {
        Ok(wire::AuthResponse {
            access_token: self.tokens.issue(&user.id)?,
            user: user.public(),
        })
    }

    pub async fn me(&self, me: UserId) -> Result<wire::User, DomainError> {
        self.store
            .user_by_id(me)
            .await?
            .map(|u| u.public())
            .ok_or_else(|| DomainError::Unauthorized("Unauthorized".into()))
    }

    /// People to start a conversation with, other than `me`: those whose name contains
    /// `term` (case-insensitive), and the one whose e-mail is exactly `term`. An e-mail is
    /// shown only for contacts (who share a conversation with `me`) and for that exact
    /// match: a search never lists the addresses of strangers. An empty term finds no one.
    /// At most [`SEARCH_RESULTS`] answers; [`Budgets::SEARCH_PER_MINUTE`] searches a minute.
    pub async fn search(
        &self,
        me: UserId,
        term: Option<&str>,
    ) -> Result<Vec<wire::UserFound>, DomainError> {
        let term = term.unwrap_or("").trim();
        if term.chars().count() > 100 {
            return Err(DomainError::Validation(
                "search must be at most 100 characters".into(),
            ));
        }
        if term.chars().any(char::is_control) {
            return Err(DomainError::Validation(
                "search must not contain control characters".into(),
            ));
        }
        Budgets::take(&self.budgets.search, me, "search")?;
        if term.is_empty() {
            return Ok(Vec::new());
        }
        let exact = Email::parse(term).ok();
        let found = self
            .store
            .search_users(me, term, exact.as_ref(), SEARCH_RESULTS)
            .await?;
        let contacts: HashSet<String> = self.store.partners(me).await?.into_iter().collect();
        Ok(found
            .into_iter()
            .map(|u| {
                let shown =
                    contacts.contains(&u.id) || exact.as_ref().map(Email::as_str) == Some(&u.email);
                wire::UserFound {
                    email: shown.then_some(u.email),
                    id: u.id,
                    name: u.name,
                }
            })
            .collect())
    }

    /// Shares `budgets` (searches per user) with the other services.
    pub fn with_budgets(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }
}

/// Argon2 hashes run at most [`HashGate::SLOTS`] at once: each takes 19 MiB and tens of
/// milliseconds of a core. A burst waits for a slot, but no more than
/// [`HashGate::MAX_WAITING`] requests wait and none longer than [`HashGate::MAX_WAIT`]:
/// beyond, the request is refused at once (429, `Retry-After`) instead of queueing for
/// minutes while every real login waits behind it.
pub struct HashGate {
    slots: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
    max_wait: std::time::Duration,
}

impl HashGate {
    pub const SLOTS: usize = 2;
    pub const MAX_WAITING: usize = 32;
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

    pub const fn new(slots: usize, max_waiting: usize, max_wait: std::time::Duration) -> HashGate {
        HashGate {
            slots: tokio::sync::Semaphore::const_new(slots),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    /// A slot, or a refusal when too many wait or the wait is too long. The waiters are
    /// shown on `/metrics` (`nexus_password_hashes_waiting`).
    pub async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, DomainError> {
        use std::sync::atomic::Ordering;
        let busy = || {
            crate::metrics::node().limited("password_hashing");
            DomainError::TooManyAttempts {
                retry_after_ms: 1000,
            }
        };
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let _shown = crate::metrics::GaugeGuard::new(&crate::metrics::node().hash_waiting);
        let permit = tokio::time::timeout(self.max_wait, self.slots.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(p) => p.map_err(DomainError::internal),
            Err(_) => Err(busy()),
        }
    }
}

static HASHING: HashGate =
    HashGate::new(HashGate::SLOTS, HashGate::MAX_WAITING, HashGate::MAX_WAIT);

async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>, DomainError> {
    HASHING.slot().await
}

async fn hash_password(password: Password) -> Result<String, DomainError> {
    let _permit = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| DomainError::internal(anyhow::anyhow!("argon2: {e}")))
    })
    .await
    .map_err(DomainError::internal)?
}

/// Verifies `password` against `hash`, or against a fixed dummy hash when there is none, so
/// that an unknown e-mail takes as long as a wrong password.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, DomainError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let _permit = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"nexus-dummy-password", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let ok = PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && known
    })
    .await
    .map_err(DomainError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[7u8; 32], 60)
    }

    /// The waiters of the hashing gate are bounded: with both slots taken, MAX_WAITING
    /// requests wait, the next is refused at once, and a waiter gives up after MAX_WAIT.
    #[tokio::test(start_paused = true)]
    async fn the_hashing_gate_bounds_its_waiters_and_their_wait() {
        let gate = Arc::new(HashGate::new(2, 3, std::time::Duration::from_secs(5)));
        let held = (gate.slot().await.unwrap(), gate.slot().await.unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.slot().await.map(|_| ()) })
            })
            .collect();
        while gate.waiting.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(gate.slot().await, Err(DomainError::TooManyAttempts { .. })),
            "a fourth waiter is refused at once"
        );
        // Nothing frees a slot: every waiter is refused once MAX_WAIT has passed.
        for w in waiters {
            assert!(matches!(
                w.await.unwrap(),
                Err(DomainError::TooManyAttempts { .. })
            ));
        }
        drop(held);
        assert!(gate.slot().await.is_ok(), "free slots serve again");
    }

    #[test]
    fn issued_token_verifies() {
        let id = UserId::new();
        let t = tokens().issue(&id.as_string()).unwrap();
        assert_eq!(tokens().verify(&t).unwrap(), id);
    }

    #[test]
    fn forged_expired_and_alg_none_tokens_are_refused() {
        let id = UserId::new().as_string();
        let other = Tokens::new(&[8u8; 32], 60).issue(&id).unwrap();
        assert!(tokens().verify(&other).is_err(), "other secret accepted");

        let old = Claims {
            sub: id.clone(),
            iat: 1,
            exp: 2,
            jti: None,
            iat_ms: None,
        };
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &old,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert!(tokens().verify(&expired).is_err(), "expired accepted");

        use base64::Engine;
        let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(r#"{{"sub":"{id}","iat":1,"exp":99999999999}}"#).as_bytes())
        );
        assert!(tokens().verify(&none).is_err(), "alg none accepted");
    }
}
