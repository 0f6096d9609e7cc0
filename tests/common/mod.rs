//! Helpers shared by the integration tests: run the binary, canonicalize JSONL rows, run the
//! independent Python reference, start two processes on free loopback ports.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_streamstats");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn dataflow(name: &str) -> String {
    repo()
        .join("dataflows")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

/// Runs `command` without stdin, panicking with its stderr on failure.
pub fn checked(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs the binary with `args`, panicking with its stderr on failure.
pub fn streamstats(args: &[&str]) -> Output {
    checked(Command::new(BIN).args(args))
}

/// Each line parsed and re-serialized with sorted keys, as a sorted set.
pub fn canonical_rows(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("row is JSON");
            serde_json::to_string(&v).unwrap()
        })
        .collect()
}

pub fn canonical_file(path: &Path) -> BTreeSet<String> {
    canonical_rows(&std::fs::read_to_string(path).expect("output file"))
}

/// Runs `tests/sessions_reference.py`; returns its rows and its statistics.
pub fn reference_sessions(
    input: &Path,
    gap_ms: u64,
    bound_ms: u64,
) -> (BTreeSet<String>, serde_json::Value) {
    let output = Command::new("python3")
        .arg(repo().join("tests/sessions_reference.py"))
        .arg(input)
        .args([
            "--gap-ms",
            &gap_ms.to_string(),
            "--bound-ms",
            &bound_ms.to_string(),
        ])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "reference failed: {stderr}");
    let stats = serde_json::from_str(stderr.lines().last().unwrap_or("{}")).expect("stats JSON");
    (
        canonical_rows(&String::from_utf8_lossy(&output.stdout)),
        stats,
    )
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `args` as two processes (`-n 2 -p 0/1 --hostfile F`) with `-w workers` each; `output`
/// must be a file path, and the rows of both per-process files are returned together.
pub fn run_two_processes(
    dir: &Path,
    args: &[&str],
    output: &Path,
    workers: usize,
) -> BTreeSet<String> {
    let hostfile = dir.join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            Command::new(BIN)
                .args(args)
                .args(["--output", output.to_str().unwrap()])
                .args(["-w", &workers.to_string(), "-n", "2", "-p", &p.to_string()])
                .arg("--hostfile")
                .arg(&hostfile)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("process starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stem = output.file_stem().unwrap().to_string_lossy().into_owned();
    let ext = output.extension().unwrap().to_string_lossy().into_owned();
    let mut rows = BTreeSet::new();
    for p in 0..2 {
        rows.extend(canonical_file(
            &output.with_file_name(format!("{stem}.p{p}.{ext}")),
        ));
    }
    rows
}
