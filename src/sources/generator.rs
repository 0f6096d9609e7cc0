//! Live generator input: the built-in default of `run` without `--input`.
//!
//! Contract: each worker is one partition that emits events whose nominal event time is the
//! wall clock, at `rate / peers` events per second, with the generator's disorder, late and
//! malformed shares. It never ends; the run stops with Ctrl-C (or `--max-records`).

use super::{Partition, ReadStatus};
use crate::generate::Generator;
use std::time::Instant;

pub struct LivePartition {
    name: String,
    generator: Generator,
    started: Instant,
    start_ms: u64,
    /// Events per second on this worker.
    rate: f64,
    emitted: u64,
    limit: Option<u64>,
    line: String,
}

impl LivePartition {
    pub fn new(worker: usize, generator: Generator, rate: f64, limit: Option<u64>) -> Self {
        LivePartition {
            name: format!("generator#{worker}"),
            generator,
            started: Instant::now(),
            start_ms: chrono::Utc::now().timestamp_millis().max(0) as u64,
            rate,
            emitted: 0,
            limit,
            line: String::new(),
        }
    }
}

impl Partition for LivePartition {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> std::io::Result<ReadStatus> {
        let elapsed = self.started.elapsed();
        let due = (elapsed.as_secs_f64() * self.rate) as u64;
        let due = self.limit.map_or(due, |limit| due.min(limit));
        let mut bytes = 0;
        while self.emitted < due && bytes < max_bytes {
            self.line.clear();
            let nominal = self.start_ms + (self.emitted as f64 * 1000.0 / self.rate) as u64;
            self.generator.next_line_at(nominal, &mut self.line);
            each(self.emitted, self.line.as_bytes());
            bytes += self.line.len() + 1;
            self.emitted += 1;
        }
        Ok(match self.limit {
            Some(limit) if self.emitted >= limit => ReadStatus::End,
            _ if self.emitted < due => ReadStatus::Data,
            _ => ReadStatus::Idle,
        })
    }
}
