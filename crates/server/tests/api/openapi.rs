//! The OpenAPI document (`/openapi.json`) and the authorization matrix built from it.
//!
//! - Every route the router serves is in the document: the routes declared in the server's
//!   source (`.route("…", …)` outside the generated ones) are compared with the document's
//!   paths, and every operation of the document is answered by its handler (not by the
//!   web client's fallback).
//! - The matrix: every operation that needs a token is tried with each kind of bad token
//!   (missing, malformed, wrong signature, expired, `alg: none`, revoked, of a deleted
//!   user) and must be a 401; every operation is tried by a third user on the data of two
//!   others, and must refuse or answer with the caller's own data only; nothing of the two
//!   others changes. Socket connects with each bad token are refused, and every Socket.IO
//!   event the gateway handles is tried by the third user. The entries are keyed by the
//!   document's operations and the gateway's events, so a new route or event without an
//!   entry fails here.

use std::collections::{BTreeMap, BTreeSet};

use jsonwebtoken::{encode, EncodingKey, Header};
use nexus_bench::sio::{Incoming, SioConn, Target};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp, TestUser};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes-for-hs256";

async fn document(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    resp.json().await.unwrap()
}

/// `(METHOD, path)` of every operation of the document, and whether it needs a token.
fn operations(doc: &Value) -> BTreeMap<(String, String), bool> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            ops.insert((method.to_uppercase(), path.clone()), secured);
        }
    }
    ops
}

/// Every `.route("PATH", get(…).post(…))` written by hand in the server's source, as
/// `(METHOD, PATH)`: routes added next to the generated ones, which the document would not
/// know about.
fn routes_in_source() -> BTreeSet<(String, String)> {
    fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let rest = &text[at + ".route(".len()..];
            let Some(path) = rest
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            // The call's arguments, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            let args = &rest[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if called {
                    routes.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document_and_answered_by_its_handler() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let ops = operations(&doc);

    for route in routes_in_source() {
        assert!(
            ops.contains_key(&route),
            "{route:?} is served but not in /openapi.json: declare it with #[utoipa::path] and routes!()"
        );
    }
    for (method, path) in ops.keys() {
        let path = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{other}", &uuid::Uuid::new_v4().to_string());
        let resp = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .send()
            .await
            .unwrap();
        let kind = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            !kind.starts_with("text/html") && resp.status() != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is in the document but not served ({}, {kind})",
            resp.status()
        );
    }
}

/// The kinds of bad token the matrix tries.
const BAD_TOKENS: [&str; 7] = [
    "missing",
    "malformed",
    "wrong signature",
    "expired",
    "alg none",
    "revoked",
    "deleted user",
];

