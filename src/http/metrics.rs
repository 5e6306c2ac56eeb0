//! `/metrics`: the member's state in the Prometheus text format (version 0.0.4), under etcd's
//! metric names, types, help texts and labels, so dashboards and alert rules written for etcd
//! read them unchanged.
//!
//! Two sources: a [`Sample`] of the member's state taken at scrape time (leader, indexes,
//! revisions, sizes, `process_*` from `/proc/self` as Go's process collector reads it), and the
//! process-wide registry `crate::metrics`, counted where the events happen (WAL fsync, snapshot
//! write, proposals, leader changes, apply, peer traffic, gRPC calls). A family etcd has and we
//! cannot fill honestly is left out rather than reported as zero (see docs/operations.md).
//! Families are printed sorted by name, samples sorted by labels, numbers as Go prints them.
//!
//! Invariant: every family is written as `# HELP`, `# TYPE`, then its samples; names never
//! repeat; a labelled family with no samples is not written (Go's client omits it too).

use std::fmt::Write;

use crate::metrics::HistogramValues;

/// What one scrape reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub has_leader: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub member_id: u64,
    pub server_version: String,
    /// Raft log index committed / applied.
    pub committed_index: u64,
    pub applied_index: u64,
    /// The keyspace's size as `Status.dbSize` reports it (see `mvcc::Store::logical_bytes`).
    pub db_bytes: u64,
    pub current_revision: i64,
    pub compact_revision: i64,
    /// Keys that exist now (etcd's key index entries with a live generation).
    pub keys: u64,
    /// `--quota-backend-bytes` in effect; 0 when the quota is off, as etcd leaves the gauge.
    pub quota_bytes: u64,
    pub process: Option<Process>,
}

/// Go's process collector's values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// The families of one scrape, printed sorted by name (as the Prometheus client does).
#[derive(Default)]
struct Families(Vec<(String, String)>);

impl Families {
    /// A gauge or counter family; `samples` are (labels without braces, value). A family with
    /// no samples is left out, as Go's client leaves out a vector with no children.
    fn scalar(&mut self, name: &str, kind: Kind, help: &str, samples: &[(String, f64)]) {
        if samples.is_empty() {
            return;
        }
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let mut out = String::new();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let mut lines: Vec<String> = samples
            .iter()
            .map(|(labels, value)| format!("{name}{} {}", braced(labels), number(*value)))
            .collect();
        lines.sort();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        self.0.push((name.to_string(), out));
    }

    fn one(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.scalar(name, kind, help, &[(String::new(), value)]);
    }

    /// A histogram family; `series` are (labels without braces, values).
    fn histogram(&mut self, name: &str, help: &str, series: &[(String, HistogramValues)]) {
        if series.is_empty() {
            return;
        }
        let mut out = String::new();
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut sorted: Vec<&(String, HistogramValues)> = series.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, h) in sorted {
            let sep = if labels.is_empty() { "" } else { "," };
            for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{}\"}} {count}",
                    number(*bound)
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{} {}", braced(labels), number(h.sum));
            let _ = writeln!(out, "{name}_count{} {}", braced(labels), h.count);
        }
        self.0.push((name.to_string(), out));
    }

    fn text(mut self) -> String {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        debug_assert!(
            self.0.windows(2).all(|w| w[0].0 != w[1].0),
            "a family twice"
        );
        self.0.into_iter().map(|(_, text)| text).collect()
    }
}

