//! The HTTP calls of the contract the bench needs: `POST /auth/register` (its users are its
//! own, named after the run so runs never collide) and `GET /sync`.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use nexus_protocol::{AuthResponse, SyncPage};
use serde::Serialize;

use crate::progress::Progress;

/// The password of every bench user (the contract asks for at least 8 characters).
const PASSWORD: &str = "nexus-bench-password";

/// A registered bench user and the server it talks to.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// Position in the run (0-based); pairs are (2k, 2k+1).
    pub index: usize,
    pub id: String,
    pub token: String,
    /// Base URL of the node this user connects to.
    pub url: String,
}

/// An HTTP client for the contract's endpoints.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
}

impl Api {
    pub fn new(pool: usize) -> Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api { http })
    }

    /// `POST /auth/register` → 201 `{accessToken, user}`.
    pub async fn register(&self, base: &str, name: &str, email: &str) -> Result<AuthResponse> {
        #[derive(Serialize)]
        struct Register<'a> {
            name: &'a str,
            email: &'a str,
            password: &'a str,
        }
        let url = format!("{}/auth/register", base.trim_end_matches('/'));
        let res = self
            .http
            .post(&url)
            .json(&Register {
                name,
                email,
                password: PASSWORD,
            })
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = res.status();
        if status != reqwest::StatusCode::CREATED {
            let body = res.text().await.unwrap_or_default();
            return Err(anyhow!("POST {url} answered {status}: {body}"));
        }
        res.json()
            .await
            .with_context(|| format!("POST {url}: unexpected answer"))
    }

    /// Registers `count` fresh users, `concurrency` at a time, user `i` on
    /// `urls[i % urls.len()]`. Registration costs the server an argon2 hash per user.
    pub async fn register_many(
        &self,
        urls: &[String],
        count: usize,
        concurrency: usize,
        progress: &Progress,
    ) -> Result<Vec<BenchUser>> {
        if urls.is_empty() {
            return Err(anyhow!("no --url given"));
        }
        self.register_run(urls, count, concurrency, progress, "bench")
            .await
    }

    /// [`Api::register_many`] with another name prefix (a second set of users in one run).
    pub async fn register_run(
        &self,
        urls: &[String],
        count: usize,
        concurrency: usize,
        progress: &Progress,
        prefix: &str,
    ) -> Result<Vec<BenchUser>> {
        if urls.is_empty() {
            return Err(anyhow!("no --url given"));
        }
        let run: u32 = rand::random();
        progress.start("registering users", count as u64);
        let mut users: Vec<BenchUser> = stream::iter(0..count)
            .map(|index| {
                let url = urls[index % urls.len()].clone();
                async move {
                    let email = format!("{prefix}-{run:08x}-{index}@bench.example.com");
                    let name = format!("{prefix} {index}");
                    let auth = self.register(&url, &name, &email).await?;
                    progress.inc(1);
                    Ok::<_, anyhow::Error>(BenchUser {
                        index,
                        id: auth.user.id,
                        token: auth.access_token,
                        url,
                    })
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        progress.finish();
        users.sort_by_key(|u| u.index);
        Ok(users)
    }

    /// `POST /conversations {title, memberIds}` → 201 the group; returns its id.
    pub async fn create_group(
        &self,
        base: &str,
        token: &str,
        title: &str,
        member_ids: &[String],
    ) -> Result<String> {
        let url = format!("{}/conversations", base.trim_end_matches('/'));
        let res = self
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({ "title": title, "memberIds": member_ids }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = res.status();
        if status != reqwest::StatusCode::CREATED {
            let body = res.text().await.unwrap_or_default();
            return Err(anyhow!("POST {url} answered {status}: {body}"));
        }
        let group: nexus_protocol::ConversationInfo = res
            .json()
            .await
            .with_context(|| format!("POST {url}: unexpected answer"))?;
        Ok(group.id)
    }

    /// `GET /sync?since=&limit=` → `{events, nextCursor, hasMore}`.
    pub async fn sync(&self, base: &str, token: &str, since: i64, limit: u32) -> Result<SyncPage> {
        let url = format!(
            "{}/sync?since={since}&limit={limit}",
            base.trim_end_matches('/')
        );
        let res = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(anyhow!("GET {url} answered {status}: {body}"));
        }
        res.json()
            .await
            .with_context(|| format!("GET {url}: unexpected answer"))
    }
}
