//! CSV records, one per line: the `format = "csv"` extractor.
//!
//! Contract: `CsvExtractor::extract` fills `out[i]` with column `columns[positions[i]]` of the
//! line. A line must have exactly as many fields as there are columns, else it is malformed.
//! Quoted fields (RFC 4180: `"a,b"`, `"say ""hi"""`) are parsed by the `csv` crate and are
//! always strings; unquoted fields are typed by their text: an integer is `Int`, a decimal
//! number `Float`, an empty field `Null` (missing), anything else `Str`. With `trim`, spaces
//! around fields are removed first (the padded `"BUY "` side of the stock feed). With `header`,
//! a line whose fields equal the column names is the header row and is skipped. Records are
//! lines: a quoted field holding a newline is not supported (its halves are malformed).

use super::{Line, Scalar};
use std::borrow::Cow;

pub struct CsvExtractor {
    columns: Vec<String>,
    /// For each extracted field, its column (`None`: not a column, e.g. a derived field).
    positions: Vec<Option<usize>>,
    trim: bool,
    header: bool,
}

impl CsvExtractor {
    pub fn new(
        columns: Vec<String>,
        positions: Vec<Option<usize>>,
        trim: bool,
        header: bool,
    ) -> Self {
        CsvExtractor {
            columns,
            positions,
            trim,
            header,
        }
    }

    pub fn extract<'a>(
        &self,
        line: &'a [u8],
        out: &mut crate::extract::Fields<'a>,
    ) -> Result<Line, String> {
        out.clear();
        out.resize(self.positions.len(), None);
        let text = std::str::from_utf8(line).map_err(|_| "CSV line is not UTF-8".to_string())?;
        let found;
        if text.contains('"') {
            let quoted = parse_quoted(line)?;
            found = quoted.len();
            self.check_width(found)?;
            if self.is_header(quoted.iter().map(|(text, _)| text.as_str())) {
                return Ok(Line::Header);
            }
            for (slot, position) in out.iter_mut().zip(&self.positions) {
                if let Some((value, was_quoted)) = position.and_then(|p| quoted.get(p)) {
                    let value = self.trimmed(value);
                    *slot = Some(if *was_quoted {
                        Scalar::Str(Cow::Owned(value.to_string()))
                    } else {
                        owned(typed(value))
                    });
                }
            }
        } else {
            let fields: Vec<&'a str> = text.split(',').map(|f| self.trimmed(f)).collect();
            found = fields.len();
            self.check_width(found)?;
            if self.is_header(fields.iter().copied()) {
                return Ok(Line::Header);
            }
            for (slot, position) in out.iter_mut().zip(&self.positions) {
                if let Some(p) = position {
                    *slot = Some(typed(fields[*p]));
                }
            }
        }
        Ok(Line::Record)
    }

    fn trimmed<'t>(&self, field: &'t str) -> &'t str {
        if self.trim {
            field.trim()
        } else {
            field
        }
    }

    fn check_width(&self, found: usize) -> Result<(), String> {
        if found == self.columns.len() {
            Ok(())
        } else {
            Err(format!(
                "CSV line has {found} fields, expected {} ({})",
                self.columns.len(),
                self.columns.join(",")
            ))
        }
    }

    fn is_header<'t>(&self, mut fields: impl Iterator<Item = &'t str>) -> bool {
        self.header
            && self
                .columns
                .iter()
                .all(|c| fields.next().map(str::trim) == Some(c))
    }
}

