//! Abuse paths found in review, each closed (docs/operations.md, "Limits"). Every test here
//! fails against the code before its fix.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};
use crate::on_both_backends;

async fn register_raw(app: &TestApp, name: &str, email: &str) -> reqwest::Response {
    app.post_json(
        "/auth/register",
        &json!({"name": name, "email": email, "password": "correct horse battery"}),
        None,
    )
    .await
}

on_both_backends! {
    // A5: NUL made PostgreSQL answer 500 (and fail the writer's whole batch); names could
    // carry bidi overrides and zero-width characters; e-mails control characters.
    async fn nul_bidi_zero_width_and_control_characters_are_refused_with_400(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let msg = assert_error(app.send(&ada, &bob, "hello\u{0}world").await, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("NUL"), "{msg}");
        let sent = app.send_ok(&ada, &bob, "fine").await;
        let id = sent["id"].as_str().unwrap();
        assert_error(app.edit(&ada, id, "bad\u{0}").await, StatusCode::BAD_REQUEST).await;

        for name in ["Eve\u{0}", "Eve\u{202E}nimda", "E\u{200B}ve", "\u{2067}Eve", "Eve\u{FEFF}"] {
            let email = format!("eve-{}@example.org", uuid::Uuid::new_v4().simple());
            assert_error(register_raw(&app, name, &email).await, StatusCode::BAD_REQUEST).await;
        }
        for email in ["eve\u{0}@example.org", "eve\u{7}@example.org", "eve@exa\u{1b}mple.org"] {
            assert_error(register_raw(&app, "Eve", email).await, StatusCode::BAD_REQUEST).await;
            let login = app.post_json("/auth/login", &json!({"email": email, "password": "correct horse battery"}), None).await;
            assert_error(login, StatusCode::UNAUTHORIZED).await;
        }
        let device = app.post_json("/users/fcm/register", &json!({"deviceToken": "tok\u{0}en"}), Some(&ada.token)).await;
        assert_error(device, StatusCode::BAD_REQUEST).await;
        let search = app.get("/users?search=Bo%00b", &ada.token).await;
        assert_error(search, StatusCode::BAD_REQUEST).await;

        // Nothing of it was stored, and the writer still works for everyone.
        let history = app.conversation(&ada, &bob).await;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["content"], "fine");
        app.send_ok(&bob, &ada, "still fine").await;
    }

    // A8: an empty term listed 50 users with their e-mails, and terms matched e-mail
    // substrings.
    async fn search_never_lists_the_email_of_a_stranger(app) {
        let ada = app.register("Ada").await;
        let bob = app.register("Bobbie").await;
        let found = app.get_ok("/users?search=bobb", &ada).await;
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["id"], bob.id.as_str());
        assert_eq!(found[0]["email"], Value::Null, "a stranger's e-mail: {found}");

        // A piece of an e-mail finds no one; the exact e-mail finds its owner, with it.
        let domain = bob.email.split('@').nth(1).unwrap();
        assert_eq!(app.get_ok(&format!("/users?search={domain}"), &ada).await, json!([]));
        let local = bob.email.split('@').next().unwrap();
        assert_eq!(app.get_ok(&format!("/users?search={local}"), &ada).await, json!([]));
        let exact = app.get_ok(&format!("/users?search={}", bob.email.to_uppercase()), &ada).await;
        assert_eq!(exact.as_array().unwrap().len(), 1);
        assert_eq!(exact[0]["email"], bob.email.as_str());

        // Once they share a conversation, a contact's e-mail is shown.
        app.send_ok(&ada, &bob, "hi").await;
        let found = app.get_ok("/users?search=bobb", &ada).await;
        assert_eq!(found[0]["email"], bob.email.as_str());
    }

    async fn searches_are_limited_per_user(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        for i in 0..30 {
            let resp = app.get(&format!("/users?search=x{i}"), &ada.token).await;
            assert_eq!(resp.status(), StatusCode::OK, "search {} of 30", i + 1);
        }
        let over = app.get("/users?search=x", &ada.token).await;
        assert!(over.headers().contains_key("retry-after"));
        assert_error(over, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(app.get("/users?search=x", &bob.token).await.status(), StatusCode::OK, "another user is not affected");
    }

    // A2: edits, deletes and receipts had no limit: one client could fill the writer's
    // queue. Now a budget of their own (RATE_LIMIT_CHANGES_PER_MINUTE), apart from sends.
    async fn edits_deletes_and_receipts_share_a_budget_apart_from_sends(app, config: |c: &mut nexus::config::Config| c.rate_limit_changes_per_minute = 5) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let mut m = Vec::new();
        for i in 0..3 {
            m.push(app.send_ok(&ada, &bob, &format!("m{i}")).await["id"].as_str().unwrap().to_string());
        }
        assert_eq!(app.edit(&ada, &m[0], "v2").await.status(), StatusCode::OK);
        assert_eq!(app.edit(&ada, &m[0], "v3").await.status(), StatusCode::OK);
        assert_eq!(app.delete(&ada, &m[1]).await.status(), StatusCode::OK);
        assert_eq!(app.mark(&ada, &m[2], "read").await.status(), StatusCode::FORBIDDEN, "refused by a rule: still counted");
        assert_eq!(app.edit(&ada, &m[2], "5th").await.status(), StatusCode::OK, "the 5th change passes");
        let over = app.edit(&ada, &m[2], "6th").await;
        assert!(over.headers().contains_key("retry-after"));
        assert_error(over, StatusCode::TOO_MANY_REQUESTS).await;
        assert_error(app.mark(&ada, &m[2], "read").await, StatusCode::TOO_MANY_REQUESTS).await;

        // Sends have their own budget; the other user has theirs.
        app.send_ok(&ada, &bob, "a send still passes").await;
        assert_eq!(app.mark(&bob, &m[2], "read").await.status(), StatusCode::OK);
        let history = app.conversation(&ada, &bob).await;
        assert_eq!(history.iter().filter(|h| h["content"] == "6th").count(), 0, "the refused edit changed nothing");
    }

    // A2: every edit keeps the text it replaced, and edits had no cap: one message could
    // grow its history without bound. Now 20 edits per message, and 50,000 characters of
    // replaced text.
    async fn a_message_takes_twenty_edits_and_the_twenty_first_is_refused(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let id = app.send_ok(&ada, &bob, "v0").await["id"].as_str().unwrap().to_string();
        for i in 1..=20 {
            assert_eq!(app.edit(&ada, &id, &format!("v{i}")).await.status(), StatusCode::OK, "edit {i} passes");
        }
        let message = assert_error(app.edit(&ada, &id, "v21").await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("at most 20"), "{message}");
        assert_eq!(app.conversation(&bob, &ada).await[0]["content"], "v20", "the refused edit changed nothing");
        let edits = app.sync_all(&bob, 0).await.iter().filter(|e| e["type"] == "message.edited").count();
        assert_eq!(edits, 20);
        // Another message of the same sender is not affected.
        let other = app.send_ok(&ada, &bob, "w0").await["id"].as_str().unwrap().to_string();
        assert_eq!(app.edit(&ada, &other, "w1").await.status(), StatusCode::OK);
    }

    async fn an_edit_history_is_capped_at_fifty_thousand_characters(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        let long = |c: char| c.to_string().repeat(10_000);
        let id = app.send_ok(&ada, &bob, &long('a')).await["id"].as_str().unwrap().to_string();
        // Five edits replace 5 x 10,000 characters: the history is full.
        for c in ['b', 'c', 'd', 'e', 'f'] {
            assert_eq!(app.edit(&ada, &id, &long(c)).await.status(), StatusCode::OK, "edit to {c}");
        }
        let message = assert_error(app.edit(&ada, &id, "short").await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("edit history"), "{message}");
        assert_eq!(app.conversation(&bob, &ada).await[0]["content"], long('f'), "the refused edit changed nothing");
        assert_eq!(app.delete(&ada, &id).await.status(), StatusCode::OK, "it can still be deleted");
    }
}

