//! Structured logs as JSON lines, in the shape of etcd 3.5's zap output, on stderr or on the
//! destinations of `--log-outputs` (`output`: files, stdout, rotation):
//!
//! ```text
//! {"level":"info","ts":"2026-11-26T19:22:26.861Z","caller":"etcdserver/server.go:843","msg":"starting etcd server","local-member-id":"bdae9bbc11dd390d"}
//! ```
//! Key order: `level`, `ts` (UTC, milliseconds), `logger` (`"raft"` for openraft's events and
//! for our own raft milestones, logged with target [`RAFT_TARGET`]), `caller` (last two path components and line), `msg`, then the fields of the
//! entered spans (outermost first), then the event's fields. Field names written with
//! underscores in code (`local_member_id`) are printed with dashes (`local-member-id`), the
//! way etcd names its fields.
//!
//! `JsonLogger` is a minimal `tracing::Subscriber`: level filter, span fields, one
//! `write_all` per line. `emit` writes one line directly (for start-up messages whose
//! field names are only known at run time).
//!
//! openraft's own info lines (whole `RaftState` structures, every vote change) are internals: they
//! are logged as debug, so that at the default level the log carries etcd's milestone lines
//! ("elected leader", "ready to serve client requests", ...) that operators and tools wait for.
//! openraft's warnings and errors keep their level.
//!
//! Invariant: every output line is one complete JSON object followed by `\n`.
//! Invariant: logging never panics on input and never blocks on anything but the sink.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

pub mod output;

pub use output::{LogOutput, Outputs, RotationConfig};

