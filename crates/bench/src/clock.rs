//! One monotonic clock for the whole process. A message's content carries its start time as
//! nanoseconds since [`epoch`], so the receiving connection (in the same process) computes
//! the exact end-to-end latency without any clock synchronisation.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's time origin, fixed at the first call.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`] at `t` (0 for an instant before it).
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Nanoseconds since [`epoch`], now.
pub fn now_ns() -> u64 {
    ns_of(Instant::now())
}

/// The instant `ns` nanoseconds after [`epoch`].
pub fn instant_of(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

/// Microseconds from `start_ns` to `end_ns` (0 if the end is earlier).
pub fn micros_between(start_ns: u64, end_ns: u64) -> u64 {
    end_ns.saturating_sub(start_ns) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_nanoseconds() {
        let t = epoch() + Duration::from_millis(1234);
        assert_eq!(instant_of(ns_of(t)), t);
        assert_eq!(micros_between(5_000, 2_000), 0);
        assert_eq!(micros_between(2_000, 5_500), 3);
    }
}
