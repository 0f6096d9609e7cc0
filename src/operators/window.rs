//! The event-time window operator: merges pre-aggregated panes per (window, key) and emits each
//! window's rows exactly once, as soon as the input frontier passes the window's end. Windows
//! are combined from panes (`crate::window`), so sliding windows never re-scan records.
//!
//! `PaneCombiner` is the source-side half: it folds a worker's records into one `GroupTable` per
//! (window pane, owning worker), so the exchange carries one batch per pane and worker instead
//! of one message per key, and the operator does one pane lookup per batch. Records update only
//! the window specs that no other spec feeds (`WindowSpec::fed_by`); the operator builds the fed
//! ones from the closed windows of their feeders.

use super::group_table::GroupTable;
use super::prepare::{member_prefix, Accepted, Combiner};
use crate::aggregate::Acc;
use crate::extract::write_json_string;
use crate::sinks::{RowBatch, RowKey};
use crate::spec::Spec;
use crate::window::{close_rank, CachedAssigner, WindowKind};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// The partial aggregates of one window pane for the keys one worker owns.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PaneBatch {
    /// The worker that owns every key in `table` (`key_hash % workers`).
    pub owner: u32,
    /// Index into `Spec::windows`.
    pub window: u32,
    /// The pane `[start, end)`; for tumbling and calendar windows, the window itself.
    pub start: u64,
    pub end: u64,
    pub table: GroupTable,
}

/// Folds accepted records into one table per (window pane, owning worker).
pub struct PaneCombiner {
    /// `(index in spec.windows, assigner)` of every window spec records update directly.
    assigners: Vec<(u32, CachedAssigner)>,
    width: usize,
    workers: usize,
    open: Vec<PaneBatch>,
    /// `(window, pane start, owner)` -> index in `open`.
    slots: FxHashMap<(u32, u64, u32), usize>,
    /// Per window spec, the slot of the previous record and its pane: most records share it.
    recent: Vec<Option<(u64, u32, usize)>>,
    /// Per window spec, `(entries, key bytes)` of its largest table in the last flush: new tables
    /// start at that size instead of growing (and copying) step by step.
    size_hints: Vec<(usize, usize)>,
}

impl PaneCombiner {
    /// A combiner for `spec`'s windows, routing keys among `workers` workers in total.
    pub fn new(spec: &Spec, workers: usize) -> Self {
        PaneCombiner {
            assigners: (0u32..)
                .zip(&spec.windows)
                .filter(|(_, w)| w.fed_by.is_none())
                .map(|(i, w)| (i, CachedAssigner::new(w.kind)))
                .collect(),
            width: spec.aggregates.len(),
            workers: workers.max(1),
            open: Vec::new(),
            slots: FxHashMap::default(),
            recent: vec![None; spec.windows.len()],
            size_hints: vec![(0, 0); spec.windows.len()],
        }
    }
}

impl Combiner for PaneCombiner {
    type Batch = PaneBatch;

    fn add(&mut self, record: &Accepted<'_, '_>) {
        let owner = (record.hash % self.workers as u64) as u32;
        for (window, assigner) in self.assigners.iter_mut() {
            let (window, w) = (*window, *window as usize);
            let (start, end) = assigner.pane(record.ts);
            let slot = match self.recent[w] {
                Some((s, o, slot)) if s == start && o == owner => slot,
                _ => {
                    let (open, width) = (&mut self.open, self.width);
                    let (entries, key_bytes) = self.size_hints[w];
                    let slot = *self.slots.entry((window, start, owner)).or_insert_with(|| {
                        open.push(PaneBatch {
                            owner,
                            window,
                            start,
                            end,
                            table: GroupTable::with_capacity(width, entries, key_bytes),
                        });
                        open.len() - 1
                    });
                    self.recent[w] = Some((start, owner, slot));
                    slot
                }
            };
            let accs = self.open[slot]
                .table
                .accs_mut(record.hash, record.key, || record.empty_accs());
            record.fold_into(accs);
        }
    }

    fn flush(&mut self, out: &mut Vec<PaneBatch>) {
        self.size_hints.fill((0, 0));
        for batch in &self.open {
            let hint = &mut self.size_hints[batch.window as usize];
            *hint = (
                hint.0.max(batch.table.len()),
                hint.1.max(batch.table.key_bytes()),
            );
        }
        out.append(&mut self.open);
        self.slots.clear();
        self.recent.fill(None);
    }
}

