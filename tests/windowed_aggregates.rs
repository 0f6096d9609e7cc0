//! Sliding windows and numeric aggregates against an independent brute-force computation
//! (`tests/window_reference.py`), CSV input including the real stock sample, and page-view URL
//! extraction. Data is generated at test time.

mod common;

use common::{assert_same_rows, generate, parse_rows, reference, sorted_output_lines, streamstats};
use serde_json::{json, Value};
use std::path::Path;

const STOCK_COLUMNS: [&str; 6] = [
    "symbol", "side", "price", "quantity", "epoch_ms", "datetime",
];

fn stock_reference(input: &Path) -> (Vec<Value>, u64) {
    reference(&json!({
        "input": input, "format": "csv", "columns": STOCK_COLUMNS, "trim": true,
        "time": "epoch_ms", "group_by": ["symbol"], "size": 300_000, "slide": 60_000,
        "aggregates": [["avg_price", "avg", "price"], ["min_price", "min", "price"],
                       ["max_price", "max", "price"], ["volume", "sum", "quantity"],
                       ["trades", "count", null]],
    }))
}

fn run_stock(input: &Path, workers: &str, dead: &Path) -> Vec<u8> {
    streamstats(&[
        "run",
        "dataflows/stock-moving-average.toml",
        "--input",
        input.to_str().unwrap(),
        "-w",
        workers,
        "--chunk-size",
        "64KiB",
        "--dead-letter",
        dead.to_str().unwrap(),
    ])
    .stdout
}

#[test]
fn stock_moving_average_matches_the_reference_for_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trades.csv");
    let dead = dir.path().join("dead.jsonl");
    generate(
        "trades",
        &input,
        &[
            "--events",
            "30000",
            "--rate",
            "25",
            "--disorder-ms",
            "3000",
            "--malformed-fraction",
            "0.01",
            "--seed",
            "7",
        ],
    );
    let (expected, malformed) = stock_reference(&input);
    assert!(malformed > 100, "the data should hold malformed lines");
    let one = run_stock(&input, "1", &dead);
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap().lines().count() as u64,
        malformed
    );
    assert_same_rows(&parse_rows(&one), &expected);
    let two = run_stock(&input, "2", &dead);
    assert_eq!(
        sorted_output_lines(&one),
        sorted_output_lines(&two),
        "-w 1 and -w 2 differ"
    );
}

#[test]
fn real_stock_sample_matches_the_reference() {
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/stocks-sample.csv");
    if !sample.is_file() {
        eprintln!("skipped: {} is absent", sample.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let got = parse_rows(&run_stock(&sample, "1", &dead));
    let (expected, malformed) = stock_reference(&sample);
    assert_eq!(malformed, 0);
    assert!(!expected.is_empty());
    assert_same_rows(&got, &expected);
}

#[test]
fn csv_columns_can_come_from_a_header_row() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, with_header) = (dir.path().join("plain.csv"), dir.path().join("header.csv"));
    generate("trades", &plain, &["--events", "3000", "--rate", "10"]);
    let body = std::fs::read_to_string(&plain).unwrap();
    std::fs::write(&with_header, format!("{}\n{body}", STOCK_COLUMNS.join(","))).unwrap();
    let dataflow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/stock-moving-average.toml"),
    )
    .unwrap()
    .replace("header = false", "header = true")
    .lines()
    .filter(|l| !l.starts_with("columns"))
    .collect::<Vec<_>>()
    .join("\n");
    let header_dataflow = dir.path().join("header.toml");
    std::fs::write(&header_dataflow, dataflow).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let expected = sorted_output_lines(&run_stock(&plain, "1", &dead));
    let got = streamstats(&[
        "run",
        header_dataflow.to_str().unwrap(),
        "--input",
        with_header.to_str().unwrap(),
        "-w",
        "2",
        "--dead-letter",
        dead.to_str().unwrap(),
    ]);
    assert_eq!(sorted_output_lines(&got.stdout), expected);
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap(),
        "",
        "the header row is no dead letter"
    );
    assert!(String::from_utf8_lossy(&got.stderr).contains("3000 records"));
}

