//! The bounded push queue and its fixed set of workers.
//!
//! A send only ever offers a notification to the queue (`try_send`: never waits); when the
//! queue is full the notification is dropped, counted and logged, and the message itself
//! is unaffected (it is stored, and the user's next sync brings it). Each worker takes one
//! notification at a time, looks up the recipient's devices and pushes to all of them at
//! once, retrying each as [`RetryPolicy`] says. What a crash loses is what was queued or
//! in flight: pushes, never messages (docs/push.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_protocol::DeviceKind;
use tokio::task::JoinHandle;

use super::content::PushContent;
use super::metrics::PushMetrics;
use super::retry::RetryPolicy;
use super::{Attempt, Transport};
use crate::clock::now_ms;
use crate::domain::UserId;
use crate::store::{DeviceRecord, Store};

/// `last_used_at` of a device is rewritten after a delivered push at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 60 * 1000;

/// One notification for every device of one user.
#[derive(Debug, Clone)]
pub struct Job {
    pub user: UserId,
    pub content: Arc<PushContent>,
}

/// The senders, per kind of device; a kind without one is not pushed to.
#[derive(Clone, Default)]
pub struct Transports {
    pub fcm: Option<Arc<dyn Transport>>,
    pub webpush: Option<Arc<dyn Transport>>,
}

impl Transports {
    fn of(&self, kind: DeviceKind) -> Option<&Arc<dyn Transport>> {
        match kind {
            DeviceKind::Fcm => self.fcm.as_ref(),
            DeviceKind::Webpush => self.webpush.as_ref(),
        }
    }
}

/// What pushing to one device came to, after any retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Sent,
    /// The push service said the device no longer exists.
    Gone(String),
    Failed(String),
}

struct Shared {
    store: Store,
    transports: Transports,
    policy: RetryPolicy,
    metrics: Arc<PushMetrics>,
    /// Notifications queued or being pushed: counted up before a notification enters the
    /// queue and down once its pushes are done, so it never reads 0 while one is on its way
    /// from the queue to a worker.
    pending: AtomicUsize,
}

pub struct Queue {
    tx: flume::Sender<Job>,
    capacity: usize,
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Queue {
    /// Starts `workers` workers over a queue of `capacity` notifications.
    pub fn start(
        store: Store,
        transports: Transports,
        policy: RetryPolicy,
        metrics: Arc<PushMetrics>,
        workers: usize,
        capacity: usize,
    ) -> Queue {
        let (tx, rx) = flume::bounded::<Job>(capacity);
        let shared = Arc::new(Shared {
            store,
            transports,
            policy,
            metrics,
            pending: AtomicUsize::new(0),
        });
        let handles = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    while let Ok(job) = rx.recv_async().await {
                        shared.metrics.set_queued(rx.len());
                        shared.push(job).await;
                        shared.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Queue {
            tx,
            capacity,
            shared,
            workers: Mutex::new(handles),
        }
    }

    /// Queues a notification without waiting; `false` when the queue was full and it was
    /// dropped (counted and logged).
    pub fn offer(&self, job: Job) -> bool {
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => {
                self.shared.metrics.set_queued(self.tx.len());
                true
            }
            Err(flume::TrySendError::Full(job)) | Err(flume::TrySendError::Disconnected(job)) => {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                let dropped = self.shared.metrics.dropped();
                tracing::warn!(
                    user.id = %job.user,
                    capacity = self.capacity,
                    dropped_total = dropped,
                    "push queue full: push dropped (the message is stored; the user's next sync brings it)"
                );
                false
            }
        }
    }

    /// Nothing queued and no worker pushing.
    pub fn is_idle(&self) -> bool {
        self.shared.pending.load(Ordering::SeqCst) == 0
    }

    /// Lets the workers finish what is queued for up to `grace`, then stops them.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.is_idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !self.is_idle() {
            tracing::warn!(
                queued = self.tx.len(),
                "shutting down with pushes not yet sent; they are lost (messages are not)"
            );
        }
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            handle.abort();
        }
    }
}

