//! Server-sent events input: `--input sse+http://HOST:PORT/PATH`.
//!
//! Contract:
//! - `SseStream` is a blocking reader of one event stream over plain HTTP/1.1 (no TLS), usable
//!   as a line source on its own (each event's data is one record). Framing follows the WHATWG
//!   `text/event-stream` rules: lines end with LF or CRLF; `data:` lines of one event are joined
//!   with `\n`; a blank line dispatches the event (an event without data is not dispatched);
//!   lines starting with `:` are comments; `id:` sets the last event id once its event is
//!   dispatched; `retry:` sets the reconnection delay; `event: end` marks the end of a bounded
//!   replay and ends the stream. An event cut off by a dropped connection is discarded.
//! - On a dropped or refused connection it reconnects after the retry delay, doubling up to
//!   `MAX_BACKOFF` while attempts keep failing, and sends `Last-Event-ID`, so a server that
//!   honours it resumes with the next event: nothing lost, nothing repeated. A `204` response
//!   ends the stream (the spec's "do not reconnect").
//! - `SsePartition` reads an `SseStream` on a background thread and is one `Partition` (a live
//!   stream has one order, so worker 0 owns it). `read` returns `Idle` while no event is
//!   waiting and `End` after `event: end`. A record's offset is its numeric event id (else its
//!   sequence number); a payload that is not a valid record goes to the dead-letter output.

