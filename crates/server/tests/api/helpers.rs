//! `spawn_app()` and typed helpers: each test gets a fresh database (an SQLite file in a
//! temporary directory, or a new PostgreSQL database), the real application on a random
//! port, and an HTTP client.

use std::sync::Arc;

use nexus::app::{Application, Overrides};
use nexus::config::Config;
use nexus::delivery::RecordedPushes;
use nexus::state::AppState;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("NEXUS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// `None` when PostgreSQL is unreachable outside CI (the test is skipped). With
    /// `CI=true` an unreachable PostgreSQL fails the test.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                        eprintln!("skipping PostgreSQL test: {admin} unreachable: {e}");
                        return None;
                    }
                    Err(e) => panic!("CI=true and PostgreSQL at {admin} is unreachable: {e}"),
                };
                let name = format!("nexus_test_{}", uuid::Uuid::new_v4().simple());
                conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside async: drop the database from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut c) = PgConnection::connect(&postgres_admin_url()).await {
                    let _ = c
                        .execute(
                            format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str(),
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// Every push the app handed to its push queue (users connected nowhere).
    pub pushes: Arc<RecordedPushes>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's task: what `run_until` returned once it stopped.
    pub served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Declared last: dropped after the server has been told to stop.
    _db: Arc<TestDb>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the real application on 127.0.0.1 with a random port and a fresh database, after
/// `configure` has adjusted the test configuration.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    spawn(backend, configure, true).await
}

/// [`spawn_app_with`] with the application's own push queue (the FCM and Web Push senders
/// the configuration sets up) instead of a recording one.
pub async fn spawn_app_with_push(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    spawn(backend, configure, false).await
}

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
    record_pushes: bool,
) -> Option<TestApp> {
    let db = TestDb::create(backend).await?;
    Some(spawn_on(db, configure, record_pushes).await)
}

/// The application on an existing test database (e.g. one filled by an older schema).
pub async fn spawn_on(
    db: TestDb,
    configure: impl FnOnce(&mut Config),
    record_pushes: bool,
) -> TestApp {
    init_test_logs();
    let mut config = Config::for_tests(db.url.clone());
    configure(&mut config);
    let pushes = Arc::new(RecordedPushes::default());
    let overrides = Overrides {
        push: record_pushes.then(|| pushes.clone() as _),
    };
    let app = Application::build_with(config, overrides)
        .await
        .expect("application starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        pushes,
        shutdown: Some(tx),
        served: Some(served),
        _db: Arc::new(db),
    }
}

/// Test logs are silent unless `TEST_LOG` is set.
fn init_test_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        nexus::telemetry::init(false);
    }
}

/// A registered user and their access token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub token: String,
}

impl TestApp {
    /// Removes a user (and their counter and devices) behind the application's back: what
    /// an operator's deletion leaves. The user must have no messages.
    pub async fn delete_user(&self, id: &str) {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self._db.url)
            .await
            .expect("connect");
        for table in ["push_devices", "user_seqs"] {
            let _ = sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(id)
                .execute(&mut conn)
                .await;
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut conn)
            .await
            .expect("delete user");
    }

    /// This app's database (`sqlite://…` or `postgres://…`).
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The SQLite file of this app's database (`None` on PostgreSQL).
    pub fn db_file(&self) -> Option<String> {
        self._db.url.strip_prefix("sqlite://").map(str::to_string)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// GET that must succeed; returns the JSON body.
    pub async fn get_ok(&self, path: &str, user: &TestUser) -> Value {
        let resp = self.get(path, &user.token).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.expect("json")
    }

    pub async fn register(&self, name: &str) -> TestUser {
        // A decimal suffix: a hex one can contain a name ("ada") and surprise a search.
        let email = format!(
            "{}-{}@example.org",
            name.to_lowercase(),
            uuid::Uuid::new_v4().as_u128()
        );
        let resp = self
            .post_json(
                "/auth/register",
                &json!({"name": name, "email": email, "password": "correct horse battery"}),
                None,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.expect("json");
        TestUser {
            id: body["user"]["id"].as_str().expect("id").to_string(),
            email,
            token: body["accessToken"].as_str().expect("token").to_string(),
        }
    }

    pub async fn send(&self, from: &TestUser, to: &TestUser, content: &str) -> Response {
        self.post_json(
            "/messages",
            &json!({"receiverId": to.id, "content": content}),
            Some(&from.token),
        )
        .await
    }

    /// Sends a message that must be stored; returns it.
    pub async fn send_ok(&self, from: &TestUser, to: &TestUser, content: &str) -> Value {
        let resp = self.send(from, to, content).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "send");
        resp.json().await.expect("json")
    }

    pub async fn edit(&self, user: &TestUser, message_id: &str, content: &str) -> Response {
        self.client
            .patch(self.url(&format!("/messages/{message_id}")))
            .bearer_auth(&user.token)
            .json(&json!({ "content": content }))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, user: &TestUser, message_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/messages/{message_id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("request")
    }

    /// `kind` is `read` or `delivered`.
    pub async fn mark(&self, user: &TestUser, message_id: &str, kind: &str) -> Response {
        self.post_json(
            &format!("/messages/{message_id}/{kind}"),
            &json!({}),
            Some(&user.token),
        )
        .await
    }

    pub async fn conversation(&self, user: &TestUser, other: &TestUser) -> Vec<Value> {
        let page = self
            .get_ok(
                &format!("/messages/conversation/{}?limit=200", other.id),
                user,
            )
            .await;
        page["messages"].as_array().expect("messages").clone()
    }

    /// Every event of `user`'s feed after `since`, following the cursor to the end.
    pub async fn sync_all(&self, user: &TestUser, since: i64) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor = since;
        loop {
            let page = self
                .get_ok(&format!("/sync?since={cursor}&limit=100"), user)
                .await;
            events.extend(page["events"].as_array().expect("events").iter().cloned());
            cursor = page["nextCursor"].as_i64().expect("cursor");
            if !page["hasMore"].as_bool().expect("hasMore") {
                return events;
            }
        }
    }
}

/// Asserts the contract's error shape and status; returns the message.
pub async fn assert_error(resp: Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status, "status");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["statusCode"], status.as_u16(), "statusCode in {body}");
    assert_eq!(
        body["error"],
        status.canonical_reason().unwrap_or_default(),
        "error in {body}"
    );
    body["message"].as_str().expect("message").to_string()
}

/// Defines each test once and runs it on SQLite and on PostgreSQL (skipped when PostgreSQL
/// is unreachable outside CI). `(app, config: |c| …)` adjusts the configuration first.
#[macro_export]
macro_rules! on_both_backends {
    (@config) => { |_: &mut nexus::config::Config| {} };
    (@config $cfg:expr) => { $cfg };
    ($(async fn $name:ident($app:ident $(, config: $cfg:expr)?) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($app: $crate::helpers::TestApp) $body

                async fn on(backend: $crate::helpers::Backend) {
                    let config = $crate::on_both_backends!(@config $($cfg)?);
                    if let Some(app) = $crate::helpers::spawn_app_with(backend, config).await {
                        run(app).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    on($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    on($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}
