//! A root-level JSON scanner: finds the wanted root keys of one object without building anything
//! for the rest.
//!
//! Contract (the fuzz tests in `extract.rs` hold it against serde_json, with unwanted values
//! deserialized as `IgnoredAny`):
//! - Every line serde_json accepts as one object, the scanner accepts, with the same values.
//! - The root level is checked fully: one object, then only whitespace; keys, colons, commas;
//!   root scalars (number grammar, literals, escapes, no raw control characters in strings); the
//!   UTF-8 of root keys and wanted values. So non-objects and truncated lines are always rejected.
//! - Nested objects and arrays are skipped bracket to bracket, brackets inside strings not
//!   counted: brackets must match and strings must end, but the tokens between (commas, colons,
//!   numbers, literals, stray backslashes) and the escapes and control characters inside nested
//!   strings are not checked, so a frame whose nested filler is corrupt in those places only is
//!   accepted where serde_json would reject it. Skipping has no recursion, so any depth is safe;
//!   like `IgnoredAny`, skipped strings are not UTF-8 checked.
//! - Wanted values that need number or escape decoding are handed to serde_json, so they are
//!   bit-identical to the reference.
//!
//! Strings and brackets come from the 64-byte block masks of `blocks` (the whole line classified
//! up front, once); root scalars, whitespace and punctuation are read byte by byte. Short flat
//! lines take a fast path (`short`) that gives up, to this scanner, on anything else.

mod short;

use super::blocks::{classify_line, Block, Kernel};
use super::{Scalar, ScalarValue};
use std::borrow::Cow;
use std::cell::RefCell;

/// An error's reason; `Scanner::pos` says where.
type Scan<T> = Result<T, &'static str>;

struct Scanner<'a, 'b> {
    bytes: &'a [u8],
    pos: usize,
    /// The masks of every block of `bytes` (`classify_line`).
    blocks: &'b [Block],
    /// The whole line as text, once checked (see `Scanner::text`).
    line_text: Option<Option<&'a str>>,
}

/// The wanted root keys, laid out for matching: a hash table (linear probing, at most half full)
/// over a key's length and first eight bytes, so that a key costs one or two entry comparisons
/// however many fields there are; before it, a one-word filter on length and first byte.
pub struct Keys {
    names: Vec<String>,
    /// The names' `class_bit`s: a key whose bit is clear is no name (most unwanted keys of a
    /// long line, told apart without reading their heads).
    filter: u64,
    /// Each distinct name once, at the slot of its length and head, or the next free one after.
    table: Vec<Entry>,
    /// `64 - log2(table.len())`: slots are the top bits of a hash.
    shift: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    /// The name's length, or `FREE`.
    len: usize,
    /// The name's first (up to) eight bytes, little-endian, zero-padded (see `head`).
    head: u64,
    /// The name's first index in the field list.
    field: usize,
}

/// The length of a free entry: no key is that long.
const FREE: usize = usize::MAX;

impl Keys {
    pub fn new(names: &[String]) -> Keys {
        let size = (2 * names.len()).next_power_of_two().max(8);
        let mut keys = Keys {
            names: names.to_vec(),
            filter: names
                .iter()
                .map(|n| class_bit(n.as_bytes(), 0, n.len()))
                .fold(0, |filter, bit| filter | bit),
            table: vec![
                Entry {
                    len: FREE,
                    head: 0,
                    field: 0,
                };
                size
            ],
            shift: 64 - size.trailing_zeros(),
        };
        for (field, name) in names.iter().enumerate() {
            let name = name.as_bytes();
            if keys.find(name, head(name, 0, name.len())).is_some() {
                continue; // a field listed twice is found at its first index
            }
            let mut at = keys.slot(name.len(), head(name, 0, name.len()));
            while keys.table[at].len != FREE {
                at = (at + 1) & (size - 1);
            }
            keys.table[at] = Entry {
                len: name.len(),
                head: head(name, 0, name.len()),
                field,
            };
        }
        keys
    }

    /// The first slot to look a key up at, from its length and head.
    #[inline(always)]
    fn slot(&self, len: usize, head: u64) -> usize {
        (head
            .wrapping_add(len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> self.shift) as usize
    }

    /// The index of the first name equal to `key`, whose head (see `head`) is `key_head`.
    #[inline(always)]
    fn find(&self, key: &[u8], key_head: u64) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut at = self.slot(key.len(), key_head);
        loop {
            let entry = self.table[at & mask];
            // Long keys sharing a head are compared whole.
            if entry.len == key.len()
                && entry.head == key_head
                && (key.len() <= 8 || self.names[entry.field].as_bytes() == key)
            {
                return Some(entry.field);
            }
            if entry.len == FREE {
                return None;
            }
            at += 1;
        }
    }

