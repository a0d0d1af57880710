//! The body of a bench message: `"<seq> <start_ns> xxxx…"`, padded to the requested size.
//!
//! `seq` numbers the messages of one conversation direction from 0, so the receiver checks
//! exactly-once, in-order delivery; `start_ns` (see [`crate::clock`]) gives the exact
//! end-to-end latency.

/// Builds a message body of at least `size` bytes (longer only if the two numbers need it).
pub fn encode(seq: u64, start_ns: u64, size: usize) -> String {
    let mut s = format!("{seq} {start_ns} ");
    if s.len() < size {
        let pad = size - s.len();
        s.extend(std::iter::repeat_n('x', pad));
    }
    s
}

/// The `(seq, start_ns)` of a bench message body, `None` for anything else.
pub fn decode(content: &str) -> Option<(u64, u64)> {
    let mut parts = content.splitn(3, ' ');
    let seq = parts.next()?.parse().ok()?;
    let start_ns = parts.next()?.parse().ok()?;
    Some((seq, start_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_have_the_requested_size() {
        let body = encode(42, 1_000_000_007, 100);
        assert_eq!(body.len(), 100);
        assert_eq!(decode(&body), Some((42, 1_000_000_007)));
        assert_eq!(decode(&encode(1, 2, 0)), Some((1, 2)));
    }

    #[test]
    fn foreign_bodies_are_rejected() {
        assert_eq!(decode("hello world"), None);
        assert_eq!(decode("12"), None);
        assert_eq!(decode(""), None);
    }
}
