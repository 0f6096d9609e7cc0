//! Command-line interface: `run` a dataflow, `generate` synthetic events, `replay` a file into
//! Kafka, and the dev-only `broker`.
//!
//! Contract: every option is validated before any worker starts; a bad value fails with a
//! message naming the option.

use crate::generate::{self, GenOptions};
use crate::pipeline::{self, Cluster, RunOptions};
use crate::sources::kafka::{KafkaInput, StartAt};
use crate::spec::Spec;
use crate::time::parse_duration_ms;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "streamstats",
    version,
    about = "Event-time stream analytics on timely dataflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a dataflow over a file, stdin, or (without --input) the built-in live generator.
    Run(RunArgs),
    /// Serve a line file as a server-sent event stream on 127.0.0.1 (ids = line numbers).
    ServeSse(ServeSseArgs),
    /// Write deterministic synthetic events (sps, page-views: JSONL; trades: CSV).
    Generate(GenerateArgs),
    /// Produce a JSONL file to a Kafka topic, one message per line.
    Replay(ReplayArgs),
    /// DEV ONLY: an in-memory Kafka-protocol broker for demos without installing Kafka.
    ///
    /// librdkafka's mock cluster (experimental, made for testing): prints its address
    /// (HOST:PORT) on stdout and serves until Ctrl-C; all data is lost at exit. Not for real
    /// data, benchmarks or tests that claim Kafka coverage.
    Broker(BrokerArgs),
}

#[derive(Parser)]
struct BrokerArgs {
    /// Create this topic at start (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Partitions of every --topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
}

#[derive(Parser)]
struct RunArgs {
    /// Dataflow file, e.g. dataflows/sps.toml.
    dataflow: PathBuf,
    /// Input: a JSONL or CSV file, FILE.gz, - for stdin, sse+http://HOST:PORT/PATH (server-sent
    /// events) or kafka://HOST:PORT[,HOST:PORT]/TOPIC. Without it: the built-in live generator.
    #[arg(long)]
    input: Option<String>,
    /// Result rows as JSONL: a file or - (stdout). With several processes each writes FILE.pN.EXT.
    #[arg(long, default_value = "-")]
    output: String,
    /// Dead-letter records (late, malformed, future) as JSONL: a file, - or stderr.
    #[arg(long, default_value = "stderr")]
    dead_letter: String,
    /// Overrides the dataflow's time.max_out_of_orderness, e.g. 5s.
    #[arg(long)]
    max_out_of_orderness: Option<String>,
    /// File partition size (e.g. 64MiB); fixes which records are late, whatever the worker count.
    #[arg(long, default_value = "64MiB")]
    chunk_size: String,
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    workers: usize,
    /// Number of processes.
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// This process's index, 0..n.
    #[arg(short = 'p', long, default_value_t = 0)]
    process: usize,
    /// File with one host:port per line, one line per process (as in timely).
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Live generator: events per second (all workers together).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Live generator: stop after this many events per worker.
    #[arg(long)]
    max_records: Option<u64>,
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// Options of a `kafka://` input or output.
#[derive(clap::Args)]
struct KafkaArgs {
    /// A librdkafka property for every Kafka client (SASL, TLS, tuning); repeatable.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    kafka_options: Vec<String>,
    /// Consumer group whose offsets are committed and read by --start committed
    /// (default: streamstats.DATAFLOW.TOPIC).
    #[arg(long)]
    kafka_group: Option<String>,
    /// Where to start reading: earliest, latest, committed, epoch ms, an RFC 3339 time, or
    /// -DURATION such as -730d (default: earliest with --until-end, committed otherwise).
    #[arg(long)]
    start: Option<String>,
    /// Stop at the high-water marks seen at start and close every window (a bounded replay).
    #[arg(long)]
    until_end: bool,
    /// Live Kafka: a partition with no new records for this long stops holding the watermark back.
    #[arg(long, default_value = "5s")]
    idle_timeout: String,
}

#[derive(Parser)]
struct ReplayArgs {
    /// JSONL file (FILE.gz, - for stdin) or sse+http://HOST:PORT/PATH (an event stream, until its end).
    file: String,
    /// kafka://HOST:PORT[,HOST:PORT]/TOPIC
    #[arg(long)]
    output: String,
    /// Messages per second.
    #[arg(long, conflicts_with = "speed")]
    rate: Option<f64>,
    /// Pace by event time at this many times real time (e.g. 1 = as it happened, 10 = 10x faster).
    #[arg(long)]
    speed: Option<f64>,
    /// Event-time field for --speed.
    #[arg(long, default_value = "time")]
    time_field: String,
    /// Unit of the event-time field: ms, s or rfc3339.
    #[arg(long, default_value = "ms")]
    time_unit: String,
    /// Message key field (same key, same partition); without it line i goes to partition i % N.
    #[arg(long)]
    key: Option<String>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
    /// A librdkafka property (SASL, TLS, tuning); repeatable.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE")]
    kafka_options: Vec<String>,
}

#[derive(Parser)]
struct ServeSseArgs {
    /// The file whose lines are sent as events (JSONL or CSV).
    file: PathBuf,
    /// TCP port on 127.0.0.1; 0 picks a free one (printed on stdout).
    #[arg(long)]
    port: u16,
    /// Events per second per connection; unpaced when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Share of events sent with a busted payload (chosen by line number and --seed).
    #[arg(long, default_value_t = 0.0)]
    malformed_fraction: f64,
    /// Testing: cut every connection after this many events, inside the next one.
    #[arg(long)]
    drop_after: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Parser)]
