//! `/metrics`: the member's state in the Prometheus text format (version 0.0.4), under etcd's
//! metric names, types, help texts and labels, so dashboards and alert rules written for etcd
//! read them unchanged.
//!
//! Only families whose value oxetcd knows exactly are written; a family etcd has and we cannot
//! fill honestly (the WAL fsync and backend commit histograms, per-RPC gRPC counters, peer
//! traffic, pending proposals, leader-change counts) is left out rather than reported as zero.
//! The rendering is a pure function of a [`Sample`], tested without a server; `process_*` is
//! read from `/proc/self` (Linux), as Go's process collector does.
//!
//! Invariant: every family is written as `# HELP`, `# TYPE`, then its samples; names never
//! repeat.

use std::fmt::Write;

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

enum Kind {
    Gauge,
    Counter,
}

fn family(out: &mut String, name: &str, kind: Kind, help: &str, samples: &[(&str, f64)]) {
    let kind = match kind {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
    };
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {}", number(*value));
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for the values we write: integers without a
/// fraction, large ones in exponent form as the Prometheus client prints them.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.fract() == 0.0 {
        format!("{v:e}").replace('e', "e+")
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

/// The exposition text of `sample`.
pub fn render(sample: &Sample) -> String {
    let mut out = String::new();
    let o = &mut out;
    family(
        o,
        "etcd_debugging_mvcc_compact_revision",
        Kind::Gauge,
        "The revision of the last compaction in store.",
        &[("", sample.compact_revision as f64)],
    );
    family(
        o,
        "etcd_debugging_mvcc_current_revision",
        Kind::Gauge,
        "The current revision of store.",
        &[("", sample.current_revision as f64)],
    );
    family(
        o,
        "etcd_mvcc_db_total_size_in_bytes",
        Kind::Gauge,
        "Total size of the underlying database physically allocated in bytes.",
        &[("", sample.db_bytes as f64)],
    );
    family(
        o,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        Kind::Gauge,
        "Total size of the underlying database logically in use in bytes.",
        &[("", sample.db_bytes as f64)],
    );
    family(
        o,
        "etcd_server_has_leader",
        Kind::Gauge,
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        &[("", flag(sample.has_leader))],
    );
    let id_label = format!("{{server_id=\"{:x}\"}}", sample.member_id);
    family(
        o,
        "etcd_server_id",
        Kind::Gauge,
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &[(&id_label, 1.0)],
    );
    family(
        o,
        "etcd_server_is_leader",
        Kind::Gauge,
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        &[("", flag(sample.is_leader))],
    );
    family(
        o,
        "etcd_server_is_learner",
        Kind::Gauge,
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        &[("", flag(sample.is_learner))],
    );
    family(
        o,
        "etcd_server_proposals_applied_total",
        Kind::Gauge,
        "The total number of consensus proposals applied.",
        &[("", sample.applied_index as f64)],
    );
    family(
        o,
        "etcd_server_proposals_committed_total",
        Kind::Gauge,
        "The total number of consensus proposals committed.",
        &[("", sample.committed_index as f64)],
    );
    let version_label = format!("{{server_version=\"{}\"}}", sample.server_version);
    family(
        o,
        "etcd_server_version",
        Kind::Gauge,
        "Which version is running. 1 for 'server_version' label with current version.",
        &[(&version_label, 1.0)],
    );
    if let Some(p) = &sample.process {
        family(
            o,
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            &[("", p.cpu_seconds)],
        );
        if let Some(max) = p.max_fds {
            family(
                o,
                "process_max_fds",
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                &[("", max as f64)],
            );
        }
        family(
            o,
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            &[("", p.open_fds as f64)],
        );
        family(
            o,
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            &[("", p.resident_bytes as f64)],
        );
        family(
            o,
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            &[("", p.start_time_seconds)],
        );
        family(
            o,
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            &[("", p.virtual_bytes as f64)],
        );
    }
    out
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
