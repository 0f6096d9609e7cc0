//! The server-sent-events source over a real HTTP connection on 127.0.0.1, against `serve-sse`:
//! multi-line data, dropped connections that resume by Last-Event-ID, malformed payloads, and
//! `event: end` ending a bounded replay. The expected output is the same dataflow over the file.

mod common;

use common::{generate, sorted_output_lines, streamstats, BIN};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A running `serve-sse`, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(file: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve-sse", file.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start serve-sse");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // "serving N events on http://127.0.0.1:PORT/events"
        let address = first.trim().rsplit("http://").next().unwrap().to_string();
        Server {
            child,
            url: format!("sse+http://{address}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a dataflow at `-w 2`; the process output (it must succeed).
fn run(dataflow: &str, input: &str, dead: &Path) -> Output {
    streamstats(&[
        "run",
        dataflow,
        "--input",
        input,
        "-w",
        "2",
        "--dead-letter",
        dead.to_str().unwrap(),
    ])
}

#[test]
fn dropped_connections_resume_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let (input, dead) = (dir.path().join("sps.jsonl"), dir.path().join("dead.jsonl"));
    generate("sps", &input, &["--events", "6000"]);
    let expected =
        sorted_output_lines(&run("dataflows/sps.toml", input.to_str().unwrap(), &dead).stdout);
    assert!(!expected.is_empty());
    let server = Server::start(&input, &["--drop-after", "1700"]);
    let output = run("dataflows/sps.toml", &server.url, &dead);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.matches("reconnecting").count() >= 3,
        "expected reconnects: {log}"
    );
    assert_eq!(sorted_output_lines(&output.stdout), expected);
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
}

#[test]
fn malformed_payloads_go_to_dead_letters_and_csv_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let (input, dead) = (dir.path().join("trades.csv"), dir.path().join("dead.jsonl"));
    generate("trades", &input, &["--events", "5000", "--rate", "20"]);
    let server = Server::start(&input, &["--malformed-fraction", "0.05", "--rate", "20000"]);
    let got =
        sorted_output_lines(&run("dataflows/stock-moving-average.toml", &server.url, &dead).stdout);
    // Expected: the file run without the lines the server busted (dead-letter offsets are ids).
    let dead_letters = std::fs::read_to_string(&dead).unwrap();
    let busted: Vec<u64> = dead_letters
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["line"].as_str().unwrap().starts_with("busted data"));
            v["offset"].as_u64().unwrap()
        })
        .collect();
    assert!(busted.len() > 150, "about 5% of 5000: {}", busted.len());
    let text = std::fs::read_to_string(&input).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| !busted.contains(&(*i as u64 + 1)))
        .map(|(_, l)| l)
        .collect();
    let filtered = dir.path().join("kept.csv");
    std::fs::write(&filtered, kept.join("\n")).unwrap();
    let none = dir.path().join("none.jsonl");
    let expected = run(
        "dataflows/stock-moving-average.toml",
        filtered.to_str().unwrap(),
        &none,
    );
    let expected = sorted_output_lines(&expected.stdout);
    assert_eq!(got, expected);
}
