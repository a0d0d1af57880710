//! Push notifications for users with no socket connected anywhere (docs/push.md): FCM HTTP
//! v1 for FCM registration tokens, Web Push (RFC 8030/8291/8292) for browser subscriptions.
//!
//! - [`devices`]: registering, listing and removing a user's devices (the HTTP routes).
//! - [`content`]: what a push says, and the privacy rules.
//! - [`queue`]: the bounded queue and workers; [`retry`]: back-off and `Retry-After`.
//! - [`fcm`], [`webpush`] (+ [`vapid`]): the two senders behind [`Transport`].
//! - [`metrics`]: the counters (sent, failed, removed, dropped, retried).
//!
//! Push is off unless FCM or VAPID credentials are configured; the start-up log says which.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::delivery::{PushQueue, PushRequest};
use crate::domain::UserId;
use crate::store::{DeviceRecord, Store};

pub mod content;
pub mod devices;
pub mod fcm;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod vapid;
pub mod webpush;

pub use content::{PushContent, PushMessage};
pub use metrics::{PushCounts, PushMetrics};

/// What one attempt to push to one device came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// The push service no longer knows the device: remove it.
    Gone(String),
    /// Temporary (429, 5xx, unreachable): try again, not before `after` if the service
    /// said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The credentials were refused (FCM 401): renew them and try once more.
    Unauthorized(String),
    /// Would fail again: logged and counted, not retried.
    Failed(String),
}

/// A push sender for one kind of device.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// One attempt; never panics, every failure is an [`Attempt`].
    async fn send(&self, device: &DeviceRecord, content: &PushContent) -> Attempt;

    /// After a 401: drop cached credentials so the next attempt fetches new ones.
    async fn renew_credentials(&self) {}
}

/// The push settings of [`Config`], parsed (credentials checked) at start-up.
pub struct PushSettings {
    pub fcm: Option<fcm::FcmCredentials>,
    pub fcm_api_base_url: String,
    pub vapid: Option<vapid::VapidKey>,
    pub max_devices_per_user: u32,
    pub workers: usize,
    pub queue_size: usize,
    pub max_retries: u32,
    pub ttl: Duration,
    pub timeout: Duration,
    pub allow_insecure_endpoints: bool,
}

impl PushSettings {
    pub fn from_config(c: &Config) -> Result<PushSettings, String> {
        let fcm = match (
            &c.fcm_service_account_json,
            &c.fcm_project_id,
            &c.fcm_private_key,
            &c.fcm_client_email,
        ) {
            (Some(json), _, _, _) => Some(fcm::FcmCredentials::from_json(json)?),
            (None, Some(project), Some(key), Some(email)) => {
                Some(fcm::FcmCredentials::from_parts(project, key, email)?)
            }
            (None, None, None, None) => None,
            _ => {
                return Err(
                    "FCM_PROJECT_ID, FCM_PRIVATE_KEY and FCM_CLIENT_EMAIL go together \
                            (or give FCM_SERVICE_ACCOUNT_JSON)"
                        .into(),
                )
            }
        };
        let vapid = match (&c.vapid_private_key, &c.vapid_subject) {
            (Some(key), Some(subject)) => Some(vapid::VapidKey::parse(key, subject)?),
            (None, None) => None,
            _ => return Err("VAPID_PRIVATE_KEY and VAPID_SUBJECT go together".into()),
        };
        Ok(PushSettings {
            fcm,
            fcm_api_base_url: c.fcm_api_base_url.clone(),
            vapid,
            max_devices_per_user: c.max_devices_per_user,
            workers: c.push_workers as usize,
            queue_size: c.push_queue_size as usize,
            max_retries: c.push_max_retries,
            ttl: Duration::from_secs(c.push_ttl_seconds),
            timeout: Duration::from_secs(c.push_timeout_seconds),
            allow_insecure_endpoints: c.webpush_allow_insecure_endpoints,
        })
    }
}

