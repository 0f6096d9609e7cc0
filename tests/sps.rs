//! Stream starts per second end to end: golden fixture, generated data against the independent
//! Python reference, and identical results for any worker or process count.

mod common;
use common::*;
use std::path::PathBuf;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the SPS dataflow on `input`; returns (rows, dead letters).
fn run_sps(
    dir: &std::path::Path,
    input: &str,
    chunk: &str,
    workers: usize,
) -> (Vec<String>, Vec<String>) {
    let (out, dead) = (
        dir.join(format!("out-{workers}.jsonl")),
        dir.join(format!("dead-{workers}.jsonl")),
    );
    let sps = repo().join("dataflows/sps.toml");
    streamstats(&[
        "run",
        path(&sps),
        "--input",
        input,
        "--output",
        path(&out),
        "--dead-letter",
        path(&dead),
        "--chunk-size",
        chunk,
        "-w",
        &workers.to_string(),
    ]);
    (rows(&[out]), dead_letters(&[dead]))
}

/// The independent reference's (rows, dead letters) for `input` cut into `chunk`-byte chunks.
fn reference_sps(
    dir: &std::path::Path,
    input: &std::path::Path,
    chunk: u64,
) -> (Vec<String>, Vec<String>) {
    let (ref_rows, ref_dead) = (dir.join("ref.jsonl"), dir.join("ref-dead.txt"));
    let sps = repo().join("dataflows/sps.toml");
    python(
        "windowed_reference.py",
        &[
            path(&sps),
            path(input),
            &chunk.to_string(),
            path(&ref_rows),
            path(&ref_dead),
        ],
    );
    (rows(&[ref_rows]), sorted_lines(&ref_dead))
}

#[test]
fn golden_fixture_matches_the_checked_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let golden = repo().join("tests/golden/sps");
    let (rows_got, dead_got) = run_sps(dir.path(), path(&golden.join("input.jsonl")), "1MiB", 1);
    assert_eq!(rows_got, rows(&[golden.join("expected.jsonl")]));
    assert_eq!(
        dead_got,
        sorted_lines(&golden.join("expected-dead-letter.txt"))
    );
    // The committed expectation is what the independent reference computes.
    let (ref_rows, ref_dead) = reference_sps(dir.path(), &golden.join("input.jsonl"), 1 << 20);
    assert_eq!(ref_rows, rows_got);
    assert_eq!(ref_dead, dead_got);
}

#[test]
fn generated_events_match_the_reference_for_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sps.jsonl");
    generate(
        "sps",
        &input,
        &[
            "--events",
            "120000",
            "--seed",
            "42",
            "--rate",
            "3000",
            "--disorder-ms",
            "4000",
            "--late-fraction",
            "0.01",
            "--malformed-fraction",
            "0.005",
            "--bitflip-fraction",
            "0.001",
        ],
    );
    let chunk = 256 * 1024;
    let expected = reference_sps(dir.path(), &input, chunk);
    assert!(
        expected.0.len() > 10_000
            && expected.1.iter().any(|d| d.starts_with("late"))
            && expected.1.iter().any(|d| d.starts_with("future"))
    );
    for workers in [1, 2, 4] {
        let got = run_sps(dir.path(), path(&input), &chunk.to_string(), workers);
        assert_eq!(got.0.len(), expected.0.len(), "row count at -w {workers}");
        assert!(got == expected, "-w {workers} differs from the reference");
        assert_unique(&got.0, &["window_start", "device", "title", "country"]);
    }
}

#[test]
fn two_processes_give_the_same_rows_as_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sps.jsonl");
    generate(
        "sps",
        &input,
        &[
            "--events",
            "60000",
            "--seed",
            "7",
            "--late-fraction",
            "0.01",
            "--malformed-fraction",
            "0.01",
        ],
    );
    let single = run_sps(dir.path(), path(&input), "64KiB", 1);
    let sps = repo().join("dataflows/sps.toml");
    let (outs, deads) = run_cluster(
        dir.path(),
        2,
        2,
        &[
            "run",
            path(&sps),
            "--input",
            path(&input),
            "--chunk-size",
            "64KiB",
        ],
    );
    let cluster_rows = rows(&outs);
    assert_unique(
        &cluster_rows,
        &["window_start", "device", "title", "country"],
    );
    assert_eq!(cluster_rows, single.0);
    assert_eq!(dead_letters(&deads), single.1);
    assert!(
        outs.iter().all(|o| std::fs::metadata(o).unwrap().len() > 0),
        "each process writes its own workers' rows"
    );
}

