//! The event-time session operator: per key, merges (mini-)sessions into sessions and emits each
//! session exactly once, when no record that could still extend it can arrive.
//!
//! Session rule (document and test this boundary): two events of one key belong to one session
//! iff they are connected by a chain of events each less than `gap` apart. A silence of exactly
//! `gap` (e.g. 60 000 ms after the previous heartbeat) starts a new session. So a record with
//! event time `t` extends session `[start, last]` iff `start - gap < t < last + gap`, and an
//! out-of-order record that lands within `gap` of two sessions merges them.
//!
//! A session's deadline is `last + gap - 1`, the latest event time that could still extend it.
//! It is final once the input frontier has passed the deadline. At the end of a bounded input the
//! frontier is empty and every open session closes; in a live run a session stays open until the
//! sources' watermark passes its deadline (its last event + gap + the out-of-orderness bound).

use super::prepare::{Accepted, Combiner};
use super::window::RowRenderer;
use crate::aggregate::Acc;
use crate::sinks::{RowBatch, RowKey};
use crate::spec::Spec;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

/// One session (or a mini-session pre-merged before the exchange) of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// Event time of the last event.
    pub last: u64,
    pub accs: Vec<Acc>,
}

/// The sessions of one key, disjoint and ordered by start: any two are at least `gap` apart.
#[derive(Clone, Debug, Default)]
pub struct SessionSet {
    by_start: BTreeMap<u64, Session>,
}

impl SessionSet {
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// Merges the (mini-)session `[start, last]` into the set: every session it touches (closer
    /// than `gap`) is folded in. Returns the merged session's `(start, last)`; the `(start, last)`
    /// of every session it absorbed are pushed onto `absorbed`.
    pub fn insert(
        &mut self,
        start: u64,
        last: u64,
        accs: Vec<Acc>,
        gap: u64,
        absorbed: &mut Vec<(u64, u64)>,
    ) -> (u64, u64) {
        let mut merged = Session { last, accs };
        let mut merged_start = start;
        // Candidates start before `last + gap`; walking back, stop at the first one that ends
        // `gap` or more before `start` (sessions are disjoint, so all earlier ones do too).
        let touching: Vec<u64> = self
            .by_start
            .range(..last.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last.saturating_add(gap) > start)
            .map(|(&s, _)| s)
            .collect();
        for s in touching {
            let session = self.by_start.remove(&s).expect("candidate exists");
            absorbed.push((s, session.last));
            merged_start = merged_start.min(s);
            merged.last = merged.last.max(session.last);
            for (a, b) in merged.accs.iter_mut().zip(session.accs) {
                a.merge(&b);
            }
        }
        let result = (merged_start, merged.last);
        self.by_start.insert(merged_start, merged);
        result
    }

    /// The session one event at `ts` falls into or extends, if it touches exactly that one
    /// session (the common, in-order case); its `last` is moved up to `ts`. `None` when the event
    /// starts a new session, precedes a session or bridges two: then use `insert`.
    pub fn extend(&mut self, ts: u64, gap: u64) -> Option<&mut Session> {
        let next_is_far = self
            .by_start
            .range(ts.saturating_add(1)..)
            .next()
            .is_none_or(|(&start, _)| start - ts >= gap);
        let (_, session) = self.by_start.range_mut(..=ts).next_back()?;
        if ts <= session.last || (ts - session.last < gap && next_is_far) {
            session.last = session.last.max(ts);
            return Some(session);
        }
        None
    }

    /// Removes and returns the session starting at `start`.
    pub fn remove(&mut self, start: u64) -> Option<Session> {
        self.by_start.remove(&start)
    }

    /// Drains every session as `(start, session)`.
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, Session)> + '_ {
        std::mem::take(&mut self.by_start).into_iter()
    }
}

/// A mini-session of one key, pre-merged by a source: `start` and `last` are its first and last
/// event times.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionPartial {
    /// `key_hash(key)`: decides the worker that owns the key.
    pub route: u64,
    pub start: u64,
    pub last: u64,
    /// Group-by fields as JSON members (see `prepare::member_prefix`).
    pub key: String,
    pub accs: Vec<Acc>,
}