    /// `find` for the key `line[at..at + len]`, filtered first (see `filter`).
    #[inline(always)]
    fn find_in(&self, line: &[u8], at: usize, len: usize) -> Option<usize> {
        if self.filter & class_bit(line, at, len) == 0 {
            return None;
        }
        self.find(&line[at..at + len], head(line, at, len))
    }

    fn find_decoded(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| n == key)
    }
}

/// The filter bit of the key `bytes[at..at + len]`, from its length and first byte (for an empty
/// key, the byte after it: in a line, its closing quote).
#[inline(always)]
fn class_bit(bytes: &[u8], at: usize, len: usize) -> u64 {
    let first = bytes.get(at).copied().unwrap_or(b'"');
    1 << ((len + 3 * usize::from(first)) & 63)
}

/// The first `min(len, 8)` bytes of `bytes[at..]` as a little-endian u64, zero-padded.
#[inline]
fn head(bytes: &[u8], at: usize, len: usize) -> u64 {
    let n = len.min(8);
    match bytes.get(at..at + 8) {
        // A whole word when the line has one there (the common case), masked to the key.
        Some(word) => {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if n == 8 {
                word
            } else {
                word & ((1u64 << (8 * n)) - 1)
            }
        }
        None => {
            let mut word = [0u8; 8];
            word[..n].copy_from_slice(&bytes[at..at + n]);
            u64::from_le_bytes(word)
        }
    }
}

/// Fills `out[i]` (all `None` on entry) with the value of root key `keys.names[i]`; see the
/// module contract. Short flat lines take the fast path of `short`.
pub fn extract<'a>(
    keys: &Keys,
    kernel: Kernel,
    line: &'a [u8],
    out: &mut [Option<Scalar<'a>>],
) -> Result<(), String> {
    if line.len() <= short::MAX_LEN {
        if short::extract(keys, kernel, line, out).is_some() {
            return Ok(());
        }
        // The fast path gave up, maybe after filling some fields.
        out.fill(None);
    }
    general(keys, kernel, line, out)
}

