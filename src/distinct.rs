//! Distinct counting: an exact set of 128-bit value hashes and a HyperLogLog sketch.
//!
//! Contract: both are mergeable (union is commutative, associative and idempotent), so partial
//! states from any number of workers and processes merge into the state of one global set.
//! - `ExactSet` keeps the xxh3-128 hash of each distinct value: exact up to 128-bit hash
//!   collisions (for a billion distinct values the chance of any collision is about 1e-21), at a
//!   fixed 16 bytes per value with no allocation per value, which a set of strings cannot offer.
//! - `HyperLogLog` has `2^precision` one-byte registers (precision 4..=18) and estimates with
//!   Ertl's improved estimator ("New cardinality estimation algorithms for HyperLogLog sketches",
//!   2017), which needs no bias tables and is unbiased from 0 to far beyond 2^40. Its relative
//!   standard error is `1.04 / sqrt(2^precision)`.

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

/// The hash of one value as the distinct counters see it.
#[inline]
pub fn value_hash(value: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(value)
}

/// Exact distinct count: the set of value hashes.
///
/// Inserts go to a plain list first (`pending`) and reach the hash set when the set is merged
/// into another or counted. The sources pre-aggregate each record into a partial set per window
/// and flush it to the window operator, which merges it into the window's set anyway; hashing
/// every value into the partial set as well would pay for each value twice where users are
/// mostly distinct within a flush (the unique-users workload), for a saving only where they
/// repeat. The list holds at most `PENDING_LIMIT` values, so a set that is only ever inserted
/// into still stays within its distinct count plus that.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExactSet {
    hashes: FxHashSet<u128>,
    /// Inserted values not yet in `hashes` (they may repeat). Boxed, and absent until the first
    /// insert, so that every `Acc` stays 48 bytes: tables hold one per key and aggregate.
    #[allow(clippy::box_collection)] // the box is the point: 8 bytes here instead of 24
    pending: Option<Box<Vec<u128>>>,
}

/// Most values a set lists before hashing them in (16 bytes each: 1 MiB).
const PENDING_LIMIT: usize = 1 << 16;

impl ExactSet {
    #[inline]
    pub fn insert(&mut self, hash: u128) {
        let pending = self.pending.get_or_insert_with(Default::default);
        if pending.len() == PENDING_LIMIT {
            self.hashes.extend(pending.drain(..));
        }
        pending.push(hash);
    }

    /// The values not yet in the hash set.
    fn pending(&self) -> &[u128] {
        self.pending.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Moves the pending values into the hash set.
    fn settle(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.hashes.extend(*pending);
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &ExactSet) {
        self.settle();
        let incoming = other.pending();
        self.hashes.reserve(other.hashes.len() + incoming.len());
        self.hashes.extend(other.hashes.iter().copied());
        self.hashes.extend(incoming.iter().copied());
    }

    /// The number of distinct values.
    pub fn len(&self) -> usize {
        let pending = self.pending();
        if pending.is_empty() {
            return self.hashes.len();
        }
        let mut extra: FxHashSet<u128> = FxHashSet::default();
        extra.extend(pending.iter().filter(|h| !self.hashes.contains(*h)));
        self.hashes.len() + extra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty() && self.pending().is_empty()
    }
}

/// Equal when they hold the same values, however many are still pending.
impl PartialEq for ExactSet {
    fn eq(&self, other: &ExactSet) -> bool {
        let all = |set: &ExactSet| -> FxHashSet<u128> {
            set.hashes.iter().chain(set.pending()).copied().collect()
        };
        all(self) == all(other)
    }
}

/// Smallest and largest precision a dataflow may ask for.
pub const PRECISIONS: std::ops::RangeInclusive<u8> = 4..=18;

/// A HyperLogLog sketch over 64 bits of the value hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HyperLogLog {
    precision: u8,
    registers: Vec<u8>,
}

impl HyperLogLog {
    /// An empty sketch; `precision` must lie in `PRECISIONS` (the dataflow file is validated).
    pub fn new(precision: u8) -> Self {
        assert!(PRECISIONS.contains(&precision), "precision {precision}");
        HyperLogLog {
            precision,
            registers: vec![0; 1 << precision],
        }
    }

