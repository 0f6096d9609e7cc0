//! File input: JSONL files (plain, `.gz`, or `-` for stdin) split into fixed-size chunks.
//!
//! Contract: a plain file of `size` bytes is cut into `ceil(size / chunk_size)` chunks; a line
//! belongs to the chunk in which its first byte lies. Chunk boundaries depend only on the file
//! and `--chunk-size`, never on the worker count, and each chunk is one partition with its own
//! event-time clock, so lateness (and thus the output) is the same for any number of workers or
//! processes. Worker `w` of `peers` reads chunks `w, w + peers, w + 2*peers, …` in file order.
//! Compressed files and stdin cannot be split: they are one partition, read by worker 0.
//! Offsets in dead-letter records are byte offsets into the (uncompressed) input.

use super::{Partition, ReadStatus};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Splits `path` into partitions and returns those owned by `worker` of `peers`.
pub fn partitions(
    path: &str,
    chunk_size: u64,
    worker: usize,
    peers: usize,
) -> Result<Vec<Box<dyn Partition>>> {
    if path == "-" {
        let stdin: Box<dyn Read + Send> = Box::new(io::stdin());
        return Ok(owned_by_first(worker, || {
            StreamPartition::new("stdin".into(), stdin)
        }));
    }
    let file_path = PathBuf::from(path);
    let file = File::open(&file_path).with_context(|| format!("--input: cannot open {path}"))?;
    if path.ends_with(".gz") {
        let reader: Box<dyn Read + Send> = Box::new(flate2::read::MultiGzDecoder::new(file));
        return Ok(owned_by_first(worker, || {
            StreamPartition::new(path.to_string(), reader)
        }));
    }
    let size = file
        .metadata()
        .with_context(|| format!("--input: cannot stat {path}"))?
        .len();
    let chunk_size = chunk_size.max(1);
    let chunks = size.div_ceil(chunk_size);
    let mut owned: Vec<Box<dyn Partition>> = Vec::new();
    for index in (worker as u64..chunks).step_by(peers) {
        let start = index * chunk_size;
        let end = (start + chunk_size).min(size);
        owned.push(Box::new(FileChunk::new(
            file_path.clone(),
            index,
            start,
            end,
        )));
    }
    Ok(owned)
}

fn owned_by_first(
    worker: usize,
    make: impl FnOnce() -> StreamPartition,
) -> Vec<Box<dyn Partition>> {
    if worker == 0 {
        vec![Box::new(make())]
    } else {
        Vec::new()
    }
}

/// Reads newline-separated records from any reader, tracking byte offsets.
struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Offset of `buf[pos]` in the input.
    offset: u64,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    fn new(reader: R, offset: u64) -> Self {
        LineReader {
            reader,
            buf: vec![0; 1 << 20],
            pos: 0,
            len: 0,
            offset,
            eof: false,
        }
    }

    /// The next line (without `\n` or `\r\n`) and its offset, or `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..self.len]) {
                let (start, offset) = (self.pos, self.offset);
                self.pos += i + 1;
                self.offset += i as u64 + 1;
                return Ok(Some((offset, trim_cr(&self.buf[start..start + i]))));
            }
            if self.eof {
                if self.pos == self.len {
                    return Ok(None);
                }
                let (start, offset) = (self.pos, self.offset);
                self.offset += (self.len - self.pos) as u64;
                self.pos = self.len;
                return Ok(Some((offset, trim_cr(&self.buf[start..self.len]))));
            }
            self.fill()?;
        }
    }

    /// Moves the unread tail to the front and reads more, growing the buffer for long lines.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.reader.read(&mut self.buf[self.len..])?;
        if n == 0 {
            self.eof = true;
        }
        self.len += n;
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// One chunk of a plain file: the lines whose first byte lies in `[start, end)`.
pub struct FileChunk {
    path: PathBuf,
    index: u64,
    start: u64,
    end: u64,
    lines: Option<LineReader<File>>,
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

    /// Opens a reader positioned at the first line that starts inside the chunk.
    fn open(&self) -> io::Result<LineReader<File>> {
        let mut file = File::open(&self.path)?;
        let first = self.first_line_start(&mut file)?.min(self.end);
        file.seek(SeekFrom::Start(first))?;
        // Lines starting before `end` may run past it, so the reader is not cut at `end`.
        Ok(LineReader::new(file, first))
    }

    /// Offset of the first line starting at or after `start`: just past the first newline at or
    /// after `start - 1` (so a line starting exactly at `start` belongs to this chunk).
    fn first_line_start(&self, file: &mut File) -> io::Result<u64> {
        if self.start == 0 {
            return Ok(0);
        }
        file.seek(SeekFrom::Start(self.start - 1))?;
        let mut at = self.start - 1;
        let mut block = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut block)?;
            if n == 0 {
                return Ok(u64::MAX);
            }
            if let Some(i) = memchr::memchr(b'\n', &block[..n]) {
                return Ok(at + i as u64 + 1);
            }
            at += n as u64;
        }
    }

    fn each_line(
        lines: &mut LineReader<File>,
        end: u64,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> io::Result<ReadStatus> {
        let mut read = 0;
        while read < max_bytes {
            match lines.next_line()? {
                Some((offset, line)) if offset < end => {
                    read += line.len() + 1;
                    if !is_blank(line) && !each(offset, line) {
                        return Ok(ReadStatus::Data);
                    }
                }
                _ => return Ok(ReadStatus::End),
            }
        }
        Ok(ReadStatus::Data)
    }
}

impl Partition for FileChunk {
    fn name(&self) -> String {
        format!("{}#{}", display_name(&self.path), self.index)
    }

    fn peek(&mut self, max_bytes: usize, each: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
        let mut lines = self.open()?;
        FileChunk::each_line(&mut lines, self.end, max_bytes, &mut |_, line| each(line))?;
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
        })?;
        if status == ReadStatus::End {
            self.lines = None; // close the file
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
        for worker in 0..3 {
            for mut p in partitions(path, chunk_size, worker, 3).unwrap() {
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
