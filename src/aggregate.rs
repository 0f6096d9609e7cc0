//! Aggregate functions and their mergeable accumulators.
//!
//! Contract: an `Acc` is a commutative monoid: `update` folds one record in, `merge` folds a
//! partial accumulator from another worker, batch or window pane in, and the final value does
//! not depend on the order of updates and merges. That is what lets sources pre-aggregate before
//! the exchange, lets sliding windows combine panes, and keeps output byte-identical for any
//! worker or process count.
//!
//! Numeric aggregates (`sum`, `avg`, `min`, `max`) read one field:
//! - a missing or `null` value is skipped (SQL semantics): it counts for `count` but not for
//!   `avg`; a window whose values are all missing has `sum` 0 and `avg`, `min`, `max` `null`;
//! - numbers and numeric strings (CSV, quoted feeds) are accepted; anything else present (text,
//!   booleans, objects, NaN, infinities) is rejected by `value_of` and the record goes to the
//!   dead-letter output as `malformed`, naming the field.
//!
//! Exact sums: floating-point addition is not associative, so an `f64` sum merged in a different
//! order on another worker count could differ in the last bits. `sum` and `avg` therefore add
//! fixed-point integers: each value is rounded once, on its own, to `SUM_DECIMALS` decimal places
//! (nano-units) and added as an `i128`. Integer addition is associative, so the sum is exact over
//! the rounded values and independent of the merge order. Prices, quantities and amounts with up
//! to nine decimals are represented exactly. Magnitudes above `SUM_LIMIT` are rejected so that
//! 10^9 records cannot overflow the `i128`. `min` and `max` keep the `f64` itself (order-free).

use crate::extract::Scalar;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Decimal places kept by `sum` and `avg`.
pub const SUM_DECIMALS: u32 = 9;
const SCALE: i128 = 10i128.pow(SUM_DECIMALS);
/// Largest magnitude `sum` and `avg` accept (10^9 of them still fit an `i128` in nano-units).
pub const SUM_LIMIT: f64 = 1e20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// Number of records.
    Count,
    /// Exact sum of a numeric field.
    Sum,
    /// Unweighted mean of a numeric field, rounded to `SUM_DECIMALS` places.
    Avg,
    Min,
    Max,
}

impl AggKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "count" => AggKind::Count,
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            other => bail!("unknown aggregate `{other}` (expected count, sum, avg, min or max)"),
        })
    }

    /// Whether the aggregate reads a field of the record.
    pub fn needs_field(self) -> bool {
        !matches!(self, AggKind::Count)
    }

    pub fn new_acc(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum(0),
            AggKind::Avg => Acc::Avg { nanos: 0, n: 0 },
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
        }
    }

    /// The value this aggregate folds in for a record's field: `Ok(None)` when missing or null
    /// (skipped), `Err(reason)` when present but unusable (the record is malformed).
    pub fn value_of(self, value: Option<&Scalar<'_>>) -> Result<Option<f64>, &'static str> {
        if self == AggKind::Count {
            return Ok(None);
        }
        let number = match value {
            None | Some(Scalar::Null) => return Ok(None),
            Some(Scalar::Str(s)) if s.trim().is_empty() => return Ok(None),
            Some(v) => v.as_f64().ok_or("is not a number")?,
        };
        if !number.is_finite() {
            return Err("is not a finite number");
        }
        if matches!(self, AggKind::Sum | AggKind::Avg) && number.abs() > SUM_LIMIT {
            return Err("is beyond the exact-sum range (1e20)");
        }
        Ok(Some(number))
    }
}

/// A partial aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
    /// Sum in nano-units.
    Sum(i128),
    Avg {
        nanos: i128,
        n: u64,
    },
    Min(Option<f64>),
    Max(Option<f64>),
}

/// Rounds a value (already checked against `SUM_LIMIT`) to nano-units.
fn to_nanos(value: f64) -> i128 {
    (value * SCALE as f64).round() as i128
}

impl Acc {
    /// Folds one record's value, as returned by `AggKind::value_of` (`None`: missing or no field).
    #[inline]
    pub fn update(&mut self, value: Option<f64>) {
        match (self, value) {
            (Acc::Count(n), _) => *n += 1,
            (_, None) => {}
            (Acc::Sum(sum), Some(v)) => *sum = sum.saturating_add(to_nanos(v)),
            (Acc::Avg { nanos, n }, Some(v)) => {
                *nanos = nanos.saturating_add(to_nanos(v));
                *n += 1;
            }
            (Acc::Min(m), Some(v)) => *m = Some(m.map_or(v, |m| m.min(v))),
            (Acc::Max(m), Some(v)) => *m = Some(m.map_or(v, |m| m.max(v))),
        }
    }

