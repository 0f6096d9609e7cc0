//! Kafka plumbing shared by the Kafka source, the Kafka sinks and `streamstats replay`.
//!
//! Contract:
//! - A Kafka target is `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`; `--kafka-option key=value` pairs are
//!   passed to librdkafka unchanged (SASL, TLS, tuning) and override our defaults.
//! - Every client logs through `Logger`: librdkafka warnings and errors reach stderr as
//!   `streamstats: kafka <client>: …`, at most one line per second per client (the number of
//!   suppressed lines is reported), so a broker outage is visible but never floods the log.
//! - `owner` decides which global worker reads a partition; it depends only on the topic name,
//!   the partition number and the number of workers, so every process computes the same map.
//! - `BatchQueue` takes a partition's messages from librdkafka in batches, off the consumer's own
//!   queue; that queue keeps librdkafka's log lines, errors and commit results, which the owner
//!   must still serve (`BaseConsumer::poll`) for `Logger` to see them.
//! - `AssignedConsumer` closes its consumer in 1 ms steps when dropped, so ending a run does not
//!   wait ~100 ms per client (rust-rdkafka's own drop does).
//! - `assign_partition` learns the partition's leader before assigning it, so the first fetch
//!   starts at once instead of after librdkafka's 500 ms retry of the start-offset lookup.

