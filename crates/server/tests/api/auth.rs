//! Accounts: register, login, tokens, search, devices.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};
use crate::on_both_backends;

on_both_backends! {
    async fn register_answers_201_with_a_token_and_never_the_password(app) {
        let resp = app
            .post_json("/auth/register", &json!({"name": " Ada ", "email": "Ada@Example.org", "password": "correct horse"}), None)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["user"]["name"], "Ada");
        assert_eq!(body["user"]["email"], "ada@example.org");
        assert!(body["accessToken"].as_str().unwrap().len() > 20);
        let text = body.to_string();
        assert!(!text.contains("correct horse") && !text.contains("argon2"), "{text}");
        let user = body["user"].as_object().unwrap();
        assert_eq!(user.len(), 3, "user is exactly {{id, name, email}}: {text}");

        let me: Value = app.get("/users/me", body["accessToken"].as_str().unwrap()).await.json().await.unwrap();
        assert_eq!(me, body["user"]);
    }

    async fn register_refuses_invalid_input_with_400(app) {
        for (body, why) in [
            (json!({"name": "A", "email": "not-an-email", "password": "correct horse"}), "email"),
            (json!({"name": "A", "email": "a@example.org", "password": "short"}), "password"),
            (json!({"name": "  ", "email": "a@example.org", "password": "correct horse"}), "name"),
            (json!({"email": "a@example.org", "password": "correct horse"}), "missing field"),
            (json!({"name": 5, "email": "a@example.org", "password": "correct horse"}), "invalid type"),
        ] {
            let msg = assert_error(app.post_json("/auth/register", &body, None).await, StatusCode::BAD_REQUEST).await;
            assert!(msg.contains(why), "{why}: {msg}");
        }
        // nothing was stored: the address is still free
        let resp = app.post_json("/auth/register", &json!({"name": "A", "email": "a@example.org", "password": "correct horse"}), None).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }

    async fn a_taken_email_is_409_whatever_its_case(app) {
        let body = json!({"name": "A", "email": "same@example.org", "password": "correct horse"});
        assert_eq!(app.post_json("/auth/register", &body, None).await.status(), StatusCode::CREATED);
        let again = json!({"name": "B", "email": "SAME@example.org", "password": "other password"});
        assert_error(app.post_json("/auth/register", &again, None).await, StatusCode::CONFLICT).await;
    }

    async fn login_works_and_answers_unknown_email_like_wrong_password(app) {
        let u = app.register("Ada").await;
        let ok = app.post_json("/auth/login", &json!({"email": u.email, "password": "correct horse battery"}), None).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let body: Value = ok.json().await.unwrap();
        assert_eq!(body["user"]["id"], u.id.as_str());
        assert_eq!(app.get("/users/me", body["accessToken"].as_str().unwrap()).await.status(), StatusCode::OK);

        let wrong = app.post_json("/auth/login", &json!({"email": u.email, "password": "wrong password"}), None).await;
        let wrong_msg = assert_error(wrong, StatusCode::UNAUTHORIZED).await;
        let unknown = app.post_json("/auth/login", &json!({"email": "nobody@example.org", "password": "wrong password"}), None).await;
        let unknown_msg = assert_error(unknown, StatusCode::UNAUTHORIZED).await;
        assert_eq!(wrong_msg, unknown_msg);
    }

    async fn repeated_failed_logins_for_one_email_are_limited(app) {
        let u = app.register("Ada").await;
        let mut limited = false;
        for _ in 0..12 {
            let resp = app.post_json("/auth/login", &json!({"email": u.email, "password": "wrong password"}), None).await;
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(resp.headers().contains_key("retry-after"));
                limited = true;
                break;
            }
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        assert!(limited, "12 failed logins in a row were never limited");
        // even the right password waits now
        let resp = app.post_json("/auth/login", &json!({"email": u.email, "password": "correct horse battery"}), None).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        // other accounts are unaffected
        let v = app.register("Bob").await;
        let resp = app.post_json("/auth/login", &json!({"email": v.email, "password": "correct horse battery"}), None).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    async fn protected_routes_refuse_missing_forged_expired_and_alg_none_tokens(app) {
        let u = app.register("Ada").await;
        let no_token = app.client.get(app.url("/users/me")).send().await.unwrap();
        assert_error(no_token, StatusCode::UNAUTHORIZED).await;

        let forged = nexus::accounts::Tokens::new(&[1u8; 32], 60).issue(&u.id).unwrap();
        assert_error(app.get("/users/me", &forged).await, StatusCode::UNAUTHORIZED).await;

        let mut parts = u.token.split('.');
        let (_, payload) = (parts.next().unwrap(), parts.next().unwrap());
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        assert_error(app.get("/users/me", &format!("{none_header}.{payload}.")).await, StatusCode::UNAUTHORIZED).await;

        // signed with the server's own key, but its lifetime is over
        let expired = expired_token(&app, &u.id).await;
        assert_error(app.get("/users/me", &expired).await, StatusCode::UNAUTHORIZED).await;

        for path in ["/users?search=a", "/messages/conversations/all", "/sync", "/messages/sync"] {
            let resp = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
    }

    async fn search_finds_others_by_name_but_never_yourself(app) {
        let ada = app.register("Ada").await;
        let _bob = app.register("Bob").await;
        let _bobby = app.register("Bobby").await;
        let all = app.get_ok("/users?search=bo", &ada).await;
        let names: Vec<&str> = all.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Bob", "Bobby"]);
        let empty = app.get_ok("/users?search=", &ada).await;
        assert_eq!(empty, serde_json::json!([]), "an empty term lists no one");
        let found = app.get_ok("/users?search=BOBB", &ada).await;
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["name"], "Bobby");
        assert!(found[0].get("password").is_none() && found[0].get("passwordHash").is_none());
        let none = app.get_ok("/users?search=ada", &ada).await;
        assert_eq!(none.as_array().unwrap().len(), 0, "yourself is never a result");
        let like = app.get_ok("/users?search=%25", &ada).await;
        assert_eq!(like.as_array().unwrap().len(), 0, "% is a literal, not a wildcard");
    }

    async fn a_user_registers_many_push_devices_and_unregisters_them(app) {
        let u = app.register("Ada").await;
        let r1: Value = app.post_json("/users/fcm/register", &json!({"deviceToken": "phone-token"}), Some(&u.token)).await.json().await.unwrap();
        assert_eq!(r1["fcmDeviceToken"], "phone-token");
        let r2 = app.post_json("/users/fcm/register", &json!({"deviceToken": "laptop-token"}), Some(&u.token)).await;
        assert_eq!(r2.status(), StatusCode::OK);
        let r2: Value = r2.json().await.unwrap();
        assert_eq!(r2["deviceTokens"].as_array().unwrap().len(), 2);
        assert_eq!(r2["id"], u.id.as_str());

        let bad = app.post_json("/users/fcm/register", &json!({"deviceToken": ""}), Some(&u.token)).await;
        assert_error(bad, StatusCode::BAD_REQUEST).await;

        let r3: Value = app.post_json("/users/fcm/unregister", &json!({"deviceToken": "phone-token"}), Some(&u.token)).await.json().await.unwrap();
        assert_eq!(r3["deviceTokens"], json!(["laptop-token"]));
        let r4: Value = app.post_json("/users/fcm/unregister", &json!({}), Some(&u.token)).await.json().await.unwrap();
        assert_eq!(r4["deviceTokens"], json!([]));
        assert_eq!(r4["fcmDeviceToken"], Value::Null);
    }

    async fn health_and_readiness(app) {
        let h = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(h.status(), StatusCode::OK);
        let r: Value = app.client.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["database"], "up");
        let missing = app.client.get(app.url("/no/such/route")).send().await.unwrap();
        assert_error(missing, StatusCode::NOT_FOUND).await;
        let wrong_method = app.client.put(app.url("/messages")).send().await.unwrap();
        assert_error(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    }
}

/// A token signed with the server's own key whose expiry is long past.
async fn expired_token(app: &TestApp, user: &str) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let secret: String = app
        .state
        .store
        .setting_or_insert("jwt_secret", String::new)
        .await
        .unwrap();
    let claims = json!({"sub": user, "iat": 1_000_000_000u64, "exp": 1_000_000_100u64});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

on_both_backends! {
    async fn cors_allows_exactly_the_frontend_origin(app, config: |c: &mut nexus::config::Config| c.frontend_url = Some("http://localhost:5173".into())) {
        for path in ["/auth/login", "/socket.io/?EIO=4&transport=polling"] {
            let ok = app.client.request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", "http://localhost:5173")
                .header("access-control-request-method", "POST")
                .send().await.unwrap();
            assert_eq!(ok.headers()["access-control-allow-origin"], "http://localhost:5173", "{path}");
            let other = app.client.request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", "http://evil.example")
                .header("access-control-request-method", "POST")
                .send().await.unwrap();
            assert!(!other.headers().contains_key("access-control-allow-origin"), "{path}");
        }
    }
}