/// `extract` without the fast path.
fn general<'a>(
    keys: &Keys,
    kernel: Kernel,
    line: &'a [u8],
    out: &mut [Option<Scalar<'a>>],
) -> Result<(), String> {
    thread_local! {
        /// The block masks of the line being scanned: one buffer per thread, reused.
        static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    BLOCKS.with_borrow_mut(|blocks| {
        classify_line(kernel, line, blocks);
        let mut scanner = Scanner {
            bytes: line,
            pos: 0,
            blocks,
            line_text: None,
        };
        scanner
            .root(keys, out)
            .map_err(|reason| describe(reason, scanner.pos, line.len()))
    })
}

#[cold]
fn describe(reason: &str, pos: usize, len: usize) -> String {
    if pos >= len {
        format!("invalid JSON object: {reason} at the end of the line")
    } else {
        format!("invalid JSON object: {reason} at byte {pos}")
    }
}

/// What a string holds besides plain ASCII.
struct Contents {
    escapes: bool,
    non_ascii: bool,
}

impl<'a> Scanner<'a, '_> {
    fn root(&mut self, keys: &Keys, out: &mut [Option<Scalar<'a>>]) -> Scan<()> {
        if self.token() != Some(b'{') {
            return Err("expected an object");
        }
        self.pos += 1;
        let mut next = self.token();
        if next == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                if next != Some(b'"') {
                    return Err("expected a key");
                }
                let wanted = self.root_key(keys)?;
                if !self.eat(b':') {
                    return Err("expected `:`");
                }
                let first = self.token();
                match wanted {
                    Some(i) => out[i] = Some(self.wanted_value(first, keys.names.len())?),
                    None => self.skip_value(first)?,
                }
                if self.eat(b',') {
                    next = self.token();
                } else if self.eat(b'}') {
                    break;
                } else {
                    return Err("expected `,` or `}`");
                }
            }
        }
        if self.token().is_some() {
            return Err("trailing characters");
        }
        Ok(())
    }

    /// Moves past whitespace; returns the byte there, if the line goes on (read once: every
    /// caller goes on with it).
    #[inline(always)]
    fn token(&mut self) -> Option<u8> {
        match self.bytes.get(self.pos) {
            // No token starts with whitespace or below.
            Some(&byte) if byte > b' ' => Some(byte),
            _ => self.after_whitespace(),
        }
    }

    /// Moves past whitespace and `byte`, if that is the next token.
    #[inline(always)]
    fn eat(&mut self, byte: u8) -> bool {
        // Compact lines have it right here: one test.
        if self.bytes.get(self.pos) == Some(&byte) || self.token() == Some(byte) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// `token` at whitespace or a control character (or the end): out of the way of compact
    /// lines.
    #[cold]
    fn after_whitespace(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.pos) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(byte);
            }
            self.pos += 1;
        }
        None
    }

    /// Reads the root key at `pos` (a quote) and returns the index of the field it names, if any.
    #[inline]
    fn root_key(&mut self, keys: &Keys) -> Scan<Option<usize>> {
        let start = self.pos;
        let (raw, contents) = self.string()?;
        if contents.escapes {
            let mut buffer = [0u8; SHORT_KEY];
            if !contents.non_ascii {
                // Escapes decode to one byte at least: the key is not empty.
                if let Some(len) = unescape_short_ascii(raw, &mut buffer) {
                    return Ok(keys.find_in(&buffer, 0, len));
                }
            }
            let key = serde_json::from_slice::<String>(&self.bytes[start..self.pos])
                .map_err(|_| "bad key")?;
            return Ok(keys.find_decoded(&key));
        }
        let found = keys.find_in(self.bytes, start + 1, raw.len());
        // Root keys must be UTF-8 (serde_json checks them); one equal to a field is.
        if found.is_none() && contents.non_ascii && std::str::from_utf8(raw).is_err() {
            self.pos = start;
            return Err("key is not UTF-8");
        }
        Ok(found)
    }

    /// `bytes[start..end]` (a string body without escapes) as text. A line not much longer
    /// than its wanted fields is checked as UTF-8 once, for all its strings (one call instead
    /// of one per value); a longer one, string by string.
    #[inline]
    fn text(&mut self, start: usize, end: usize, fields: usize) -> Scan<&'a str> {
        if self.bytes.len() <= 32 * fields {
            let line = *self
                .line_text
                .get_or_insert_with(|| std::str::from_utf8(self.bytes).ok());
            // Next to quotes, `start` and `end` are character boundaries.
            if let Some(text) = line.and_then(|l| l.get(start..end)) {
                return Ok(text);
            }
        }
        std::str::from_utf8(&self.bytes[start..end]).map_err(|_| "string is not UTF-8")
    }

    /// Moves past the string whose opening quote is at `pos`, checking it as the root level
    /// needs (valid escapes, no control characters); returns its body (escapes undecoded).
    #[inline(always)]
    fn string(&mut self) -> Scan<(&'a [u8], Contents)> {
        let open = self.pos;
        let mut from = open + 1;
        let mut contents = Contents {
            escapes: false,
            non_ascii: false,
        };
        loop {
            let Some(block) = self.block(from) else {
                self.pos = self.bytes.len();
                return Err("unterminated string");
            };
            let base = from & !63;
            let live = !0u64 << (from - base);
            let quotes = block.quotes & live;
            // Up to the closing quote, when it is in this block (the lowest bit of `quotes`).
            let span = (quotes & quotes.wrapping_neg()).wrapping_sub(1) & live;
            // Most strings are plain ASCII: one test.
            if block.unusual & span != 0 {
                let controls = block.unusual & !(block.non_ascii | block.backslashes) & span;
                if controls != 0 {
                    self.pos = base + controls.trailing_zeros() as usize;
                    return Err("control character in a string");
                }
                contents.non_ascii |= block.non_ascii & span != 0;
                if block.backslashes & span != 0 {
                    contents.escapes = true;
                    self.check_escapes(block.escaped & span, base)?;
                }
            }
            if quotes != 0 {
                let close = base + quotes.trailing_zeros() as usize;
                self.pos = close + 1;
                #[cfg(any(test, debug_assertions))]
                assert!(open < close && close < self.bytes.len());
                // SAFETY: `close` is at `open + 1` or after (only quotes from there count) and in
                // the line (no mask has a bit past its end), so the body is too. (Indexing would
                // check both again, for every string of a long line.)
                let body = unsafe { self.bytes.get_unchecked(open + 1..close) };
                return Ok((body, contents));
            }
            from = base + 64;
        }
    }

    /// Checks the escaped characters `escaped` (a block mask at `base`): one of `"\/bfnrt`, or
    /// `u` and four hex digits.
    #[inline]
    fn check_escapes(&mut self, mut escaped: u64, base: usize) -> Scan<()> {
        while escaped != 0 {
            let at = base + escaped.trailing_zeros() as usize;
            escaped &= escaped - 1;
            let valid = match self.bytes.get(at).map(|&b| ESCAPES[usize::from(b)]) {
                Some(SIMPLE) => true,
                Some(UNICODE) => self
                    .bytes
                    .get(at + 1..at + 5)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                _ => false,
            };
            if !valid {
                self.pos = at;
                return Err("invalid escape");
            }
        }
        Ok(())
    }

    /// Skips the number at `pos` (see `number_end`); returns whether it is an integer.
    #[inline]
    fn number(&mut self) -> Scan<bool> {
        match number_end(self.bytes, self.pos) {
            Ok((end, integer)) => {
                self.pos = end;
                Ok(integer)
            }
            Err(at) => {
                self.pos = at;
                Err("invalid number")
            }
        }
    }

    fn literal(&mut self, text: &[u8]) -> Scan<()> {
        let end = self.pos + text.len();
        if self
            .bytes
            .get(self.pos..end)
            .is_some_and(|b| short_eq(b, text))
        {
            self.pos = end;
            Ok(())
        } else {
            Err("invalid literal")
        }
    }

    /// Skips the root value at `pos`, whose first byte is `first`. Scalars are checked fully;
    /// an object or array is skipped by matching its brackets (see the module contract).
    #[inline]
    fn skip_value(&mut self, first: Option<u8>) -> Scan<()> {
        match first {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => self.container(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err("expected a value"),
        }
    }

    /// Skips the object or array opening at `pos`.
    #[inline(always)]
    fn container(&mut self) -> Scan<()> {
        // A quarter of the frames' root values are `[]` or `{}`: no need to walk brackets.
        // (`]` and `}` follow `[` and `{` by two in ASCII.)
        let opener = self.bytes[self.pos];
        if self.bytes.get(self.pos + 1) == Some(&(opener + 2)) {
            self.pos += 2;
            return Ok(());
        }
        self.skip_container()
    }

    /// Skips the object or array opening at `pos`, of any depth: walks the brackets outside
    /// strings, checking that each closer matches its opener. The first 63 levels are a bit
    /// stack in a register, pushed and popped with shifts (brackets come in no predictable
    /// order); deeper values go on in `skip_deep_container`.
    #[inline(never)]
    fn skip_container(&mut self) -> Scan<()> {
        // Bit 0 is the innermost open level, 1 for `{` (bit 5 of the byte); a 1 above the last
        // level marks the bottom, so the stack is `1` when all are closed (no depth counter).
        let mut stack = 0b10 | u64::from(self.bytes[self.pos] >> 5 & 1);
        let mut from = self.pos + 1;
        loop {
            let (base, mut brackets) = self.brackets_from(from)?;
            while brackets != 0 {
                let at = base + brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                #[cfg(any(test, debug_assertions))]
                assert!(at < self.bytes.len());
                // SAFETY: bracket bits lie inside the line (the `blocks` contract). (Indexing
                // would check that again for every bracket.)
                let bracket = unsafe { *self.bytes.get_unchecked(at) };
                // `[` and `{` have bit 1 set, `]` and `}` do not; `{` and `}` have bit 5.
                let curly = u64::from(bracket >> 5 & 1);
                if bracket & 2 != 0 {
                    stack = stack << 1 | curly;
                    if stack >> 63 != 0 {
                        self.pos = at + 1;
                        return self.skip_deep_container(stack);
                    }
                } else {
                    if (stack ^ curly) & 1 != 0 {
                        self.pos = at;
                        return Err("mismatched bracket");
                    }
                    stack >>= 1;
                    if stack == 1 {
                        self.pos = at + 1;
                        return Ok(());
                    }
                }
            }
            from = base + 64;
        }
    }

    /// The base of the block holding `from`, and that block's brackets at or after `from`.
    #[inline(always)]
    fn brackets_from(&mut self, from: usize) -> Scan<(usize, u64)> {
        let Some(block) = self.block(from) else {
            self.pos = self.bytes.len();
            return Err("unterminated object or array");
        };
        let base = from & !63;
        Ok((base, block.brackets & (!0u64 << (from - base))))
    }

    /// The masks of the block holding byte `at`, if the line has that block (bits past the
    /// line's end are clear, but for `escaped` after a trailing backslash: the `blocks` contract).
    #[inline(always)]
    fn block(&self, at: usize) -> Option<Block> {
        self.blocks.get(at / 64).copied()
    }

    /// Goes on with `skip_container` past 63 open levels, `deep` being its full stack (63 levels
    /// under the bottom mark): the same walk with the stack in memory.
    #[cold]
    fn skip_deep_container(&mut self, deep: u64) -> Scan<()> {
        let mut open: Vec<bool> = (0..63).rev().map(|i| deep >> i & 1 == 1).collect();
        let mut from = self.pos;
        loop {
            let (base, mut brackets) = self.brackets_from(from)?;
            while brackets != 0 {
                let at = base + brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                let bracket = self.bytes[at];
                let curly = bracket >> 5 & 1 == 1;
                if bracket & 2 != 0 {
                    open.push(curly);
                } else if open.pop() != Some(curly) {
                    self.pos = at;
                    return Err("mismatched bracket");
                } else if open.is_empty() {
                    self.pos = at + 1;
                    return Ok(());
                }
            }
            from = base + 64;
        }
    }

    /// Reads the wanted root value at `pos`, whose first byte is `first`; plain strings and
    /// small integers are decoded here, anything needing escape or float decoding by serde_json.
    fn wanted_value(&mut self, first: Option<u8>, fields: usize) -> Scan<Scalar<'a>> {
        let start = self.pos;
        let bytes: &'a [u8] = self.bytes;
        match first {
            Some(b'"') => {
                let (_, contents) = self.string()?;
                if contents.escapes {
                    return decode(&bytes[start..self.pos]);
                }
                let text = if contents.non_ascii {
                    self.text(start + 1, self.pos - 1, fields)?
                } else {
                    ascii_text(&bytes[start + 1..self.pos - 1])
                };
                Ok(Scalar::Str(Cow::Borrowed(text)))
            }
            Some(b'-' | b'0'..=b'9') => {
                let integer = self.number()?;
                number_value(&bytes[start..self.pos], integer)
            }
            Some(b't') => self.literal(b"true").map(|()| Scalar::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Scalar::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Scalar::Null),
            Some(b'{' | b'[') => self.container().map(|()| Scalar::Nested),
            _ => Err("expected a value"),
        }
    }
}

