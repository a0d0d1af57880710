//! `ApiError`: every HTTP failure as the contract's `{statusCode, message, error}` body.
//! Unexpected errors are logged with their cause chain and answered with an opaque 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nexus_protocol::HttpError;

use crate::error::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A request the framework could not decode (bad JSON, wrong types, too large).
    #[error("{message}")]
    Request { status: StatusCode, message: String },
}

impl ApiError {
    fn request(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::Request {
            status,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Request { status, .. } => *status,
            ApiError::Domain(e) => match e {
                DomainError::Validation(_) => StatusCode::BAD_REQUEST,
                DomainError::NotFound(_) => StatusCode::NOT_FOUND,
                DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
                DomainError::AlreadyDeleted => StatusCode::CONFLICT,
                DomainError::Conflict(_) => StatusCode::CONFLICT,
                DomainError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                DomainError::RateLimited { .. } | DomainError::TooManyAttempts { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                DomainError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Domain(DomainError::Internal(cause)) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let body = HttpError {
            status_code: status.as_u16(),
            message: self.to_string(),
            error: status.canonical_reason().unwrap_or("Error").to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Domain(
            DomainError::RateLimited { retry_after_ms, .. }
            | DomainError::TooManyAttempts { retry_after_ms },
        ) = &self
        {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::request(status, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::request(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::request(StatusCode::BAD_REQUEST, r.body_text())
    }
}

/// The JSON 404 for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::request(StatusCode::NOT_FOUND, "no such route")
}

/// The JSON 405 for a known route with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::request(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// The error answers the OpenAPI document lists, one type per status and meaning, named in
/// each route's `responses(...)` so every route says the same thing the same way.
pub mod documented {
    use nexus_protocol::HttpError;
    use utoipa::IntoResponses;

    macro_rules! error_responses {
        ($($name:ident = $status:literal, $description:literal;)*) => {$(
            #[derive(IntoResponses)]
            #[response(status = $status, description = $description)]
            #[allow(dead_code)] // never built: only its field's type reaches the document
            pub struct $name(HttpError);
        )*};
    }

    error_responses! {
        BadRequest = 400, "invalid input";
        Unauthorized = 401, "no valid access token";
        NotAdmin = 403, "not a member, or not an admin";
        Forbidden = 403, "not allowed to the caller";
        NoConversation = 404, "no such conversation, user or message";
        NotFound = 404, "no such thing (or not the caller's)";
        Conflict = 409, "conflict";
        TooLarge = 413, "body too large";
        NotJson = 415, "not JSON";
        RateLimited = 429, "rate limited";
        Unavailable = 503, "the database (or Redis) cannot be reached, retry later";
    }
}
