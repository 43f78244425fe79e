//! Timestamps as regate writes them: UTC RFC 3339 with milliseconds. Time always comes in
//! as a parameter; nothing in the domain reads the clock.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-21T19:51:05.123Z`.
pub fn format_rfc3339_ms(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 timestamp into UTC.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_normalised_to_utc_with_milliseconds() {
        let t = parse_rfc3339("2026-11-21T20:51:05+01:00").unwrap();
        assert_eq!(format_rfc3339_ms(t), "2026-11-21T19:51:05.000Z");
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
