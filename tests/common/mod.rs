//! Helpers shared by the integration tests: run the binary, compare result rows.
#![allow(dead_code)] // each test crate uses a different subset

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_streamstats");

/// Runs the binary with `args`, panicking with its stderr when it fails.
pub fn streamstats(args: &[&str]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run streamstats");
    assert!(
        output.status.success(),
        "streamstats {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `streamstats generate KIND --out OUT EXTRA...`.
pub fn generate(kind: &str, out: &Path, extra: &[&str]) {
    let mut args = vec!["generate", kind, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    streamstats(&args);
}

/// Result rows of a run, sorted, as text lines.
pub fn sorted_lines(text: &[u8]) -> Vec<String> {
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
