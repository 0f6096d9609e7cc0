//! Assembles and runs the timely dataflow for one job.
//!
//! Contract: `run` starts `workers` threads in this process (and joins the other processes of a
//! cluster), builds source -> prepare -> exchange -> window -> output on every worker, waits for
//! the dataflow to complete (bounded input) or runs until stopped (live input), then flushes the
//! outputs and prints the summary on stderr.

use crate::generate::{self, GenOptions, Generator};
use crate::metrics::Metrics;
use crate::operators::prepare::{Combiner, Preparer};
use crate::operators::session::{session_aggregate, SessionCombiner};
use crate::operators::window::{window_aggregate, PaneCombiner};
use crate::sinks::dead_letter::DeadLetters;
use crate::sinks::{open_sink, LineWriter};
use crate::sources::kafka::{CommitGate, KafkaInput};
use crate::sources::{
    self, file, generator::LivePartition, sse, Partition, SharedInput, SharedPartitions,
};
use crate::spec::Spec;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Instant;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Operator, Probe};
use timely::dataflow::ProbeHandle;
use timely::CommunicationConfig;

/// Where the workers run.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Worker threads per process.
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    /// `host:port` of every process (empty for a single process).
    pub addresses: Vec<String>,
}

/// Input and output of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub input: Option<String>,
    pub output: String,
    pub dead_letter: String,
    pub chunk_size: u64,
    pub rate: u64,
    pub max_records: Option<u64>,
    /// Set when `input` is a `kafka://` URL.
    pub kafka: Option<KafkaInput>,
}

pub fn run(mut spec: Spec, options: RunOptions, cluster: Cluster) -> Result<()> {
    read_csv_header(&mut spec, options.input.as_deref())?;
    crate::extract::Extractor::for_spec(&spec)?; // fail at start-up, not in a worker
    let spec = Arc::new(spec);
    let metrics = Metrics::new(cluster.workers);
    let output = open_sink(&options.output, &spec, cluster.process, cluster.processes)?;
    let dead_letter = LineWriter::open(&options.dead_letter, cluster.process, cluster.processes)?;
    if options.input.is_none() {
        generate::shape_for(&spec.name)?; // fail at start-up, not in a worker
    }
    let (stop_reporter, stop) = std::sync::mpsc::channel();
    let reporter = metrics.spawn_reporter(stop);
    let started = Instant::now();

    let communication = if cluster.processes > 1 {
        CommunicationConfig::Cluster {
            threads: cluster.workers,
            process: cluster.process,
            addresses: cluster.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    } else {
        CommunicationConfig::Process(cluster.workers)
    };
    let config = timely::Config {
        communication,
        worker: Default::default(),
    };

    // A plain file's chunks of this process, claimed by its workers as each finishes one.
    let shared = match (&options.kafka, options.input.as_deref()) {
        (None, Some(path)) if !path.starts_with(sse::SCHEME) => {
            match file::split(path, options.chunk_size, cluster.process, cluster.processes)? {
                file::Split::Chunks(chunks) => Some(Arc::new(SharedPartitions::new(chunks))),
                file::Split::Stream => None,
            }
        }
        _ => None,
    };
    let (worker_metrics, worker_output) = (Arc::clone(&metrics), Arc::clone(&output));
    let guards = timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let local = index % cluster.workers;
        // Frontier after the output operator: rows at times it has passed were handed to the sink.
        let written = ProbeHandle::new();
        let gate = CommitGate {
            probe: written.clone(),
            horizon: spec
                .time
                .max_out_of_orderness_ms
                .saturating_add(window_extent(&spec)),
            sink: Arc::clone(&worker_output),
        };
        let (partitions, discovery) = match &options.kafka {
            Some(kafka) => sources::kafka::partitions(kafka, index, peers, Some(gate))
                .unwrap_or_else(|e| crate::fatal(&format!("{e:#}"))),
            None if shared.is_some() => (Vec::new(), None),
            None => (partitions_for(&spec, &options, index, peers), None),
        };
        let shared = shared.as_ref().map(|partitions| SharedInput {
            partitions: Arc::clone(partitions),
            workers: cluster.workers,
        });
        let dead = DeadLetters::new(dead_letter.clone(), Arc::clone(&worker_metrics));
        let (spec, metrics, output) = (
            Arc::clone(&spec),
            Arc::clone(&worker_metrics),
            Arc::clone(&worker_output),
        );
        worker.dataflow::<u64, _, _>(move |scope| {
            let input = SourceInput {
                partitions,
                shared,
                discovery,
                dead,
                metrics: Arc::clone(&metrics),
                local,
            };
            let rows = if spec.session_gap_ms().is_some() {
                let combiner = SessionCombiner::new(&spec);
                session_aggregate(input.build(scope, &spec, combiner), Arc::clone(&spec))
            } else {
                let combiner = PaneCombiner::new(&spec, peers);
                window_aggregate(input.build(scope, &spec, combiner), Arc::clone(&spec))
            };
            rows.unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Pipeline,
                "Output",
                move |_capability, _info| {
                    move |input, _output| {
                        let mut batches = Vec::new();
                        input.for_each(|_time, data| batches.append(data));
                        if let Err(e) = output.write_rows(&batches) {
                            crate::fatal(&format!("cannot write results: {e:#}"));
                        }
                        let rows = batches.iter().map(|b| b.len() as u64).sum();
                        Metrics::add(&metrics.rows, rows);
                    }
                },
            )
            .probe_with(&written);
        });
    })
    .map_err(|e| anyhow!("cannot start workers: {e}"))?;
    for result in guards.join() {
        result.map_err(|e| anyhow!("worker failed: {e}"))?;
    }
    output.flush()?;
    drop(stop_reporter);
    let _ = reporter.join();
    eprintln!("{}", metrics.summary(started.elapsed()));
    Ok(())
}

