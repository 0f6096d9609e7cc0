//! `streamstats replay`: produce a JSONL file to a Kafka topic, one message per line.
//!
//! Contract:
//! - Every non-blank line becomes one message, in file order, value = the line (no newline).
//! - Partitioning: with `key`, the message key is that field's value (JSON scalar as text) and
//!   librdkafka's Java-compatible `murmur2_random` partitioner places it, so a key always lands
//!   in the same partition; without `key`, line `i` (0-based, blank lines skipped) goes to
//!   partition `i % partitions` — deterministic, so fixtures replay identically.
//! - Pacing: `rate` messages per second, or `speed`× event time (a record is sent when
//!   `(ts - first_ts) / speed` has elapsed; lines without a valid time go out at once); neither:
//!   as fast as the broker takes them.
//! - `partitions`: the topic is created with that many partitions if it does not exist.
//! - Progress on stderr every 5 s; at the end every message is acknowledged (or the command
//!   fails), and the count is printed.

use crate::extract::JsonExtractor;
use crate::kafka::{client_config, ensure_topic, KafkaUrl, Logger};
use crate::time::TimeUnit;
use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::io::BufRead;
use std::time::{Duration, Instant};

pub struct ReplayOptions {
    pub file: String,
    pub output: String,
    pub rate: Option<f64>,
    pub speed: Option<f64>,
    pub time_field: String,
    pub time_unit: TimeUnit,
    pub key: Option<String>,
    pub partitions: Option<i32>,
    pub options: Vec<(String, String)>,
}

pub fn replay(o: ReplayOptions) -> Result<()> {
    let url = KafkaUrl::parse(&o.output).context("--output")?;
    if let Some(n) = o.partitions {
        if ensure_topic(&url, n, &o.options)? {
            eprintln!(
                "streamstats: created topic {} with {n} partitions",
                url.topic
            );
        }
    }
    let partitions = partition_count(&url, &o.options)?;
    let producer = crate::sinks::kafka::TopicProducer::open_with(
        &o.output,
        &o.options,
        // Keys go where the Java client would put them.
        &[("partitioner", "murmur2_random")],
    )?;
    let lines = input_lines(&o.file)?;
    let mut fields = vec![o.time_field.clone()];
    fields.extend(o.key.clone());
    let extractor = JsonExtractor::new(fields);
    let started = Instant::now();
    let mut last_report = started;
    let mut first_ts: Option<u64> = None;
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut key = String::new();
    for line in lines {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut values = crate::extract::Fields::new();
        let parsed = extractor.extract(&line, &mut values).is_ok();
        // Pacing.
        let due = if let Some(rate) = o.rate {
            Some(Duration::from_secs_f64(sent as f64 / rate))
        } else if let (Some(speed), true) = (o.speed, parsed) {
            values[0]
                .as_ref()
                .and_then(|v| o.time_unit.to_millis(v).ok())
                .map(|ts| {
                    let first = *first_ts.get_or_insert(ts);
                    Duration::from_secs_f64(ts.saturating_sub(first) as f64 / 1000.0 / speed)
                })
        } else {
            None
        };
        if let Some(due) = due {
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        key.clear();
        let key = match (&o.key, parsed) {
            (Some(_), true) => values[1].as_ref().map(|v| {
                key.push_str(&v.as_text());
                key.as_str()
            }),
            _ => None,
        };
        let partition = if o.key.is_some() {
            None
        } else {
            Some((sent % partitions as u64) as i32)
        };
        producer.send_to(partition, key, &line)?;
        sent += 1;
        bytes += line.len() as u64;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "streamstats replay: {sent} messages ({:.0}/s, {:.1} MB/s)",
                sent as f64 / secs,
                bytes as f64 / secs / 1e6
            );
        }
    }
    producer.flush()?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "streamstats replay: {sent} messages to {} ({partitions} partitions) in {secs:.1} s ({:.0}/s)",
        url.topic,
        sent as f64 / secs
    );
    Ok(())
}

/// Number of partitions of the topic (it must exist).
/// The records to produce: lines of a file (plain or `.gz`), of stdin (`-`), or the payloads of
/// a server-sent event stream (`sse+http://…`, until its `end` event).
fn input_lines(input: &str) -> Result<Box<dyn Iterator<Item = Result<Vec<u8>>>>> {
    if input.starts_with(crate::sources::sse::SCHEME) {
        let url = crate::sources::sse::SseUrl::parse(input).context("replay input")?;
        let mut stream = crate::sources::sse::SseStream::new(url);
        return Ok(Box::new(std::iter::from_fn(move || {
            stream.next_event().map(|event| Ok(event.data.into_bytes()))
        })));
    }
    let reader: Box<dyn BufRead> = match input {
        "-" => Box::new(std::io::stdin().lock()),
        path => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
            if path.ends_with(".gz") {
                Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
                    file,
                )))
            } else {
                Box::new(std::io::BufReader::with_capacity(1 << 20, file))
            }
        }
    };
    Ok(Box::new(
        reader
            .split(b'\n')
            .map(|line| line.context("reading the input")),
    ))
}

fn partition_count(url: &KafkaUrl, options: &[(String, String)]) -> Result<i32> {
    let consumer: BaseConsumer<Logger> = client_config(&url.brokers, &[], options)
        .create_with_context(Logger::new("replay/metadata"))?;
    let metadata = consumer
        .fetch_metadata(Some(&url.topic), Duration::from_secs(30))
        .with_context(|| format!("cannot read metadata from {}", url.brokers))?;
    match metadata.topics().iter().find(|t| t.name() == url.topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        _ => bail!(
            "topic {} does not exist on {} (use --partitions N to create it)",
            url.topic,
            url.brokers
        ),
    }
}
