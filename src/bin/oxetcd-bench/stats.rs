//! Latency recording and the summary of one run: request rate, percentiles, the printed report
//! and the CSV row.
//!
//! Invariant: a `Recorder` keeps every successful sample (runs are bounded by `--total`), so
//! percentiles are exact order statistics, not bucket estimates.
//! Invariant: the CSV header is written exactly when the file is empty.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::BenchError;

/// Latencies of one client (or many, once merged), in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    samples_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    pub fn ok(&mut self, latency: Duration) {
        self.samples_ns
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what.to_string());
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.samples_ns.extend(other.samples_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Summarises the samples of a run that took `elapsed`.
    pub fn summary(mut self, elapsed: Duration) -> Summary {
        self.samples_ns.sort_unstable();
        let seconds = elapsed.as_secs_f64();
        let ok = self.samples_ns.len() as u64;
        let per_second = if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        };
        let pct = |p: f64| percentile_ms(&self.samples_ns, p);
        Summary {
            ok,
            errors: self.errors,
            first_error: self.first_error,
            seconds,
            per_second,
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
            max_ms: self.samples_ns.last().map_or(0.0, |ns| *ns as f64 / 1e6),
            server_cpu_s: None,
        }
    }
}

/// The smallest sample with at least `p` of the samples at or below it, in milliseconds.
pub fn percentile_ms(sorted_ns: &[u64], p: f64) -> f64 {
    debug_assert!((0.0..=1.0).contains(&p));
    debug_assert!(sorted_ns.windows(2).all(|w| w[0] <= w[1]));
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[index] as f64 / 1e6
}

/// The outcome of one bounded run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Successful operations (requests, or events for `watch`) per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// CPU time the server used during the run (`compare` fills it in).
    pub server_cpu_s: Option<f64>,
}

impl Summary {
    /// Microseconds of server CPU per successful operation, when the CPU time is known.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        self.server_cpu_s.and_then(|c| cpu_us_per_op(c, self.ok))
    }
}

impl Summary {
    /// The human-readable report.
    pub fn render(&self, unit: &str) -> String {
        let mut out = format!(
            "  {} {unit} ok, {} errors in {:.3} s: {:.1} {unit}/s\n  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.ok, self.errors, self.seconds, self.per_second, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        if let Some(e) = &self.first_error {
            out.push_str(&format!("  first error: {e}\n"));
        }
        out
    }
}

/// What a CSV row says about the run besides its summary.
#[derive(Debug, Clone)]
pub struct RunLabel {
    pub server: String,
    pub workload: String,
    pub round: u32,
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
    pub key_size: usize,
    pub val_size: usize,
    /// CPU time the server process used during the run (compare only).
    pub server_cpu_s: Option<f64>,
    /// Where the servers and the generator ran (`pin::Layout::label`).
    pub layout: String,
}

pub const CSV_HEADER: &str = "unix_time_s,server,workload,round,conns,clients,total,key_size_bytes,val_size_bytes,ok,errors,seconds,per_second,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,server_cpu_s,server_cpu_us_per_op,layout";
/// The header before the CPU-per-operation and layout columns; such files are upgraded in
/// place (the new CPU column is computed from `server_cpu_s` and `ok`, the layout left empty).
const CSV_HEADER_V1: &str = "unix_time_s,server,workload,round,conns,clients,total,key_size_bytes,val_size_bytes,ok,errors,seconds,per_second,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,server_cpu_s";

/// The CSV `total` column: 0 when the run had no operation limit (`kube --duration`).
pub fn csv_total(total: u64) -> u64 {
    if total == u64::MAX {
        0
    } else {
        total
    }
}

/// Microseconds of server CPU per successful operation.
pub fn cpu_us_per_op(cpu_s: f64, ok: u64) -> Option<f64> {
    (ok > 0).then(|| cpu_s * 1e6 / ok as f64)
}

/// A v1 row with the two new columns appended.
fn upgrade_v1_row(row: &str) -> String {
    let fields: Vec<&str> = row.split(',').collect();
    let ok = fields.get(9).and_then(|f| f.parse::<u64>().ok());
    let cpu = fields.get(18).and_then(|f| f.parse::<f64>().ok());
    let per_op = match (cpu, ok) {
        (Some(cpu), Some(ok)) => {
            cpu_us_per_op(cpu, ok).map_or(String::new(), |u| format!("{u:.1}"))
        }
        _ => String::new(),
    };
    format!("{row},{per_op},")
}

pub fn csv_row(unix_time_s: u64, label: &RunLabel, s: &Summary) -> String {
    format!(
        "{unix_time_s},{},{},{},{},{},{},{},{},{},{},{:.4},{:.2},{:.4},{:.4},{:.4},{:.4},{:.4},{},{},{}",
        label.server.replace(',', ";"),
        label.workload,
        label.round,
        label.conns,
        label.clients,
        label.total,
        label.key_size,
        label.val_size,
        s.ok,
        s.errors,
        s.seconds,
        s.per_second,
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.p999_ms,
        s.max_ms,
        label
            .server_cpu_s
            .map_or(String::new(), |c| format!("{c:.3}")),
        label
            .server_cpu_s
            .and_then(|c| cpu_us_per_op(c, s.ok))
            .map_or(String::new(), |u| format!("{u:.1}")),
        label.layout.replace(',', ";"),
    )
}

