//! Classification of a JSON line in 64-byte blocks, as in simdjson's "stage 1": per block, one
//! bit per byte (bit `i` is byte `base + i`) for unescaped quotes, backslashes, escaped
//! characters, non-ASCII bytes, "unusual" bytes (control characters, non-ASCII bytes and
//! backslashes) and brackets outside strings.
//!
//! Contract:
//! - `classify_line` classifies all the line's blocks in one pass, in order from its start; no
//!   mask has a bit past the end of the line except `escaped` right after a trailing backslash.
//! - A character is *escaped* when an odd run of backslashes precedes it (in `\\\"` the second
//!   backslash and the quote are); runs straddling blocks are carried over. Backslashes escape
//!   wherever they are, as in simdjson: only inside strings is that JSON.
//! - *Inside a string* is the parity of unescaped quotes since the start of the line. That is
//!   exact for a valid line, and for every prefix the root scanner (`scan`) has accepted: it
//!   only moves over root strings (two unescaped quotes), root scalars (none) and nested values
//!   that end outside a string, so the parity is even wherever it stands.
//! - The byte classes have one implementation per instruction set (AVX2, SSE2, portable u64
//!   SWAR), with identical results; `Kernel::detect` picks the best the CPU has, and the tests
//!   run every kernel the machine has against a byte-by-byte reference.
//! - `Kernel::classify_short` gives the short-line path of `scan` the quotes, backslashes or
//!   control characters, and non-ASCII bytes of its two blocks at once, without carries (that
//!   path gives up on backslashes).

/// How the bytes of a block are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// u64 SWAR: any target.
    Portable,
    /// 16 bytes at a time: baseline on x86_64.
    #[cfg(target_arch = "x86_64")]
    Sse2,
    /// 32 bytes at a time, when the CPU has AVX2 (and carry-less multiplication, which every
    /// AVX2 CPU has: the in-string mask is one multiplication).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2() {
                return Kernel::Avx2;
            }
            Kernel::Sse2
        }
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Portable
    }

    /// Every kernel this CPU runs (for tests and benchmarks).
    pub fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            all.push(Kernel::Sse2);
            if avx2() {
                all.push(Kernel::Avx2);
            }
        }
        all
    }

    /// The classes of a short line's two blocks that its fast path needs (no escapes or
    /// strings: it gives up on backslashes).
    pub(super) fn classify_short(self, bytes: &[u8; 128]) -> ShortClasses {
        match self {
            Kernel::Portable => short_classes(classify_portable, bytes),
            // SAFETY: SSE2 is part of the x86_64 baseline.
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => unsafe { classify_short_sse2(bytes) },
            // SAFETY: `Avx2` is only chosen (`detect`, `available`) when the CPU has AVX2 and PCLMULQDQ.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { classify_short_avx2(bytes) },
        }
    }

    /// The byte classes of `chunk` (tests compare the kernels through this).
    #[cfg(test)]
    fn classify(self, chunk: &[u8; 64]) -> Classes {
        match self {
            Kernel::Portable => classify_portable(chunk),
            // SAFETY: SSE2 is part of the x86_64 baseline.
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => unsafe { classify_sse2(chunk) },
            // SAFETY: `Avx2` is only chosen (`detect`, `available`) when the CPU has AVX2 and PCLMULQDQ.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { classify_avx2(chunk) },
        }
    }
}

/// Whether the CPU runs `Kernel::Avx2`.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("pclmulqdq")
}

/// The byte classes of one block, before escapes and strings are taken into account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Classes {
    quote: u64,
    backslash: u64,
    /// 0x80 and above.
    non_ascii: u64,
    /// Control characters (below 0x20), non-ASCII bytes and backslashes, in one mask (see
    /// `Block::unusual`).
    unusual: u64,
    /// `{`, `}`, `[` or `]`.
    bracket: u64,
}

