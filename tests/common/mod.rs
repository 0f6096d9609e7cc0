//! Shared helpers for the integration tests: run the binary, run the Python references, and
//! compare outputs as parsed JSON (so formatting never matters, values always do).
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streamstats"))
}

/// Runs the binary and insists on success, showing stderr otherwise.
pub fn streamstats(args: &[&str]) -> Output {
    let output = binary()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    assert!(
        output.status.success(),
        "streamstats {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a Python reference script from tests/reference.
pub fn python(script: &str, args: &[&str]) {
    let output = Command::new("python3")
        .arg(repo().join("tests/reference").join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// JSON-lines rows, canonicalised (sorted keys) and sorted.
pub fn rows(paths: &[PathBuf]) -> Vec<String> {
    let mut rows: Vec<String> = paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(&l)
                .unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))
                .to_string()
        })
        .collect();
    rows.sort();
    rows
}

/// Dead letters written by the engine as sorted `reason partition offset` lines.
pub fn dead_letters(paths: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap();
            format!(
                "{} {} {}",
                v["reason"].as_str().unwrap(),
                v["partition"].as_str().unwrap(),
                v["offset"]
            )
        })
        .collect();
    out.sort();
    out
}

/// Lines of a text file, sorted.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// Asserts that no two rows share a key made of the given fields.
pub fn assert_unique(rows: &[String], fields: &[&str]) {
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            fields
                .iter()
                .map(|f| v[*f].to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        total,
        "some (window, key) was emitted more than once"
    );
}

/// Free TCP ports on 127.0.0.1 for a timely cluster.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Runs the same job as `processes` processes of `workers` workers on 127.0.0.1; returns the
/// per-process output and dead-letter files (`out.pN.jsonl`, `dead.pN.jsonl`).
pub fn run_cluster(
    dir: &Path,
    processes: usize,
    workers: usize,
    args: &[&str],
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let hostfile = dir.join("hosts.txt");
    let hosts: Vec<String> = free_ports(processes)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    std::fs::write(&hostfile, hosts.join("\n")).unwrap();
    let (out, dead) = (
        dir.join("cluster-out.jsonl"),
        dir.join("cluster-dead.jsonl"),
    );
    let children: Vec<_> = (0..processes)
        .map(|p| {
            binary()
                .args(args)
                .args([
                    "--output",
                    out.to_str().unwrap(),
                    "--dead-letter",
                    dead.to_str().unwrap(),
                ])
                .args([
                    "-w",
                    &workers.to_string(),
                    "-n",
                    &processes.to_string(),
                    "-p",
                    &p.to_string(),
                ])
                .args(["--hostfile", hostfile.to_str().unwrap()])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "cluster process failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let name = |stem: &str, p: usize| dir.join(format!("{stem}.p{p}.jsonl"));
    (
        (0..processes).map(|p| name("cluster-out", p)).collect(),
        (0..processes).map(|p| name("cluster-dead", p)).collect(),
    )
}
