//! The fast path for short flat lines (the SPS shape: a few root keys, scalar values, ~100 bytes).
//!
//! Contract: `extract` either fills `out` exactly as the general scanner would for an accepted
//! line, or gives up (`None`), possibly with `out` partly written; the general scanner then
//! decides, and words any error. It gives up on lines longer than `MAX_LEN`, with a backslash or
//! a control character anywhere (so whitespace is spaces only), with a nested object or array,
//! and on anything invalid.
//!
//! Such a line needs no per-string checks: one classification of the (at most two) blocks finds
//! every quote, and one UTF-8 check of the whole line, when it is not ASCII, covers every string.
//! The walk then pairs quotes in order: only strings hold quotes, and the root scalars, spaces and
//! punctuation between them are read byte by byte.

use super::{head, number_end, number_value, short_eq, Keys};
use crate::extract::blocks::Kernel;
use crate::extract::Scalar;
use std::borrow::Cow;

/// The longest line taken: two blocks.
pub const MAX_LEN: usize = 128;

/// A line copied into a zeroed buffer: reads past the end (up to eight bytes further, for words)
/// see zeros, which end every token (no digit, literal or space is zero), and a position taken
/// modulo its size (the walk never goes past `MAX_LEN + 8`) needs no bounds check.
type Padded = [u8; PADDED];
const PADDED: usize = 256;

/// Fills `out[i]` with the value of root key `keys.names[i]`; see the module contract.
pub fn extract<'a>(
    keys: &Keys,
    kernel: Kernel,
    line: &'a [u8],
    out: &mut [Option<Scalar<'a>>],
) -> Option<()> {
    let len = line.len();
    if len > MAX_LEN {
        return None;
    }
    let mut padded: Padded = [0; PADDED];
    padded[..len].copy_from_slice(line);
    let (quotes, text) = classify(kernel, &padded, line)?;
    let mut walk = Walk {
        padded: &padded,
        text,
        quotes,
        pos: 0,
    };
    walk.root(keys, out)
}

/// The line's quotes (bit `i` for byte `i`) and the line as text; `None` when the line has a
/// backslash or a control character, or is not UTF-8.
#[inline]
fn classify<'a>(kernel: Kernel, padded: &Padded, line: &'a [u8]) -> Option<(u128, &'a str)> {
    let classes = kernel.classify_short(padded[..MAX_LEN].try_into().expect("128 bytes"));
    // The padding is zeros: control characters past the end, which do not count.
    let live = u128::MAX
        .checked_shr((MAX_LEN - line.len()) as u32)
        .unwrap_or(0);
    if classes.odd & live != 0 {
        return None;
    }
    let text = if classes.non_ascii == 0 {
        super::ascii_text(line)
    } else {
        std::str::from_utf8(line).ok()?
    };
    Some((classes.quote, text))
}

/// The walk over the root level of a short line.
struct Walk<'a, 'p> {
    padded: &'p Padded,
    /// The line as text (every string of it is, between its quotes).
    text: &'a str,
    /// The quotes not yet walked past.
    quotes: u128,
    pos: usize,
}

