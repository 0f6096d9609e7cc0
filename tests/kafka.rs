//! Kafka integration tests against a real Kafka-protocol broker process (Tansu, started by
//! `scripts/kafka.sh start`; `STREAMSTATS_KAFKA_PORT` picks its port). Every test uses its own
//! topics, so the tests can share one broker and run in parallel.
//!
//! The expected output of a Kafka replay is the file replay's output for the same events (the
//! file path is checked against an independent reference elsewhere). Fixtures have no late
//! events: a topic's partitions are different partitions than a file's chunks, so lateness (which
//! is relative to a partition's own sequence) may differ between the two; lateness within one
//! Kafka partition is checked separately (`late_records_are_the_same_at_any_worker_count`).

mod common;

use common::{generate, repo, streamstats, BIN};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Starts (or finds) the shared test broker; returns `host:port`.
fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| start_broker(&[]))
}

fn start_broker(env: &[(&str, String)]) -> String {
    let out = Command::new(repo().join("scripts/kafka.sh"))
        .arg("start")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/kafka.sh start");
    assert!(out.status.success(), "scripts/kafka.sh start failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("broker address")
        .trim()
        .to_string()
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `run DATAFLOW --input URL --until-end --start committed` as consumer group `group`, with
/// 2 workers, rows into `out`.
fn run_from_committed(dataflow: &str, url: &str, group: &str, out: &Path) {
    streamstats(&[
        "run",
        dataflow,
        "--input",
        url,
        "--until-end",
        "--start",
        "committed",
        "--kafka-group",
        group,
        "-w",
        "2",
        "--output",
        out.to_str().unwrap(),
        "--dead-letter",
        "/dev/null",
    ]);
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// SPS events without late records (disorder 2 s < the 5 s bound), some malformed.
fn fixture(dir: &Path, events: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("sps-{seed}.jsonl"));
    generate(
        "sps",
        &path,
        &[
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
            "--malformed-fraction",
            "0.002",
        ],
    );
    path
}

fn file_output(dir: &Path, input: &Path) -> Vec<String> {
    let out = dir.join("file-out.jsonl");
    streamstats(&[
        "run",
        "dataflows/sps.toml",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--dead-letter",
        dir.join("file-dl.jsonl").to_str().unwrap(),
    ]);
    sorted_lines(&out)
}

/// A fixture of `events` SPS events in a fresh directory, and its file replay's output rows.
fn golden(events: u64, seed: u64) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), events, seed);
    let expected = file_output(dir.path(), &input);
    (dir, input, expected)
}

/// Same rows as the file replay (compared sorted; printing counts, not 10^4 rows).
fn assert_rows(got: &[String], expected: &[String], what: &str) {
    assert!(
        got == expected,
        "{what}: {} rows, expected {}",
        got.len(),
        expected.len()
    );
}

/// `streamstats run dataflows/sps.toml --input INPUT`, to add arguments to and spawn.
fn sps_job(input: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(repo())
        .args(["run", "dataflows/sps.toml", "--input", input]);
    command
}

fn replay_to(input: &Path, topic: &str, partitions: u32, extra: &[&str]) {
    let url = format!("kafka://{}/{topic}", broker());
    let mut args = vec![
        "replay",
        input.to_str().unwrap(),
        "--output",
        &url,
        "--partitions",
    ];
    let n = partitions.to_string();
    args.push(&n);
    args.extend_from_slice(extra);
    streamstats(&args);
}

/// `run --until-end` over a topic; returns its sorted output rows.
fn kafka_until_end(dir: &Path, topic: &str, workers: u32, tag: &str) -> Vec<String> {
    let out = dir.join(format!("kafka-{tag}.jsonl"));
    let input = format!("kafka://{}/{topic}", broker());
    streamstats(&[
        "run",
        "dataflows/sps.toml",
        "--input",
        &input,
        "--until-end",
        "-w",
        &workers.to_string(),
        "--output",
        out.to_str().unwrap(),
        "--dead-letter",
        dir.join(format!("dl-{tag}.jsonl")).to_str().unwrap(),
    ]);
    sorted_lines(&out)
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("test consumer")
}

/// Every message of `topic` as (arrival time, key, value), until nothing new came for `quiet`.
fn read_topic(topic: &str, quiet: Duration) -> Vec<(Instant, String, String)> {
    read_topic_while(topic, |last| last.elapsed() < quiet)
}

