//! Process-wide counters, the live progress line and the exit summary (all on stderr).
//!
//! Contract: workers add to the counters in batches; the reporter thread only reads them. The
//! progress line is rewritten in place on a terminal and printed every 10 s otherwise, so a long
//! run never floods the log.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Metrics {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub filtered: AtomicU64,
    pub late: AtomicU64,
    pub malformed: AtomicU64,
    pub future: AtomicU64,
    pub rows: AtomicU64,
    /// Smallest source watermark among this process's workers (u64::MAX once all are done).
    watermarks: std::sync::Mutex<Vec<u64>>,
}

impl Metrics {
    pub fn new(local_workers: usize) -> Arc<Self> {
        Arc::new(Metrics {
            watermarks: std::sync::Mutex::new(vec![0; local_workers]),
            ..Default::default()
        })
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    pub fn set_watermark(&self, local_worker: usize, watermark: u64) {
        if let Some(slot) = self
            .watermarks
            .lock()
            .expect("metrics lock")
            .get_mut(local_worker)
        {
            *slot = watermark;
        }
    }

    fn watermark(&self) -> u64 {
        self.watermarks
            .lock()
            .expect("metrics lock")
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
    }

    fn line(&self, elapsed: Duration, rate: f64) -> String {
        let watermark = self.watermark();
        let (wm, lag) = match watermark {
            0 => ("-".to_string(), "-".to_string()),
            u64::MAX => ("done".to_string(), "-".to_string()),
            w => {
                let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
                (
                    crate::time::format_millis(w),
                    format!("{:.1}s", now.saturating_sub(w) as f64 / 1000.0),
                )
            }
        };
        format!(
            "[{:>6.1}s] {} records ({:.0}/s), {} rows, {} late, {} malformed, watermark {wm}, lag {lag}",
            elapsed.as_secs_f64(),
            self.records.load(Relaxed),
            rate,
            self.rows.load(Relaxed),
            self.late.load(Relaxed),
            self.malformed.load(Relaxed) + self.future.load(Relaxed),
        )
    }

    /// Prints a progress line on stderr until `stop` is dropped (or sent to), which ends the
    /// thread at once: a run's wall time does not include a last tick.
    pub fn spawn_reporter(self: &Arc<Self>, stop: Receiver<()>) -> std::thread::JoinHandle<()> {
        let metrics = Arc::clone(self);
        std::thread::spawn(move || {
            let tty = std::io::stderr().is_terminal();
            let every = if tty {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(10)
            };
            let start = Instant::now();
            let (mut last_at, mut last_records) = (start, 0);
            while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(100))
            {
                if last_at.elapsed() < every {
                    continue;
                }
                let records = metrics.records.load(Relaxed);
                let rate = (records - last_records) as f64 / last_at.elapsed().as_secs_f64();
                (last_at, last_records) = (Instant::now(), records);
                let line = metrics.line(start.elapsed(), rate);
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            }
        })
    }

    /// The exit summary.
    pub fn summary(&self, elapsed: Duration) -> String {
        let records = self.records.load(Relaxed);
        let secs = elapsed.as_secs_f64().max(1e-9);
        format!(
            "streamstats: {records} records ({:.1} MB) in {:.2}s = {:.0} records/s; {} rows emitted; {} filtered out; {} late; {} malformed; {} future (bitflip guard)",
            self.bytes.load(Relaxed) as f64 / 1e6,
            secs,
            records as f64 / secs,
            self.rows.load(Relaxed),
            self.filtered.load(Relaxed),
            self.late.load(Relaxed),
            self.malformed.load(Relaxed),
            self.future.load(Relaxed),
        )
    }
}