impl<'a> Walk<'a, '_> {
    fn root(&mut self, keys: &Keys, out: &mut [Option<Scalar<'a>>]) -> Option<()> {
        self.expect(b'{')?;
        if self.token() == b'}' {
            self.pos += 1;
        } else {
            loop {
                let wanted = self.key(keys)?;
                self.expect(b':')?;
                let first = self.token();
                match wanted {
                    Some(i) => out[i] = Some(self.value(first)?),
                    None => self.skip_value(first)?,
                }
                match self.token() {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.token();
        (self.pos == self.text.len()).then_some(())
    }

    /// Moves past spaces; returns the byte there (zero past the end of the line).
    #[inline(always)]
    fn token(&mut self) -> u8 {
        let byte = self.padded[self.pos % PADDED];
        if byte == b' ' {
            return self.after_spaces();
        }
        byte
    }

    /// `token` when there are spaces: out of the way of compact lines.
    #[cold]
    fn after_spaces(&mut self) -> u8 {
        while self.padded[self.pos % PADDED] == b' ' {
            self.pos += 1;
        }
        self.padded[self.pos % PADDED]
    }

    /// Moves past spaces and `byte`.
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Option<()> {
        if self.token() != byte {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    /// Reads a root key; returns the index of the field it names, if any.
    #[inline]
    fn key(&mut self, keys: &Keys) -> Option<Option<usize>> {
        if self.token() != b'"' {
            return None;
        }
        let start = self.pos + 1;
        let key = self.string()?;
        Some(keys.find(key.as_bytes(), head(self.padded, start, key.len())))
    }

    /// Moves past the string whose opening quote is at `pos`; returns its body.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        // Every quote before `pos` was walked past (only strings hold quotes), so the lowest left
        // is this string's opening quote, and the next one its closing quote.
        #[cfg(any(test, debug_assertions))]
        assert_eq!(self.quotes.trailing_zeros() as usize, self.pos);
        self.quotes &= self.quotes - 1;
        if self.quotes == 0 {
            return None;
        }
        let close = self.quotes.trailing_zeros() as usize;
        self.quotes &= self.quotes - 1;
        #[cfg(any(test, debug_assertions))]
        assert!(self.pos < close && close < self.text.len());
        // SAFETY: both ends are in the line (quotes are, and the opening one comes first), and
        // next to ASCII quotes, so on character boundaries. (`get` would check both again.)
        let body = unsafe { self.text.get_unchecked(self.pos + 1..close) };
        self.pos = close + 1;
        Some(body)
    }

    /// Reads the root value at `pos`, whose first byte is `first`: a string or a scalar
    /// (anything else gives up).
    #[inline]
    fn value(&mut self, first: u8) -> Option<Scalar<'a>> {
        match first {
            b'"' => self.string().map(|s| Scalar::Str(Cow::Borrowed(s))),
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                let integer = self.number()?;
                number_value(&self.text.as_bytes()[start..self.pos], integer).ok()
            }
            b't' => self.literal(b"true").map(|()| Scalar::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Scalar::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Scalar::Null),
            _ => None,
        }
    }

    /// Moves past a root value, as `value` reads it.
    #[inline]
    fn skip_value(&mut self, first: u8) -> Option<()> {
        match first {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// Moves past the number at `pos`, checking its grammar; returns whether it is an integer.
    #[inline]
    fn number(&mut self) -> Option<bool> {
        let (end, integer) = number_end(self.padded, self.pos).ok()?;
        self.pos = end;
        Some(integer)
    }

    #[inline]
    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.pos + literal.len();
        short_eq(&self.padded[self.pos..end], literal).then(|| self.pos = end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A random valid short flat object of the shape the fast path takes.
    fn plain_line(rng: &mut impl Rng) -> String {
        const KEYS: &[&str] = &["ts", "uid", "sev", "clé", "device", "", "a_long_key_name"];
        const VALUES: &[&str] = &[
            r#""apple_tv""#,
            r#""""#,
            r#""Мороз и солнце""#,
            r#""{[]}""#,
            "0",
            "-0",
            "7",
            "-12",
            "1515445353840",
            "123456789012345678",
            "-1234567890123456789",
            "12345678901234567890",
            "1.5",
            "-0.0",
            "1e5",
            "2E-3",
            "1E+2",
            "0.25e-2",
            "true",
            "false",
            "null",
        ];
        let space = |rng: &mut dyn rand::RngCore| if rng.gen_bool(0.1) { " " } else { "" };
        let members: Vec<String> = (0..rng.gen_range(0..6))
            .map(|_| {
                let key = KEYS[rng.gen_range(0..KEYS.len())];
                let value = VALUES[rng.gen_range(0..VALUES.len())];
                format!(
                    "{}\"{key}\"{}:{}{value}{}",
                    space(rng),
                    space(rng),
                    space(rng),
                    space(rng)
                )
            })
            .collect();
        format!("{}{{{}}}{}", space(rng), members.join(","), space(rng))
    }

    #[test]
    fn plain_short_lines_take_the_fast_path_and_agree_with_the_scanner() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let names: Vec<String> = ["ts", "uid", "clé", "", "a_long_key_name", "ts"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let keys = Keys::new(&names);
        let mut taken = 0;
        while taken < 20_000 {
            let line = plain_line(&mut rng);
            if line.len() > MAX_LEN {
                continue;
            }
            taken += 1;
            for kernel in Kernel::available() {
                let mut fast = vec![None; names.len()];
                let mut general = vec![None; names.len()];
                assert!(
                    extract(&keys, kernel, line.as_bytes(), &mut fast).is_some(),
                    "{kernel:?} gave up on {line}"
                );
                super::super::general(&keys, kernel, line.as_bytes(), &mut general).unwrap();
                assert_eq!(fast, general, "{kernel:?} on {line}");
            }
        }
    }
}
