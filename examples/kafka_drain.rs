//! The throughput ceiling for `scripts/kafka-bench.sh`: a plain librdkafka consumer (same crate,
//! same bundled librdkafka, same fetch settings as the streamstats source) that assigns every
//! partition of a topic, reads until each is at its high-water mark, and counts messages and bytes.
//!
//! Usage: kafka_drain HOST:PORT TOPIC [THREADS]   (one consumer per partition, THREADS threads)

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

fn consumer(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-drain")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic) = (args[1].clone(), args[2].clone());
    let threads: usize = args.get(3).map_or(1, |t| t.parse().expect("THREADS"));
    let metadata = consumer(&brokers)
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
            std::thread::spawn(move || {
                let consumers: Vec<BaseConsumer> = mine
                    .iter()
                    .map(|&p| {
                        let c = consumer(&brokers);
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition_offset(&topic, p, Offset::Beginning)
                            .unwrap();
                        c.assign(&tpl).unwrap();
                        c
                    })
                    .collect();
                let mut done = vec![false; consumers.len()];
                let (mut messages, mut bytes) = (0u64, 0u64);
                while done.iter().any(|d| !d) {
                    let mut got = 0;
                    for (i, c) in consumers.iter().enumerate() {
                        if done[i] {
                            continue;
                        }
                        for _ in 0..10_000 {
                            match c.poll(Duration::ZERO) {
                                Some(Ok(m)) => {
                                    got += 1;
                                    messages += 1;
                                    bytes += m.payload().map_or(0, |p| p.len()) as u64;
                                }
                                Some(Err(KafkaError::PartitionEOF(_))) => {
                                    done[i] = true;
                                    break;
                                }
                                Some(Err(e)) => panic!("{e}"),
                                None => break,
                            }
                        }
                    }
                    if got == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                (messages, bytes)
            })
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
