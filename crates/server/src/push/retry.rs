//! When to try a push again: exponential back-off with jitter, or what the push service's
//! `Retry-After` asked for, a bounded number of times.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// The retry rules of one push to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first, at most (`PUSH_MAX_RETRIES`).
    pub max_retries: u32,
    /// The first back-off; each retry doubles it.
    pub base: Duration,
    /// The back-off never grows beyond this.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the push is given up. A worker
    /// waits in place, so a long wait would hold one of the few workers.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    pub fn new(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }

    /// How long to wait before retry number `retry` (0 for the first), or `None` when no
    /// retry is left or the service asked for a longer wait than we hold a worker for.
    /// With `Retry-After`, that long plus up to a tenth more (so the devices a service
    /// turned away together do not come back together); otherwise half the exponential
    /// back-off plus a random part of the other half ("equal jitter").
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if retry >= self.max_retries {
            return None;
        }
        if let Some(wait) = retry_after {
            if wait > self.max_retry_after {
                return None;
            }
            let spread = wait.as_millis() as u64 / 10;
            return Some(wait + Duration::from_millis(rng.gen_range(0..=spread)));
        }
        let full = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_backoff);
        let half = full.as_millis() as u64 / 2;
        Some(Duration::from_millis(half + rng.gen_range(0..=half)))
    }
}

/// A `Retry-After` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn back_off_doubles_with_jitter_and_stops() {
        let policy = RetryPolicy::new(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (retry, full) in [(0u32, 500u64), (1, 1000), (2, 2000)] {
            for _ in 0..50 {
                let d = policy.delay(retry, None, &mut rng).unwrap().as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "retry {retry}: {d} ms");
            }
        }
        assert_eq!(policy.delay(3, None, &mut rng), None, "a fourth retry");
        let capped = RetryPolicy::new(30).delay(20, None, &mut rng).unwrap();
        assert!(capped <= Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let policy = RetryPolicy::new(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let d = policy
            .delay(0, Some(Duration::from_secs(10)), &mut rng)
            .unwrap();
        assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(11));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600)), &mut rng),
            None,
            "an hour is not waited for"
        );
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(1)), &mut rng),
            None
        );
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 1994-11-06T08:49:37Z is 784111777 + 0: a date now or past means "now"
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