/// Every message of `topic` as (arrival time, key, value), while `go(time of the last message)`.
fn read_topic_while(topic: &str, go: impl Fn(Instant) -> bool) -> Vec<(Instant, String, String)> {
    let c = consumer(&unique("reader"));
    let metadata = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while go(last) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                out.push((
                    Instant::now(),
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

#[test]
fn until_end_replays_equal_the_file_replay() {
    let (dir, input, expected) = golden(30_000, 7);
    assert!(
        expected.len() > 1000,
        "fixture too small: {} rows",
        expected.len()
    );
    for partitions in [1, 3, 8] {
        let topic = unique(&format!("golden{partitions}"));
        replay_to(&input, &topic, partitions, &[]);
        for workers in [1, 4] {
            let got = kafka_until_end(
                dir.path(),
                &topic,
                workers,
                &format!("{partitions}-{workers}"),
            );
            assert_rows(
                &got,
                &expected,
                &format!("{partitions} partitions, -w {workers}"),
            );
        }
    }
}

#[test]
fn until_end_with_two_processes_equals_the_file_replay() {
    let (dir, input, expected) = golden(20_000, 11);
    let topic = unique("golden-2p");
    replay_to(&input, &topic, 3, &[]);
    let url = format!("kafka://{}/{topic}", broker());
    let sps = repo().join("dataflows/sps.toml");
    let args = ["run", sps.to_str().unwrap(), "--input", &url, "--until-end"];
    let (outputs, _) = common::run_cluster(dir.path(), 2, 2, &args);
    let mut got: Vec<String> = outputs.iter().flat_map(|o| sorted_lines(o)).collect();
    got.sort();
    assert_rows(&got, &expected, "two processes");
}

#[test]
fn results_topic_holds_the_file_replay_rows_keyed_by_window_and_group() {
    let (_dir, input, expected) = golden(10_000, 5);
    let (topic, results) = (unique("sink-in"), unique("sink-out"));
    replay_to(&input, &topic, 3, &["--key", "device"]);
    let url = format!("kafka://{}/{results}", broker());
    let input_url = format!("kafka://{}/{topic}", broker());
    streamstats(&[
        "run",
        "dataflows/sps.toml",
        "--input",
        &input_url,
        "--until-end",
        "-w",
        "2",
        "--output",
        &url,
        "--dead-letter",
        "/dev/null",
    ]);
    let messages = read_topic(&results, Duration::from_secs(2));
    let mut got: Vec<String> = messages.iter().map(|(_, _, v)| v.clone()).collect();
    got.sort();
    assert_rows(&got, &expected, "results topic");
    let keys: BTreeSet<&str> = messages.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(
        keys.len(),
        messages.len(),
        "keys must identify window + group key"
    );
}

/// Events whose lateness is decided inside one partition: dead letters are identical at -w 1/-w 4.
#[test]
fn late_records_are_the_same_at_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("late.jsonl");
    generate(
        "sps",
        &input,
        &[
            "--events",
            "20000",
            "--seed",
            "3",
            "--late-fraction",
            "0.01",
        ],
    );
    let topic = unique("late");
    replay_to(&input, &topic, 4, &[]);
    let mut outputs = Vec::new();
    for workers in [1, 4] {
        let rows = kafka_until_end(dir.path(), &topic, workers, &format!("late{workers}"));
        let mut dead = sorted_lines(&dir.path().join(format!("dl-late{workers}.jsonl")));
        dead.retain(|l| l.contains("\"reason\":\"late\""));
        outputs.push((rows, dead));
    }
    assert!(
        outputs[0].1.len() > 50,
        "expected late records, got {}",
        outputs[0].1.len()
    );
    assert!(outputs[0] == outputs[1], "-w 1 and -w 4 disagree");
}

/// The group's committed offset of each of `partitions` partitions of `topic`.
fn committed(topic: &str, group: &str, partitions: i32) -> Vec<Offset> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    consumer(group)
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| e.offset())
        .collect()
}

