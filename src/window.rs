//! Window assignment: which windows an event time belongs to, via panes.
//!
//! Contract: windows are aligned to the Unix epoch, so assignment depends only on `ts`, never on
//! arrival order or worker. Every window is a union of consecutive panes of `pane_ms` (for
//! sliding windows `gcd(size, slide)`; for tumbling windows the window itself), and a record
//! updates exactly one pane per window spec: `pane(ts)`. `windows_of_pane` lists every window
//! `[start, end)` that contains a pane, so a window's result combines its panes and no record is
//! ever visited once per window. A sliding window `[k*slide, k*slide + size)` exists (and is
//! emitted) for a key when at least one of its panes holds a record of that key; at the edges of
//! the data that means the first window reported starts up to `size - slide` before the first
//! record, and the last one ends up to `size` after the last record.

use crate::spec::RawWindow;
use crate::time::parse_duration_ms;
use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows `[k*size, (k+1)*size)`.
    Tumbling { size_ms: u64 },
    /// Hopping windows `[k*slide, k*slide + size)`; each time lies in `size / slide` of them
    /// (rounded up when `slide` does not divide `size`).
    Sliding { size_ms: u64, slide_ms: u64 },
}

impl WindowKind {
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
        reject("gap", raw.gap.is_some())?;
        reject("unit", raw.unit.is_some())?;
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
            other => bail!("type: unknown window type `{other}` (expected tumbling or sliding)"),
        }
    }

    /// Length of the panes windows are built from.
    pub fn pane_ms(&self) -> u64 {
        match *self {
            WindowKind::Tumbling { size_ms } => size_ms,
            WindowKind::Sliding { size_ms, slide_ms } => gcd(size_ms, slide_ms),
        }
    }

    /// The pane `[start, end)` that `ts` updates.
    #[inline]
    pub fn pane(&self, ts: u64) -> (u64, u64) {
        let pane = self.pane_ms();
        let start = ts - ts % pane;
        (start, start.saturating_add(pane))
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
                let pane_end = pane_start + self.pane_ms();
                let last = pane_start - pane_start % slide_ms;
                let mut start = last.saturating_sub(((size_ms - 1) / slide_ms) * slide_ms);
                while start <= last {
                    if start.saturating_add(size_ms) >= pane_end {
                        each(start, start.saturating_add(size_ms));
                    }
                    start += slide_ms;
                }
            }
        }
    }

    /// Start of the next window after the one starting at `start`: panes before it are in no
    /// later window.
    pub fn next_window_start(&self, start: u64) -> u64 {
        match *self {
            WindowKind::Tumbling { size_ms } => start.saturating_add(size_ms),
            WindowKind::Sliding { slide_ms, .. } => start.saturating_add(slide_ms),
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
}
