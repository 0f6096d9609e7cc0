//! Kafka outputs: result rows to a topic, and a line-per-message writer (dead letters).
//!
//! Contract:
//! - `KafkaSink`: one message per result row, key = the row's key (window + group key, so a
//!   compacted topic or a keyed consumer keeps one value per window and key), value = its JSON. The producer is idempotent (`enable.idempotence`: no duplicates or
//!   reordering from internal retries). `flush` waits for every message to be acknowledged or
//!   fails after `FLUSH_TIMEOUT`; the first delivery error is kept and fails the next
//!   `write_rows`/`flush` with the broker's reason: nothing is lost silently.
//! - `KafkaLines`: an `io::Write` that produces each complete line as one message (no key), used
//!   for `--dead-letter kafka://…`; same delivery guarantees.

use super::{RowBatch, RowSink};
use crate::kafka::{client_config, KafkaUrl, Logger};
use anyhow::{anyhow, bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::Mutex;
use std::time::Duration;

/// How long `flush` waits for outstanding messages before failing.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Producer context: logs like every client, and keeps the first delivery error.
pub struct Delivery {
    logger: Logger,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Delivery {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.logger.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.logger.error(error, reason);
    }
}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut first = self.first_error.lock().expect("delivery lock");
            first.get_or_insert_with(|| error.to_string());
        }
    }
}

/// A thread-safe, idempotent producer to one topic.
pub struct TopicProducer {
    producer: ThreadedProducer<Delivery>,
    url: KafkaUrl,
}

impl TopicProducer {
    pub fn open(target: &str, user: &[(String, String)]) -> Result<Self> {
        Self::open_with(target, user, &[])
    }

    /// Like `open`, with `extra` settings between our defaults and the user's options.
    pub fn open_with(
        target: &str,
        user: &[(String, String)],
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let url = KafkaUrl::parse(target)?;
        let mut defaults = vec![
            // No duplicates or reordering from the producer's own retries.
            ("enable.idempotence", "true"),
            // Batch for up to 20 ms: throughput without delaying live results noticeably.
            ("linger.ms", "20"),
            ("compression.type", "none"),
            // Keep retrying a failing broker for 2 minutes before reporting a delivery error.
            ("delivery.timeout.ms", "120000"),
            ("queue.buffering.max.kbytes", "262144"),
        ];
        defaults.extend_from_slice(extra);
        let producer = client_config(&url.brokers, &defaults, user)
            .create_with_context(Delivery {
                logger: Logger::new(format!("{}/producer", url.topic)),
                first_error: Mutex::new(None),
            })
            .with_context(|| format!("cannot create a Kafka producer for {target}"))?;
        Ok(TopicProducer { producer, url })
    }

    fn check(&self) -> Result<()> {
        match self
            .producer
            .context()
            .first_error
            .lock()
            .expect("delivery lock")
            .as_ref()
        {
            Some(e) => bail!(
                "delivery to kafka://{}/{} failed: {e}",
                self.url.brokers,
                self.url.topic
            ),
            None => Ok(()),
        }
    }

    /// Queues one message, waiting while librdkafka's queue is full.
    pub fn send(&self, key: Option<&str>, value: &[u8]) -> Result<()> {
        self.send_to(None, key, value)
    }

    /// Queues one message to `partition` (or where the partitioner puts it).
    pub fn send_to(&self, partition: Option<i32>, key: Option<&str>, value: &[u8]) -> Result<()> {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.url.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.check()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("cannot produce to {}: {e}", self.url.topic),
            }
        }
    }

    /// Waits until every queued message is acknowledged; fails loudly otherwise.
    pub fn flush(&self) -> Result<()> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| {
            anyhow!(
                "kafka://{}/{}: {} messages not acknowledged after {} s: {e}",
                self.url.brokers,
                self.url.topic,
                self.producer.in_flight_count(),
                FLUSH_TIMEOUT.as_secs()
            )
        })?;
        self.check()
    }
}

/// Result rows to a topic.
pub struct KafkaSink(TopicProducer);

impl KafkaSink {
    pub fn open(target: &str, user: &[(String, String)]) -> Result<Self> {
        Ok(KafkaSink(TopicProducer::open(target, user)?))
    }
}

impl RowSink for KafkaSink {
    fn write_rows(&self, batches: &[RowBatch]) -> Result<()> {
        let mut key = String::new();
        for row in batches.iter().flat_map(RowBatch::rows) {
            key.clear();
            row.write_key(&mut key);
            self.0.send(Some(&key), row.json.as_bytes())?;
        }
        self.0.check()
    }

    fn flush(&self) -> Result<()> {
        self.0.flush()
    }
}

/// Each complete line written becomes one message.
pub struct KafkaLines {
    producer: TopicProducer,
    partial: Vec<u8>,
}

impl KafkaLines {
    pub fn open(target: &str, user: &[(String, String)]) -> Result<Self> {
        Ok(KafkaLines {
            producer: TopicProducer::open(target, user)?,
            partial: Vec::new(),
        })
    }
}

impl std::io::Write for KafkaLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = if self.partial.is_empty() {
                &rest[..i]
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                &self.partial[..]
            };
            self.producer
                .send(None, line)
                .map_err(std::io::Error::other)?;
            self.partial.clear();
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.producer.flush().map_err(std::io::Error::other)
    }
}