/// A bounded run commits every partition up to its end once all windows are emitted, also for
/// session windows (whose unbounded extent allows no commit before the end), so a later run with
/// `--start committed` has nothing left to read.
#[test]
fn until_end_commits_every_partition_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let heartbeats = dir.path().join("hb.jsonl");
    generate(
        "sessions",
        &heartbeats,
        &["--events", "6000", "--rate", "200", "--bound", "10s"],
    );
    let sps = fixture(dir.path(), 6_000, 19);
    for (dataflow, input) in [("sps", &sps), ("sessions", &heartbeats)] {
        let (topic, group) = (unique(dataflow), unique("final-commit"));
        replay_to(input, &topic, 3, &[]);
        let url = format!("kafka://{}/{topic}", broker());
        let run = |out: &Path| {
            run_from_committed(&format!("dataflows/{dataflow}.toml"), &url, &group, out);
            sorted_lines(out)
        };
        let first = run(&dir.path().join(format!("{dataflow}-1.jsonl")));
        assert!(!first.is_empty(), "{dataflow}: no rows");
        // `replay` sends line i to partition i % 3.
        let lines = sorted_lines(input).len() as i64;
        let ends: Vec<Offset> = (0..3)
            .map(|p| Offset::Offset((lines - p + 2) / 3))
            .collect();
        assert_eq!(committed(&topic, &group, 3), ends, "{dataflow}");
        let second = run(&dir.path().join(format!("{dataflow}-2.jsonl")));
        assert!(
            second.is_empty(),
            "{dataflow}: the second run re-read records"
        );
    }
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "0")
        .create()
        .expect("test producer")
}

