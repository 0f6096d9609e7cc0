//! File input: JSONL files (plain, `.gz`, or `-` for stdin) split into fixed-size chunks.
//!
//! Contract: a plain file of `size` bytes is cut into `ceil(size / chunk_size)` chunks; a line
//! belongs to the chunk in which its first byte lies. Chunk boundaries depend only on the file
//! and `--chunk-size`, never on the worker count, and each chunk is one partition with its own
//! event-time clock, so lateness (and thus the output) is the same for any number of workers or
//! processes. Chunk `i` belongs to process `i % processes`, whose workers claim its chunks one at
//! a time in file order (`sources::SharedPartitions`). Compressed files, stdin and named pipes
//! cannot be split: they are one partition, read by worker 0. Plain files are read through a
//! memory map (no copy out of the page cache); a file truncated while the job reads it ends the
//! job with an error (exit status 2).
//! Offsets in dead-letter records are byte offsets into the (uncompressed) input.

use super::{Partition, ReadStatus};
use anyhow::{Context, Result};
use memmap2::{Advice, Mmap, UncheckedAdvice};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How `--input` is read.
pub enum Split {
    /// A plain file: the chunks of this process, in file order, shared by its workers.
    Chunks(Vec<Box<dyn Partition + Send>>),
    /// Stdin, gzip or a named pipe: one stream, which only worker 0 opens (`stream`).
    Stream,
}

/// Splits `path` into chunks and returns those of process `process` of `processes` (chunk `i`
/// belongs to process `i % processes`), or says that it is a stream.
pub fn split(path: &str, chunk_size: u64, process: usize, processes: usize) -> Result<Split> {
    if path == "-" {
        return Ok(Split::Stream);
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("--input: cannot open {path}"))?;
    // Gzip, or a named pipe (`--input <(zcat …)`) or a device: readable once, in order.
    if path.ends_with(".gz") || !metadata.is_file() {
        return Ok(Split::Stream);
    }
    // Unreadable files fail at start-up, not at their first chunk.
    File::open(path).with_context(|| format!("--input: cannot open {path}"))?;
    let file_path = PathBuf::from(path);
    let size = metadata.len();
    let chunk_size = chunk_size.max(1);
    let chunks = size.div_ceil(chunk_size);
    let mut owned: Vec<Box<dyn Partition + Send>> = Vec::new();
    for index in (process as u64..chunks).step_by(processes.max(1)) {
        let start = index * chunk_size;
        let end = (start + chunk_size).min(size);
        owned.push(Box::new(FileChunk::new(
            file_path.clone(),
            index,
            start,
            end,
        )));
    }
    Ok(Split::Chunks(owned))
}

/// Opens a `Split::Stream` input (stdin, gzip or a pipe): one partition, readable once, in order.
/// Only worker 0 calls it: a pipe that a second reader opened after the writer left would block
/// that reader forever.
pub fn stream(path: &str) -> Result<Box<dyn Partition>> {
    let open = || File::open(path).with_context(|| format!("--input: cannot open {path}"));
    let reader: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(open()?))
    } else {
        Box::new(open()?)
    };
    let name = if path == "-" { "stdin" } else { path };
    Ok(Box::new(StreamPartition::new(name.to_string(), reader)))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The lines of a plain file, read straight from a read-only memory map: no copy from the page
/// cache into a buffer (about a tenth of a unique-users run on 2 KB frames went to that copy).
struct MappedLines {
    map: Mmap,
    /// Offset of the next unread byte.
    pos: usize,
    /// Pages before this offset have been handed back (see `release`).
    released: usize,
    /// The kernel was asked to load the file up to this offset (see `read_ahead`).
    advised: usize,
}

/// How much is read between two `release`s; a multiple of every page size.
const RELEASE_BYTES: usize = 1 << 20;
/// How far ahead of the reader the kernel is asked to load the file (`read_ahead`).
const READ_AHEAD_BYTES: usize = 16 << 20;

