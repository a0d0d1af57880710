//! The domain's error: what went wrong, in terms a transport can translate. HTTP maps it to
//! a status and `{statusCode, message, error}`; the Socket.IO gateway to an `ERROR` event code.
//! Unexpected failures carry their cause for the log, never for the client.

use nexus_protocol::events::ErrorCode;

use crate::domain::Invalid;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input is malformed or breaks a rule about its shape.
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("message has been deleted")]
    AlreadyDeleted,
    /// A unique value is taken (e-mail on register).
    #[error("{0}")]
    Conflict(String),
    /// Bad credentials or token. One message for every cause.
    #[error("{0}")]
    Unauthorized(String),
    /// The per-user send limit (`RATE_LIMIT_MESSAGES_PER_MINUTE`).
    #[error("rate limit of {limit} messages per minute exceeded")]
    RateLimited { limit: u32, retry_after_ms: u64 },
    /// Too many attempts of something else (logins).
    #[error("too many attempts, retry in {}s", retry_after_ms.div_ceil(1000))]
    TooManyAttempts { retry_after_ms: u64 },
    /// The database cannot be reached (or did not answer in time): nothing was applied,
    /// retry later (with the same `tempId`, a retry is never stored twice).
    #[error("the database is unavailable, retry later")]
    Unavailable,
    /// A bug or an infrastructure failure. Logged with its cause; the client sees only
    /// "internal error".
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Validation(_) | DomainError::Conflict(_) => ErrorCode::ValidationFailed,
            DomainError::NotFound(_) => ErrorCode::NotFound,
            DomainError::Forbidden(_) | DomainError::Unauthorized(_) => ErrorCode::Forbidden,
            DomainError::AlreadyDeleted => ErrorCode::AlreadyDeleted,
            DomainError::RateLimited { .. } | DomainError::TooManyAttempts { .. } => {
                ErrorCode::RateLimited
            }
            DomainError::Unavailable => ErrorCode::Unavailable,
            DomainError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> DomainError {
        DomainError::Internal(e.into())
    }
}

impl From<Invalid> for DomainError {
    fn from(e: Invalid) -> Self {
        DomainError::Validation(e.0)
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            return DomainError::Unavailable;
        }
        DomainError::Internal(e.into())
    }
}