fn sign(secret: &str, sub: &str, exp: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    encode(
        &Header::default(),
        &json!({"sub": sub, "iat": now - 10, "exp": exp, "jti": uuid::Uuid::new_v4(),
                "iat_ms": (now - 10) * 1000}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// One token of each kind in [`BAD_TOKENS`] (`None` for "missing"), for `victim`.
async fn bad_tokens(app: &TestApp, victim: &TestUser) -> Vec<(&'static str, Option<String>)> {
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let far = chrono::Utc::now().timestamp() + 3600;
    let revoked = app.register("Revoked").await;
    let resp = app
        .post_json("/auth/logout", &json!({}), Some(&revoked.token))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let deleted = app.register("Deleted").await;
    app.delete_user(&deleted.id).await;
    let tokens = vec![
        ("missing", None),
        ("malformed", Some("not.a-jwt".to_string())),
        (
            "wrong signature",
            Some(sign(
                "another-secret-of-at-least-32-bytes!!",
                &victim.id,
                far,
            )),
        ),
        (
            "expired",
            Some(sign(
                SECRET,
                &victim.id,
                chrono::Utc::now().timestamp() - 3600,
            )),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(json!({"sub": victim.id, "iat": far - 7200, "exp": far})
                    .to_string()
                    .as_bytes())
            )),
        ),
        ("revoked", Some(revoked.token)),
        ("deleted user", Some(deleted.token)),
    ];
    assert_eq!(
        tokens.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        BAD_TOKENS
    );
    tokens
}

/// What a third user trying an operation on the data of Ada and Bob must get.
#[derive(Debug, Clone, Copy)]
enum Third {
    /// Refused: 403 or 404.
    Refused,
    /// Answered with the caller's own data (nothing of Ada's or Bob's in the body).
    OwnOnly,
    /// Needs no token, and carries nobody's data.
    Public,
}

/// The matrix's entries: one per operation of the document.
fn entries() -> BTreeMap<(&'static str, &'static str), Third> {
    use Third::*;
    BTreeMap::from([
        (("POST", "/auth/register"), Public),
        (("POST", "/auth/login"), Public),
        (("POST", "/auth/logout"), OwnOnly),
        (("POST", "/auth/password"), OwnOnly),
        (("GET", "/users/me"), OwnOnly),
        (("GET", "/users"), OwnOnly),
        (("POST", "/users/fcm/register"), OwnOnly),
        (("POST", "/users/fcm/unregister"), OwnOnly),
        (("POST", "/users/webpush/subscribe"), OwnOnly),
        (("POST", "/users/webpush/unsubscribe"), OwnOnly),
        (("GET", "/users/webpush/vapid-public-key"), Public),
        (("GET", "/users/devices"), OwnOnly),
        (("POST", "/messages"), OwnOnly),
        (("GET", "/messages/conversation/{other}"), OwnOnly),
        (("GET", "/messages/conversations/all"), OwnOnly),
        (("GET", "/messages/sync"), OwnOnly),
        (("PATCH", "/messages/{id}"), Refused),
        (("DELETE", "/messages/{id}"), Refused),
        (("GET", "/messages/{id}/history"), Refused),
        (("POST", "/messages/{id}/delivered"), Refused),
        (("POST", "/messages/{id}/read"), Refused),
        (("GET", "/sync"), OwnOnly),
        (("GET", "/health"), Public),
        (("GET", "/ready"), Public),
        (("GET", "/metrics"), Public),
        (("GET", "/openapi.json"), Public),
        (("POST", "/conversations"), OwnOnly),
        (("GET", "/conversations"), OwnOnly),
        (("GET", "/conversations/{id}"), Refused),
        (("PATCH", "/conversations/{id}"), Refused),
        (("POST", "/conversations/{id}/members"), Refused),
        (("DELETE", "/conversations/{id}/members/{user}"), Refused),
        (("GET", "/conversations/{id}/messages"), Refused),
        (("POST", "/conversations/{id}/read"), Refused),
    ])
}

/// A valid request body for each operation that takes one, naming Ada's and Bob's data
/// where it can.
fn body_for(method: &str, path: &str, w: &World) -> Option<Value> {
    Some(match (method, path) {
        ("POST", "/auth/register") => {
            json!({"name": "Mallory", "email": format!("m-{}@example.org", uuid::Uuid::new_v4().as_u128()), "password": "correct horse battery"})
        }
        ("POST", "/auth/login") => json!({"email": w.ada.email, "password": "wrong password"}),
        ("POST", "/auth/password") => {
            json!({"currentPassword": "correct horse battery", "newPassword": "correct horse battery 2"})
        }
        ("POST", "/users/fcm/register") => json!({"deviceToken": "mallory-phone"}),
        ("POST", "/users/fcm/unregister") => json!({"deviceToken": "ada-phone"}),
        ("POST", "/users/webpush/subscribe") => json!({
            "endpoint": "https://push.example.org/mallory",
            "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg"}
        }),
        ("POST", "/users/webpush/unsubscribe") => {
            json!({"endpoint": "https://push.example.org/ada"})
        }
        ("POST", "/messages") => {
            json!({"receiverId": w.dave.id, "content": "hello from a stranger"})
        }
        ("PATCH", "/messages/{id}") => json!({"content": "changed by a stranger"}),
        ("POST", "/messages/{id}/delivered" | "/messages/{id}/read") => json!({}),
        ("POST", "/auth/logout") => json!({}),
        ("POST", "/conversations") => json!({"title": "Mallory's", "memberIds": [w.dave.id]}),
        ("PATCH", "/conversations/{id}") => json!({"title": "taken over"}),
        ("POST", "/conversations/{id}/members") => json!({"userIds": [w.dave.id]}),
        ("POST", "/conversations/{id}/read") => json!({"upToMessageId": w.group_message}),
        _ => return None,
    })
}

/// Ada and Bob with a conversation, receipts, an edit and devices; Carl, the third user.
struct World {
    ada: TestUser,
    bob: TestUser,
    /// Someone the third user may legitimately write to.
    dave: TestUser,
    message: String,
    /// Ada's group with Bob, and a message in it.
    group: String,
    group_message: String,
}

impl World {
    fn path(&self, path: &str) -> String {
        let id = if path.starts_with("/conversations/") {
            &self.group
        } else {
            &self.message
        };
        path.replace("{id}", id)
            .replace("{other}", &self.bob.id)
            .replace("{user}", &self.bob.id)
    }
}