const EDGES: &str = r#"
name = "edges"
group_by = ["k"]
[time]
field = "ts"
unit = "ms"
max_out_of_orderness = "1s"
[[windows]]
type = "sliding"
size = "300ms"
slide = "120ms"
[[aggregates]]
name = "n"
fn = "count"
[[aggregates]]
name = "total"
fn = "sum"
field = "v"
[[aggregates]]
name = "mean"
fn = "avg"
field = "v"
[[aggregates]]
name = "low"
fn = "min"
field = "v"
[[aggregates]]
name = "high"
fn = "max"
field = "v"
"#;

#[test]
fn window_edges_missing_values_and_malformed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (dataflow, input, dead) = (
        dir.path().join("edges.toml"),
        dir.path().join("in.jsonl"),
        dir.path().join("dead.jsonl"),
    );
    std::fs::write(&dataflow, EDGES).unwrap();
    // Times on and next to pane (60 ms) and window (120 ms slide) boundaries, values missing,
    // null, numeric strings, negative, and not numbers at all.
    let mut lines = Vec::new();
    let values = [
        json!(1.5),
        Value::Null,
        json!("2.25"),
        json!(-4),
        json!("abc"),
        json!(true),
    ];
    for (i, ts) in [0u64, 59, 60, 119, 120, 239, 240, 299, 300, 359, 360, 1_000]
        .iter()
        .enumerate()
    {
        let mut record = json!({"ts": ts, "k": if i % 3 == 0 { "a" } else { "b" }});
        if i % 7 != 6 {
            record["v"] = values[i % values.len()].clone();
        }
        lines.push(record.to_string());
    }
    // A key whose values are all missing: avg, min and max are null, sum 0.
    lines.push(json!({"ts": 2_000, "k": "empty"}).to_string());
    lines.push(json!({"ts": 2_001, "k": "empty", "v": null}).to_string());
    lines.push(json!({"ts": 4_930, "k": "a", "v": 3}).to_string());
    std::fs::write(&input, lines.join("\n")).unwrap();
    let got = parse_rows(
        &streamstats(&[
            "run",
            dataflow.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--dead-letter",
            dead.to_str().unwrap(),
        ])
        .stdout,
    );
    let (expected, malformed) = reference(&json!({
        "input": input, "format": "jsonl", "time": "ts", "group_by": ["k"], "size": 300,
        "slide": 120, "aggregates": [["n", "count", null], ["total", "sum", "v"],
        ["mean", "avg", "v"], ["low", "min", "v"], ["high", "max", "v"]],
    }));
    assert_same_rows(&got, &expected);
    let dead_letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_letters.lines().count() as u64, malformed);
    assert!(dead_letters.contains("`v` is not a number (aggregate `total`)"));
    // The lone record at 4930 lies in ceil(300 / 120) = 3 windows: 4680, 4800 and 4920.
    let lone: Vec<_> = got
        .iter()
        .filter(|r| r["window_end"].as_u64() > Some(4_000))
        .collect();
    assert_eq!(lone.len(), 3);
    assert_eq!(
        lone.iter()
            .map(|r| r["window_start"].as_u64().unwrap())
            .max(),
        Some(4_920)
    );
    let empty: Vec<_> = got.iter().filter(|r| r["k"] == "empty").collect();
    assert!(empty
        .iter()
        .all(|r| r["mean"].is_null() && r["total"] == 0 && r["n"] == 2));
}

#[test]
fn page_views_by_path_and_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let (input, dead) = (
        dir.path().join("views.jsonl"),
        dir.path().join("dead.jsonl"),
    );
    generate(
        "page-views",
        &input,
        &[
            "--events",
            "20000",
            "--rate",
            "100",
            "--malformed-fraction",
            "0.02",
        ],
    );
    let got = parse_rows(
        &streamstats(&[
            "run",
            "dataflows/page-views.toml",
            "--input",
            input.to_str().unwrap(),
            "-w",
            "2",
            "--dead-letter",
            dead.to_str().unwrap(),
        ])
        .stdout,
    );
    let (expected, malformed) = reference(&json!({
        "input": input, "format": "jsonl", "time": "time",
        "group_by": ["path", "utm_source", "utm_medium"], "size": 60_000, "slide": 60_000,
        "aggregates": [["views", "count", null], ["unique_users", "count_distinct", "anonymous_user_id"]],
        "required": ["anonymous_user_id", "url"],
        "derive": {"path": ["url", "url_path"], "utm_source": ["url", "query:utm_source"],
                   "utm_medium": ["url", "query:utm_medium"]},
    }));
    assert!(malformed > 100);
    assert_same_rows(&got, &expected);
    let dead_letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_letters.lines().count() as u64, malformed);
    assert!(dead_letters.contains("is not a URL"));
    assert!(dead_letters.contains("missing required field `anonymous_user_id`"));
}

