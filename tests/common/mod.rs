//! Shared helpers for the integration tests: run the binary, run the Python references, and
//! compare outputs as parsed JSON (so formatting never matters, values always do).
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub const BIN: &str = env!("CARGO_BIN_EXE_streamstats");

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

/// `streamstats generate KIND --out OUT EXTRA...`.
pub fn generate(kind: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["generate", kind, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    streamstats(&args);
}

/// Result rows of a run, sorted, as text lines.
pub fn sorted_output_lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(text)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// Runs `tests/window_reference.py` with `config`; returns its rows and its malformed count.
pub fn reference(config: &Value) -> (Vec<Value>, u64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/window_reference.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(config.to_string())
        .output()
        .expect("python3 is needed for the reference computation");
    assert!(
        output.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = parse_rows(&output.stdout);
    let malformed = String::from_utf8_lossy(&output.stderr)
        .trim()
        .parse()
        .unwrap();
    (rows, malformed)
}

pub fn parse_rows(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

/// Asserts that two sets of rows agree: same rows (by window and group fields), numbers equal
/// within 1e-9 relative (the reference writes decimals as strings), nulls equal.
pub fn assert_same_rows(got: &[Value], expected: &[Value]) {
    let key = |row: &Value| -> String {
        let mut fields: Vec<(String, String)> = row
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| k.starts_with("window") || v.is_string() && !is_number(v))
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        fields.sort();
        format!("{fields:?}")
    };
    let mut got: Vec<&Value> = got.iter().collect();
    let mut expected: Vec<&Value> = expected.iter().collect();
    got.sort_by_key(|r| key(r));
    expected.sort_by_key(|r| key(r));
    assert_eq!(got.len(), expected.len(), "row counts differ");
    for (g, e) in got.iter().zip(&expected) {
        let (g, e) = (g.as_object().unwrap(), e.as_object().unwrap());
        assert_eq!(
            g.keys().collect::<Vec<_>>().len(),
            e.len(),
            "fields differ: {g:?} vs {e:?}"
        );
        for (name, expected_value) in e {
            let value = &g[name];
            match (as_f64(value), as_f64(expected_value)) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "{name}: {a} vs {b} in {g:?}"
                ),
                _ => assert_eq!(value, expected_value, "{name} in {g:?}"),
            }
        }
    }
}

fn is_number(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<f64>().is_ok())
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
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
