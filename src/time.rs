//! Event time: durations in dataflow files and on the command line, the units an event-time
//! field may be written in, and the conversion of a field value to epoch milliseconds.
//!
//! Contract: every timestamp inside the engine is epoch milliseconds as `u64`; conversion never
//! panics, and a value that is not a valid time in its declared unit is an `Err` with a reason
//! that ends up in the dead-letter record.

use crate::extract::Scalar;
use anyhow::{bail, Result};

/// Parses `500ms`, `5s`, `1m`, `2h`, `1d`, `1w` (a bare number is milliseconds) into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let Ok(value) = digits.parse::<u64>() else {
        bail!("`{text}` is not a duration (expected e.g. 500ms, 5s, 1m, 2h, 1d)")
    };
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        other => bail!("`{text}`: unknown duration unit `{other}` (use ms, s, m, h, d, w)"),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| anyhow::anyhow!("`{text}` overflows"))
}

/// How an event-time field is written in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Integer epoch milliseconds.
    EpochMillis,
    /// Integer epoch seconds.
    EpochSeconds,
    /// An RFC 3339 string such as `2018-01-08T21:02:34.000Z`.
    Rfc3339,
}

impl TimeUnit {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "ms" | "epoch_ms" => TimeUnit::EpochMillis,
            "s" | "epoch_s" => TimeUnit::EpochSeconds,
            "rfc3339" => TimeUnit::Rfc3339,
            other => bail!("unknown unit `{other}` (expected ms, s or rfc3339)"),
        })
    }

    /// Converts a field value to epoch milliseconds.
    pub fn to_millis(self, value: &Scalar<'_>) -> Result<u64, &'static str> {
        match (self, value) {
            (TimeUnit::EpochMillis, Scalar::Int(ms)) => {
                u64::try_from(*ms).map_err(|_| "negative time")
            }
            (TimeUnit::EpochSeconds, Scalar::Int(s)) => u64::try_from(*s)
                .ok()
                .and_then(|s| s.checked_mul(1_000))
                .ok_or("time out of range"),
            (TimeUnit::Rfc3339, Scalar::Str(text)) => chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
                .ok_or("time is not an RFC 3339 timestamp"),
            (TimeUnit::Rfc3339, _) => Err("time is not a string"),
            (_, Scalar::Float(_)) => Err("time is not an integer"),
            _ => Err("time is not an integer"),
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 for log lines.
pub fn format_millis(ms: u64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms as i64) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5s").unwrap(), 5_000);
        assert_eq!(parse_duration_ms("250").unwrap(), 250);
        assert_eq!(parse_duration_ms("1m").unwrap(), 60_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("s").is_err());
    }

    #[test]
    fn units() {
        let s = TimeUnit::EpochSeconds;
        assert_eq!(s.to_millis(&Scalar::Int(1468244384)), Ok(1468244384000));
        assert!(s.to_millis(&Scalar::Float(1.5)).is_err());
        assert!(s.to_millis(&Scalar::Str("1".into())).is_err());
        let r = TimeUnit::Rfc3339;
        assert_eq!(
            r.to_millis(&Scalar::Str("1970-01-01T00:00:01.5Z".into())),
            Ok(1500)
        );
        assert!(TimeUnit::EpochMillis.to_millis(&Scalar::Int(-1)).is_err());
    }
}
