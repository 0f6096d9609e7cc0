//! Kafka input: every partition of a topic is one `Partition` with its own event-time clock.
//!
//! Contract:
//! - Ownership: partition `p` of topic `t` is read by global worker `(hash(t) + p) % peers`
//!   (`crate::kafka::owner`), across all processes. Partitions are `assign`ed, never subscribed:
//!   no consumer-group rebalancing can move a partition (and its clock) to another worker.
//! - Each partition has its own consumer (one librdkafka client): reading, end-of-partition,
//!   idleness, errors and offset commits are all per partition, and a quiet partition never
//!   blocks a busy one. It is also faster: one client fetching 8 partitions in one request
//!   drained a topic from tansu at 44k events/s, 8 clients at 290k/s (plain consumers, 2 cores);
//!   measured again later on 1M SPS events, 213k-232k events/s against 0.89M-1.1M/s.
//! - A partition's messages are taken in batches from a queue of their own (`BatchQueue`), not
//!   one `poll` each (which cost the job as much CPU as all its processing); the consumer's own
//!   queue, with librdkafka's log lines, errors and commit results, is served once per `read`.
//! - Start position (`StartAt`): earliest, latest, the group's committed offsets (falling back to
//!   earliest when the group has none), or the first offset at or after an event timestamp.
//! - Bounded mode (`until_end`): each partition is `End` at its first end-of-partition (librdkafka
//!   fetched up to the high-water mark the broker reported), normally the high-water mark the job
//!   saw when it started; the source then closes every window. (We do not use ListOffsets for
//!   the end: Tansu 0.6 answers "latest" with the base offset of the last batch, which would cut
//!   the replay short. On a topic written faster than we read, the end is where we caught up.)
//! - Live mode: a partition that has been at its high-water mark (librdkafka's partition EOF)
//!   with no new record for `idle_timeout` is `idle`. Any error (broker unreachable, leader
//!   change, restart; librdkafka reports most of them through its log and error callbacks, see
//!   `Logger::troubled`) clears that state until a fetch succeeds again, so an outage never lets
//!   the watermark advance. The two queues have no common order, so the messages queued when a
//!   warning is served may predate it and do not count as a successful fetch. librdkafka
//!   reconnects with exponential backoff (`reconnect.backoff.*`) and we log the error and keep
//!   asking, holding the capability. New partitions of the topic are found every
//!   `DISCOVERY_INTERVAL` by `KafkaDiscovery` and read from their beginning.
//! - The sink is flushed at most once per `COMMIT_INTERVAL` when rows were emitted since the last
//!   flush, so live rows reach a buffered destination (a file) within about that interval.
//! - Offsets are committed (to the group, asynchronously, at most once per `COMMIT_INTERVAL`) only
//!   up to records whose windows have all been emitted *and flushed to the sink*: after reading
//!   up to offset X with partition watermark W, every on-time record before X has
//!   `ts <= W + bound`, so its windows end by `W + bound + extent`; X is committed once the probe
//!   after the output operator has passed that time and the sink was flushed. A job restarted
//!   with `--start committed` and the same group re-reads everything it had not reported:
//!   at-least-once output, duplicates of already reported rows possible (keys are deterministic,
//!   so a keyed sink can de-duplicate). Not covered: records held back by the bitflip guard and
//!   confirmed later, and (with several processes) rows another process had not flushed yet.
//! - End of a bounded run: a partition that was read to its end commits its end offset once the
//!   worker's dataflow has completed (every window emitted); the source drops its partitions before
//!   that, so the commit waits in `FINAL_COMMITS` until the worker thread exits. A run that fails
//!   commits nothing more. Session windows have no bound on their extent (`horizon` saturates), so
//!   they commit only there: a live session job commits no offsets at all.

use super::{Discovery, Partition, ReadStatus};
use crate::kafka::{
    assign_partition, client_config, owner, AssignedConsumer, BatchQueue, Fetched, KafkaUrl,
    Logger, BATCH,
};
use crate::sinks::RowSink;
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

