//! A root-level JSON scanner: finds the wanted root keys of one object without building anything
//! for the rest.
//!
//! Contract (the fuzz tests in `extract.rs` hold it against serde_json, with unwanted values
//! deserialized as `IgnoredAny`):
//! - Every line serde_json accepts as one object, the scanner accepts, with the same values.
//! - The root level is checked fully: one object, then only whitespace; keys, colons, commas;
//!   root scalars (number grammar, literals, escapes, no raw control characters in strings); the
//!   UTF-8 of root keys and wanted values. So non-objects and truncated lines are always rejected.
//! - Nested objects and arrays are skipped bracket to bracket and string to string, with a stack
//!   of open brackets: brackets must match and strings must end, but the tokens between
//!   (commas, colons, numbers, literals) and the escapes and control characters inside nested
//!   strings are not checked, so a frame whose nested filler is corrupt in those places only is
//!   accepted where serde_json would reject it. Skipping has
//!   no recursion, so any depth is safe; like `IgnoredAny`, skipped strings are not UTF-8 checked.
//! - Wanted values that need number or escape decoding are handed to serde_json, so they are
//!   bit-identical to the reference.
//!
//! Root strings and nested brackets are found eight bytes at a time (SWAR), the ends of nested
//! strings with `memchr` (escapes are dense in such filler: stopping at each one costs more).

use super::{Scalar, ScalarValue};
use std::borrow::Cow;

type Scan<T> = Result<T, String>;

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Closing brackets of the containers `skip_value` is inside, innermost last.
    closers: Vec<u8>,
}

/// Fills `out[i]` with the value of root key `fields[i]`; see the module contract.
pub fn extract<'a>(
    fields: &[String],
    line: &'a [u8],
    out: &mut [Option<Scalar<'a>>],
) -> Result<(), String> {
    let mut scanner = Scanner {
        bytes: line,
        pos: 0,
        closers: Vec::new(),
    };
    scanner
        .root(fields, out)
        .map_err(|reason| format!("invalid JSON object: {reason} at byte {}", scanner.pos))
}

