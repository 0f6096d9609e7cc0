//! Session windows against an independent Python reference, at 1 and 4 workers and with two
//! processes; hand-made edge cases: exact-gap split, bridging merge, late record after emission.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::Write;

const GAP_MS: u64 = 60_000;
const BOUND_MS: u64 = 10_000;

#[test]
fn generated_sessions_equal_reference_at_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("heartbeats.jsonl");
    // 120k heartbeats at 100/s: ~400 concurrent sessions over ~20 minutes of event time,
    // disorder within the bound, a few late and malformed records.
    generate(
        "sessions",
        &input,
        &[
            "--events",
            "120000",
            "--rate",
            "100",
            "--seed",
            "7",
            "--disorder-ms",
            "2000",
            "--bound",
            "10s",
            "--late-fraction",
            "0.001",
            "--malformed-fraction",
            "0.001",
        ],
    );
    // Deterministic by seed.
    let again = dir.path().join("again.jsonl");
    let args = ["--events", "5000", "--rate", "100", "--seed", "7"];
    generate("sessions", &again, &args);
    let first = std::fs::read(&again).unwrap();
    generate("sessions", &again, &args);
    assert_eq!(
        first,
        std::fs::read(&again).unwrap(),
        "same seed, different heartbeats"
    );

    let (expected, stats) = reference_sessions(&input, GAP_MS, BOUND_MS);
    assert!(stats["split_keys"].as_u64().unwrap() > 5, "{stats}");
    assert!(stats["bridges"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["late"].as_u64().unwrap() > 0, "{stats}");
    assert!(expected.len() > 500, "{stats}");

    let flow = dataflow("sessions");
    for workers in ["1", "4"] {
        let out = streamstats(&[
            "run",
            &flow,
            "--input",
            input.to_str().unwrap(),
            "-w",
            workers,
            "--dead-letter",
            dir.path().join("dead.jsonl").to_str().unwrap(),
        ]);
        let got = canonical_rows(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(got.len(), expected.len(), "-w {workers}: row count");
        assert!(
            got == expected,
            "-w {workers}: rows differ from the reference"
        );
    }

    let args = ["run", &flow, "--input", input.to_str().unwrap()];
    let (outputs, _) = run_cluster(dir.path(), 2, 2, &args);
    let got: BTreeSet<String> = outputs.iter().flat_map(|o| canonical_file(o)).collect();
    assert!(
        got == expected,
        "two processes: rows differ from the reference"
    );
}

#[test]
fn exact_gap_splits_bridges_merge_and_late_records_never_add_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("edges.jsonl");
    let base: u64 = 1_600_000_000_000;
    let mut f = std::fs::File::create(&input).unwrap();
    let mut event = |session: &str, offset: u64, device: &str| {
        writeln!(
            f,
            r#"{{"session_id":"{session}","user_id":"u-{session}","program_id":"p1","device":"{device}","time":{}}}"#,
            base + offset
        )
        .unwrap();
    };
    // Times rise in arrival order except where disorder is intended, so only one record is late.
    // exact: a silence of exactly 60 s splits.
    event("exact", 0, "tv");
    event("exact", 60_000, "tv");
    // under: 59.999 s does not.
    event("under", 61_000, "tv");
    event("under", 120_999, "tv");
    // bridge: 130 s and 195 s are two sessions until 188 s arrives (on time: 195 - 188 < 10)
    // and joins them; carried fields come from the earliest event.
    event("bridge", 130_000, "tv");
    event("bridge", 195_000, "phone");
    event("bridge", 188_000, "web");
    // late: once the clock is far ahead, an event that would extend its (emitted) session is
    // late: a dead letter, never a second or changed row.
    event("late", 200_000, "tv");
    event("clock", 400_000, "tv");
    event("late", 230_000, "tv");
    drop(f);

    let (expected, stats) = reference_sessions(&input, GAP_MS, BOUND_MS);
    assert_eq!(stats["late"], 1, "{stats}");
    assert_eq!(stats["bridges"], 1, "{stats}");
    let dead = dir.path().join("dead.jsonl");
    for workers in ["1", "4"] {
        let out = streamstats(&[
            "run",
            &dataflow("sessions"),
            "--input",
            input.to_str().unwrap(),
            "-w",
            workers,
            "--dead-letter",
            dead.to_str().unwrap(),
        ]);
        let got = canonical_rows(&String::from_utf8_lossy(&out.stdout));
        assert!(
            got == expected,
            "-w {workers}: {got:#?}\nexpected {expected:#?}"
        );
        let count = |id: &str| {
            got.iter()
                .filter(|r| r.contains(&format!("\"{id}\"")))
                .count()
        };
        assert_eq!(count("exact"), 2);
        assert_eq!(count("under"), 1);
        assert_eq!(count("bridge"), 1);
        assert_eq!(count("late"), 1);
        let bridge = got.iter().find(|r| r.contains("\"bridge\"")).unwrap();
        assert!(
            bridge.contains("\"device\":\"tv\"") && bridge.contains("\"events\":3"),
            "{bridge}"
        );
        let dead = std::fs::read_to_string(&dead).unwrap();
        assert_eq!(dead.lines().count(), 1, "{dead}");
        assert!(dead.contains("late"), "{dead}");
    }
}
