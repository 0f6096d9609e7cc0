//! streamstats: event-time stream analytics on timely dataflow.
//!
//! A job is a dataflow file (`spec`); `pipeline` turns it into a timely dataflow of
//! `sources` -> `operators::prepare` (parse, clock, filter, pre-aggregate) -> exchange by key ->
//! `operators::window` (exactly-once emission on the frontier) -> `sinks`.

pub mod aggregate;
pub mod broker;
pub mod cli;
pub mod distinct;
pub mod extract;
pub mod generate;
pub mod kafka;
pub mod metrics;
pub mod operators;
pub mod pipeline;
pub mod replay;
pub mod serve_sse;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod time;
pub mod watermark;
pub mod window;

/// Ends the process with a clear message. Used where a worker thread meets an error it cannot
/// hand back (an output that stopped accepting writes): exiting beats a stalled dataflow.
pub fn fatal(message: &str) -> ! {
    eprintln!("\nstreamstats: error: {message}");
    std::process::exit(2)
}
