//! Unique users (dataflows/unique-users.toml) end to end: exact counts equal an independent Python
//! computation (tests/unique_users_expected.py) at 1, 2 and 4 workers and with two processes,
//! approximate counts stay within the sketch's error, calendar windows across New Year, a
//! Sunday -> Monday week boundary and a leap day, and the real head sample.
//!
//! The fixture is a two-year historical file generated at test time (`streamstats generate
//! frames`, with nested ts/uid traps and 1 % malformed records): one short burst per month of
//! 2023 and 2024 plus longer stretches across the calendar boundaries.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_streamstats");

/// Rows by (window label, window start).
type Rows = BTreeMap<(String, u64), Value>;

struct Fixture {
    dir: PathBuf,
    input: PathBuf,
    expected: Rows,
    invalid: u64,
}

/// The output of a finished child process that must have succeeded.
fn succeeded(output: std::process::Output) -> std::process::Output {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    output
}

fn ms(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis() as u64
}

/// Generated once per test binary; every test reads it.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unique-users");
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("frames.jsonl");
        // (start, events, events per second), in time order.
        let mut segments: Vec<(String, u64, u64)> = Vec::new();
        let burst = |year: u32, month: u32| (format!("{year}-{month:02}-15T12:00:00Z"), 60, 1000);
        segments.extend((1..=12).map(|m| burst(2023, m)));
        segments.push(("2023-12-31T23:58:30Z".into(), 5_000, 20)); // New Year, Sunday -> Monday
        segments.extend((1..=2).map(|m| burst(2024, m)));
        segments.push(("2024-02-28T23:58:30Z".into(), 3_000, 20)); // into the leap day
        segments.push(("2024-02-29T23:58:30Z".into(), 3_000, 20)); // out of it, into March
        segments.push(("2024-03-10T23:58:30Z".into(), 3_000, 20)); // Sunday -> Monday
        segments.extend((3..=12).map(|m| burst(2024, m)));
        let mut file = std::fs::File::create(&input).unwrap();
        for (i, (start, events, rate)) in segments.iter().enumerate() {
            let output = succeeded(
                Command::new(BIN)
                    .args([
                        "generate",
                        "frames",
                        "--out",
                        "-",
                        "--malformed-fraction",
                        "0.01",
                    ])
                    .args(["--events", &events.to_string(), "--rate", &rate.to_string()])
                    .args([
                        "--seed",
                        &i.to_string(),
                        "--start-ms",
                        &ms(start).to_string(),
                    ])
                    .output()
                    .unwrap(),
            );
            std::io::Write::write_all(&mut file, &output.stdout).unwrap();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/unique_users_expected.py");
        let output = succeeded(
            Command::new("python3")
                .arg(script)
                .arg(&input)
                .output()
                .expect("python3 is needed to compute the expected results"),
        );
        let expected: Value = serde_json::from_slice(&output.stdout).unwrap();
        Fixture {
            dir,
            input,
            expected: by_window(expected["rows"].as_array().unwrap().iter().cloned()),
            invalid: expected["invalid"].as_u64().unwrap(),
        }
    })
}

fn by_window(rows: impl IntoIterator<Item = Value>) -> Rows {
    let mut keyed = Rows::new();
    for row in rows {
        let key = (
            row["window"].as_str().unwrap().to_string(),
            row["window_start"].as_u64().unwrap(),
        );
        assert!(
            keyed.insert(key.clone(), row).is_none(),
            "two rows for {key:?}"
        );
    }
    keyed
}

fn read_rows(paths: &[PathBuf]) -> Rows {
    by_window(paths.iter().flat_map(|path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    }))
}

/// A copy of dataflows/unique-users.toml with `mode = "exact"` replaced by `mode`.
fn dataflow(name: &str, mode: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/unique-users.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("mode = \"exact\""));
    let copy = fixture().dir.join(name);
    std::fs::write(&copy, text.replace("mode = \"exact\"", mode)).unwrap();
    copy
}