/// A value that needs number or escape decoding, decoded by serde_json.
fn decode(text: &[u8]) -> Scan<Scalar<'_>> {
    serde_json::from_slice::<ScalarValue>(text)
        .map(|v| v.0)
        .map_err(|_| "undecodable value")
}

/// The end of the number at `bytes[at..]`, checking the JSON grammar
/// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, and whether it is an integer (no fraction or
/// exponent); else the position of the first byte breaking the grammar.
#[inline(always)]
fn number_end(bytes: &[u8], mut at: usize) -> Result<(usize, bool), usize> {
    let byte = |i: usize| bytes.get(i).copied();
    at += usize::from(byte(at) == Some(b'-'));
    match byte(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at += digit_run(bytes, at),
        _ => return Err(at),
    }
    let mut integer = true;
    if byte(at) == Some(b'.') {
        at = required_digits(bytes, at + 1)?;
        integer = false;
    }
    if let Some(b'e' | b'E') = byte(at) {
        at += 1;
        at += usize::from(matches!(byte(at), Some(b'+' | b'-')));
        at = required_digits(bytes, at)?;
        integer = false;
    }
    Ok((at, integer))
}

/// The end of the digits at `bytes[at..]`, of which there must be one at least (else `Err(at)`).
#[inline]
fn required_digits(bytes: &[u8], at: usize) -> Result<usize, usize> {
    match digit_run(bytes, at) {
        0 => Err(at),
        run => Ok(at + run),
    }
}

