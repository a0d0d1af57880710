//! Push notifications end to end, against the fake FCM and the fake Web Push service:
//! [`delivery`] (one push per device of a user connected nowhere, none while they are
//! online, nothing of another conversation), [`hygiene`] (dead devices removed, retries that
//! honour `Retry-After` and stop, OAuth tokens cached and renewed), [`load`] (a push service
//! that hangs or a full queue never slows or fails a send).

mod delivery;
mod hygiene;
mod load;

use std::time::{Duration, Instant};

use nexus::config::Config;
use nexus::push::PushCounts;
use reqwest::StatusCode;
use serde_json::json;

use crate::fakes::fcm::FakeFcm;
use crate::fakes::webpush::{FakePushService, Subscription};
use crate::fakes::{gaps, Answer};
use crate::helpers::{spawn_app_with_push, Backend, TestApp, TestUser};

/// A configuration pushing to the fakes, with short retries.
pub fn push_config(fcm: &FakeFcm, vapid_private: &str) -> impl FnOnce(&mut Config) {
    let (json, base) = (fcm.service_account_json.clone(), fcm.base_url.clone());
    let vapid = vapid_private.to_string();
    move |c: &mut Config| {
        c.fcm_service_account_json = Some(json);
        c.fcm_api_base_url = base;
        c.vapid_private_key = Some(vapid);
        c.vapid_subject = Some("mailto:ops@example.org".into());
        c.webpush_allow_insecure_endpoints = true;
        c.push_max_retries = 2;
        c.push_timeout_seconds = 300;
    }
}

pub struct Push {
    pub app: TestApp,
    pub fcm: FakeFcm,
    pub web: FakePushService,
    pub vapid_public: String,
}

pub async fn start(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Push> {
    let fcm = FakeFcm::start().await;
    let web = FakePushService::start().await;
    let (private, public) = nexus::push::vapid::generate();
    let base = push_config(&fcm, &private);
    let app = spawn_app_with_push(backend, |c| {
        base(c);
        adjust(c);
    })
    .await?;
    Some(Push {
        app,
        fcm,
        web,
        vapid_public: public,
    })
}

impl Push {
    pub async fn fcm_device(&self, user: &TestUser, token: &str) {
        let resp = self
            .app
            .post_json(
                "/users/fcm/register",
                &json!({"deviceToken": token}),
                Some(&user.token),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    pub async fn web_device(&self, user: &TestUser) -> Subscription {
        let sub = self.web.subscribe();
        let resp = self
            .app
            .post_json("/users/webpush/subscribe", &sub.json(), Some(&user.token))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        sub
    }

    /// Waits until `finished` pushes to devices are done and the queue is idle.
    pub async fn settle(&self, finished: u64) -> PushCounts {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let counts = self.app.state.push.metrics();
            if counts.finished() >= finished && self.app.state.push.is_idle() {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "pushes did not finish: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn device_tokens(&self, user: &TestUser) -> Vec<String> {
        let devices = self.app.get_ok("/users/devices", user).await;
        devices
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["token"]
                    .as_str()
                    .or(d["endpoint"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    pub fn assert_nothing_malformed(&self) {
        assert!(
            self.fcm.rejected().is_empty(),
            "fake FCM refused: {:?}",
            self.fcm.rejected()
        );
        assert!(
            self.web.rejected().is_empty(),
            "fake push service refused: {:?}",
            self.web.rejected()
        );
    }
}
