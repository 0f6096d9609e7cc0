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

use crate::distinct::{value_hash, ExactSet, HyperLogLog, PRECISIONS};
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
    /// Records per second of window duration: count / (window_end - window_start).
    RatePerSecond,
    /// Exact number of distinct values of a field (see `distinct::ExactSet`).
    CountDistinct,
    /// Estimated number of distinct values: a HyperLogLog sketch with `2^precision` registers.
    CountDistinctApprox {
        precision: u8,
    },
    /// Exact sum of a numeric field.
    Sum,
    /// Unweighted mean of a numeric field, rounded to `SUM_DECIMALS` places.
    Avg,
    Min,
    Max,
    /// The field's value at the earliest event time (ties: the smallest JSON text), `null` when
    /// missing. Sessions use it to carry fields such as `user_id` from their first event.
    First,
}

/// Precision of `count_distinct` in `mode = "approx"` when the dataflow names none (RSE 0.81 %).
pub const DEFAULT_PRECISION: u8 = 14;

impl AggKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "count" => AggKind::Count,
            "rate_per_second" => AggKind::RatePerSecond,
            "count_distinct" => AggKind::CountDistinct,
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "first" => AggKind::First,
            other => bail!(
                "unknown aggregate `{other}` (expected count, rate_per_second, count_distinct, sum, avg, min, max or first)"
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
        !matches!(self, AggKind::Count | AggKind::RatePerSecond)
    }

    /// The PostgreSQL column type of the final value.
    pub fn sql_type(self) -> &'static str {
        match self {
            AggKind::Count | AggKind::CountDistinct | AggKind::CountDistinctApprox { .. } => {
                "bigint"
            }
            AggKind::Sum | AggKind::Avg => "numeric",
            AggKind::RatePerSecond | AggKind::Min | AggKind::Max => "double precision",
            AggKind::First => "text",
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
            AggKind::Sum => Acc::Sum(0),
            AggKind::Avg => Acc::Avg { nanos: 0, n: 0 },
            AggKind::Min => Acc::Min(None),
            AggKind::Max => Acc::Max(None),
            AggKind::First => Acc::First(None),
        }
    }

    /// What a record's field contributes to this aggregate, computed once per record however
    /// many windows it lands in: `Input::Missing` when missing or null (skipped) or when the
    /// aggregate reads no number or hash, `Err(reason)` when present but unusable (the record is
    /// malformed).
    pub fn value_of(self, value: Option<&Scalar<'_>>) -> Result<Input, &'static str> {
        if matches!(
            self,
            AggKind::CountDistinct | AggKind::CountDistinctApprox { .. }
        ) {
            // A record without the field adds no value (dataflows list such fields in `required`).
            return Ok(value.map_or(Input::Missing, |v| {
                Input::Hash(value_hash(v.as_text().as_bytes()))
            }));
        }
        if !matches!(
            self,
            AggKind::Sum | AggKind::Avg | AggKind::Min | AggKind::Max
        ) {
            return Ok(Input::Missing);
        }
        let number = match value {
            None | Some(Scalar::Null) => return Ok(Input::Missing),
            Some(Scalar::Str(s)) if s.trim().is_empty() => return Ok(Input::Missing),
            Some(v) => v.as_f64().ok_or("is not a number")?,
        };
        if !number.is_finite() {
            return Err("is not a finite number");
        }
        if matches!(self, AggKind::Sum | AggKind::Avg) && number.abs() > SUM_LIMIT {
            return Err("is beyond the exact-sum range (1e20)");
        }
        Ok(Input::Number(number))
    }
}

/// What one record contributes to an aggregate besides being counted (see `AggKind::value_of`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input {
    Missing,
    /// The field's number (`sum`, `avg`, `min`, `max`).
    Number(f64),
    /// The hash of the field's value (`count_distinct`).
    Hash(u128),
}

