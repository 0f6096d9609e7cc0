//! Window assignment: which windows an event time belongs to, via panes.
//!
//! Contract: windows are aligned to the Unix epoch (calendar windows to the UTC calendar), so
//! assignment depends only on `ts`, never on arrival order or worker. Every window is a union of
//! consecutive panes (for sliding windows `gcd(size, slide)` long; for tumbling and calendar
//! windows the window itself), and a record updates exactly one pane per window spec:
//! `pane(ts)`. `windows_of_pane` lists every window `[start, end)` that contains a pane, so a
//! window's result combines its panes and no record is ever visited once per window. A sliding
//! window `[k*slide, k*slide + size)` exists (and is emitted) for a key when at least one of its
//! panes holds a record of that key; at the edges of the data that means the first window
//! reported starts up to `size - slide` before the first record, and the last one ends up to
//! `size` after the last record. `CachedAssigner` gives the same panes and skips the calendar
//! arithmetic while records stay in the current period.
//!
//! Windows that tile time (tumbling, calendar) can also be built from finer ones: when every
//! window of kind A lies inside one window of kind B (`nests_in`), B's result for a key is the
//! merge of A's closed windows inside it. `feeders` picks, per window spec, the coarsest such A;
//! records then update only the specs nobody feeds (one per record for minute → hour → day →
//! week, month → year instead of six), and a coarse distinct set takes each finer window's
//! distinct values once instead of every record's.

use crate::spec::RawWindow;
use crate::time::parse_duration_ms;
use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows `[k*size, (k+1)*size)`.
    Tumbling { size_ms: u64 },
    /// Hopping windows `[k*slide, k*slide + size)`; each time lies in `size / slide` of them
    /// (rounded up when `slide` does not divide `size`).
    Sliding { size_ms: u64, slide_ms: u64 },
    /// UTC calendar periods: ISO weeks start on Monday; months and years have their true lengths.
    Calendar { unit: CalendarUnit },
    /// Per-key sessions: events closer than `gap_ms` belong to one session; a silence of exactly
    /// `gap_ms` or more ends it. Sessions are not assigned here but merged by
    /// `operators::session`.
    Session { gap_ms: u64 },
}

/// A period of the UTC calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalendarUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

const DAY_MS: u64 = 86_400_000;

impl CalendarUnit {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "minute" => CalendarUnit::Minute,
            "hour" => CalendarUnit::Hour,
            "day" => CalendarUnit::Day,
            "week" => CalendarUnit::Week,
            "month" => CalendarUnit::Month,
            "year" => CalendarUnit::Year,
            other => {
                bail!("unknown calendar unit `{other}` (expected minute, hour, day, week, month, year)")
            }
        })
    }

    /// The period `[start, end)` containing `ts` (epoch ms). The week holding 1970-01-01 (a
    /// Thursday) starts at 0, not on the Monday before the epoch.
    pub fn bounds(self, ts: u64) -> (u64, u64) {
        let fixed = |size: u64| {
            let start = ts - ts % size;
            (start, start.saturating_add(size))
        };
        match self {
            CalendarUnit::Minute => fixed(60_000),
            CalendarUnit::Hour => fixed(3_600_000),
            CalendarUnit::Day => fixed(DAY_MS),
            CalendarUnit::Week => {
                let day = ts / DAY_MS;
                // Day 0 was a Thursday: (day + 3) % 7 is the number of days since Monday.
                let since_monday = (day + 3) % 7;
                let start = day.saturating_sub(since_monday) * DAY_MS;
                (start, (day + 7 - since_monday).saturating_mul(DAY_MS))
            }
            CalendarUnit::Month | CalendarUnit::Year => {
                use chrono::{Datelike, NaiveDate};
                // Past chrono's calendar (year 262143), months and years degrade to days, so
                // that finer windows still nest in them.
                let Some(date) = chrono::DateTime::from_timestamp_millis(ts as i64) else {
                    return CalendarUnit::Day.bounds(ts);
                };
                let date = date.date_naive();
                let (year, month) = (date.year(), date.month());
                let (first, next) = if self == CalendarUnit::Month {
                    let next = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                    ((year, month), next)
                } else {
                    ((year, 1), (year + 1, 1))
                };
                let millis = |(y, m): (i32, u32)| {
                    NaiveDate::from_ymd_opt(y, m, 1)
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map_or(u64::MAX, |t| t.and_utc().timestamp_millis() as u64)
                };
                (millis(first), millis(next))
            }
        }
    }
}

