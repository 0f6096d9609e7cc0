//! The throughput ceiling for `scripts/kafka-bench.sh`: a plain librdkafka consumer (same crate,
//! same bundled librdkafka, same fetch settings as the streamstats source) that assigns every
//! partition of a topic, reads until each is at its high-water mark, and counts messages and bytes.
//! Like the source, it takes each partition's messages in batches from a queue of their own
//! (`streamstats::kafka::BatchQueue`, `rd_kafka_consume_batch_queue`), the fastest way
//! librdkafka offers; it does nothing with them but count.
//!
//! Usage: kafka_drain HOST:PORT TOPIC [THREADS]   (one consumer per partition, THREADS threads)

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::topic_partition_list::Offset;
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamstats::kafka::{assign_partition, AssignedConsumer, BatchQueue, Fetched};

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-drain")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "2048")
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

/// A consumer of its own reading partition `partition` from its beginning.
fn open(
    brokers: &str,
    topic: &str,
    partition: i32,
) -> (
    Arc<AssignedConsumer<DefaultConsumerContext>>,
    BatchQueue<DefaultConsumerContext>,
) {
    // Opened and closed like the job's consumers (`assign_partition`, `AssignedConsumer`).
    let consumer = Arc::new(AssignedConsumer::new(consumer(brokers)));
    let queue = assign_partition(
        &consumer,
        topic,
        partition,
        Offset::Beginning,
        Duration::from_secs(2),
    )
    .expect("assign");
    (consumer, queue)
}

/// Reads `partitions` to their ends, in turn; returns (messages, bytes).
fn drain(brokers: &str, topic: &str, partitions: &[i32]) -> (u64, u64) {
    let mut open: Vec<_> = partitions
        .iter()
        .map(|&p| open(brokers, topic, p))
        .collect();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while !open.is_empty() {
        let mut got = 0;
        open.retain_mut(|(consumer, queue)| {
            // Serves the consumer's own queue (log lines, errors), as every consumer must.
            if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
                panic!("{e}");
            }
            for _ in 0..10_000 {
                match queue.take(Duration::ZERO) {
                    Some(Fetched::Record { payload, .. }) => {
                        got += 1;
                        messages += 1;
                        bytes += payload.len() as u64;
                    }
                    Some(Fetched::End) => return false,
                    Some(Fetched::Error(e)) => panic!("{e}"),
                    None => break,
                }
            }
            true
        });
        if got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    (messages, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic) = (args[1].clone(), args[2].clone());
    let threads: usize = args.get(3).map_or(1, |t| t.parse().expect("THREADS"));
    let metadata = AssignedConsumer::new(consumer(&brokers))
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    let ids: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<i32> = ids
                .iter()
                .copied()
                .filter(|p| *p as usize % threads == t)
                .collect();
            let (brokers, topic) = (brokers.clone(), topic.clone());
            std::thread::spawn(move || drain(&brokers, &topic, &mine))
        })
        .collect();
    let (mut messages, mut bytes) = (0, 0);
    for h in handles {
        let (m, b) = h.join().unwrap();
        messages += m;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{messages} messages, {:.1} MB in {secs:.2} s: {:.0} messages/s",
        bytes as f64 / 1e6,
        messages as f64 / secs
    );
}