/// What a worker's source operator reads from and reports to.
struct SourceInput {
    partitions: Vec<Box<dyn Partition>>,
    shared: Option<SharedInput>,
    discovery: Option<Box<dyn sources::Discovery>>,
    dead: DeadLetters,
    metrics: Arc<Metrics>,
    /// This worker's index within its process.
    local: usize,
}

impl SourceInput {
    /// The source operator, pre-aggregating with `combiner`.
    fn build<'scope, C: Combiner>(
        self,
        scope: timely::dataflow::Scope<'scope, u64>,
        spec: &Arc<Spec>,
        combiner: C,
    ) -> timely::dataflow::Stream<'scope, u64, Vec<C::Batch>> {
        let preparer = Preparer::new(
            Arc::clone(spec),
            combiner,
            self.dead,
            Arc::clone(&self.metrics),
        );
        sources::partitioned_source(
            scope,
            self.partitions,
            self.shared,
            self.discovery,
            preparer,
            self.metrics,
            self.local,
        )
    }
}

/// A CSV dataflow with `header = true` and no declared columns takes them from the input's first
/// line (a plain file: stdin and streams cannot be read twice).
fn read_csv_header(spec: &mut Spec, input: Option<&str>) -> Result<()> {
    use std::io::BufRead;
    let crate::spec::InputFormat::Csv { columns, .. } = &mut spec.input else {
        return Ok(());
    };
    if !columns.is_empty() {
        return Ok(());
    }
    let path = input
        .filter(|p| *p != "-" && std::path::Path::new(p).is_file())
        .ok_or_else(|| anyhow!("input.columns: without declared columns the header is read from --input, which must be a file"))?;
    let mut first = String::new();
    std::io::BufReader::new(std::fs::File::open(path)?).read_line(&mut first)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(first.as_bytes());
    let header = reader
        .records()
        .next()
        .ok_or_else(|| anyhow!("--input: {path} is empty, it has no CSV header row"))??;
    *columns = header.iter().map(String::from).collect();
    Ok(())
}

/// How far after an event time the last window containing it can end.
fn window_extent(spec: &Spec) -> u64 {
    spec.windows
        .iter()
        .map(|w| w.kind.max_extent_ms())
        .max()
        .unwrap_or(0)
}

/// The partitions worker `index` of `peers` reads.
fn partitions_for(
    spec: &Spec,
    options: &RunOptions,
    index: usize,
    peers: usize,
) -> Vec<Box<dyn Partition>> {
    match &options.input {
        // One live stream has one order: worker 0 reads it.
        Some(url) if url.starts_with(sse::SCHEME) => match index {
            0 => vec![Box::new(
                sse::SsePartition::new(url).unwrap_or_else(|e| crate::fatal(&format!("{e:#}"))),
            )],
            _ => Vec::new(),
        },
        // A stream (stdin, gzip, a pipe): a plain file's chunks are shared (see `run`).
        Some(path) => match index {
            0 => vec![file::stream(path).unwrap_or_else(|e| crate::fatal(&format!("{e:#}")))],
            _ => Vec::new(),
        },
        None => {
            let shape =
                generate::shape_for(&spec.name).unwrap_or_else(|e| crate::fatal(&format!("{e:#}")));
            let gen_options = GenOptions {
                seed: index as u64 + 1,
                // This worker's share: stateful shapes (sessions) size their population by it.
                rate: (options.rate / peers as u64).max(1),
                start_ms: 0,
                disorder_ms: spec.time.max_out_of_orderness_ms / 2,
                bound_ms: spec.time.max_out_of_orderness_ms,
                late_fraction: 0.002,
                malformed_fraction: 0.002,
                bitflip_fraction: 0.0005,
            };
            let per_worker_rate = options.rate.max(1) as f64 / peers as f64;
            vec![Box::new(LivePartition::new(
                index,
                Generator::new(shape, gen_options),
                per_worker_rate,
                options.max_records,
            ))]
        }
    }
}