use super::{Partition, ReadStatus};
use anyhow::{bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::Duration;

/// Input prefix selecting this source.
pub const SCHEME: &str = "sse+http://";
const INITIAL_RETRY: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where an event stream is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl SseUrl {
    /// Parses `sse+http://HOST:PORT/PATH` (port 80 when omitted).
    pub fn parse(input: &str) -> Result<Self> {
        let Some(rest) = input.strip_prefix(SCHEME) else {
            bail!("`{input}` is not an {SCHEME}HOST:PORT/PATH address")
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse().with_context(|| format!("port of `{input}`"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            bail!("`{input}` has no host");
        }
        Ok(SseUrl {
            host: host.to_string(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub kind: String,
    pub data: String,
}

/// The event-stream framing, fed one line at a time (see the module contract).
#[derive(Default)]
pub struct EventParser {
    data: String,
    kind: String,
    /// Id of the event being read; becomes `last_id` when it is dispatched.
    pending_id: Option<String>,
    last_id: Option<String>,
    /// Reconnection delay announced by the server.
    retry: Option<Duration>,
}

impl EventParser {
    /// Feeds one line (without its line ending); returns an event when the line dispatches one.
    pub fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let kind = std::mem::take(&mut self.kind);
            if self.data.is_empty() {
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last data line
            self.last_id = self.pending_id.clone();
            let kind = if kind.is_empty() {
                "message".into()
            } else {
                kind
            };
            return Some(Event {
                id: self.last_id.clone(),
                kind,
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.kind = value.to_string(),
            "id" if !value.contains('\0') => self.pending_id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {}
        }
        None
    }

    /// A dropped connection discards the event being read.
    fn reset(&mut self) {
        self.data.clear();
        self.kind.clear();
        self.pending_id = self.last_id.clone();
    }
}

/// A blocking, reconnecting reader of one event stream.
pub struct SseStream {
    url: SseUrl,
    parser: EventParser,
    body: Option<BufReader<Box<dyn Read + Send>>>,
    backoff: Duration,
    ended: bool,
    line: Vec<u8>,
}

impl SseStream {
    pub fn new(url: SseUrl) -> Self {
        SseStream {
            url,
            parser: EventParser::default(),
            body: None,
            backoff: INITIAL_RETRY,
            ended: false,
            line: Vec::new(),
        }
    }

    /// The id of the last dispatched event (what a reconnect resumes after).
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_id.as_deref()
    }

    /// Blocks until the next event other than `end`; `None` once the stream has ended.
    pub fn next_event(&mut self) -> Option<Event> {
        while !self.ended {
            let Some(body) = self.body.as_mut() else {
                match self.connect() {
                    Ok(Some(body)) => {
                        self.body = Some(body);
                        self.backoff = self.parser.retry.unwrap_or(INITIAL_RETRY);
                    }
                    Ok(None) => self.ended = true,
                    Err(e) => self.wait_after(&format!("cannot connect: {e:#}")),
                }
                continue;
            };
            self.line.clear();
            match body.read_until(b'\n', &mut self.line) {
                Ok(0) => self.wait_after("the server closed the connection"),
                Ok(_) if self.line.last() != Some(&b'\n') => {
                    self.wait_after("the connection ended inside a line")
                }
                Ok(_) => {
                    let text = String::from_utf8_lossy(&self.line);
                    let text = text.trim_end_matches('\n').trim_end_matches('\r');
                    if let Some(event) = self.parser.line(text) {
                        if event.kind == "end" {
                            self.ended = true;
                            return None;
                        }
                        return Some(event);
                    }
                }
                Err(e) => self.wait_after(&format!("read error: {e}")),
            }
        }
        None
    }

    /// Drops the connection and sleeps before the next attempt (exponential backoff).
    fn wait_after(&mut self, what: &str) {
        self.body = None;
        self.parser.reset();
        eprintln!(
            "streamstats: sse {}:{}{}: {what}; reconnecting in {:?} after event id {}",
            self.url.host,
            self.url.port,
            self.url.path,
            self.backoff,
            self.last_event_id().unwrap_or("(none)")
        );
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Sends the request; `Ok(None)` when the server says not to reconnect (204).
    fn connect(&mut self) -> Result<Option<BufReader<Box<dyn Read + Send>>>> {
        let url = &self.url;
        let mut stream = TcpStream::connect((url.host.as_str(), url.port))?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            url.path, url.host, url.port
        );
        if let Some(id) = self.last_event_id() {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let code = status.split_whitespace().nth(1).unwrap_or("");
        let mut chunked = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                bail!("connection closed in the response headers");
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        match code {
            "200" => {}
            "204" => return Ok(None),
            _ => bail!("unexpected response `{}`", status.trim_end()),
        }
        let body: Box<dyn Read + Send> = if chunked {
            Box::new(Chunked::new(reader))
        } else {
            Box::new(reader)
        };
        Ok(Some(BufReader::new(body)))
    }
}

/// Decodes an HTTP/1.1 chunked body.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            self.inner.read_line(&mut size)?;
            if size.trim().is_empty() {
                // The CRLF ending the previous chunk.
                size.clear();
                self.inner.read_line(&mut size)?;
            }
            let hex = size.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = self.left.min(buf.len());
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

enum Message {
    Record(u64, String),
    End,
}

/// An event stream as the single partition of a run.
pub struct SsePartition {
    name: String,
    url: Option<SseUrl>,
    events: Option<Receiver<Message>>,
}

impl SsePartition {
    pub fn new(input: &str) -> Result<Self> {
        let url = SseUrl::parse(input)?;
        Ok(SsePartition {
            name: input.to_string(),
            url: Some(url),
            events: None,
        })
    }
}

impl Partition for SsePartition {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(
        &mut self,
        max_bytes: usize,
        each: &mut dyn FnMut(u64, &[u8]),
    ) -> io::Result<ReadStatus> {
        let events = self.events.get_or_insert_with(|| {
            let mut stream = SseStream::new(self.url.take().expect("started once"));
            // Bounded: a slow dataflow makes the reader wait instead of buffering the stream.
            let (sender, receiver) = sync_channel(4096);
            std::thread::spawn(move || {
                let mut sequence = 0u64;
                while let Some(event) = stream.next_event() {
                    sequence += 1;
                    let offset = event.id.and_then(|id| id.parse().ok()).unwrap_or(sequence);
                    if sender.send(Message::Record(offset, event.data)).is_err() {
                        return;
                    }
                }
                let _ = sender.send(Message::End);
            });
            receiver
        });
        let mut bytes = 0;
        while bytes < max_bytes {
            match events.try_recv() {
                Ok(Message::Record(offset, data)) => {
                    bytes += data.len() + 1;
                    each(offset, data.as_bytes());
                }
                Ok(Message::End) => return Ok(ReadStatus::End),
                Err(TryRecvError::Empty) if bytes == 0 => return Ok(ReadStatus::Idle),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the event-stream reader stopped"))
                }
            }
        }
        Ok(ReadStatus::Data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            SseUrl::parse("sse+http://127.0.0.1:8080/events").unwrap(),
            SseUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/events".into()
            }
        );
        assert_eq!(SseUrl::parse("sse+http://example.com").unwrap().path, "/");
        assert!(SseUrl::parse("http://x/").is_err());
        assert!(SseUrl::parse("sse+http://x:port/").is_err());
    }

    #[test]
    fn framing() {
        let mut p = EventParser::default();
        let text = ": hello\r\nretry: 50\nid: 1\ndata: {\"a\":1,\ndata:\"b\":2}\n\nevent: tick\n\nid: 2\ndata\ndata:  x\n\n";
        let events: Vec<Event> = text
            .split('\n')
            .filter_map(|l| p.line(l.trim_end_matches('\r')))
            .collect();
        assert_eq!(p.retry, Some(Duration::from_millis(50)));
        assert_eq!(
            events,
            vec![
                Event {
                    id: Some("1".into()),
                    kind: "message".into(),
                    data: "{\"a\":1,\n\"b\":2}".into()
                },
                Event {
                    id: Some("2".into()),
                    kind: "message".into(),
                    data: "\n x".into()
                },
            ]
        );
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let body = "5\r\ndata:\r\n7;ext=1\r\n hello\n\r\n0\r\n\r\n";
        let mut decoded = String::new();
        Chunked::new(BufReader::new(body.as_bytes()))
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, "data: hello\n");
    }

    #[test]
    fn a_cut_off_event_is_discarded() {
        let mut p = EventParser::default();
        for l in ["id: 1", "data: one", "", "id: 2", "data: tw"] {
            p.line(l);
        }
        p.reset();
        assert_eq!(p.last_id.as_deref(), Some("1"));
        assert_eq!(p.line(""), None);
    }
}
