//! The PostgreSQL sink against a real server started by `scripts/postgres.sh start`: table rows
//! equal the JSONL output (sessions and SPS), a second run changes nothing, and a server stopped
//! and restarted mid-run loses and duplicates nothing.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `scripts/postgres.sh ACTION` with extra environment; returns its last stdout line.
fn postgres_script(action: &str, env: &[(&str, &str)]) -> String {
    let output = checked(
        Command::new("bash")
            .arg(repo().join("scripts/postgres.sh"))
            .arg(action)
            .envs(env.iter().copied()),
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn table_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test_{test}_{}_{nanos}", std::process::id())
}

/// Every row of `table` as canonical JSON (bigint columns are JSON numbers, text is strings).
fn table_rows(url: &str, table: &str) -> BTreeSet<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let rows = client
        .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
        .expect("select");
    let text: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    canonical_rows(&text.join("\n"))
}

/// `(xmin, primary key)` of every row: changes if a row is rewritten.
fn row_versions(url: &str, table: &str) -> BTreeSet<String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    client
        .query(
            &format!("SELECT xmin::text || ' ' || row_to_json(t)::text FROM {table} t"),
            &[],
        )
        .expect("select")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn generate(kind: &str, events: &str, rate: &str, out: &Path) {
    streamstats(&[
        "generate",
        kind,
        "--events",
        events,
        "--rate",
        rate,
        "--seed",
        "11",
        "--disorder-ms",
        "2000",
        "--bound",
        "10s",
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn run_to(flow: &str, input: &Path, output: &str, workers: &str) -> String {
    let out = streamstats(&[
        "run",
        &dataflow(flow),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output,
        "-w",
        workers,
        "--dead-letter",
        "/dev/null",
    ]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Generates `events` of `kind`, runs `flow` to JSONL (-w 1) and to a fresh table (-w 2), and
/// checks that the table holds exactly the JSONL rows. Returns the URL, the input and the target.
fn table_equals_jsonl(
    dir: &Path,
    flow: &str,
    kind: &str,
    events: &str,
    rate: &str,
    options: &str,
) -> (String, std::path::PathBuf, String, String) {
    let url = postgres_script("start", &[]);
    let input = dir.join(format!("{kind}.jsonl"));
    generate(kind, events, rate, &input);
    let jsonl = dir.join(format!("{flow}_out.jsonl"));
    run_to(flow, &input, jsonl.to_str().unwrap(), "1");
    let expected = canonical_file(&jsonl);
    assert!(
        expected.len() > 100,
        "too few rows to test: {}",
        expected.len()
    );
    let table = table_name(flow);
    let target = format!("{url}?table={table}{options}");
    run_to(flow, &input, &target, "2");
    assert!(
        table_rows(&url, &table) == expected,
        "{flow}: table differs from JSONL"
    );
    (url, input, table, target)
}

#[test]
fn sessions_in_postgres_equal_jsonl_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, input, table, target) = table_equals_jsonl(
        dir.path(),
        "sessions",
        "sessions",
        "40000",
        "100",
        "&batch=500",
    );
    let versions = row_versions(&url, &table);
    run_to("sessions", &input, &target, "1");
    assert!(
        row_versions(&url, &table) == versions,
        "a second run of the same input changed rows"
    );
}

#[test]
fn sps_in_postgres_equals_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    table_equals_jsonl(dir.path(), "sps", "sps", "50000", "1000", "");
}

#[test]
fn unreachable_server_fails_at_start_naming_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("heartbeats.jsonl");
    generate("sessions", "100", "100", &input);
    let target = format!(
        "postgres://postgres@127.0.0.1:{}/streamstats",
        free_ports(1)[0]
    );
    let out = Command::new(BIN)
        .args([
            "run",
            &dataflow("sessions"),
            "--input",
            input.to_str().unwrap(),
        ])
        .args(["--output", &target])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--output: cannot connect to PostgreSQL"),
        "{stderr}"
    );
}

#[test]
fn server_restart_mid_run_loses_and_duplicates_nothing_and_a_lasting_outage_fails() {
    // A private cluster on its own port and directory: stopping it disturbs no other test.
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The server's OS user (when tests run as root) must reach its data directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let data = dir.path().join("pg");
    let port = free_ports(1)[0].to_string();
    let env = [
        ("STREAMSTATS_PG_DIR", data.to_str().unwrap()),
        ("STREAMSTATS_PG_PORT", port.as_str()),
    ];
    let url = postgres_script("start", &env);
    let stop_at_exit = StopServer(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );

    let input = dir.path().join("heartbeats.jsonl");
    generate("sessions", "60000", "100", &input);
    let jsonl = dir.path().join("sessions.jsonl");
    run_to("sessions", &input, jsonl.to_str().unwrap(), "1");
    let expected = canonical_file(&jsonl);

    // Replay the input slowly through stdin, and stop the server for a while in the middle.
    let table = table_name("restart");
    let target = format!("{url}?table={table}&retry_for=60s&batch=200");
    let (ok, stderr) = paced_run(&input, &target, |piece| {
        match piece {
            10 => drop(postgres_script("stop", &env)),
            20 => drop(postgres_script("start", &env)),
            _ => {}
        };
    });
    assert!(ok, "run failed: {stderr}");
    assert!(
        stderr.contains("retrying"),
        "the outage was not noticed: {stderr}"
    );
    assert!(
        table_rows(&url, &table) == expected,
        "table differs from JSONL after restart"
    );
    for line in stderr.lines().filter(|l| l.contains("PostgreSQL")) {
        eprintln!("{line}"); // visible with --nocapture
    }

    // A server that does not come back within retry_for: the run fails loudly.
    let target = format!("{url}?table={table}_gone&retry_for=2s");
    let (ok, stderr) = paced_run(&input, &target, |piece| {
        if piece == 5 {
            postgres_script("stop", &env);
        }
    });
    assert!(!ok, "a run whose rows cannot be written must fail");
    assert!(stderr.contains("retry_for"), "{stderr}");
    drop(stop_at_exit);
}

/// Feeds `input` to `run sessions --input -` in 30 pieces, 150 ms apart, calling `between(i)`
/// after piece `i`. Returns whether the run succeeded, and its stderr.
fn paced_run(input: &Path, target: &str, mut between: impl FnMut(usize)) -> (bool, String) {
    let mut child = Command::new(BIN)
        .args(["run", &dataflow("sessions"), "--input", "-", "-w", "2"])
        .args(["--output", target, "--dead-letter", "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(input).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let mut stdin = child.stdin.take().unwrap();
    for (i, piece) in lines.chunks(lines.len().div_ceil(30)).enumerate() {
        // A run that already failed closes its stdin: stop feeding then.
        if piece.iter().any(|line| stdin.write_all(line).is_err()) || stdin.flush().is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        between(i);
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the private cluster when the test ends, passed or not.
struct StopServer(Vec<(String, String)>);

impl Drop for StopServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/postgres.sh"))
            .arg("stop")
            .envs(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}
