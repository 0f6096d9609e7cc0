//! Record preparation: one input line in, pre-aggregated partial results out.
//!
//! Contract: `Preparer::line` runs a record through parse (JSON or CSV, then derived fields) ->
//! event time -> partition clock -> filter -> required fields -> group key -> aggregate values ->
//! window pane -> local accumulator. Every record ends up in exactly
//! one place: a partial aggregate, the `filtered` counter, or the dead-letter output with its
//! reason. `flush` drains the local accumulators into `Partial`s; every partial belongs to a
//! window whose end is beyond the event time of the records in it, and those records were on time
//! for their partition, so a partial sent at the source's watermark can never reach a closed window.
//!
//! Session dataflows take another path after the group key: records are pre-merged per key into
//! mini-sessions (a combiner: adjacent events of one key closer than the gap collapse into one
//! `Partial` with `start` = first and `end` = last event time). Every event in a mini-session was
//! on time, so `start >= watermark` and the session operator can never see it after the session
//! it extends was emitted.

use crate::aggregate::Acc;
use crate::extract::{derive, Extractor, Fields, Line, Scalar};
use crate::metrics::Metrics;
use crate::operators::session::SessionSet;
use crate::sinks::dead_letter::{DeadLetters, Reason};
use crate::spec::Spec;
use crate::watermark::{Clock, Resolution, Verdict};
use crate::window::CachedAssigner;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A partial aggregate for one (window, group key), routed to the worker that owns the key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    /// Hash of the group key; decides the owning worker. Stable across processes.
    pub route: u64,
    /// Index into `Spec::windows`.
    pub window: u32,
    /// The pane `[start, end)` (for tumbling windows, the window itself); for a session
    /// dataflow, `start` is the first event time of the (mini-)session.
    pub start: u64,
    /// Window end (exclusive); for a session dataflow, the last event time (inclusive).
    pub end: u64,
    /// Group-by values as JSON text separated by `KEY_SEPARATOR`.
    pub key: String,
    pub accs: Vec<Acc>,
}