/// Everything Ada and Bob can see of their data: it must not change.
async fn snapshot(app: &TestApp, w: &World) -> Value {
    json!({
        "adaFeed": app.sync_all(&w.ada, 0).await,
        "bobFeed": app.sync_all(&w.bob, 0).await,
        "conversation": app.conversation(&w.ada, &w.bob).await,
        "adaDevices": app.get_ok("/users/devices", &w.ada).await,
        "history": app.get_ok(&format!("/messages/{}/history", w.message), &w.ada).await,
        "adaConversations": app.get_ok("/messages/conversations/all", &w.ada).await,
        "group": app.get_ok(&format!("/conversations/{}", w.group), &w.ada).await,
        "groupMessages": app.get_ok(&format!("/conversations/{}/messages", w.group), &w.bob).await,
    })
}

async fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = app.client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        app.url(path),
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_over_every_route_and_event() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| {
        c.jwt_secret = Some(SECRET.into());
        c.vapid_private_key = None;
    })
    .await
    else {
        return;
    };
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    let message = app.send_ok(&ada, &bob, "private").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.edit(&ada, &message, "private, edited").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.mark(&bob, &message, "delivered").await.status(),
        StatusCode::OK
    );
    let resp = app
        .post_json(
            "/users/fcm/register",
            &json!({"deviceToken": "ada-phone"}),
            Some(&ada.token),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let dave = app.register("Dave").await;
    let group = app
        .post_json(
            "/conversations",
            &json!({"title": "private club", "memberIds": [bob.id]}),
            Some(&ada.token),
        )
        .await;
    assert_eq!(group.status(), StatusCode::CREATED);
    let group = group.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let group_message = app
        .post_json(
            "/messages",
            &json!({"conversationId": group, "content": "private to the club"}),
            Some(&ada.token),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let w = World {
        ada,
        bob,
        dave,
        message,
        group,
        group_message,
    };
    let before = snapshot(&app, &w).await;
    let secrets = [
        w.ada.id.clone(),
        w.bob.id.clone(),
        w.ada.email.clone(),
        w.bob.email.clone(),
        w.message.clone(),
        w.group.clone(),
        w.group_message.clone(),
        "private".to_string(),
        "ada-phone".to_string(),
    ];

    let doc = document(&app).await;
    let ops = operations(&doc);
    let table = entries();
    let listed: BTreeSet<(String, String)> = table
        .keys()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let documented: BTreeSet<(String, String)> = ops.keys().cloned().collect();
    assert_eq!(
        documented.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "operations without a matrix entry"
    );
    assert_eq!(
        listed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "matrix entries for operations that do not exist"
    );

    // Bad tokens on every operation that needs one.
    let tokens = bad_tokens(&app, &w.ada).await;
    let mut cells = 0;
    for ((method, path), secured) in &ops {
        let third = table[&(method.as_str(), path.as_str())];
        assert_eq!(
            *secured,
            !matches!(third, Third::Public),
            "{method} {path}: security in the document"
        );
        if !secured {
            continue;
        }
        for (kind, token) in &tokens {
            let body = body_for(method, path, &w);
            let resp = request(&app, method, &w.path(path), token.as_deref(), body.as_ref()).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a {kind} token"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body["statusCode"], 401,
                "{method} {path} with a {kind} token: {body}"
            );
            cells += 1;
        }
    }

    // A third user on Ada's and Bob's data.
    let carl = app.register("Carl").await;
    for (method, path) in ops.keys() {
        let third = table[&(method.as_str(), path.as_str())];
        if method == "POST" && (path == "/auth/password" || path == "/auth/logout") {
            continue; // run last: they end Carl's token
        }
        let body = body_for(method, path, &w);
        let resp = request(
            &app,
            method,
            &w.path(path),
            Some(&carl.token),
            body.as_ref(),
        )
        .await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        match third {
            Third::Refused => assert!(
                matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                "{method} {path} by a third user: {status} {text}"
            ),
            Third::OwnOnly | Third::Public => {
                assert!(status.as_u16() < 500, "{method} {path}: {status} {text}");
                for secret in &secrets {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{method} {path} by a third user shows {secret}: {text}"
                    );
                }
            }
        }
        cells += 1;
    }
    let resp = request(
        &app,
        "POST",
        "/auth/password",
        Some(&carl.token),
        body_for("POST", "/auth/password", &w).as_ref(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let carl_now: Value = resp.json().await.unwrap();
    let carl_token = carl_now["accessToken"].as_str().unwrap();
    let resp = request(&app, "POST", "/auth/logout", Some(carl_token), None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    cells += 2;

    // Sockets: each bad token is refused at connect.
    let target = Target::parse(&app.address).unwrap();
    for (kind, token) in &tokens {
        let token = token.clone().unwrap_or_default();
        let refused =
            SioConn::connect(&target, &token, None, nexus_bench::sio::ws_config(4096)).await;
        let error = refused
            .err()
            .unwrap_or_else(|| panic!("a socket connected with a {kind} token"));
        assert!(
            error.to_string().contains("Unauthorized"),
            "{kind}: {error}"
        );
        cells += 1;
    }

    // Every event the gateway handles, by the third user on Ada's and Bob's data.
    let mallory = app.register("Mallory").await;
    let mut socket = SioConn::connect(
        &target,
        &mallory.token,
        None,
        nexus_bench::sio::ws_config(4096),
    )
    .await
    .unwrap();
    let handled = handled_events();
    let events = socket_entries(&w);
    let named: BTreeSet<String> = events.keys().map(|e| e.to_string()).collect();
    assert_eq!(handled, named, "gateway events and matrix entries differ");
    for (i, (event, (payload, expected))) in events.iter().enumerate() {
        let ack = i as i64 + 1;
        socket.feed_event(event, payload, Some(ack)).await.unwrap();
        socket.flush().await.unwrap();
        let answer = loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv())
                .await
                .expect("an answer");
            match socket.decode(frame) {
                Incoming::Ack { id, data } if id == ack => break data,
                Incoming::Closed(why) => panic!("{event}: socket closed: {why}"),
                _ => socket.flush().await.unwrap(),
            }
        };
        let text = format!("{answer:?}");
        match expected {
            Some(code) => assert!(text.contains(code), "{event} by a third user: {text}"),
            None => {
                for secret in &secrets {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{event} by a third user shows {secret}: {text}"
                    );
                }
            }
        }
        cells += 1;
    }

    assert_eq!(
        snapshot(&app, &w).await,
        before,
        "a refused attempt changed Ada's or Bob's data"
    );
    eprintln!(
        "authorization matrix: {} HTTP operations x {} bad tokens, {} socket connects, {} events; {cells} cells",
        ops.values().filter(|s| **s).count(),
        tokens.len(),
        tokens.len(),
        events.len()
    );
}

