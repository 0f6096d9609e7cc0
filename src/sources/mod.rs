//! Sources: partitions of input records and the timely source operator that reads them.
//!
//! Contract of the source operator (`partitioned_source`):
//! - It holds one capability at the minimum watermark over its unfinished partitions and the
//!   shared ones nobody has claimed yet (see below), and sends every pre-aggregated batch at that
//!   capability, before downgrading it. Records released as on time have `ts >= watermark`, so
//!   no partial can land in a window the frontier has passed.
//! - A partition that has not started yet holds the watermark at its read-ahead reference (the
//!   minimum of its first event times) minus the bound, so unread partitions do not pin the
//!   frontier at zero and windows close while a large file is being read.
//! - When every partition has ended and none is left to claim, the capability is dropped: once
//!   every worker has dropped its own, all windows close.
//! - It yields after a bounded amount of work, so downstream operators run during the read.
//! - Live inputs (Kafka without `--until-end`): a partition that says it is `idle` (caught up and
//!   quiet for the idle timeout) does not hold the watermark back; partitions may appear while the
//!   source runs (`Discovery`). A partition that was idle or is new first has its clock raised to
//!   the capability, so its records below the capability are late for it (dead letter) and never
//!   sent below the capability. When every partition of a worker is idle (or it owns none), the
//!   watermark follows the wall clock minus the bound: live event time is assumed to track the
//!   wall clock, and this is what lets the last windows close without waiting for more traffic.
//!   A partition that cannot reach its broker is never idle, so a broker outage holds the frontier.
//! - After the records read from a partition were sent, `Partition::sent` tells it the partition's
//!   watermark (the Kafka source uses this to commit offsets only after their windows were emitted).
//! - Shared partitions (a plain file's chunks, `SharedPartitions`) are claimed one at a time, in
//!   order, by whichever worker of the process has finished its previous one, so a worker on a
//!   faster CPU reads more chunks instead of waiting for a slower one. Every worker holds its
//!   capability at or below the read-ahead watermark of every chunk not yet claimed (the minimum
//!   over them never falls, as claims only remove chunks), so the claimer starts a chunk exactly
//!   at that chunk's own watermark, whichever worker it is, and the output does not depend on who
//!   read what.
//! - A worker does not claim the process's chunk number `n` while the global frontier (all
//!   workers' sources) is still below the start of chunk `n - workers`, unless it holds that
//!   frontier itself: readers cannot run unboundedly ahead of the slowest, whose windows would all
//!   wait in memory. The worker at the frontier never waits, so this cannot stall the dataflow.

pub mod file;
pub mod generator;
pub mod kafka;
pub mod sse;

use crate::metrics::Metrics;
use crate::operators::prepare::{Combiner, PartitionState, Preparer};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Scope, Stream};

/// What a partition did when asked for records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Delivered records; ask again soon.
    Data,
    /// Nothing available right now (live input); ask again after a short pause.
    Idle,
    /// No more records, ever.
    End,
}

/// One ordered stream of records: a file chunk, a Kafka partition, a generator.
pub trait Partition {
    /// Stable name used in dead-letter records, e.g. `events.jsonl#3`.
    fn name(&self) -> String;