fn braced(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which the Prometheus client prints values and
/// bucket bounds with: the shortest digits that read back as `v`, in exponent form when the
/// decimal exponent is below -4 or at least 6 (`2.147483648e+09`, `1e-05`), plain otherwise
/// (`123456`, `0.0001`).
fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "2.147483648e9".
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The exposition text of `sample` and of the process-wide registry (`crate::metrics`).
pub fn render(sample: &Sample) -> String {
    let mut f = Families::default();
    render_sample(&mut f, sample);
    render_registry(&mut f, crate::metrics::extensive());
    f.text()
}

fn render_sample(f: &mut Families, sample: &Sample) {
    use Kind::{Counter, Gauge};
    f.one(
        "etcd_debugging_mvcc_compact_revision",
        Gauge,
        "The revision of the last compaction in store.",
        sample.compact_revision as f64,
    );
    f.one(
        "etcd_debugging_mvcc_current_revision",
        Gauge,
        "The current revision of store.",
        sample.current_revision as f64,
    );
    f.one(
        "etcd_debugging_mvcc_keys_total",
        Gauge,
        "Total number of keys.",
        sample.keys as f64,
    );
    f.one(
        "etcd_mvcc_db_total_size_in_bytes",
        Gauge,
        "Total size of the underlying database physically allocated in bytes.",
        sample.db_bytes as f64,
    );
    f.one(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        Gauge,
        "Total size of the underlying database logically in use in bytes.",
        sample.db_bytes as f64,
    );
    f.one(
        "etcd_server_has_leader",
        Gauge,
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        flag(sample.has_leader),
    );
    f.scalar(
        "etcd_server_id",
        Gauge,
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &[(format!("server_id=\"{:x}\"", sample.member_id), 1.0)],
    );
    f.one(
        "etcd_server_is_leader",
        Gauge,
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        flag(sample.is_leader),
    );
    f.one(
        "etcd_server_is_learner",
        Gauge,
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        flag(sample.is_learner),
    );
    f.one(
        "etcd_server_proposals_applied_total",
        Gauge,
        "The total number of consensus proposals applied.",
        sample.applied_index as f64,
    );
    f.one(
        "etcd_server_proposals_committed_total",
        Gauge,
        "The total number of consensus proposals committed.",
        sample.committed_index as f64,
    );
    f.one(
        "etcd_server_quota_backend_bytes",
        Gauge,
        "Current backend storage quota size in bytes.",
        sample.quota_bytes as f64,
    );
    f.scalar(
        "etcd_server_version",
        Gauge,
        "Which version is running. 1 for 'server_version' label with current version.",
        &[(format!("server_version=\"{}\"", sample.server_version), 1.0)],
    );
    if let Some(p) = &sample.process {
        f.one(
            "process_cpu_seconds_total",
            Counter,
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        );
        if let Some(max) = p.max_fds {
            f.one(
                "process_max_fds",
                Gauge,
                "Maximum number of open file descriptors.",
                max as f64,
            );
            f.one(
                "os_fd_limit",
                Gauge,
                "The file descriptor limit.",
                max as f64,
            );
        }
        f.one(
            "os_fd_used",
            Gauge,
            "The number of used file descriptors.",
            p.open_fds as f64,
        );
        f.one(
            "process_open_fds",
            Gauge,
            "Number of open file descriptors.",
            p.open_fds as f64,
        );
        f.one(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        );
        f.one(
            "process_start_time_seconds",
            Gauge,
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        );
        f.one(
            "process_virtual_memory_bytes",
            Gauge,
            "Virtual memory size in bytes.",
            p.virtual_bytes as f64,
        );
    }
}

/// The families counted where their events happen (`crate::metrics`).
fn render_registry(f: &mut Families, extensive: bool) {
    use crate::metrics as m;
    use Kind::{Counter, Gauge};
    f.histogram(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &[(String::new(), m::WAL_FSYNC.values())],
    );
    f.histogram(
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
        "Bucketed histogram of db compaction pause duration.",
        &[(String::new(), m::COMPACTION_PAUSE_MS.values())],
    );
    f.histogram(
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
        "Bucketed histogram of db compaction total duration.",
        &[(String::new(), m::COMPACTION_TOTAL_MS.values())],
    );
    f.one(
        "etcd_debugging_mvcc_db_compaction_keys_total",
        Counter,
        "Total number of db keys compacted.",
        m::COMPACTION_KEYS.get() as f64,
    );
    f.histogram(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        &[(String::new(), m::BACKEND_COMMIT.values())],
    );
    f.one(
        "etcd_server_health_success",
        Counter,
        "The total number of successful health checks",
        m::HEALTH_SUCCESS.get() as f64,
    );
    f.one(
        "etcd_server_health_failures",
        Counter,
        "The total number of failed health checks",
        m::HEALTH_FAILURES.get() as f64,
    );
    // etcd labels the cluster version major.minor.
    let cluster = super::CLUSTER_VERSION
        .rsplit_once('.')
        .map_or(super::CLUSTER_VERSION, |(mm, _)| mm);
    f.scalar(
        "etcd_cluster_version",
        Gauge,
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &[(format!("cluster_version=\"{cluster}\""), 1.0)],
    );
    f.one(
        "etcd_server_leader_changes_seen_total",
        Counter,
        "The number of leader changes seen.",
        m::LEADER_CHANGES.get() as f64,
    );
    f.one(
        "etcd_server_proposals_pending",
        Gauge,
        "The current number of pending proposals to commit.",
        m::PROPOSALS_PENDING.get() as f64,
    );
    f.one(
        "etcd_server_proposals_failed_total",
        Counter,
        "The total number of failed proposals seen.",
        m::PROPOSALS_FAILED.get() as f64,
    );
    f.one(
        "etcd_server_slow_apply_total",
        Counter,
        "The total number of slow apply requests (likely overloaded from slow disk).",
        m::SLOW_APPLY_TOTAL.get() as f64,
    );
    let mvcc = [
        ("etcd_mvcc_put_total", "puts", &m::MVCC_PUT),
        ("etcd_mvcc_delete_total", "deletes", &m::MVCC_DELETE),
        ("etcd_mvcc_range_total", "ranges", &m::MVCC_RANGE),
        ("etcd_debugging_mvcc_range_total", "ranges", &m::MVCC_RANGE),
        ("etcd_mvcc_txn_total", "txns", &m::MVCC_TXN),
    ];
    for (name, what, counter) in mvcc {
        let help = format!("Total number of {what} seen by this member.");
        f.one(name, Counter, &help, counter.get() as f64);
    }
    f.one(
        "etcd_network_client_grpc_received_bytes_total",
        Counter,
        "The total number of bytes received from grpc clients.",
        m::CLIENT_GRPC_RECEIVED_BYTES.get() as f64,
    );
    f.one(
        "etcd_network_client_grpc_sent_bytes_total",
        Counter,
        "The total number of bytes sent to grpc clients.",
        m::CLIENT_GRPC_SENT_BYTES.get() as f64,
    );
    render_peers(f, &m::peers());
    render_grpc(f, extensive);
}

fn render_peers(f: &mut Families, peers: &[crate::metrics::PeerSample]) {
    let to = |id: u64| format!("To=\"{id:x}\"");
    let from = |id: u64| format!("From=\"{id:x}\"");
    let sent: Vec<(String, f64)> = peers
        .iter()
        .map(|p| (to(p.id), p.sent_bytes as f64))
        .collect();
    let received: Vec<(String, f64)> = peers
        .iter()
        .map(|p| (from(p.id), p.received_bytes as f64))
        .collect();
    let failed: Vec<(String, f64)> = peers
        .iter()
        .filter(|p| p.sent_failures > 0)
        .map(|p| (to(p.id), p.sent_failures as f64))
        .collect();
    let rtt: Vec<(String, HistogramValues)> = peers
        .iter()
        .filter(|p| p.round_trip.count > 0)
        .map(|p| (to(p.id), p.round_trip.clone()))
        .collect();
    f.scalar(
        "etcd_network_peer_sent_bytes_total",
        Kind::Counter,
        "The total number of bytes sent to peers.",
        &sent,
    );
    f.scalar(
        "etcd_network_peer_received_bytes_total",
        Kind::Counter,
        "The total number of bytes received from peers.",
        &received,
    );
    f.scalar(
        "etcd_network_peer_sent_failures_total",
        Kind::Counter,
        "The total number of send failures from peers.",
        &failed,
    );
    f.histogram(
        "etcd_network_peer_round_trip_time_seconds",
        "Round-Trip-Time histogram between peers",
        &rtt,
    );
}

fn render_grpc(f: &mut Families, extensive: bool) {
    use crate::metrics::{GRPC_CODES, GRPC_METHODS, GRPC_STATS};
    let (mut started, mut handled, mut received, mut sent, mut handling) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (method, stats) in GRPC_METHODS.iter().zip(GRPC_STATS.iter()) {
        let count = stats.started.get();
        if !method.preset && count == 0 {
            continue;
        }
        let labels = format!(
            "grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{}\"",
            method.method,
            method.service,
            method.kind.label()
        );
        started.push((labels.clone(), count as f64));
        for (code, counter) in GRPC_CODES.iter().zip(stats.handled.iter()) {
            handled.push((
                format!("grpc_code=\"{code}\",{labels}"),
                counter.get() as f64,
            ));
        }
        received.push((labels.clone(), stats.msg_received.get() as f64));
        sent.push((labels.clone(), stats.msg_sent.get() as f64));
        handling.push((labels, stats.handling.values()));
    }
    f.scalar(
        "grpc_server_started_total",
        Kind::Counter,
        "Total number of RPCs started on the server.",
        &started,
    );
    f.scalar(
        "grpc_server_handled_total",
        Kind::Counter,
        "Total number of RPCs completed on the server, regardless of success or failure.",
        &handled,
    );
    f.scalar(
        "grpc_server_msg_received_total",
        Kind::Counter,
        "Total number of RPC stream messages received on the server.",
        &received,
    );
    f.scalar(
        "grpc_server_msg_sent_total",
        Kind::Counter,
        "Total number of gRPC stream messages sent by the server.",
        &sent,
    );
    if extensive {
        f.histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            &handling,
        );
    }
}