/// Separates the JSON fragments of a group key; JSON text never contains a raw 0x1F.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// Hash used to route group keys: fixed seed, so every process agrees.
pub fn route_of(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// One input partition's event-time state, plus the records its clock holds back.
pub struct PartitionState {
    pub name: String,
    pub clock: Clock,
    held: Vec<(u64, Vec<u8>)>,
}

impl PartitionState {
    pub fn new(name: String, reference: Option<u64>, spec: &Spec) -> Self {
        let t = &spec.time;
        let clock = Clock::new(
            reference,
            t.max_out_of_orderness_ms,
            t.max_future_ms,
            t.future_confirmations,
        );
        PartitionState {
            name,
            clock,
            held: Vec::new(),
        }
    }
}

type WindowId = (u32, u64, u64);

/// Turns lines into partial aggregates; one per worker.
pub struct Preparer {
    spec: Arc<Spec>,
    extractor: Extractor,
    /// One per `spec.windows` entry.
    assigners: Vec<CachedAssigner>,
    /// Per aggregate, the number the current record folds in (numeric aggregates).
    values: Vec<Option<f64>>,
    accumulators: FxHashMap<WindowId, FxHashMap<Box<str>, Vec<Acc>>>,
    /// Session dataflows: the gap, and the mini-sessions of this batch per group key.
    session_gap: Option<u64>,
    sessions: FxHashMap<Box<str>, SessionSet>,
    key: String,
    dead: DeadLetters,
    metrics: Arc<Metrics>,
    records: u64,
    bytes: u64,
    filtered: u64,
}

impl Preparer {
    pub fn new(spec: Arc<Spec>, dead: DeadLetters, metrics: Arc<Metrics>) -> Self {
        let extractor =
            Extractor::for_spec(&spec).unwrap_or_else(|e| crate::fatal(&format!("{e:#}")));
        let assigners = spec
            .windows
            .iter()
            .map(|w| CachedAssigner::new(w.kind.clone()))
            .collect();
        let session_gap = spec.session_gap_ms();
        Preparer {
            spec,
            extractor,
            assigners,
            values: Vec::new(),
            accumulators: FxHashMap::default(),
            session_gap,
            sessions: FxHashMap::default(),
            key: String::new(),
            dead,
            metrics,
            records: 0,
            bytes: 0,
            filtered: 0,
        }
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The event time of a line, if it has a valid one (used to read ahead for a partition's reference).
    pub fn event_time(&self, line: &[u8]) -> Option<u64> {
        let mut fields = Fields::new();
        if self.parse(line, &mut fields) != Ok(Line::Record) {
            return None;
        }
        let value = fields[self.spec.time.field].as_ref()?;
        self.spec.time.unit.to_millis(value).ok()
    }

    /// Processes one record of `partition` found at `offset`.
    pub fn line(&mut self, partition: &mut PartitionState, offset: u64, line: &[u8]) {
        self.bytes += line.len() as u64 + 1;
        let mut fields = Fields::new();
        let parsed = self.parse(line, &mut fields);
        if parsed == Ok(Line::Header) {
            return; // a CSV header row is not a record
        }
        self.records += 1;
        if let Err(reason) = parsed {
            self.dead
                .push(Reason::Malformed, &reason, &partition.name, offset, line);
            return;
        }
        let ts = match &fields[self.spec.time.field] {
            None => Err("missing time field"),
            Some(value) => self.spec.time.unit.to_millis(value),
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(reason) => {
                let detail = format!("{reason} (`{}`)", self.spec.fields[self.spec.time.field]);
                self.dead
                    .push(Reason::Malformed, &detail, &partition.name, offset, line);
                return;
            }
        };
        let (verdict, resolution) = partition.clock.observe(ts);
        match resolution {
            Some(Resolution::Rejected) => self.reject_held(partition),
            Some(Resolution::Confirmed) => {
                for (held_offset, held_line) in std::mem::take(&mut partition.held) {
                    self.accept_line(&partition.name, held_offset, &held_line);
                }
            }
            None => {}
        }
        match verdict {
            Verdict::OnTime => self.accept(&partition.name, offset, line, &fields, ts),
            Verdict::Ahead if resolution == Some(Resolution::Confirmed) => {
                self.accept(&partition.name, offset, line, &fields, ts)
            }
            Verdict::Ahead => partition.held.push((offset, line.to_vec())),
            Verdict::Late => {
                if self.passes_filter(&fields) {
                    let detail = format!(
                        "event time {ts} is below the partition watermark {}",
                        partition.clock.watermark()
                    );
                    self.dead
                        .push(Reason::Late, &detail, &partition.name, offset, line);
                } else {
                    self.filtered += 1;
                }
            }
        }
    }

    /// The partition has no more records: anything still held back was a bitflip.
    pub fn finish_partition(&mut self, partition: &mut PartitionState) {
        if partition.clock.finish().is_some() {
            self.reject_held(partition);
        }
    }

    fn reject_held(&mut self, partition: &mut PartitionState) {
        for (offset, line) in partition.held.drain(..) {
            let detail =
                "event time too far ahead of the partition (bitflip guard: time.max_future)";
            self.dead
                .push(Reason::Future, detail, &partition.name, offset, &line);
        }
    }

    fn accept_line(&mut self, partition: &str, offset: u64, line: &[u8]) {
        let mut fields = Fields::new();
        // Held lines were parsed once already; parsing is deterministic.
        if self.parse(line, &mut fields).is_ok() {
            if let Some(ts) = fields[self.spec.time.field]
                .as_ref()
                .and_then(|v| self.spec.time.unit.to_millis(v).ok())
            {
                self.accept(partition, offset, line, &fields, ts);
            }
        }
    }

    /// Extracts the dataflow's fields from a line and computes the derived ones.
    fn parse<'a>(&self, line: &'a [u8], fields: &mut Fields<'a>) -> Result<Line, String> {
        let kind = self.extractor.extract(line, fields)?;
        if kind == Line::Record {
            derive::apply(&self.spec.derived, fields)?;
        }
        Ok(kind)
    }

    fn passes_filter(&self, fields: &[Option<Scalar<'_>>]) -> bool {
        self.spec.filters.iter().all(|f| {
            fields[f.field]
                .as_ref()
                .is_some_and(|v| f.values.iter().any(|accepted| *accepted == *v.as_text()))
        })
    }

    fn accept(
        &mut self,
        partition: &str,
        offset: u64,
        line: &[u8],
        fields: &[Option<Scalar<'_>>],
        ts: u64,
    ) {
        if !self.passes_filter(fields) {
            self.filtered += 1;
            return;
        }
        for (name, index) in &self.spec.required {
            if matches!(fields[*index], None | Some(Scalar::Null)) {
                let detail = format!("missing required field `{name}`");
                self.dead
                    .push(Reason::Malformed, &detail, partition, offset, line);
                return;
            }
        }
        self.values.clear();
        for agg in &self.spec.aggregates {
            let value = agg.field.and_then(|f| fields[f].as_ref());
            match agg.kind.value_of(value) {
                Ok(v) => self.values.push(v),
                Err(reason) => {
                    let field =
                        &self.spec.fields[agg.field.expect("numeric aggregates read a field")];
                    let detail = format!("`{field}` {reason} (aggregate `{}`)", agg.name);
                    self.dead
                        .push(Reason::Malformed, &detail, partition, offset, line);
                    return;
                }
            }
        }
        self.key.clear();
        for (i, (name, index)) in self.spec.group_by.iter().enumerate() {
            let Some(value) = &fields[*index] else {
                let detail = format!("missing group-by field `{name}`");
                self.dead
                    .push(Reason::Malformed, &detail, partition, offset, line);
                return;
            };
            if i > 0 {
                self.key.push(KEY_SEPARATOR);
            }
            value.write_json(&mut self.key);
        }
        let spec = &self.spec;
        if let Some(gap) = self.session_gap {
            let set = match self.sessions.get_mut(self.key.as_str()) {
                Some(set) => set,
                None => self.sessions.entry(self.key.as_str().into()).or_default(),
            };
            if let Some(session) = set.extend(ts, gap) {
                let aggregates = spec.aggregates.iter().zip(&self.values);
                for (acc, (agg, number)) in session.accs.iter_mut().zip(aggregates) {
                    acc.update_at(agg.field.and_then(|f| fields[f].as_ref()), *number, ts);
                }
                return;
            }
            let accs = spec
                .aggregates
                .iter()
                .zip(&self.values)
                .map(|(a, number)| {
                    let mut acc = a.kind.new_acc();
                    acc.update_at(a.field.and_then(|f| fields[f].as_ref()), *number, ts);
                    acc
                })
                .collect();
            set.insert(ts, ts, accs, gap, &mut Vec::new());
            return;
        }
        for (w, assigner) in self.assigners.iter_mut().enumerate() {
            let (start, end) = assigner.pane(ts);
            let per_key = self.accumulators.entry((w as u32, start, end)).or_default();
            let existing = if spec.group_by.is_empty() {
                // Without group-by the only key is "": no string compare (a `memcmp` call).
                per_key.values_mut().next()
            } else {
                per_key.get_mut(self.key.as_str())
            };
            let accs = match existing {
                Some(accs) => accs,
                None => per_key
                    .entry(self.key.as_str().into())
                    .or_insert_with(|| spec.aggregates.iter().map(|a| a.kind.new_acc()).collect()),
            };
            for ((acc, agg), number) in accs.iter_mut().zip(&spec.aggregates).zip(&self.values) {
                acc.update_at(agg.field.and_then(|f| fields[f].as_ref()), *number, ts);
            }
        }
    }

    /// Drains the local accumulators into `out` and publishes counters.
    pub fn flush(&mut self, out: &mut Vec<Partial>) {
        for ((window, start, end), per_key) in self.accumulators.drain() {
            for (key, accs) in per_key {
                let key = String::from(key);
                out.push(Partial {
                    route: route_of(&key),
                    window,
                    start,
                    end,
                    key,
                    accs,
                });
            }
        }
        for (key, mut set) in self.sessions.drain() {
            let key = String::from(key);
            let route = route_of(&key);
            for (start, session) in set.drain() {
                out.push(Partial {
                    route,
                    window: 0,
                    start,
                    end: session.last,
                    key: key.clone(),
                    accs: session.accs,
                });
            }
        }
        self.dead.flush();
        Metrics::add(&self.metrics.records, std::mem::take(&mut self.records));
        Metrics::add(&self.metrics.bytes, std::mem::take(&mut self.bytes));
        Metrics::add(&self.metrics.filtered, std::mem::take(&mut self.filtered));
    }
}