    /// Reads ahead without consuming: calls `each(line)` for the first records, until it returns
    /// false or `max_bytes` were read. Only replayable inputs can do this.
    fn peek(
        &mut self,
        _max_bytes: usize,
        _each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> std::io::Result<()> {
        Ok(())
    }

    /// Delivers up to about `max_bytes` of records as `(offset, line)` without the newline.
    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> std::io::Result<ReadStatus>;

    /// True while a live partition is caught up and has had no new records for the idle timeout:
    /// it then does not hold the source's watermark back. Must be false while the input is
    /// unreachable, or an outage would look like a quiet input and close windows early.
    fn idle(&self) -> bool {
        false
    }

    /// Everything read so far has been sent downstream, and this partition's watermark is now
    /// `watermark`: no record read so far lies in a window ending after `watermark + bound + extent`.
    fn sent(&mut self, _watermark: u64) {}
}

/// Partitions that appear while a live source runs (e.g. partitions added to a Kafka topic).
pub trait Discovery {
    /// New partitions owned by this worker since the last call; cheap when nothing changed.
    fn poll(&mut self) -> Vec<Box<dyn Partition>>;
}

/// Partitions the workers of one process share, each read by whichever worker claims it first;
/// they are claimed in order (see the module contract).
pub struct SharedPartitions {
    queue: Mutex<Queue>,
    /// Every partition's read-ahead reference, found once by the first worker that asks.
    references: OnceLock<Vec<Option<u64>>>,
}

struct Queue {
    /// `None` once claimed.
    partitions: Vec<Option<Box<dyn Partition + Send>>>,
    /// The position of the next partition to claim.
    next: usize,
}

impl SharedPartitions {
    pub fn new(partitions: Vec<Box<dyn Partition + Send>>) -> Self {
        SharedPartitions {
            queue: Mutex::new(Queue {
                partitions: partitions.into_iter().map(Some).collect(),
                next: 0,
            }),
            references: OnceLock::new(),
        }
    }

    fn references<C: Combiner>(&self, preparer: &Preparer<C>) -> &[Option<u64>] {
        self.references.get_or_init(|| {
            let mut queue = self.queue.lock().expect("no worker panics holding it");
            queue
                .partitions
                .iter_mut()
                .map(|p| read_reference(&mut **p.as_mut().expect("none claimed yet"), preparer))
                .collect()
        })
    }

    /// The position of the next partition to claim (the number of those claimed so far).
    fn next(&self) -> usize {
        self.queue.lock().expect("no worker panics holding it").next
    }

    /// Claims the next partition if there is one and `allowed(its position)`.
    fn claim(&self, allowed: impl FnOnce(usize) -> bool) -> Option<(usize, Box<dyn Partition>)> {
        let mut queue = self.queue.lock().expect("no worker panics holding it");
        let position = queue.next;
        if position >= queue.partitions.len() || !allowed(position) {
            return None;
        }
        queue.next += 1;
        let partition = queue.partitions[position].take().expect("claimed once");
        Some((position, partition))
    }
}

/// How many leading event times of a partition its reference is the minimum of.
const REFERENCE_RECORDS: usize = 8;
/// How far a partition reads ahead to find them.
const REFERENCE_BYTES: usize = 1 << 20;
/// Work per activation before yielding to other operators.
const BYTES_PER_ACTIVATION: usize = 4 << 20;

struct Slot {
    partition: Box<dyn Partition>,
    state: PartitionState,
    finished: bool,
}

impl Slot {
    fn new<C: Combiner>(mut partition: Box<dyn Partition>, preparer: &Preparer<C>) -> Self {
        let reference = read_reference(&mut *partition, preparer);
        Slot::with_reference(partition, reference, preparer)
    }

    fn with_reference<C: Combiner>(
        partition: Box<dyn Partition>,
        reference: Option<u64>,
        preparer: &Preparer<C>,
    ) -> Self {
        let state = PartitionState::new(partition.name(), reference, preparer.spec());
        Slot {
            partition,
            state,
            finished: false,
        }
    }
}

/// What a worker knows of its process's `SharedPartitions`.
pub struct SharedInput {
    pub partitions: Arc<SharedPartitions>,
    /// The workers of the process: a worker may claim partition `n` once the frontier has reached
    /// the start of partition `n - workers` (see the module contract).
    pub workers: usize,
}

/// A worker's view of the shared partitions, with their read-ahead watermarks.
struct Claims {
    input: SharedInput,
    /// The watermark of each partition before its first record.
    initials: Vec<u64>,
    /// `floors[n]`: the lowest of `initials[n..]`, where every worker holds its capability while
    /// partition `n` is the next to claim.
    floors: Vec<u64>,
}

impl Claims {
    fn new<C: Combiner>(input: SharedInput, preparer: &Preparer<C>) -> Self {
        let initials: Vec<u64> = input
            .partitions
            .references(preparer)
            .iter()
            .map(|&reference| {
                PartitionState::new(String::new(), reference, preparer.spec())
                    .clock
                    .watermark()
            })
            .collect();
        let mut floors = initials.clone();
        for n in (1..floors.len()).rev() {
            floors[n - 1] = floors[n - 1].min(floors[n]);
        }
        Claims {
            input,
            initials,
            floors,
        }
    }

