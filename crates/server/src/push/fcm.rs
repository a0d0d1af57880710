//! The FCM HTTP v1 sender: `POST {FCM_API_BASE_URL}/v1/projects/{project}/messages:send`
//! with an OAuth2 access token of the service account.
//!
//! The token comes from `gcp_auth`'s service-account flow (a JWT grant signed with the
//! account's private key, posted to the key's `token_uri`); `gcp_auth` caches it until 20 s
//! before it expires. A 401 means Google no longer takes the cached token: the provider is
//! replaced by a fresh one (an empty cache) and the push is tried once more.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gcp_auth::{CustomServiceAccount, TokenProvider};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::RwLock;

use super::content::PushContent;
use super::retry::parse_retry_after;
use super::{Attempt, Transport};
use crate::store::DeviceRecord;

/// The OAuth2 scope of FCM sends.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's token endpoint, for credentials given as the three separate variables.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The service account, from `FCM_SERVICE_ACCOUNT_JSON` or the three variables.
#[derive(Clone)]
pub struct FcmCredentials {
    pub project_id: String,
    /// The service-account key as JSON (`gcp_auth` reads this form).
    key_json: String,
}

impl std::fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl FcmCredentials {
    /// The key file Firebase's console downloads ("Generate new private key").
    pub fn from_json(json: &str) -> Result<FcmCredentials, String> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| format!("FCM_SERVICE_ACCOUNT_JSON is not JSON: {e}"))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("FCM_SERVICE_ACCOUNT_JSON has no {name:?}"))
        };
        let project_id = field("project_id")?;
        field("client_email")?;
        field("private_key")?;
        let mut v = v.clone();
        if v.get("token_uri").and_then(Value::as_str).is_none() {
            v["token_uri"] = GOOGLE_TOKEN_URI.into();
        }
        let creds = FcmCredentials {
            project_id,
            key_json: v.to_string(),
        };
        creds.provider()?;
        Ok(creds)
    }

    /// `FCM_PROJECT_ID`, `FCM_PRIVATE_KEY` (PEM; `\n` written out as two characters, as
    /// one-line environment files have it, is read as a newline) and `FCM_CLIENT_EMAIL`.
    pub fn from_parts(
        project_id: &str,
        private_key: &str,
        client_email: &str,
    ) -> Result<FcmCredentials, String> {
        let private_key = private_key.trim().trim_matches('"').replace("\\n", "\n");
        let creds = FcmCredentials {
            project_id: project_id.trim().to_string(),
            key_json: json!({
                "type": "service_account",
                "project_id": project_id.trim(),
                "private_key": private_key,
                "client_email": client_email.trim(),
                "token_uri": GOOGLE_TOKEN_URI,
            })
            .to_string(),
        };
        creds.provider()?;
        Ok(creds)
    }

    fn provider(&self) -> Result<CustomServiceAccount, String> {
        CustomServiceAccount::from_json(&self.key_json)
            .map_err(|e| format!("the FCM service account is unusable: {e}"))
    }
}

pub struct Fcm {
    http: reqwest::Client,
    send_url: String,
    credentials: FcmCredentials,
    auth: RwLock<Arc<CustomServiceAccount>>,
    ttl: Duration,
}

impl Fcm {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        credentials: FcmCredentials,
        ttl: Duration,
    ) -> Result<Fcm, String> {
        let provider = credentials.provider()?;
        Ok(Fcm {
            http,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                base_url.trim_end_matches('/'),
                credentials.project_id
            ),
            credentials,
            auth: RwLock::new(Arc::new(provider)),
            ttl,
        })
    }

    /// The HTTP v1 `message` for one device: the brief's notification and data, plus one
    /// notification per conversation on the phone (`tag` / `thread-id`), high priority
    /// and a time to live on every platform.
    pub fn message(&self, token: &str, content: &PushContent) -> Value {
        let ttl = self.ttl.as_secs();
        let mut notification = json!({ "title": content.title });
        if let Some(body) = &content.body {
            notification["body"] = body.clone().into();
        }
        let expires = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + ttl;
        json!({
            "message": {
                "token": token,
                "notification": notification,
                "data": content.data,
                "android": {
                    "priority": "high",
                    "ttl": format!("{ttl}s"),
                    "notification": { "tag": content.tag },
                },
                "apns": {
                    "headers": {
                        "apns-priority": "10",
                        "apns-expiration": expires.to_string(),
                    },
                    "payload": { "aps": { "thread-id": content.tag, "sound": "default" } },
                },
                "webpush": {
                    "headers": { "Urgency": "high", "TTL": ttl.to_string() },
                    "notification": { "tag": content.tag },
                },
            }
        })
    }
}