/// Pre-merges a worker's records per key into mini-sessions: adjacent events of one key closer
/// than the gap collapse into one `SessionPartial`.
pub struct SessionCombiner {
    gap: u64,
    sessions: FxHashMap<Box<str>, (u64, SessionSet)>,
}

impl SessionCombiner {
    pub fn new(spec: &Spec) -> Self {
        SessionCombiner {
            gap: spec
                .session_gap_ms()
                .expect("a session combiner needs a session dataflow"),
            sessions: FxHashMap::default(),
        }
    }
}

impl Combiner for SessionCombiner {
    type Batch = SessionPartial;

    fn add(&mut self, record: &Accepted<'_, '_>) {
        let (_, set) = match self.sessions.get_mut(record.key) {
            Some(entry) => entry,
            None => self
                .sessions
                .entry(record.key.into())
                .or_insert_with(|| (record.hash, SessionSet::default())),
        };
        if let Some(session) = set.extend(record.ts, self.gap) {
            record.fold_into(&mut session.accs);
            return;
        }
        let mut accs: Vec<Acc> = record.empty_accs().collect();
        record.fold_into(&mut accs);
        set.insert(record.ts, record.ts, accs, self.gap, &mut Vec::new());
    }

    fn flush(&mut self, out: &mut Vec<SessionPartial>) {
        for (key, (route, mut set)) in self.sessions.drain() {
            let key = String::from(key);
            for (start, session) in set.drain() {
                out.push(SessionPartial {
                    route,
                    start,
                    last: session.last,
                    key: key.clone(),
                    accs: session.accs,
                });
            }
        }
    }
}

/// The latest event time that can still extend a session whose last event is at `last`.
fn deadline(last: u64, gap: u64) -> u64 {
    last.saturating_add(gap - 1)
}

/// Merges session partials into one JSON row per session.
///
/// # Contract
/// - Input: `SessionPartial`s (mini-sessions), sent at times `t <= start` (the sources guarantee it: records released on
///   time have `ts >= watermark`, and partials are sent at the watermark).
/// - Each session is emitted exactly once, at time `last + gap - 1`, in the first activation
///   after the input frontier no longer contains that time; its state is freed then.
/// - A partial that could extend an emitted session would have `start <= last + gap - 1 <
///   its own time`, a broken source invariant: the run stops loudly instead of writing a second row.
pub fn session_aggregate<'scope>(
    partials: Stream<'scope, u64, Vec<SessionPartial>>,
    spec: Arc<Spec>,
) -> Stream<'scope, u64, Vec<RowBatch>> {
    let gap = spec
        .session_gap_ms()
        .expect("session_aggregate needs a session dataflow");
    let exchange = Exchange::new(|p: &SessionPartial| p.route);
    partials.unary_frontier(exchange, "SessionAggregate", move |_capability, _info| {
        let mut keys: FxHashMap<String, SessionSet> = FxHashMap::default();
        // Timer index: (deadline, key, start) of every open session.
        let mut timers: BTreeSet<(u64, String, u64)> = BTreeSet::new();
        // IMPORTANT: held at the least open deadline (or dropped when nothing is open). Holding it
        // is what keeps downstream from seeing a session's time as complete before its row.
        let mut held: Option<Capability<u64>> = None;
        let mut absorbed = Vec::new();
        let renderer = RowRenderer::new(&spec);
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let mut least = u64::MAX;
                // Sources always send under a capability, so the stamp has a least time.
                let sent_at = *cap.least().expect("partials are sent under a capability");
                for p in data.drain(..) {
                    // IMPORTANT: a partial at time t only holds events with ts >= t; anything
                    // else could touch a session the frontier has already passed.
                    if p.start < sent_at {
                        crate::fatal(&format!(
                            "session partial starting at {} sent at time {} (source invariant broken)",
                            p.start, sent_at
                        ));
                    }
                    let set = match keys.get_mut(&p.key) {
                        Some(set) => set,
                        None => keys.entry(p.key.clone()).or_default(),
                    };
                    absorbed.clear();
                    let (start, last) = set.insert(p.start, p.last, p.accs, gap, &mut absorbed);
                    for &(s, l) in &absorbed {
                        timers.remove(&(deadline(l, gap), p.key.clone(), s));
                    }
                    let due = deadline(last, gap);
                    least = least.min(due);
                    timers.insert((due, p.key, start));
                }
                // Every deadline is >= the event times it covers >= `sent_at`, so this is valid.
                if least != u64::MAX && held.as_ref().is_none_or(|h| least < *h.time()) {
                    held = Some(cap.delayed(&least, 0));
                }
            });
            // Close every session whose deadline the frontier has passed, in deadline order.
            let mut closed: Vec<(u64, RowBatch)> = Vec::new();
            while let Some((due, _, _)) = timers.first() {
                if frontier.less_equal(due) {
                    break;
                }
                let (due, key, start) = timers.pop_first().expect("checked above");
                let set = keys.get_mut(&key).expect("timer has a session");
                let session = set.remove(start).expect("timer has a session");
                if set.is_empty() {
                    keys.remove(&key);
                }
                if closed.last().is_none_or(|(d, _)| *d != due) {
                    closed.push((due, RowBatch::default()));
                }
                let rows = &mut closed.last_mut().expect("pushed above").1;
                render(rows, &renderer, &key, start, &session);
            }
            if let Some(held) = held.as_ref() {
                // `held` is at the least deadline that was open, so it is <= every `due` here.
                for (due, rows) in closed {
                    output.session(&held.delayed(&due)).give(rows);
                }
            }
            match timers.first() {
                Some((due, _, _)) => {
                    if let Some(h) = held.as_mut() {
                        if *h.time() < *due {
                            h.downgrade(due);
                        }
                    }
                }
                None => held = None,
            }
        }
    })
}