impl CalendarUnit {
    /// Every boundary between periods of this unit is a multiple of this (epoch ms).
    fn boundary_step_ms(self) -> u64 {
        match self {
            CalendarUnit::Minute => 60_000,
            CalendarUnit::Hour => 3_600_000,
            CalendarUnit::Day | CalendarUnit::Week | CalendarUnit::Month | CalendarUnit::Year => {
                DAY_MS
            }
        }
    }
}

impl WindowKind {
    /// Whether every window of `self` lies inside a single window of `coarser`: both tile time
    /// (tumbling or calendar) and every boundary of `coarser` is a boundary of `self`.
    pub fn nests_in(&self, coarser: &WindowKind) -> bool {
        use CalendarUnit::*;
        use WindowKind::{Calendar, Tumbling};
        match (*self, *coarser) {
            (Tumbling { size_ms: a }, Tumbling { size_ms: b }) => b % a == 0,
            (Tumbling { size_ms: a }, Calendar { unit }) => unit.boundary_step_ms() % a == 0,
            // Tumbling boundaries are multiples of the size from the epoch: only units of a
            // fixed length have theirs there.
            (Calendar { unit }, Tumbling { size_ms: b }) => {
                matches!(unit, Minute | Hour | Day) && b % unit.boundary_step_ms() == 0
            }
            (Calendar { unit: fine }, Calendar { unit: coarse }) => {
                fine == coarse
                    || matches!(
                        (fine, coarse),
                        (Minute, _)
                            | (Hour, Day | Week | Month | Year)
                            | (Day, Week | Month | Year)
                            | (Month, Year)
                    )
            }
            _ => false,
        }
    }

    pub(crate) fn from_raw(raw: &RawWindow) -> Result<Self> {
        let reject = |field: &str, present: bool| -> Result<()> {
            if present {
                bail!("{field}: not used by a `{}` window", raw.kind)
            }
            Ok(())
        };
        let duration = |field: &str, value: &Option<String>| -> Result<u64> {
            let Some(text) = value else {
                bail!("{field}: a {} window needs a {field}", raw.kind)
            };
            let ms = parse_duration_ms(text).with_context(|| field.to_string())?;
            if ms == 0 {
                bail!("{field}: must be greater than zero");
            }
            Ok(ms)
        };
        if raw.kind != "session" {
            reject("gap", raw.gap.is_some())?;
        }
        if raw.kind != "calendar" {
            reject("unit", raw.unit.is_some())?;
        }
        match raw.kind.as_str() {
            "tumbling" => {
                reject("slide", raw.slide.is_some())?;
                Ok(WindowKind::Tumbling {
                    size_ms: duration("size", &raw.size)?,
                })
            }
            "sliding" | "hopping" => {
                let size_ms = duration("size", &raw.size)?;
                let slide_ms = duration("slide", &raw.slide)?;
                if slide_ms > size_ms {
                    bail!("slide: must not exceed size (windows would leave gaps)");
                }
                Ok(WindowKind::Sliding { size_ms, slide_ms })
            }
            "calendar" => {
                reject("size", raw.size.is_some())?;
                reject("slide", raw.slide.is_some())?;
                let Some(unit) = &raw.unit else {
                    bail!("unit: a calendar window needs a unit (minute, hour, day, week, month, year)")
                };
                let unit = CalendarUnit::parse(unit).context("unit")?;
                Ok(WindowKind::Calendar { unit })
            }
            "session" => {
                reject("size", raw.size.is_some())?;
                reject("slide", raw.slide.is_some())?;
                Ok(WindowKind::Session {
                    gap_ms: duration("gap", &raw.gap)?,
                })
            }
            other => bail!(
                "type: unknown window type `{other}` (expected tumbling, sliding, calendar or session)"
            ),
        }
    }