/// The byte classes of 128 bytes that the short-line path needs: bit `i` for byte `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ShortClasses {
    pub quote: u128,
    /// Backslashes and control characters.
    pub odd: u128,
    pub non_ascii: u128,
}

/// `ShortClasses` from the classes of the two blocks of `bytes` (the compiler drops the classes
/// not used when `classify` is inlined).
#[inline(always)]
fn short_classes(classify: impl Fn(&[u8; 64]) -> Classes, bytes: &[u8; 128]) -> ShortClasses {
    let (low, high) = bytes.split_at(64);
    let [low, high] = [low, high].map(|half| classify(half.try_into().expect("64 bytes")));
    let join = |low: u64, high: u64| u128::from(low) | u128::from(high) << 64;
    // Backslashes and control characters: the unusual bytes that are ASCII.
    let odd = |c: Classes| c.unusual & !c.non_ascii;
    ShortClasses {
        quote: join(low.quote, high.quote),
        odd: join(odd(low), odd(high)),
        non_ascii: join(low.non_ascii, high.non_ascii),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify_short_sse2(bytes: &[u8; 128]) -> ShortClasses {
    short_classes(|chunk| classify_sse2(chunk), bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn classify_short_avx2(bytes: &[u8; 128]) -> ShortClasses {
    short_classes(|chunk| classify_avx2(chunk), bytes)
}

/// The masks of one block.
#[derive(Clone, Copy, Debug, Default)]
pub struct Block {
    /// Quotes not escaped: each opens or closes a string.
    pub quotes: u64,
    pub backslashes: u64,
    /// Characters escaped by a backslash (see the module contract).
    pub escaped: u64,
    /// Control characters, non-ASCII bytes and backslashes: what a plain ASCII string has none
    /// of, in one mask for the scanner's common test (control characters are the bits that are
    /// in neither `non_ascii` nor `backslashes`).
    pub unusual: u64,
    pub non_ascii: u64,
    /// Brackets outside strings.
    pub brackets: u64,
}

/// Replaces `blocks` with the masks of every block of `line`, in order: block `k` covers bytes
/// `64 * k..64 * k + 64` (the last one as far as the line goes). One pass over the whole line,
/// as simdjson's stage 1: one call, the carries in registers, no cursor to check per string.
pub fn classify_line(kernel: Kernel, line: &[u8], blocks: &mut Vec<Block>) {
    blocks.clear();
    blocks.reserve(line.len().div_ceil(64));
    match kernel {
        Kernel::Portable => classify_blocks(line, blocks, classify_portable, prefix_xor),
        // SAFETY: SSE2 is part of the x86_64 baseline.
        #[cfg(target_arch = "x86_64")]
        Kernel::Sse2 => unsafe { classify_line_sse2(line, blocks) },
        // SAFETY: `Avx2` is only chosen (`detect`, `available`) when the CPU has AVX2 and PCLMULQDQ.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { classify_line_avx2(line, blocks) },
    }
}

/// `classify_blocks` with `classify_sse2`, compiled as one function.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify_line_sse2(line: &[u8], blocks: &mut Vec<Block>) {
    classify_blocks(line, blocks, |chunk| classify_sse2(chunk), prefix_xor);
}

/// `classify_blocks` with `classify_avx2` and `prefix_xor_clmul`, compiled as one function (the
/// mask arithmetic too).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
fn classify_line_avx2(line: &[u8], blocks: &mut Vec<Block>) {
    classify_blocks(
        line,
        blocks,
        |chunk| classify_avx2(chunk),
        |x| prefix_xor_clmul(x),
    );
}

/// Appends the blocks of `line` to `blocks` (which has room for them), their byte classes from
/// `classify`; `prefix_xor` is `prefix_xor` or a faster equivalent.
#[inline(always)]
fn classify_blocks(
    line: &[u8],
    blocks: &mut Vec<Block>,
    classify: impl Fn(&[u8; 64]) -> Classes,
    prefix_xor: impl Fn(u64) -> u64,
) {
    let mut carries = Carries::default();
    let whole = line.chunks_exact(64);
    let rest = whole.remainder().len();
    blocks
        .extend(whole.map(|chunk| {
            carries.block(classify(chunk.try_into().expect("64 bytes")), &prefix_xor)
        }));
    if rest == 0 {
        return;
    }
    // A last partial block is read as the line's last 64 bytes, its classes then shifted down:
    // no copy. Only a line shorter than a block is copied, padded with spaces.
    let classes = match line.len().checked_sub(64) {
        Some(start) => {
            let chunk = line[start..].try_into().expect("64 bytes");
            classify(chunk).shifted(64 - rest as u32)
        }
        None => {
            let mut padded = [b' '; 64];
            padded[..rest].copy_from_slice(line);
            classify(&padded)
        }
    };
    blocks.push(carries.block(classes, &prefix_xor));
}

impl Classes {
    /// The classes of bytes `shift..64`, moved down to bit 0.
    fn shifted(self, shift: u32) -> Classes {
        Classes {
            quote: self.quote >> shift,
            backslash: self.backslash >> shift,
            non_ascii: self.non_ascii >> shift,
            unusual: self.unusual >> shift,
            bracket: self.bracket >> shift,
        }
    }
}

/// What one block passes on to the next.
#[derive(Default)]
struct Carries {
    /// 1 when the next block's first byte is escaped.
    escape: u64,
    /// All ones when the next block starts inside a string.
    string: u64,
}

impl Carries {
    /// The masks of the block whose byte classes are `classes`, carrying escapes and strings over
    /// from the block before.
    #[inline(always)]
    fn block(&mut self, classes: Classes, prefix_xor: impl Fn(u64) -> u64) -> Block {
        let escaped = escaped(classes.backslash, &mut self.escape);
        let quotes = classes.quote & !escaped;
        let in_string = prefix_xor(quotes) ^ self.string;
        self.string = ((in_string as i64) >> 63) as u64;
        Block {
            quotes,
            backslashes: classes.backslash,
            escaped,
            unusual: classes.unusual,
            non_ascii: classes.non_ascii,
            brackets: classes.bracket & !in_string,
        }
    }
}

/// The characters escaped by `backslash` runs (simdjson's branchless scanner): subtracting the
/// run starts from the odd bits tells odd runs from even ones. `carry` is 1 when this block's
/// first byte is escaped, and is set for the next block.
#[inline]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    // A backslash escaped from the block before starts no escape itself.
    let potential = backslash & !*carry;
    // Odd-length runs end with their escape code set, even ones without; within runs the
    // escaping backslashes alternate.
    let codes = ((potential << 1) | ODD).wrapping_sub(potential) ^ ODD;
    let escaped = codes ^ (backslash | *carry);
    *carry = (codes & backslash) >> 63;
    escaped
}

/// Bit `i` of the result is the XOR of bits `0..=i` of `x`: the in-string mask from the quotes.
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// `prefix_xor` as one carry-less multiplication by all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
fn prefix_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::*;
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// The byte classes eight bytes at a time, in plain u64 arithmetic (any target).
#[inline]
fn classify_portable(chunk: &[u8; 64]) -> Classes {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let splat = |b: u8| u64::from_ne_bytes([b; 8]);
    // 0x80 in exactly the zero bytes of `x` (no borrow between bytes, unlike `x - 0x01..01`).
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    // The high bits of the eight bytes, gathered into the low eight bits in byte order.
    let gather = |h: u64| (h >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
    let mut classes = Classes::default();
    for (k, word) in chunk.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // Setting bit 5 maps `[` and `]` onto `{` and `}`, and no other byte onto them.
        let folded = x | splat(0x20);
        let shift = 8 * k;
        classes.quote |= gather(zero(x ^ splat(b'"'))) << shift;
        classes.backslash |= gather(zero(x ^ splat(b'\\'))) << shift;
        classes.non_ascii |= gather(x & HIGHS) << shift;
        classes.unusual |=
            gather(zero(x & splat(0xe0)) | (x & HIGHS) | zero(x ^ splat(b'\\'))) << shift;
        classes.bracket |= gather(zero(folded ^ splat(b'{')) | zero(folded ^ splat(b'}'))) << shift;
    }
    classes
}

/// The byte classes sixteen bytes at a time with SSE2 (baseline on x86_64).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn classify_sse2(chunk: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    let mut classes = Classes::default();
    for k in 0..4 {
        // SAFETY: the 16 bytes read lie inside `chunk`.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast()) };
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        let mask = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16) << (16 * k);
        let folded = _mm_or_si128(v, splat(0x20));
        let non_ascii = mask(v);
        let backslash = _mm_cmpeq_epi8(v, splat(b'\\'));
        // A signed compare: below 0x20, or 0x80 and above.
        let control_or_non_ascii = _mm_cmplt_epi8(v, splat(0x20));
        classes.quote |= mask(_mm_cmpeq_epi8(v, splat(b'"')));
        classes.backslash |= mask(backslash);
        classes.non_ascii |= non_ascii;
        classes.unusual |= mask(_mm_or_si128(control_or_non_ascii, backslash));
        classes.bracket |= mask(_mm_or_si128(
            _mm_cmpeq_epi8(folded, splat(b'{')),
            _mm_cmpeq_epi8(folded, splat(b'}')),
        ));
    }
    classes
}

