//! The Web Push sender: RFC 8030 push requests, payload encrypted per RFC 8291
//! (`aes128gcm`, by `web-push-native`), signed with VAPID (RFC 8292, [`super::vapid`]).

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::content::PushContent;
use super::retry::parse_retry_after;
use super::vapid::{decode_base64url, VapidKey};
use super::{Attempt, Transport};
use crate::store::DeviceRecord;

pub struct WebPush {
    http: reqwest::Client,
    key: VapidKey,
    ttl: Duration,
}

impl WebPush {
    pub fn new(http: reqwest::Client, key: VapidKey, ttl: Duration) -> WebPush {
        WebPush { http, key, ttl }
    }

    /// The encrypted request body for `device`, or why there is none.
    fn encrypt(&self, device: &DeviceRecord, content: &PushContent) -> Result<Vec<u8>, String> {
        let p256dh = device
            .p256dh
            .as_deref()
            .and_then(decode_base64url)
            .ok_or("the subscription has no p256dh key")?;
        let auth = device
            .auth
            .as_deref()
            .and_then(decode_base64url)
            .filter(|a| a.len() == 16)
            .ok_or("the subscription has no 16-byte auth secret")?;
        let public = web_push_native::p256::PublicKey::from_sec1_bytes(&p256dh)
            .map_err(|_| "the subscription's p256dh is not a P-256 point")?;
        let auth = web_push_native::Auth::clone_from_slice(&auth);
        let payload = serde_json::to_vec(&content.web_payload()).map_err(|e| e.to_string())?;
        web_push_native::encrypt(payload, &public, &auth).map_err(|e| e.to_string())
    }
}

/// `scheme://host[:port]` of an endpoint: the audience of its VAPID JWT.
pub fn origin(endpoint: &str) -> Option<String> {
    let uri: axum::http::Uri = endpoint.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[async_trait::async_trait]
impl Transport for WebPush {
    async fn send(&self, device: &DeviceRecord, content: &PushContent) -> Attempt {
        let body = match self.encrypt(device, content) {
            Ok(b) => b,
            Err(e) => return Attempt::Gone(format!("unusable subscription: {e}")),
        };
        let Some(origin) = origin(&device.token) else {
            return Attempt::Gone("the endpoint is not a URL".into());
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let authorization = match self.key.authorization(&origin, now) {
            Ok(a) => a,
            Err(e) => return Attempt::Failed(e),
        };
        let response = self
            .http
            .post(&device.token)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", self.ttl.as_secs().to_string())
            .header("Urgency", "high")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Failed("the push service did not answer in time".into())
            }
            Err(e) => {
                return Attempt::Retry {
                    after: None,
                    reason: format!("cannot reach the push service: {e}"),
                }
            }
        };
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        classify(response.status(), retry_after)
    }
}

/// What a push service's answer means (RFC 8030 §5, §6.2; RFC 8292 §4).
fn classify(status: StatusCode, retry_after: Option<Duration>) -> Attempt {
    match status.as_u16() {
        200..=202 => Attempt::Delivered,
        404 | 410 => Attempt::Gone(format!("the push service answered {status}")),
        429 | 500 | 502 | 503 | 504 => Attempt::Retry {
            after: retry_after,
            reason: format!("the push service answered {status}"),
        },
        401 | 403 => Attempt::Failed(format!(
            "the push service refused the VAPID signature ({status}): was the subscription made with another VAPID key?"
        )),
        _ => Attempt::Failed(format!("the push service answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(StatusCode::CREATED, None), Attempt::Delivered);
        assert!(matches!(classify(StatusCode::GONE, None), Attempt::Gone(_)));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None),
            Attempt::Gone(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(Duration::from_secs(3))),
            Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, None),
            Attempt::Failed(_)
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, None),
            Attempt::Failed(_)
        ));
    }

    #[test]
    fn the_audience_is_the_endpoints_origin() {
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/abc").as_deref(),
            Some("https://fcm.googleapis.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:4567/push/1").as_deref(),
            Some("http://127.0.0.1:4567")
        );
    }
}