/// Why `init` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggingError {
    /// A global subscriber was installed before (only the first `init` takes effect).
    AlreadyInitialized,
    /// An output could not be opened; the text is etcd's (`couldn't open sink ...`).
    Output(String),
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::AlreadyInitialized => f.write_str("a global logger is already set"),
            LoggingError::Output(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for LoggingError {}

/// Target of our own raft milestone lines (etcd logs them with `"logger":"raft"`).
pub const RAFT_TARGET: &str = "raft";

/// The level an event is filtered and printed at: openraft's info lines count as debug.
fn effective_level(meta: &Metadata<'_>) -> Level {
    let level = *meta.level();
    if level == Level::INFO && meta.target().starts_with("openraft") {
        Level::DEBUG
    } else {
        level
    }
}

/// Level `emit` filters with; set by `init` (info until then, like etcd's early logger).
static EMIT_LEVEL: AtomicUsize = AtomicUsize::new(level_rank(Level::INFO));

/// The process's log destinations once `init` opened them (stderr until then).
static OUTPUTS: std::sync::OnceLock<Outputs> = std::sync::OnceLock::new();

/// Opens `outputs` (rotating file outputs under `rotation`) and installs the JSON logger
/// writing to them as the global subscriber, printing events at `level` and above.
pub fn init(
    level: Level,
    outputs: &[LogOutput],
    rotation: Option<RotationConfig>,
) -> Result<(), LoggingError> {
    let opened = Outputs::open(outputs, rotation).map_err(LoggingError::Output)?;
    if OUTPUTS.set(opened).is_err() {
        return Err(LoggingError::AlreadyInitialized);
    }
    EMIT_LEVEL.store(level_rank(level), Ordering::Relaxed);
    tracing::subscriber::set_global_default(JsonLogger::stderr(level))
        .map_err(|_| LoggingError::AlreadyInitialized)
}

/// Writes one log line to stderr directly (not through `tracing`), with string fields
/// whose names are known only at run time. `caller` is the calling line.
#[track_caller]
pub fn emit(level: Level, msg: &str, fields: &[(&str, &str)]) {
    if level_rank(level) < EMIT_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let location = std::panic::Location::caller();
    let mut line = String::new();
    line_head(
        &mut line,
        level,
        SystemTime::now(),
        None,
        &caller(location.file(), location.line()),
        msg,
    );
    for (key, value) in fields {
        push_field(&mut line, key, &json_string(value));
    }
    line.push_str("}\n");
    write_outputs(&line);
}

/// zap's level names; tracing's TRACE prints as "debug".
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE | Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// 0 = most verbose.
const fn level_rank(level: Level) -> usize {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// `2026-11-26T19:22:26.861Z` (zap's ISO-8601 encoder in UTC).
pub fn format_ts(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
/// Works in 400-year eras of 146 097 days, with years starting on March 1st so that the
/// leap day is the last day of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01; `None` for an invalid date or one before
/// 1970. The inverse of `civil_from_days`.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y % 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

/// `dir/file.rs:line` from a source path, like zap's short caller.
fn caller(file: &str, line: u32) -> String {
    let mut parts = file.rsplit(['/', '\\']);
    let name = parts.next().unwrap_or(file);
    match parts.next() {
        Some(dir) if !dir.is_empty() => format!("{dir}/{name}:{line}"),
        _ => format!("{name}:{line}"),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

fn line_head(
    out: &mut String,
    level: Level,
    ts: SystemTime,
    logger: Option<&str>,
    caller: &str,
    msg: &str,
) {
    let _ = write!(
        out,
        "{{\"level\":\"{}\",\"ts\":\"{}\"",
        level_name(level),
        format_ts(ts)
    );
    if let Some(name) = logger {
        let _ = write!(out, ",\"logger\":{}", json_string(name));
    }
    let _ = write!(
        out,
        ",\"caller\":{},\"msg\":{}",
        json_string(caller),
        json_string(msg)
    );
}

/// Appends `,"key":value` with `_` in the key printed as `-`; `value` is already JSON.
fn push_field(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, ",{}:{value}", json_string(&key.replace('_', "-")));
}

/// One line to the process's outputs (stderr before `init`). A failed write cannot be
/// reported anywhere, so it is dropped.
fn write_outputs(line: &str) {
    match OUTPUTS.get() {
        Some(outputs) => outputs.write_line(line),
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Renders one complete log line (with trailing newline). Field values are JSON texts.
pub fn render_line(
    level: Level,
    ts: SystemTime,
    logger: Option<&str>,
    caller: &str,
    msg: &str,
    fields: &[(String, String)],
) -> String {
    let mut line = String::with_capacity(128);
    line_head(&mut line, level, ts, logger, caller, msg);
    for (key, value) in fields {
        push_field(&mut line, key, value);
    }
    line.push_str("}\n");
    line
}

/// Collects `tracing` field values as (name, JSON text); the `message` field separately.
#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Vec<(String, String)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, json: String) {
        self.fields.push((field.name().to_string(), json));
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let json = if value.is_finite() {
            value.to_string()
        } else {
            json_string(&value.to_string())
        };
        self.push(field, json);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.to_string());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.push(field, json_string(value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, json_string(&value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.push(field, json_string(&text));
        }
    }
}

/// Where lines go.
enum Sink {
    Stderr,
    /// For tests: lines are appended to a shared buffer.
    Buffer(Arc<Mutex<Vec<u8>>>),
}

struct SpanData {
    fields: Vec<(String, String)>,
    refs: usize,
}

thread_local! {
    /// Spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The JSON-lines subscriber.
pub struct JsonLogger {
    max_level: Level,
    sink: Sink,
    clock: fn() -> SystemTime,
    spans: Mutex<HashMap<u64, SpanData>>,
    next_span: AtomicU64,
}

impl JsonLogger {
    /// Logger writing to stderr.
    pub fn stderr(max_level: Level) -> JsonLogger {
        JsonLogger::new(max_level, Sink::Stderr)
    }

    /// Logger appending lines to `buffer` (tests).
    pub fn to_buffer(max_level: Level, buffer: Arc<Mutex<Vec<u8>>>) -> JsonLogger {
        JsonLogger::new(max_level, Sink::Buffer(buffer))
    }

    /// Replaces the clock (tests pin the timestamp).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> JsonLogger {
        self.clock = clock;
        self
    }

    fn new(max_level: Level, sink: Sink) -> JsonLogger {
        JsonLogger {
            max_level,
            sink,
            clock: SystemTime::now,
            spans: Mutex::new(HashMap::new()),
            next_span: AtomicU64::new(1),
        }
    }

    fn spans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SpanData>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, line: &str) {
        match &self.sink {
            Sink::Stderr => write_outputs(line),
            Sink::Buffer(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(line.as_bytes()),
        }
    }

    /// Fields of the spans entered on this thread, outermost first.
    fn context_fields(&self) -> Vec<(String, String)> {
        let entered = ENTERED.with(|stack| stack.borrow().clone());
        if entered.is_empty() {
            return Vec::new();
        }
        let spans = self.spans();
        entered
            .iter()
            .filter_map(|id| spans.get(id))
            .flat_map(|s| s.fields.iter().cloned())
            .collect()
    }
}

impl Subscriber for JsonLogger {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.is_span() {
            return metadata.level() <= &self.max_level;
        }
        effective_level(metadata) <= self.max_level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max_level))
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed);
        let mut collector = FieldCollector::default();
        attrs.record(&mut collector);
        self.spans().insert(
            id,
            SpanData {
                fields: collector.fields,
                refs: 1,
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut collector = FieldCollector::default();
        values.record(&mut collector);
        if let Some(data) = self.spans().get_mut(&span.into_u64()) {
            data.fields.extend(collector.fields);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut collector = FieldCollector::default();
        event.record(&mut collector);
        let mut fields = self.context_fields();
        fields.extend(collector.fields);
        let target = meta.target();
        let logger = (target.starts_with("openraft") || target == RAFT_TARGET).then_some("raft");
        let caller = match (meta.file(), meta.line()) {
            (Some(file), Some(line)) => caller(file, line),
            _ => meta.target().to_string(),
        };
        let msg = collector.message.unwrap_or_default();
        let line = render_line(
            effective_level(meta),
            (self.clock)(),
            logger,
            &caller,
            &msg,
            &fields,
        );
        self.write(&line);
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|stack| stack.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        let id = span.into_u64();
        ENTERED.with(|stack| {
            let mut stack = stack.borrow_mut();
            if let Some(pos) = stack.iter().rposition(|s| *s == id) {
                stack.remove(pos);
            }
        });
    }

    fn clone_span(&self, id: &Id) -> Id {
        if let Some(data) = self.spans().get_mut(&id.into_u64()) {
            data.refs += 1;
        }
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut spans = self.spans();
        let key = id.into_u64();
        let closed = match spans.get_mut(&key) {
            Some(data) => {
                data.refs = data.refs.saturating_sub(1);
                data.refs == 0
            }
            None => false,
        };
        if closed {
            spans.remove(&key);
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pinned_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_720_946_861)
    }

    fn capture(level: Level, f: impl FnOnce()) -> Vec<String> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let logger = JsonLogger::to_buffer(level, buffer.clone()).with_clock(pinned_clock);
        tracing::subscriber::with_default(logger, f);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn timestamps_match_zap() {
        assert_eq!(format_ts(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ts(pinned_clock()), "2026-11-26T19:22:26.861Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_ts(leap), "2000-02-29T00:00:00.000Z");
        let end = UNIX_EPOCH + Duration::from_millis(4_102_444_799_999);
        assert_eq!(format_ts(end), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn event_renders_as_etcd_shaped_json() {
        let lines = capture(Level::INFO, || {
            tracing::info!(
                local_member_id = "bdae9bbc11dd390d",
                forward_ticks = 9u64,
                delta = -3i64,
                ok = true,
                "starting etcd server"
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let prefix =
            "{\"level\":\"info\",\"ts\":\"2026-11-26T19:22:26.861Z\",\"caller\":\"src/logging.rs:";
        assert!(line.starts_with(prefix), "{line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["msg"], "starting etcd server");
        assert_eq!(v["local-member-id"], "bdae9bbc11dd390d");
        assert_eq!(v["forward-ticks"], 9);
        assert_eq!(v["delta"], -3);
        assert_eq!(v["ok"], true);
        let msg_at = line.find("\"msg\"").unwrap();
        assert!(line.find("\"caller\"").unwrap() < msg_at);
        assert!(msg_at < line.find("\"local-member-id\"").unwrap());
    }

    #[test]
    fn level_filter_and_names() {
        let lines = capture(Level::WARN, || {
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!(error = %"boom", "e");
        });
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(first["level"], "warn");
        assert_eq!(second["level"], "error");
        assert_eq!(second["error"], "boom");
        let debug = capture(Level::DEBUG, || {
            tracing::trace!("t");
            tracing::debug!("d");
        });
        assert_eq!(debug.len(), 1);
        assert!(debug[0].starts_with("{\"level\":\"debug\""));
    }

    #[test]
    fn span_fields_come_before_event_fields() {
        let lines = capture(Level::INFO, || {
            let outer = tracing::info_span!("member", member_id = "2e1259d415f2a040");
            let _o = outer.enter();
            let inner = tracing::info_span!("req", request = 7u64);
            let _i = inner.enter();
            tracing::info!(key = "k\"q", "applied");
        });
        let line = &lines[0];
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["member-id"], "2e1259d415f2a040");
        assert_eq!(v["request"], 7);
        assert_eq!(v["key"], "k\"q");
        assert!(line.find("member-id").unwrap() < line.find("\"request\"").unwrap());
        assert!(line.find("\"request\"").unwrap() < line.find("\"key\"").unwrap());
    }

    #[test]
    fn spans_are_released_after_close() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let logger = Arc::new(JsonLogger::to_buffer(Level::INFO, buffer));
        let dispatch = tracing::Dispatch::from(logger.clone());
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("s", a = 1u64);
            let copy = span.clone();
            drop(span);
            assert_eq!(logger.spans().len(), 1);
            drop(copy);
        });
        assert_eq!(logger.spans().len(), 0);
    }

    #[test]
    fn openraft_events_name_the_raft_logger() {
        let lines = capture(Level::INFO, || {
            tracing::warn!(target: "openraft::core", "failed to reach a peer");
            tracing::info!(target: RAFT_TARGET, "raft.node: 1 elected leader 1 at term 2");
        });
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["logger"], "raft");
            assert!(line.find("\"logger\"").unwrap() < line.find("\"caller\"").unwrap());
        }
    }

    // Regression: openraft printed whole `RaftState` debug structures at info level, burying
    // etcd's milestone lines. Its info lines are debug now; its warnings stay warnings.
    #[test]
    fn openraft_info_lines_are_debug() {
        let lines = capture(Level::INFO, || {
            tracing::info!(target: "openraft::engine", "startup begin: state: RaftState {{ .. }}");
            tracing::warn!(target: "openraft::core", "peer unreachable");
            tracing::info!(target: "oxetcd::raft::node", "ready to serve client requests");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("peer unreachable"));
        assert!(lines[1].contains("ready to serve client requests"));
        let lines = capture(Level::DEBUG, || {
            tracing::info!(target: "openraft::engine", "startup begin");
        });
        assert_eq!(lines.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["level"], "debug");
    }

    #[test]
    fn render_line_escapes_and_terminates() {
        let line = render_line(
            Level::WARN,
            UNIX_EPOCH,
            None,
            "config/flags.rs:10",
            "line\nbreak",
            &[("environment_variable".into(), json_string("ETCD_X=1"))],
        );
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["msg"], "line\nbreak");
        assert_eq!(v["environment-variable"], "ETCD_X=1");
        assert_eq!(v["caller"], "config/flags.rs:10");
    }

    #[test]
    fn caller_keeps_two_components() {
        assert_eq!(caller("src/config/flags.rs", 3), "config/flags.rs:3");
        assert_eq!(
            caller("/a/b/openraft-0.9.25/src/core/raft_core.rs", 9),
            "core/raft_core.rs:9"
        );
        assert_eq!(caller("main.rs", 1), "main.rs:1");
    }
}
