//! Field extraction: pulls the few root-level fields a dataflow needs out of one input record.
//!
//! Contract: `JsonExtractor::extract` fills `out[i]` with the value of root key `fields[i]` (or
//! `None` when absent) and never looks at nested keys, so a nested `ts` or `uid` cannot shadow the
//! root one. A repeated root key keeps its last value (as JavaScript and serde_json's `Value` do).
//! Anything that is not a JSON object is an `Err` with a short reason for the dead-letter record.
//! Values borrow from the input line when they contain no escapes.
//!
//! `JsonExtractor::extract` runs the root-level scanner in `scan`, which finds strings and
//! brackets with the 64-byte block masks of `blocks` (SIMD where the CPU has it: `Kernel`);
//! `extract_with_serde_json` is the serde_json reference it is fuzz-tested against (and
//! benchmarked against by `examples/extract_throughput.rs`).
//!
//! `Extractor` picks the record format a dataflow declares (`[input] format`): JSON objects
//! (above) or CSV lines (`csv_line`); `derive` computes declared derived fields afterwards.

mod blocks;
pub mod csv_line;
pub mod derive;
mod scan;

pub use blocks::Kernel;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One scalar field value. Objects and arrays are not scalars; they extract as `Scalar::Nested`.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Nested,
}

impl Scalar<'_> {
    /// Appends this value as JSON text; used to build group keys that paste straight into output.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Scalar::Null | Scalar::Nested => out.push_str("null"),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Scalar::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Scalar::Float(f) => out.push_str(
                &serde_json::Number::from_f64(*f).map_or("null".to_string(), |n| n.to_string()),
            ),
            Scalar::Str(s) => write_json_string(out, s),
        }
    }

    /// The value as text, for filters and distinct counts (strings as-is, numbers canonical).
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s),
            other => {
                let mut text = String::new();
                other.write_json(&mut text);
                Cow::Owned(text)
            }
        }
    }

    /// The value as a number, when it is one (numeric strings count: CSV and some feeds quote numbers).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_json_string(out: &mut String, text: &str) {
    if needs_no_escape(text.as_bytes()) {
        // Fast path, no allocation: nothing to escape (the common case for keys and labels).
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // serde_json's escaping is correct for every control character and quote.
        out.push_str(&serde_json::to_string(text).expect("strings always serialize"));
    }
}

/// True when `bytes` hold no `"`, `\\` or control character, eight bytes at a time (group keys
/// are built from a few short strings per record, so this check is on the hot path).
fn needs_no_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A high bit per byte of `word` below `n` (n <= 128; bytes >= 0x80 never count).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let zero = |word: u64| below(word, 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let special = below(word, 0x20)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Extracted field values, indexed like the extractor's field list (inline: no allocation).
pub type Fields<'a> = smallvec::SmallVec<[Option<Scalar<'a>>; 8]>;

/// What an input line turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Record,
    /// A CSV header row: not a record, skipped.
    Header,
}

/// The record parser of a dataflow's input format.
pub enum Extractor {
    Json(JsonExtractor),
    Csv(csv_line::CsvExtractor),
}

impl Extractor {
    /// The extractor for `spec`; fails when a field the dataflow reads is not a CSV column.
    pub fn for_spec(spec: &crate::spec::Spec) -> anyhow::Result<Self> {
        use crate::spec::InputFormat;
        Ok(match &spec.input {
            InputFormat::Jsonl => Extractor::Json(JsonExtractor::new(spec.fields.clone())),
            InputFormat::Csv {
                columns,
                header,
                trim,
            } => {
                if columns.is_empty() {
                    anyhow::bail!("input.columns: not declared, and no header row was read");
                }
                let mut positions = Vec::new();
                for (i, name) in spec.fields.iter().enumerate() {
                    let position = columns.iter().position(|c| c == name);
                    let derived = spec.derived.iter().any(|d| d.target == i);
                    if position.is_none() && !derived {
                        anyhow::bail!("input.columns: the dataflow reads `{name}`, which is not a column ({})", columns.join(", "));
                    }
                    positions.push(position);
                }
                Extractor::Csv(csv_line::CsvExtractor::new(
                    columns.clone(),
                    positions,
                    *trim,
                    *header,
                ))
            }
        })
    }

    /// Fills `out` (one slot per dataflow field) from `line`.
    pub fn extract<'a>(&self, line: &'a [u8], out: &mut Fields<'a>) -> Result<Line, String> {
        match self {
            Extractor::Json(json) => json.extract(line, out).map(|()| Line::Record),
            Extractor::Csv(csv) => csv.extract(line, out),
        }
    }
}

