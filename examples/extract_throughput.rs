//! Parse-only throughput of the root-level field extractors over a JSONL file: the scanner the
//! engine uses (`JsonExtractor::extract`) and the serde_json reference (`extract_with_serde_json`).
//!
//! Usage: `cargo run --release --example extract_throughput -- [--scanner-only | --kernels] FILE
//! [FIELD ...]` (fields default to `ts uid`). Reads the whole file into memory first, so only
//! parsing is timed; prints one line per extractor with lines/s, MB/s and time per line, measured
//! in this thread's CPU time (Linux `/proc/thread-self/schedstat`) so that other load on the
//! machine does not distort it. `--scanner-only` skips serde_json (for profiling); `--kernels`
//! times the scanner with each byte-classification kernel the CPU has instead.

use std::sync::OnceLock;
use std::time::Instant;
use streamstats::extract::{Fields, JsonExtractor, Kernel};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let scanner_only = args.next_if(|a| a == "--scanner-only").is_some();
    let kernels = args.next_if(|a| a == "--kernels").is_some();
    let path = args
        .next()
        .expect("usage: extract_throughput [--scanner-only | --kernels] FILE [FIELD ...]");
    let mut fields: Vec<String> = args.collect();
    if fields.is_empty() {
        fields = vec!["ts".into(), "uid".into()];
    }
    let data = std::fs::read(&path).expect("cannot read the input file");
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    if kernels {
        for kernel in Kernel::available() {
            let extractor = JsonExtractor::with_kernel(fields.clone(), kernel);
            let name = format!("kernel {kernel:?}");
            report(&name, &lines, data.len(), |line, out| {
                extractor.extract(line, out)
            });
        }
        return;
    }
    let extractor = JsonExtractor::new(fields);
    report("scanner", &lines, data.len(), |line, out| {
        extractor.extract(line, out)
    });
    if !scanner_only {
        report("serde_json", &lines, data.len(), |line, out| {
            extractor.extract_with_serde_json(line, out)
        });
    }
}

fn report<'a>(
    name: &str,
    lines: &[&'a [u8]],
    bytes: usize,
    mut extract: impl FnMut(&'a [u8], &mut Fields<'a>) -> Result<(), String>,
) {
    let mut out = Fields::new();
    let (mut ok, mut found) = (0u64, 0u64);
    let started = cpu_seconds();
    for line in lines {
        if extract(line, &mut out).is_ok() {
            ok += 1;
            found += out.iter().filter(|v| v.is_some()).count() as u64;
        }
    }
    let seconds = cpu_seconds() - started;
    println!(
        "{name:<28} {:>10.0} lines/s {:>8.1} MB/s {:>7.0} ns/line  ({ok} parsed, {found} fields found)",
        lines.len() as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        seconds * 1e9 / lines.len() as f64,
    );
}

/// CPU time of this thread in seconds; wall-clock time where the kernel does not say.
fn cpu_seconds() -> f64 {
    static WALL: OnceLock<Instant> = OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || WALL.get_or_init(Instant::now).elapsed().as_secs_f64(),
            |ns| ns / 1e9,
        )
}
