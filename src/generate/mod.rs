//! Synthetic, deterministic event generators: `streamstats generate <kind>` writes them to a
//! file, and `run` without `--input` streams them live, paced in real time.
//!
//! Contract: the same kind, seed and options give byte-identical output. Event time advances
//! `1000 / rate` ms per event from a fixed start; `disorder_ms` moves an event back by up to that
//! much (within the bound: counted), `late_fraction` moves events back by more than the bound
//! plus the disorder (late: dead-lettered), `malformed_fraction` writes busted lines and
//! `bitflip_fraction` flips a high bit of the timestamp.

pub mod frames;
pub mod page_views;
pub mod sessions;
pub mod sps;
pub mod trades;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;

/// Writes one event of a given shape, with a given event time, as one line (no newline): a JSON
/// object, or a CSV record for CSV shapes such as `trades`.
pub trait EventShape: Send {
    /// Called once by `Generator::new` with the run's options (rate, seed, …).
    fn configure(&mut self, _options: &GenOptions) {}
    /// The event time of the next event before disorder, called once before each event. Shapes
    /// of independent events keep the generator's evenly paced `nominal_ms`; stateful shapes
    /// (sessions) return their own schedule.
    fn next_time(&mut self, _rng: &mut ChaCha8Rng, nominal_ms: u64) -> u64 {
        nominal_ms
    }
    fn write_event(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String);
    /// A line that is not a valid record of this shape.
    fn write_malformed(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        const BUSTED: [&str; 3] = [
            "busted data",
            "{\"b0rked\":",
            "{\"device\":\"tv\",\"sev\":\"success\",\"time\":\"not a time\"}",
        ];
        let _ = ts_ms;
        out.push_str(BUSTED[rng.gen_range(0..BUSTED.len())]);
    }
}

/// The shape for a generator kind or dataflow name.
pub fn shape_for(kind: &str) -> Result<Box<dyn EventShape>> {
    Ok(match kind {
        "sps" => Box::new(sps::SpsShape::new()),
        "frames" | "unique-users" => Box::new(frames::FramesShape::new()),
        "trades" | "stock-moving-average" => Box::new(trades::TradeShape::new()),
        "page-views" => Box::new(page_views::PageViewShape::new()),
        "sessions" => Box::new(sessions::SessionsShape::new()),
        other => bail!(
            "no generator for `{other}` (available: sps, frames, trades, page-views, sessions)"
        ),
    })
}

/// Options shared by every generator kind.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub seed: u64,
    /// Events per second of event time.
    pub rate: u64,
    pub start_ms: u64,
    pub disorder_ms: u64,
    /// Extra distance beyond the bound for late events.
    pub bound_ms: u64,
    pub late_fraction: f64,
    pub malformed_fraction: f64,
    pub bitflip_fraction: f64,
}

/// A deterministic stream of event lines.
pub struct Generator {
    shape: Box<dyn EventShape>,
    rng: ChaCha8Rng,
    options: GenOptions,
    index: u64,
}

impl Generator {
    pub fn new(mut shape: Box<dyn EventShape>, options: GenOptions) -> Self {
        shape.configure(&options);
        Generator {
            shape,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            options,
            index: 0,
        }
    }

    /// Event time of the next event before any disorder.
    pub fn next_nominal_ms(&self) -> u64 {
        self.options.start_ms + self.index * 1000 / self.options.rate.max(1)
    }

    /// Appends the next event line (no newline) to `out`, with nominal time `nominal_ms`.
    pub fn next_line_at(&mut self, nominal_ms: u64, out: &mut String) {
        self.index += 1;
        let nominal_ms = self.shape.next_time(&mut self.rng, nominal_ms);
        let o = &self.options;
        let roll: f64 = self.rng.gen();
        if roll < o.malformed_fraction {
            return self.shape.write_malformed(&mut self.rng, nominal_ms, out);
        }
        let mut ts = nominal_ms.saturating_sub(self.rng.gen_range(0..=o.disorder_ms));
        if roll < o.malformed_fraction + o.late_fraction {
            ts = nominal_ms
                .saturating_sub(o.bound_ms + o.disorder_ms + self.rng.gen_range(1_000..=60_000));
        } else if roll < o.malformed_fraction + o.late_fraction + o.bitflip_fraction {
            ts ^= 1 << self.rng.gen_range(41..=45);
        }
        self.shape.write_event(&mut self.rng, ts, out);
    }

    pub fn next_line(&mut self, out: &mut String) {
        let nominal = self.next_nominal_ms();
        self.next_line_at(nominal, out);
    }
}

/// `streamstats generate`: writes `events` lines to `out` (`-` for stdout).
pub fn write_file(kind: &str, events: u64, options: GenOptions, out: &str) -> Result<()> {
    let mut generator = Generator::new(shape_for(kind)?, options);
    let sink: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).with_context(|| format!("--out: cannot create {out}"))?)
    };
    let mut sink = std::io::BufWriter::with_capacity(1 << 20, sink);
    let mut line = String::new();
    for _ in 0..events {
        line.clear();
        generator.next_line(&mut line);
        line.push('\n');
        sink.write_all(line.as_bytes())?;
    }
    sink.flush()?;
    Ok(())
}

/// Picks from `items` with weights `weights` (Zipf-like popularity and similar skews).
pub struct Weighted<T> {
    items: Vec<T>,
    index: rand::distributions::WeightedIndex<f64>,
}

impl<T> Weighted<T> {
    pub fn new(items: Vec<T>, weights: impl IntoIterator<Item = f64>) -> Self {
        let index = rand::distributions::WeightedIndex::new(weights).expect("weights are positive");
        Weighted { items, index }
    }

    pub fn zipf(items: Vec<T>, exponent: f64) -> Self {
        let weights: Vec<f64> = (1..=items.len())
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect();
        Weighted::new(items, weights)
    }

    pub fn pick(&self, rng: &mut ChaCha8Rng) -> &T {
        use rand::distributions::Distribution;
        &self.items[self.index.sample(rng)]
    }
}