/// Extracts root-level fields from a JSON object line.
pub struct JsonExtractor {
    fields: Vec<String>,
    keys: scan::Keys,
    kernel: Kernel,
}

impl JsonExtractor {
    pub fn new(fields: Vec<String>) -> Self {
        Self::with_kernel(fields, Kernel::detect())
    }

    /// An extractor classifying bytes with `kernel`, which must be one of `Kernel::available()`
    /// (tests and benchmarks compare them).
    pub fn with_kernel(fields: Vec<String>, kernel: Kernel) -> Self {
        assert!(
            Kernel::available().contains(&kernel),
            "{kernel:?}: not on this CPU"
        );
        JsonExtractor {
            keys: scan::Keys::new(&fields),
            fields,
            kernel,
        }
    }

    /// Fills `out` (resized to the field count) from `line`; see the module contract.
    pub fn extract<'a>(&self, line: &'a [u8], out: &mut Fields<'a>) -> Result<(), String> {
        out.clear();
        // Cheaper than `resize` or `extend` (which reserve, and clone or iterate, per call).
        for _ in 0..self.fields.len() {
            out.push(None);
        }
        scan::extract(&self.keys, self.kernel, line, out)
    }
}

impl JsonExtractor {
    /// The same extraction through serde_json (the whole line is deserialized, unwanted values
    /// as `IgnoredAny`): the reference `extract` is fuzz-tested and benchmarked against.
    pub fn extract_with_serde_json<'a>(
        &self,
        line: &'a [u8],
        out: &mut Fields<'a>,
    ) -> Result<(), String> {
        out.clear();
        out.resize(self.fields.len(), None);
        let mut de = serde_json::Deserializer::from_slice(line);
        RootSeed {
            fields: &self.fields,
            out,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| format!("invalid JSON object: {e}"))
    }
}

struct RootSeed<'f, 'o, 'a> {
    fields: &'f [String],
    out: &'o mut [Option<Scalar<'a>>],
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RootSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(RootKey(key)) = map.next_key::<RootKey<'de>>()? {
            match self.fields.iter().position(|f| *f == key) {
                Some(i) => self.out[i] = Some(map.next_value::<ScalarValue<'de>>()?.0),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A root key, borrowed from the line unless it contains escapes (serde's `Cow` always copies).
struct RootKey<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for RootKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(RootKeyVisitor)
    }
}

struct RootKeyVisitor;

impl<'de> Visitor<'de> for RootKeyVisitor {
    type Value = RootKey<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(RootKey(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RootKey(Cow::Owned(v.to_owned())))
    }
}

struct ScalarValue<'a>(Scalar<'a>);

