//! Window assignment: which windows an event time belongs to.
//!
//! Contract: `assign` calls back with every `[start, end)` that contains `ts`, with `start <= ts <
//! end`; windows are aligned to the Unix epoch (calendar windows to the UTC calendar), so
//! assignment depends only on `ts`, never on arrival order or worker. `CachedAssigner` gives the
//! same answers and skips the calendar arithmetic while records stay in the current window.

use crate::spec::RawWindow;
use crate::time::parse_duration_ms;
use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows `[k*size, (k+1)*size)`.
    Tumbling { size_ms: u64 },
    /// UTC calendar periods: ISO weeks start on Monday; months and years have their true lengths.
    Calendar { unit: CalendarUnit },
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
                (start, (day + 7 - since_monday) * DAY_MS)
            }
            CalendarUnit::Month | CalendarUnit::Year => {
                use chrono::{Datelike, NaiveDate};
                let Some(date) = chrono::DateTime::from_timestamp_millis(ts as i64) else {
                    return (ts, ts.saturating_add(1));
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

impl WindowKind {
    pub(crate) fn from_raw(raw: &RawWindow) -> Result<Self> {
        let reject = |field: &str, present: bool| -> Result<()> {
            if present {
                bail!("{field}: not used by a `{}` window", raw.kind)
            }
            Ok(())
        };
        match raw.kind.as_str() {
            "tumbling" => {
                reject("slide", raw.slide.is_some())?;
                reject("gap", raw.gap.is_some())?;
                reject("unit", raw.unit.is_some())?;
                let Some(size) = &raw.size else {
                    bail!("size: a tumbling window needs a size")
                };
                let size_ms = parse_duration_ms(size).context("size")?;
                if size_ms == 0 {
                    bail!("size: must be greater than zero");
                }
                Ok(WindowKind::Tumbling { size_ms })
            }
            "calendar" => {
                reject("size", raw.size.is_some())?;
                reject("slide", raw.slide.is_some())?;
                reject("gap", raw.gap.is_some())?;
                let Some(unit) = &raw.unit else {
                    bail!("unit: a calendar window needs a unit (minute, hour, day, week, month, year)")
                };
                let unit = CalendarUnit::parse(unit).context("unit")?;
                Ok(WindowKind::Calendar { unit })
            }
            other => bail!("type: unknown window type `{other}` (expected tumbling, calendar)"),
        }
    }

    /// Calls `each(start, end)` for every window containing `ts`.
    #[inline]
    pub fn assign(&self, ts: u64, mut each: impl FnMut(u64, u64)) {
        match *self {
            WindowKind::Tumbling { size_ms } => {
                let start = ts - ts % size_ms;
                each(start, start.saturating_add(size_ms));
            }
            WindowKind::Calendar { unit } => {
                let (start, end) = unit.bounds(ts);
                each(start, end);
            }
        }
    }
}

/// Assigns windows like `WindowKind::assign`, remembering the last calendar period so that the
/// calendar arithmetic runs only when a record leaves it. One per worker and window spec.
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
    pub fn assign(&mut self, ts: u64, mut each: impl FnMut(u64, u64)) {
        match self.kind {
            WindowKind::Calendar { unit } => {
                let (start, end) = self.current;
                if !(start <= ts && ts < end) {
                    self.current = unit.bounds(ts);
                }
                each(self.current.0, self.current.1);
            }
            _ => self.kind.assign(ts, each),
        }
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
        cached.assign(ms(at) - 40 * DAY_MS, |_, _| {});
        cached.assign(ms(at), |s, e| got.push((s, e)));
        WindowKind::Calendar { unit }.assign(ms(at), |s, e| got.push((s, e)));
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

    #[test]
    fn tumbling_is_epoch_aligned() {
        let w = WindowKind::Tumbling { size_ms: 1_000 };
        let mut got = vec![];
        w.assign(1_515_445_354_999, |s, e| got.push((s, e)));
        w.assign(1_515_445_355_000, |s, e| got.push((s, e)));
        assert_eq!(
            got,
            vec![
                (1_515_445_354_000, 1_515_445_355_000),
                (1_515_445_355_000, 1_515_445_356_000)
            ]
        );
    }
}
