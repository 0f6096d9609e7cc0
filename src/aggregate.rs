//! Aggregate functions and their mergeable accumulators.
//!
//! Contract: an `Acc` is a commutative monoid: `update` folds one record in, `merge` folds a
//! partial accumulator from another worker or batch in, and the final value does not depend on
//! the order of updates and merges. That is what lets sources pre-aggregate before the exchange
//! and keeps output identical for any worker or process count.

use crate::extract::Scalar;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// Number of records.
    Count,
    /// The field's value at the earliest event time (ties: the smallest JSON text), `null` when
    /// missing. Sessions use it to carry fields such as `user_id` from their first event.
    First,
}

impl AggKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "count" => AggKind::Count,
            "first" => AggKind::First,
            other => bail!("unknown aggregate `{other}` (expected count or first)"),
        })
    }

    /// Whether the aggregate reads a field of the record.
    pub fn needs_field(self) -> bool {
        match self {
            AggKind::Count => false,
            AggKind::First => true,
        }
    }

    /// The PostgreSQL column type of the final value.
    pub fn sql_type(self) -> &'static str {
        match self {
            AggKind::Count => "bigint",
            AggKind::First => "text",
        }
    }

    pub fn new_acc(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
            AggKind::First => Acc::First(None),
        }
    }
}

/// A partial aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
    /// `(event time, value as JSON text)` of the earliest record seen.
    First(Option<(u64, String)>),
}

impl Acc {
    /// Folds one record's value (`None` when the aggregate reads no field or the field is missing).
    #[inline]
    pub fn update(&mut self, value: Option<&Scalar<'_>>) {
        self.update_at(value, 0)
    }

    /// Folds one record's value at event time `ts` (order-aware aggregates such as `first`).
    #[inline]
    pub fn update_at(&mut self, value: Option<&Scalar<'_>>, ts: u64) {
        match self {
            Acc::Count(n) => *n += 1,
            Acc::First(first) => {
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
        }
    }

    /// Folds a partial accumulator of the same aggregate.
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::First(a), Acc::First(b)) => merge_first(a, b),
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
            Acc::First(Some((_, text))) => out.push_str(text),
            Acc::First(None) => out.push_str("null"),
        }
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
        a.write_json(&mut s);
        assert_eq!(s, "3");
    }

    #[test]
    fn first_is_order_independent() {
        let value = |s: &'static str| Scalar::Str(s.into());
        let mut a = AggKind::First.new_acc();
        a.update_at(Some(&value("late")), 20);
        let mut b = AggKind::First.new_acc();
        b.update_at(Some(&value("b")), 10);
        b.update_at(Some(&value("a")), 10);
        let mut ab = a.clone();
        ab.merge(b.clone());
        b.merge(a);
        assert_eq!(ab, b);
        let mut s = String::new();
        ab.write_json(&mut s);
        assert_eq!(s, "\"a\"");
    }
}