/// A12: the SQLite file (with every message and the generated JWT secret) and its WAL were
/// created readable by everyone (0644).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_file_and_its_wal_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    app.send_ok(&ada, &bob, "a write, so that the WAL exists")
        .await;
    let db = app.db_file().unwrap();
    for file in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
}

async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> StatusCode {
    app.client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn register_from(app: &TestApp, ip: &str) -> StatusCode {
    app.client
        .post(app.url("/auth/register"))
        .header("x-forwarded-for", ip)
        .json(&json!({"name": "N", "email": format!("{}@example.org", uuid::Uuid::new_v4().simple()), "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .status()
}

fn per_ip(n: u32) -> impl FnOnce(&mut nexus::config::Config) {
    move |c: &mut nexus::config::Config| {
        c.rate_limit_auth_per_ip_per_minute = n;
        c.trust_x_forwarded_for = true;
    }
}

on_both_backends! {
    // A3: password hashing had no per-address limit (500 logins with random e-mails from
    // one address delayed a real login by minutes) and registration no limit at all.
    async fn logins_and_registrations_are_limited_per_client_address(app, config: per_ip(5)) {
        for i in 1..=5 {
            let status = login_from(&app, "198.51.100.1", &format!("nobody{i}@example.org"), "wrong password").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "login {i} of 5");
        }
        assert_eq!(login_from(&app, "198.51.100.1", "nobody6@example.org", "wrong password").await, StatusCode::TOO_MANY_REQUESTS, "the 6th");
        assert_eq!(login_from(&app, "198.51.100.2", "nobody7@example.org", "wrong password").await, StatusCode::UNAUTHORIZED, "another address");

        for i in 1..=5 {
            assert_eq!(register_from(&app, "198.51.100.3").await, StatusCode::CREATED, "registration {i} of 5");
        }
        assert_eq!(register_from(&app, "198.51.100.3").await, StatusCode::TOO_MANY_REQUESTS, "the 6th");
        assert_eq!(register_from(&app, "198.51.100.4").await, StatusCode::CREATED, "another address");
    }

    // A3: one attempt every 6 s against a victim's e-mail kept the victim locked out even
    // with the right password. Now only failures count, 10 a minute per e-mail; the 11th is
    // refused and bars its address from that e-mail; the right password from any other
    // address still logs in.
    async fn failed_logins_are_limited_per_email_without_locking_out_the_right_password(app, config: per_ip(10_000)) {
        let victim = app.register("Victim").await;
        let right = "correct horse battery";
        for i in 1..=10 {
            assert_eq!(login_from(&app, "192.0.2.66", &victim.email, "guess").await, StatusCode::UNAUTHORIZED, "failure {i} of 10");
        }
        assert_eq!(login_from(&app, "192.0.2.66", &victim.email, "guess").await, StatusCode::TOO_MANY_REQUESTS, "the 11th failure");
        assert_eq!(login_from(&app, "192.0.2.66", &victim.email, right).await, StatusCode::TOO_MANY_REQUESTS, "the guesser's address is barred");
        assert_eq!(login_from(&app, "192.0.2.10", &victim.email, right).await, StatusCode::OK, "the owner, elsewhere");
        assert_eq!(login_from(&app, "192.0.2.10", &victim.email, right).await, StatusCode::OK, "successes never count");
        assert_eq!(login_from(&app, "192.0.2.77", &victim.email, "guess").await, StatusCode::TOO_MANY_REQUESTS, "a new guesser past the budget");
        assert_eq!(login_from(&app, "192.0.2.11", &victim.email, right).await, StatusCode::OK);
    }
}

/// A9: after a failed fsync the syncer went on marking commits as synced: a send could be
/// answered as durable although its page may never reach the disk. Now the node refuses
/// every write from then on, says it is not ready, and stops with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_acknowledging_and_fails_the_node() {
    let mut app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    app.send_ok(&ada, &bob, "before").await;

    app.state.store.inject_fsync_failure();
    let failed = app.send(&ada, &bob, "during").await;
    assert_eq!(
        failed.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "answered as durable"
    );
    // The node stops by itself, with an error (main exits non-zero).
    let served = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        app.served.take().unwrap(),
    )
    .await
    .expect("the node did not stop")
    .unwrap();
    assert!(
        served.is_err(),
        "run_until returned Ok after a failed fsync"
    );
    assert!(app.state.store.durability_failed());
    assert!(!app.state.health.check().await.ready(), "still ready");
}

async fn login_token(app: &TestApp, email: &str, password: &str) -> String {
    let resp = app
        .post_json(
            "/auth/login",
            &json!({"email": email, "password": password}),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["accessToken"].as_str().unwrap().to_string()
}

on_both_backends! {
    // A11: tokens could not be revoked.
    async fn logout_revokes_exactly_that_token(app) {
        let ada = app.register("Ada").await;
        let other = login_token(&app, &ada.email, "correct horse battery").await;
        assert_eq!(app.get("/users/me", &ada.token).await.status(), StatusCode::OK);
        let out = app.post_json("/auth/logout", &json!({}), Some(&ada.token)).await;
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_error(app.get("/users/me", &ada.token).await, StatusCode::UNAUTHORIZED).await;
        assert_error(app.post_json("/auth/logout", &json!({}), Some(&ada.token)).await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(app.get("/users/me", &other).await.status(), StatusCode::OK, "another token of the user");
    }

    async fn a_password_change_revokes_every_older_token(app) {
        let ada = app.register("Ada").await;
        let second = login_token(&app, &ada.email, "correct horse battery").await;
        let wrong = app.post_json("/auth/password", &json!({"currentPassword": "nope nope", "newPassword": "staple battery horse"}), Some(&ada.token)).await;
        assert_error(wrong, StatusCode::FORBIDDEN).await;
        assert_eq!(app.get("/users/me", &ada.token).await.status(), StatusCode::OK, "a refused change revokes nothing");

        let changed = app.post_json("/auth/password", &json!({"currentPassword": "correct horse battery", "newPassword": "staple battery horse"}), Some(&ada.token)).await;
        assert_eq!(changed.status(), StatusCode::OK);
        let fresh: Value = changed.json().await.unwrap();
        let fresh = fresh["accessToken"].as_str().unwrap();
        for old in [&ada.token, &second] {
            assert_error(app.get("/users/me", old).await, StatusCode::UNAUTHORIZED).await;
        }
        assert_eq!(app.get("/users/me", fresh).await.status(), StatusCode::OK);
        let old_password = app.post_json("/auth/login", &json!({"email": ada.email, "password": "correct horse battery"}), None).await;
        assert_error(old_password, StatusCode::UNAUTHORIZED).await;
        login_token(&app, &ada.email, "staple battery horse").await;
    }

    async fn a_token_of_a_deleted_user_is_refused(app) {
        let ada = app.register("Ada").await;
        assert_eq!(app.get("/users/me", &ada.token).await.status(), StatusCode::OK);
        app.delete_user(&ada.id).await;
        assert_error(app.get("/users/me", &ada.token).await, StatusCode::UNAUTHORIZED).await;
        assert_error(app.get("/sync", &ada.token).await, StatusCode::UNAUTHORIZED).await;
    }
}
