//! Sinks: where result rows and dead-letter records go.
//!
//! Contract: `open_sink` turns an `--output` target into a `RowSink` shared by the worker threads
//! of one process; each worker hands it whole `RowBatch`es, so lines never interleave. With
//! several processes every process writes its own file (`out.jsonl` becomes `out.p0.jsonl`,
//! `out.p1.jsonl`, …). A sink that cannot write returns an error; the run then stops loudly.
//! `kafka://HOST:PORT/TOPIC` targets produce to a topic instead (`kafka::KafkaSink` for rows,
//! `kafka::KafkaLines` for dead letters); all processes share the topic.

pub mod dead_letter;
pub mod kafka;
pub mod postgres;

use crate::spec::Spec;

/// One result row: `key` identifies (window, group key) uniquely and deterministically (a Kafka
/// message key, a primary key); `json` is the row as one JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRow {
    pub key: String,
    pub json: String,
}

/// Result rows rendered into one buffer of JSON lines, ready to write as they are. A row's key
/// (see `ResultRow`) is not stored but built on demand from two spans of its JSON (`RowKey`):
/// only the Kafka and PostgreSQL sinks need keys. One allocation per window, not one per row.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RowBatch {
    /// Every row followed by `\n`.
    lines: String,
    rows: Vec<RowEnds>,
}

/// Where one row's parts end in `RowBatch::lines`.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct RowEnds {
    json: usize,
    key: RowKey,
}

/// A row's key, as offsets into the batch's text: the key is `[row start, head_end)`, then
/// `members`, then `}`. Window rows key on their time fields and group members, which are
/// adjacent (`head_end == members.0`); session rows have their end time in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowKey {
    pub head_end: usize,
    pub members: (usize, usize),
}

/// One row of a batch: its JSON object and the parts of its key.
pub struct Row<'a> {
    pub json: &'a str,
    key_head: &'a str,
    key_members: &'a str,
}

impl Row<'_> {
    /// Appends the row's key to `out`.
    pub fn write_key(&self, out: &mut String) {
        out.reserve(self.key_head.len() + self.key_members.len() + 1);
        out.push_str(self.key_head);
        out.push_str(self.key_members);
        out.push('}');
    }

    pub fn key(&self) -> String {
        let mut key = String::new();
        self.write_key(&mut key);
        key
    }
}

impl RowBatch {
    /// An empty batch with room for `rows` rows of `line_bytes` in all.
    pub fn with_capacity(rows: usize, line_bytes: usize) -> Self {
        RowBatch {
            lines: String::with_capacity(line_bytes),
            rows: Vec::with_capacity(rows),
        }
    }

    /// Appends a row: `write` appends the JSON object to the text it is given and returns where
    /// the row's key parts are in that text.
    pub fn push(&mut self, write: impl FnOnce(&mut String) -> RowKey) {
        let key = write(&mut self.lines);
        let json = self.lines.len();
        self.lines.push('\n');
        self.rows.push(RowEnds { json, key });
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All rows as newline-terminated JSON lines.
    pub fn lines(&self) -> &str {
        &self.lines
    }

    /// Every row with its key.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        let mut start = 0;
        self.rows.iter().map(move |ends| {
            let (from, to) = ends.key.members;
            let row = Row {
                json: &self.lines[start..ends.json],
                key_head: &self.lines[start..ends.key.head_end],
                key_members: &self.lines[from..to],
            };
            start = ends.json + 1;
            row
        })
    }
}

/// Where result rows go. Shared by the workers of a process.
pub trait RowSink: Send + Sync {
    fn write_rows(&self, batches: &[RowBatch]) -> Result<()>;
    fn flush(&self) -> Result<()>;
}

/// Opens an `--output` target: `-` (stdout), a file path, `postgres://…` (see `postgres`) or
/// `kafka://HOST:PORT/TOPIC`.
pub fn open_sink(
    target: &str,
    spec: &Spec,
    process: usize,
    processes: usize,
) -> Result<std::sync::Arc<dyn RowSink>> {
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        return Ok(std::sync::Arc::new(postgres::PostgresSink::open(
            target, spec,
        )?));
    }
    if crate::kafka::is_kafka_url(target) {
        let options = crate::kafka::user_options();
        return Ok(std::sync::Arc::new(kafka::KafkaSink::open(
            target, &options,
        )?));
    }
    Ok(std::sync::Arc::new(LineWriter::open(
        target, process, processes,
    )?))
}