/// Each event the gateway handles: the third user's payload, and the error code expected
/// (`None`: allowed, but the answer shows nothing of Ada's or Bob's).
fn socket_entries(w: &World) -> BTreeMap<&'static str, (Value, Option<&'static str>)> {
    use nexus_protocol::events as e;
    BTreeMap::from([
        (
            e::NEW_MESSAGE,
            (
                json!({"receiverId": w.dave.id, "content": "hi", "tempId": "m1"}),
                None,
            ),
        ),
        (
            e::MESSAGE_DELIVERED,
            (json!({"messageId": w.message}), Some("NOT_FOUND")),
        ),
        (
            e::MESSAGE_READ,
            (json!({"messageId": w.message}), Some("NOT_FOUND")),
        ),
        (
            e::EDIT_MESSAGE,
            (
                json!({"messageId": w.message, "content": "mine now"}),
                Some("NOT_FOUND"),
            ),
        ),
        (
            e::DELETE_MESSAGE,
            (json!({"messageId": w.message}), Some("NOT_FOUND")),
        ),
        (
            e::TYPING_START,
            (json!({"receiverId": w.bob.id}), Some("FORBIDDEN")),
        ),
        // A stop without a start is forwarded to no one (and says only who stopped).
        (e::TYPING_STOP, (json!({"receiverId": w.bob.id}), None)),
        (e::GET_ONLINE_USERS, (json!({}), None)),
        (e::HEALTH_CHECK, (json!({}), None)),
        (
            e::MARK_CONVERSATION_READ,
            (
                json!({"conversationId": w.group, "upToMessageId": w.group_message}),
                Some("FORBIDDEN"),
            ),
        ),
    ])
}

/// The events the gateway's `dispatch` matches on (read from its source), so that a new
/// event needs an entry in [`socket_entries`].
fn handled_events() -> BTreeSet<String> {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway/handlers.rs"),
    )
    .unwrap();
    let start = source
        .find("async fn dispatch")
        .expect("dispatch in handlers.rs");
    let body = &source[start..];
    let body = &body[..body[1..]
        .find("\nasync fn ")
        .map(|i| i + 1)
        .unwrap_or(body.len())];
    let mut names = BTreeSet::new();
    for line in body.lines().filter(|l| l.contains("=>")) {
        let arm = line.split("=>").next().unwrap_or_default();
        for (i, _) in arm.match_indices("events::") {
            let name: String = arm[i + "events::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(nexus_protocol_event(&name));
            }
        }
    }
    names
}

/// The wire name of `events::NAME` (every constant's value is its name).
fn nexus_protocol_event(name: &str) -> String {
    name.to_string()
}
