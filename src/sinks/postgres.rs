//! PostgreSQL sink: `--output postgres://USER@HOST:PORT/DB?table=NAME`.
//!
//! Contract:
//! - At start it connects and creates the table if missing (`CREATE TABLE IF NOT EXISTS`) with
//!   typed columns derived from the dataflow and a primary key: `(window_start, window_end
//!   [, window], group-by fields…)` for windowed dataflows, `(group-by fields…, start_time)` for
//!   session dataflows. Times are `bigint` epoch milliseconds (exactly the JSONL values);
//!   group-by fields are `text` (JSON strings unquoted, other values as JSON text); aggregates
//!   take `AggKind::sql_type`.
//! - Rows are written by one writer thread per process in batches, each batch one transaction
//!   with one `INSERT … SELECT FROM unnest(…) ON CONFLICT (primary key) DO UPDATE`. An upsert is
//!   idempotent, so running the same input twice, or re-sending a batch whose commit was cut off,
//!   leaves exactly one row per result.
//! - When the server goes away the writer keeps the batch, logs one line on stderr per attempt,
//!   reconnects with backoff and writes it again; the workers block on a bounded queue meanwhile
//!   (backpressure, nothing dropped). After `retry_for` (default 60 s) of failures, or at once on
//!   an error that retrying cannot fix (bad SQL, type mismatch), the run fails loudly.
//! - `flush` returns only when every row handed over so far is committed.
//!
//! URL options besides the connection itself: `table` (default: the dataflow's name), `retry_for`
//! (a duration such as `60s`), `batch` (rows per transaction, default 5000). Other query
//! parameters go to the PostgreSQL client (e.g. `connect_timeout`).

use super::{ResultRow, RowBatch, RowSink};
use crate::aggregate::AggKind;
use crate::spec::{Spec, SESSION_FIELDS};
use crate::time::parse_duration_ms;
use anyhow::{anyhow, bail, Context, Result};
use rustc_hash::FxHashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Queue length between workers and the writer, in batches of rows: bounds the memory held while
/// the server is away, and then makes workers wait.
const QUEUE_BATCHES: usize = 256;
/// A partly filled batch is written after this long, so live runs show rows promptly.
const LINGER: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColType {
    BigInt,
    Double,
    Text,
}

impl ColType {
    fn from_sql(sql: &str) -> ColType {
        match sql {
            "bigint" => ColType::BigInt,
            "double precision" => ColType::Double,
            _ => ColType::Text,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            ColType::BigInt => "bigint",
            ColType::Double => "double precision",
            ColType::Text => "text",
        }
    }
}

/// Table layout derived from the dataflow.
#[derive(Clone, Debug)]
struct Layout {
    table: String,
    /// `(name, type, always present: NOT NULL)` in output order.
    columns: Vec<(String, ColType, bool)>,
    primary_key: Vec<String>,
}

impl Layout {
    fn new(spec: &Spec, table: String) -> Layout {
        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        let group: Vec<String> = spec.group_by.iter().map(|(n, _)| n.clone()).collect();
        if spec.session_gap_ms().is_some() {
            for name in SESSION_FIELDS {
                columns.push((name.to_string(), ColType::BigInt, true));
            }
            primary_key.extend(group.iter().cloned());
            primary_key.push("start_time".into());
        } else {
            for name in ["window_start", "window_end"] {
                columns.push((name.to_string(), ColType::BigInt, true));
                primary_key.push(name.into());
            }
            if spec.windows.iter().any(|w| w.label.is_some()) {
                columns.push(("window".into(), ColType::Text, true));
                primary_key.push("window".into());
            }
            primary_key.extend(group.iter().cloned());
        }
        for name in &group {
            columns.push((name.clone(), ColType::Text, true));
        }
        for a in &spec.aggregates {
            let sql: &str = AggKind::sql_type(a.kind);
            columns.push((a.name.clone(), ColType::from_sql(sql), false));
        }
        Layout {
            table,
            columns,
            primary_key,
        }
    }

