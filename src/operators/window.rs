//! The event-time window operator: merges partial aggregates per (window, key) and emits each
//! window's rows exactly once, as soon as the input frontier passes the window's end.

use super::prepare::{Partial, KEY_SEPARATOR};
use crate::aggregate::Acc;
use crate::extract::write_json_string;
use crate::sinks::ResultRow;
use crate::spec::Spec;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// Open windows of one worker, ordered by end so the closing loop pops from the front.
struct OpenWindow {
    /// Held at `end - 1`: keeps downstream from seeing this window's time as complete.
    capability: Capability<u64>,
    per_key: FxHashMap<String, Vec<Acc>>,
}

/// Aggregates `partials` into one JSON row per (window, key).
///
/// # Contract
/// - Input: partials sent at times `t <= end - 1` of their window (the sources guarantee it).
/// - Each window `[start, end)` is emitted exactly once, at time `end - 1`, in the first
///   activation after the input frontier no longer contains any time `< end`. Its state is freed
///   then, so memory holds only open windows.
/// - A partial that arrives for an already emitted window would be a broken source invariant; it
///   is counted in `late_at_window` and never re-opens the window (no second row).
pub fn window_aggregate<'scope>(
    partials: Stream<'scope, u64, Vec<Partial>>,
    spec: Arc<Spec>,
) -> Stream<'scope, u64, Vec<ResultRow>> {
    let exchange = Exchange::new(|p: &Partial| p.route);
    partials.unary_frontier(exchange, "WindowAggregate", move |_capability, _info| {
        let mut open: BTreeMap<(u64, u32, u64), OpenWindow> = BTreeMap::new();
        let mut closed_until = 0u64;
        let renderer = RowRenderer::new(&spec);
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for p in data.drain(..) {
                    // IMPORTANT: never re-open a window the frontier has passed.
                    if p.end <= closed_until {
                        crate::fatal(&format!("partial for window ending {} after it was emitted (source invariant broken)", p.end));
                    }
                    let window = open.entry((p.end, p.window, p.start)).or_insert_with(|| OpenWindow {
                        capability: cap.delayed(&(p.end - 1), 0),
                        per_key: FxHashMap::default(),
                    });
                    match window.per_key.get_mut(&p.key) {
                        Some(accs) => accs.iter_mut().zip(p.accs).for_each(|(a, b)| a.merge(b)),
                        None => {
                            window.per_key.insert(p.key, p.accs);
                        }
                    }
                }
            });
            // Close every window whose end the frontier has passed.
            while let Some(entry) = open.first_entry() {
                let (end, window_index, start) = *entry.key();
                if frontier.less_equal(&(end - 1)) {
                    break;
                }
                let window = entry.remove();
                closed_until = closed_until.max(end);
                let mut rows: Vec<ResultRow> = window
                    .per_key
                    .iter()
                    .map(|(key, accs)| renderer.render(window_index, start, end, key, accs))
                    .collect();
                rows.sort_unstable();
                output.session(&window.capability).give_container(&mut rows);
            }
        }
    })
}

/// Formats result rows: `window_start`, `window_end`, `window` (label), group fields, aggregates.
pub(crate) struct RowRenderer {
    labels: Vec<Option<String>>,
    group_names: Vec<String>,
    agg_names: Vec<String>,
}

impl RowRenderer {
    pub(crate) fn new(spec: &Spec) -> Self {
        let quoted = |name: &str| {
            let mut s = String::new();
            write_json_string(&mut s, name);
            s
        };
        RowRenderer {
            labels: spec
                .windows
                .iter()
                .map(|w| w.label.as_deref().map(quoted))
                .collect(),
            group_names: spec.group_by.iter().map(|(name, _)| quoted(name)).collect(),
            agg_names: spec.aggregates.iter().map(|a| quoted(&a.name)).collect(),
        }
    }

    /// Appends `,"group":value…,"aggregate":value…}`: the rest of a row after its time fields.
    pub(crate) fn write_key_and_aggregates(&self, row: &mut String, key: &str, accs: &[Acc]) {
        use std::fmt::Write;
        if !self.group_names.is_empty() {
            for (name, value) in self.group_names.iter().zip(key.split(KEY_SEPARATOR)) {
                let _ = write!(row, ",{name}:{value}");
            }
        }
        for (name, acc) in self.agg_names.iter().zip(accs) {
            let _ = write!(row, ",{name}:");
            acc.write_json(row);
        }
        row.push('}');
    }

    fn render(&self, window: u32, start: u64, end: u64, key: &str, accs: &[Acc]) -> ResultRow {
        use std::fmt::Write;
        let mut row = String::with_capacity(128);
        let _ = write!(row, "{{\"window_start\":{start},\"window_end\":{end}");
        if let Some(label) = &self.labels[window as usize] {
            let _ = write!(row, ",\"window\":{label}");
        }
        self.write_key_and_aggregates(&mut row, key, accs);
        let label = self.labels[window as usize].as_deref().unwrap_or("");
        ResultRow {
            key: format!("{start}|{end}|{label}|{key}"),
            json: row,
        }
    }
}
