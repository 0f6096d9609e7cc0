//! Page views in the shape of web-analytics click streams:
//! `{"anonymous_user_id":"u0042","url":"https://shop.example.com/products/7?utm_source=google&utm_medium=cpc","time":1515445354000,"browser":"Chrome","os":"Windows","screen_resolution":"1920x1080"}`.
//! About a third of the URLs carry UTM parameters. Malformed lines lack the user or have a URL
//! that does not parse.

use super::{EventShape, Weighted};
use crate::extract::write_json_string;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const PATHS: [&str; 8] = [
    "/",
    "/products",
    "/products/7",
    "/products/42",
    "/cart",
    "/checkout",
    "/about",
    "/blog/launch",
];
const SOURCES: [(&str, &str); 4] = [
    ("google", "cpc"),
    ("newsletter", "email"),
    ("facebook", "social"),
    ("partner", "referral"),
];
const BROWSERS: [&str; 4] = ["Chrome", "Firefox", "Safari", "Edge"];
const OSES: [&str; 4] = ["Windows", "macOS", "Linux", "Android"];
const SCREENS: [&str; 3] = ["1920x1080", "1366x768", "390x844"];

pub struct PageViewShape {
    paths: Weighted<&'static str>,
}

impl PageViewShape {
    pub fn new() -> Self {
        PageViewShape {
            paths: Weighted::zipf(PATHS.to_vec(), 1.0),
        }
    }
}

impl Default for PageViewShape {
    fn default() -> Self {
        Self::new()
    }
}

fn write_view(rng: &mut ChaCha8Rng, user: Option<u32>, url: &str, ts_ms: u64, out: &mut String) {
    use std::fmt::Write;
    out.push('{');
    if let Some(user) = user {
        let _ = write!(out, "\"anonymous_user_id\":\"u{user:04}\",");
    }
    out.push_str("\"url\":");
    write_json_string(out, url);
    let _ = write!(out, ",\"time\":{ts_ms},\"browser\":");
    write_json_string(out, BROWSERS[rng.gen_range(0..BROWSERS.len())]);
    out.push_str(",\"os\":");
    write_json_string(out, OSES[rng.gen_range(0..OSES.len())]);
    out.push_str(",\"screen_resolution\":");
    write_json_string(out, SCREENS[rng.gen_range(0..SCREENS.len())]);
    out.push('}');
}

impl EventShape for PageViewShape {
    fn write_event(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        let mut url = format!("https://shop.example.com{}", self.paths.pick(rng));
        if rng.gen_ratio(1, 3) {
            let (source, medium) = SOURCES[rng.gen_range(0..SOURCES.len())];
            url.push_str(&format!("?utm_source={source}&utm_medium={medium}"));
        }
        let user = rng.gen_range(0..500);
        write_view(rng, Some(user), &url, ts_ms, out);
    }

    fn write_malformed(&mut self, rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        if rng.gen_bool(0.5) {
            write_view(rng, None, "https://shop.example.com/cart", ts_ms, out);
        } else {
            write_view(rng, Some(1), "https://[shop.example.com/cart", ts_ms, out);
        }
    }
}
