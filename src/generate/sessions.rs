//! Player heartbeats in the shape of the Zattoo viewing-session workload:
//! `{"session_id":"1-0000002a","user_id":"u1-000123","program_id":"p0042","device":"android_tv","time":1515445354000}`.
//!
//! Contract: about `rate` heartbeats per second of event time from about `4 * rate` concurrent
//! sessions. Each session sends a heartbeat every 4 s ± 0.4 s, lasts between 2 minutes and
//! 3 hours (log-uniform), and is replaced by a new one when it ends. Users hold one to three
//! devices and may watch on several at once; programs are Zipf-popular. Per heartbeat, a few
//! sessions pause: longer than 60 s (0.3 %: the session splits), exactly 60 s (0.1 %: the
//! boundary, splits unless disorder moves it), or 30–59 s (0.3 %: no split). A third of the
//! short splitting pauses (61–66 s) get a bridging heartbeat inside the pause that is delivered
//! after the resumption (0.5–7 s late, so within a 10 s bound): it merges the two halves back.
//! The generator's disorder, late, malformed and bitflip options apply on top, as for every kind.

use super::{EventShape, GenOptions, Weighted};
use crate::extract::write_json_string;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const DEVICES: [&str; 8] = [
    "android_tv",
    "apple_tv",
    "web_chrome",
    "iphone",
    "android_phone",
    "ipad",
    "fire_tv",
    "smart_tv_samsung",
];
const GAP_MS: u64 = 60_000;
const HEARTBEAT_MS: u64 = 4_000;

struct Active {
    session_id: String,
    user: usize,
    program: usize,
    device: &'static str,
    ends_at: u64,
}

pub struct SessionsShape {
    seed: u64,
    concurrency: usize,
    programs: Weighted<usize>,
    /// Per user: its devices.
    users: Vec<Vec<&'static str>>,
    sessions: Vec<Active>,
    /// `(due, sequence, slot, event time)`: heartbeats in delivery order.
    schedule: BinaryHeap<Reverse<(u64, u64, usize, u64)>>,
    sequence: u64,
    next_session: u64,
    current: usize,
}

impl Default for SessionsShape {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionsShape {
    pub fn new() -> Self {
        SessionsShape {
            seed: 1,
            concurrency: 4_000,
            programs: Weighted::zipf((0..400).collect(), 1.0),
            users: Vec::new(),
            sessions: Vec::new(),
            schedule: BinaryHeap::new(),
            sequence: 0,
            next_session: 0,
            current: 0,
        }
    }

    fn push(&mut self, due: u64, slot: usize, ts: u64) {
        self.sequence += 1;
        self.schedule.push(Reverse((due, self.sequence, slot, ts)));
    }

    fn new_session(&mut self, rng: &mut ChaCha8Rng, start: u64) -> Active {
        self.next_session += 1;
        let user = rng.gen_range(0..self.users.len());
        let devices = &self.users[user];
        let device = devices[rng.gen_range(0..devices.len())];
        let length = rng.gen_range((120_000f64).ln()..(10_800_000f64).ln()).exp() as u64;
        Active {
            session_id: format!("{}-{:08x}", self.seed, self.next_session),
            user,
            program: *self.programs.pick(rng),
            device,
            ends_at: start + length,
        }
    }

    fn start(&mut self, rng: &mut ChaCha8Rng, now: u64) {
        let users = (self.concurrency * 2 / 3).max(1);
        self.users = (0..users)
            .map(|_| {
                let n = rng.gen_range(1..=3);
                (0..n)
                    .map(|_| DEVICES[rng.gen_range(0..DEVICES.len())])
                    .collect()
            })
            .collect();
        for slot in 0..self.concurrency {
            // Sessions already under way at the start: stagger their first heartbeats.
            let first = now + rng.gen_range(0..HEARTBEAT_MS);
            let session = self.new_session(rng, first);
            self.sessions.push(session);
            self.push(first, slot, first);
        }
    }

    /// Schedules the heartbeat after one sent at `at` (or replaces an ended session).
    fn reschedule(&mut self, rng: &mut ChaCha8Rng, slot: usize, at: u64) {
        if at >= self.sessions[slot].ends_at {
            let first = at + rng.gen_range(0..HEARTBEAT_MS);
            self.sessions[slot] = self.new_session(rng, first);
            return self.push(first, slot, first);
        }
        let roll: f64 = rng.gen();
        let next = if roll < 0.001 {
            let pause = rng.gen_range(GAP_MS + 1_000..=GAP_MS + 6_000);
            // Bridge: within `gap` of both sides, delivered just after the resumption.
            let before_resume = rng.gen_range(pause - GAP_MS + 1..=7_000);
            let resume = at + pause;
            let session = &mut self.sessions[slot];
            session.ends_at = session.ends_at.max(resume + HEARTBEAT_MS);
            self.push(resume + 500, slot, resume - before_resume);
            resume
        } else if roll < 0.003 {
            at + rng.gen_range(GAP_MS + 1_000..=300_000)
        } else if roll < 0.004 {
            at + GAP_MS
        } else if roll < 0.007 {
            at + rng.gen_range(30_000..GAP_MS)
        } else {
            at + HEARTBEAT_MS - 400 + rng.gen_range(0..=800)
        };
        self.push(next, slot, next);
    }
}

impl EventShape for SessionsShape {
    fn configure(&mut self, options: &GenOptions) {
        self.seed = options.seed;
        self.concurrency = (options.rate as usize * HEARTBEAT_MS as usize / 1_000).max(1);
    }

    fn next_time(&mut self, rng: &mut ChaCha8Rng, nominal_ms: u64) -> u64 {
        if self.sessions.is_empty() {
            self.start(rng, nominal_ms);
        }
        let Reverse((due, _, slot, ts)) = self.schedule.pop().expect("sessions never run out");
        self.current = slot;
        // A bridging heartbeat (ts < due) is an extra event: the regular schedule goes on.
        if ts == due {
            self.reschedule(rng, slot, due);
        }
        ts
    }

    fn write_event(&mut self, _rng: &mut ChaCha8Rng, ts_ms: u64, out: &mut String) {
        use std::fmt::Write;
        let session = &self.sessions[self.current];
        out.push_str("{\"session_id\":");
        write_json_string(out, &session.session_id);
        let _ = write!(
            out,
            ",\"user_id\":\"u{}-{:06}\",\"program_id\":\"p{:04}\",\"device\":",
            self.seed, session.user, session.program
        );
        write_json_string(out, session.device);
        let _ = write!(out, ",\"time\":{ts_ms}}}");
    }
}
