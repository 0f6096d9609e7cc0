//! The event-time window operator: merges partial aggregates per (window, key) and emits each
//! window's rows exactly once, as soon as the input frontier passes the window's end. Windows
//! are combined from panes (`crate::window`), so sliding windows never re-scan records.

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

/// Aggregates of one pane of one window spec, per group key.
type Pane = FxHashMap<String, Vec<Acc>>;

/// Aggregates `partials` (one per pane and key) into one JSON row per (window, key).
///
/// # Contract
/// - Input: partials for a pane `[p, p + pane)`, sent at times `t <= p + pane - 1` (the sources
///   guarantee it); every window containing the pane ends at or after `p + pane`.
/// - For every window containing a pane that received a partial, the operator holds a capability
///   at `window_end - 1` until the window is emitted.
/// - Each window `[start, end)` is emitted exactly once, at time `end - 1`, in the first
///   activation after the input frontier no longer contains any time `< end`; its row for a key
///   combines the key's panes in `[start, end)` in pane order. A pane is freed when the last
///   window containing it is emitted, so memory holds only panes of open windows.
/// - A partial that arrives for a pane whose window was already emitted would be a broken source
///   invariant; the run stops rather than emit a second row.
pub fn window_aggregate<'scope>(
    partials: Stream<'scope, u64, Vec<Partial>>,
    spec: Arc<Spec>,
) -> Stream<'scope, u64, Vec<ResultRow>> {
    let exchange = Exchange::new(|p: &Partial| p.route);
    partials.unary_frontier(exchange, "WindowAggregate", move |_capability, _info| {
        // Windows still to emit, ordered by end so the closing loop pops from the front.
        let mut pending: BTreeMap<(u64, u32, u64), Capability<u64>> = BTreeMap::new();
        let mut panes: BTreeMap<(u32, u64), Pane> = BTreeMap::new();
        let mut closed_until = 0u64;
        let renderer = RowRenderer::new(&spec);
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for p in data.drain(..) {
                    // IMPORTANT: never re-open a window the frontier has passed.
                    if p.end <= closed_until {
                        crate::fatal(&format!(
                            "partial for a pane ending {} after its window was emitted \
                             (source invariant broken)",
                            p.end
                        ));
                    }
                    let kind = &spec.windows[p.window as usize].kind;
                    kind.windows_of_pane(p.start, |start, end| {
                        pending
                            .entry((end, p.window, start))
                            .or_insert_with(|| cap.delayed(&(end - 1), 0));
                    });
                    let pane = panes.entry((p.window, p.start)).or_default();
                    match pane.get_mut(&p.key) {
                        Some(accs) => accs.iter_mut().zip(&p.accs).for_each(|(a, b)| a.merge(b)),
                        None => {
                            pane.insert(p.key, p.accs);
                        }
                    }
                }
            });
            // Close every window whose end the frontier has passed.
            while let Some(entry) = pending.first_entry() {
                let (end, window_index, start) = *entry.key();
                if frontier.less_equal(&(end - 1)) {
                    break;
                }
                let capability = entry.remove();
                closed_until = closed_until.max(end);
                let kind = &spec.windows[window_index as usize].kind;
                let next = kind.next_window_start(start);
                let per_key: Pane = if next >= end {
                    // Tumbling and calendar windows are one pane that no later window shares:
                    // take it as it is instead of copying it.
                    panes.remove(&(window_index, start)).unwrap_or_default()
                } else {
                    let mut per_key: Pane = FxHashMap::default();
                    for (_, pane) in panes.range((window_index, start)..(window_index, end)) {
                        for (key, accs) in pane {
                            match per_key.get_mut(key) {
                                Some(sum) => sum.iter_mut().zip(accs).for_each(|(a, b)| a.merge(b)),
                                None => {
                                    per_key.insert(key.clone(), accs.clone());
                                }
                            }
                        }
                    }
                    // Panes before the next window's start belong to no window still to emit.
                    let done: Vec<_> = panes
                        .range((window_index, 0)..(window_index, next))
                        .map(|(k, _)| *k)
                        .collect();
                    done.iter().for_each(|k| {
                        panes.remove(k);
                    });
                    per_key
                };
                let mut rows: Vec<ResultRow> = per_key
                    .iter()
                    .map(|(key, accs)| renderer.render(window_index, start, end, key, accs))
                    .collect();
                rows.sort_unstable();
                output.session(&capability).give_container(&mut rows);
            }
        }
    })
}

/// Formats result rows: `window_start`, `window_end`, `window` (label), group fields, aggregates.
pub(crate) struct RowRenderer {
    labels: Vec<Option<String>>,
    group_names: Vec<String>,
    agg_names: Vec<String>,
    /// `"<name>_rse":<error>` for approximate aggregates, written after their value.
    agg_errors: Vec<Option<String>>,
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
            agg_errors: spec
                .aggregates
                .iter()
                .map(|a| {
                    a.kind.relative_standard_error().map(|rse| {
                        let mut field = format!(",{}:", quoted(&format!("{}_rse", a.name)));
                        crate::aggregate::write_rounded(&mut field, rse);
                        field
                    })
                })
                .collect(),
        }
    }

    /// Appends `,"group":value…,"aggregate":value…}`: the rest of a row after its time fields.
    pub(crate) fn write_key_and_aggregates(
        &self,
        row: &mut String,
        (start, end): (u64, u64),
        key: &str,
        accs: &[Acc],
    ) {
        for (name, value) in self.group_names.iter().zip(key.split(KEY_SEPARATOR)) {
            row.push(',');
            row.push_str(name);
            row.push(':');
            row.push_str(value);
        }
        for ((name, error), acc) in self.agg_names.iter().zip(&self.agg_errors).zip(accs) {
            row.push(',');
            row.push_str(name);
            row.push(':');
            acc.write_json(start, end, row);
            if let Some(error) = error {
                row.push_str(error);
            }
        }
        row.push('}');
    }

    fn render(&self, window: u32, start: u64, end: u64, key: &str, accs: &[Acc]) -> ResultRow {
        // Plain pushes and `itoa`: `format!` dominated the profile of high-cardinality jobs.
        let (mut start_text, mut end_text) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (start_text, end_text) = (start_text.format(start), end_text.format(end));
        let mut row = String::with_capacity(64 + key.len() + 16 * accs.len());
        row.push_str("{\"window_start\":");
        row.push_str(start_text);
        row.push_str(",\"window_end\":");
        row.push_str(end_text);
        let label = self.labels[window as usize].as_deref();
        if let Some(label) = label {
            row.push_str(",\"window\":");
            row.push_str(label);
        }
        self.write_key_and_aggregates(&mut row, (start, end), key, accs);
        let mut row_key = String::with_capacity(start_text.len() + end_text.len() + key.len() + 16);
        for part in [
            start_text,
            "|",
            end_text,
            "|",
            label.unwrap_or(""),
            "|",
            key,
        ] {
            row_key.push_str(part);
        }
        ResultRow {
            key: row_key,
            json: row,
        }
    }
}