impl MappedLines {
    /// Maps the file at `path`, positioned at the first line that starts at or after `start`:
    /// just past the first newline at or after `start - 1` (so a line starting exactly at
    /// `start` is the first).
    fn open(path: &Path, start: u64) -> io::Result<MappedLines> {
        let file = File::open(path)?;
        exit_cleanly_on_truncation();
        // SAFETY: the map is only read. Like every reader of mapped files (ripgrep, databases),
        // it assumes the file is not truncated while being read: reading pages cut off by a
        // truncation raises SIGBUS, which ends the job with an error (see
        // `exit_cleanly_on_truncation`). Appending is harmless: the map ends at the size seen here.
        let map = unsafe { Mmap::map(&file)? };
        // Read-ahead for a file that is not in the page cache yet.
        let _ = map.advise(Advice::Sequential);
        let pos = match (start as usize).checked_sub(1) {
            None => 0,
            Some(from) => {
                let tail = map.get(from..).unwrap_or_default();
                memchr::memchr(b'\n', tail).map_or(map.len(), |i| from + i + 1)
            }
        };
        let mut lines = MappedLines {
            map,
            pos,
            released: 0,
            advised: 0,
        };
        // Pages before the first line are not this reader's to release or load.
        lines.released = lines.read_floor();
        lines.advised = lines.released;
        Ok(lines)
    }

    /// `pos` rounded down to a whole `RELEASE_BYTES`: everything before it has been read.
    fn read_floor(&self) -> usize {
        self.pos / RELEASE_BYTES * RELEASE_BYTES
    }

    /// The next line (without `\n` or `\r\n`) and its offset, or `None` at the end.
    #[inline]
    fn next_line(&mut self) -> Option<(u64, &[u8])> {
        let start = self.pos;
        let rest = self.map.get(start..).filter(|rest| !rest.is_empty())?;
        let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        self.pos = start + (len + 1).min(rest.len());
        Some((start as u64, trim_cr(&rest[..len])))
    }

    /// Asks the kernel to start reading the next `READ_AHEAD_BYTES` of a file that is not in
    /// the page cache, so that the worker does not wait at page faults (with sequential advice
    /// alone, a cold 1 GB replay waited 1.9–3.1 s at them; `read` calls waited under 1 s).
    fn read_ahead(&mut self) {
        let from = self.advised.max(self.read_floor());
        let until = (self.pos + READ_AHEAD_BYTES).min(self.map.len());
        if until > from {
            let _ = self.map.advise_range(Advice::WillNeed, from, until - from);
            self.advised = until;
        }
    }

    /// Drops the pages already read from this process's memory (they stay in the page cache),
    /// so that the resident size of a replay does not grow with the file.
    fn release(&mut self) {
        let upto = self.read_floor();
        if upto > self.released {
            // SAFETY: no line before `pos` is borrowed any more (lines are lent to a callback
            // only), and pages of a read-only file map that are dropped read back from the
            // file if touched again.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
            self.released = upto;
        }
    }
}

