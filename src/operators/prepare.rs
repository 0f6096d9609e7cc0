//! Record preparation: one input line in, pre-aggregated partial results out.
//!
//! Contract: `Preparer::line` runs a record through parse -> event time -> partition clock ->
//! filter -> group key -> window assignment -> local accumulator. Every record ends up in exactly
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
use crate::extract::{JsonExtractor, Scalar};
use crate::metrics::Metrics;
use crate::operators::session::SessionSet;
use crate::sinks::dead_letter::{DeadLetters, Reason};
use crate::spec::Spec;
use crate::watermark::{Clock, Resolution, Verdict};
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
    /// Window start; for a session dataflow, the first event time of the (mini-)session.
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
    extractor: JsonExtractor,
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
        let extractor = JsonExtractor::new(spec.fields.clone());
        let session_gap = spec.session_gap_ms();
        Preparer {
            spec,
            extractor,
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
        let mut fields = Vec::new();
        self.extractor.extract(line, &mut fields).ok()?;
        let value = fields[self.spec.time.field].as_ref()?;
        self.spec.time.unit.to_millis(value).ok()
    }

    /// Processes one record of `partition` found at `offset`.
    pub fn line(&mut self, partition: &mut PartitionState, offset: u64, line: &[u8]) {
        self.records += 1;
        self.bytes += line.len() as u64 + 1;
        let mut fields = Vec::new();
        if let Err(reason) = self.extractor.extract(line, &mut fields) {
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
        let mut fields = Vec::new();
        // Held lines were parsed once already; parsing is deterministic.
        if self.extractor.extract(line, &mut fields).is_ok() {
            if let Some(ts) = fields[self.spec.time.field]
                .as_ref()
                .and_then(|v| self.spec.time.unit.to_millis(v).ok())
            {
                self.accept(partition, offset, line, &fields, ts);
            }
        }
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
                for (acc, agg) in session.accs.iter_mut().zip(&spec.aggregates) {
                    acc.update_at(agg.field.and_then(|f| fields[f].as_ref()), ts);
                }
                return;
            }
            let accs = spec
                .aggregates
                .iter()
                .map(|a| {
                    let mut acc = a.kind.new_acc();
                    acc.update_at(a.field.and_then(|f| fields[f].as_ref()), ts);
                    acc
                })
                .collect();
            set.insert(ts, ts, accs, gap, &mut Vec::new());
            return;
        }
        for (w, window) in spec.windows.iter().enumerate() {
            window.kind.assign(ts, |start, end| {
                let per_key = self.accumulators.entry((w as u32, start, end)).or_default();
                let accs = match per_key.get_mut(self.key.as_str()) {
                    Some(accs) => accs,
                    None => per_key.entry(self.key.as_str().into()).or_insert_with(|| {
                        spec.aggregates.iter().map(|a| a.kind.new_acc()).collect()
                    }),
                };
                for (acc, agg) in accs.iter_mut().zip(&spec.aggregates) {
                    acc.update_at(agg.field.and_then(|f| fields[f].as_ref()), ts);
                }
            });
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
