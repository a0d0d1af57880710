//! A fake FCM: Google's OAuth2 token endpoint (reached through the fake service account's
//! `token_uri`) and the FCM HTTP v1 `messages:send` method, with the real request and error
//! shapes.
//!
//! The token endpoint takes the JWT-bearer grant only if the assertion is signed by the
//! service account's private key (checked with its public half) and names the right
//! issuer, audience and scope. `messages:send` takes only a bearer token it issued and not
//! revoked, and validates the message as FCM does (one `token`, `notification` strings,
//! every `data` value a string, Android/APNs/Web Push blocks of the right types); whatever
//! it finds malformed is answered 400 and recorded in [`Script::rejected`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Value};

use super::{bind, serve, Answer, Script};

pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// One RSA key for the whole test binary (making one takes a while).
fn key() -> &'static (String, DecodingKey) {
    static KEY: OnceLock<(String, DecodingKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = DecodingKey::from_rsa_components(
            &URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            &URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        )
        .unwrap();
        (pem, public)
    })
}

pub struct FakeFcm {
    /// For `FCM_API_BASE_URL`.
    pub base_url: String,
    /// For `FCM_SERVICE_ACCOUNT_JSON`: `token_uri` points at this fake.
    pub service_account_json: String,
    pub state: Arc<FcmState>,
}

pub struct FcmState {
    pub script: Script,
    project_id: String,
    client_email: String,
    token_uri: Mutex<String>,
    /// `expires_in` of the access tokens handed out.
    pub token_lifetime_secs: AtomicU64,
    valid: Mutex<HashSet<String>>,
    /// Access tokens handed out.
    pub token_requests: AtomicUsize,
    /// Messages accepted, as sent.
    pub accepted: Mutex<Vec<Value>>,
}

impl FakeFcm {
    pub async fn start() -> FakeFcm {
        let (pem, _) = key();
        let project_id = "nexus-test".to_string();
        let client_email = "firebase-adminsdk-test@nexus-test.iam.gserviceaccount.com".to_string();
        let state = Arc::new(FcmState {
            script: Script::default(),
            project_id: project_id.clone(),
            client_email: client_email.clone(),
            token_uri: Mutex::new(String::new()),
            token_lifetime_secs: AtomicU64::new(3599),
            valid: Mutex::new(HashSet::new()),
            token_requests: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
        });
        let (listener, base_url) = bind().await;
        let token_uri = format!("{base_url}/token");
        *state.token_uri.lock().unwrap() = token_uri.clone();
        let router = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/{method}", post(send))
            .with_state(state.clone());
        serve(listener, router);
        let service_account_json = json!({
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string();
        FakeFcm {
            base_url,
            service_account_json,
            state,
        }
    }

    pub fn script(&self) -> &Script {
        &self.state.script
    }

    /// The messages accepted for `token`.
    pub fn accepted_for(&self, token: &str) -> Vec<Value> {
        self.state
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["message"]["token"] == token)
            .cloned()
            .collect()
    }

    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    pub fn rejected(&self) -> Vec<String> {
        self.state.script.rejected.lock().unwrap().clone()
    }
}

fn oauth_error(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

/// `POST token_uri`, form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`.
async fn token(State(state): State<Arc<FcmState>>, headers: HeaderMap, body: Bytes) -> Response {
    let reject = |why: String| {
        state.script.reject(format!("token endpoint: {why}"));
        oauth_error(&why)
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return reject("not a form".into());
    }
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return reject(format!("grant_type {:?}", form.get("grant_type")));
    }
    let Some(assertion) = form.get("assertion") else {
        return reject("no assertion".into());
    };
    // Google takes base64url with or without padding (gcp_auth pads); the signature covers
    // the first two parts exactly as sent.
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return reject("the assertion is not a JWT".into());
    }
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let header: Value = match decode(parts[0])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(h) => h,
        None => return reject("undecodable JWT header".into()),
    };
    if header["alg"] != "RS256" {
        return reject(format!("alg {}", header["alg"]));
    }
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let signature = parts[2].trim_end_matches('=');
    let (_, public) = key();
    match jsonwebtoken::crypto::verify(
        signature,
        signing_input.as_bytes(),
        public,
        Algorithm::RS256,
    ) {
        Ok(true) => {}
        _ => {
            return reject(
                "the assertion's signature does not verify with the account's public key".into(),
            )
        }
    }
    let claims: Value = match decode(parts[1])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(c) => c,
        None => return reject("undecodable JWT claims".into()),
    };
    let now = chrono::Utc::now().timestamp();
    let token_uri = state.token_uri.lock().unwrap().clone();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if claims["iss"] != state.client_email.as_str()
        || claims["aud"] != token_uri.as_str()
        || !claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == FCM_SCOPE)
        || iat > now + 60
        || exp <= now
        || exp - iat > 3600
    {
        return reject(format!("claims {claims}"));
    }
    let n = state.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("ya29.fake-{n}-{}", uuid::Uuid::new_v4().simple());
    state.valid.lock().unwrap().insert(access.clone());
    Json(json!({
        "access_token": access,
        "expires_in": state.token_lifetime_secs.load(Ordering::SeqCst),
        "token_type": "Bearer",
    }))
    .into_response()
}

