//! The push counters, in one place: the queue and the senders count here, and whatever
//! exposes metrics (`/metrics`, tests) reads a [`PushCounts`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct PushMetrics {
    sent: AtomicU64,
    failed: AtomicU64,
    removed: AtomicU64,
    dropped: AtomicU64,
    retried: AtomicU64,
}

/// The counters at one moment. Each counts pushes to one device, except `dropped`, which
/// counts notifications (to all of one user's devices) the full queue turned away.
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

impl PushMetrics {
    pub fn snapshot(&self) -> PushCounts {
        PushCounts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            removed: self.removed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn removed(&self) {
        self.removed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
}
