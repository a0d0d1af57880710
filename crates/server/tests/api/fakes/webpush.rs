//! A fake Web Push service (RFC 8030), as a browser vendor runs one: each subscription is
//! an endpoint URL on it, made for a fresh browser key pair (P-256 + 16-byte auth secret).
//! A push must carry `TTL`, `Urgency`, `Content-Encoding: aes128gcm` and a VAPID
//! `Authorization: vapid t=JWT, k=KEY` (RFC 8292) whose ES256 signature verifies with `k`,
//! whose `aud` is this service's origin and whose `exp` is within 24 hours; the body is
//! decrypted with the subscription's private key (RFC 8291) and kept as JSON. Anything
//! else is answered 400 and recorded in [`Script::rejected`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};

use super::{bind, serve, Answer, Script};

pub struct FakePushService {
    pub base_url: String,
    pub state: Arc<PushState>,
}

/// A browser's subscription: what it sends to the server (its private half stays here).
pub struct Subscription {
    pub id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl Subscription {
    /// `JSON.stringify(pushSubscription)`.
    pub fn json(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// One push as received: the decrypted payload and the headers that matter.
#[derive(Debug, Clone)]
pub struct Received {
    pub subscription: String,
    pub payload: Value,
    pub ttl: String,
    pub urgency: String,
    pub vapid_key: String,
}

pub struct PushState {
    pub script: Script,
    origin: String,
    /// subscription id → (private key, auth secret)
    keys: Mutex<HashMap<String, (p256::SecretKey, [u8; 16])>>,
    pub received: Mutex<Vec<Received>>,
}

impl FakePushService {
    pub async fn start() -> FakePushService {
        let (listener, base_url) = bind().await;
        let state = Arc::new(PushState {
            script: Script::default(),
            origin: base_url.clone(),
            keys: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/push/{id}", post(push))
            .with_state(state.clone());
        serve(listener, router);
        FakePushService { base_url, state }
    }

    /// A new subscription, as `pushManager.subscribe` would make one.
    pub fn subscribe(&self) -> Subscription {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let auth: [u8; 16] = rand::random();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        self.state
            .keys
            .lock()
            .unwrap()
            .insert(id.clone(), (secret, auth));
        Subscription {
            endpoint: format!("{}/push/{id}", self.base_url),
            id,
            p256dh,
            auth: URL_SAFE_NO_PAD.encode(auth),
        }
    }

    pub fn script(&self) -> &Script {
        &self.state.script
    }

    /// What was pushed to `sub`, decrypted.
    pub fn received_by(&self, sub: &Subscription) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.subscription == sub.id)
            .collect()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.script.rejected.lock().unwrap().clone()
    }
}

/// Checks a VAPID `Authorization` header; returns its public key.
fn check_vapid(header: &str, origin: &str) -> Result<String, String> {
    let rest = header
        .strip_prefix("vapid ")
        .ok_or("not a vapid authorization")?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    let (t, k) = (t.ok_or("no t=")?, k.ok_or("no k=")?);
    let point = URL_SAFE_NO_PAD
        .decode(k)
        .map_err(|_| "k= is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k= is not an uncompressed P-256 point".into());
    }
    let key = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
    .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(t, &key, &validation)
        .map_err(|e| format!("VAPID JWT refused: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let exp = data.claims["exp"].as_i64().unwrap_or(0);
    if exp > now + 24 * 3600 {
        return Err("exp more than 24 hours ahead".into());
    }
    let sub = data.claims["sub"].as_str().unwrap_or("");
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err(format!("sub {sub:?}"));
    }
    Ok(k.to_string())
}

async fn push(
    State(state): State<Arc<PushState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let reject = |why: String| {
        state.script.reject(why.clone());
        (StatusCode::BAD_REQUEST, why).into_response()
    };
    let Some((secret, auth)) = state.keys.lock().unwrap().get(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let vapid_key = match check_vapid(&header("authorization").unwrap_or_default(), &state.origin) {
        Ok(k) => k,
        Err(why) => {
            state.script.reject(why.clone());
            return (StatusCode::UNAUTHORIZED, why).into_response();
        }
    };
    if header("content-encoding").as_deref() != Some("aes128gcm") {
        return reject(format!("content-encoding {:?}", header("content-encoding")));
    }
    let Some(ttl) = header("ttl").filter(|t| t.parse::<u64>().is_ok()) else {
        return reject("no TTL".into());
    };
    let Some(urgency) =
        header("urgency").filter(|u| ["very-low", "low", "normal", "high"].contains(&u.as_str()))
    else {
        return reject(format!("urgency {:?}", header("urgency")));
    };
    let auth = web_push_native::Auth::clone_from_slice(&auth);
    let plain = match web_push_native::decrypt(body.to_vec(), &secret, &auth) {
        Ok(p) => p,
        Err(e) => return reject(format!("cannot decrypt: {e}")),
    };
    let payload: Value = match serde_json::from_slice(&plain) {
        Ok(v) => v,
        Err(e) => return reject(format!("the payload is not JSON: {e}")),
    };
    match state.script.answer(&id).await {
        Answer::Ok => {
            state.received.lock().unwrap().push(Received {
                subscription: id,
                payload,
                ttl,
                urgency,
                vapid_key,
            });
            StatusCode::CREATED.into_response()
        }
        Answer::Status(code, retry_after) => {
            let mut r = StatusCode::from_u16(code).unwrap().into_response();
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            r
        }
        other => reject(format!("{other:?} is an FCM answer")),
    }
}
