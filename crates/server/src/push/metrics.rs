//! The push counters, in one place: the queue and the senders count here, `/metrics` shows
//! them (`nexus_push_*`, docs/operations.md), and tests read a [`PushCounts`] snapshot.

use nexus_protocol::DeviceKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::KindLabel;

/// The counters of one push service (one per application).
#[derive(Debug, Default, Clone)]
pub struct PushMetrics {
    sent: Family<KindLabel, Counter>,
    failed: Family<KindLabel, Counter>,
    removed: Family<KindLabel, Counter>,
    retried: Family<KindLabel, Counter>,
    dropped: Counter,
    queued: Gauge,
}

/// The counters at one moment, both kinds of device together. Each counts pushes to one
/// device, except `dropped`, which counts notifications (to all of one user's devices) the
/// full queue turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    /// Accepted by the push service.
    pub sent: u64,
    /// Given up: refused for good, retries exhausted, or no answer in time.
    pub failed: u64,
    /// The push service said the device is gone, and it was removed.
    pub removed: u64,
    /// Not queued because the queue was full.
    pub dropped: u64,
    /// Attempts after a temporary failure (429, 5xx, an expired OAuth token).
    pub retried: u64,
}

impl PushCounts {
    /// Pushes to devices that are finished, one way or another.
    pub fn finished(&self) -> u64 {
        self.sent + self.failed + self.removed
    }
}

fn label(kind: DeviceKind) -> KindLabel {
    KindLabel {
        kind: kind.as_str(),
    }
}

impl PushMetrics {
    /// Registers the counters for `/metrics`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "nexus_push_sent",
            "Pushes accepted by FCM or a Web Push service, by kind of device",
            self.sent.clone(),
        );
        r.register(
            "nexus_push_failed",
            "Pushes given up (refused, retries exhausted, no answer in time), by kind",
            self.failed.clone(),
        );
        r.register(
            "nexus_push_devices_removed",
            "Devices removed because their push service no longer knows them, by kind",
            self.removed.clone(),
        );
        r.register(
            "nexus_push_retries",
            "Push attempts repeated after a temporary failure or a refused OAuth token, by kind",
            self.retried.clone(),
        );
        r.register(
            "nexus_push_dropped",
            "Notifications not pushed because the push queue was full",
            self.dropped.clone(),
        );
        r.register(
            "nexus_push_queued",
            "Notifications waiting for a push worker",
            self.queued.clone(),
        );
    }

    pub fn snapshot(&self) -> PushCounts {
        let sum = |f: &Family<KindLabel, Counter>| {
            [DeviceKind::Fcm, DeviceKind::Webpush]
                .into_iter()
                .map(|k| f.get_or_create(&label(k)).get())
                .sum()
        };
        PushCounts {
            sent: sum(&self.sent),
            failed: sum(&self.failed),
            removed: sum(&self.removed),
            dropped: self.dropped.get(),
            retried: sum(&self.retried),
        }
    }

    pub(crate) fn sent(&self, kind: DeviceKind) {
        self.sent.get_or_create(&label(kind)).inc();
    }

    pub(crate) fn failed(&self, kind: DeviceKind) {
        self.failed.get_or_create(&label(kind)).inc();
    }

    pub(crate) fn removed(&self, kind: DeviceKind) {
        self.removed.get_or_create(&label(kind)).inc();
    }

    pub(crate) fn retried(&self, kind: DeviceKind, times: u32) {
        self.retried
            .get_or_create(&label(kind))
            .inc_by(u64::from(times));
    }

    /// Counts a dropped notification; returns how many so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.inc() + 1
    }

    pub(crate) fn set_queued(&self, n: usize) {
        self.queued.set(n as i64);
    }
}