impl Shared {
    /// Pushes one notification to every device of its user, all at once.
    async fn push(&self, job: Job) {
        let devices = match self.store.devices(job.user).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(user.id = %job.user, error = %e, "push: cannot read the devices");
                return;
            }
        };
        let pushes = devices.iter().filter_map(|device| {
            let kind = device.kind()?;
            let transport = self.transports.of(kind)?;
            Some(self.push_to(kind, transport.as_ref(), device, &job.content))
        });
        futures::future::join_all(pushes).await;
    }

    async fn push_to(
        &self,
        kind: DeviceKind,
        transport: &dyn Transport,
        device: &DeviceRecord,
        content: &PushContent,
    ) {
        let (outcome, retries) = deliver(transport, device, content, &self.policy).await;
        self.metrics.retried(kind, retries);
        match outcome {
            Finished::Sent => {
                self.metrics.sent(kind);
                // Most pushes write nothing: only a device whose last use (as read with the
                // devices) is over an hour old is updated, so pushes do not compete with the
                // messaging writer for the database's write lock.
                let now = now_ms();
                if device.last_used_at < now - TOUCH_EVERY_MS {
                    if let Err(e) = self
                        .store
                        .touch_device(&device.id, now, TOUCH_EVERY_MS)
                        .await
                    {
                        tracing::debug!(error = %e, "push: cannot record the device's use");
                    }
                }
            }
            Finished::Gone(reason) => match self.store.remove_device_token(&device.token).await {
                Ok(_) => {
                    self.metrics.removed(kind);
                    tracing::info!(
                        user.id = %device.user_id,
                        device.id = %device.id,
                        kind = %device.kind,
                        %reason,
                        "push: device removed, its push service no longer knows it"
                    );
                }
                Err(e) => {
                    self.metrics.failed(kind);
                    tracing::warn!(error = %e, "push: cannot remove a dead device");
                }
            },
            Finished::Failed(reason) => {
                self.metrics.failed(kind);
                tracing::warn!(
                    user.id = %device.user_id,
                    device.id = %device.id,
                    kind = %device.kind,
                    %reason,
                    "push failed"
                );
            }
        }
    }
}