    fn create_sql(&self) -> String {
        let mut columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, ty, required)| {
                let null = if *required { " NOT NULL" } else { "" };
                format!("{} {}{null}", quote(name), ty.sql())
            })
            .collect();
        columns.push(format!("PRIMARY KEY ({})", quote_list(&self.primary_key)));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_table(&self.table),
            columns.join(", ")
        )
    }

    fn upsert_sql(&self) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| c.0.clone()).collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty, _))| format!("${}::{}[]", i + 1, ty.sql()))
            .collect();
        let values: Vec<&String> = self
            .columns
            .iter()
            .map(|c| &c.0)
            .filter(|name| !self.primary_key.contains(name))
            .collect();
        let list = |prefix: &str| {
            values
                .iter()
                .map(|name| format!("{prefix}.{}", quote(name)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let updates: Vec<String> = values
            .iter()
            .map(|name| format!("{0} = EXCLUDED.{0}", quote(name)))
            .collect();
        // Rows that are already right are left alone: a re-run rewrites nothing.
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!(
                "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
                updates.join(", "),
                list("t"),
                list("EXCLUDED")
            )
        };
        format!(
            "INSERT INTO {} AS t ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) {action}",
            quote_table(&self.table),
            quote_list(&names),
            arrays.join(", "),
            quote_list(&self.primary_key)
        )
    }

    /// Turns rows into one array per column.
    fn columns_of(&self, rows: &[ResultRow]) -> Result<Vec<Column>> {
        let mut columns: Vec<Column> = self
            .columns
            .iter()
            .map(|(_, ty, _)| match ty {
                ColType::BigInt => Column::BigInt(Vec::with_capacity(rows.len())),
                ColType::Double => Column::Double(Vec::with_capacity(rows.len())),
                ColType::Text => Column::Text(Vec::with_capacity(rows.len())),
            })
            .collect();
        for row in rows {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&row.json)
                    .with_context(|| format!("result row is not a JSON object: {}", row.json))?;
            for ((name, ty, required), column) in self.columns.iter().zip(&mut columns) {
                let value = object.get(name).filter(|v| !v.is_null());
                if *required && value.is_none() {
                    bail!("result row lacks column `{name}`: {}", row.json);
                }
                match column {
                    Column::BigInt(v) => v.push(match value {
                        None => None,
                        Some(x) => Some(x.as_i64().ok_or_else(|| {
                            anyhow!("`{name}` is not an integer ({}): {}", ty.sql(), row.json)
                        })?),
                    }),
                    Column::Double(v) => v.push(value.and_then(serde_json::Value::as_f64)),
                    Column::Text(v) => v.push(value.map(|x| match x {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })),
                }
            }
        }
        Ok(columns)
    }
}