    /// The pane `[start, end)` that `ts` updates.
    #[inline]
    pub fn pane(&self, ts: u64) -> (u64, u64) {
        let fixed = |pane: u64| {
            let start = ts - ts % pane;
            (start, start.saturating_add(pane))
        };
        match *self {
            WindowKind::Tumbling { size_ms } => fixed(size_ms),
            WindowKind::Sliding { size_ms, slide_ms } => fixed(gcd(size_ms, slide_ms)),
            WindowKind::Calendar { unit } => unit.bounds(ts),
            WindowKind::Session { .. } => (ts, ts.saturating_add(1)),
        }
    }

    /// Calls `each(start, end)` for every window containing the pane starting at `pane_start`,
    /// in increasing order.
    pub fn windows_of_pane(&self, pane_start: u64, mut each: impl FnMut(u64, u64)) {
        match *self {
            WindowKind::Tumbling { size_ms } => {
                each(pane_start, pane_start.saturating_add(size_ms))
            }
            WindowKind::Sliding { size_ms, slide_ms } => {
                // Starts s = k*slide with s <= pane_start and s + size >= pane_start + pane.
                let pane_end = pane_start + gcd(size_ms, slide_ms);
                let last = pane_start - pane_start % slide_ms;
                let mut start = last.saturating_sub(((size_ms - 1) / slide_ms) * slide_ms);
                while start <= last {
                    if start.saturating_add(size_ms) >= pane_end {
                        each(start, start.saturating_add(size_ms));
                    }
                    start += slide_ms;
                }
            }
            WindowKind::Calendar { unit } => each(pane_start, unit.bounds(pane_start).1),
            // Sessions are merged per key by `operators::session`, not built from panes.
            WindowKind::Session { .. } => {}
        }
    }

    /// The longest a window of this kind can be: how far after an event time the last window
    /// containing it can end. A session can grow without bound.
    pub fn max_extent_ms(&self) -> u64 {
        match *self {
            WindowKind::Tumbling { size_ms } | WindowKind::Sliding { size_ms, .. } => size_ms,
            WindowKind::Calendar { unit } => match unit {
                CalendarUnit::Minute => 60_000,
                CalendarUnit::Hour => 3_600_000,
                CalendarUnit::Day => DAY_MS,
                CalendarUnit::Week => 7 * DAY_MS,
                CalendarUnit::Month => 31 * DAY_MS,
                CalendarUnit::Year => 366 * DAY_MS,
            },
            WindowKind::Session { .. } => u64::MAX,
        }
    }

    /// Start of the next window after the one starting at `start`: panes before it are in no
    /// later window.
    pub fn next_window_start(&self, start: u64) -> u64 {
        match *self {
            WindowKind::Tumbling { size_ms } => start.saturating_add(size_ms),
            WindowKind::Sliding { slide_ms, .. } => start.saturating_add(slide_ms),
            WindowKind::Calendar { unit } => unit.bounds(start).1,
            WindowKind::Session { .. } => start.saturating_add(1),
        }
    }
}

/// The order in which windows ending at the same time close: finer first, so that a window is
/// complete before the one it feeds closes (see `feeders`).
pub fn close_rank(kinds: &[WindowKind], index: usize) -> (u64, usize) {
    (kinds[index].max_extent_ms(), index)
}

/// For each window kind, the one whose closed windows add up to its windows (see `nests_in`),
/// if any: the coarsest, which leaves the fewest to merge. A feeder always closes first: its
/// `close_rank` is lower.
pub fn feeders(kinds: &[WindowKind]) -> Vec<Option<usize>> {
    (0..kinds.len())
        .map(|fed| {
            (0..kinds.len())
                .filter(|&f| {
                    close_rank(kinds, f) < close_rank(kinds, fed) && kinds[f].nests_in(&kinds[fed])
                })
                .max_by_key(|&f| close_rank(kinds, f))
        })
        .collect()
}

/// Gives `WindowKind::pane`, remembering the last calendar period so that the calendar
/// arithmetic runs only when a record leaves it. One per worker and window spec.
pub struct CachedAssigner {
    kind: WindowKind,
    current: (u64, u64),
}

impl CachedAssigner {
    pub fn new(kind: WindowKind) -> Self {
        CachedAssigner {
            kind,
            current: (0, 0),
        }
    }