/// Makes a SIGBUS, which the kernel raises when a mapped input page no longer exists (the file
/// was truncated while the job read it), end the job with an error message naming the cause
/// instead of a bare "Bus error". Installed once, for the whole process.
fn exit_cleanly_on_truncation() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    extern "C" fn on_sigbus(_: libc::c_int) {
        const MESSAGE: &[u8] = b"\nstreamstats: error: --input: the file was truncated while \
being read (SIGBUS on a mapped page); its output is incomplete\n";
        // SAFETY: `write` and `_exit` are async-signal-safe.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::_exit(2);
        }
    }
    INSTALL.call_once(|| {
        // SAFETY: a zeroed `sigaction` with only the handler set is valid; the handler calls
        // async-signal-safe functions only.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

/// One chunk of a plain file: the lines whose first byte lies in `[start, end)`.
pub struct FileChunk {
    path: PathBuf,
    index: u64,
    start: u64,
    end: u64,
    lines: Option<MappedLines>,
}

impl FileChunk {
    fn new(path: PathBuf, index: u64, start: u64, end: u64) -> Self {
        FileChunk {
            path,
            index,
            start,
            end,
            lines: None,
        }
    }

    /// Maps the file at the first line that starts inside the chunk. Lines starting before
    /// `end` may run past it, so the lines are not cut at `end`.
    fn open(&self) -> io::Result<MappedLines> {
        MappedLines::open(&self.path, self.start)
    }

    fn each_line(
        lines: &mut MappedLines,
        end: u64,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> ReadStatus {
        let mut read = 0;
        while read < max_bytes {
            match lines.next_line() {
                Some((offset, line)) if offset < end => {
                    read += line.len() + 1;
                    if !is_blank(line) && !each(offset, line) {
                        return ReadStatus::Data;
                    }
                }
                _ => return ReadStatus::End,
            }
        }
        ReadStatus::Data
    }
}

impl Partition for FileChunk {
    fn name(&self) -> String {
        format!("{}#{}", display_name(&self.path), self.index)
    }

    fn peek(&mut self, max_bytes: usize, each: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        let mut lines = self.open()?;
        FileChunk::each_line(&mut lines, self.end, max_bytes, &mut |_, line| each(line));
        Ok(())
    }

    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> io::Result<ReadStatus> {
        if self.lines.is_none() {
            self.lines = Some(self.open()?);
        }
        let lines = self.lines.as_mut().expect("opened above");
        let status = FileChunk::each_line(lines, self.end, max_bytes, &mut |offset, line| {
            each(offset, line);
            true
        });
        // Only a chunk being read goes on: `peek`, which every chunk gets at start-up, neither
        // releases pages nor loads the next 16 MiB.
        lines.release();
        lines.read_ahead();
        if status == ReadStatus::End {
            self.lines = None; // unmap the file
        }
        Ok(status)
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A non-seekable input (stdin, gzip): one partition, no read-ahead. A thread does the blocking
/// reads (and decompression), so a quiet stdin leaves the worker free to close windows.
pub struct StreamPartition {
    name: String,
    blocks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Bytes received but not yet delivered; starts at input offset `pending_offset`.
    pending: Vec<u8>,
    pending_offset: u64,
    closed: bool,
}

impl StreamPartition {
    fn new(name: String, mut reader: Box<dyn Read + Send>) -> Self {
        let (sender, blocks) = std::sync::mpsc::sync_channel(8);
        std::thread::spawn(move || loop {
            let mut block = vec![0u8; 1 << 20];
            match reader.read(&mut block) {
                Ok(0) => break,
                Ok(n) => {
                    block.truncate(n);
                    if sender.send(Ok(block)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = sender.send(Err(e));
                    break;
                }
            }
        });
        StreamPartition {
            name,
            blocks,
            pending: Vec::new(),
            pending_offset: 0,
            closed: false,
        }
    }
}

impl Partition for StreamPartition {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> io::Result<ReadStatus> {
        while !self.closed && self.pending.len() < max_bytes {
            match self.blocks.try_recv() {
                Ok(block) => self.pending.extend_from_slice(&block?),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.closed = true,
            }
        }
        let mut consumed = 0;
        while let Some(i) = memchr::memchr(b'\n', &self.pending[consumed..]) {
            let line = trim_cr(&self.pending[consumed..consumed + i]);
            if !is_blank(line) {
                each(self.pending_offset + consumed as u64, line);
            }
            consumed += i + 1;
        }
        if self.closed && consumed < self.pending.len() {
            // The last line has no newline.
            let line = trim_cr(&self.pending[consumed..]);
            if !is_blank(line) {
                each(self.pending_offset + consumed as u64, line);
            }
            consumed = self.pending.len();
        }
        self.pending.drain(..consumed);
        self.pending_offset += consumed as u64;
        Ok(match (self.closed && self.pending.is_empty(), consumed) {
            (true, _) => ReadStatus::End,
            (false, 0) => ReadStatus::Idle,
            (false, _) => ReadStatus::Data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &str, chunk_size: u64) -> Vec<(u64, String)> {
        let mut all = Vec::new();
        for process in 0..3 {
            let Split::Chunks(chunks) = split(path, chunk_size, process, 3).unwrap() else {
                panic!("a plain file is split into chunks");
            };
            for mut p in chunks {
                while p
                    .read(7, &mut |o, l| {
                        all.push((o, String::from_utf8(l.to_vec()).unwrap()))
                    })
                    .unwrap()
                    != ReadStatus::End
                {}
            }
        }
        all.sort();
        all
    }

    #[test]
    fn every_line_is_read_once_whatever_the_chunk_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let mut f = File::create(&path).unwrap();
        let text = "a\nbb\r\n\nccc\ndddd\ne\nlast-no-newline";
        f.write_all(text.as_bytes()).unwrap();
        let mut expected = Vec::new();
        let mut offset = 0;
        for l in text.split('\n') {
            let trimmed = l.trim_end_matches('\r');
            if !trimmed.is_empty() {
                expected.push((offset, trimmed.to_string()));
            }
            offset += l.len() as u64 + 1;
        }
        for chunk_size in 1..=text.len() as u64 + 1 {
            assert_eq!(
                lines_of(path.to_str().unwrap(), chunk_size),
                expected,
                "chunk size {chunk_size}"
            );
        }
    }
}
