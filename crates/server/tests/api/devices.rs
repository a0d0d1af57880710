//! Push devices over HTTP: the brief's FCM register/unregister answers, Web Push
//! subscriptions, the caller's device list, the per-user limit, tokens changing hands, and
//! the migration that moved the old token table.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, Backend, TestApp, TestDb, TestUser};
use crate::on_both_backends;

async fn register(app: &TestApp, user: &TestUser, token: &str) -> Value {
    let resp = app
        .post_json(
            "/users/fcm/register",
            &json!({"deviceToken": token}),
            Some(&user.token),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "register {token}");
    resp.json().await.unwrap()
}

async fn devices(app: &TestApp, user: &TestUser) -> Vec<Value> {
    app.get_ok("/users/devices", user)
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn tokens(devices: &[Value]) -> Vec<&str> {
    devices
        .iter()
        .map(|d| d["token"].as_str().or(d["endpoint"].as_str()).unwrap())
        .collect()
}

/// A subscription a browser could send (the keys are real; the endpoint needs no service).
fn subscription(endpoint: &str) -> Value {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    use base64::Engine;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {
            "p256dh": b64.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            "auth": b64.encode(rand::random::<[u8; 16]>()),
        }
    })
}

on_both_backends! {
    async fn a_browser_subscribes_lists_and_unsubscribes(app) {
        let ada = app.register("Ada").await;
        let endpoint = "https://updates.push.example.net/wpush/v2/abc";
        let resp = app.post_json("/users/webpush/subscribe", &subscription(endpoint), Some(&ada.token)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let device: Value = resp.json().await.unwrap();
        assert_eq!(device["kind"], "webpush");
        assert_eq!(device["endpoint"], endpoint);
        assert!(device["id"].as_str().unwrap().len() == 36);
        assert!(device["createdAt"].as_str().unwrap().ends_with('Z'));
        assert!(device.get("keys").is_none() && !device.to_string().contains("p256dh"), "keys never come back: {device}");
        register(&app, &ada, "ada-phone").await;

        let list = devices(&app, &ada).await;
        assert_eq!(tokens(&list), ["ada-phone", endpoint], "most recently used first");
        assert_eq!(list[0]["kind"], "fcm");

        // Subscribing again (new keys after a browser update) keeps one device.
        app.post_json("/users/webpush/subscribe", &subscription(endpoint), Some(&ada.token)).await;
        let again = devices(&app, &ada).await;
        assert_eq!(again.len(), 2);
        assert_eq!(again[0]["id"], device["id"], "the same device, refreshed");

        let resp = app.post_json("/users/webpush/unsubscribe", &json!({"endpoint": endpoint}), Some(&ada.token)).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(tokens(&devices(&app, &ada).await), ["ada-phone"]);
        let twice = app.post_json("/users/webpush/unsubscribe", &json!({"endpoint": endpoint}), Some(&ada.token)).await;
        assert_eq!(twice.status(), StatusCode::NO_CONTENT, "unsubscribing is idempotent");
        // The brief's unregister-all removes FCM tokens only.
        let all: Value = app.post_json("/users/fcm/unregister", &json!({}), Some(&ada.token)).await.json().await.unwrap();
        assert_eq!(all["deviceTokens"], json!([]));
        assert_eq!(all["fcmDeviceToken"], Value::Null);
    }

    async fn bad_subscriptions_are_400_and_store_nothing(app) {
        let ada = app.register("Ada").await;
        let good = subscription("https://push.example.net/x");
        let mut cases = vec![
            (json!({"endpoint": "https://push.example.net/x"}), "keys"),
            (json!({"keys": good["keys"]}), "endpoint"),
            (subscription("http://push.example.net/x"), "https://"),
            (subscription("https://127.0.0.1:9000/x"), "host name"),
            (subscription("https://localhost/x"), "host name"),
            (subscription("not a url"), "URL"),
        ];
        let mut bad_point = good.clone();
        bad_point["keys"]["p256dh"] = json!("BBBB");
        cases.push((bad_point, "p256dh"));
        let mut bad_auth = good.clone();
        bad_auth["keys"]["auth"] = json!("c2hvcnQ");
        cases.push((bad_auth, "auth"));
        for (body, why) in cases {
            let resp = app.post_json("/users/webpush/subscribe", &body, Some(&ada.token)).await;
            let message = assert_error(resp, StatusCode::BAD_REQUEST).await;
            assert!(message.contains(why), "{why}: {message}");
        }
        assert!(devices(&app, &ada).await.is_empty());
        let missing = app.post_json("/users/webpush/unsubscribe", &json!({}), Some(&ada.token)).await;
        assert_error(missing, StatusCode::BAD_REQUEST).await;
        for path in ["/users/devices"] {
            let resp = app.client.get(app.url(path)).send().await.unwrap();
            assert_error(resp, StatusCode::UNAUTHORIZED).await;
        }
        for path in ["/users/webpush/subscribe", "/users/webpush/unsubscribe", "/users/fcm/register", "/users/fcm/unregister"] {
            let resp = app.post_json(path, &good, None).await;
            assert_error(resp, StatusCode::UNAUTHORIZED).await;
        }
    }

    async fn a_token_registered_by_another_user_moves_to_them(app) {
        let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
        register(&app, &ada, "shared-phone").await;
        register(&app, &ada, "ada-laptop").await;
        let endpoint = "https://push.example.net/shared-browser";
        app.post_json("/users/webpush/subscribe", &subscription(endpoint), Some(&ada.token)).await;

        // Bob logs in on the same phone and browser.
        let answer = register(&app, &bob, "shared-phone").await;
        assert_eq!(answer["deviceTokens"], json!(["shared-phone"]), "only bob's own devices");
        assert_eq!(answer["id"], bob.id.as_str());
        app.post_json("/users/webpush/subscribe", &subscription(endpoint), Some(&bob.token)).await;

        assert_eq!(tokens(&devices(&app, &ada).await), ["ada-laptop"]);
        let mut bobs = tokens(&devices(&app, &bob).await).into_iter().map(str::to_string).collect::<Vec<_>>();
        bobs.sort();
        assert_eq!(bobs, [endpoint.to_string(), "shared-phone".to_string()]);

        // Ada cannot remove what is now bob's.
        app.post_json("/users/fcm/unregister", &json!({"deviceToken": "shared-phone"}), Some(&ada.token)).await;
        app.post_json("/users/webpush/unsubscribe", &json!({"endpoint": endpoint}), Some(&ada.token)).await;
        assert_eq!(devices(&app, &bob).await.len(), 2);
    }

    async fn a_user_keeps_at_most_max_devices_the_least_recently_used_goes(app, config: |c: &mut nexus::config::Config| c.max_devices_per_user = 3) {
        let ada = app.register("Ada").await;
        for token in ["a", "b", "c"] {
            register(&app, &ada, token).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // "a" comes back (the app started again on that phone): "b" is now the oldest.
        register(&app, &ada, "a").await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        let answer = register(&app, &ada, "d").await;
        assert_eq!(answer["deviceTokens"], json!(["d", "a", "c"]));
        assert_eq!(answer["fcmDeviceToken"], "d");
        assert_eq!(tokens(&devices(&app, &ada).await), ["d", "a", "c"]);
    }

    async fn the_vapid_public_key_is_404_while_web_push_is_off(app) {
        let resp = app.client.get(app.url("/users/webpush/vapid-public-key")).send().await.unwrap();
        let message = assert_error(resp, StatusCode::NOT_FOUND).await;
        assert!(message.contains("not configured"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vapid_public_key_is_served_without_login() {
    let (private, public) = nexus::push::vapid::generate();
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |c| {
        c.vapid_private_key = Some(private);
        c.vapid_subject = Some("https://chat.example.org/contact".into());
    })
    .await
    .unwrap();
    let resp = app
        .client
        .get(app.url("/users/webpush/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"publicKey": public}));
}

async fn migration_moves_old_tokens(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // The schema before devices had a table of their own, with one registered token.
    let (user, token) = (uuid::Uuid::now_v7().to_string(), "legacy-fcm-token");
    {
        use sqlx::{AnyConnection, Connection};
        sqlx::any::install_default_drivers();
        let url = match backend {
            Backend::Sqlite => format!("{}?mode=rwc", db.url),
            Backend::Postgres => db.url.clone(),
        };
        let mut conn = AnyConnection::connect(&url).await.unwrap();
        let mut migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        let before: Vec<_> = migrator
            .migrations
            .iter()
            .filter(|m| m.version < 6)
            .cloned()
            .collect();
        migrator.migrations = std::borrow::Cow::Owned(before);
        migrator.run(&mut conn).await.unwrap();
        sqlx::query("INSERT INTO users (id, name, email, password_hash, created_at) VALUES ($1, 'Ada', 'ada@example.org', 'x', 1)")
            .bind(&user).execute(&mut conn).await.unwrap();
        sqlx::query(
            "INSERT INTO push_devices (token, user_id, created_at) VALUES ($1, $2, 1700000000000)",
        )
        .bind(token)
        .bind(&user)
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = nexus::store::Store::connect(&db.url, 4).await.unwrap();
    let moved = store
        .devices(nexus::domain::UserId::parse(&user).unwrap())
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    let d = &moved[0];
    assert_eq!(
        (
            d.kind.as_str(),
            d.token.as_str(),
            d.created_at,
            d.last_used_at
        ),
        ("fcm", token, 1_700_000_000_000, 1_700_000_000_000)
    );
    assert!(uuid::Uuid::parse_str(&d.id).is_ok(), "a UUID id: {}", d.id);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_moves_registered_tokens_into_devices_sqlite() {
    migration_moves_old_tokens(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_moves_registered_tokens_into_devices_postgres() {
    migration_moves_old_tokens(Backend::Postgres).await;
}
