//! Field extraction: pulls the few root-level fields a dataflow needs out of one input record.
//!
//! Contract: `JsonExtractor::extract` fills `out[i]` with the value of root key `fields[i]` (or
//! `None` when absent) and never looks at nested keys, so a nested `ts` or `uid` cannot shadow the
//! root one. A repeated root key keeps its last value (as JavaScript and serde_json's `Value` do).
//! Anything that is not a JSON object is an `Err` with a short reason for the dead-letter record.
//! Values borrow from the input line when they contain no escapes.
//!
//! `Extractor` picks the record format a dataflow declares (`[input] format`): JSON objects
//! (above) or CSV lines (`csv_line`); `derive` computes declared derived fields afterwards.

pub mod csv_line;
pub mod derive;

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
    // serde_json's escaping is correct for every control character and quote.
    out.push_str(&serde_json::to_string(text).expect("strings always serialize"));
}

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
    pub fn extract<'a>(
        &self,
        line: &'a [u8],
        out: &mut Vec<Option<Scalar<'a>>>,
    ) -> Result<Line, String> {
        match self {
            Extractor::Json(json) => json.extract(line, out).map(|()| Line::Record),
            Extractor::Csv(csv) => csv.extract(line, out),
        }
    }
}

/// Extracts root-level fields from a JSON object line.
pub struct JsonExtractor {
    fields: Vec<String>,
}

impl JsonExtractor {
    pub fn new(fields: Vec<String>) -> Self {
        JsonExtractor { fields }
    }

    /// Fills `out` (resized to the field count) from `line`; see the module contract.
    pub fn extract<'a>(
        &self,
        line: &'a [u8],
        out: &mut Vec<Option<Scalar<'a>>>,
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
    out: &'o mut Vec<Option<Scalar<'a>>>,
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
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
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
        let mut out = Vec::new();
        ex.extract(line.as_bytes(), &mut out).map(|()| out)
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
    }

    #[test]
    fn group_key_text_is_json() {
        let mut s = String::new();
        Scalar::Str("a\"b\n".into()).write_json(&mut s);
        assert_eq!(s, r#""a\"b\n""#);
    }
}