/// The push service of the application: devices, and the queue when push is on.
#[derive(Clone)]
pub struct Push {
    pub devices: devices::Devices,
    queue: Option<Arc<queue::Queue>>,
    metrics: Arc<PushMetrics>,
}

impl Push {
    /// Starts the workers when any sender is configured, and says once in the log
    /// what is on.
    pub fn start(
        store: Store,
        settings: PushSettings,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Push, String> {
        let metrics = Arc::new(PushMetrics::default());
        metrics.register(registry);
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nexus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("push HTTP client: {e}"))?;
        let mut transports = queue::Transports::default();
        if let Some(creds) = &settings.fcm {
            let sender = fcm::Fcm::new(
                http.clone(),
                &settings.fcm_api_base_url,
                creds.clone(),
                settings.ttl,
            )?;
            transports.fcm = Some(Arc::new(sender));
        }
        let vapid_public = settings.vapid.as_ref().map(|k| k.public_key().to_string());
        if let Some(key) = settings.vapid {
            transports.webpush = Some(Arc::new(webpush::WebPush::new(http, key, settings.ttl)));
        }
        let devices = devices::Devices::new(
            store.clone(),
            settings.max_devices_per_user,
            vapid_public,
            settings.allow_insecure_endpoints,
        );
        let on = |b: bool| if b { "on" } else { "off" };
        let (fcm_on, webpush_on) = (transports.fcm.is_some(), transports.webpush.is_some());
        if !fcm_on && !webpush_on {
            tracing::info!(
                "push notifications are off: set FCM_SERVICE_ACCOUNT_JSON (or FCM_PROJECT_ID, \
                 FCM_PRIVATE_KEY, FCM_CLIENT_EMAIL) for FCM, VAPID_PRIVATE_KEY and VAPID_SUBJECT \
                 for Web Push"
            );
            return Ok(Push {
                devices,
                queue: None,
                metrics,
            });
        }
        tracing::info!(
            fcm = on(fcm_on),
            fcm.project = settings.fcm.as_ref().map(|c| c.project_id.as_str()),
            webpush = on(webpush_on),
            workers = settings.workers,
            queue = settings.queue_size,
            "push notifications are on"
        );
        let queue = queue::Queue::start(
            store,
            transports,
            retry::RetryPolicy::new(settings.max_retries),
            metrics.clone(),
            settings.workers,
            settings.queue_size,
        );
        Ok(Push {
            devices,
            queue: Some(Arc::new(queue)),
            metrics,
        })
    }

    /// Queues a push of `message` to every device of `recipient`. Never waits: a full
    /// queue drops the push (logged, counted). Nothing happens when push is off.
    pub fn offer(&self, recipient: UserId, message: &PushMessage) {
        if let Some(queue) = &self.queue {
            queue.offer(queue::Job {
                user: recipient,
                content: Arc::new(PushContent::for_message(message)),
            });
        }
    }

    /// Whether any sender is configured (otherwise nothing is ever queued).
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// True when nothing is queued or being pushed (tests wait for it).
    pub fn is_idle(&self) -> bool {
        self.queue.as_ref().is_none_or(|q| q.is_idle())
    }

    pub fn metrics(&self) -> PushCounts {
        self.metrics.snapshot()
    }

    /// Lets queued pushes go out for a few seconds at shutdown, then stops the workers.
    pub async fn shutdown(&self) {
        if let Some(queue) = &self.queue {
            queue.shutdown(Duration::from_secs(5)).await;
        }
    }
}

/// The delivery step's hand-off: a new message for a user connected nowhere.
impl PushQueue for Push {
    fn offer(&self, request: PushRequest) {
        let m = &request.message;
        let message = PushMessage {
            message_id: m.id.clone(),
            sender_id: m.sender_id.clone(),
            sender_name: m.sender.name.clone(),
            content: m.content.clone(),
            is_encrypted: m.is_encrypted,
            // A group gets a notification tag of its own; a direct conversation keeps the
            // sender's.
            conversation_id: m.receiver_id.is_none().then(|| m.conversation_id.clone()),
        };
        Push::offer(self, request.recipient, &message);
    }
}
