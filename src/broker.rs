//! `streamstats broker` — DEV ONLY: an in-process Kafka-protocol broker for trying the Kafka input
//! and outputs without installing anything. It is librdkafka's mock cluster (`rdkafka::mocking`),
//! which librdkafka itself documents as experimental and meant for testing.
//!
//! Contract:
//! - Not a Kafka broker: everything is kept in memory and lost at exit, there is no retention,
//!   and it speaks only a subset of the protocol (enough for `replay`, `run` and the Kafka sinks;
//!   no CreateTopics, so topics come from `--topic`, see `replay --partitions` for existing topics).
//! - The first line on stdout is the bootstrap address `HOST:PORT` (a free port on 127.0.0.1,
//!   chosen by librdkafka); it then serves until the process is interrupted (Ctrl-C).
//! - The Kafka tests run against a real broker (`scripts/kafka.sh`); this one is tested only as
//!   what it is, a demo broker (`tests/broker.rs`).

use anyhow::{Context, Result};
use rdkafka::mocking::MockCluster;
use std::io::Write;

/// Starts the mock cluster, creates `topics` with `partitions` partitions each, prints the
/// address and serves until the process is interrupted.
pub fn serve(topics: &[String], partitions: i32) -> Result<()> {
    let cluster = MockCluster::new(1).context("cannot start librdkafka's mock cluster")?;
    for topic in topics {
        crate::kafka::KafkaUrl::parse(&format!("kafka://127.0.0.1:1/{topic}"))
            .context("--topic")?;
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    let address = cluster.bootstrap_servers();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{address}")?;
    stdout.flush()?;
    eprintln!(
        "streamstats broker: DEV ONLY, in memory, lost at exit: kafka://{address}/TOPIC \
         ({} topic(s) of {partitions} partition(s) created); Ctrl-C stops it",
        topics.len()
    );
    loop {
        // The mock cluster serves on librdkafka's own threads; this one only keeps it alive.
        std::thread::park();
    }
}