/// Windows that tile time at several sizes: the engine builds the hour from closed 5-minute
/// windows and the 5- and 7-minute windows from closed minutes (`window::feeders`); every one
/// must equal the brute-force reference computed from the records.
const NESTED: &str = r#"
name = "nested"
group_by = ["symbol"]
[input]
format = "csv"
columns = ["symbol", "side", "price", "quantity", "epoch_ms", "datetime"]
trim = true
[time]
field = "epoch_ms"
unit = "ms"
max_out_of_orderness = "5s"
[[windows]]
type = "calendar"
unit = "hour"
label = "1h"
[[windows]]
type = "tumbling"
size = "7m"
label = "7m"
[[windows]]
type = "tumbling"
size = "5m"
label = "5m"
[[windows]]
type = "tumbling"
size = "1m"
label = "1m"
[[aggregates]]
name = "trades"
fn = "count"
[[aggregates]]
name = "volume"
fn = "sum"
field = "quantity"
[[aggregates]]
name = "avg_price"
fn = "avg"
field = "price"
[[aggregates]]
name = "min_price"
fn = "min"
field = "price"
[[aggregates]]
name = "max_price"
fn = "max"
field = "price"
[[aggregates]]
name = "prices"
fn = "count_distinct"
field = "price"
"#;

#[test]
fn nested_windows_built_from_finer_ones_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (dataflow, input, dead) = (
        dir.path().join("nested.toml"),
        dir.path().join("trades.csv"),
        dir.path().join("dead.jsonl"),
    );
    std::fs::write(&dataflow, NESTED).unwrap();
    // About three hours of trades, out of order within 3 s, with malformed lines.
    generate(
        "trades",
        &input,
        &[
            "--events",
            "20000",
            "--rate",
            "2",
            "--disorder-ms",
            "3000",
            "--malformed-fraction",
            "0.01",
            "--seed",
            "11",
        ],
    );
    let run = |workers: &str| {
        streamstats(&[
            "run",
            dataflow.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "-w",
            workers,
            "--chunk-size",
            "64KiB",
            "--dead-letter",
            dead.to_str().unwrap(),
        ])
        .stdout
    };
    let one = run("1");
    let rows = parse_rows(&one);
    let mut hours = 0;
    for (label, size) in [
        ("1m", 60_000),
        ("5m", 300_000),
        ("7m", 420_000),
        ("1h", 3_600_000),
    ] {
        let (expected, malformed) = reference(&json!({
            "input": input, "format": "csv", "columns": STOCK_COLUMNS, "trim": true,
            "time": "epoch_ms", "group_by": ["symbol"], "size": size, "slide": size,
            "aggregates": [["trades", "count", null], ["volume", "sum", "quantity"],
                           ["avg_price", "avg", "price"], ["min_price", "min", "price"],
                           ["max_price", "max", "price"], ["prices", "count_distinct", "price"]],
        }));
        assert!(malformed > 100, "the data should hold malformed lines");
        let got: Vec<Value> = rows
            .iter()
            .filter(|r| r["window"] == label)
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("window");
                r
            })
            .collect();
        assert_same_rows(&got, &expected);
        if label == "1h" {
            hours = expected
                .iter()
                .map(|r| r["window_start"].as_u64())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
        }
    }
    assert!(
        hours >= 3,
        "the data should span several hours, not {hours}"
    );
    assert_eq!(
        sorted_output_lines(&one),
        sorted_output_lines(&run("2")),
        "-w 1 and -w 2 differ"
    );
}
