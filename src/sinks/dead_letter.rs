//! Dead-letter records: every input record that is not counted, with the reason why.
//!
//! Contract: one JSON object per line, `{"reason", "detail", "partition", "offset", "line"}`.
//! `reason` is one of `malformed`, `late`, `future`; `offset` is the record's position in its
//! partition (byte offset for files), so the record can be found again. Invalid UTF-8 in the
//! original line is replaced, never dropped.

use super::LineWriter;
use crate::extract::write_json_string;
use crate::metrics::Metrics;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Malformed,
    Late,
    Future,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Late => "late",
            Reason::Future => "future",
        }
    }
}

/// Buffers a worker's dead letters and counts them; `flush` hands them to the shared writer.
pub struct DeadLetters {
    writer: LineWriter,
    metrics: Arc<Metrics>,
    buffer: String,
    counts: [u64; 3],
}

impl DeadLetters {
    pub fn new(writer: LineWriter, metrics: Arc<Metrics>) -> Self {
        DeadLetters {
            writer,
            metrics,
            buffer: String::new(),
            counts: [0; 3],
        }
    }

    pub fn push(
        &mut self,
        reason: Reason,
        detail: &str,
        partition: &str,
        offset: u64,
        line: &[u8],
    ) {
        use std::fmt::Write;
        self.counts[reason as usize] += 1;
        let b = &mut self.buffer;
        let _ = write!(b, "{{\"reason\":\"{}\",\"detail\":", reason.as_str());
        write_json_string(b, detail);
        b.push_str(",\"partition\":");
        write_json_string(b, partition);
        let _ = write!(b, ",\"offset\":{offset},\"line\":");
        write_json_string(b, &String::from_utf8_lossy(line));
        b.push_str("}\n");
        if self.buffer.len() > 1 << 20 {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.writer.write_batch(&self.buffer) {
            // IMPORTANT: losing dead letters silently is not allowed; a broken sink ends the run.
            crate::fatal(&format!("cannot write dead-letter records: {e}"));
        }
        self.buffer.clear();
        let [malformed, late, future] = std::mem::take(&mut self.counts);
        Metrics::add(&self.metrics.malformed, malformed);
        Metrics::add(&self.metrics.late, late);
        Metrics::add(&self.metrics.future, future);
    }
}
