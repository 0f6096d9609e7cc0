//! Record preparation: one input line in, pre-aggregated partial results out.
//!
//! Contract: `Preparer::line` runs a record through parse (JSON or CSV, then derived fields) ->
//! event time -> partition clock -> filter -> required fields -> aggregate values -> group key,
//! then hands the accepted record to the dataflow's `Combiner`. Every record ends up in exactly
//! one place: the combiner, the `filtered` counter, or the dead-letter output with its reason.
//! `flush` drains the combiner into batches for the exchange. Every record a combiner holds was
//! on time for its partition (`ts >= watermark`), so a batch sent at the source's watermark can
//! never reach a closed window or an emitted session.
//!
//! The combiners: `window::PaneCombiner` (accumulators per window pane and key) and
//! `session::SessionCombiner` (mini-sessions per key).

use super::group_table::key_hash;
use crate::aggregate::{Acc, Input};
use crate::extract::{derive, Extractor, Fields, Line, Scalar};
use crate::metrics::Metrics;
use crate::sinks::dead_letter::{DeadLetters, Reason};
use crate::spec::Spec;
use crate::watermark::{Clock, Resolution, Verdict};
use std::borrow::Cow;
use std::sync::Arc;

/// `,"<name>":`, the start of a JSON member that follows others in an output row.
///
/// The group key of a record is its group-by fields as the members they become in the row, e.g.
/// `,"device":"ps4","country":"BR"`; rows paste it as it is.
pub fn member_prefix(name: &str) -> String {
    let mut prefix = String::from(",");
    crate::extract::write_json_string(&mut prefix, name);
    prefix.push(':');
    prefix
}