/// This process's figures from `/proc/self`; `None` where `/proc` is not there.
pub fn process() -> Option<Process> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    parse_stat(&stat, ticks as f64, page as u64, btime, open_fds, max_fds)
}

/// `/proc/self/stat` (fields after the parenthesised command name, which may hold spaces).
fn parse_stat(
    stat: &str,
    ticks_per_second: f64,
    page_bytes: u64,
    boot_time_seconds: f64,
    open_fds: u64,
    max_fds: Option<u64>,
) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the full line, so full field n is fields[n - 3].
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let utime = field(14)?;
    let stime = field(15)?;
    let start_ticks = field(22)?;
    let vsize = field(23)?;
    let rss_pages = field(24)?;
    Some(Process {
        cpu_seconds: (utime + stime) / ticks_per_second,
        resident_bytes: (rss_pages as u64).saturating_mul(page_bytes),
        virtual_bytes: vsize as u64,
        open_fds,
        max_fds,
        start_time_seconds: boot_time_seconds + start_ticks / ticks_per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_help_type_and_etcds_labels() {
        let sample = Sample {
            has_leader: true,
            is_leader: false,
            member_id: 0x8e9e05c52164694d,
            server_version: "3.5.17".into(),
            committed_index: 12,
            applied_index: 11,
            db_bytes: 20480,
            current_revision: 7,
            ..Sample::default()
        };
        let text = render(&sample);
        assert!(text.contains("# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n"));
        assert!(text.contains("etcd_server_id{server_id=\"8e9e05c52164694d\"} 1\n"));
        assert!(text.contains("etcd_server_version{server_version=\"3.5.17\"} 1\n"));
        assert!(text.contains("etcd_server_proposals_committed_total 12\n"));
        assert!(text.contains("etcd_mvcc_db_total_size_in_bytes 20480\n"));
        assert!(!text.contains("process_"), "no process figures were given");
        let mut names = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap_or("");
            assert!(names.insert(name.to_string()), "{name} twice");
        }
    }

    /// Every family oxetcd can print: the sample's, the registry's with the handling-time
    /// histograms, and the peer families with one peer that has every kind of figure.
    fn catalogue() -> String {
        let mut f = Families::default();
        let sample = Sample {
            process: Some(Process {
                max_fds: Some(1024),
                ..Process::default()
            }),
            ..Sample::default()
        };
        render_sample(&mut f, &sample);
        render_registry(&mut f, true);
        let rtt = crate::metrics::Histogram::new(&crate::metrics::RTT_BUCKETS);
        rtt.observe(0.0003);
        let peer = crate::metrics::PeerSample {
            id: 0xabc,
            sent_bytes: 10,
            received_bytes: 20,
            sent_failures: 1,
            round_trip: rtt.values(),
        };
        let mut peers = Families::default();
        render_peers(&mut peers, &[peer]);
        f.0.retain(|(name, _)| !name.starts_with("etcd_network_peer_"));
        f.0.extend(peers.0);
        f.text()
    }

    #[test]
    fn the_metrics_of_etcds_dashboard_and_alerts_exist() {
        let text = catalogue();
        let printed: std::collections::HashSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let wanted = include_str!("testdata/etcd_dashboard_metrics.txt");
        let names: Vec<&str> = wanted
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(names.len() >= 15, "the list was read");
        for name in names {
            assert!(printed.contains(name), "{name} is not printed by oxetcd");
        }
    }

    #[test]
    fn peer_and_histogram_series_use_etcds_labels() {
        let text = catalogue();
        assert!(text.contains("etcd_network_peer_sent_bytes_total{To=\"abc\"} 10\n"));
        assert!(text.contains("etcd_network_peer_received_bytes_total{From=\"abc\"} 20\n"));
        assert!(text.contains(
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0.0002\"} 0\n\
             etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0.0004\"} 1\n"
        ));
        assert!(text.contains("etcd_network_peer_round_trip_time_seconds_count{To=\"abc\"} 1\n"));
        assert!(text.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} "));
        assert!(text.contains(
            "grpc_server_handled_total{grpc_code=\"Aborted\",grpc_method=\"Alarm\",\
             grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"unary\"} "
        ));
        assert!(text.contains(
            "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",\
             grpc_type=\"bidi_stream\"} "
        ));
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "families sorted by name, none twice");
    }

    #[test]
    fn numbers_are_printed_as_go_prints_them() {
        for (v, text) in [
            (0.0, "0"),
            (3.0, "3"),
            (1.5, "1.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (2147483648.0, "2.147483648e+09"),
            (0.001, "0.001"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (8.192, "8.192"),
            (1.8446744073709552e19, "1.8446744073709552e+19"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(number(v), text, "{v}");
        }
    }

    #[test]
    fn proc_stat_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (oxetcd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    12 0 1000 104857600 2560 18446744073709551615";
        let p = parse_stat(stat, 100.0, 4096, 1_700_000_000.0, 17, Some(1024));
        assert_eq!(
            p,
            Some(Process {
                cpu_seconds: 3.0,
                resident_bytes: 2560 * 4096,
                virtual_bytes: 104_857_600,
                open_fds: 17,
                max_fds: Some(1024),
                start_time_seconds: 1_700_000_010.0,
            })
        );
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1.5), "1.5");
    }
}