struct GenerateArgs {
    /// Kind of events: sps, frames, trades, page-views or sessions.
    kind: String,
    #[arg(long)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file or - for stdout.
    #[arg(long, default_value = "-")]
    out: String,
    /// Events per second of event time.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Event time of the first event, epoch ms.
    #[arg(long, default_value_t = 1_515_445_354_000)]
    start_ms: u64,
    /// Move each event back by up to this many ms (stay within the dataflow's bound to be counted).
    #[arg(long, default_value_t = 2000)]
    disorder_ms: u64,
    /// The dataflow's bound; late events are moved back by more than bound + disorder.
    #[arg(long, default_value = "5s")]
    bound: String,
    #[arg(long, default_value_t = 0.0)]
    late_fraction: f64,
    #[arg(long, default_value_t = 0.0)]
    malformed_fraction: f64,
    #[arg(long, default_value_t = 0.0)]
    bitflip_fraction: f64,
}

pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::ServeSse(args) => serve_sse(args),
        Command::Replay(args) => replay(args),
        Command::Broker(args) => {
            if args.partitions < 1 {
                bail!("--partitions: must be at least 1");
            }
            crate::broker::serve(&args.topic, args.partitions)
        }
        Command::Generate(args) => {
            for (name, value) in [
                ("--late-fraction", args.late_fraction),
                ("--malformed-fraction", args.malformed_fraction),
                ("--bitflip-fraction", args.bitflip_fraction),
            ] {
                if !(0.0..=1.0).contains(&value) {
                    bail!("{name}: must be between 0 and 1, got {value}");
                }
            }
            let options = GenOptions {
                seed: args.seed,
                rate: args.rate.max(1),
                start_ms: args.start_ms,
                disorder_ms: args.disorder_ms,
                bound_ms: parse_duration_ms(&args.bound).context("--bound")?,
                late_fraction: args.late_fraction,
                malformed_fraction: args.malformed_fraction,
                bitflip_fraction: args.bitflip_fraction,
            };
            generate::write_file(&args.kind, args.events, options, &args.out)
        }
    }
}

fn serve_sse(args: ServeSseArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.malformed_fraction) {
        bail!("--malformed-fraction: must be between 0 and 1");
    }
    if args.rate == Some(0) {
        bail!("--rate: must be at least 1");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let options = crate::serve_sse::ServeOptions {
        port: args.port,
        rate: args.rate,
        malformed_fraction: args.malformed_fraction,
        drop_after: args.drop_after,
        seed: args.seed,
    };
    crate::serve_sse::serve(text.lines().map(String::from).collect(), options)
}