/// How often a live source looks for new partitions of its topic.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two offset commits (and sink flushes) of one partition.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long start-up waits for the broker and the topic before giving up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes one `read` takes from a partition. The source reads its partitions in turn, so a
/// small slice keeps them close in event time: the watermark (their minimum) then advances
/// steadily and windows close early, instead of one partition running far ahead while all
/// windows stay open (a topic's partitions usually cover the same time range).
const SLICE_BYTES: usize = 256 << 10;
/// How long `read` waits for the next fetch of a partition that is behind its high-water mark
/// when the last read of every partition of the worker was empty: a fetch response is usually
/// that close, while reporting `Idle` from all of them makes the source pause for a scheduling
/// interval (20 ms), in which a fast worker could have consumed several fetches.
const BEHIND_WAIT: Duration = Duration::from_millis(1);
/// How long `peek` waits for the first records of a partition.
const PEEK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `peek` waits for each further message.
const PEEK_WAIT: Duration = Duration::from_millis(50);

/// The unfinished Kafka partitions of one worker, and how many reads in a row found nothing.
#[derive(Default)]
struct Siblings {
    members: Cell<usize>,
    empty_reads: Cell<usize>,
}

/// Where a job starts reading each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    /// The group's committed offsets; earliest where the group has none.
    Committed,
    /// The first record whose Kafka timestamp is at or after this epoch-ms time.
    Time(u64),
}

impl StartAt {
    /// `earliest`, `latest`, `committed`, an epoch-ms number, an RFC 3339 time, or `-DURATION`
    /// (e.g. `-730d`: that long before now).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "earliest" => StartAt::Earliest,
            "latest" => StartAt::Latest,
            "committed" => StartAt::Committed,
            _ if text.starts_with('-') => {
                let ago = crate::time::parse_duration_ms(&text[1..])?;
                let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
                StartAt::Time(now.saturating_sub(ago))
            }
            _ if text.bytes().all(|b| b.is_ascii_digit()) => StartAt::Time(text.parse()?),
            _ => match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => StartAt::Time(t.timestamp_millis().max(0) as u64),
                Err(_) => bail!(
                    "`{text}`: expected earliest, latest, committed, epoch ms, an RFC 3339 time or -DURATION"
                ),
            },
        })
    }
}

/// Everything a Kafka source needs to know, shared by all workers.
#[derive(Clone, Debug)]
pub struct KafkaInput {
    pub url: KafkaUrl,
    pub options: Vec<(String, String)>,
    pub group: String,
    pub start: StartAt,
    pub until_end: bool,
    pub idle_timeout: Duration,
}

/// Tells a partition when the windows holding its records have been emitted.
#[derive(Clone)]
pub struct CommitGate {
    /// Probe after the output operator: its frontier has passed t once every row at time <= t
    /// has been handed to the sink.
    pub probe: ProbeHandle<u64>,
    /// `bound + extent`: records read up to watermark W lie in windows ending by W + horizon.
    pub horizon: u64,
    /// Flushed before a commit, so committed data's rows have left the process.
    pub sink: Arc<dyn RowSink>,
}