impl RowSink for LineWriter {
    fn write_rows(&self, batches: &[RowBatch]) -> Result<()> {
        Ok(self.write_texts(batches.iter().map(RowBatch::lines))?)
    }

    fn flush(&self) -> Result<()> {
        Ok(LineWriter::flush(self)?)
    }
}

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A process-wide, thread-safe writer of newline-terminated lines.
#[derive(Clone)]
pub struct LineWriter {
    inner: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl LineWriter {
    /// Opens `-` (stdout), `stderr`, `kafka://HOST:PORT/TOPIC`, or a file; with `processes > 1` the file name gets `.p{index}`.
    pub fn open(target: &str, process: usize, processes: usize) -> Result<Self> {
        let sink: Box<dyn Write + Send> = match target {
            kafka if crate::kafka::is_kafka_url(kafka) => Box::new(kafka::KafkaLines::open(
                kafka,
                &crate::kafka::user_options(),
            )?),
            "-" => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
            "stderr" => Box::new(std::io::stderr()),
            path => {
                let path = per_process_path(Path::new(path), process, processes);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let file = File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                // Rows come in whole windows and are flushed per call (`write_texts`): a batch
                // larger than the buffer goes straight to the file instead of being copied
                // through it; small ones (a few session rows) still coalesce.
                Box::new(BufWriter::with_capacity(1 << 13, file))
            }
        };
        Ok(LineWriter {
            inner: Arc::new(Mutex::new(sink)),
        })
    }

    /// Writes a batch of complete lines at once.
    pub fn write_batch(&self, text: &str) -> std::io::Result<()> {
        self.write_texts(std::iter::once(text))
    }

    /// Writes several batches of complete lines together, then flushes.
    fn write_texts<'t>(&self, texts: impl Iterator<Item = &'t str>) -> std::io::Result<()> {
        let mut texts = texts.filter(|t| !t.is_empty()).peekable();
        if texts.peek().is_none() {
            return Ok(());
        }
        let mut sink = self.inner.lock().expect("writer lock poisoned");
        for text in texts {
            sink.write_all(text.as_bytes())?;
        }
        // Rows appear as windows close: a reader of a live run must not wait for a full buffer.
        sink.flush()?;
        Ok(())
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.inner.lock().expect("writer lock poisoned").flush()
    }
}

/// `out.jsonl` -> `out.p1.jsonl` when there are several processes.
pub fn per_process_path(path: &Path, process: usize, processes: usize) -> PathBuf {
    if processes <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.p{process}.{}", ext.to_string_lossy()),
        None => format!("{stem}.p{process}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_each_row_and_key() {
        let mut batch = RowBatch::default();
        // (json, head length, members) per row: adjacent, apart, and an empty key.
        for (json, head, members) in [
            ("{\"t\":1,\"k\":\"a\",\"n\":2}", 6, (6, 14)),
            ("{\"s\":5,\"e\":9,\"k\":\"b\"}", 6, (12, 20)),
            ("{}", 0, (0, 0)),
        ] {
            batch.push(|text| {
                let start = text.len();
                text.push_str(json);
                RowKey {
                    head_end: start + head,
                    members: (start + members.0, start + members.1),
                }
            });
        }
        let rows: Vec<_> = batch
            .rows()
            .map(|r| (r.key(), r.json.to_string()))
            .collect();
        let expected = [
            ("{\"t\":1,\"k\":\"a\"}", "{\"t\":1,\"k\":\"a\",\"n\":2}"),
            ("{\"s\":5,\"k\":\"b\"}", "{\"s\":5,\"e\":9,\"k\":\"b\"}"),
            ("}", "{}"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, j)| (k.to_string(), j.to_string()))
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(
            batch.lines(),
            "{\"t\":1,\"k\":\"a\",\"n\":2}\n{\"s\":5,\"e\":9,\"k\":\"b\"}\n{}\n"
        );
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn per_process_names_start_with_the_given_name() {
        assert_eq!(
            per_process_path(Path::new("d/out.jsonl"), 1, 2),
            PathBuf::from("d/out.p1.jsonl")
        );
        assert_eq!(
            per_process_path(Path::new("out"), 0, 2),
            PathBuf::from("out.p0")
        );
        assert_eq!(
            per_process_path(Path::new("out.jsonl"), 0, 1),
            PathBuf::from("out.jsonl")
        );
    }
}
