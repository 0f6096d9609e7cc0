//! Window assignment: which windows an event time belongs to.
//!
//! Contract: `assign` calls back with every `[start, end)` that contains `ts`, with `start <= ts <
//! end`; windows are aligned to the Unix epoch, so assignment depends only on `ts`, never on
//! arrival order or worker.

use crate::spec::RawWindow;
use crate::time::parse_duration_ms;
use anyhow::{bail, Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows `[k*size, (k+1)*size)`.
    Tumbling { size_ms: u64 },
    /// Per-key sessions: events closer than `gap_ms` belong to one session; a silence of exactly
    /// `gap_ms` or more ends it. Sessions are not assigned here but merged by
    /// `operators::session`.
    Session { gap_ms: u64 },
}

impl WindowKind {
    pub(crate) fn from_raw(raw: &RawWindow) -> Result<Self> {
        let reject = |field: &str, present: bool| -> Result<()> {
            if present {
                bail!("{field}: not used by a `{}` window", raw.kind)
            }
            Ok(())
        };
        // A required duration field that must be greater than zero.
        let positive = |field: &str, value: &Option<String>| -> Result<u64> {
            let Some(text) = value else {
                bail!("{field}: a {} window needs a {field}", raw.kind)
            };
            let ms = parse_duration_ms(text).with_context(|| field.to_string())?;
            if ms == 0 {
                bail!("{field}: must be greater than zero");
            }
            Ok(ms)
        };
        match raw.kind.as_str() {
            "tumbling" => {
                reject("slide", raw.slide.is_some())?;
                reject("gap", raw.gap.is_some())?;
                reject("unit", raw.unit.is_some())?;
                let size_ms = positive("size", &raw.size)?;
                Ok(WindowKind::Tumbling { size_ms })
            }
            "session" => {
                reject("size", raw.size.is_some())?;
                reject("slide", raw.slide.is_some())?;
                reject("unit", raw.unit.is_some())?;
                let gap_ms = positive("gap", &raw.gap)?;
                Ok(WindowKind::Session { gap_ms })
            }
            other => bail!("type: unknown window type `{other}` (expected tumbling or session)"),
        }
    }

    /// Calls `each(start, end)` for every window containing `ts`. Session windows have no fixed
    /// windows: it calls nothing (the session path of `operators::prepare` handles them).
    #[inline]
    pub fn assign(&self, ts: u64, mut each: impl FnMut(u64, u64)) {
        match *self {
            WindowKind::Tumbling { size_ms } => {
                let start = ts - ts % size_ms;
                each(start, start.saturating_add(size_ms));
            }
            WindowKind::Session { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