impl KafkaInput {
    /// Consumer configuration for one partition (every setting explained).
    fn consumer_config(&self) -> rdkafka::ClientConfig {
        let defaults = [
            // Offsets are group state, but we never join the group: partitions are `assign`ed.
            ("group.id", self.group.as_str()),
            // We commit ourselves, only what has been reported (see the module contract).
            ("enable.auto.commit", "false"),
            // We never use librdkafka's offset store; commits name explicit offsets.
            ("enable.auto.offset.store", "false"),
            // Tells us when a partition is at its high-water mark: the basis of idleness.
            ("enable.partition.eof", "true"),
            // Committed start without a commit, or an offset gone by retention: oldest data.
            ("auto.offset.reset", "earliest"),
            // Reconnect quickly at first, then back off to at most 5 s between attempts.
            ("reconnect.backoff.ms", "100"),
            ("reconnect.backoff.max.ms", "5000"),
            // Prefetch up to 2 MiB per partition, two fetch responses: a busy worker rarely waits
            // for the network, and memory stays low (64 MiB: 420 MiB peak on 1M SPS events, most
            // of it librdkafka's per-message structures; 2 MiB: 180-210 MiB, as fast).
            ("queued.max.messages.kbytes", "2048"),
            // Fetch again 10 ms after the prefetch was full, not 1 s: the worker drains it faster.
            ("fetch.queue.backoff.ms", "10"),
            // Return a fetch as soon as 1 byte is there, or after 100 ms: low latency when live.
            ("fetch.wait.max.ms", "100"),
            // Read committed transactional data only, like any careful consumer.
            ("isolation.level", "read_committed"),
            // Let new partitions be found quickly through metadata refresh.
            ("topic.metadata.refresh.interval.ms", "5000"),
            // Don't let an unused partition client hang up during long waits for the sink.
            ("session.timeout.ms", "45000"),
        ];
        client_config(&self.url.brokers, &defaults, &self.options)
    }

    fn new_consumer(&self, name: &str) -> Result<AssignedConsumer<Logger>> {
        let consumer = self
            .consumer_config()
            .create_with_context(Logger::new(name))
            .with_context(|| format!("cannot create a Kafka consumer for {}", self.url.brokers))?;
        Ok(AssignedConsumer::new(consumer))
    }