/// Aggregates pane batches into one JSON row per (window, key).
///
/// # Contract
/// - Input: batches for a pane `[p, p + pane)`, sent at times `t <= p + pane - 1` (the sources
///   guarantee it); every window containing the pane ends at or after `p + pane`.
/// - For every window containing a pane that received a batch, the operator holds a capability
///   at `window_end - 1` until the window is emitted.
/// - Each window `[start, end)` is emitted exactly once, at time `end - 1`, in the first
///   activation after the input frontier no longer contains any time `< end`; its row for a key
///   combines the key's panes in `[start, end)` in pane order. A pane is freed when the last
///   window containing it is emitted, so memory holds only panes of open windows.
/// - A window spec fed by another (`WindowSpec::fed_by`) receives no batches: when a window of
///   its feeder is emitted, that window's table is merged into the fed window containing it,
///   which is then held at its `end - 1` like the others. Windows ending at the same time close
///   finer first (`window::close_rank`), so a fed window is complete when it closes.
/// - A batch that arrives for a pane whose window was already emitted would be a broken source
///   invariant; the run stops rather than emit a second row.
pub fn window_aggregate<'scope>(
    batches: Stream<'scope, u64, Vec<PaneBatch>>,
    spec: Arc<Spec>,
) -> Stream<'scope, u64, Vec<RowBatch>> {
    let exchange = Exchange::new(|b: &PaneBatch| u64::from(b.owner));
    batches.unary_frontier(exchange, "WindowAggregate", move |_capability, _info| {
        let mut pending = Pending::new();
        let mut panes = Panes::new();
        let mut closed_until = 0u64;
        let renderer = RowRenderer::new(&spec);
        let cascade = Cascade::new(&spec);
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                for batch in data.drain(..) {
                    // IMPORTANT: never re-open a window the frontier has passed.
                    if batch.end <= closed_until {
                        crate::fatal(&format!(
                            "partial for a pane ending {} after its window was emitted \
                             (source invariant broken)",
                            batch.end
                        ));
                    }
                    let kind = &spec.windows[batch.window as usize].kind;
                    kind.windows_of_pane(batch.start, |start, end| {
                        pending
                            .entry((end, cascade.ranks[batch.window as usize], start))
                            .or_insert_with(|| cap.delayed(&(end - 1), 0));
                    });
                    merge_into(&mut panes, (batch.window, batch.start), batch.table);
                }
            });
            // Close every window whose end the frontier has passed.
            while let Some(entry) = pending.first_entry() {
                let (end, (_, window), start) = *entry.key();
                if frontier.less_equal(&(end - 1)) {
                    break;
                }
                let capability = entry.remove();
                closed_until = closed_until.max(end);
                let window_index = window as u32;
                let kind = &spec.windows[window].kind;
                let next = kind.next_window_start(start);
                let table: GroupTable = if next >= end {
                    // Tumbling and calendar windows are one pane that no later window shares:
                    // take it as it is instead of copying it.
                    panes.remove(&(window_index, start)).unwrap_or_default()
                } else {
                    let mut table = GroupTable::new(spec.aggregates.len());
                    for (_, pane) in panes.range((window_index, start)..(window_index, end)) {
                        table.merge_from(pane);
                    }
                    // Panes before the next window's start belong to no window still to emit.
                    let done: Vec<_> = panes
                        .range((window_index, 0)..(window_index, next))
                        .map(|(k, _)| *k)
                        .collect();
                    done.iter().for_each(|k| {
                        panes.remove(k);
                    });
                    table
                };
                let rows = renderer.render_window(window_index, (start, end), &table);
                output.session(&capability).give(rows);
                cascade.feed(
                    window,
                    (start, end),
                    table,
                    &capability,
                    &mut pending,
                    &mut panes,
                );
            }
        }
    })
}

/// Windows still to emit as (end, close rank, start), ordered so that a closing loop pops from
/// the front, finer windows first among those ending together; and the tables of open panes.
type Pending = BTreeMap<(u64, (u64, usize), u64), Capability<u64>>;
type Panes = BTreeMap<(u32, u64), GroupTable>;

/// Adds `table` to pane `key`; the pane's first table is taken as it is.
fn merge_into(panes: &mut Panes, key: (u32, u64), table: GroupTable) {
    match panes.entry(key) {
        std::collections::btree_map::Entry::Vacant(pane) => {
            pane.insert(table);
        }
        std::collections::btree_map::Entry::Occupied(mut pane) => pane.get_mut().merge(table),
    }
}

/// Which window specs are built from which (`WindowSpec::fed_by`).
struct Cascade {
    kinds: Vec<WindowKind>,
    ranks: Vec<(u64, usize)>,
    /// Per window spec, the specs it feeds.
    feeds: Vec<Vec<usize>>,
}