impl<'de> de::Deserialize<'de> for ScalarValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = ScalarValue<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ScalarValue(
            i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int),
        ))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Float(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(ScalarValue(Scalar::Str(Cow::Owned(v))))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ScalarValue(Scalar::Nested))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ScalarValue(Scalar::Nested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(line: &str, fields: &[&str]) -> Result<Vec<Option<Scalar<'static>>>, String> {
        let ex = JsonExtractor::new(fields.iter().map(|s| s.to_string()).collect());
        let line: &'static str = Box::leak(line.to_string().into_boxed_str());
        let mut out = Fields::new();
        ex.extract(line.as_bytes(), &mut out)
            .map(|()| out.into_vec())
    }

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let alphabet = [
            'a', 'Z', '0', ' ', '"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é', 'ж', '😀',
        ];
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let mut out = String::from("x");
            write_json_string(&mut out, &text);
            assert_eq!(out[1..], serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn root_fields_only() {
        let out = extract(
            r#"{"a":{"ts":1,"uid":"x"},"uid":"r\"oot","b":[{"ts":2}],"ts":7}"#,
            &["ts", "uid"],
        )
        .unwrap();
        assert_eq!(out[0], Some(Scalar::Int(7)));
        assert_eq!(out[1], Some(Scalar::Str("r\"oot".into())));
    }

    #[test]
    fn repeated_key_last_wins_and_missing_is_none() {
        let out = extract(r#"{"k":1,"k":2}"#, &["k", "absent"]).unwrap();
        assert_eq!(out, vec![Some(Scalar::Int(2)), None]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(extract("busted data", &["k"]).is_err());
        assert!(extract("[1,2]", &["k"]).is_err());
        assert!(extract(r#"{"k":1} trailing"#, &["k"]).is_err());
        assert!(extract(r#"{"k":1"#, &["k"]).is_err());
        assert!(JsonExtractor::new(vec!["k".into()])
            .extract(b"{\"k\":\"\xff\"}", &mut Fields::new())
            .is_err());
    }

    /// Both extractors on one line. Whatever serde_json accepts the scanner accepts with the same
    /// values; the scanner may accept more only when `nested_leniency` (the line's defect lies
    /// between tokens inside a nested value). Returns whether the scanner accepted.
    /// Every byte-classification kernel the CPU has must give the same answer.
    fn assert_agree_or_lenient(line: &[u8], fields: &[&str], nested_leniency: bool) -> bool {
        let fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        let reference = JsonExtractor::new(fields.clone());
        let mut b = Fields::new();
        let rb = reference.extract_with_serde_json(line, &mut b);
        let shown = String::from_utf8_lossy(line);
        let mut first: Option<(bool, Fields)> = None;
        for kernel in Kernel::available() {
            let extractor = JsonExtractor::with_kernel(fields.clone(), kernel);
            // Reused, as the pipeline does: earlier values must not linger.
            let mut a = Fields::new();
            let _ = extractor.extract(br#"{"ts":"old","uid":"old"}"#, &mut a);
            let ra = extractor.extract(line, &mut a);
            if rb.is_ok() || !nested_leniency {
                assert_eq!(
                    ra.is_ok(),
                    rb.is_ok(),
                    "{kernel:?}: {ra:?} vs {rb:?} on {shown}"
                );
            }
            if ra.is_ok() && rb.is_ok() {
                assert_eq!(a, b, "{kernel:?} on {shown}");
            }
            match &first {
                None => first = Some((ra.is_ok(), a)),
                Some(seen) => assert_eq!(seen, &(ra.is_ok(), a), "{kernel:?} on {shown}"),
            }
        }
        first.expect("at least the portable kernel").0
    }

    fn assert_agree(line: &[u8], fields: &[&str]) {
        assert_agree_or_lenient(line, fields, false);
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_edge_cases() {
        let cases: &[&str] = &[
            r#"{}"#,
            r#" { "ts" : 1 , "uid" : "a" } "#,
            r#"{"t\u0073":5,"uid":"x"}"#,
            r#"{"ts":-0,"uid":null}"#,
            r#"{"ts":12345678901234567890,"uid":true}"#,
            r#"{"ts":-9223372036854775808,"uid":false}"#,
            r#"{"ts":1.5e3,"uid":[1,{"uid":2}]}"#,
            r#"{"ts":0,"uid":-1}"#,
            r#"{"ts":123456789012345678,"uid":-123456789012345678}"#,
            r#"{"ts":1234567890123456789,"uid":-1234567890123456789}"#,
            r#"{"ts":-00}"#,
            r#"{"ts":0.5,"uid":-0.0}"#,
            r#"{"ts":1e5,"uid":-2E-3}"#,
            r#"{"ts":12x}"#,
            r#"{"ts":-,"uid":1}"#,
            r#"{"ts":1 }"#,
            r#"{"ts":1E+2,"uid":{"a":[]}}"#,
            r#"{"ts":01}"#,
            r#"{"ts":1.}"#,
            r#"{"ts":.5}"#,
            r#"{"ts":-}"#,
            r#"{"ts":1,}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"uid":"\ud800"}"#,
            r#"{"uid":"\ud83d\ude00 caf\u00e9 Мороз"}"#,
            r#"{"a":tru}"#,
            r#"{"a":nulll}"#,
            r#"{"a":1}}"#,
            r#"{"a":1"#,
            r#"{"a":"1"#,
            r#"{"a":1 "b":2}"#,
            r#"{a:1}"#,
            "",
            "   ",
            "[]",
            "\"ts\"",
            "{\"a\":\"tab\there\"}",
            "{\"uid\":\"del\u{7f}ok\"}",
        ];
        for case in cases {
            assert_agree(case.as_bytes(), &["ts", "uid"]);
        }
        // Defects between tokens of nested values and inside nested strings: accepted by design.
        for case in [
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":{"b":"\x"}}"#,
            "{\"a\":[\"\u{1}\"]}",
        ] {
            assert!(assert_agree_or_lenient(case.as_bytes(), &["ts"], true));
        }
        // Defects the scanner still finds inside nested values.
        for case in [
            r#"{"a":[1}"#,
            r#"{"a":{"b":"\"}}"#,
            r#"{"a":["]"]"#,
            r#"{"a":[[]"#,
        ] {
            assert_agree(case.as_bytes(), &["ts"]);
        }
        assert_agree(b"{\"uid\":\"\xff\"}", &["uid"]);
        assert_agree(b"{\"skip\":\"\xff\",\"uid\":\"ok\"}", &["uid"]);
        assert_agree(b"{\"\xff\":1}", &["uid"]);
        for depth in [1, 63, 64, 65, 127, 128, 129, 100_000] {
            let line = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
            assert_agree(line.as_bytes(), &["a"]);
            let line = format!(
                "{{\"a\":{}1{}}}",
                "{\"k\":".repeat(depth),
                "}".repeat(depth)
            );
            assert_agree(line.as_bytes(), &["k"]);
        }
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_mutated_frames() {
        use crate::generate::{frames::FramesShape, EventShape};
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut shape = FramesShape::new();
        const NOISE: &[u8] = b"{}[]\",:\\ \t\n0-.eE+utfn\x01\x7f\xd0\xff";
        for i in 0..3_000u64 {
            let mut line = String::new();
            shape.write_event(&mut rng, 1_468_244_384_000 + i, &mut line);
            let mut line = line.into_bytes();
            assert_agree(&line, &["ts", "uid"]);
            // A cut frame is always rejected, by both.
            let cut = &line[..rng.gen_range(0..line.len())];
            assert!(!assert_agree_or_lenient(cut, &["ts", "uid"], false));
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..line.len());
                match rng.gen_range(0..3) {
                    0 => {
                        line.remove(at);
                    }
                    1 => line.insert(at, NOISE[rng.gen_range(0..NOISE.len())]),
                    _ => line[at] = NOISE[rng.gen_range(0..NOISE.len())],
                }
            }
            assert_agree_or_lenient(&line, &["ts", "uid", "lorem"], true);
        }
    }

    /// `text` placed at every offset around the first two block boundaries (64 and 128), by
    /// padding the root object with a skipped string before it.
    fn at_block_boundaries(text: &str) -> impl Iterator<Item = String> + '_ {
        (40..140).map(move |pad| format!(r#"{{"pad":"{}",{text}}}"#, "p".repeat(pad)))
    }

    #[test]
    fn escapes_and_backslash_runs_straddle_blocks() {
        let members = [
            r#""uid":"a\\\"b\\\\\\\\\"c\"""#,
            r#""uid":"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\""#,
            r#""uid":"\u00e9\u0442\"\\\/\b\f\n\r\t","ts":1"#,
            r#""x":["\\\\\\\"]", "\\", "\"\\\\"],"uid":"ok\\""#,
            r#""x":{"k\"}":"\\\\\\\\}\\\\\\\\\"{"},"uid":"v""#,
            r#""uid":"bad \q escape""#,
            r#""uid":"bad \u12G4 escape""#,
            r#""uid":"cut \u12"#,
            r#""uid":"raw	tab""#,
            r#""x":"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\","uid":1"#,
        ];
        for member in members {
            for line in at_block_boundaries(member) {
                assert_agree(line.as_bytes(), &["ts", "uid"]);
                for cut in line.len().saturating_sub(70)..line.len() {
                    assert_agree(&line.as_bytes()[..cut], &["ts", "uid"]);
                }
            }
        }
    }

    #[test]
    fn strings_with_brackets_and_deep_nesting_straddle_blocks() {
        let members = [
            r#""uid":"[{]}","ts":"}""#,
            r#""x":["]","[","}","{",{"a":"]]]}}}"}],"uid":"{[""#,
            r#""x":[{"a":[{"b":[{"c":"\"]}"}]}]}],"uid":"y""#,
            r#""x":[{"a":[{"b":[{"c":"\"]}"}]}]]],"uid":"y""#,
            r#""x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"uid":"y""#,
            r#""x":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}},"uid":"y""#,
            r#""x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
            r#""x":"][","uid":"]""#,
        ];
        for member in members {
            for line in at_block_boundaries(member) {
                assert_agree(line.as_bytes(), &["ts", "uid", "x"]);
                for cut in line.len().saturating_sub(70)..line.len() {
                    assert_agree(&line.as_bytes()[..cut], &["ts", "uid"]);
                }
            }
        }
        // Mismatched brackets past the register stack's 64 levels.
        for depth in [62, 63, 64, 65, 66, 200] {
            for (open, close) in [("[", "}"), ("{\"k\":", "]")] {
                let line = format!(
                    "{{\"a\":{}{}1{}}}",
                    "[".repeat(depth),
                    open,
                    close.to_string() + &"]".repeat(depth)
                );
                assert_agree(line.as_bytes(), &["a"]);
            }
        }
    }

    #[test]
    fn utf8_straddles_blocks() {
        let members = [
            r#""uid":"Мороз и солнце; день чудесный! Ещё ты дремлешь""#,
            r#""Мороз":"и","uid":"€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞""#,
            r#""€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞€𝄞":1,"uid":"x""#,
        ];
        for member in members {
            for line in at_block_boundaries(member) {
                assert_agree(line.as_bytes(), &["ts", "uid"]);
                // Cut inside a multi-byte character, then broken UTF-8 in keys and values.
                for cut in line.len().saturating_sub(70)..line.len() {
                    assert_agree(&line.as_bytes()[..cut], &["ts", "uid"]);
                }
                let bytes = line.as_bytes();
                for at in (8..bytes.len()).filter(|&i| bytes[i] >= 0xc0).step_by(7) {
                    let mut broken = bytes.to_vec();
                    broken[at] = 0xff;
                    assert_agree(&broken, &["ts", "uid"]);
                    let mut broken = bytes.to_vec();
                    broken[at + 1] = b'a';
                    assert_agree(&broken, &["ts", "uid"]);
                }
            }
        }
    }

    /// A random short flat object: wanted and other keys (some escaped or non-ASCII), values of
    /// every scalar shape, a few nested ones, and spaces or other whitespace here and there.
    pub(super) fn short_flat_line(rng: &mut impl rand::Rng) -> String {
        const KEYS: &[&str] = &[
            "ts", "uid", "sev", "title", "t\\u0073", "u\\\"id", "clé", "device", "",
        ];
        const VALUES: &[&str] = &[
            r#""apple_tv""#,
            r#""""#,
            r#""narcos crown""#,
            r#""caf\u00e9""#,
            r#""Мороз""#,
            r#""tab\tin""#,
            r#""a\"b""#,
            r#""{[]}""#,
            "0",
            "-0",
            "7",
            "-12",
            "1515445353840",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "1.5",
            "-0.0",
            "1e5",
            "2E-3",
            "1E+2",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1e400",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "[]",
            "{}",
            r#"[1,"a"]"#,
            r#"{"ts":1}"#,
        ];
        // Mostly none, as in compact lines.
        const SPACES: &[&str] = &["", "", "", "", "", "", " ", "  ", "\t", "\n", "\r"];
        fn pick<'s>(rng: &mut impl rand::Rng, from: &[&'s str]) -> &'s str {
            from[rng.gen_range(0..from.len())]
        }
        let mut line = format!("{}{{", pick(rng, SPACES));
        for i in 0..rng.gen_range(0..6) {
            if i > 0 {
                line.push(',');
            }
            let (key, value) = (pick(rng, KEYS), pick(rng, VALUES));
            let spaces: Vec<&str> = (0..4).map(|_| pick(rng, SPACES)).collect();
            let [a, b, c, d] = spaces[..] else {
                unreachable!()
            };
            line += &format!("{a}\"{key}\"{b}:{c}{value}{d}");
        }
        line.push('}');
        line += pick(rng, SPACES);
        line
    }

    #[test]
    fn short_flat_lines_agree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        const NOISE: &[u8] = b"{}[]\",:\\ \t0-.eE+tfn\x01\x7f\xd0\xff";
        let fields = ["ts", "uid", "sev", "title", "clé", ""];
        for _ in 0..30_000 {
            let line = short_flat_line(&mut rng).into_bytes();
            assert_agree(&line, &fields);
            // Cut anywhere (also inside a multi-byte character), or one byte changed.
            assert_agree(&line[..rng.gen_range(0..line.len())], &fields);
            let mut noisy = line.clone();
            let at = rng.gen_range(0..noisy.len());
            noisy[at] = NOISE[rng.gen_range(0..NOISE.len())];
            assert_agree_or_lenient(&noisy, &fields, true);
        }
    }

    #[test]
    fn random_bytes_agree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        const ALPHABET: &[u8] = b"{}[]\"\"\"\\\\\\:,,  0123-.eEtrufalsn\x01\x7f\xd0\xbe\xffuidts";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..200);
            let mut line = b"{\"ts\":".to_vec();
            line.extend((0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())]));
            assert_agree_or_lenient(&line, &["ts", "uid"], true);
        }
    }

    #[test]
    fn group_key_text_is_json() {
        let mut s = String::new();
        Scalar::Str("a\"b\n".into()).write_json(&mut s);
        assert_eq!(s, r#""a\"b\n""#);
        s.clear();
        Scalar::Str("plain".into()).write_json(&mut s);
        assert_eq!(s, r#""plain""#);
    }
}