/// `{"start_time":…,"end_time":…,"stream_duration_ms":…, group fields…, aggregates…}`.
fn render(rows: &mut RowBatch, renderer: &RowRenderer, key: &str, start: u64, session: &Session) {
    use std::fmt::Write;
    rows.push(|json| {
        let _ = write!(json, "{{\"start_time\":{start}");
        // The row's key: its start time and group members.
        let head_end = json.len();
        let _ = write!(
            json,
            ",\"end_time\":{},\"stream_duration_ms\":{}",
            session.last,
            session.last - start
        );
        let members = json.len();
        renderer.write_key_and_aggregates(json, (start, session.last), key, &session.accs);
        RowKey {
            head_end,
            members: (members, members + key.len()),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(set: &mut SessionSet, start: u64, last: u64) -> ((u64, u64), Vec<(u64, u64)>) {
        let mut absorbed = Vec::new();
        let merged = set.insert(start, last, vec![Acc::Count(1)], 60, &mut absorbed);
        (merged, absorbed)
    }

    #[test]
    fn exact_gap_splits_and_bridges_merge() {
        let mut set = SessionSet::default();
        assert_eq!(add(&mut set, 0, 0).0, (0, 0));
        // Exactly `gap` after the last event: a new session.
        assert_eq!(add(&mut set, 60, 60), ((60, 60), vec![]));
        // Just under `gap` before the first event of the session at 60: joins it.
        assert_eq!(add(&mut set, 1, 1), ((0, 60), vec![(60, 60), (0, 0)]));
        assert_eq!(add(&mut set, 200, 210).0, (200, 210));
        // A mini-session bridging [0,60] and [200,210].
        let (merged, absorbed) = add(&mut set, 100, 150);
        assert_eq!(merged, (0, 210));
        assert_eq!(absorbed.len(), 2);
        // In-order events extend; one that would bridge or start a session does not.
        assert!(set.extend(230, 60).is_some());
        assert!(set.extend(290, 60).is_none());
        let all: Vec<_> = set.drain().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.last, 230);
        assert_eq!(all[0].1.accs, vec![Acc::Count(5)]);
    }
}