/// The per-call table of a `kube` run (empty for the other workloads).
pub fn render_parts(parts: &[(String, Summary)]) -> String {
    if parts.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "  {:12} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}\n",
        "call", "ok", "errors", "per s", "p50 ms", "p99 ms", "max ms"
    );
    for (name, s) in parts {
        out.push_str(&format!(
            "  {name:12} {:>9} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3}\n",
            s.ok, s.errors, s.per_second, s.p50_ms, s.p99_ms, s.max_ms
        ));
        if let Some(e) = &s.first_error {
            out.push_str(&format!("    first {name} error: {e}\n"));
        }
    }
    out
}

/// Appends one row, writing the header first when the file is new or empty.
pub fn append_csv(path: &Path, label: &RunLabel, s: &Summary) -> Result<(), BenchError> {
    let io = |e: std::io::Error| BenchError::Io(format!("{}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let empty = file.metadata().map_err(io)?.len() == 0;
    if !empty {
        let text = std::fs::read_to_string(path).map_err(io)?;
        let header = text.lines().next().unwrap_or_default();
        if header == CSV_HEADER_V1 {
            let mut upgraded = format!("{CSV_HEADER}\n");
            for row in text.lines().skip(1).filter(|l| !l.is_empty()) {
                upgraded.push_str(&upgrade_v1_row(row));
                upgraded.push('\n');
            }
            std::fs::write(path, upgraded).map_err(io)?;
        } else if header != CSV_HEADER {
            return Err(BenchError::Io(format!(
                "{}: its columns are not oxetcd-bench's ({CSV_HEADER}); use another file",
                path.display()
            )));
        }
    }
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut text = String::new();
    if empty {
        text.push_str(CSV_HEADER);
        text.push('\n');
    }
    text.push_str(&csv_row(now_s, label, s));
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_order_statistics() {
        let sorted: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&sorted, 0.5), 500.0);
        assert_eq!(percentile_ms(&sorted, 0.9), 900.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 990.0);
        assert_eq!(percentile_ms(&sorted, 0.999), 999.0);
        assert_eq!(percentile_ms(&sorted, 1.0), 1000.0);
        assert_eq!(percentile_ms(&[7_000_000], 0.001), 7.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn summary_counts_rate_and_errors_across_merged_recorders() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for ms in [4, 1, 3] {
            a.ok(Duration::from_millis(ms));
        }
        b.ok(Duration::from_millis(2));
        b.error("boom");
        a.merge(b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!((s.ok, s.errors), (4, 1));
        assert_eq!(s.per_second, 2.0);
        assert_eq!((s.p50_ms, s.max_ms), (2.0, 4.0));
        assert_eq!(s.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn csv_header_written_once_and_columns_line_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let label = RunLabel {
            server: "etcd, 3.5.1".into(),
            workload: "put".into(),
            round: 1,
            conns: 10,
            clients: 100,
            total: 20,
            key_size: 8,
            val_size: 256,
            server_cpu_s: Some(1.5),
            layout: "server0-gen1".into(),
        };
        let mut r = Recorder::default();
        r.ok(Duration::from_millis(1));
        let s = r.summary(Duration::from_secs(1));
        append_csv(&path, &label, &s).unwrap();
        append_csv(&path, &label, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], CSV_HEADER);
        let columns = CSV_HEADER.split(',').count();
        assert!(lines[1..].iter().all(|l| l.split(',').count() == columns));
        assert!(lines[1].contains(",etcd; 3.5.1,put,1,10,100,20,8,256,1,0,"));
        assert!(lines[1].ends_with(",1.500,1500000.0,server0-gen1"));
    }

    #[test]
    fn old_csv_files_gain_the_cpu_per_op_and_layout_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        let old_row = "1795725896,etcd,put,1,10,100,20000,8,256,20000,0,2.4436,8184.66,9.9697,20.7986,43.9980,61.3469,62.0330,1.500";
        std::fs::write(&path, format!("{CSV_HEADER_V1}\n{old_row}\n")).unwrap();
        let label = RunLabel {
            server: "oxetcd".into(),
            workload: "put".into(),
            round: 1,
            conns: 1,
            clients: 1,
            total: 1,
            key_size: 8,
            val_size: 8,
            server_cpu_s: None,
            layout: "shared".into(),
        };
        let mut r = Recorder::default();
        r.ok(Duration::from_millis(1));
        let s = r.summary(Duration::from_secs(1));
        append_csv(&path, &label, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], format!("{old_row},75.0,"));
        assert!(lines[2].ends_with(",,,shared"));
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(append_csv(&path, &label, &s).is_err());
    }
}