#[test]
fn windows_close_while_the_input_is_still_being_read() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sps.jsonl");
    generate("sps", &input, &["--events", "20000", "--seed", "3"]);
    let text = std::fs::read_to_string(&input).unwrap();
    let (first, rest) = text.split_at(text.len() / 2);
    let rest = &rest[rest.find('\n').unwrap() + 1..];
    let sps = repo().join("dataflows/sps.toml");
    let mut child = binary()
        .args([
            "run",
            path(&sps),
            "--input",
            "-",
            "--output",
            "-",
            "--dead-letter",
            path(&dir.path().join("dead.jsonl")),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    // A row arrives while stdin is still open: the window closed on the watermark, not at the end.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let row: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(row["sps"].as_u64().unwrap() >= 1);
    // Write the rest from another thread: the child's stdout must keep draining meanwhile.
    let rest = rest.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(rest.as_bytes()).unwrap());
    let mut remaining = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut remaining).unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let all: Vec<String> = std::iter::once(line)
        .chain(remaining.lines().map(|l| format!("{l}\n")))
        .collect();
    let file_rows = run_sps(dir.path(), path(&input), "64MiB", 1).0;
    let mut streamed: Vec<String> = all
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap()
                .to_string()
        })
        .collect();
    streamed.sort();
    assert_eq!(streamed, file_rows, "stdin and file replays agree");
}

#[test]
fn a_named_pipe_is_read_as_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sps.jsonl");
    generate(
        "sps",
        &input,
        &[
            "--events",
            "30000",
            "--seed",
            "8",
            "--late-fraction",
            "0.01",
        ],
    );
    let fifo = dir.path().join("events.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let writer = {
        let (input, fifo) = (input.clone(), fifo.clone());
        // Opening a pipe for writing blocks until the job opens it for reading.
        std::thread::spawn(move || std::fs::write(fifo, std::fs::read(input).unwrap()).unwrap())
    };
    let piped = run_sps(dir.path(), path(&fifo), "1MiB", 2);
    writer.join().unwrap();
    // A pipe cannot be split: it is one partition, like the whole file as one chunk.
    let size = std::fs::metadata(&input).unwrap().len();
    let expected = reference_sps(dir.path(), &input, size);
    assert!(
        piped.0 == expected.0,
        "the piped rows differ from the reference"
    );
    // Dead letters name the pipe, not `sps.jsonl#0`: compare reasons and offsets.
    let (piped_name, chunk_name) = (path(&fifo), "sps.jsonl#0");
    let expected_dead: Vec<String> = expected
        .1
        .iter()
        .map(|d| d.replace(chunk_name, piped_name))
        .collect();
    assert!(expected_dead.iter().any(|d| d.starts_with("late")));
    assert_eq!(piped.1, expected_dead);
}

#[test]
fn a_file_truncated_while_being_read_ends_the_job_with_an_error() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sps.jsonl");
    generate("sps", &input, &["--events", "1000000", "--seed", "5"]);
    let sps = repo().join("dataflows/sps.toml");
    let mut child = binary()
        .args(["run", path(&sps), "--input", path(&input), "--output", "-"])
        .args(["--dead-letter", path(&dir.path().join("dead.jsonl"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_row = String::new();
    stdout.read_line(&mut first_row).unwrap();
    // Rows flow while the file is read, and the job cannot read on much further (a few MiB of
    // the ~100 MB) until this test drains its stdout: cut the file off under it first.
    std::fs::File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(4096)
        .unwrap();
    std::io::copy(&mut stdout, &mut std::io::sink()).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the file was truncated while being read"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_fails_at_start_up_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repo().join("dataflows/sps.toml")).unwrap();
    for (from, to, field) in [
        ("unit = \"ms\"", "unit = \"fortnights\"", "time.unit"),
        ("size = \"1s\"", "size = \"soon\"", "windows[0]"),
        ("fn = \"count\"", "fn = \"mode\"", "aggregates[0].fn"),
        (
            "max_out_of_orderness = \"5s\"",
            "max_out_of_orderness = \"-5s\"",
            "time.max_out_of_orderness",
        ),
    ] {
        assert!(spec.contains(from));
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, spec.replace(from, to)).unwrap();
        let out = binary()
            .args(["run", path(&file), "--input", "/dev/null"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(field),
            "error for {to} should name {field}: {stderr}"
        );
    }
    let out = binary()
        .args(["run", path(&repo().join("dataflows/sps.toml")), "-w", "0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}

#[test]
fn the_built_in_generator_runs_without_any_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.jsonl");
    let sps = repo().join("dataflows/sps.toml");
    let run = streamstats(&[
        "run",
        path(&sps),
        "--rate",
        "4000",
        "--max-records",
        "4000",
        "--output",
        path(&out),
        "--dead-letter",
        path(&dir.path().join("d.jsonl")),
    ]);
    let summary = String::from_utf8_lossy(&run.stderr);
    assert!(summary.contains("4000 records"), "{summary}");
    let rows = rows(&[out]);
    let counted: u64 = rows
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["sps"]
                .as_u64()
                .unwrap()
        })
        .sum();
    // About 88 % of generated events are successes; all of them are counted, late ones aside.
    assert!((3000..=3700).contains(&counted), "counted {counted}");
    let _: PathBuf = out;
}
