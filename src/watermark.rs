//! Per-partition event-time clock: lateness, watermark and the bitflip guard.
//!
//! Contract (all of it a function of the partition's own record sequence, never of scheduling,
//! so "is this record late?" has the same answer for any worker or process count):
//! - `max` starts at the partition's `reference` (the minimum of its first few event times, read
//!   ahead by the source) or unset, and only grows.
//! - A record is LATE iff `ts < max - max_out_of_orderness`.
//! - A record is AHEAD iff `ts > max + max_future` (a bitflipped timestamp, or a real jump). Ahead
//!   records are held back; `future_confirmations` consecutive ahead records that lie within
//!   `max_future` of each other confirm a jump and are released as on time, otherwise the next
//!   ordinary record rejects them (dead letter `future`). So one record can never drag the
//!   watermark forward by more than `max_future`.
//! - The watermark is `max - max_out_of_orderness`; every record released as on time has
//!   `ts >= watermark`, which is what lets the source hold its capability at the watermark.

/// What the clock says about one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    OnTime,
    Late,
    /// Held back pending confirmation (unless this very record confirmed the jump; see `Resolution`).
    Ahead,
}

/// What became of the records held back as `Ahead` before this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A confirmed jump: the held records, and the current one, are on time.
    Confirmed,
    /// Bitflips: the held records go to the dead-letter output as `future`.
    Rejected,
}

#[derive(Clone, Debug)]
pub struct Clock {
    max: Option<u64>,
    bound: u64,
    max_future: u64,
    confirmations: usize,
    /// Event times of the records held back as ahead, in arrival order.
    held: Vec<u64>,
}

impl Clock {
    pub fn new(reference: Option<u64>, bound: u64, max_future: u64, confirmations: usize) -> Self {
        Clock {
            max: reference,
            bound,
            max_future,
            confirmations: confirmations.max(1),
            held: Vec::new(),
        }
    }

    /// Lower bound on the event time of every record this partition will still release as on time.
    pub fn watermark(&self) -> u64 {
        self.max.map_or(0, |m| m.saturating_sub(self.bound))
    }

    /// Raises the watermark to at least `floor`, never lowers it. The source calls this for a
    /// partition that was idle or has just appeared: its records below the source's capability
    /// (which the other partitions moved on) must count as late for it, not be sent below it.
    pub fn raise_watermark(&mut self, floor: u64) {
        if self.watermark() < floor {
            self.max = Some(floor.saturating_add(self.bound));
        }
    }

    /// Classifies one record, and says what became of earlier held records.
    pub fn observe(&mut self, ts: u64) -> (Verdict, Option<Resolution>) {
        let Some(max) = self.max else {
            self.max = Some(ts);
            return (Verdict::OnTime, None);
        };
        if ts > max.saturating_add(self.max_future) {
            let mut resolution = None;
            if self
                .held
                .first()
                .is_some_and(|&first| ts.abs_diff(first) > self.max_future)
            {
                // Not the same jump: the held records were bitflips; this one starts a new candidate.
                self.held.clear();
                resolution = Some(Resolution::Rejected);
            }
            self.held.push(ts);
            if self.held.len() >= self.confirmations {
                // With confirmations >= 2 a rejection above leaves one held record, so both cannot happen.
                self.max = self.held.iter().copied().max();
                self.held.clear();
                resolution = Some(Resolution::Confirmed);
            }
            return (Verdict::Ahead, resolution);
        }
        let resolution = (!self.held.is_empty()).then(|| {
            self.held.clear();
            Resolution::Rejected
        });
        if ts < max.saturating_sub(self.bound) {
            (Verdict::Late, resolution)
        } else {
            self.max = Some(max.max(ts));
            (Verdict::OnTime, resolution)
        }
    }

    /// At the end of the partition, records still held back are rejected.
    pub fn finish(&mut self) -> Option<Resolution> {
        (!self.held.is_empty()).then(|| {
            self.held.clear();
            Resolution::Rejected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new(Some(10_000), 5_000, 3_600_000, 3)
    }

    #[test]
    fn lateness_is_relative_to_the_partition_max() {
        let mut c = clock();
        assert_eq!(c.watermark(), 5_000);
        assert_eq!(c.observe(12_000), (Verdict::OnTime, None));
        assert_eq!(c.observe(7_000), (Verdict::OnTime, None)); // 12s - 5s: exactly on the bound
        assert_eq!(c.observe(6_999), (Verdict::Late, None));
        assert_eq!(c.watermark(), 7_000);
    }

    #[test]
    fn a_bitflip_is_rejected_and_does_not_move_the_watermark() {
        let mut c = clock();
        assert_eq!(c.observe(1u64 << 50), (Verdict::Ahead, None));
        assert_eq!(
            c.observe(11_000),
            (Verdict::OnTime, Some(Resolution::Rejected))
        );
        assert_eq!(c.watermark(), 6_000);
    }

    #[test]
    fn a_confirmed_jump_moves_the_clock() {
        let mut c = clock();
        let later = 10_000 + 2 * 3_600_000;
        assert_eq!(c.observe(later + 5), (Verdict::Ahead, None));
        assert_eq!(c.observe(later), (Verdict::Ahead, None));
        assert_eq!(
            c.observe(later + 9),
            (Verdict::Ahead, Some(Resolution::Confirmed))
        );
        assert_eq!(c.watermark(), later + 9 - 5_000);
    }

    #[test]
    fn two_unrelated_bitflips_do_not_confirm_each_other() {
        let mut c = Clock::new(Some(10_000), 5_000, 3_600_000, 2);
        assert_eq!(c.observe(1u64 << 50), (Verdict::Ahead, None));
        assert_eq!(
            c.observe(1u64 << 40),
            (Verdict::Ahead, Some(Resolution::Rejected))
        );
        assert_eq!(
            c.observe(10_500),
            (Verdict::OnTime, Some(Resolution::Rejected))
        );
        assert_eq!(c.watermark(), 5_500);
    }

    #[test]
    fn held_records_at_the_end_are_rejected() {
        let mut c = clock();
        c.observe(u64::MAX / 2);
        assert_eq!(c.finish(), Some(Resolution::Rejected));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn raising_makes_older_records_late_and_never_lowers() {
        let mut c = Clock::new(None, 5_000, 3_600_000, 3);
        c.raise_watermark(0);
        assert_eq!(c.observe(1_000), (Verdict::OnTime, None)); // no reference: first record anchors
        c.raise_watermark(50_000);
        assert_eq!(c.watermark(), 50_000);
        assert_eq!(c.observe(49_999).0, Verdict::Late);
        c.raise_watermark(10_000);
        assert_eq!(c.watermark(), 50_000);
    }

    #[test]
    fn without_reference_the_first_record_anchors() {
        let mut c = Clock::new(None, 5_000, 3_600_000, 3);
        assert_eq!(c.watermark(), 0);
        assert_eq!(c.observe(100_000), (Verdict::OnTime, None));
        assert_eq!(c.watermark(), 95_000);
    }
}