use anyhow::{bail, Context, Result};
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::ffi::CString;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A parsed `kafka://HOST:PORT[,HOST:PORT]/TOPIC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaUrl {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
}

/// Is this an `--input`/`--output` target for Kafka?
pub fn is_kafka_url(target: &str) -> bool {
    target.starts_with("kafka://")
}

impl KafkaUrl {
    pub fn parse(text: &str) -> Result<Self> {
        let Some(rest) = text.strip_prefix("kafka://") else {
            bail!("`{text}` is not a kafka:// URL");
        };
        let Some((brokers, topic)) = rest.split_once('/') else {
            bail!("`{text}`: expected kafka://HOST:PORT[,HOST:PORT]/TOPIC");
        };
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            bail!("`{text}`: every broker needs HOST:PORT");
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(valid) {
            bail!("`{text}`: topic names use [a-zA-Z0-9._-], 1 to 249 characters");
        }
        Ok(KafkaUrl {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }
}

/// Parses `--kafka-option key=value` arguments.
pub fn parse_options(options: &[String]) -> Result<Vec<(String, String)>> {
    options
        .iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("--kafka-option: `{o}` is not key=value"),
        })
        .collect()
}

static USER_OPTIONS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Records the run's `--kafka-option`s once, at start-up, for every Kafka client of the process
/// (sources, sinks and dead-letter writers are opened in places that know nothing else of Kafka).
pub fn set_user_options(options: Vec<(String, String)>) {
    let _ = USER_OPTIONS.set(options);
}

/// The `--kafka-option`s of this run (empty if none were given).
pub fn user_options() -> Vec<(String, String)> {
    USER_OPTIONS.get().cloned().unwrap_or_default()
}

/// A client configuration: bootstrap servers, our `defaults`, then the user's options on top.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    user: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    // Our own log callback (below) prints warnings; librdkafka's debug noise stays off.
    config.set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in user {
        config.set(key, value);
    }
    config
}

/// Global worker that reads partition `partition` of `topic`: `(hash(topic) + partition) % peers`.
/// The hash is xxh3 with a fixed seed, so it is the same in every process and on every machine;
/// adding it spreads the partitions of several topics over different workers.
pub fn owner(topic: &str, partition: i32, peers: usize) -> usize {
    let hash = xxhash_rust::xxh3::xxh3_64(topic.as_bytes());
    (hash.wrapping_add(partition as u64) % peers as u64) as usize
}

/// librdkafka client context that reports warnings and errors on stderr, rate limited, and
/// remembers that there was trouble (librdkafka reports broker outages through these callbacks,
/// not through the consumer's poll) until a fetch succeeds again.
pub struct Logger {
    name: String,
    state: Mutex<(Option<Instant>, u64)>,
    trouble: AtomicBool,
    warnings: AtomicU64,
}

impl Logger {
    pub fn new(name: impl Into<String>) -> Self {
        Logger {
            name: name.into(),
            state: Mutex::new((None, 0)),
            trouble: AtomicBool::new(false),
            warnings: AtomicU64::new(0),
        }
    }

    /// True after a warning or error, until `clear_trouble` (a successful fetch).
    pub fn troubled(&self) -> bool {
        self.trouble.load(Ordering::Relaxed)
    }

    /// How many warnings and errors there have been (printed or not).
    pub fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    pub fn clear_trouble(&self) {
        self.trouble.store(false, Ordering::Relaxed);
    }

    /// Prints `message` unless a line was printed less than a second ago.
    pub fn warn(&self, message: &str) {
        self.trouble.store(true, Ordering::Relaxed);
        self.warnings.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().expect("logger lock");
        let now = Instant::now();
        if state
            .0
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            state.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut state.1);
        state.0 = Some(now);
        let more = if suppressed > 0 {
            format!(" ({suppressed} similar lines suppressed)")
        } else {
            String::new()
        };
        eprintln!("streamstats: kafka {}: {message}{more}", self.name);
    }
}

impl ClientContext for Logger {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.warn(&format!("{fac}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is news, not trouble (the consumer's poll reports it too).
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            self.warn(&format!("{error}: {reason}"));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Logger {}

/// A consumer that is no group member (partitions are assigned, or none) and closes quickly when
/// dropped.
///
/// rust-rdkafka's `BaseConsumer` closes a consumer with a `group.id` on drop by polling its queue
/// in 100 ms steps until librdkafka reports it closed; nothing wakes that poll for an assign-only
/// consumer, so every drop took a full step (~105 ms: 0.85 s at the end of every 8-partition run,
/// in the job and in `kafka_drain` alike). Closed here in 1 ms steps, that drop has nothing left
/// to wait for.
pub struct AssignedConsumer<C: ConsumerContext + 'static>(BaseConsumer<C>);

impl<C: ConsumerContext + 'static> AssignedConsumer<C> {
    pub fn new(consumer: BaseConsumer<C>) -> Self {
        AssignedConsumer(consumer)
    }
}

impl<C: ConsumerContext + 'static> Deref for AssignedConsumer<C> {
    type Target = BaseConsumer<C>;

    fn deref(&self) -> &BaseConsumer<C> {
        &self.0
    }
}

impl<C: ConsumerContext + 'static> Drop for AssignedConsumer<C> {
    fn drop(&mut self) {
        // Nothing to close without a group (librdkafka refuses): the inner drop is quick then.
        if self.0.close_queue().is_ok() {
            while !self.0.closed() {
                // Serves the close (and any last log line); no message comes here (see `BatchQueue`).
                let _ = self.0.poll(Duration::from_millis(1));
            }
        }
    }
}

/// Assigns partition `partition` of `topic` to `consumer`, to be read from `offset` through the
/// returned queue. Reads the topic's metadata first: a client assigned a partition whose leader
/// it does not know yet retries the start-offset lookup only 500 ms later (librdkafka's fixed
/// retry), which delayed every partition's first fetch by ~450 ms. Best effort, waiting at most
/// `metadata_wait`: without the metadata the partition still starts, later.
pub fn assign_partition<C: ConsumerContext + 'static>(
    consumer: &Arc<AssignedConsumer<C>>,
    topic: &str,
    partition: i32,
    offset: Offset,
    metadata_wait: Duration,
) -> Result<BatchQueue<C>> {
    let _ = consumer.fetch_metadata(Some(topic), metadata_wait);
    // Before `assign`: every message of the partition goes to its own queue.
    let messages = BatchQueue::split(consumer, topic, partition)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, offset)?;
    consumer
        .assign(&assignment)
        .with_context(|| format!("{topic}/{partition}: cannot assign"))?;
    Ok(messages)
}

/// Most messages one `BatchQueue` takes from librdkafka at a time (8 KiB of pointers).
pub const BATCH: usize = 1024;

/// One partition's messages, split off its consumer's queue and taken in batches: one call into
/// librdkafka (one lock of the queue, no clock read) per batch instead of per message, and no
/// event object or `Arc` per message as with `BaseConsumer::poll`.
pub struct BatchQueue<C: ConsumerContext + 'static> {
    /// The partition's fetch queue (our reference to it, released in `drop`).
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// Messages taken from `queue` and owned by us until destroyed; `messages[next..]` have not
    /// been handed out by `take` yet.
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
    next: usize,
    /// Keeps the client, which owns the queue and the messages' memory, alive until `drop`.
    _consumer: Arc<AssignedConsumer<C>>,
}

/// One message of a `BatchQueue`.
pub enum Fetched<'a> {
    Record {
        offset: i64,
        payload: &'a [u8],
    },
    /// The partition's high-water mark was reached (`enable.partition.eof`).
    End,
    /// A fetch failed: the error and librdkafka's description.
    Error(String),
}

impl<C: ConsumerContext + 'static> BatchQueue<C> {
    /// Gives partition `partition` of `topic` a queue of its own. Call it before `assign`, so
    /// that no message of the partition is ever put on the consumer's queue.
    fn split(consumer: &Arc<AssignedConsumer<C>>, topic: &str, partition: i32) -> Result<Self> {
        let name = CString::new(topic).context("topic name with a NUL byte")?;
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is a live client (we hold `consumer`) and `name` a NUL-terminated
        // string that outlives the call; the result is a new reference we own, or null.
        let queue =
            unsafe { rdsys::rd_kafka_queue_get_partition(client, name.as_ptr(), partition) };
        let Some(queue) = NonNull::new(queue) else {
            bail!("{topic}/{partition}: librdkafka has no queue for this partition");
        };
        // SAFETY: `queue` is the valid queue obtained above; forwarding to null keeps the
        // partition's messages on it, and librdkafka's later fetch starts respect that choice.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Ok(BatchQueue {
            queue,
            messages: Vec::with_capacity(BATCH),
            next: 0,
            _consumer: Arc::clone(consumer),
        })
    }

    /// The next message, waiting up to `wait` for one if none is at hand.
    pub fn take(&mut self, wait: Duration) -> Option<Fetched<'_>> {
        if self.next == self.messages.len() && self.fetch(wait) == 0 {
            return None;
        }
        self.next += 1;
        self.prefetch_ahead();
        // SAFETY: an undestroyed message from librdkafka; `&mut self` for the borrow keeps
        // `fetch`, `discard` and `drop` (the only places that destroy messages) away from it.
        Some(unsafe { fetched(self.messages[self.next - 1]) })
    }

    /// The `i`th message after those handed out, without taking it, waiting up to `wait` for
    /// more; `None` if none came, or if `i` is beyond what one batch can hold.
    pub fn peek(&mut self, i: usize, wait: Duration) -> Option<Fetched<'_>> {
        if self.next + i >= self.messages.len() && i < BATCH {
            self.fetch(wait);
        }
        let message = *self.messages.get(self.next + i)?;
        // SAFETY: as in `take`.
        Some(unsafe { fetched(message) })
    }

    /// Asks the CPU for the messages a few places ahead: librdkafka's fetch thread wrote them,
    /// so they are not in this core's cache. The header eight ahead, the payload (whose address
    /// is in the header, cached by then) four ahead.
    #[inline]
    fn prefetch_ahead(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            if let Some(&header) = self.messages.get(self.next + 8) {
                // SAFETY: a prefetch never faults; the pointer is a live message's.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(header.cast::<i8>()) };
            }
            if let Some(&message) = self.messages.get(self.next + 4) {
                // SAFETY: an undestroyed message from librdkafka (as in `take`); reading its
                // payload pointer is a plain field read, and a prefetch never faults.
                unsafe {
                    let payload = (*message).payload.cast::<i8>().cast_const();
                    _mm_prefetch::<_MM_HINT_T0>(payload);
                    _mm_prefetch::<_MM_HINT_T0>(payload.wrapping_add(64));
                }
            }
        }
    }

    /// Messages that librdkafka or this queue hold and `take` has not handed out yet.
    pub fn queued(&self) -> usize {
        // SAFETY: `queue` is valid until `drop`.
        let waiting = unsafe { rdsys::rd_kafka_queue_length(self.queue.as_ptr()) };
        waiting + self.messages.len() - self.next
    }

    /// Messages taken from librdkafka that `take` has not handed out yet.
    pub fn pending(&self) -> usize {
        self.messages.len() - self.next
    }

    /// Destroys every message taken from librdkafka (none is borrowed: we have `&mut self`).
    pub fn discard(&mut self) {
        self.destroy_first(self.messages.len());
    }

    /// Destroys the first `count` messages taken from librdkafka.
    fn destroy_first(&mut self, count: usize) {
        for message in self.messages.drain(..count) {
            // SAFETY: each message was returned by librdkafka, is destroyed exactly once (it
            // leaves `messages` here), and no reference to it outlives the `&mut self` borrow.
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
        self.next = self.next.saturating_sub(count);
    }

    /// Destroys the messages handed out and appends what librdkafka has (up to `BATCH` in all),
    /// waiting up to `wait` for the first if it has none. Returns how many were appended.
    fn fetch(&mut self, wait: Duration) -> usize {
        self.destroy_first(self.next);
        let mut got = self.consume(Duration::ZERO, BATCH - self.messages.len());
        if got == 0 && !wait.is_zero() {
            // Returns as soon as one message is there: asked for more, librdkafka would wait
            // for all of them.
            got = self.consume(wait, 1);
            if got == 1 {
                got += self.consume(Duration::ZERO, BATCH - self.messages.len());
            }
        }
        got
    }

    /// Appends up to `most` messages, waiting up to `wait` until there are that many.
    fn consume(&mut self, wait: Duration, most: usize) -> usize {
        let most = most.min(self.messages.capacity() - self.messages.len());
        if most == 0 {
            return 0;
        }
        let timeout = wait.as_millis().try_into().unwrap_or(i32::MAX);
        let free = self.messages.spare_capacity_mut().as_mut_ptr().cast();
        // SAFETY: `queue` is valid; `free` has room for at least `most` message pointers.
        let got = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), timeout, free, most)
        };
        // A negative count (an invalid queue) is not possible for a queue from a live consumer.
        let got = usize::try_from(got).unwrap_or(0).min(most);
        // SAFETY: librdkafka wrote `got` valid message pointers into the spare capacity.
        unsafe { self.messages.set_len(self.messages.len() + got) };
        got
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchQueue<C> {
    fn drop(&mut self) {
        self.discard();
        // SAFETY: our own reference to the queue, released once; the client is still alive
        // (`_consumer` is dropped after this).
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// What a message from librdkafka holds.
///
/// SAFETY: `message` must be a valid, undestroyed message that outlives `'a`.
unsafe fn fetched<'a>(message: *const rdsys::rd_kafka_message_t) -> Fetched<'a> {
    let message = &*message;
    let payload = if message.payload.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(message.payload.cast::<u8>(), message.len)
    };
    match message.err {
        rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Fetched::Record {
            offset: message.offset,
            payload,
        },
        rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Fetched::End,
        // An error message's payload is librdkafka's description of it.
        err => Fetched::Error(format!(
            "{}: {}",
            KafkaError::MessageConsumption(RDKafkaErrorCode::from(err)),
            String::from_utf8_lossy(payload)
        )),
    }
}