    /// Folds a partial accumulator of the same aggregate.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum(a), Acc::Sum(b)) => *a = a.saturating_add(*b),
            (Acc::Avg { nanos, n }, Acc::Avg { nanos: b, n: m }) => {
                *nanos = nanos.saturating_add(*b);
                *n += m;
            }
            (Acc::Min(a), Acc::Min(b)) => *a = min_of(*a, *b, f64::min),
            (Acc::Max(a), Acc::Max(b)) => *a = min_of(*a, *b, f64::max),
            (a, b) => unreachable!("merging different aggregates {a:?} and {b:?}"),
        }
    }

    /// Appends the final value as JSON.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Acc::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Acc::Sum(nanos) => write_decimal(out, *nanos),
            Acc::Avg { n: 0, .. } | Acc::Min(None) | Acc::Max(None) => out.push_str("null"),
            Acc::Avg { nanos, n } => write_decimal(out, divide_half_even(*nanos, *n as i128)),
            Acc::Min(Some(v)) | Acc::Max(Some(v)) => write_f64(out, *v),
        }
    }
}

fn min_of(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// `a / b` rounded to the nearest integer, ties to even (b > 0).
fn divide_half_even(a: i128, b: i128) -> i128 {
    let (q, r) = (a.div_euclid(b), a.rem_euclid(b));
    match (2 * r).cmp(&b) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

/// Writes nano-units as an exact decimal: `158840000000` -> `158.84`, `-5000000000` -> `-5`.
fn write_decimal(out: &mut String, nanos: i128) {
    use std::fmt::Write;
    if nanos < 0 {
        out.push('-');
    }
    let magnitude = nanos.unsigned_abs();
    let (whole, fraction) = (magnitude / SCALE as u128, magnitude % SCALE as u128);
    let _ = write!(out, "{whole}");
    if fraction != 0 {
        let digits = format!("{fraction:0width$}", width = SUM_DECIMALS as usize);
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
}

/// Writes a finite `f64` as the shortest JSON number that reads back to it (`216`, `158.84`).
fn write_f64(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(kind: AggKind, values: &[Option<f64>]) -> String {
        // Fold in two halves merged in both orders: the result must not depend on the order.
        let (left, right) = values.split_at(values.len() / 2);
        let part = |vs: &[Option<f64>]| {
            let mut acc = kind.new_acc();
            vs.iter().for_each(|v| acc.update(*v));
            acc
        };
        let (mut a, mut b) = (part(left), part(right));
        let (a2, b2) = (a.clone(), b.clone());
        a.merge(&b2);
        b.merge(&a2);
        let (mut x, mut y) = (String::new(), String::new());
        a.write_json(&mut x);
        b.write_json(&mut y);
        assert_eq!(x, y);
        x
    }

    #[test]
    fn numeric_aggregates() {
        let vs = [Some(158.84), None, Some(26.57), Some(0.1), Some(0.2)];
        assert_eq!(fold(AggKind::Count, &vs), "5");
        assert_eq!(fold(AggKind::Sum, &vs), "185.71");
        assert_eq!(fold(AggKind::Avg, &vs), "46.4275");
        assert_eq!(fold(AggKind::Min, &vs), "0.1");
        assert_eq!(fold(AggKind::Max, &vs), "158.84");
        assert_eq!(fold(AggKind::Sum, &[Some(216.0), Some(-300.0)]), "-84");
    }

    #[test]
    fn all_missing() {
        assert_eq!(fold(AggKind::Sum, &[None, None]), "0");
        assert_eq!(fold(AggKind::Avg, &[None, None]), "null");
        assert_eq!(fold(AggKind::Min, &[None]), "null");
    }

    #[test]
    fn avg_rounds_half_even_in_nano_units() {
        assert_eq!(
            fold(AggKind::Avg, &[Some(1.0), Some(0.0), Some(0.0)]),
            "0.333333333"
        );
        assert_eq!(divide_half_even(5, 2), 2);
        assert_eq!(divide_half_even(7, 2), 4);
        assert_eq!(divide_half_even(-5, 2), -2);
    }

    #[test]
    fn values() {
        let sum = AggKind::Sum;
        assert_eq!(sum.value_of(None), Ok(None));
        assert_eq!(sum.value_of(Some(&Scalar::Null)), Ok(None));
        assert_eq!(
            sum.value_of(Some(&Scalar::Str(" 12.5 ".into()))),
            Ok(Some(12.5))
        );
        assert!(sum.value_of(Some(&Scalar::Str("BUY".into()))).is_err());
        assert!(sum.value_of(Some(&Scalar::Bool(true))).is_err());
        assert!(sum.value_of(Some(&Scalar::Float(1e21))).is_err());
        assert_eq!(
            AggKind::Max.value_of(Some(&Scalar::Float(1e21))),
            Ok(Some(1e21))
        );
        assert!(AggKind::Min
            .value_of(Some(&Scalar::Str("NaN".into())))
            .is_err());
    }
}
