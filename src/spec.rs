//! Dataflow files: the declarative TOML that carries a job (input format, time field, filter,
//! required and derived fields, windows, aggregates).
//!
//! Contract: `Spec::load` either returns a fully validated `Spec` or an error whose message starts
//! with the file name and names the offending field (`time.unit`, `windows[1].size`, …). Nothing
//! downstream re-validates: every index in a `Spec` points into `Spec::fields`.

use crate::aggregate::AggKind;
use crate::extract::derive::{Derived, UrlPart};
use crate::time::{parse_duration_ms, TimeUnit};
use crate::window::WindowKind;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A validated dataflow.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// Root-level record fields the job reads, in extraction order.
    pub fields: Vec<String>,
    pub time: TimeSpec,
    pub filters: Vec<Filter>,
    /// Group-by fields: output name and index into `fields`.
    pub group_by: Vec<(String, usize)>,
    pub windows: Vec<WindowSpec>,
    pub aggregates: Vec<AggSpec>,
    /// Record format (`[input]`); JSON lines unless declared.
    pub input: InputFormat,
    /// Fields a record must have (present and not null), else it is dead-lettered as malformed.
    pub required: Vec<(String, usize)>,
    /// Derived fields (`[derive]`), computed after extraction.
    pub derived: Vec<Derived>,
}

/// How input records are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// One CSV record per line. `columns` empty with `header`: read from the file's first line.
    Csv {
        columns: Vec<String>,
        header: bool,
        trim: bool,
    },
}

#[derive(Clone, Debug)]
pub struct TimeSpec {
    pub field: usize,
    pub unit: TimeUnit,
    /// Bounded out-of-orderness: a partition's watermark trails its maximum event time by this much.
    pub max_out_of_orderness_ms: u64,
    /// Bitflip guard: a record further than this ahead of its partition's maximum needs confirmation.
    pub max_future_ms: u64,
    /// How many consecutive far-ahead records confirm a genuine jump in event time.
    pub future_confirmations: usize,
}