/// Runs a future to completion on this thread (the admin API returns futures; we have no runtime).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Creates `topic` with `partitions` partitions unless it exists. Returns true if created.
pub fn ensure_topic(url: &KafkaUrl, partitions: i32, user: &[(String, String)]) -> Result<bool> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::types::RDKafkaErrorCode;
    // An existing topic needs no CreateTopics, which some brokers lack (`streamstats broker`).
    let metadata: BaseConsumer<Logger> = client_config(&url.brokers, &[], user)
        .create_with_context(Logger::new("admin/metadata"))
        .context("cannot create a Kafka client")?;
    let existing = metadata
        .fetch_metadata(Some(&url.topic), Duration::from_secs(30))
        .with_context(|| format!("cannot read metadata from {}", url.brokers))?;
    if existing
        .topics()
        .iter()
        .any(|t| t.name() == url.topic && t.error().is_none() && !t.partitions().is_empty())
    {
        return Ok(false);
    }
    let admin: AdminClient<Logger> = client_config(&url.brokers, &[], user)
        .create_with_context(Logger::new("admin"))
        .context("cannot create a Kafka admin client")?;
    let topic = NewTopic::new(&url.topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&topic], &options))
        .with_context(|| format!("cannot create topic {} on {}", url.topic, url.brokers))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => bail!("cannot create topic {}: {code}", url.topic),
        None => bail!("cannot create topic {}: no answer", url.topic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = KafkaUrl::parse("kafka://a:1,b:2/frames.v1").unwrap();
        assert_eq!(url.brokers, "a:1,b:2");
        assert_eq!(url.topic, "frames.v1");
        assert!(KafkaUrl::parse("kafka://a:1").is_err());
        assert!(KafkaUrl::parse("kafka://a/t").is_err());
        assert!(KafkaUrl::parse("kafka://a:1/t t").is_err());
        assert!(KafkaUrl::parse("file.jsonl").is_err());
    }

    #[test]
    fn ownership_covers_every_worker_evenly() {
        let peers = 4;
        let mut counts = vec![0; peers];
        for p in 0..8 {
            counts[owner("t", p, peers)] += 1;
        }
        assert_eq!(counts, vec![2; peers]);
        assert_eq!(owner("t", 3, 4), owner("t", 7, 4));
    }

    #[test]
    fn options_need_an_equals_sign() {
        let parsed = parse_options(&["security.protocol=SASL_SSL".into(), "a==b".into()]).unwrap();
        assert_eq!(parsed[1], ("a".into(), "=b".into()));
        assert!(parse_options(&["nope".into()]).is_err());
    }
}