/// A number `number_end` accepted, as serde_json reads it: the common plain integer (up to 18
/// digits, which fit an `i64`) here, anything else by serde_json. `-0` is not plain: serde_json
/// reads it as the float -0.0.
#[inline]
fn number_value(text: &[u8], integer: bool) -> Scan<Scalar<'_>> {
    let negative = text[0] == b'-';
    let digits = &text[usize::from(negative)..];
    if integer && digits.len() <= 18 && !(negative && digits == b"0") {
        let magnitude = digits_value(digits) as i64;
        return Ok(Scalar::Int(if negative { -magnitude } else { magnitude }));
    }
    decode(text)
}

/// The value of up to 19 ASCII digits, eight at a time (epoch times have 10 to 13).
#[inline]
fn digits_value(digits: &[u8]) -> u64 {
    let mut eights = digits.chunks_exact(8);
    let mut value = 0;
    for eight in &mut eights {
        let word = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
        value = value * 100_000_000 + eight_digits(word);
    }
    eights
        .remainder()
        .iter()
        .fold(value, |n, d| n * 10 + u64::from(d - b'0'))
}

/// The value of the eight ASCII digits of `word` (first digit in the low byte), in three
/// multiplications: digits into pairs, pairs into fours, fours into eight (Lemire, "Quickly
/// parsing eight digits").
#[inline]
fn eight_digits(word: u64) -> u64 {
    const BYTES_0_4: u64 = 0x0000_00ff_0000_00ff;
    let v = word - 0x3030_3030_3030_3030;
    // Byte 2k: 10 * digit 2k + digit 2k+1 (no carries: at most 99).
    let v = v.wrapping_mul(10) + (v >> 8);
    let fours = (v & BYTES_0_4).wrapping_mul(100 + (1_000_000 << 32));
    let pairs = ((v >> 16) & BYTES_0_4).wrapping_mul(1 + (10_000 << 32));
    fours.wrapping_add(pairs) >> 32
}

