//! Sources: partitions of input records and the timely source operator that reads them.
//!
//! Contract of the source operator (`partitioned_source`):
//! - It holds one capability at the minimum watermark over its unfinished partitions, and sends
//!   every pre-aggregated batch at that capability, before downgrading it. Records released as on
//!   time have `ts >= watermark`, so no partial can land in a window the frontier has passed.
//! - A partition that has not started yet holds the watermark at its read-ahead reference (the
//!   minimum of its first event times) minus the bound, so unread partitions do not pin the
//!   frontier at zero and windows close while a large file is being read.
//! - When every partition has ended, the capability is dropped: all windows close.
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
//! - A worker that reads its partitions one after another (file chunks) does not start the next
//!   one while the global frontier (all workers' sources) is still below where its previous one
//!   started, unless it holds that frontier itself: a worker that reads faster cannot run
//!   unboundedly ahead of the slowest, whose windows would all wait in memory. The worker at the
//!   frontier never waits, so this cannot stall the dataflow.

pub mod file;
pub mod generator;
pub mod kafka;
pub mod sse;

use crate::metrics::Metrics;
use crate::operators::prepare::{Combiner, PartitionState, Preparer};
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

/// How many leading event times of a partition its reference is the minimum of.
const REFERENCE_RECORDS: usize = 8;
/// How far a partition reads ahead to find them.
const REFERENCE_BYTES: usize = 1 << 20;
/// Work per activation before yielding to other operators.
const BYTES_PER_ACTIVATION: usize = 4 << 20;

struct Slot {
    partition: Box<dyn Partition>,
    state: PartitionState,
    /// The watermark before the first record: the read-ahead reference minus the bound.
    initial: u64,
    started: bool,
    finished: bool,
}

impl Slot {
    fn new<C: Combiner>(mut partition: Box<dyn Partition>, preparer: &Preparer<C>) -> Self {
        let reference = read_reference(&mut *partition, preparer);
        let state = PartitionState::new(partition.name(), reference, preparer.spec());
        Slot {
            partition,
            initial: state.clock.watermark(),
            state,
            started: false,
            finished: false,
        }
    }
}

/// Builds the source operator over this worker's `partitions`; with `discovery` the input is
/// live (see the module contract).
pub fn partitioned_source<'scope, C: Combiner>(
    scope: Scope<'scope, u64>,
    partitions: Vec<Box<dyn Partition>>,
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
            // Partitions are read in order, so a file's chunks are read one after another like one
            // stream; a live partition with nothing to read lets the next one have its turn.
            for i in 0..slots.len() {
                if slots[i].finished {
                    continue;
                }
                if budget == 0 {
                    break;
                }
                // IMPORTANT: only a worker ahead of the frontier waits (see the module contract).
                if !slots[i].started
                    && i > 0
                    && slots[i - 1].finished
                    && frontier.less_than(&slots[i - 1].initial)
                    && frontier.less_than(cap.time())
                {
                    held_back = true;
                    break;
                }
                let slot = &mut slots[i];
                slot.started = true;
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
            let mut watermark = slots
                .iter()
                .filter(|s| !s.finished && !s.partition.idle())
                .map(|s| s.state.clock.watermark())
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
