//! Time as Nexus stores and sends it: integer milliseconds since the Unix epoch in the
//! database, ISO-8601 UTC with milliseconds (`2025-11-06T10:30:00.000Z`) on the wire.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

pub fn iso(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 / ISO-8601 timestamp with an offset (`Z` or `+02:00`).
pub fn parse_iso(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds_and_z() {
        assert_eq!(iso(1_762_425_000_123), "2025-11-06T10:30:00.123Z");
        assert_eq!(
            parse_iso("2025-11-06T10:30:00.123Z"),
            Some(1_762_425_000_123)
        );
        assert_eq!(
            parse_iso("2025-11-06T11:30:00.123+01:00"),
            Some(1_762_425_000_123)
        );
        assert_eq!(parse_iso("yesterday"), None);
    }
}
