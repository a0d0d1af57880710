//! Durability (docs/design.md): every message acknowledged with 201 survives `kill -9` of the
//! server, and tokens issued before the crash still work after it (the generated JWT secret
//! is kept in the database).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Backend, TestDb};

const CLIENTS: usize = 8;
/// Kill once this many sends were acknowledged (clients keep sending while it happens).
const KILL_AFTER_ACKS: usize = 300;

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(database_url: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_nexus"))
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("RATE_LIMIT_MESSAGES_PER_MINUTE", "100000")
            .env("RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", "100000")
            .env("RUST_LOG", "warn")
            .env_remove("JWT_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nexus");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", server.base)).send().await {
                if r.status() == StatusCode::OK {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nexus did not become ready");
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register(client: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let body: Value = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"name": name, "email": format!("{name}@example.org"), "password": "correct horse"}))
        .send().await.unwrap().json().await.unwrap();
    (
        body["user"]["id"].as_str().unwrap().into(),
        body["accessToken"].as_str().unwrap().into(),
    )
}

async fn acknowledged_messages_survive_kill_9(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let mut server = Server::start(&db.url).await;
    let client = reqwest::Client::new();
    let mut pairs = Vec::new();
    for i in 0..CLIENTS {
        let sender = register(&client, &server.base, &format!("s{i}")).await;
        let receiver = register(&client, &server.base, &format!("r{i}")).await;
        pairs.push((sender, receiver));
    }
    let acked: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, ((_, token), (receiver, _))) in pairs.iter().cloned().enumerate() {
        let (client, base, acked, count) = (
            client.clone(),
            server.base.clone(),
            acked.clone(),
            count.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for k in 0.. {
                let resp = client
                    .post(format!("{base}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"receiverId": receiver, "content": format!("{i}:{k}"), "clientMessageId": format!("{i}:{k}")}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let m: Value = r.json().await.unwrap();
                        acked.lock().unwrap().push((i, m["id"].as_str().unwrap().to_string()));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    while count.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);

    let server = Server::start(&db.url).await;
    for (i, ((_, token), (receiver, _))) in pairs.iter().enumerate() {
        let page: Value = client
            .get(format!(
                "{}/messages/conversation/{receiver}?limit=200",
                server.base
            ))
            .bearer_auth(token) // issued before the crash
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let stored: HashSet<&str> = page["messages"]
            .as_array()
            .expect("token still valid")
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        for (_, id) in acked.iter().filter(|(c, _)| *c == i) {
            assert!(
                stored.contains(id.as_str()),
                "acknowledged message {id} of client {i} was lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_on_sqlite() {
    acknowledged_messages_survive_kill_9(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_on_postgres() {
    acknowledged_messages_survive_kill_9(Backend::Postgres).await;
}