fn fcm_error(status: StatusCode, rpc_status: &str, message: &str, details: Vec<Value>) -> Response {
    (
        status,
        Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": rpc_status,
            "details": details,
        }})),
    )
        .into_response()
}

fn fcm_code(code: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code})
}

fn bad_field(field: &str, description: &str) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
           "fieldViolations": [{"field": field, "description": description}]})
}

/// What FCM would refuse in a `messages:send` body, if anything.
fn invalid(body: &Value) -> Option<(String, String)> {
    let bad = |field: &str, why: &str| Some((field.to_string(), why.to_string()));
    let Some(top) = body.as_object() else {
        return bad("", "the body is not a JSON object");
    };
    if top
        .keys()
        .any(|k| k != "message" && k != "validate_only" && k != "validateOnly")
    {
        return bad("", "unknown top-level field");
    }
    let m = &body["message"];
    if !m.is_object() {
        return bad("message", "missing");
    }
    if m["token"].as_str().is_none_or(str::is_empty) {
        return bad("message.token", "a registration token is required");
    }
    if !m["topic"].is_null() || !m["condition"].is_null() {
        return bad("message", "exactly one target");
    }
    let n = &m["notification"];
    if !n.is_null() && (!n["title"].is_string() || !(n["body"].is_null() || n["body"].is_string()))
    {
        return bad("message.notification", "title and body must be strings");
    }
    if let Some(data) = m.get("data") {
        let Some(data) = data.as_object() else {
            return bad("message.data", "must be a map");
        };
        for (i, (k, v)) in data.iter().enumerate() {
            if !v.is_string() {
                return bad(
                    &format!("message.data[{i}].value"),
                    "Invalid value: data values must be strings",
                );
            }
            let lower = k.to_lowercase();
            if ["from", "notification", "message_type"].contains(&lower.as_str())
                || lower.starts_with("google")
                || lower.starts_with("gcm")
            {
                return bad(&format!("message.data[{i}].key"), "reserved key");
            }
        }
    }
    let a = &m["android"];
    if !a.is_null() {
        if !matches!(
            a["priority"].as_str(),
            None | Some("normal" | "high" | "NORMAL" | "HIGH")
        ) {
            return bad("message.android.priority", "NORMAL or HIGH");
        }
        if let Some(ttl) = a["ttl"].as_str() {
            let digits = ttl.strip_suffix('s').unwrap_or("x");
            if digits.parse::<f64>().is_err() {
                return bad("message.android.ttl", "a duration such as \"3.5s\"");
            }
        } else if !a["ttl"].is_null() {
            return bad("message.android.ttl", "a duration string");
        }
        if !(a["notification"]["tag"].is_null() || a["notification"]["tag"].is_string()) {
            return bad("message.android.notification.tag", "a string");
        }
    }
    for block in ["apns", "webpush"] {
        if let Some(headers) = m[block]["headers"].as_object() {
            if headers.values().any(|v| !v.is_string()) {
                return bad(
                    &format!("message.{block}.headers"),
                    "header values are strings",
                );
            }
        }
    }
    if !m["apns"].is_null() && !m["apns"]["payload"]["aps"].is_object() {
        return bad("message.apns.payload.aps", "an object");
    }
    None
}

/// `POST /v1/projects/{project}/messages:send`.
async fn send(
    State(state): State<Arc<FcmState>>,
    Path((project, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != "messages:send" || project != state.project_id {
        state.script.reject(format!("{project}/{method}"));
        return fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method", vec![]);
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(bearer) = bearer.filter(|b| state.valid.lock().unwrap().contains(b)) else {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            vec![],
        );
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            state.script.reject(format!("not JSON: {e}"));
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "Invalid JSON payload",
                vec![],
            );
        }
    };
    if let Some((field, why)) = invalid(&body) {
        state.script.reject(format!("{field}: {why} in {body}"));
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &why,
            vec![fcm_code("INVALID_ARGUMENT"), bad_field(&field, &why)],
        );
    }
    let token = body["message"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match state.script.answer(&token).await {
        Answer::Ok => {
            state.accepted.lock().unwrap().push(body);
            Json(json!({"name": format!("projects/{project}/messages/{}", uuid::Uuid::new_v4())}))
                .into_response()
        }
        Answer::Unregistered => fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
            vec![fcm_code("UNREGISTERED")],
        ),
        Answer::InvalidToken => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            vec![
                fcm_code("INVALID_ARGUMENT"),
                bad_field(
                    "message.token",
                    "The registration token is not a valid FCM registration token",
                ),
            ],
        ),
        Answer::SenderIdMismatch => fcm_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            vec![fcm_code("SENDER_ID_MISMATCH")],
        ),
        Answer::InvalidPayload => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl'",
            vec![
                fcm_code("INVALID_ARGUMENT"),
                bad_field("message.android.ttl", "Invalid value"),
            ],
        ),
        Answer::Unauthorized => {
            state.valid.lock().unwrap().remove(&bearer);
            fcm_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                vec![],
            )
        }
        Answer::Status(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap();
            let (rpc, fcm) = match code {
                429 => ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
                503 => ("UNAVAILABLE", "UNAVAILABLE"),
                _ => ("INTERNAL", "INTERNAL"),
            };
            let mut r = fcm_error(status, rpc, "try again later", vec![fcm_code(fcm)]);
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            r
        }
        // `Script::answer` turns it into the answer after the hold.
        Answer::Held => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