impl<'a> Scanner<'a> {
    fn root(&mut self, fields: &[String], out: &mut [Option<Scalar<'a>>]) -> Scan<()> {
        self.skip_whitespace();
        self.expect(b'{', "expected an object")?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                let wanted = self.root_key(fields)?;
                self.skip_whitespace();
                self.expect(b':', "expected `:`")?;
                self.skip_whitespace();
                match wanted {
                    Some(i) => out[i] = Some(self.wanted_value()?),
                    None => self.skip_value()?,
                }
                self.skip_whitespace();
                if self.after_member(b'}')? {
                    break;
                }
            }
        }
        self.skip_whitespace();
        if self.pos != self.bytes.len() {
            return Err("trailing characters".into());
        }
        Ok(())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &str) -> Scan<()> {
        if self.peek() != Some(byte) {
            return Err(self.unexpected(reason));
        }
        self.pos += 1;
        Ok(())
    }

    fn unexpected(&self, reason: &str) -> String {
        match self.peek() {
            None => format!("{reason}, found the end of the line"),
            Some(_) => reason.to_string(),
        }
    }

    /// After a member or element: true at `close`, false after a comma.
    #[inline]
    fn after_member(&mut self, close: u8) -> Scan<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.unexpected(if close == b'}' {
                "expected `,` or `}`"
            } else {
                "expected `,` or `]`"
            })),
        }
    }

    /// Reads a root key and returns the index of the field it names, if any.
    fn root_key(&mut self, fields: &[String]) -> Scan<Option<usize>> {
        let start = self.pos;
        self.expect(b'"', "expected a key")?;
        let escaped = self.skip_string_body()?;
        let raw = &self.bytes[start + 1..self.pos - 1];
        if escaped {
            let key = serde_json::from_slice::<String>(&self.bytes[start..self.pos])
                .map_err(|e| format!("bad key: {e}"))?;
            return Ok(fields.iter().position(|f| *f == key));
        }
        // Root keys must be UTF-8 (serde_json checks them); ASCII is checked a word at a time.
        if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
            return Err("key is not UTF-8".into());
        }
        Ok(fields.iter().position(|f| short_eq(f.as_bytes(), raw)))
    }

    /// Skips the rest of a string after its opening quote; says whether it had escapes.
    #[inline]
    fn skip_string_body(&mut self) -> Scan<bool> {
        let mut escaped = false;
        loop {
            let rest = &self.bytes[self.pos..];
            let Some(found) = find_string_special(rest) else {
                self.pos = self.bytes.len();
                return Err("unterminated string".into());
            };
            self.pos += found;
            match rest[found] {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => self.pos += 1,
                _ => return Err("control character in a string".into()),
            }
            escaped = true;
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                Some(b'u') => {
                    let hex = self.bytes.get(self.pos + 1..self.pos + 5);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return Err("invalid \\u escape".into());
                    }
                    self.pos += 5;
                }
                _ => return Err(self.unexpected("invalid escape")),
            }
        }
    }

    /// Skips a number, checking the JSON grammar `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> Scan<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.unexpected("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Scan<()> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.unexpected("invalid number"));
        }
        self.skip_digits();
        Ok(())
    }

    fn literal(&mut self, text: &[u8]) -> Scan<()> {
        let end = self.pos + text.len();
        if self
            .bytes
            .get(self.pos..end)
            .is_some_and(|b| short_eq(b, text))
        {
            self.pos += text.len();
            Ok(())
        } else {
            Err("invalid literal".into())
        }
    }

    /// Skips one root value. Scalars are checked fully; an object or array is skipped by
    /// matching its brackets (see the module contract).
    fn skip_value(&mut self) -> Scan<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.skip_string_body().map(|_| ())
            }
            Some(b'{' | b'[') => self.skip_container(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            _ => Err(self.unexpected("expected a value")),
        }
    }

    /// Skips an object or array of any depth: jumps from bracket to bracket and string to
    /// string, checking that brackets match and strings are well formed; tokens between them
    /// (numbers, literals, commas, colons) are not looked at.
    fn skip_container(&mut self) -> Scan<()> {
        self.closers.clear();
        loop {
            let rest = &self.bytes[self.pos..];
            let Some(found) = find_structural(rest) else {
                self.pos = self.bytes.len();
                return Err("unterminated object or array".into());
            };
            self.pos += found + 1;
            match rest[found] {
                b'"' => self.skip_nested_string()?,
                b'{' => self.closers.push(b'}'),
                b'[' => self.closers.push(b']'),
                close => {
                    if self.closers.pop() != Some(close) {
                        self.pos -= 1;
                        return Err("mismatched bracket".into());
                    }
                    if self.closers.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Skips the rest of a string inside a nested value: finds its closing quote (a quote after
    /// an even number of backslashes) with `memchr`, without stopping at every escape.
    fn skip_nested_string(&mut self) -> Scan<()> {
        let start = self.pos;
        loop {
            let Some(found) = memchr::memchr(b'"', &self.bytes[self.pos..]) else {
                self.pos = self.bytes.len();
                return Err("unterminated string".into());
            };
            let quote = self.pos + found;
            self.pos = quote + 1;
            let backslashes = self.bytes[start..quote]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a wanted root value; plain strings and small integers are decoded here, anything
    /// needing escape or float decoding by serde_json.
    fn wanted_value(&mut self) -> Scan<Scalar<'a>> {
        let start = self.pos;
        let bytes: &'a [u8] = self.bytes;
        let decode = |slice: &'a [u8]| {
            serde_json::from_slice::<ScalarValue<'a>>(slice)
                .map(|v| v.0)
                .map_err(|e| e.to_string())
        };
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let escaped = self.skip_string_body()?;
                if escaped {
                    return decode(&bytes[start..self.pos]);
                }
                let text = std::str::from_utf8(&bytes[start + 1..self.pos - 1])
                    .map_err(|_| "string is not UTF-8")?;
                Ok(Scalar::Str(Cow::Borrowed(text)))
            }
            Some(b'-' | b'0'..=b'9') => {
                self.skip_number()?;
                let text = &bytes[start..self.pos];
                let digits = text.strip_prefix(b"-").unwrap_or(text);
                // serde_json reads `-0` as the float -0.0: leave it (and big or real numbers) to it.
                if digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) && text != b"-0" {
                    let magnitude = digits
                        .iter()
                        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
                    let value = if text[0] == b'-' {
                        -magnitude
                    } else {
                        magnitude
                    };
                    return Ok(Scalar::Int(value));
                }
                decode(text)
            }
            Some(b't') => self.literal(b"true").map(|()| Scalar::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Scalar::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Scalar::Null),
            _ => self.skip_container().map(|()| Scalar::Nested),
        }
    }
}

/// Position of the first `"`, `\\` or control character (below 0x20) in `bytes`.
///
/// Eight bytes at a time (SWAR): for a word `x`, `(x - 0x01..01 * n) & !x & 0x80..80` flags the
/// bytes below `n` (exact for the lowest flagged byte, which is all we read), and a byte equal to
/// `c` is a zero byte of `x ^ (0x01..01 * c)`.
#[inline]
fn find_string_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let hits = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

/// Position of the first `"`, `{`, `}`, `[` or `]` in `bytes` (SWAR as in `find_string_special`;
/// setting bit 5 maps `[` and `]` onto `{` and `}` and no other byte onto them).
#[inline]
fn find_structural(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let folded = word | (ONES * 0x20);
        let hits = zero(word ^ (ONES * u64::from(b'"')))
            | zero(folded ^ (ONES * u64::from(b'{')))
            | zero(folded ^ (ONES * u64::from(b'}')));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
        .map(|i| at + i)
}

/// Equality of short byte strings (keys, literals) without a call to `memcmp`.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}