fn run(args: RunArgs) -> Result<()> {
    let mut spec = Spec::load(&args.dataflow)?;
    if let Some(bound) = &args.max_out_of_orderness {
        spec.time.max_out_of_orderness_ms =
            parse_duration_ms(bound).context("--max-out-of-orderness")?;
    }
    if args.workers == 0 {
        bail!("-w/--workers: must be at least 1");
    }
    let cluster = cluster(&args)?;
    let kafka = kafka_input(&args, &spec)?;
    if let Some(input) = args.input.as_ref().filter(|_| kafka.is_none()) {
        if input.starts_with(crate::sources::sse::SCHEME) {
            crate::sources::sse::SseUrl::parse(input).context("--input")?;
        } else if input != "-" && !std::fs::metadata(input).is_ok_and(|m| !m.is_dir()) {
            // Files, and named pipes such as `--input <(zcat …)`.
            bail!("--input: {input} is not a readable file");
        }
    }
    if crate::kafka::is_kafka_url(&args.output) {
        crate::kafka::KafkaUrl::parse(&args.output).context("--output")?;
    }
    let options = RunOptions {
        input: args.input,
        output: args.output,
        dead_letter: args.dead_letter,
        chunk_size: parse_bytes(&args.chunk_size).context("--chunk-size")?,
        rate: args.rate,
        max_records: args.max_records,
        kafka,
    };
    pipeline::run(spec, options, cluster)
}

/// Validates the Kafka options; `Some` when the input is a `kafka://` URL.
fn kafka_input(args: &RunArgs, spec: &Spec) -> Result<Option<KafkaInput>> {
    let k = &args.kafka;
    let options = crate::kafka::parse_options(&k.kafka_options)?;
    crate::kafka::set_user_options(options.clone());
    let idle_timeout = parse_duration_ms(&k.idle_timeout).context("--idle-timeout")?;
    let Some(input) = args
        .input
        .as_deref()
        .filter(|i| crate::kafka::is_kafka_url(i))
    else {
        if k.until_end || k.start.is_some() || k.kafka_group.is_some() {
            bail!("--until-end, --start and --kafka-group need a kafka:// --input");
        }
        return Ok(None);
    };
    let url = crate::kafka::KafkaUrl::parse(input).context("--input")?;
    let start = match &k.start {
        Some(text) => StartAt::parse(text).context("--start")?,
        None if k.until_end => StartAt::Earliest,
        None => StartAt::Committed,
    };
    Ok(Some(KafkaInput {
        group: k
            .kafka_group
            .clone()
            .unwrap_or_else(|| format!("streamstats.{}.{}", spec.name, url.topic)),
        url,
        options,
        start,
        until_end: k.until_end,
        idle_timeout: std::time::Duration::from_millis(idle_timeout),
    }))
}

fn replay(args: ReplayArgs) -> Result<()> {
    for (name, value) in [("--rate", args.rate), ("--speed", args.speed)] {
        if value.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
            bail!("{name}: must be a positive number");
        }
    }
    if args.partitions.is_some_and(|n| n < 1) {
        bail!("--partitions: must be at least 1");
    }
    crate::replay::replay(crate::replay::ReplayOptions {
        file: args.file,
        output: args.output,
        rate: args.rate,
        speed: args.speed,
        time_field: args.time_field,
        time_unit: crate::time::TimeUnit::parse(&args.time_unit).context("--time-unit")?,
        key: args.key,
        partitions: args.partitions,
        options: crate::kafka::parse_options(&args.kafka_options)?,
    })
}

fn cluster(args: &RunArgs) -> Result<Cluster> {
    if args.processes == 0 {
        bail!("-n/--processes: must be at least 1");
    }
    if args.process >= args.processes {
        bail!(
            "-p/--process: {} is not below -n {}",
            args.process,
            args.processes
        );
    }
    let addresses = match (&args.hostfile, args.processes) {
        (None, 1) => Vec::new(),
        (None, _) => bail!("--hostfile: required with -n > 1"),
        (Some(path), n) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--hostfile: cannot read {}", path.display()))?;
            let hosts: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if hosts.len() < n {
                bail!(
                    "--hostfile: {} lists {} hosts, -n is {n}",
                    path.display(),
                    hosts.len()
                );
            }
            hosts.into_iter().take(n).collect()
        }
    };
    Ok(Cluster {
        workers: args.workers,
        processes: args.processes,
        process: args.process,
        addresses,
    })
}

/// Parses `4096`, `64KiB`, `64MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .with_context(|| format!("`{text}` is not a size"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        other => bail!("`{text}`: unknown size unit `{other}`"),
    };
    match value.checked_mul(factor) {
        Some(0) | None => bail!("`{text}` must be between 1 byte and 2^64"),
        Some(bytes) => Ok(bytes),
    }
}