/// Pushes to one device: the first attempt, then retries while the push service answers
/// with a temporary failure and the policy allows, and one retry with renewed credentials
/// after the first 401. Returns how it ended and how many attempts were repeated.
pub async fn deliver(
    transport: &dyn Transport,
    device: &DeviceRecord,
    content: &PushContent,
    policy: &RetryPolicy,
) -> (Finished, u32) {
    let mut retries = 0;
    let mut renewed = false;
    loop {
        let repeated = retries + u32::from(renewed);
        let done = |f: Finished| (f, repeated);
        match transport.send(device, content).await {
            Attempt::Delivered => return done(Finished::Sent),
            Attempt::Gone(reason) => return done(Finished::Gone(reason)),
            Attempt::Failed(reason) => return done(Finished::Failed(reason)),
            Attempt::Unauthorized(reason) => {
                if renewed {
                    return done(Finished::Failed(format!(
                        "{reason} (again after renewing credentials)"
                    )));
                }
                renewed = true;
                transport.renew_credentials().await;
            }
            Attempt::Retry { after, reason } => {
                let wait = policy.delay(retries, after, &mut rand::thread_rng());
                let Some(wait) = wait else {
                    let why = if retries >= policy.max_retries {
                        format!("{reason}; gave up after {} retries", policy.max_retries)
                    } else {
                        format!("{reason}; asked to wait {after:?}, longer than we wait")
                    };
                    return done(Finished::Failed(why));
                };
                tracing::debug!(device.id = %device.id, %reason, ?wait, "push: retrying");
                retries += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Answers with the scripted attempts in order, recording when each came.
    struct Scripted {
        answers: Mutex<VecDeque<Attempt>>,
        at: Mutex<Vec<tokio::time::Instant>>,
        renewed: AtomicUsize,
    }

    impl Scripted {
        fn new(answers: impl IntoIterator<Item = Attempt>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into_iter().collect()),
                at: Mutex::new(Vec::new()),
                renewed: AtomicUsize::new(0),
            }
        }

        fn gaps(&self) -> Vec<Duration> {
            let at = self.at.lock().unwrap();
            at.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    #[async_trait::async_trait]
    impl Transport for Scripted {
        async fn send(&self, _: &DeviceRecord, _: &PushContent) -> Attempt {
            self.at.lock().unwrap().push(tokio::time::Instant::now());
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Attempt::Delivered)
        }

        async fn renew_credentials(&self) {
            self.renewed.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn device() -> DeviceRecord {
        DeviceRecord {
            id: "d".into(),
            user_id: "u".into(),
            kind: "fcm".into(),
            token: "t".into(),
            p256dh: None,
            auth: None,
            created_at: 0,
            last_used_at: 0,
        }
    }

    fn content() -> PushContent {
        PushContent {
            title: "t".into(),
            body: None,
            tag: "x".into(),
            data: Default::default(),
        }
    }

    fn retry(after: Option<u64>) -> Attempt {
        Attempt::Retry {
            after: after.map(Duration::from_secs),
            reason: "503".into(),
        }
    }

    async fn run(t: &Scripted, policy: RetryPolicy) -> (Finished, u32) {
        deliver(t, &device(), &content(), &policy).await
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_failures_are_retried_with_growing_waits_then_succeed() {
        let t = Scripted::new([retry(None), retry(None), Attempt::Delivered]);
        assert_eq!(run(&t, RetryPolicy::new(3)).await, (Finished::Sent, 2));
        let gaps = t.gaps();
        assert!(gaps[0] >= Duration::from_millis(250) && gaps[0] <= Duration::from_millis(500));
        assert!(gaps[1] >= Duration::from_millis(500) && gaps[1] <= Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_for() {
        let t = Scripted::new([retry(Some(7)), Attempt::Delivered]);
        assert_eq!(run(&t, RetryPolicy::new(3)).await, (Finished::Sent, 1));
        assert!(t.gaps()[0] >= Duration::from_secs(7), "{:?}", t.gaps());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_limit() {
        let t = Scripted::new((0..10).map(|_| retry(None)));
        let (done, retried) = run(&t, RetryPolicy::new(2)).await;
        assert!(
            matches!(done, Finished::Failed(ref why) if why.contains("gave up")),
            "{done:?}"
        );
        assert_eq!(retried, 2);
        assert_eq!(t.at.lock().unwrap().len(), 3, "one attempt and two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_renews_the_credentials_once() {
        let unauthorized = || Attempt::Unauthorized("401".into());
        let t = Scripted::new([unauthorized(), Attempt::Delivered]);
        assert_eq!(run(&t, RetryPolicy::new(0)).await, (Finished::Sent, 1));
        assert_eq!(t.renewed.load(Ordering::SeqCst), 1);

        let t = Scripted::new([unauthorized(), unauthorized(), Attempt::Delivered]);
        let (done, _) = run(&t, RetryPolicy::new(3)).await;
        assert!(matches!(done, Finished::Failed(_)), "{done:?}");
        assert_eq!(t.renewed.load(Ordering::SeqCst), 1, "renewed once only");
        assert_eq!(t.at.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gone_and_permanent_failures_are_not_retried() {
        let t = Scripted::new([Attempt::Gone("UNREGISTERED".into())]);
        assert_eq!(
            run(&t, RetryPolicy::new(3)).await.0,
            Finished::Gone("UNREGISTERED".into())
        );
        let t = Scripted::new([Attempt::Failed("400".into())]);
        assert_eq!(
            run(&t, RetryPolicy::new(3)).await.0,
            Finished::Failed("400".into())
        );
        assert_eq!(t.at.lock().unwrap().len(), 1);
    }
}