const SIMPLE: u8 = 1;
const UNICODE: u8 = 2;
/// What may follow a backslash: `SIMPLE` for `"\/bfnrt`, `UNICODE` for `u`, else 0 (a table:
/// the escape letters come in no predictable order).
static ESCAPES: [u8; 256] = {
    let mut table = [0; 256];
    let mut i = 0;
    while i < 8 {
        table[b"\"\\/bfnrt"[i] as usize] = SIMPLE;
        i += 1;
    }
    table[b'u' as usize] = UNICODE;
    table
};

/// The number of ASCII digits at `bytes[at..]`, eight bytes at a time (SWAR: no branch per
/// digit, whose count varies from number to number).
#[inline(always)]
fn digit_run(bytes: &[u8], at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    let mut run = 0;
    while let Some(word) = bytes.get(at + run..at + run + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // Per byte, nonzero unless a digit: high nibble not 3, or low nibble 10 or more.
        let other = ((x & (ONES * 0xf0)) ^ (ONES * 0x30))
            | (((x & (ONES * 0x0f)) + ONES * 6) & (ONES * 0x10));
        // 0x80 in the bytes that are nonzero (no carry between bytes: at most 0x7f + 0x7f).
        let flags = (((other & (ONES * 0x7f)) + ONES * 0x7f) | other) & (ONES * 0x80);
        if flags != 0 {
            return run + (flags.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    run + bytes[at + run..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// Decoded keys up to this length skip serde_json (frames escape some root keys, e.g. `t\u0073`).
const SHORT_KEY: usize = 32;

/// Decodes an all-ASCII string body whose escapes were checked (`check_escapes`) into `buffer`,
/// when it fits and has no `\u` surrogate (those go to serde_json, which pairs or rejects them);
/// returns its length. The decoded text is UTF-8: ASCII bytes and encoded characters.
fn unescape_short_ascii(raw: &[u8], buffer: &mut [u8; SHORT_KEY]) -> Option<usize> {
    let (mut from, mut len) = (0, 0);
    let mut push = |bytes: &[u8], len: &mut usize| {
        let end = *len + bytes.len();
        buffer.get_mut(*len..end)?.copy_from_slice(bytes);
        *len = end;
        Some(())
    };
    while let Some(at) = raw[from..]
        .iter()
        .position(|&b| b == b'\\')
        .map(|i| from + i)
    {
        push(&raw[from..at], &mut len)?;
        let mut utf8 = [0u8; 4];
        let decoded: &[u8] = match raw[at + 1] {
            b'u' => {
                let hex = std::str::from_utf8(&raw[at + 2..at + 6]).ok()?;
                let unit = u32::from_str_radix(hex, 16).ok()?;
                char::from_u32(unit)?.encode_utf8(&mut utf8).as_bytes()
            }
            b'b' => b"\x08",
            b'f' => b"\x0c",
            b'n' => b"\n",
            b'r' => b"\r",
            b't' => b"\t",
            other => {
                utf8[0] = other; // `"`, `\\` and `/` stand for themselves
                &utf8[..1]
            }
        };
        push(decoded, &mut len)?;
        from = at + if raw[at + 1] == b'u' { 6 } else { 2 };
    }
    push(&raw[from..], &mut len)?;
    Some(len)
}

/// A string body the block masks found no byte >= 0x80 in, as text without re-validating it.
#[inline]
fn ascii_text(body: &[u8]) -> &str {
    // The tests run in release mode: check the masks' claim there too.
    #[cfg(any(test, debug_assertions))]
    assert!(body.is_ascii(), "block masks missed a non-ASCII byte");
    // SAFETY: `non_ascii` is clear for the span, so every byte is below 0x80: ASCII is UTF-8.
    unsafe { std::str::from_utf8_unchecked(body) }
}

/// Equality of short byte strings (keys, literals) without a call to `memcmp`.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn short_keys_unescape_as_serde_json_decodes_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pieces = [
            "t",
            "s",
            "uid",
            "\\u0073",
            "\\u0075",
            "\\u00e9",
            "\\u20ac",
            "\\ud83d\\ude00",
            "\\ud83d",
            "\\n",
            "\\t",
            "\\\\",
            "\\\"",
            "\\/",
            "\\b",
            "\\f",
            "\\r",
            "\\u0000",
            "x",
        ];
        for _ in 0..20_000 {
            let n = rng.gen_range(1..12);
            let raw: String = (0..n)
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect();
            let reference = serde_json::from_str::<String>(&format!("\"{raw}\"")).ok();
            let mut buffer = [0u8; SHORT_KEY];
            match unescape_short_ascii(raw.as_bytes(), &mut buffer) {
                Some(len) => {
                    let key = std::str::from_utf8(&buffer[..len]).expect("UTF-8");
                    assert_eq!(Some(key), reference.as_deref(), "{raw}");
                }
                // Only surrogates and keys too long for the buffer go to serde_json.
                None => assert!(
                    raw.contains("\\ud8") || reference.is_some_and(|k| k.len() > SHORT_KEY),
                    "{raw}"
                ),
            }
        }
    }

    #[test]
    fn digits_values_agree_with_a_byte_loop() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
        for _ in 0..100_000 {
            let len = rng.gen_range(1..=19);
            let digits: Vec<u8> = (0..len).map(|_| rng.gen_range(b'0'..=b'9')).collect();
            let want = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            assert_eq!(
                digits_value(&digits),
                want,
                "{}",
                String::from_utf8_lossy(&digits)
            );
        }
        assert_eq!(
            digits_value(b"9999999999999999999"),
            9_999_999_999_999_999_999
        );
        assert_eq!(digits_value(b"00000000"), 0);
    }

    #[test]
    fn digit_runs_agree_with_a_byte_loop() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        // Digits and their neighbours in every nibble sense: `/`, `:`, 0xb0..0xb9, 0x3a..0x3f.
        const BYTES: &[u8] = b"0123456789/:;?\xb0\xb5\xb9\x30\x39\x29 .eE-\xff\x00";
        for _ in 0..50_000 {
            let len = rng.gen_range(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.gen_bool(0.7) {
                        rng.gen_range(b'0'..=b'9')
                    } else {
                        BYTES[rng.gen_range(0..BYTES.len())]
                    }
                })
                .collect();
            let at = rng.gen_range(0..=len);
            let want = bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            assert_eq!(digit_run(&bytes, at), want, "{bytes:?} at {at}");
        }
    }

    /// A random value nested `depth` levels deep (brackets inside strings and escaped quotes
    /// included): its first member that deep, any others shallow.
    fn nested_value(rng: &mut impl Rng, depth: usize, out: &mut String) {
        const STRINGS: [&str; 6] = [
            r#""a""#,
            r#""]}""#,
            r#""\"[{""#,
            r#""\\""#,
            r#""""#,
            "\"é\"",
        ];
        if depth == 0 {
            let scalars = ["1", "true", "null", "-2.5", "[]", "{}"];
            let pick = rng.gen_range(0..STRINGS.len() + scalars.len());
            out.push_str(
                STRINGS
                    .get(pick)
                    .unwrap_or_else(|| &scalars[pick - STRINGS.len()]),
            );
            return;
        }
        let curly = rng.gen_bool(0.5);
        out.push(if curly { '{' } else { '[' });
        for i in 0..rng.gen_range(1..4) {
            if i > 0 {
                out.push(',');
            }
            if curly {
                out.push_str(r#""k":"#);
            }
            let depth = if i == 0 {
                depth - 1
            } else {
                rng.gen_range(0..3).min(depth - 1)
            };
            nested_value(rng, depth, out);
        }
        out.push(if curly { '}' } else { ']' });
    }

    /// `skip_container` byte by byte, with the open brackets on a `Vec`: where the value at `at`
    /// ends, or the position and reason of its error.
    fn skip_reference(line: &[u8], at: usize) -> (usize, Scan<()>) {
        let (mut open, mut in_string, mut escaped) = (Vec::new(), false, false);
        for (i, &b) in line.iter().enumerate().skip(at) {
            // Backslashes escape outside strings too (the `blocks` contract).
            let quote = b == b'"' && !escaped;
            escaped = b == b'\\' && !escaped;
            in_string ^= quote;
            if in_string || quote {
                continue;
            }
            if b == b'{' || b == b'[' {
                open.push(b);
            } else if b == b'}' || b == b']' {
                if open.pop() != Some(b - 2) {
                    return (i, Err("mismatched bracket"));
                }
                if open.is_empty() {
                    return (i + 1, Ok(()));
                }
            }
        }
        (line.len(), Err("unterminated object or array"))
    }

    #[test]
    fn containers_skip_as_a_bracket_stack_walk_does() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(29);
        for round in 0..20_000 {
            let mut line = String::from(r#"{"x":"#);
            // Often past the register stack's 63 levels.
            let depth = [1, 3, 10, 63, 64, 70, 150][rng.gen_range(0..7)];
            nested_value(&mut rng, depth, &mut line);
            let mut line = line.into_bytes();
            // Mismatches, cuts and stray brackets.
            for _ in 0..rng.gen_range(0..3) {
                if line.len() <= 6 {
                    break; // the opener stays
                }
                let i = rng.gen_range(6..line.len());
                match rng.gen_range(0..3) {
                    0 => line[i] = b"{}[]"[rng.gen_range(0..4)],
                    1 => line.truncate(i.max(6)),
                    _ => line.insert(i, b"{}[]\\\""[rng.gen_range(0..6)]),
                }
            }
            line.extend_from_slice(b"}");
            let (want_pos, want) = skip_reference(&line, 5);
            for kernel in Kernel::available() {
                let mut blocks = Vec::new();
                classify_line(kernel, &line, &mut blocks);
                let mut scanner = Scanner {
                    bytes: &line,
                    pos: 5,
                    blocks: &blocks,
                    line_text: None,
                };
                let got = scanner.skip_container();
                let shown = String::from_utf8_lossy(&line);
                assert_eq!(
                    (scanner.pos, got),
                    (want_pos, want),
                    "round {round}, {kernel:?}: {shown}"
                );
            }
        }
    }

    #[test]
    fn keys_find_every_field_of_a_long_list() {
        // Many names, so that slots collide; long ones share their first eight bytes.
        let names: Vec<String> = (0..200)
            .map(|i| match i % 3 {
                0 => format!("k{i}"),
                1 => format!("a_long_key_{i}"),
                _ => format!("{i}"),
            })
            .collect();
        let keys = Keys::new(&names);
        // Found alike with and without the filter, which must never hide a name.
        let find = |key: &str| {
            let found = keys.find(key.as_bytes(), head(key.as_bytes(), 0, key.len()));
            let line = format!("\"{key}\"");
            assert_eq!(keys.find_in(line.as_bytes(), 1, key.len()), found, "{key}");
            found
        };
        for (i, name) in names.iter().enumerate() {
            assert_eq!(find(name), Some(i), "{name}");
            assert_eq!(find(&format!("{name}x")), None, "{name}x");
            assert_eq!(
                find(&name[1..]).map(|f| &names[f]),
                names.iter().find(|n| **n == name[1..])
            );
        }
    }

    #[test]
    fn keys_match_whole_names_only() {
        let names: Vec<String> = ["ts", "uid", "a_long_key_name", "a_long_key_other", "ts"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let keys = Keys::new(&names);
        for (key, want) in [
            ("ts", Some(0)),
            ("uid", Some(1)),
            ("tsx", None),
            ("t", None),
            ("a_long_key_name", Some(2)),
            ("a_long_key_other", Some(3)),
            ("a_long_key_nam", None),
            ("a_long_key_namf", None),
        ] {
            let line = format!("\"{key}\"");
            let bytes = line.as_bytes();
            assert_eq!(
                keys.find(key.as_bytes(), head(bytes, 1, key.len())),
                want,
                "{key}"
            );
        }
    }
}