/// The command for one streamstats process over the fixture.
fn run(args: &[&str], output: &Path, dead: &Path, dataflow: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .arg(dataflow)
        .arg("--input")
        .arg(&fixture().input)
        .args(["--chunk-size", "1MiB", "--output"])
        .arg(output)
        .arg("--dead-letter")
        .arg(dead)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(mut command: Command) {
    succeeded(command.output().unwrap());
}

fn assert_exact(got: &Rows, what: &str) {
    let expected = &fixture().expected;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: windows"
    );
    for (key, want) in expected {
        let row = &got[key];
        for field in ["window_end", "unique_users", "frames"] {
            assert_eq!(row[field], want[field], "{what}: {field} of {key:?}");
        }
        let (a, b) = (
            row["avg_frames_per_second"].as_f64().unwrap(),
            want["avg_frames_per_second"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < 1e-6,
            "{what}: avg_frames_per_second of {key:?}: {a} vs {b}"
        );
    }
}

fn assert_dead_letters(paths: &[PathBuf]) {
    let lines: Vec<Value> = paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    assert_eq!(lines.len() as u64, fixture().invalid, "dead letters");
    assert!(lines.iter().all(|l| l["reason"] == "malformed"));
    let details: Vec<&str> = lines
        .iter()
        .map(|l| l["detail"].as_str().unwrap())
        .collect();
    assert!(details
        .iter()
        .any(|d| d.contains("missing required field `uid`")));
    assert!(details.iter().any(|d| d.contains("time is not an integer")));
    assert!(details.iter().any(|d| d.contains("invalid JSON object")));
}

#[test]
fn exact_counts_equal_an_independent_computation_at_1_2_and_4_workers() {
    let flow = dataflow("exact.toml", "mode = \"exact\"");
    assert!(fixture().expected.len() > 100);
    for workers in ["1", "2", "4"] {
        let dir = tempfile::tempdir().unwrap();
        let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
        run_to_end(run(&["-w", workers], &out, &dead, &flow));
        assert_exact(&read_rows(&[out]), &format!("-w {workers}"));
        assert_dead_letters(&[dead]);
    }
}

#[test]
fn exact_counts_are_the_same_with_two_processes() {
    let flow = dataflow("exact-2p.toml", "mode = \"exact\"");
    let dir = tempfile::tempdir().unwrap();
    let input = fixture().input.to_str().unwrap();
    let args = [
        "run",
        flow.to_str().unwrap(),
        "--input",
        input,
        "--chunk-size",
        "1MiB",
    ];
    let (outputs, dead_letters) = common::run_cluster(dir.path(), 2, 2, &args);
    assert_exact(&read_rows(&outputs), "-n 2");
    assert_dead_letters(&dead_letters);
}

#[test]
fn approximate_counts_stay_within_the_sketch_error() {
    let flow = dataflow("approx.toml", "mode = \"approx\"\nprecision = 10");
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    run_to_end(run(&["-w", "2"], &out, &dead, &flow));
    let got = read_rows(&[out]);
    let rse = 1.04 / 32.0;
    let mut compared = 0;
    for (key, want) in &fixture().expected {
        let row = &got[key];
        assert_eq!(row["frames"], want["frames"]);
        assert!((row["unique_users_rse"].as_f64().unwrap() - rse).abs() < 1e-6);
        let exact = want["unique_users"].as_f64().unwrap();
        let estimate = row["unique_users"].as_f64().unwrap();
        let error = (estimate - exact).abs() / exact;
        assert!(
            error <= 4.0 * rse,
            "{key:?}: estimate {estimate}, exact {exact}"
        );
        compared += 1;
    }
    assert!(compared >= 20);
}

#[test]
fn calendar_windows_follow_the_utc_calendar() {
    let rows = &fixture().expected;
    let flow = dataflow("calendar.toml", "mode = \"exact\"");
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (dir.path().join("out.jsonl"), dir.path().join("dead.jsonl"));
    run_to_end(run(&[], &out, &dead, &flow));
    let got = read_rows(&[out]);
    let window = |label: &str, start: &str, end: &str| {
        let row = &got[&(label.to_string(), ms(start))];
        assert_eq!(
            row["window_end"].as_u64().unwrap(),
            ms(end),
            "{label} {start}"
        );
        assert_eq!(row, &rows[&(label.to_string(), ms(start))]);
    };
    window("1y", "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z");
    window("1y", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z");
    window("1w", "2023-12-25T00:00:00Z", "2024-01-01T00:00:00Z"); // ends on New Year's Monday
    window("1w", "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z");
    window("1w", "2024-03-04T00:00:00Z", "2024-03-11T00:00:00Z"); // Sunday 10th is inside
    window("1w", "2024-03-11T00:00:00Z", "2024-03-18T00:00:00Z");
    window("1mo", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"); // 29 days
    window("1d", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z");
    window("1m", "2023-12-31T23:59:00Z", "2024-01-01T00:00:00Z");
    assert_eq!(got.keys().filter(|(label, _)| label == "1mo").count(), 24);
}

#[test]
fn the_real_head_sample_parses_to_its_root_uids() {
    use streamstats::extract::{JsonExtractor, Scalar};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/tamedia-stream.head.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is absent", path.display());
        return;
    };
    let extractor = JsonExtractor::new(vec!["ts".into(), "uid".into()]);
    let mut uids = Vec::new();
    for line in text.lines() {
        let mut fields = streamstats::extract::Fields::new();
        extractor.extract(line.as_bytes(), &mut fields).unwrap();
        assert_eq!(fields[0], Some(Scalar::Int(1_468_244_384)));
        let Some(Scalar::Str(uid)) = &fields[1] else {
            panic!("no root uid in {line}")
        };
        assert!(uid.len() == 19 && uid.bytes().all(|b| b.is_ascii_hexdigit()));
        uids.push(uid.to_string());
    }
    assert_eq!(uids.len(), 10);
    for known in [
        "dcba5742f8a6083a3a9",
        "9bfcae2f7c3a4ec2add",
        "dcc2bbb5349b61cfdae",
        "1b018e18ecd3ca96555",
    ] {
        assert!(uids.iter().any(|u| u == known), "{known}");
    }
    // And the whole pipeline: one minute with the 10 frames and their distinct root uids.
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/unique-users.toml");
    let output = succeeded(
        Command::new(BIN)
            .arg("run")
            .arg(flow)
            .arg("--input")
            .arg(&path)
            .output()
            .unwrap(),
    );
    let rows: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let minute = rows.iter().find(|r| r["window"] == "1m").unwrap();
    uids.sort();
    uids.dedup();
    assert_eq!(minute["window_start"], 1_468_244_340_000u64);
    assert_eq!(minute["frames"], 10);
    assert_eq!(minute["unique_users"], uids.len());
}