#[async_trait::async_trait]
impl Transport for Fcm {
    async fn send(&self, device: &DeviceRecord, content: &PushContent) -> Attempt {
        let provider = self.auth.read().await.clone();
        let token = match provider.token(&[FCM_SCOPE]).await {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    reason: format!("no OAuth2 access token: {e}"),
                }
            }
        };
        let response = self
            .http
            .post(&self.send_url)
            .bearer_auth(token.as_str())
            .json(&self.message(&device.token, content))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed("FCM did not answer in time".into())
            }
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    reason: format!("cannot reach FCM: {e}"),
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        classify(status, retry_after, &body)
    }

    async fn renew_credentials(&self) {
        match self.credentials.provider() {
            Ok(fresh) => *self.auth.write().await = Arc::new(fresh),
            Err(e) => tracing::warn!(error = %e, "cannot renew the FCM credentials"),
        }
    }
}

/// What an FCM HTTP v1 answer means. Errors are `{"error": {code, message, status,
/// details: [{"@type": "…FcmError", errorCode}, {"@type": "…BadRequest", fieldViolations}]}}`.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &Value) -> Attempt {
    let error = &body["error"];
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str())
        .or_else(|| error["status"].as_str())
        .unwrap_or("");
    let message = error["message"].as_str().unwrap_or("");
    let reason = format!("FCM answered {status} {code}: {message}");
    let names_the_token = details.iter().any(|d| {
        d["fieldViolations"].as_array().is_some_and(|violations| {
            violations
                .iter()
                .any(|v| v["field"].as_str() == Some("message.token"))
        })
    }) || message.to_lowercase().contains("registration token");
    match status.as_u16() {
        200 => Attempt::Delivered,
        401 => Attempt::Unauthorized(reason),
        404 if code == "UNREGISTERED" || code == "NOT_FOUND" => Attempt::Gone(reason),
        403 if code == "SENDER_ID_MISMATCH" => Attempt::Gone(reason),
        400 if code == "INVALID_ARGUMENT" && names_the_token => Attempt::Gone(reason),
        429 | 500 | 502 | 503 | 504 => Attempt::Retry {
            after: retry_after,
            reason,
        },
        _ => Attempt::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16, status: &str, error_code: &str, violations: Option<&str>) -> Value {
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": error_code,
        })];
        if let Some(field) = violations {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": "bad"}],
            }));
        }
        json!({"error": {"code": code, "message": "m", "status": status, "details": details}})
    }

    #[test]
    fn token_errors_remove_the_device_and_others_do_not() {
        let s = StatusCode::from_u16;
        let gone = |a: Attempt| matches!(a, Attempt::Gone(_));
        assert!(gone(classify(
            s(404).unwrap(),
            None,
            &error(404, "NOT_FOUND", "UNREGISTERED", None)
        )));
        assert!(gone(classify(
            s(403).unwrap(),
            None,
            &error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", None)
        )));
        assert!(gone(classify(
            s(400).unwrap(),
            None,
            &error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                Some("message.token")
            )
        )));
        // an invalid payload is our fault, not the device's
        let payload = classify(
            s(400).unwrap(),
            None,
            &error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                Some("message.data[0].value"),
            ),
        );
        assert!(matches!(payload, Attempt::Failed(_)), "{payload:?}");
        let quota = classify(
            s(429).unwrap(),
            Some(Duration::from_secs(9)),
            &error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", None),
        );
        assert!(matches!(quota, Attempt::Retry { after: Some(d), .. } if d.as_secs() == 9));
        assert!(matches!(
            classify(s(503).unwrap(), None, &Value::Null),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            classify(s(401).unwrap(), None, &Value::Null),
            Attempt::Unauthorized(_)
        ));
        assert_eq!(
            classify(s(200).unwrap(), None, &json!({"name": "x"})),
            Attempt::Delivered
        );
    }
}