/// The byte classes thirty-two bytes at a time with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn classify_avx2(chunk: &[u8; 64]) -> Classes {
    use std::arch::x86_64::*;
    let mut classes = Classes::default();
    for k in 0..2 {
        // SAFETY: the 32 bytes read lie inside `chunk`.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(32 * k).cast()) };
        let splat = |b: u8| _mm256_set1_epi8(b as i8);
        let mask = |m: __m256i| u64::from(_mm256_movemask_epi8(m) as u32) << (32 * k);
        let folded = _mm256_or_si256(v, splat(0x20));
        let non_ascii = mask(v);
        let backslash = _mm256_cmpeq_epi8(v, splat(b'\\'));
        // A signed compare: below 0x20, or 0x80 and above.
        let control_or_non_ascii = _mm256_cmpgt_epi8(splat(0x20), v);
        classes.quote |= mask(_mm256_cmpeq_epi8(v, splat(b'"')));
        classes.backslash |= mask(backslash);
        classes.non_ascii |= non_ascii;
        classes.unusual |= mask(_mm256_or_si256(control_or_non_ascii, backslash));
        classes.bracket |= mask(_mm256_or_si256(
            _mm256_cmpeq_epi8(folded, splat(b'{')),
            _mm256_cmpeq_epi8(folded, splat(b'}')),
        ));
    }
    classes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The classes byte by byte.
    fn classify_reference(chunk: &[u8; 64]) -> Classes {
        let mut c = Classes::default();
        for (i, &b) in chunk.iter().enumerate() {
            let bit = 1u64 << i;
            c.quote |= if b == b'"' { bit } else { 0 };
            c.backslash |= if b == b'\\' { bit } else { 0 };
            c.non_ascii |= if b >= 0x80 { bit } else { 0 };
            let unusual = !(0x20..0x80).contains(&b) || b == b'\\';
            c.unusual |= if unusual { bit } else { 0 };
            c.bracket |= if b"{}[]".contains(&b) { bit } else { 0 };
        }
        c
    }

    /// Masks of a whole line, byte by byte: (escaped, unescaped quotes, brackets outside strings).
    fn line_reference(line: &[u8]) -> Vec<(bool, bool, bool)> {
        let (mut run, mut in_string) = (0usize, false);
        line.iter()
            .map(|&b| {
                let escaped = run % 2 == 1;
                run = if b == b'\\' { run + 1 } else { 0 };
                let quote = b == b'"' && !escaped;
                in_string ^= quote;
                let bracket = b"{}[]".contains(&b) && !in_string;
                (escaped, quote, bracket)
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_the_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        const BYTES: &[u8] = b"\"\\{}[]azAZ \x00\x1f\x20\x7f\x80\xff\xd0{|}~[\\]^";
        for _ in 0..20_000 {
            let mut chunk = [0u8; 64];
            for b in &mut chunk {
                *b = if rng.gen_bool(0.5) {
                    BYTES[rng.gen_range(0..BYTES.len())]
                } else {
                    rng.gen()
                };
            }
            let want = classify_reference(&chunk);
            for kernel in Kernel::available() {
                assert_eq!(kernel.classify(&chunk), want, "{kernel:?} on {chunk:?}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn carry_less_prefix_xor_agrees() {
        if !avx2() {
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for x in (0..100_000)
            .map(|_| rng.gen::<u64>())
            .chain([0, 1, !0, 1 << 63])
        {
            // SAFETY: the CPU has PCLMULQDQ (`avx2`).
            assert_eq!(unsafe { prefix_xor_clmul(x) }, prefix_xor(x), "{x:#x}");
        }
    }

    #[test]
    fn short_classes_agree_with_the_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
        const BYTES: &[u8] = b"\"\\azAZ \x00\x1f\x20\x7f\x80\xff\xd0";
        for _ in 0..20_000 {
            let mut bytes = [0u8; 128];
            for b in &mut bytes {
                *b = BYTES[rng.gen_range(0..BYTES.len())];
            }
            let want = short_classes(classify_reference, &bytes);
            for kernel in Kernel::available() {
                assert_eq!(
                    kernel.classify_short(&bytes),
                    want,
                    "{kernel:?} on {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn escapes_and_strings_carry_across_blocks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for round in 0..3_000 {
            // Dense backslash runs and quotes, so that runs and strings straddle block bounds.
            let len = rng.gen_range(0..300);
            let line: Vec<u8> = (0..len)
                .map(|_| match rng.gen_range(0..10) {
                    0..=3 => b'\\',
                    4..=5 => b'"',
                    6 => b'{',
                    7 => b']',
                    _ => b'a',
                })
                .collect();
            let want = line_reference(&line);
            for kernel in Kernel::available() {
                let mut blocks = Vec::new();
                classify_line(kernel, &line, &mut blocks);
                assert_eq!(blocks.len(), line.len().div_ceil(64));
                for (i, &(escaped, quote, bracket)) in want.iter().enumerate() {
                    let bit = 1u64 << (i % 64);
                    let b = &blocks[i / 64];
                    let got = (
                        b.escaped & bit != 0,
                        b.quotes & bit != 0,
                        b.brackets & bit != 0,
                    );
                    assert_eq!(got, (escaped, quote, bracket), "round {round} byte {i}");
                }
            }
        }
    }

    #[test]
    fn a_trailing_backslash_escapes_past_the_end_only() {
        for kernel in Kernel::available() {
            // A whole block: the escaped byte would be the next block's first.
            let line = [b'a'; 63].iter().chain(b"\\").copied().collect::<Vec<_>>();
            let mut blocks = Vec::new();
            classify_line(kernel, &line, &mut blocks);
            assert_eq!(blocks[0].escaped, 0);
            // A short line (padded) and a last partial block (read in place, shifted).
            for len in [4, 100] {
                let mut line = vec![b'a'; len];
                line[len - 1] = b'\\';
                line[len - 4] = b'"';
                classify_line(kernel, &line, &mut blocks);
                let (block, at) = (blocks.last().expect("a block"), (len - 1) % 64);
                assert_eq!(block.escaped, 1 << (at + 1), "{kernel:?} {len}");
                assert_eq!(block.quotes, 1 << (at - 3), "{kernel:?} {len}");
                assert_eq!(block.backslashes, 1 << at, "{kernel:?} {len}");
            }
        }
    }
}