/// Splits a line with quotes into (text, was it quoted) per field.
fn parse_quoted(line: &[u8]) -> Result<Vec<(String, bool)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err("empty CSV line".into()),
        Err(e) => return Err(format!("invalid CSV: {e}")),
    }
    // The csv crate drops quotes; find which raw fields start with one (RFC 4180: a quote must be
    // the field's first character, `a, "b"` is the unquoted text ` "b"`).
    let mut quoted: Vec<bool> = Vec::with_capacity(record.len());
    let (mut at_start, mut in_quotes) = (true, false);
    for &byte in line {
        if at_start {
            at_start = false;
            quoted.push(byte == b'"');
            if byte == b'"' {
                in_quotes = true;
                continue;
            }
        }
        match byte {
            // Inside a quoted field `""` toggles twice: an escaped quote.
            b'"' if quoted.last() == Some(&true) => in_quotes = !in_quotes,
            b',' if !in_quotes => at_start = true,
            _ => {}
        }
    }
    if at_start {
        quoted.push(false);
    }
    Ok(record.iter().map(String::from).zip(quoted).collect())
}

/// Types an unquoted field by its text.
fn typed(text: &str) -> Scalar<'_> {
    if text.is_empty() {
        return Scalar::Null;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Scalar::Int(i);
    }
    let numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match text.parse::<f64>() {
        Ok(f) if numeric => Scalar::Float(f),
        _ => Scalar::Str(Cow::Borrowed(text)),
    }
}

/// Detaches a value from the buffer it was parsed from.
fn owned(value: Scalar<'_>) -> Scalar<'static> {
    match value {
        Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
        Scalar::Null => Scalar::Null,
        Scalar::Bool(b) => Scalar::Bool(b),
        Scalar::Int(i) => Scalar::Int(i),
        Scalar::Float(f) => Scalar::Float(f),
        Scalar::Nested => Scalar::Nested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> CsvExtractor {
        let columns: Vec<String> = [
            "symbol", "side", "price", "quantity", "epoch_ms", "datetime",
        ]
        .map(String::from)
        .to_vec();
        CsvExtractor::new(
            columns,
            vec![Some(0), Some(1), Some(2), Some(4), None],
            true,
            true,
        )
    }

    fn fields(line: &str) -> Result<Vec<Option<Scalar<'_>>>, String> {
        let mut out = crate::extract::Fields::new();
        stock()
            .extract(line.as_bytes(), &mut out)
            .map(|_| out.into_vec())
    }

    #[test]
    fn padded_values_are_trimmed_and_typed() {
        let out = fields("AGL,BUY ,496.53,233,1534849272066,2018-08-21 21:01:12.066").unwrap();
        assert_eq!(
            out,
            vec![
                Some(Scalar::Str("AGL".into())),
                Some(Scalar::Str("BUY".into())),
                Some(Scalar::Float(496.53)),
                Some(Scalar::Int(1534849272066)),
                None,
            ]
        );
    }

    #[test]
    fn quoted_fields_are_strings() {
        let out = fields(r#""A,B","BUY ","7",,1,"say ""hi""""#).unwrap();
        assert_eq!(out[0], Some(Scalar::Str("A,B".into())));
        assert_eq!(out[1], Some(Scalar::Str("BUY".into())));
        assert_eq!(out[2], Some(Scalar::Str("7".into())));
        assert_eq!(out[3], Some(Scalar::Int(1)));
        let out = fields(r#"a"b,"x",1.5,2,3,d"#).unwrap();
        assert_eq!(out[0], Some(Scalar::Str("a\"b".into())));
        assert_eq!(out[2], Some(Scalar::Float(1.5)));
        let out = fields("X,SELL,,5,10,d").unwrap();
        assert_eq!(out[2], Some(Scalar::Null));
    }

    #[test]
    fn header_rows_are_skipped_and_bad_widths_rejected() {
        let mut out = crate::extract::Fields::new();
        let header = b"symbol,side,price,quantity,epoch_ms,datetime";
        assert_eq!(stock().extract(header, &mut out), Ok(Line::Header));
        assert!(fields("busted data")
            .unwrap_err()
            .contains("1 fields, expected 6"));
        assert!(fields("a,b,c,d,e,f,g").is_err());
        assert!(fields(r#"a,"b,c,d,e,f"#).is_err());
    }
}
