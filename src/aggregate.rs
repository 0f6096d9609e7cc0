//! Aggregate functions and their mergeable accumulators.
//!
//! Contract: an `Acc` is a commutative monoid: `update` folds one record in, `merge` folds a
//! partial accumulator from another worker or batch in, and the final value does not depend on
//! the order of updates and merges. That is what lets sources pre-aggregate before the exchange
//! and keeps output identical for any worker or process count.

use crate::distinct::{value_hash, ExactSet, HyperLogLog, PRECISIONS};
use crate::extract::Scalar;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// Number of records.
    Count,
    /// Records per second of window duration: count / (window_end - window_start).
    RatePerSecond,
    /// Exact number of distinct values of a field (see `distinct::ExactSet`).
    CountDistinct,
    /// Estimated number of distinct values: a HyperLogLog sketch with `2^precision` registers.
    CountDistinctApprox { precision: u8 },
}

/// Precision of `count_distinct` in `mode = "approx"` when the dataflow names none (RSE 0.81 %).
pub const DEFAULT_PRECISION: u8 = 14;

impl AggKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "count" => AggKind::Count,
            "rate_per_second" => AggKind::RatePerSecond,
            "count_distinct" => AggKind::CountDistinct,
            other => bail!(
                "unknown aggregate `{other}` (expected count, rate_per_second, count_distinct)"
            ),
        })
    }

    /// Applies a dataflow's `mode` ("exact" or "approx") and `precision` to `count_distinct`.
    /// Errors name the offending key, relative to the aggregate.
    pub fn with_distinct_options(self, mode: Option<&str>, precision: Option<u8>) -> Result<Self> {
        if self != AggKind::CountDistinct {
            if mode.is_some() || precision.is_some() {
                bail!("mode, precision: only `count_distinct` takes them");
            }
            return Ok(self);
        }
        match (mode.unwrap_or("exact"), precision) {
            ("exact", None) => Ok(self),
            ("exact", Some(_)) => bail!("precision: only `mode = \"approx\"` takes a precision"),
            ("approx", precision) => {
                let precision = precision.unwrap_or(DEFAULT_PRECISION);
                if !PRECISIONS.contains(&precision) {
                    bail!(
                        "precision: {precision} is outside {}..={}",
                        PRECISIONS.start(),
                        PRECISIONS.end()
                    );
                }
                Ok(AggKind::CountDistinctApprox { precision })
            }
            (other, _) => bail!("mode: unknown mode `{other}` (expected exact or approx)"),
        }
    }

    /// The relative standard error that approximate aggregates add as a `<name>_rse` output field.
    pub fn relative_standard_error(self) -> Option<f64> {
        match self {
            AggKind::CountDistinctApprox { precision } => {
                Some(HyperLogLog::relative_standard_error(precision))
            }
            _ => None,
        }
    }

    /// Whether the aggregate reads a field of the record.
    pub fn needs_field(self) -> bool {
        match self {
            AggKind::Count | AggKind::RatePerSecond => false,
            AggKind::CountDistinct | AggKind::CountDistinctApprox { .. } => true,
        }
    }

    pub fn new_acc(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
            AggKind::RatePerSecond => Acc::RatePerSecond(0),
            AggKind::CountDistinct => Acc::Distinct(ExactSet::default()),
            AggKind::CountDistinctApprox { precision } => {
                Acc::DistinctApprox(HyperLogLog::new(precision))
            }
        }
    }
}

/// A partial aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
    /// Number of records; rendered per second of the window's duration.
    RatePerSecond(u64),
    Distinct(ExactSet),
    DistinctApprox(HyperLogLog),
}

impl Acc {
    /// Folds one record's value (`None` when the aggregate reads no field or the field is missing).
    #[inline]
    pub fn update(&mut self, value: Option<&Scalar<'_>>) {
        match self {
            Acc::Count(n) | Acc::RatePerSecond(n) => *n += 1,
            // A record without the field adds no value (dataflows list such fields in `required`).
            Acc::Distinct(set) => {
                if let Some(value) = value {
                    set.insert(value_hash(value.as_text().as_bytes()));
                }
            }
            Acc::DistinctApprox(sketch) => {
                if let Some(value) = value {
                    sketch.insert(value_hash(value.as_text().as_bytes()));
                }
            }
        }
    }

    /// Folds a partial accumulator of the same aggregate.
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) | (Acc::RatePerSecond(a), Acc::RatePerSecond(b)) => {
                *a += b
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.merge(b),
            (Acc::DistinctApprox(a), Acc::DistinctApprox(b)) => a.merge(&b),
            (a, b) => panic!("merging different aggregates {a:?} and {b:?}"),
        }
    }

    /// Appends the final value as JSON; `start` and `end` are the window's bounds in epoch ms.
    pub fn write_json(&self, start: u64, end: u64, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Acc::Count(n) => {
                out.push_str(itoa::Buffer::new().format(*n));
                Ok(())
            }
            Acc::RatePerSecond(n) => {
                let seconds = end.saturating_sub(start).max(1) as f64 / 1000.0;
                write_f64(out, *n as f64 / seconds);
                Ok(())
            }
            Acc::Distinct(set) => write!(out, "{}", set.len()),
            Acc::DistinctApprox(sketch) => write!(out, "{}", sketch.estimate().round() as u64),
        };
    }
}

/// Appends a finite float as JSON with at most 6 decimals (`null` if not finite).
pub fn write_f64(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_finite() {
        let rounded = (value * 1e6).round() / 1e6;
        let _ = write!(out, "{rounded}");
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_merges() {
        let mut a = AggKind::Count.new_acc();
        a.update(None);
        a.update(None);
        let mut b = AggKind::Count.new_acc();
        b.update(None);
        a.merge(b);
        let mut s = String::new();
        a.write_json(0, 1000, &mut s);
        assert_eq!(s, "3");
    }

    #[test]
    fn rate_divides_by_the_window_duration() {
        let mut a = AggKind::RatePerSecond.new_acc();
        (0..90).for_each(|_| a.update(None));
        let mut s = String::new();
        a.write_json(60_000, 120_000, &mut s);
        assert_eq!(s, "1.5");
    }

    #[test]
    fn distinct_options_are_validated() {
        let d = AggKind::CountDistinct;
        assert_eq!(d.with_distinct_options(None, None).unwrap(), d);
        assert_eq!(
            d.with_distinct_options(Some("approx"), Some(10)).unwrap(),
            AggKind::CountDistinctApprox { precision: 10 }
        );
        assert!(d.with_distinct_options(Some("approx"), Some(30)).is_err());
        assert!(d.with_distinct_options(Some("exact"), Some(12)).is_err());
        assert!(d.with_distinct_options(Some("fuzzy"), None).is_err());
        assert!(AggKind::Count
            .with_distinct_options(Some("exact"), None)
            .is_err());
    }

    #[test]
    fn exact_distinct_counts_each_value_once_across_merges() {
        let mut a = AggKind::CountDistinct.new_acc();
        let mut b = AggKind::CountDistinct.new_acc();
        for v in ["x", "y", "x"] {
            a.update(Some(&Scalar::Str(v.into())));
        }
        for v in ["y", "z"] {
            b.update(Some(&Scalar::Str(v.into())));
        }
        b.update(None);
        a.merge(b);
        let mut s = String::new();
        a.write_json(0, 1, &mut s);
        assert_eq!(s, "3");
    }
}
