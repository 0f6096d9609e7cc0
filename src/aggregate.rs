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
}

impl AggKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "count" => AggKind::Count,
            other => bail!("unknown aggregate `{other}` (expected count)"),
        })
    }

    /// Whether the aggregate reads a field of the record.
    pub fn needs_field(self) -> bool {
        match self {
            AggKind::Count => false,
        }
    }

    pub fn new_acc(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
        }
    }
}

/// A partial aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Acc {
    Count(u64),
}

impl Acc {
    /// Folds one record's value (`None` when the aggregate reads no field or the field is missing).
    #[inline]
    pub fn update(&mut self, _value: Option<&Scalar<'_>>) {
        match self {
            Acc::Count(n) => *n += 1,
        }
    }

    /// Folds a partial accumulator of the same aggregate.
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
        }
    }

    /// Appends the final value as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Acc::Count(n) => out.push_str(itoa::Buffer::new().format(*n)),
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
}
