//! `streamstats serve-sse FILE`: serves a line file as a server-sent event stream on 127.0.0.1,
//! a local stand-in for a live event endpoint (such as the Netflix SPS stream).
//!
//! Contract: every connection, whatever its path, gets `200 text/event-stream` and the file's
//! non-blank lines as events, `id:` = the line number (1-based), so a client that reconnects with
//! `Last-Event-ID: n` resumes at line n + 1. JSON lines holding a comma are sent as two `data:`
//! lines (split after the first comma; the client joins them with `\n`, still the same JSON), to
//! exercise multi-line data. With `--malformed-fraction` a deterministic share of events (chosen
//! by line number and seed) carries a busted payload instead. `--rate` paces events per second
//! per connection. `--drop-after N` cuts each connection after N events, in the middle of the
//! next one, to exercise resumption. After the last line it sends `event: end` and closes.
//! The file is read into memory once.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub port: u16,
    /// Events per second per connection (unpaced when `None`).
    pub rate: Option<u64>,
    pub malformed_fraction: f64,
    pub drop_after: Option<u64>,
    pub seed: u64,
}

/// Serves `lines` until the process is stopped; prints the address on stdout once listening.
pub fn serve(lines: Vec<String>, options: ServeOptions) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .with_context(|| format!("--port: cannot listen on 127.0.0.1:{}", options.port))?;
    let address = listener.local_addr()?;
    println!("serving {} events on http://{address}/events", lines.len());
    std::io::stdout().flush()?;
    let lines = Arc::new(lines);
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let (lines, options) = (Arc::clone(&lines), options.clone());
        std::thread::spawn(move || {
            if let Err(e) = send_stream(connection, &lines, &options) {
                eprintln!("streamstats serve-sse: connection ended: {e}");
            }
        });
    }
    Ok(())
}

/// Reads the request head and returns its `Last-Event-ID` as a line number.
fn resume_after(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut last_id = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            return Ok(last_id);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("last-event-id") {
                last_id = value.trim().parse().unwrap_or(0);
            }
        }
    }
}

/// Whether line `id` is sent busted: a fixed hash of (seed, id) below the fraction.
fn is_malformed(id: u64, options: &ServeOptions) -> bool {
    let h = xxhash_rust::xxh3::xxh3_64(&[options.seed.to_le_bytes(), id.to_le_bytes()].concat());
    (h as f64 / u64::MAX as f64) < options.malformed_fraction
}

fn send_stream(
    connection: TcpStream,
    lines: &[String],
    options: &ServeOptions,
) -> std::io::Result<()> {
    let after = resume_after(&mut BufReader::new(connection.try_clone()?))?;
    let mut out = BufWriter::new(connection);
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n: streamstats serve-sse\nretry: 100\n\n",
    )?;
    let started = Instant::now();
    let mut sent = 0u64;
    for (index, line) in lines.iter().enumerate().skip(after as usize) {
        let id = index as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        if options.drop_after == Some(sent) {
            // Cut off inside an event: the client must drop it and ask again from `after`.
            write!(out, "id: {id}\ndata: {}", &line[..line.len() / 2])?;
            return out.flush();
        }
        if is_malformed(id, options) {
            write!(out, "id: {id}\ndata: busted data {id}\n\n")?;
        } else if let (true, Some(comma)) = (line.starts_with('{'), line.find(',')) {
            write!(
                out,
                "id: {id}\ndata: {}\ndata: {}\n\n",
                &line[..=comma],
                &line[comma + 1..]
            )?;
        } else {
            write!(out, "id: {id}\ndata: {line}\n\n")?;
        }
        sent += 1;
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
            out.flush()?;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    out.write_all(b"event: end\ndata: end\n\n")?;
    out.flush()
}