    #[inline]
    pub fn pane(&mut self, ts: u64) -> (u64, u64) {
        match self.kind {
            WindowKind::Calendar { unit } => {
                let (start, end) = self.current;
                if !(start <= ts && ts < end) {
                    self.current = unit.bounds(ts);
                }
                self.current
            }
            _ => self.kind.pane(ts),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis() as u64
    }

    fn bounds(unit: CalendarUnit, at: &str) -> (u64, u64) {
        let mut cached = CachedAssigner::new(WindowKind::Calendar { unit });
        let mut got = vec![];
        // Warm the cache with a neighbouring period first: the answer must not depend on it.
        cached.pane(ms(at) - 40 * DAY_MS);
        got.push(cached.pane(ms(at)));
        got.push(WindowKind::Calendar { unit }.pane(ms(at)));
        WindowKind::Calendar { unit }.windows_of_pane(got[0].0, |s, e| got.push((s, e)));
        assert_eq!(got[0], got[2]);
        assert_eq!(got[0], got[1]);
        got[0]
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        // 2024-03-10 is a Sunday, 2024-03-11 a Monday.
        let week = (ms("2024-03-04T00:00:00Z"), ms("2024-03-11T00:00:00Z"));
        assert_eq!(bounds(CalendarUnit::Week, "2024-03-10T23:59:59.999Z"), week);
        assert_eq!(
            bounds(CalendarUnit::Week, "2024-03-11T00:00:00Z"),
            (week.1, ms("2024-03-18T00:00:00Z"))
        );
        assert_eq!(
            bounds(CalendarUnit::Week, "1970-01-02T00:00:00Z"),
            (0, ms("1970-01-05T00:00:00Z"))
        );
    }

    #[test]
    fn months_and_years_have_their_calendar_lengths() {
        assert_eq!(
            bounds(CalendarUnit::Month, "2024-02-29T12:00:00Z"),
            (ms("2024-02-01T00:00:00Z"), ms("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            bounds(CalendarUnit::Month, "2023-12-31T23:59:59.999Z"),
            (ms("2023-12-01T00:00:00Z"), ms("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            bounds(CalendarUnit::Year, "2024-01-01T00:00:00Z"),
            (ms("2024-01-01T00:00:00Z"), ms("2025-01-01T00:00:00Z"))
        );
        assert_eq!(
            bounds(CalendarUnit::Day, "2024-02-29T00:00:00Z"),
            (ms("2024-02-29T00:00:00Z"), ms("2024-03-01T00:00:00Z"))
        );
    }

    fn windows_of(w: &WindowKind, ts: u64) -> Vec<(u64, u64)> {
        let mut got = vec![];
        w.windows_of_pane(w.pane(ts).0, |s, e| got.push((s, e)));
        got
    }

    #[test]
    fn tumbling_is_epoch_aligned() {
        let w = WindowKind::Tumbling { size_ms: 1_000 };
        assert_eq!(
            windows_of(&w, 1_515_445_354_999),
            vec![(1_515_445_354_000, 1_515_445_355_000)]
        );
        assert_eq!(
            windows_of(&w, 1_515_445_355_000),
            vec![(1_515_445_355_000, 1_515_445_356_000)]
        );
    }

    #[test]
    fn a_time_lies_in_every_window_that_contains_it() {
        let kinds = [
            WindowKind::Sliding {
                size_ms: 300,
                slide_ms: 60,
            },
            WindowKind::Sliding {
                size_ms: 300,
                slide_ms: 120,
            },
            WindowKind::Sliding {
                size_ms: 100,
                slide_ms: 100,
            },
            WindowKind::Sliding {
                size_ms: 7,
                slide_ms: 3,
            },
        ];
        for w in &kinds {
            let WindowKind::Sliding { size_ms, slide_ms } = *w else {
                unreachable!()
            };
            for ts in 0..2_000u64 {
                // Brute force: every aligned start whose window holds ts.
                let expected: Vec<(u64, u64)> = (0..=ts)
                    .filter(|s| s % slide_ms == 0 && ts < s + size_ms)
                    .map(|s| (s, s + size_ms))
                    .collect();
                assert_eq!(windows_of(w, ts), expected, "{w:?} at {ts}");
            }
        }
        let w = WindowKind::Sliding {
            size_ms: 300_000,
            slide_ms: 60_000,
        };
        assert_eq!(
            w.pane(1_534_849_271_061),
            (1_534_849_260_000, 1_534_849_320_000)
        );
        assert_eq!(windows_of(&w, 1_534_849_271_061).len(), 5);
    }

    fn tiling_kinds() -> Vec<WindowKind> {
        let mut kinds: Vec<WindowKind> = [1_000, 60_000, 420_000, 3_600_000, 7_200_000, DAY_MS]
            .into_iter()
            .chain([2 * DAY_MS, 7 * DAY_MS])
            .map(|size_ms| WindowKind::Tumbling { size_ms })
            .collect();
        use CalendarUnit::*;
        kinds.extend(
            [Minute, Hour, Day, Week, Month, Year].map(|unit| WindowKind::Calendar { unit }),
        );
        kinds
    }

    #[test]
    fn a_nested_window_lies_inside_the_window_of_its_start() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        use rand::{Rng, SeedableRng};
        let kinds = tiling_kinds();
        // Times around today, around calendar edges, and far past chrono's calendar.
        let times: Vec<u64> = (0..3_000)
            .map(|i| match i % 3 {
                0 => rng.gen_range(0..4_102_444_800_000),
                1 => ms("2024-12-31T23:00:00Z") + rng.gen_range(0..2 * 3_600_000),
                _ => rng.gen_range(0..u64::MAX / 2),
            })
            .collect();
        for fine in &kinds {
            for coarse in kinds.iter().filter(|c| fine.nests_in(c)) {
                for &ts in &times {
                    let (start, end) = fine.pane(ts);
                    let (outer_start, outer_end) = coarse.pane(start);
                    assert!(
                        outer_start <= start && end <= outer_end,
                        "{fine:?} [{start}, {end}) not in {coarse:?} [{outer_start}, {outer_end})"
                    );
                }
            }
        }
    }

    #[test]
    fn only_tiling_windows_whose_boundaries_agree_nest() {
        use CalendarUnit::*;
        let calendar = |unit| WindowKind::Calendar { unit };
        let tumbling = |size_ms| WindowKind::Tumbling { size_ms };
        let yes = [
            (tumbling(60_000), calendar(Hour)),
            (tumbling(60_000), tumbling(3_600_000)),
            (calendar(Day), calendar(Week)),
            (calendar(Day), calendar(Month)),
            (calendar(Month), calendar(Year)),
            (calendar(Hour), tumbling(DAY_MS)),
            (tumbling(DAY_MS), calendar(Year)),
        ];
        let no = [
            (calendar(Week), calendar(Month)),
            (tumbling(7 * DAY_MS), calendar(Week)),
            (calendar(Week), tumbling(7 * DAY_MS)),
            (tumbling(420_000), calendar(Hour)),
            (tumbling(3_600_000), tumbling(60_000)),
            (calendar(Month), tumbling(31 * DAY_MS)),
            (
                WindowKind::Sliding {
                    size_ms: 60_000,
                    slide_ms: 60_000,
                },
                calendar(Hour),
            ),
        ];
        for (fine, coarse) in yes {
            assert!(fine.nests_in(&coarse), "{fine:?} in {coarse:?}");
        }
        for (fine, coarse) in no {
            assert!(!fine.nests_in(&coarse), "{fine:?} in {coarse:?}");
        }
    }

    #[test]
    fn each_window_is_fed_by_the_coarsest_that_nests_in_it() {
        use CalendarUnit::*;
        let calendar = |unit| WindowKind::Calendar { unit };
        // The unique-users windows: 1m, 1h, 1d, week, month, year.
        let kinds = [
            WindowKind::Tumbling { size_ms: 60_000 },
            WindowKind::Tumbling { size_ms: 3_600_000 },
            WindowKind::Tumbling { size_ms: DAY_MS },
            calendar(Week),
            calendar(Month),
            calendar(Year),
        ];
        assert_eq!(
            feeders(&kinds),
            [None, Some(0), Some(1), Some(2), Some(2), Some(4)]
        );
        // Declared coarse first; equal windows feed the later one from the earlier.
        let kinds = [calendar(Year), calendar(Month), calendar(Month)];
        assert_eq!(feeders(&kinds), [Some(2), None, Some(1)]);
        // Every feeder closes before the window it feeds.
        let kinds = tiling_kinds();
        for (fed, feeder) in feeders(&kinds).into_iter().enumerate() {
            if let Some(f) = feeder {
                assert!(close_rank(&kinds, f) < close_rank(&kinds, fed));
            }
        }
    }
}
