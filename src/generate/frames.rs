//! Frames in the shape of the Tamedia user stream: ~2 KB JSON objects of nested filler with one
//! root `ts` (integer unix seconds) and one root `uid` (19 lowercase hex characters) at random
//! positions.
//!
//! The filler is built to trap careless parsers: nested objects hold `ts` and `uid` keys (also
//! written with `\u` escapes), strings carry `\t \n \r \b \f \\ \/ \"` and `\u` escapes and
//! Cyrillic UTF-8, root filler keys repeat, and there are numbers, booleans, nulls and empty
//! containers. Uids are drawn uniformly from `POPULATION` users: 60,000 frames (one minute at
//! 1,000 frames per second) then hold about 45,000 distinct uids.

use super::EventShape;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

/// Number of distinct users the uids are drawn from.
pub const POPULATION: u64 = 100_000;

/// Root and nested filler keys; few enough that root keys repeat within a frame.
const KEYS: [&str; 16] = [
    "lorem", "ipsum", "dolor", "sit", "amet", "magna", "veniam", "nostrud", "cillum", "fugiat",
    "pariatur", "culpa", "officia", "mollit", "k\\\"ey", "tsx",
];
/// String values, already JSON-escaped.
const TEXTS: [&str; 10] = [
    "streams\\tare\\tnever\\tfinished\\tand\\tnever\\tquite\\tordered",
    "windows\\nclose\\nwhen\\nthe\\nfrontier\\npasses\\ntheir\\nend",
    "late\\rdata\\rgoes\\rto\\rthe\\rdead\\rletter\\rfile",
    "sketches\\bmerge\\bby\\btaking\\bthe\\bmaximum",
    "watermarks\\fmove\\fforward\\fonly",
    "back\\\\slashes\\\\and\\\\more\\\\back\\\\slashes",
    "paths\\/with\\/escaped\\/solidus\\/characters",
    "quotes \\\"inside\\\" strings \\\"are\\\" fine",
    "Мороз и солнце; день чудесный! Ещё ты дремлешь, друг прелестный",
    "caf\\u00e9 na\\u00efve \\u0442\\u0435\\u043a\\u0441\\u0442 and plain text",
];

pub struct FramesShape {
    /// Target size of the next frame in bytes.
    target: usize,
}

impl FramesShape {
    pub fn new() -> Self {
        FramesShape { target: 2_000 }
    }
}

impl Default for FramesShape {
    fn default() -> Self {
        Self::new()
    }
}

/// The uid of user `index`: 19 lowercase hex characters (76 bits of a hash of the index).
pub fn uid_of(index: u64) -> String {
    let bits = xxhash_rust::xxh3::xxh3_128(&index.to_le_bytes()) & ((1u128 << 76) - 1);
    format!("{bits:019x}")
}

fn write_text(rng: &mut ChaCha8Rng, out: &mut String) {
    out.push('"');
    out.push_str(TEXTS[rng.gen_range(0..TEXTS.len())]);
    out.push('"');
}

/// A nested value: containers up to `depth` levels, with trap keys inside objects.
fn write_nested(rng: &mut ChaCha8Rng, depth: u32, out: &mut String) {
    match rng.gen_range(0..10) {
        0 | 1 if depth > 0 => {
            out.push('{');
            for i in 0..rng.gen_range(0..5) {
                if i > 0 {
                    out.push(',');
                }
                match rng.gen_range(0..6) {
                    0 => {
                        let _ = write!(out, "\"ts\":{}", rng.gen_range(0..2_000_000_000u64));
                    }
                    1 => {
                        let _ = write!(out, "\"uid\":\"{}\"", uid_of(rng.gen_range(0..POPULATION)));
                    }
                    2 => out.push_str("\"\\u0075id\":\"escaped-uid-trap\""),
                    3 => out.push_str("\"t\\u0073\":\"escaped ts trap\""),
                    _ => {
                        let _ = write!(out, "\"{}\":", KEYS[rng.gen_range(0..KEYS.len())]);
                        write_nested(rng, depth - 1, out);
                    }
                }
            }
            out.push('}');
        }
        2 | 3 if depth > 0 => {
            out.push('[');
            for i in 0..rng.gen_range(0..5) {
                if i > 0 {
                    out.push(',');
                }
                write_nested(rng, depth - 1, out);
            }
            out.push(']');
        }
        4 => {
            let _ = write!(out, "{}", rng.gen_range(-1_000..1_000_000));
        }
        5 => {
            let _ = write!(out, "{:.6}", rng.gen::<f64>() * 100.0);
        }
        6 => out.push_str(if rng.gen() { "true" } else { "false" }),
        7 => out.push_str(["null", "{}", "[]"][rng.gen_range(0..3)]),
        _ => write_text(rng, out),
    }
}

impl EventShape for FramesShape {
    fn write_event(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        let begin = out.len();
        let uid = uid_of(rng.gen_range(0..POPULATION));
        // The root ts and uid go in where the frame first reaches these sizes.
        let mut ts_at = Some(rng.gen_range(0..self.target));
        let mut uid_at = Some(rng.gen_range(0..self.target));
        out.push('{');
        while out.len() - begin < self.target || ts_at.is_some() || uid_at.is_some() {
            if out.len() > begin + 1 {
                out.push(',');
            }
            let size = out.len() - begin;
            if ts_at.is_some_and(|at| size >= at) {
                ts_at = None;
                let _ = write!(out, "\"ts\":{}", ts_ms / 1000);
            } else if uid_at.is_some_and(|at| size >= at) {
                uid_at = None;
                let _ = write!(out, "\"uid\":\"{uid}\"");
            } else {
                let _ = write!(out, "\"{}\":", KEYS[rng.gen_range(0..KEYS.len())]);
                write_nested(rng, 3, out);
            }
        }
        out.push('}');
        self.target = rng.gen_range(1_700..2_300);
    }

    /// Records the dataflow must dead-letter: no root uid, a string or fractional ts, a cut frame.
    fn write_malformed(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        let seconds = ts_ms / 1000;
        let uid = uid_of(rng.gen_range(0..POPULATION));
        match rng.gen_range(0..5) {
            0 => {
                let _ = write!(out, "{{\"ts\":{seconds},\"nested\":{{\"uid\":\"{uid}\"}}}}");
            }
            1 => {
                let _ = write!(out, "{{\"uid\":\"{uid}\",\"ts\":\"{seconds}\"}}");
            }
            2 => {
                let _ = write!(out, "{{\"uid\":\"{uid}\",\"ts\":{seconds}.5}}");
            }
            3 => {
                let _ = write!(out, "{{\"uid\":\"{uid}\",\"lorem\":[1,2],\"ts\":{seconds}");
            }
            _ => {
                let _ = write!(out, "{{\"uid\":\"{uid}\",\"nested\":{{\"ts\":{seconds}}}}}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn frames_are_json_objects_of_about_2kb_with_root_ts_and_uid() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut shape = FramesShape::new();
        for i in 0..200u64 {
            let mut line = String::new();
            shape.write_event(&mut rng, 1_468_244_384_000 + i * 1000, &mut line);
            assert!((1_700..3_500).contains(&line.len()), "{}", line.len());
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["ts"], 1_468_244_384 + i);
            let uid = value["uid"].as_str().unwrap();
            assert_eq!(uid.len(), 19);
            assert!(uid
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }
}
