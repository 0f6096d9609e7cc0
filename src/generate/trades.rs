//! Stock trades in the CSV shape of the stock moving-average feed (no header):
//! `AMC,BUY ,158.84,216,1534849271061,2018-08-21 11:01:11.061` — symbol, side (`BUY ` padded to
//! four characters, or `SELL`), price, quantity, epoch_ms, UTC datetime. Prices follow a random
//! walk per symbol with two decimals; a share of malformed lines has a price that is no number.

use super::{EventShape, Weighted};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const SYMBOLS: [&str; 12] = [
    "AMC", "AGL", "BHP", "CBA", "CSL", "NAB", "QAN", "RIO", "TLS", "WBC", "WES", "WOW",
];

pub struct TradeShape {
    symbols: Weighted<usize>,
    /// Current price per symbol, in cents.
    cents: Vec<i64>,
}

impl TradeShape {
    pub fn new() -> Self {
        TradeShape {
            symbols: Weighted::zipf((0..SYMBOLS.len()).collect(), 0.7),
            cents: (0..SYMBOLS.len() as i64)
                .map(|i| 2_000 + i * 7_919 % 90_000)
                .collect(),
        }
    }
}

impl Default for TradeShape {
    fn default() -> Self {
        Self::new()
    }
}

fn write_trade(out: &mut String, symbol: &str, side: &str, price: &str, quantity: u32, ts_ms: u64) {
    use std::fmt::Write;
    let datetime = chrono::DateTime::from_timestamp_millis(ts_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let _ = write!(out, "{symbol},{side},{price},{quantity},{ts_ms},{datetime}");
}

impl EventShape for TradeShape {
    fn write_event(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        let symbol = *self.symbols.pick(rng);
        let cents = &mut self.cents[symbol];
        *cents = (*cents + rng.gen_range(-50..=50)).max(1);
        let price = format!("{}.{:02}", *cents / 100, *cents % 100);
        let side = if rng.gen_bool(0.5) { "BUY " } else { "SELL" };
        write_trade(
            out,
            SYMBOLS[symbol],
            side,
            &price,
            rng.gen_range(1..=1_000),
            ts_ms,
        );
    }

    fn write_malformed(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        if rng.gen_bool(0.5) {
            write_trade(out, "AMC", "BUY ", "n/a", 10, ts_ms);
        } else {
            out.push_str("busted data");
        }
    }
}