/// `out.push_str(piece)` without a `memcpy` call for pieces of up to 16 bytes (group members,
/// member prefixes, numbers): a call costs more than the copy itself for them, and keys and rows
/// are built from several such pieces each.
#[inline]
pub fn push_short(out: &mut String, piece: &str) {
    let n = piece.len();
    if n > 16 {
        out.push_str(piece);
        return;
    }
    out.reserve(n);
    let src = piece.as_ptr();
    // SAFETY: `reserve` made room for `n` bytes after `out.len()`; each branch reads only within
    // `piece` and writes only within `[len, len + n)` (the two halves may overlap), so the bytes
    // after `len` are exactly `piece`, whole UTF-8, when `set_len` takes them in.
    unsafe {
        let buf = out.as_mut_vec();
        let len = buf.len();
        let dst = buf.as_mut_ptr().add(len);
        if n >= 8 {
            let (head, tail) = (
                src.cast::<u64>().read_unaligned(),
                src.add(n - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(head);
            dst.add(n - 8).cast::<u64>().write_unaligned(tail);
        } else if n >= 4 {
            let (head, tail) = (
                src.cast::<u32>().read_unaligned(),
                src.add(n - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(head);
            dst.add(n - 4).cast::<u32>().write_unaligned(tail);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        buf.set_len(len + n);
    }
}

/// Appends a group-by value to a key as JSON text.
#[inline]
fn write_key_value(key: &mut String, value: &Scalar<'_>, json_input: bool) {
    match value {
        // The JSON scanner borrows a string only when it had no escapes, and it rejects raw
        // control characters: the text between the quotes is already valid JSON as it is.
        Scalar::Str(Cow::Borrowed(text)) if json_input => {
            key.reserve(text.len() + 2);
            key.push('"');
            key.push_str(text);
            key.push('"');
        }
        other => other.write_json(key),
    }
}

/// A record that passed every check, as a combiner sees it.
pub struct Accepted<'r, 'a> {
    pub spec: &'r Spec,
    pub fields: &'r [Option<Scalar<'a>>],
    /// Per aggregate, what the record folds in besides being counted.
    pub values: &'r [Input],
    /// Group-by fields as JSON members (see `member_prefix`).
    pub key: &'r str,
    /// `key_hash(key)`: routes the key to the worker that owns it.
    pub hash: u64,
    pub ts: u64,
}

impl Accepted<'_, '_> {
    /// Folds this record into one accumulator per aggregate.
    #[inline]
    pub fn fold_into(&self, accs: &mut [Acc]) {
        let aggregates = self.spec.aggregates.iter().zip(self.values);
        for (acc, (agg, number)) in accs.iter_mut().zip(aggregates) {
            acc.update_at(
                agg.field.and_then(|f| self.fields[f].as_ref()),
                *number,
                self.ts,
            );
        }
    }

    /// Empty accumulators, one per aggregate.
    pub fn empty_accs(&self) -> impl Iterator<Item = Acc> + '_ {
        self.spec.aggregates.iter().map(|a| a.kind.new_acc())
    }
}

/// Pre-aggregates accepted records into the batches the dataflow's aggregation operator takes.
pub trait Combiner: 'static {
    type Batch: timely::ExchangeData + Clone;
    fn add(&mut self, record: &Accepted<'_, '_>);
    /// Moves everything added since the last flush into `out`.
    fn flush(&mut self, out: &mut Vec<Self::Batch>);
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

/// Turns lines into pre-aggregated batches; one per worker.
pub struct Preparer<C> {
    spec: Arc<Spec>,
    extractor: Extractor,
    combiner: C,
    /// Per aggregate, what the current record folds in besides being counted.
    values: Vec<Input>,
    /// `,"<field>":` per group-by field.
    member_prefixes: Vec<String>,
    /// The input is JSON: its borrowed strings need no escaping (see `write_key_value`).
    json_input: bool,
    key: String,
    dead: DeadLetters,
    metrics: Arc<Metrics>,
    records: u64,
    bytes: u64,
    filtered: u64,
}

impl<C: Combiner> Preparer<C> {
    pub fn new(spec: Arc<Spec>, combiner: C, dead: DeadLetters, metrics: Arc<Metrics>) -> Self {
        let extractor =
            Extractor::for_spec(&spec).unwrap_or_else(|e| crate::fatal(&format!("{e:#}")));
        Preparer {
            member_prefixes: spec
                .group_by
                .iter()
                .map(|(n, _)| member_prefix(n))
                .collect(),
            json_input: matches!(spec.input, crate::spec::InputFormat::Jsonl),
            spec,
            extractor,
            combiner,
            values: Vec::new(),
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
        // Most dataflows derive nothing: no call per record for them.
        if kind == Line::Record && !self.spec.derived.is_empty() {
            derive::apply(&self.spec.derived, fields)?;
        }
        Ok(kind)
    }

    fn passes_filter(&self, fields: &[Option<Scalar<'_>>]) -> bool {
        self.spec.filters.iter().all(|f| match &fields[f.field] {
            None => false,
            // Strings (the usual filter, e.g. `sev`) compare as they are, without a `Cow`.
            Some(Scalar::Str(text)) => f.values.iter().any(|accepted| accepted == text),
            Some(other) => {
                let text = other.as_text();
                f.values.iter().any(|accepted| *accepted == *text)
            }
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
        if let Err(name) = self.build_key(fields) {
            let detail = format!("missing group-by field `{name}`");
            self.dead
                .push(Reason::Malformed, &detail, partition, offset, line);
            return;
        }
        self.combiner.add(&Accepted {
            spec: &self.spec,
            fields,
            values: &self.values,
            key: &self.key,
            hash: key_hash(&self.key),
            ts,
        });
    }

    /// Sets `self.key` to the record's group members; `Err` names a missing group-by field.
    fn build_key(&mut self, fields: &[Option<Scalar<'_>>]) -> Result<(), &str> {
        self.key.clear();
        let members = self.spec.group_by.iter().zip(&self.member_prefixes);
        // The usual record: JSON whose group values are all borrowed strings, pasted as they
        // are (see `write_key_value`). Sizing the key first makes every append a plain copy.
        if self.json_input {
            let mut len = 0;
            let borrowed = members
                .clone()
                .all(|((_, index), prefix)| match &fields[*index] {
                    Some(Scalar::Str(Cow::Borrowed(text))) => {
                        len += prefix.len() + text.len() + 2;
                        true
                    }
                    _ => false,
                });
            if borrowed {
                self.key.reserve(len);
                for ((_, index), prefix) in members {
                    if let Some(Scalar::Str(text)) = &fields[*index] {
                        push_short(&mut self.key, prefix);
                        self.key.push('"');
                        push_short(&mut self.key, text);
                        self.key.push('"');
                    }
                }
                return Ok(());
            }
        }
        for ((name, index), prefix) in members {
            let value = fields[*index].as_ref().ok_or(name.as_str())?;
            self.key.push_str(prefix);
            write_key_value(&mut self.key, value, self.json_input);
        }
        Ok(())
    }

    /// Drains the combiner into `out` and publishes counters.
    pub fn flush(&mut self, out: &mut Vec<C::Batch>) {
        self.combiner.flush(out);
        self.dead.flush();
        Metrics::add(&self.metrics.records, std::mem::take(&mut self.records));
        Metrics::add(&self.metrics.bytes, std::mem::take(&mut self.bytes));
        Metrics::add(&self.metrics.filtered, std::mem::take(&mut self.filtered));
    }
}

#[cfg(test)]
mod tests {
    use super::push_short;

    #[test]
    fn push_short_appends_every_length() {
        let text = "abcdefghijklmnopqrstuvwxyzé";
        for end in 0..=text.len() {
            let Some(piece) = text.get(..end) else {
                continue;
            };
            let mut out = String::from("x");
            push_short(&mut out, piece);
            assert_eq!(out, format!("x{piece}"));
        }
    }
}