    /// The lowest watermark of the partitions nobody has claimed yet, if any remain.
    fn unclaimed_floor(&self) -> Option<u64> {
        self.floors.get(self.input.partitions.next()).copied()
    }

    /// Claims the next partition unless this worker must wait for the frontier: returns it, or
    /// whether the worker was held back.
    fn claim<C: Combiner>(
        &self,
        frontier: &ProbeHandle<u64>,
        capability: u64,
        preparer: &Preparer<C>,
    ) -> Result<Option<Slot>, HeldBack> {
        // IMPORTANT: only a worker ahead of the frontier waits (see the module contract).
        let at_frontier = !frontier.less_than(&capability);
        let mut held_back = false;
        let claimed = self.input.partitions.claim(|position| {
            let allowed = at_frontier
                || position
                    .checked_sub(self.input.workers)
                    .is_none_or(|earlier| !frontier.less_than(&self.initials[earlier]));
            held_back = !allowed;
            allowed
        });
        if held_back {
            return Err(HeldBack);
        }
        Ok(claimed.map(|(position, partition)| {
            let references = self.input.partitions.references(preparer);
            Slot::with_reference(partition, references[position], preparer)
        }))
    }
}

/// A worker waits for the frontier before claiming a partition.
struct HeldBack;

/// Builds the source operator over this worker's `partitions` and those it claims from `shared`;
/// with `discovery` the input is live (see the module contract).
pub fn partitioned_source<'scope, C: Combiner>(
    scope: Scope<'scope, u64>,
    partitions: Vec<Box<dyn Partition>>,
    shared: Option<SharedInput>,
    mut discovery: Option<Box<dyn Discovery>>,
    mut preparer: Preparer<C>,
    metrics: std::sync::Arc<Metrics>,
    local_worker: usize,
) -> Stream<'scope, u64, Vec<C::Batch>> {
    // The frontier of all workers' sources together (timely's progress tracking is global).
    let sources_frontier = ProbeHandle::new();
    let frontier = sources_frontier.clone();
    let stream = source(scope, "Source", move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability);
        let mut slots: Vec<Slot> = Vec::new();
        for partition in partitions {
            slots.push(Slot::new(partition, &preparer));
        }
        let claims = shared.map(|input| Claims::new(input, &preparer));
        let bound = preparer.spec().time.max_out_of_orderness_ms;
        let mut partials = Vec::new();
        let mut read_from = Vec::new();
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            if let Some(discovery) = discovery.as_mut() {
                for partition in discovery.poll() {
                    slots.push(Slot::new(partition, &preparer));
                }
            }
            let floor = *cap.time();
            let mut budget = BYTES_PER_ACTIVATION;
            let mut any_idle = false;
            let mut held_back = false;
            read_from.clear();
            // A worker claims a shared partition once it has read all it had.
            if let Some(claims) = &claims {
                if slots.is_empty() {
                    match claims.claim(&frontier, floor, &preparer) {
                        Ok(Some(slot)) => slots.push(slot),
                        Ok(None) => {}
                        Err(HeldBack) => held_back = true,
                    }
                }
            }
            // Partitions are read in order; a live partition with nothing to read lets the next
            // one have its turn. (Finished ones were removed at the end of the last activation.)
            for (i, slot) in slots.iter_mut().enumerate() {
                if budget == 0 {
                    break;
                }
                // IMPORTANT: a partition that was idle or is new may trail the capability.
                slot.state.clock.raise_watermark(floor);
                let mut used = 0;
                let status = slot
                    .partition
                    .read(budget, &mut |offset, line| {
                        used += line.len() + 1;
                        preparer.line(&mut slot.state, offset, line);
                    })
                    .unwrap_or_else(|e| crate::fatal(&format!("reading {}: {e}", slot.state.name)));
                budget = budget.saturating_sub(used);
                if used > 0 {
                    read_from.push(i);
                }
                match status {
                    ReadStatus::Data => {}
                    ReadStatus::Idle => any_idle = true,
                    ReadStatus::End => {
                        preparer.finish_partition(&mut slot.state);
                        slot.finished = true;
                    }
                }
            }
            preparer.flush(&mut partials);
            if !partials.is_empty() {
                output.session(&*cap).give_container(&mut partials);
            }
            for &i in &read_from {
                let slot = &mut slots[i];
                slot.partition.sent(slot.state.clock.watermark());
            }
            slots.retain(|s| !s.finished);
            // IMPORTANT: at or below every unclaimed partition's start, so whoever claims one
            // starts it at its own watermark (see the module contract).
            let unclaimed = claims.as_ref().and_then(Claims::unclaimed_floor);
            let mut watermark = slots
                .iter()
                .filter(|s| !s.partition.idle())
                .map(|s| s.state.clock.watermark())
                .chain(unclaimed)
                .min();
            if watermark.is_none() && discovery.is_some() {
                // Live and every partition idle (or none owned yet): follow the wall clock.
                let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
                watermark = Some(now.saturating_sub(bound).max(*cap.time()));
                any_idle = true;
            }
            metrics.set_watermark(local_worker, watermark.unwrap_or(u64::MAX));
            match watermark {
                // IMPORTANT: partials were sent at the old capability above; only now may it move.
                Some(w) => {
                    if w > *cap.time() {
                        cap.downgrade(&w);
                    }
                    if held_back && budget == BYTES_PER_ACTIVATION {
                        activator.activate_after(Duration::from_millis(1));
                    } else if any_idle && budget == BYTES_PER_ACTIVATION {
                        activator.activate_after(Duration::from_millis(20));
                    } else {
                        activator.activate();
                    }
                }
                None => capability = None,
            }
        }
    });
    stream.probe_with(&sources_frontier)
}

