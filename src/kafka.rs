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

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
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
}

impl Logger {
    pub fn new(name: impl Into<String>) -> Self {
        Logger {
            name: name.into(),
            state: Mutex::new((None, 0)),
            trouble: AtomicBool::new(false),
        }
    }

    /// True after a warning or error, until `clear_trouble` (a successful fetch).
    pub fn troubled(&self) -> bool {
        self.trouble.load(Ordering::Relaxed)
    }

    pub fn clear_trouble(&self) {
        self.trouble.store(false, Ordering::Relaxed);
    }

    /// Prints `message` unless a line was printed less than a second ago.
    pub fn warn(&self, message: &str) {
        self.trouble.store(true, Ordering::Relaxed);
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
        use rdkafka::types::RDKafkaErrorCode;
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            self.warn(&format!("{error}: {reason}"));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Logger {}

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
