//! Accounts: registration, login, access tokens and user search (push devices:
//! `push::devices`).
//!
//! Passwords are hashed with argon2id (on the blocking pool: a hash costs tens of
//! milliseconds of CPU). Access tokens are HS256 JWTs that name the user in `sub`.

use std::collections::HashSet;
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
use crate::ratelimit::{Budgets, LoginLimiter};
use crate::store::{Store, StoreError, UserRecord};

/// The answer to every failed login, whatever the cause.
const BAD_CREDENTIALS: &str = "invalid email or password";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// An authenticated connection: who, and until when (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub user: UserId,
    pub expires_at_secs: u64,
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
        let iat = (now_ms() / 1000) as u64;
        let claims = Claims {
            sub: user.to_string(),
            iat,
            exp: iat + self.lifetime_secs,
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
        })
    }
}

#[derive(Clone)]
pub struct AccountService {
    store: Store,
    tokens: Tokens,
    login_limiter: Arc<dyn LoginLimiter>,
    budgets: Arc<Budgets>,
}

/// Most people one search answers.
pub const SEARCH_RESULTS: i64 = 20;

impl AccountService {
    pub fn new(store: Store, tokens: Tokens, login_limiter: Arc<dyn LoginLimiter>) -> Self {
        AccountService {
            store,
            tokens,
            login_limiter,
            budgets: Arc::default(),
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn register(
        &self,
        name: &str,
        email: &str,
        password: &str,
    ) -> Result<wire::AuthResponse, DomainError> {
        let name = DisplayName::parse(name)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
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
    /// Attempts per e-mail are limited (10 a minute).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<wire::AuthResponse, DomainError> {
        let bad = || DomainError::Unauthorized(BAD_CREDENTIALS.into());
        let key = email.trim().to_lowercase();
        self.login_limiter
            .check(&key)
            .await
            .inspect_err(|_| crate::metrics::node().limited("login"))?;
        let user = match Email::parse(email) {
            Ok(e) => self.store.user_by_email(&e).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let ok = verify_password(password.to_string(), hash).await?;
        match user {
            Some(u) if ok => self.answer(&u),
            _ => Err(bad()),
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

/// Argon2 hashes run at most this many at once: each takes 19 MiB and tens of milliseconds
/// of a core, so a burst of registrations or logins queues here instead of exhausting
/// memory and starving the rest of the server.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A hashing slot; the wait is counted on `/metrics` (`nexus_password_hashes_waiting`).
async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>, DomainError> {
    let _waiting = crate::metrics::GaugeGuard::new(&crate::metrics::node().hash_waiting);
    HASHING.acquire().await.map_err(DomainError::internal)
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