/// The minimum of a partition's first event times, if it can read ahead.
fn read_reference<C: Combiner>(
    partition: &mut dyn Partition,
    preparer: &Preparer<C>,
) -> Option<u64> {
    let mut times = Vec::new();
    let result = partition.peek(REFERENCE_BYTES, &mut |line| {
        if let Some(ts) = preparer.event_time(line) {
            times.push(ts);
        }
        times.len() < REFERENCE_RECORDS
    });
    if let Err(e) = result {
        crate::fatal(&format!("reading {}: {e}", partition.name()));
    }
    times.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(usize);

    impl Partition for Named {
        fn name(&self) -> String {
            format!("p{}", self.0)
        }
        fn read(&mut self, _: usize, _: &mut dyn FnMut(u64, &[u8])) -> std::io::Result<ReadStatus> {
            Ok(ReadStatus::End)
        }
    }

    #[test]
    fn shared_partitions_are_claimed_once_each_in_order_and_only_when_allowed() {
        let shared = SharedPartitions::new((0..3).map(|i| Box::new(Named(i)) as _).collect());
        let claim = |allowed: bool| {
            shared
                .claim(|_| allowed)
                .map(|(position, p)| (position, p.name()))
        };
        assert_eq!(claim(true), Some((0, "p0".to_string())));
        assert_eq!(claim(false), None, "held back");
        assert_eq!(shared.next(), 1, "a refused claim takes nothing");
        assert_eq!(claim(true), Some((1, "p1".to_string())));
        assert_eq!(claim(true), Some((2, "p2".to_string())));
        assert_eq!(claim(true), None, "all claimed");
        assert_eq!(shared.next(), 3);
    }
}