/// Keep a record only when the field's text is one of `values`.
#[derive(Clone, Debug)]
pub struct Filter {
    pub field: usize,
    pub values: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Written to the output as `"window"` when set, so rows of several windows can be told apart.
    pub label: Option<String>,
    /// The window spec whose closed windows make up this one's (`window::feeders`); `None`:
    /// records update this one directly.
    pub fed_by: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct AggSpec {
    pub name: String,
    pub kind: AggKind,
    /// Index into `fields` of the aggregated field, for aggregates that read one.
    pub field: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    group_by: Vec<String>,
    time: RawTime,
    #[serde(default)]
    filter: BTreeMap<String, OneOrMany>,
    windows: Vec<RawWindow>,
    aggregates: Vec<RawAggregate>,
    input: Option<RawInput>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    derive: BTreeMap<String, RawDerive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    format: String,
    #[serde(default)]
    header: bool,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    trim: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerive {
    from: String,
    extract: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    field: String,
    unit: String,
    max_out_of_orderness: String,
    #[serde(default = "default_max_future")]
    max_future: String,
    #[serde(default = "default_confirmations")]
    future_confirmations: usize,
}

fn default_max_future() -> String {
    "1h".into()
}
fn default_confirmations() -> usize {
    3
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<toml::Value>),
    One(toml::Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    #[serde(rename = "type")]
    pub kind: String,
    pub size: Option<String>,
    pub slide: Option<String>,
    pub gap: Option<String>,
    pub unit: Option<String>,
    pub label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregate {
    name: String,
    #[serde(rename = "fn")]
    function: String,
    field: Option<String>,
    mode: Option<String>,
    precision: Option<u8>,
}

impl Spec {
    /// Reads and validates a dataflow file.
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read dataflow file {}", path.display()))?;
        Spec::parse(&text).with_context(|| format!("dataflow file {}", path.display()))
    }

    /// Validates a dataflow from TOML text.
    pub fn parse(text: &str) -> Result<Spec> {
        let raw: RawSpec =
            toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))?;
        let mut fields = Vec::new();
        let mut field_index = |name: &str, what: &str| -> Result<usize> {
            if name.is_empty() {
                bail!("{what}: field name is empty");
            }
            Ok(match fields.iter().position(|f| f == name) {
                Some(i) => i,
                None => {
                    fields.push(name.to_string());
                    fields.len() - 1
                }
            })
        };

        if raw.name.trim().is_empty() {
            bail!("name: must not be empty");
        }
        let time = TimeSpec {
            field: field_index(&raw.time.field, "time.field")?,
            unit: TimeUnit::parse(&raw.time.unit).context("time.unit")?,
            max_out_of_orderness_ms: parse_duration_ms(&raw.time.max_out_of_orderness)
                .context("time.max_out_of_orderness")?,
            max_future_ms: parse_duration_ms(&raw.time.max_future).context("time.max_future")?,
            future_confirmations: raw.time.future_confirmations,
        };
        if time.max_future_ms == 0 {
            bail!("time.max_future: must be greater than zero");
        }
        if time.future_confirmations == 0 {
            bail!("time.future_confirmations: must be at least 1");
        }

        let mut filters = Vec::new();
        for (name, values) in raw.filter {
            let values = match values {
                OneOrMany::One(v) => vec![v],
                OneOrMany::Many(vs) => vs,
            };
            let values = values
                .into_iter()
                .map(|v| {
                    scalar_text(&v).ok_or_else(|| {
                        anyhow!("filter.{name}: values must be strings, numbers or booleans")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if values.is_empty() {
                bail!("filter.{name}: the set of accepted values is empty");
            }
            filters.push(Filter {
                field: field_index(&name, &format!("filter.{name}"))?,
                values,
            });
        }

        let mut group_by = Vec::new();
        for (i, name) in raw.group_by.iter().enumerate() {
            if raw.group_by[..i].contains(name) {
                bail!("group_by[{i}]: `{name}` is listed twice");
            }
            group_by.push((name.clone(), field_index(name, &format!("group_by[{i}]"))?));
        }

        if raw.windows.is_empty() {
            bail!("windows: declare at least one window");
        }
        let mut windows = Vec::new();
        for (i, w) in raw.windows.iter().enumerate() {
            let kind = WindowKind::from_raw(w).with_context(|| format!("windows[{i}]"))?;
            windows.push(WindowSpec {
                kind,
                label: w.label.clone(),
                fed_by: None,
            });
        }
        let kinds: Vec<WindowKind> = windows.iter().map(|w| w.kind).collect();
        for (window, fed_by) in windows.iter_mut().zip(crate::window::feeders(&kinds)) {
            window.fed_by = fed_by;
        }
        let sessions = windows
            .iter()
            .any(|w| matches!(w.kind, WindowKind::Session { .. }));
        if sessions && windows.len() > 1 {
            bail!("windows: a session window must be the only window of a dataflow");
        }
        if sessions && group_by.is_empty() {
            bail!("group_by: a session window needs a key (e.g. group_by = [\"session_id\"])");
        }
        if windows.len() > 1 && windows.iter().any(|w| w.label.is_none()) {
            bail!(
                "windows: with several windows every window needs a `label` to tell its rows apart"
            );
        }

        if raw.aggregates.is_empty() {
            bail!("aggregates: declare at least one aggregate");
        }
        let mut aggregates = Vec::new();
        let mut output_names: Vec<String> = if sessions {
            SESSION_FIELDS.iter().map(|s| s.to_string()).collect()
        } else {
            ["window_start", "window_end", "window"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        output_names.extend(raw.group_by.iter().cloned());
        for (i, a) in raw.aggregates.iter().enumerate() {
            let at = format!("aggregates[{i}]");
            let kind = AggKind::parse(&a.function).with_context(|| format!("{at}.fn"))?;
            let kind = kind
                .with_distinct_options(a.mode.as_deref(), a.precision)
                .with_context(|| at.clone())?;
            let mut names = vec![a.name.clone()];
            if kind.relative_standard_error().is_some() {
                names.push(format!("{}_rse", a.name));
            }
            for name in names {
                if output_names.contains(&name) {
                    bail!("{at}.name: `{name}` is already an output field");
                }
                output_names.push(name);
            }
            let field = match (&a.field, kind.needs_field()) {
                (Some(f), true) => Some(field_index(f, &format!("{at}.field"))?),
                (None, true) => bail!("{at}.field: `{}` needs a field", a.function),
                (Some(_), false) => bail!("{at}.field: `{}` takes no field", a.function),
                (None, false) => None,
            };
            aggregates.push(AggSpec {
                name: a.name.clone(),
                kind,
                field,
            });
        }

        let input = match raw.input {
            None => InputFormat::Jsonl,
            Some(input) => match input.format.as_str() {
                "jsonl" | "json" => {
                    if input.header || input.trim || !input.columns.is_empty() {
                        bail!("input: header, columns and trim apply to format = \"csv\" only");
                    }
                    InputFormat::Jsonl
                }
                "csv" => {
                    if input.columns.is_empty() && !input.header {
                        bail!("input.columns: declare the columns, or set header = true");
                    }
                    InputFormat::Csv {
                        columns: input.columns,
                        header: input.header,
                        trim: input.trim,
                    }
                }
                other => bail!("input.format: unknown format `{other}` (expected jsonl or csv)"),
            },
        };

        let mut required = Vec::new();
        for (i, name) in raw.required.iter().enumerate() {
            if raw.required[..i].contains(name) {
                bail!("required[{i}]: `{name}` is listed twice");
            }
            required.push((name.clone(), field_index(name, &format!("required[{i}]"))?));
        }

        let mut derived = Vec::new();
        for (name, d) in &raw.derive {
            let at = format!("derive.{name}");
            let part = UrlPart::parse(&d.extract).with_context(|| format!("{at}.extract"))?;
            if raw.derive.contains_key(&d.from) || d.from == *name {
                bail!("{at}.from: `{}` is itself derived", d.from);
            }
            derived.push(Derived {
                target: field_index(name, &at)?,
                source: field_index(&d.from, &format!("{at}.from"))?,
                source_name: d.from.clone(),
                part,
            });
        }

        Ok(Spec {
            name: raw.name,
            fields,
            time,
            filters,
            group_by,
            windows,
            aggregates,
            input,
            required,
            derived,
        })
    }
}

/// Output fields every session row has, before its group-by fields and aggregates.
pub const SESSION_FIELDS: [&str; 3] = ["start_time", "end_time", "stream_duration_ms"];

impl Spec {
    /// The gap of the dataflow's session window, if it is a session dataflow.
    pub fn session_gap_ms(&self) -> Option<u64> {
        self.windows.iter().find_map(|w| match w.kind {
            WindowKind::Session { gap_ms } => Some(gap_ms),
            _ => None,
        })
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &str = r#"
        name = "sps"
        group_by = ["device", "title", "country"]
        [time]
        field = "time"
        unit = "ms"
        max_out_of_orderness = "5s"
        [filter]
        sev = ["success"]
        [[windows]]
        type = "tumbling"
        size = "1s"
        [[aggregates]]
        name = "sps"
        fn = "count"
    "#;

    #[test]
    fn parses_sps() {
        let spec = Spec::parse(SPS).unwrap();
        assert_eq!(
            spec.fields,
            vec!["time", "sev", "device", "title", "country"]
        );
        assert_eq!(spec.time.max_out_of_orderness_ms, 5_000);
        assert_eq!(spec.filters[0].values, vec!["success"]);
    }

    #[test]
    fn parses_unique_users() {
        let text = include_str!("../dataflows/unique-users.toml");
        let spec = Spec::parse(text).unwrap();
        assert_eq!(spec.fields, vec!["ts", "uid"]);
        assert_eq!(spec.required, vec![("uid".to_string(), 1)]);
        assert_eq!(spec.windows.len(), 6);
        let approx = text.replace("mode = \"exact\"", "mode = \"approx\"\nprecision = 12");
        let spec = Spec::parse(&approx).unwrap();
        assert_eq!(
            spec.aggregates[0].kind,
            AggKind::CountDistinctApprox { precision: 12 }
        );
        let error = error_of(&approx.replace("precision = 12", "precision = 30"));
        assert!(
            error.contains("aggregates[0]") && error.contains("precision"),
            "{error}"
        );
        let clash = approx.replace("name = \"frames\"", "name = \"unique_users_rse\"");
        assert!(error_of(&clash).contains("aggregates[1].name"));
        assert!(
            error_of(&text.replace("unit = \"week\"", "unit = \"fortnight\""))
                .contains("windows[3]")
        );
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", Spec::parse(text).unwrap_err())
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error_of(&SPS.replace("unit = \"ms\"", "unit = \"msec\"")).contains("time.unit"));
        assert!(error_of(&SPS.replace("size = \"1s\"", "size = \"fast\"")).contains("windows[0]"));
        assert!(error_of(&SPS.replace("fn = \"count\"", "fn = \"median\""))
            .contains("aggregates[0].fn"));
        assert!(
            error_of(&SPS.replace("max_out_of_orderness", "max_out_of_order"))
                .contains("max_out_of_order")
        );
        let csv = format!("{SPS}\n[input]\nformat = \"csv\"\n");
        assert!(error_of(&csv).contains("input.columns"));
        let derive = format!("{SPS}\n[derive]\npath = {{ from = \"url\", extract = \"path\" }}\n");
        assert!(error_of(&derive).contains("derive.path.extract"));
        let sliding = SPS.replace("\"tumbling\"", "\"sliding\"");
        assert!(error_of(&sliding).contains("windows[0]: slide"));
        assert!(error_of(&SPS.replace("fn = \"count\"", "fn = \"sum\""))
            .contains("aggregates[0].field"));
        assert!(error_of(&SPS.replace(
            "name = \"sps\"\n        fn",
            "name = \"device\"\n        fn"
        ))
        .contains("aggregates[0].name"));
    }

    const SESSIONS: &str = r#"
        name = "sessions"
        group_by = ["session_id"]
        [time]
        field = "time"
        unit = "ms"
        max_out_of_orderness = "10s"
        [[windows]]
        type = "session"
        gap = "60s"
        [[aggregates]]
        name = "user_id"
        fn = "first"
        field = "user_id"
        [[aggregates]]
        name = "events"
        fn = "count"
    "#;

    #[test]
    fn parses_sessions() {
        let spec = Spec::parse(SESSIONS).unwrap();
        assert_eq!(spec.session_gap_ms(), Some(60_000));
        assert!(
            error_of(&SESSIONS.replace("gap = \"60s\"", "size = \"60s\"")).contains("windows[0]")
        );
        assert!(error_of(&SESSIONS.replace("[\"session_id\"]", "[]")).contains("group_by"));
        assert!(error_of(&SESSIONS.replace("\"events\"", "\"start_time\""))
            .contains("aggregates[1].name"));
        assert!(
            error_of(&SESSIONS.replace("field = \"user_id\"", "")).contains("aggregates[0].field")
        );
    }
}