/// A partial aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
    /// `(event time, value as JSON text)` of the earliest record seen.
    First(Option<(u64, String)>),
    /// Number of records; rendered per second of the window's duration.
    RatePerSecond(u64),
    Distinct(ExactSet),
    DistinctApprox(HyperLogLog),
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
    /// Folds one record: its field `value` and the `input` `AggKind::value_of` made of it.
    #[inline]
    pub fn update(&mut self, value: Option<&Scalar<'_>>, input: Input) {
        self.update_at(value, input, 0)
    }

    /// Folds one record at event time `ts` (order-aware aggregates such as `first` use it).
    #[inline]
    pub fn update_at(&mut self, value: Option<&Scalar<'_>>, input: Input, ts: u64) {
        match (self, input) {
            (Acc::Count(n) | Acc::RatePerSecond(n), _) => *n += 1,
            (Acc::First(first), _) => {
                if first.as_ref().is_some_and(|(t, _)| ts > *t) {
                    return; // the common case (records mostly in order): nothing to format
                }
                let mut text = String::new();
                match value {
                    Some(v) => v.write_json(&mut text),
                    None => text.push_str("null"),
                }
                merge_first(first, Some((ts, text)));
            }
            (Acc::Distinct(set), Input::Hash(hash)) => set.insert(hash),
            (Acc::DistinctApprox(sketch), Input::Hash(hash)) => sketch.insert(hash),
            (Acc::Sum(sum), Input::Number(v)) => *sum = sum.saturating_add(to_nanos(v)),
            (Acc::Avg { nanos, n }, Input::Number(v)) => {
                *nanos = nanos.saturating_add(to_nanos(v));
                *n += 1;
            }
            (Acc::Min(m), Input::Number(v)) => *m = Some(m.map_or(v, |m| m.min(v))),
            (Acc::Max(m), Input::Number(v)) => *m = Some(m.map_or(v, |m| m.max(v))),
            _ => {}
        }
    }

    /// Folds a partial accumulator of the same aggregate.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) | (Acc::RatePerSecond(a), Acc::RatePerSecond(b)) => {
                *a += b
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.merge(b),
            (Acc::DistinctApprox(a), Acc::DistinctApprox(b)) => a.merge(b),
            (Acc::Sum(a), Acc::Sum(b)) => *a = a.saturating_add(*b),
            (Acc::Avg { nanos, n }, Acc::Avg { nanos: b, n: m }) => {
                *nanos = nanos.saturating_add(*b);
                *n += m;
            }
            (Acc::Min(a), Acc::Min(b)) => *a = min_of(*a, *b, f64::min),
            (Acc::Max(a), Acc::Max(b)) => *a = min_of(*a, *b, f64::max),
            (Acc::First(a), Acc::First(b)) => merge_first(a, b.clone()),
            (a, b) => unreachable!("merging different aggregates {a:?} and {b:?}"),
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
                write_rounded(out, *n as f64 / seconds);
                Ok(())
            }
            Acc::Distinct(set) => write!(out, "{}", set.len()),
            Acc::DistinctApprox(sketch) => write!(out, "{}", sketch.estimate().round() as u64),
            Acc::Sum(nanos) => {
                write_decimal(out, *nanos);
                Ok(())
            }
            Acc::Avg { n: 0, .. } | Acc::Min(None) | Acc::Max(None) => {
                out.push_str("null");
                Ok(())
            }
            Acc::Avg { nanos, n } => {
                write_decimal(out, divide_half_even(*nanos, *n as i128));
                Ok(())
            }
            Acc::Min(Some(v)) | Acc::Max(Some(v)) => {
                write_f64(out, *v);
                Ok(())
            }
            Acc::First(Some((_, text))) => {
                out.push_str(text);
                Ok(())
            }
            Acc::First(None) => {
                out.push_str("null");
                Ok(())
            }
        };
    }
}

/// Appends a finite float as JSON with at most 6 decimals (`null` if not finite).
pub fn write_rounded(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_finite() {
        let rounded = (value * 1e6).round() / 1e6;
        let _ = write!(out, "{rounded}");
    } else {
        out.push_str("null");
    }
}

/// Keeps the smaller `(time, text)`: commutative and associative, so the result does not depend
/// on the order in which records and partials arrive.
fn merge_first(into: &mut Option<(u64, String)>, other: Option<(u64, String)>) {
    if let Some(other) = other {
        if into.as_ref().is_none_or(|current| other < *current) {
            *into = Some(other);
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
            vs.iter()
                .for_each(|v| acc.update(None, v.map_or(Input::Missing, Input::Number)));
            acc
        };
        let (mut a, mut b) = (part(left), part(right));
        let (a2, b2) = (a.clone(), b.clone());
        a.merge(&b2);
        b.merge(&a2);
        let (mut x, mut y) = (String::new(), String::new());
        a.write_json(0, 1, &mut x);
        b.write_json(0, 1, &mut y);
        assert_eq!(x, y);
        x
    }

    #[test]
    fn count_merges() {
        let mut a = AggKind::Count.new_acc();
        a.update(None, Input::Missing);
        a.update(None, Input::Missing);
        let mut b = AggKind::Count.new_acc();
        b.update(None, Input::Missing);
        a.merge(&b);
        let mut s = String::new();
        a.write_json(0, 1000, &mut s);
        assert_eq!(s, "3");
    }

    #[test]
    fn rate_divides_by_the_window_duration() {
        let mut a = AggKind::RatePerSecond.new_acc();
        (0..90).for_each(|_| a.update(None, Input::Missing));
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
        let put = |acc: &mut Acc, v: &str| {
            let value = Scalar::Str(v.into());
            let input = AggKind::CountDistinct.value_of(Some(&value)).unwrap();
            acc.update(Some(&value), input);
        };
        for v in ["x", "y", "x"] {
            put(&mut a, v);
        }
        for v in ["y", "z"] {
            put(&mut b, v);
        }
        b.update(None, Input::Missing);
        a.merge(&b);
        let mut s = String::new();
        a.write_json(0, 1, &mut s);
        assert_eq!(s, "3");
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
        assert_eq!(sum.value_of(None), Ok(Input::Missing));
        assert_eq!(sum.value_of(Some(&Scalar::Null)), Ok(Input::Missing));
        assert_eq!(
            sum.value_of(Some(&Scalar::Str(" 12.5 ".into()))),
            Ok(Input::Number(12.5))
        );
        assert!(sum.value_of(Some(&Scalar::Str("BUY".into()))).is_err());
        assert!(sum.value_of(Some(&Scalar::Bool(true))).is_err());
        assert!(sum.value_of(Some(&Scalar::Float(1e21))).is_err());
        assert_eq!(
            AggKind::Max.value_of(Some(&Scalar::Float(1e21))),
            Ok(Input::Number(1e21))
        );
        assert!(AggKind::Min
            .value_of(Some(&Scalar::Str("NaN".into())))
            .is_err());
    }

    #[test]
    fn first_is_order_independent() {
        let value = |s: &'static str| Scalar::Str(s.into());
        let mut a = AggKind::First.new_acc();
        a.update_at(Some(&value("late")), Input::Missing, 20);
        let mut b = AggKind::First.new_acc();
        b.update_at(Some(&value("b")), Input::Missing, 10);
        b.update_at(Some(&value("a")), Input::Missing, 10);
        let mut ab = a.clone();
        ab.merge(&b);
        b.merge(&a);
        assert_eq!(ab, b);
        let mut s = String::new();
        ab.write_json(0, 1, &mut s);
        assert_eq!(s, "\"a\"");
    }
}
