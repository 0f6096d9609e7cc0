//! Stream-start events in the shape of the Netflix SPS stream:
//! `{"device":"xbox_one_s","sev":"success","title":"narcos","country":"BR","time":1515445354000}`.

use super::{EventShape, Weighted};
use crate::extract::write_json_string;
use rand_chacha::ChaCha8Rng;

const DEVICES: [&str; 10] = [
    "xbox_one_s",
    "ps4",
    "roku_4",
    "apple_tv",
    "android_phone",
    "iphone",
    "chromecast",
    "smart_tv_samsung",
    "fire_tv",
    "web_chrome",
];
const COUNTRIES: [&str; 36] = [
    "US", "BR", "MX", "GB", "CA", "DE", "FR", "ES", "IT", "NL", "SE", "NO", "DK", "FI", "PL", "AR",
    "CL", "CO", "PE", "IN", "JP", "KR", "AU", "NZ", "TR", "ZA", "EG", "NG", "IE", "PT", "BE", "CH",
    "AT", "IL", "PH", "ID",
];
const WORDS: [&str; 20] = [
    "stranger", "things", "narcos", "crown", "dark", "mind", "house", "cards", "orange", "black",
    "witcher", "money", "heist", "ozark", "lost", "city", "night", "river", "queen", "gambit",
];
/// Severities with their shares: mostly successful starts, as in the original stream.
const SEVERITIES: [(&str, f64); 4] = [
    ("success", 0.88),
    ("successinfo", 0.04),
    ("error", 0.05),
    ("info", 0.03),
];

pub struct SpsShape {
    devices: Weighted<&'static str>,
    titles: Weighted<String>,
    countries: Weighted<&'static str>,
    severities: Weighted<&'static str>,
}

impl SpsShape {
    pub fn new() -> Self {
        // 300 titles from word pairs, popularity Zipf-distributed by rank.
        let titles: Vec<String> = (0..300)
            .map(|i| format!("{} {}", WORDS[i % 20], WORDS[(i / 20 + i + 1) % 20]))
            .collect();
        SpsShape {
            devices: Weighted::zipf(DEVICES.to_vec(), 0.8),
            titles: Weighted::zipf(titles, 1.0),
            countries: Weighted::zipf(COUNTRIES.to_vec(), 1.1),
            severities: Weighted::new(
                SEVERITIES.iter().map(|s| s.0).collect(),
                SEVERITIES.iter().map(|s| s.1),
            ),
        }
    }
}

impl Default for SpsShape {
    fn default() -> Self {
        Self::new()
    }
}

impl EventShape for SpsShape {
    fn write_event(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        use std::fmt::Write;
        out.push_str("{\"device\":");
        write_json_string(out, self.devices.pick(rng));
        out.push_str(",\"sev\":");
        write_json_string(out, self.severities.pick(rng));
        out.push_str(",\"title\":");
        write_json_string(out, self.titles.pick(rng));
        out.push_str(",\"country\":");
        write_json_string(out, self.countries.pick(rng));
        let _ = write!(out, ",\"time\":{ts_ms}}}");
    }
}