fn event(ts: u64, device: &str) -> String {
    format!(r#"{{"device":"{device}","sev":"success","title":"t","country":"CH","time":{ts}}}"#)
}

/// Live mode: a window's row is on the results topic within bound + idle timeout + 1 s of its
/// last event being produced, including the last window (no more traffic afterwards).
#[test]
fn live_windows_are_reported_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (topic, results) = (unique("live-in"), unique("live-out"));
    let input_url = format!("kafka://{}/{topic}", broker());
    let output_url = format!("kafka://{}/{results}", broker());
    // Create the topic with 3 partitions (replay of an empty file).
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    replay_to(&empty, &topic, 3, &[]);
    replay_to(&empty, &results, 1, &[]);
    let reader = {
        let (results, until) = (results.clone(), Instant::now() + Duration::from_secs(15));
        std::thread::spawn(move || read_topic_while(&results, |_| Instant::now() < until))
    };
    let mut job = sps_job(&input_url)
        .args(["--start", "earliest"])
        .args([
            "--max-out-of-orderness",
            "2s",
            "--idle-timeout",
            "1s",
            "-w",
            "2",
        ])
        .args(["--output", &output_url, "--dead-letter", "/dev/null"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3)); // job up and assigned
    let p = producer();
    // 6 s of traffic at event time = now, 50 events/s, spread over the partitions; partition 2
    // gets nothing, so it has to become idle for any window to close.
    let mut last_produced: BTreeMap<u64, Instant> = BTreeMap::new();
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < Duration::from_secs(6) {
        let ts = now_ms();
        let line = event(ts, "tv");
        p.send(
            BaseRecord::<str, str>::to(&topic)
                .payload(&line)
                .partition((i % 2) as i32),
        )
        .unwrap();
        p.flush(Duration::from_secs(5)).unwrap();
        last_produced.insert(ts / 1000 * 1000 + 1000, Instant::now());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows = reader.join().unwrap();
    let _ = job.kill();
    let _ = job.wait();
    let mut seen: BTreeMap<u64, Instant> = BTreeMap::new();
    for (arrived, _, value) in &rows {
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        seen.entry(v["window_end"].as_u64().unwrap())
            .or_insert(*arrived);
    }
    let limit = Duration::from_millis(2_000 + 1_000 + 1_000);
    for (end, produced) in &last_produced {
        let arrived = seen
            .get(end)
            .unwrap_or_else(|| panic!("window ending {end} never reported"));
        // `read_topic` polls with a 100 ms timeout; arrival times are at most that late.
        let delay = arrived.saturating_duration_since(*produced);
        assert!(
            delay <= limit,
            "window ending {end} reported {delay:?} after its last event"
        );
    }
}

/// The job killed mid-stream and restarted with the same group: every row of the complete output
/// appears, with its complete value, in the union of the two runs' outputs.
#[test]
fn restart_with_committed_offsets_misses_no_window() {
    let (dir, input, expected) = golden(20_000, 13);
    let topic = unique("restart");
    let group = unique("restart-group");
    // Create the topic first, then produce at 1000 events/s (20 s) while the job runs.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    replay_to(&empty, &topic, 3, &[]);
    let url = format!("kafka://{}/{topic}", broker());
    let first_out = dir.path().join("first.jsonl");
    let mut first = sps_job(&url)
        .args(["--start", "committed"])
        // Historical (2018) events: no partition may turn idle, or the wall clock would take over.
        .args(["--kafka-group", &group, "-w", "2", "--idle-timeout", "1h"])
        .args([
            "--output",
            first_out.to_str().unwrap(),
            "--dead-letter",
            "/dev/null",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let producer = {
        let (input, topic) = (input.clone(), topic.clone());
        std::thread::spawn(move || replay_to(&input, &topic, 3, &["--rate", "1000"]))
    };
    // Kill it once it has reported a third of the windows (offsets are committed about a second
    // after the windows holding their records were emitted).
    let deadline = Instant::now() + Duration::from_secs(30);
    while sorted_lines(&first_out).len() < expected.len() / 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    first.kill().unwrap(); // SIGKILL: no clean shutdown, no final commit
    first.wait().unwrap();
    producer.join().unwrap();
    let first_rows = sorted_lines(&first_out);
    assert!(
        !first_rows.is_empty(),
        "the first run reported nothing before it was killed"
    );
    let second = dir.path().join("second.jsonl");
    run_from_committed("dataflows/sps.toml", &url, &group, &second);
    let second_rows = sorted_lines(&second);
    let union: BTreeSet<&String> = first_rows.iter().chain(&second_rows).collect();
    let missing: Vec<&String> = expected.iter().filter(|r| !union.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} rows missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    assert!(
        second_rows.len() < expected.len(),
        "the restarted job re-read everything: offsets were not committed"
    );
    eprintln!(
        "restart: first run {} rows, second run {} rows, expected {} (duplicates: {})",
        first_rows.len(),
        second_rows.len(),
        expected.len(),
        first_rows.len() + second_rows.len() - expected.len()
    );
}

/// The broker stopped mid-run and started again (durable storage): the live job keeps running,
/// reports no window as complete while the broker is away, and its output is complete.
/// The broker stops once the job has reported every window the first half completes (those
/// ending by the partitions' lowest watermark): rows reach the file when the job flushes it, so a
/// fixed pause could let rows emitted before the outage appear during it.
/// The outage (14 s) is longer than the idle timeout (10 s): the partitions, caught up before the
/// outage, must not count as idle while the broker is away. The rest is produced right after the
/// restart, well within the idle timeout: in live mode, once every partition is idle the
/// watermark follows the wall clock, and these 2018 events would then be late.
#[test]
fn job_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base: u16 = std::env::var("STREAMSTATS_KAFKA_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19092);
    // A broker of its own (port base + 10, object store base + 11), so other tests are unaffected.
    let env = [
        ("STREAMSTATS_KAFKA_PORT", (base + 10).to_string()),
        (
            "STREAMSTATS_KAFKA_DIR",
            dir.path().join("broker").display().to_string(),
        ),
        ("STREAMSTATS_KAFKA_STORAGE", "disk".to_string()),
    ];
    let kafka_sh = |command: &str| {
        let status = Command::new(repo().join("scripts/kafka.sh"))
            .arg(command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "kafka.sh {command}");
    };
    let address = start_broker(&env);
    let input = fixture(dir.path(), 20_000, 17);
    let expected = file_output(dir.path(), &input);
    let text = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = (
        dir.path().join("first.jsonl"),
        dir.path().join("second.jsonl"),
    );
    std::fs::write(&first, lines[..lines.len() / 2].join("\n")).unwrap();
    std::fs::write(&second, lines[lines.len() / 2..].join("\n")).unwrap();
    let url = format!("kafka://{address}/restart-broker");
    let produce = |file: &Path| {
        let (file, url) = (file.to_str().unwrap(), url.as_str());
        streamstats(&["replay", file, "--output", url, "--partitions", "3"]);
    };
    produce(&first);
    // `replay` sends line i to partition i % 3; a partition's watermark is its largest event
    // time minus the bound (5 s), and a window is complete once every watermark reached its end.
    let mut max_ts = [0u64; 3];
    for (i, line) in lines[..lines.len() / 2].iter().enumerate() {
        let ts = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["time"].as_u64());
        if let Some(ts) = ts {
            max_ts[i % 3] = max_ts[i % 3].max(ts);
        }
    }
    let watermark = max_ts.iter().min().unwrap() - 5_000;
    let complete: Vec<String> = expected
        .iter()
        .filter(|row| {
            let row: serde_json::Value = serde_json::from_str(row).unwrap();
            row["window_end"].as_u64().unwrap() <= watermark
        })
        .cloned()
        .collect();
    assert!(!complete.is_empty(), "the first half completes no window");
    let out = dir.path().join("out.jsonl");
    let mut job = sps_job(&url)
        .args(["--start", "earliest"])
        .args([
            "--idle-timeout",
            "10s",
            "-w",
            "2",
            "--output",
            out.to_str().unwrap(),
        ])
        .args([
            "--dead-letter",
            dir.path().join("dl.jsonl").to_str().unwrap(),
        ])
        .stderr(std::fs::File::create(dir.path().join("job.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(8); // well within the idle timeout
    while sorted_lines(&out) != complete && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        sorted_lines(&out),
        complete,
        "the job did not report exactly the windows the first half completes"
    );
    let stopping = Instant::now();
    kafka_sh("stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the broker took too long to stop"
    );
    let before = sorted_lines(&out).len();
    std::thread::sleep(Duration::from_secs(14)); // longer than the idle timeout
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job died with the broker"
    );
    let during = sorted_lines(&out).len();
    assert_eq!(
        before, during,
        "windows were reported while the broker was away"
    );
    start_broker(&env);
    produce(&second);
    // The rest is read, then every partition becomes idle and the last windows close.
    let deadline = Instant::now() + Duration::from_secs(90);
    while sorted_lines(&out).len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = job.kill();
    let _ = job.wait();
    kafka_sh("stop");
    let got = sorted_lines(&out);
    let log = std::fs::read_to_string(dir.path().join("job.log")).unwrap_or_default();
    assert!(
        got == expected,
        "{} rows, expected {}; job log:\n{}",
        got.len(),
        expected.len(),
        &log[log.len().saturating_sub(3000)..]
    );
}

/// The Tamedia flow end to end: a topic of ~2 KB frames -> unique-users dataflow -> results topic
/// holds exactly the rows of the file replay (whose counts are checked against an independent
/// Python computation in tests/unique_users.rs).
#[test]
fn tamedia_frames_topic_to_unique_users_results_topic() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames.jsonl");
    generate(
        "frames",
        &frames,
        &[
            "--events",
            "6000",
            "--rate",
            "1000",
            "--seed",
            "11",
            "--disorder-ms",
            "2000",
        ],
    );
    let file_rows = dir.path().join("file.jsonl");
    streamstats(&[
        "run",
        "dataflows/unique-users.toml",
        "--input",
        frames.to_str().unwrap(),
        "--output",
        file_rows.to_str().unwrap(),
        "--dead-letter",
        "/dev/null",
    ]);
    let expected = sorted_lines(&file_rows);
    assert!(expected.len() >= 6, "every window label has a row");
    let (topic, results) = (unique("frames"), unique("unique-users"));
    replay_to(&frames, &topic, 3, &["--key", "uid"]);
    let (input, output) = (
        format!("kafka://{}/{topic}", broker()),
        format!("kafka://{}/{results}", broker()),
    );
    streamstats(&[
        "run",
        "dataflows/unique-users.toml",
        "--input",
        &input,
        "--until-end",
        "-w",
        "2",
        "--output",
        &output,
        "--dead-letter",
        "/dev/null",
    ]);
    let mut got: Vec<String> = read_topic(&results, Duration::from_secs(2))
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    got.sort();
    assert_rows(&got, &expected, "unique users from a frames topic");
}

/// SSE -> Kafka ingest: `replay sse+http://…` produces every event payload of the stream, across
/// dropped connections, exactly once, and stops at the stream's `end` event.
#[test]
fn replay_from_server_sent_events_produces_every_event_once() {
    use std::io::BufRead;
    let (_dir, input, _) = golden(3_000, 9);
    let mut server = Command::new(BIN)
        .args([
            "serve-sse",
            input.to_str().unwrap(),
            "--port",
            "0",
            "--drop-after",
            "700",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve-sse");
    let mut first = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first.trim().rsplit("http://").next().unwrap().to_string();
    let topic = unique("sse-ingest");
    let url = format!("kafka://{}/{topic}", broker());
    streamstats(&[
        "replay",
        &format!("sse+http://{address}"),
        "--output",
        &url,
        "--partitions",
        "2",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    // serve-sse splits each payload over two `data:` lines, which SSE joins with "\n" (JSON
    // whitespace); a file line itself never holds a raw newline.
    let mut got: Vec<String> = read_topic(&topic, Duration::from_secs(2))
        .into_iter()
        .map(|(_, _, v)| v.replace('\n', ""))
        .collect();
    got.sort();
    assert_eq!(
        got,
        sorted_lines(&input),
        "every line of the served file, once"
    );
}