enum Column {
    BigInt(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl Column {
    fn as_param(&self) -> &(dyn postgres::types::ToSql + Sync) {
        match self {
            Column::BigInt(v) => v,
            Column::Double(v) => v,
            Column::Text(v) => v,
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `schema.table` or `table`, each part quoted.
fn quote_table(name: &str) -> String {
    name.split('.').map(quote).collect::<Vec<_>>().join(".")
}

/// Parsed `postgres://` target.
#[derive(Clone, Debug)]
struct Target {
    /// The URL without our own query parameters.
    url: String,
    table: Option<String>,
    retry_for: Duration,
    batch: usize,
}

fn parse_target(target: &str) -> Result<Target> {
    let (base, query) = match target.split_once('?') {
        Some((base, query)) => (base, query),
        None => (target, ""),
    };
    let mut parsed = Target {
        url: String::new(),
        table: None,
        retry_for: Duration::from_secs(60),
        batch: 5_000,
    };
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "table" => {
                let valid = !value.is_empty()
                    && value.split('.').all(|part| {
                        !part.is_empty()
                            && !part.starts_with(|c: char| c.is_ascii_digit())
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if !valid {
                    bail!("table: `{value}` is not a table name (letters, digits, _; schema.table allowed)");
                }
                parsed.table = Some(value.to_string());
            }
            "retry_for" => {
                parsed.retry_for =
                    Duration::from_millis(parse_duration_ms(value).context("retry_for")?)
            }
            "batch" => {
                parsed.batch = value
                    .parse()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| anyhow!("batch: `{value}` is not a positive number"))?
            }
            _ => rest.push(pair),
        }
    }
    parsed.url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok(parsed)
}

enum Message {
    Rows(Vec<ResultRow>),
    Flush(mpsc::Sender<Result<(), String>>),
}

/// The sink handed to the workers: a queue to the writer thread.
pub struct PostgresSink {
    queue: Mutex<Option<SyncSender<Message>>>,
    failure: Arc<Mutex<Option<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresSink {
    /// Connects, creates the table, and starts the writer thread. Fails at once if the server is
    /// unreachable at start-up: a typo in the URL should not wait for `retry_for`.
    pub fn open(target: &str, spec: &Spec) -> Result<PostgresSink> {
        let target = parse_target(target).context("--output")?;
        let config: postgres::Config = target
            .url
            .parse()
            .with_context(|| format!("--output: `{}` is not a PostgreSQL URL", target.url))?;
        let table = target.table.clone().unwrap_or_else(|| spec.name.clone());
        let layout = Layout::new(spec, table);
        let mut writer = Writer {
            config,
            client: None,
            layout,
            upsert: String::new(),
            retry_for: target.retry_for,
            written: 0,
        };
        writer.upsert = writer.layout.upsert_sql();
        writer
            .connect()
            .map_err(|e| anyhow!("--output: cannot connect to PostgreSQL: {e}"))?;
        let failure = Arc::new(Mutex::new(None));
        let (sender, receiver) = mpsc::sync_channel(QUEUE_BATCHES);
        let thread_failure = Arc::clone(&failure);
        let batch = target.batch;
        let handle = std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || writer.run(receiver, batch, thread_failure))
            .context("cannot start the PostgreSQL writer thread")?;
        Ok(PostgresSink {
            queue: Mutex::new(Some(sender)),
            failure,
            writer: Mutex::new(Some(handle)),
        })
    }

    fn failed(&self) -> Result<()> {
        match &*self.failure.lock().expect("lock") {
            Some(message) => bail!("PostgreSQL: {message}"),
            None => Ok(()),
        }
    }

    fn send(&self, message: Message) -> Result<()> {
        let queue = self.queue.lock().expect("lock").clone();
        let Some(queue) = queue else {
            bail!("PostgreSQL sink already closed");
        };
        if queue.send(message).is_err() {
            self.failed()?;
            bail!("PostgreSQL writer stopped");
        }
        Ok(())
    }
}

impl RowSink for PostgresSink {
    fn write_rows(&self, batches: &[RowBatch]) -> Result<()> {
        self.failed()?;
        let rows: Vec<ResultRow> = batches
            .iter()
            .flat_map(RowBatch::rows)
            .map(|row| ResultRow {
                key: row.key(),
                json: row.json.to_string(),
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        self.send(Message::Rows(rows))
    }

    fn flush(&self) -> Result<()> {
        let (ack, done) = mpsc::channel();
        self.send(Message::Flush(ack))?;
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => bail!("PostgreSQL: {message}"),
            Err(_) => {
                self.failed()?;
                bail!("PostgreSQL writer stopped")
            }
        }
    }
}

impl Drop for PostgresSink {
    fn drop(&mut self) {
        self.queue.lock().expect("lock").take();
        if let Some(handle) = self.writer.lock().expect("lock").take() {
            let _ = handle.join();
        }
    }
}

struct Writer {
    config: postgres::Config,
    client: Option<postgres::Client>,
    layout: Layout,
    upsert: String,
    retry_for: Duration,
    written: u64,
}

/// Whether an error may go away by reconnecting and trying again.
fn retryable(error: &postgres::Error) -> bool {
    match error.code() {
        // Connection exceptions, operator intervention (shutdown), insufficient resources,
        // transaction rollbacks (serialization failures, deadlocks).
        Some(state) => ["08", "57", "53", "40"]
            .iter()
            .any(|class| state.code().starts_with(class)),
        // I/O errors, closed connections, timeouts.
        None => true,
    }
}

impl Writer {
    fn connect(&mut self) -> Result<(), postgres::Error> {
        let mut client = self.config.connect(postgres::NoTls)?;
        match client.batch_execute(&self.layout.create_sql()) {
            Ok(()) => {}
            // Two processes creating the table at once: the other one won.
            Err(e) if matches!(e.code().map(|c| c.code()), Some("23505" | "42P07")) => {}
            Err(e) => return Err(e),
        }
        self.client = Some(client);
        Ok(())
    }

    fn run(mut self, queue: Receiver<Message>, batch: usize, failure: Arc<Mutex<Option<String>>>) {
        // Pending rows by result key: a key seen twice keeps its latest row (one upsert may not
        // touch a row twice).
        let mut pending: Vec<ResultRow> = Vec::new();
        let mut index: FxHashMap<String, usize> = FxHashMap::default();
        let mut error: Option<String> = None;
        loop {
            let message = if pending.is_empty() {
                queue.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                queue.recv_timeout(LINGER)
            };
            let mut ack = None;
            match message {
                Ok(Message::Rows(rows)) => {
                    if error.is_some() {
                        continue;
                    }
                    for row in rows {
                        match index.get(&row.key) {
                            Some(&i) => pending[i] = row,
                            None => {
                                index.insert(row.key.clone(), pending.len());
                                pending.push(row);
                            }
                        }
                    }
                    if pending.len() < batch {
                        continue;
                    }
                }
                Ok(Message::Flush(sender)) => ack = Some(sender),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if !pending.is_empty() && error.is_none() {
                        if let Err(e) = self.write(&pending) {
                            eprintln!("streamstats: PostgreSQL: {e:#}");
                        }
                    }
                    return;
                }
            }
            if error.is_none() {
                for chunk in pending.chunks(batch) {
                    if let Err(e) = self.write(chunk) {
                        let message = format!("{e:#}");
                        *failure.lock().expect("lock") = Some(message.clone());
                        error = Some(message);
                        break;
                    }
                }
                pending.clear();
                index.clear();
            }
            if let Some(ack) = ack {
                let _ = ack.send(match &error {
                    Some(message) => Err(message.clone()),
                    None => {
                        eprintln!(
                            "streamstats: PostgreSQL: {} rows committed to table {}",
                            self.written, self.layout.table
                        );
                        Ok(())
                    }
                });
            }
        }
    }

    /// Upserts `rows` in one transaction, reconnecting and retrying until `retry_for` passes.
    fn write(&mut self, rows: &[ResultRow]) -> Result<()> {
        let columns = self.layout.columns_of(rows)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            columns.iter().map(Column::as_param).collect();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = if self.client.is_none() {
                self.connect()
            } else {
                Ok(())
            }
            .and_then(|()| {
                let client = self.client.as_mut().expect("connected above");
                upsert(client, &self.upsert, &params)
            });
            match result {
                Ok(()) => {
                    if attempt > 1 {
                        eprintln!(
                            "streamstats: PostgreSQL: reconnected; batch of {} rows committed after {attempt} attempts",
                            rows.len()
                        );
                    }
                    self.written += rows.len() as u64;
                    return Ok(());
                }
                Err(e) if !retryable(&e) => {
                    return Err(anyhow!(
                        "writing to table {}: {}",
                        self.layout.table,
                        describe(&e)
                    ));
                }
                Err(e) => {
                    self.client = None;
                    if started.elapsed() >= self.retry_for {
                        bail!(
                            "server unreachable for {:?} (retry_for), {} rows not written: {}",
                            self.retry_for,
                            rows.len(),
                            describe(&e)
                        );
                    }
                    eprintln!(
                        "streamstats: PostgreSQL: {}; keeping {} rows, retrying in {:?} (attempt {attempt})",
                        describe(&e),
                        rows.len(),
                        backoff
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

fn upsert(
    client: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    transaction.execute(sql, params)?;
    transaction.commit()
}

fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_options_are_split_off() {
        let t =
            parse_target("postgres://u@127.0.0.1:5/db?table=s.t&retry_for=5s&connect_timeout=3")
                .unwrap();
        assert_eq!(t.url, "postgres://u@127.0.0.1:5/db?connect_timeout=3");
        assert_eq!(t.table.as_deref(), Some("s.t"));
        assert_eq!(t.retry_for, Duration::from_secs(5));
        assert!(parse_target("postgres://u@h/db?table=x;drop").is_err());
    }

    #[test]
    fn session_layout() {
        let spec = Spec::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dataflows/sessions.toml"
        )))
        .unwrap();
        let layout = Layout::new(&spec, "s".into());
        assert_eq!(layout.primary_key, vec!["session_id", "start_time"]);
        let create = layout.create_sql();
        assert!(create.contains("\"events\" bigint"), "{create}");
        assert!(create.contains("\"user_id\" text,"), "{create}");
        let upsert = layout.upsert_sql();
        assert!(upsert.contains("ON CONFLICT (\"session_id\", \"start_time\") DO UPDATE SET \"end_time\" = EXCLUDED.\"end_time\""), "{upsert}");
    }
}