    /// Partition ids of the topic, retrying while the broker or the topic is not there yet.
    fn partition_ids(
        &self,
        consumer: &BaseConsumer<Logger>,
        patience: Duration,
        request_timeout: Duration,
    ) -> Result<Vec<i32>> {
        let deadline = Instant::now() + patience;
        let mut backoff = Duration::from_millis(100);
        loop {
            let problem = match consumer.fetch_metadata(Some(&self.url.topic), request_timeout) {
                Ok(metadata) => match metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == self.url.topic)
                {
                    Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => {
                        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
                        ids.sort_unstable();
                        return Ok(ids);
                    }
                    Some(topic) => format!("topic {}: {:?}", self.url.topic, topic.error()),
                    None => format!("topic {} not found", self.url.topic),
                },
                Err(e) => format!("metadata from {}: {e}", self.url.brokers),
            };
            if Instant::now() >= deadline {
                bail!("{problem} (gave up after {} s)", patience.as_secs());
            }
            eprintln!(
                "streamstats: kafka: {problem}; retrying in {} ms",
                backoff.as_millis()
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Opens partition `id` at the start position (`start`); `metadata_wait` bounds how long it
    /// may wait for the topic's metadata (see `assign_partition`).
    fn open_partition(
        &self,
        id: i32,
        start: &StartAt,
        gate: Option<CommitGate>,
        siblings: &Rc<Siblings>,
        metadata_wait: Duration,
    ) -> Result<KafkaPartition> {
        let topic = &self.url.topic;
        let name = format!("{topic}/{id}");
        let consumer = self.new_consumer(&name)?;
        let offset = match start {
            StartAt::Earliest => Offset::Beginning,
            StartAt::Latest => Offset::End,
            StartAt::Committed => Offset::Stored,
            StartAt::Time(ms) => {
                let mut query = TopicPartitionList::new();
                query.add_partition_offset(topic, id, Offset::Offset(*ms as i64))?;
                let found = consumer
                    .offsets_for_times(query, Duration::from_secs(30))
                    .with_context(|| format!("{name}: cannot look up the offset for time {ms}"))?;
                let offset = found.find_partition(topic, id).map(|e| e.offset());
                match offset {
                    Some(o @ Offset::Offset(_)) => o,
                    _ => Offset::End, // no record at or after that time yet
                }
            }
        };
        let consumer = Arc::new(consumer);
        let messages = assign_partition(&consumer, topic, id, offset, metadata_wait)?;
        Ok(KafkaPartition {
            name,
            topic: topic.clone(),
            id,
            consumer,
            messages,
            stale: 0,
            recovery_checked: false,
            bounded: self.until_end,
            ended: false,
            caught_up_since: None,
            idle_timeout: self.idle_timeout,
            failing_since: None,
            next: None,
            gate,
            siblings: {
                siblings.members.set(siblings.members.get() + 1);
                Rc::clone(siblings)
            },
            pending: VecDeque::new(),
            to_commit: None,
            committed: None,
            flushed_at: None,
            last_flush: Instant::now(),
        })
    }
}

/// A worker's partitions, and (live mode) where it finds new ones.
pub type OwnedPartitions = (Vec<Box<dyn Partition>>, Option<Box<dyn Discovery>>);

/// Opens the partitions owned by global worker `index` of `peers`, and (live mode) a discovery
/// for partitions added later.
pub fn partitions(
    input: &KafkaInput,
    index: usize,
    peers: usize,
    gate: Option<CommitGate>,
) -> Result<OwnedPartitions> {
    let metadata = input.new_consumer(&format!("{}/metadata", input.url.topic))?;
    let ids = input.partition_ids(&metadata, STARTUP_TIMEOUT, Duration::from_secs(5))?;
    let mut owned: Vec<Box<dyn Partition>> = Vec::new();
    let siblings = Rc::new(Siblings::default());
    for &id in ids
        .iter()
        .filter(|&&id| owner(&input.url.topic, id, peers) == index)
    {
        owned.push(Box::new(input.open_partition(
            id,
            &input.start,
            gate.clone(),
            &siblings,
            Duration::from_secs(2),
        )?));
    }
    let discovery: Option<Box<dyn Discovery>> = if input.until_end {
        None
    } else {
        Some(Box::new(KafkaDiscovery {
            input: input.clone(),
            metadata,
            known: ids.into_iter().collect(),
            index,
            peers,
            gate,
            siblings,
            last: Instant::now(),
        }))
    };
    Ok((owned, discovery))
}

/// One Kafka partition read by its own consumer.
pub struct KafkaPartition {
    name: String,
    topic: String,
    id: i32,
    /// Shared with a pending `FinalCommit`, which outlives the partition.
    consumer: Arc<AssignedConsumer<Logger>>,
    /// The partition's messages; the consumer's own queue has its log lines and errors.
    messages: BatchQueue<Logger>,
    /// How many of the next messages were queued when the last warning was served: they may
    /// have been fetched before the trouble it reports, so they do not show that it is over.
    stale: usize,
    /// `recovered` ran for a fresh message since the consumer's queue was last served or a fetch
    /// last failed: the next messages cannot tell it more (it ran once per record before, ~3 %
    /// of a Kafka run's CPU).
    recovery_checked: bool,
    /// Bounded mode: the partition ends at its first end-of-partition.
    bounded: bool,
    ended: bool,
    /// At the high-water mark with nothing newer since then.
    caught_up_since: Option<Instant>,
    idle_timeout: Duration,
    /// First error of the current outage, for the "reading again" log line.
    failing_since: Option<Instant>,
    /// Offset after the last record delivered.
    next: Option<i64>,
    gate: Option<CommitGate>,
    siblings: Rc<Siblings>,
    /// (time the probe must pass, offset that may then be committed), oldest first.
    pending: VecDeque<(u64, i64)>,
    to_commit: Option<i64>,
    committed: Option<i64>,
    /// Output frontier at the last flush of the sink.
    flushed_at: Option<u64>,
    last_flush: Instant,
}

/// What one poll of a partition's queue produced.
enum Polled {
    /// A record, handed to the caller's closure (zero-copy); its offset.
    Record(i64),
    /// An end-of-partition (live mode) or an error, dealt with.
    Event,
    Nothing,
    End,
}

impl KafkaPartition {
    /// Serves the consumer's own queue: librdkafka's log lines and errors reach `Logger`, commit
    /// results are consumed. One event per call is plenty: `read` runs at least every 20 ms.
    /// (No message comes here: `BatchQueue::split` ran before `assign`.)
    fn serve_consumer_queue(&mut self) {
        self.recovery_checked = false;
        let warnings = self.consumer.context().warnings();
        if let Some(Err(e)) = self.consumer.poll(Duration::ZERO) {
            self.consumer.context().warn(&e.to_string());
        }
        if self.consumer.context().warnings() != warnings {
            self.stale = self.messages.queued();
        }
    }

    /// Takes the next message of the partition, without waiting longer than `timeout`.
    fn poll(&mut self, timeout: Duration, record: &mut dyn FnMut(i64, &[u8])) -> Polled {
        let Some(message) = self.messages.take(timeout) else {
            return Polled::Nothing;
        };
        let fresh = self.stale == 0;
        self.stale = self.stale.saturating_sub(1);
        match message {
            Fetched::Record { offset, payload } => {
                record(offset, payload);
                if fresh && !self.recovery_checked {
                    self.recovered();
                    self.recovery_checked = true;
                }
                self.caught_up_since = None;
                Polled::Record(offset)
            }
            Fetched::End => {
                if fresh {
                    self.recovered();
                }
                // IMPORTANT: bounded mode ends at the first end-of-partition (see the contract).
                if self.bounded {
                    return Polled::End;
                }
                self.caught_up_since.get_or_insert_with(Instant::now);
                Polled::Event
            }
            Fetched::Error(error) => {
                self.failed(&error);
                Polled::Event
            }
        }
    }

    /// A fetch failed.
    fn failed(&mut self, error: &str) {
        // IMPORTANT: an error is not "no data": the partition stops being idle, so it holds the
        // watermark (and the capability) until the broker answers again.
        self.caught_up_since = None;
        self.recovery_checked = false;
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        self.consumer.context().warn(&format!(
            "{error}; holding the watermark and retrying (failing for {} s)",
            since.elapsed().as_secs()
        ));
    }

    /// Bounded mode: the partition is at its end.
    fn end(&mut self) {
        self.ended = true;
        self.messages.discard(); // what follows the end is not read
        self.siblings.members.set(self.siblings.members.get() - 1);
    }

    /// A fetch succeeded: the broker answers again.
    fn recovered(&mut self) {
        let since = self.failing_since.take();
        if since.is_some() || self.consumer.context().troubled() {
            let after = since.map_or(String::new(), |t| {
                format!(" after {:.1} s of errors", t.elapsed().as_secs_f64())
            });
            eprintln!("streamstats: kafka {}: fetching again{after}", self.name);
            self.consumer.context().clear_trouble();
            // The idle timeout starts again from the first end-of-partition after the trouble.
            self.caught_up_since = None;
        }
    }

    /// Flushes the sink if rows were emitted since the last flush, and commits what the probe
    /// allows; at most once per `COMMIT_INTERVAL`.
    fn commit_ready(&mut self) {
        let Some(gate) = &self.gate else { return };
        while let Some(&(time, offset)) = self.pending.front() {
            if gate.probe.less_equal(&time) {
                break;
            }
            self.to_commit = Some(offset);
            self.pending.pop_front();
        }
        if self.last_flush.elapsed() < COMMIT_INTERVAL {
            return;
        }
        let commit = self.to_commit.filter(|&o| self.committed != Some(o));
        // Live rows reach their destination promptly, not only when an offset can be committed.
        let frontier = gate.probe.with_frontier(|f| f.first().copied());
        if commit.is_none() && frontier == self.flushed_at {
            return;
        }
        self.last_flush = Instant::now();
        self.flushed_at = frontier;
        // IMPORTANT: the rows of committed records must have left this process first.
        if let Err(e) = gate.sink.flush() {
            crate::fatal(&format!(
                "cannot flush results before committing {}: {e:#}",
                self.name
            ));
        }
        let Some(offset) = commit else { return };
        let mut list = TopicPartitionList::new();
        let result = list
            .add_partition_offset(&self.topic, self.id, Offset::Offset(offset))
            .and_then(|()| self.consumer.commit(&list, CommitMode::Async));
        match result {
            Ok(()) => self.committed = Some(offset),
            Err(e) => self.consumer.context().warn(&format!(
                "commit of offset {offset} failed: {e}; will retry"
            )),
        }
    }
}

impl Partition for KafkaPartition {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn peek(&mut self, max_bytes: usize, each: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        // Looks at the messages without taking them: `read` delivers them and handles the rest.
        let deadline = Instant::now() + PEEK_TIMEOUT;
        let (mut i, mut bytes) = (0, 0);
        while i < BATCH && bytes < max_bytes && Instant::now() < deadline {
            match self.messages.peek(i, PEEK_WAIT) {
                Some(Fetched::Record { payload, .. }) => {
                    if !each(payload) {
                        break;
                    }
                    bytes += payload.len() + 1;
                }
                Some(Fetched::End) => break,
                Some(Fetched::Error(_)) => {}
                None => continue,
            }
            i += 1;
        }
        Ok(())
    }

    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> io::Result<ReadStatus> {
        self.serve_consumer_queue();
        let mut read = 0;
        let max_bytes = max_bytes.min(SLICE_BYTES);
        while read < max_bytes && !self.ended {
            let behind = self.caught_up_since.is_none() && self.failing_since.is_none();
            let all_empty = self.siblings.empty_reads.get() >= self.siblings.members.get();
            let wait = if read == 0 && behind && all_empty {
                BEHIND_WAIT
            } else {
                Duration::ZERO
            };
            let mut deliver = |offset: i64, line: &[u8]| {
                read += line.len() + 1;
                each(offset as u64, line);
            };
            match self.poll(wait, &mut deliver) {
                Polled::Record(offset) => self.next = Some(offset + 1),
                Polled::Event => {}
                Polled::Nothing => break,
                Polled::End => {
                    self.end();
                    break;
                }
            }
        }
        let empty_reads = if read > 0 {
            0
        } else {
            self.siblings.empty_reads.get() + 1
        };
        self.siblings.empty_reads.set(empty_reads);
        self.commit_ready();
        Ok(if read > 0 {
            ReadStatus::Data
        } else if self.ended {
            ReadStatus::End
        } else {
            ReadStatus::Idle
        })
    }

    fn idle(&self) -> bool {
        // IMPORTANT: librdkafka reports a broker outage through the log/error callbacks, not
        // through poll: any trouble since the last successful fetch means "not idle".
        self.messages.pending() == 0
            && !self.consumer.context().troubled()
            && self
                .caught_up_since
                .is_some_and(|t| t.elapsed() >= self.idle_timeout)
    }

    fn sent(&mut self, watermark: u64) {
        let (Some(gate), Some(next)) = (&self.gate, self.next) else {
            return;
        };
        let time = watermark.saturating_add(gate.horizon);
        match self.pending.back_mut() {
            // Same deadline: a later offset replaces the earlier one (keeps the queue short).
            Some((t, offset)) if *t == time => *offset = next,
            _ => self.pending.push_back((time, next)),
        }
    }
}

impl Drop for KafkaPartition {
    fn drop(&mut self) {
        // Only a partition read to its end commits everything it read (see the module contract).
        let (true, Some(gate), Some(offset)) = (self.ended, self.gate.take(), self.next) else {
            return;
        };
        if self.committed == Some(offset) {
            return;
        }
        let last = FinalCommit {
            consumer: Arc::clone(&self.consumer),
            name: std::mem::take(&mut self.name),
            topic: std::mem::take(&mut self.topic),
            id: self.id,
            offset,
            gate,
        };
        if last.gate.probe.done() {
            last.commit();
        } else {
            // Fails only while the thread exits without having completed: then nothing is due.
            let _ = FINAL_COMMITS.try_with(|c| c.borrow_mut().0.push(last));
        }
    }
}

/// The last commit of a partition read to its end, made once every window has been emitted.
struct FinalCommit {
    consumer: Arc<AssignedConsumer<Logger>>,
    name: String,
    topic: String,
    id: i32,
    offset: i64,
    gate: CommitGate,
}

impl FinalCommit {
    fn commit(self) {
        // IMPORTANT: the rows of committed records must have left this process first.
        if let Err(e) = self.gate.sink.flush() {
            eprintln!(
                "streamstats: kafka {}: not committing: cannot flush results: {e:#}",
                self.name
            );
            return;
        }
        let mut list = TopicPartitionList::new();
        let result = list
            .add_partition_offset(&self.topic, self.id, Offset::Offset(self.offset))
            .and_then(|()| self.consumer.commit(&list, CommitMode::Sync));
        if let Err(e) = result {
            eprintln!(
                "streamstats: kafka {}: final commit of offset {} failed: {e}",
                self.name, self.offset
            );
        }
    }
}

/// Final commits waiting for this worker's dataflow to complete; made when the thread exits.
struct FinalCommits(Vec<FinalCommit>);

impl Drop for FinalCommits {
    fn drop(&mut self) {
        for last in self.0.drain(..) {
            // A worker that stopped before its dataflow completed has not emitted every window.
            if last.gate.probe.done() {
                last.commit();
            }
        }
    }
}

thread_local! {
    static FINAL_COMMITS: RefCell<FinalCommits> = const { RefCell::new(FinalCommits(Vec::new())) };
}

/// Finds partitions added to the topic while a live job runs.
struct KafkaDiscovery {
    input: KafkaInput,
    metadata: AssignedConsumer<Logger>,
    known: HashSet<i32>,
    index: usize,
    peers: usize,
    gate: Option<CommitGate>,
    siblings: Rc<Siblings>,
    last: Instant,
}

impl Discovery for KafkaDiscovery {
    fn poll(&mut self) -> Vec<Box<dyn Partition>> {
        if self.last.elapsed() < DISCOVERY_INTERVAL {
            return Vec::new();
        }
        self.last = Instant::now();
        let Ok(ids) = self.input.partition_ids(
            &self.metadata,
            Duration::ZERO,
            // Short: this runs on the worker thread, which must keep reading during an outage.
            Duration::from_millis(200),
        ) else {
            return Vec::new(); // broker unreachable: try again next interval
        };
        let mut found: Vec<Box<dyn Partition>> = Vec::new();
        for id in ids {
            if !self.known.insert(id) || owner(&self.input.url.topic, id, self.peers) != self.index
            {
                continue;
            }
            // A new partition's records are all new: read it from the beginning.
            match self.input.open_partition(
                id,
                &StartAt::Earliest,
                self.gate.clone(),
                &self.siblings,
                // Short, like the look-up above: this runs on the worker thread.
                Duration::from_millis(200),
            ) {
                Ok(partition) => {
                    eprintln!(
                        "streamstats: kafka: picked up new partition {}",
                        partition.name
                    );
                    found.push(Box::new(partition));
                }
                Err(e) => {
                    eprintln!(
                        "streamstats: kafka: cannot open new partition {id}: {e:#}; will retry"
                    );
                    self.known.remove(&id);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(StartAt::parse("earliest").unwrap(), StartAt::Earliest);
        assert_eq!(
            StartAt::parse("1515445354000").unwrap(),
            StartAt::Time(1_515_445_354_000)
        );
        assert_eq!(
            StartAt::parse("2018-01-08T21:02:34Z").unwrap(),
            StartAt::Time(1_515_445_354_000)
        );
        let StartAt::Time(t) = StartAt::parse("-730d").unwrap() else {
            panic!()
        };
        let now = chrono::Utc::now().timestamp_millis() as u64;
        assert!(now - t >= 730 * 86_400_000 && now - t < 731 * 86_400_000);
        assert!(StartAt::parse("yesterday").is_err());
    }
}