impl Cascade {
    fn new(spec: &Spec) -> Self {
        let kinds: Vec<WindowKind> = spec.windows.iter().map(|w| w.kind).collect();
        Cascade {
            ranks: (0..kinds.len()).map(|w| close_rank(&kinds, w)).collect(),
            feeds: (0..kinds.len())
                .map(|w| {
                    (0..kinds.len())
                        .filter(|&fed| spec.windows[fed].fed_by == Some(w))
                        .collect()
                })
                .collect(),
            kinds,
        }
    }

    /// Merges `table`, the emitted window `[start, end)` of spec `window`, into each window
    /// containing it of the specs it feeds, held from `capability` at that window's `end - 1`
    /// (the last one takes `table` without a copy).
    fn feed(
        &self,
        window: usize,
        (start, end): (u64, u64),
        table: GroupTable,
        capability: &Capability<u64>,
        pending: &mut Pending,
        panes: &mut Panes,
    ) {
        let Some((&last, others)) = self.feeds[window].split_last() else {
            return;
        };
        let mut feed_one = |fed: usize, part: GroupTable| {
            let (fed_start, fed_end) = self.kinds[fed].pane(start);
            // IMPORTANT: `nests_in` guarantees it; a fed window ending earlier would need a
            // capability the frontier has passed.
            if !(fed_start <= start && end <= fed_end) {
                crate::fatal(&format!(
                    "window [{start}, {end}) does not lie in [{fed_start}, {fed_end}), \
                     the window it feeds"
                ));
            }
            pending
                .entry((fed_end, self.ranks[fed], fed_start))
                .or_insert_with(|| capability.delayed(&(fed_end - 1)));
            merge_into(panes, (fed as u32, fed_start), part);
        };
        for &fed in others {
            feed_one(fed, table.clone());
        }
        feed_one(last, table);
    }
}

/// Formats result rows: `window_start`, `window_end`, `window` (label), group fields, aggregates.
pub(crate) struct RowRenderer {
    labels: Vec<Option<String>>,
    /// `,"<aggregate>":` per aggregate.
    agg_prefixes: Vec<String>,
    /// `,"<name>_rse":<error>` for approximate aggregates, written after their value.
    agg_errors: Vec<Option<String>>,
}

impl RowRenderer {
    pub(crate) fn new(spec: &Spec) -> Self {
        RowRenderer {
            labels: spec
                .windows
                .iter()
                .map(|w| {
                    w.label.as_deref().map(|label| {
                        let mut s = String::new();
                        write_json_string(&mut s, label);
                        s
                    })
                })
                .collect(),
            agg_prefixes: spec
                .aggregates
                .iter()
                .map(|a| member_prefix(&a.name))
                .collect(),
            agg_errors: spec
                .aggregates
                .iter()
                .map(|a| {
                    a.kind.relative_standard_error().map(|rse| {
                        let mut field = member_prefix(&format!("{}_rse", a.name));
                        crate::aggregate::write_rounded(&mut field, rse);
                        field
                    })
                })
                .collect(),
        }
    }

    /// Appends `,"group":value…,"aggregate":value…}`: the rest of a row after its time fields
    /// (`key` holds the group members already formatted).
    pub(crate) fn write_key_and_aggregates(
        &self,
        row: &mut String,
        (start, end): (u64, u64),
        key: &str,
        accs: &[Acc],
    ) {
        row.push_str(key);
        for ((prefix, error), acc) in self.agg_prefixes.iter().zip(&self.agg_errors).zip(accs) {
            row.push_str(prefix);
            acc.write_json(start, end, row);
            if let Some(error) = error {
                row.push_str(error);
            }
        }
        row.push('}');
    }

    /// One row per entry of `table`, the window `[start, end)` of window spec `window`.
    fn render_window(&self, window: u32, (start, end): (u64, u64), table: &GroupTable) -> RowBatch {
        // The part every row of the window shares, formatted once.
        let label = self.labels[window as usize].as_deref();
        let mut prefix = String::from("{\"window_start\":");
        prefix.push_str(itoa::Buffer::new().format(start));
        prefix.push_str(",\"window_end\":");
        prefix.push_str(itoa::Buffer::new().format(end));
        if let Some(label) = label {
            prefix.push_str(",\"window\":");
            prefix.push_str(label);
        }
        // Sized once: growing the buffers row by row showed up as `realloc` in profiles.
        let aggregates: usize = self.agg_prefixes.iter().map(|p| p.len() + 20).sum();
        let mut rows = RowBatch::with_capacity(
            table.len(),
            table.key_bytes() + table.len() * (prefix.len() + aggregates + 2),
        );
        for (key, accs) in table.entries() {
            rows.push(|row| {
                row.push_str(&prefix);
                let members = row.len();
                self.write_key_and_aggregates(row, (start, end), key, accs);
                // The row's key: the row without its aggregates.
                RowKey {
                    head_end: members,
                    members: (members, members + key.len()),
                }
            });
        }
        rows
    }
}