    /// Relative standard error of the estimate: `1.04 / sqrt(m)`.
    pub fn relative_standard_error(precision: u8) -> f64 {
        1.04 / ((1u64 << precision) as f64).sqrt()
    }

    pub fn precision(&self) -> u8 {
        self.precision
    }

    #[inline]
    pub fn insert(&mut self, hash: u128) {
        let hash = hash as u64;
        let p = u32::from(self.precision);
        let index = (hash >> (64 - p)) as usize;
        // Rank = position of the first 1 among the remaining 64 - p bits, 64 - p + 1 if none.
        let rank = ((hash << p).leading_zeros().min(64 - p) + 1) as u8;
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    /// Union; both sketches have the same precision (one aggregate, one precision).
    pub fn merge(&mut self, other: &HyperLogLog) {
        assert_eq!(self.precision, other.precision, "merging sketches");
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    /// The cardinality estimate (Ertl 2017, algorithm 6).
    pub fn estimate(&self) -> f64 {
        let q = 64 - usize::from(self.precision);
        let m = self.registers.len() as f64;
        let mut histogram = vec![0u32; q + 2];
        for &r in &self.registers {
            histogram[usize::from(r)] += 1;
        }
        let mut z = m * tau(1.0 - f64::from(histogram[q + 1]) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        let alpha_infinity = 1.0 / (2.0 * std::f64::consts::LN_2);
        alpha_infinity * m * m / z
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(range: std::ops::Range<u64>) -> impl Iterator<Item = u128> {
        range.map(|i| value_hash(format!("user-{i}").as_bytes()))
    }

    #[test]
    fn exact_merge_is_a_union() {
        let (mut a, mut b) = (ExactSet::default(), ExactSet::default());
        hashes(0..1000).for_each(|h| a.insert(h));
        hashes(500..1500).for_each(|h| b.insert(h));
        a.merge(&b);
        assert_eq!(a.len(), 1500);
    }

    #[test]
    fn an_exact_set_keeps_accumulators_at_48_bytes() {
        assert_eq!(std::mem::size_of::<crate::aggregate::Acc>(), 48);
    }

    #[test]
    fn pending_values_count_once_however_they_are_held() {
        // Values repeat within the pending list, between it and the set, and past the limit.
        let values =
            || (0..3 * PENDING_LIMIT as u64).map(|i| value_hash(&(i % 70_000).to_le_bytes()));
        let mut listed = ExactSet::default();
        values().for_each(|h| listed.insert(h));
        assert_eq!(listed.len(), 70_000);
        let mut merged = ExactSet::default();
        merged.merge(&listed);
        assert_eq!(merged.len(), 70_000);
        assert!(merged.pending().is_empty());
        assert_eq!(merged, listed);
        let mut a = ExactSet::default();
        hashes(0..10).for_each(|h| a.insert(h));
        a.insert(value_hash(b"user-3"));
        assert_eq!(a.len(), 10);
        assert!(!a.is_empty() && ExactSet::default().is_empty());
    }

    #[test]
    fn empty_sketch_estimates_zero() {
        assert_eq!(HyperLogLog::new(12).estimate(), 0.0);
    }

    #[test]
    fn estimates_within_the_documented_error() {
        for precision in [10u8, 14] {
            let rse = HyperLogLog::relative_standard_error(precision);
            for n in [10u64, 1_000, 100_000] {
                let mut sketch = HyperLogLog::new(precision);
                hashes(0..n).for_each(|h| sketch.insert(h));
                let error = (sketch.estimate() - n as f64).abs() / n as f64;
                assert!(error < 4.0 * rse, "p={precision} n={n} error={error}");
            }
        }
    }

    #[test]
    fn merged_sketches_equal_one_sketch_of_the_union() {
        let (mut a, mut b, mut all) = (
            HyperLogLog::new(12),
            HyperLogLog::new(12),
            HyperLogLog::new(12),
        );
        hashes(0..3000).for_each(|h| a.insert(h));
        hashes(2000..6000).for_each(|h| b.insert(h));
        hashes(0..6000).for_each(|h| all.insert(h));
        a.merge(&b);
        assert_eq!(a, all);
    }
}
