//! The real-process nemesis suite: three real `oxetcd` members (five with
//! `OXETCD_CHAOS_MEMBERS=5`) behind test-owned peer proxies, real etcd clients recording a
//! history while the nemesis kills and restarts, pauses, partitions, one-way-cuts and delays
//! members; the history goes through the simulation's linearizability, watch and lease checkers.
//! The same run against real etcd 3.5.1 is the calibration: it must pass there too.
//!
//! Knobs: `OXETCD_CHAOS_SECS` (run length of the oxetcd run; etcd runs two thirds as long),
//! `OXETCD_CHAOS_MEMBERS`, `OXETCD_CHAOS_SEED`, `OXETCD_CHAOS_REPORT` (a file each run's report
//! is appended to), `OXETCD_CHAOS_FAULTS` (a comma-separated subset of the fault plan, by the
//! names of [`Fault::key`], to replay one kind of fault), `OXETCD_CHAOS_LEADER_PCT` (the chance
//! that a fault targets the leader, 50 by default), `OXETCD_CHAOS_OVERLAP_PCT` (the chance that
//! a step holds a second fault on another member, 30 by default), `OXETCD_CHAOS_LOGS` (a directory the
//! members' whole logs are copied to). In `--features canary` builds only the canary tests are compiled: they plant
//! `follower-read-without-read-index`, `drop-watch-event` or `lease-expiry-from-follower-clock`
//! in every member and require the linearizability, watch or lease checker to catch it.
//!
//! Invariant: the runs of this file never overlap (one lock), so recovery times are not
//! inflated by a second cluster on the same cores; every process a run starts is killed when
//! the run ends (`sim::chaos::cluster::Cluster`'s `Drop`).
#![cfg(not(madsim))]

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sim::chaos::cluster::ClusterSpec;
use sim::chaos::{run, Fault, Report, RunConfig};

/// Default length of the oxetcd run.
#[cfg(not(feature = "canary"))]
const DEFAULT_SECS: u64 = 90;

static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    match raw.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={raw:?} is not a number"),
    }
}

fn seed() -> u64 {
    env_u64("OXETCD_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

/// The fault plan narrowed to `OXETCD_CHAOS_FAULTS` and aimed by `OXETCD_CHAOS_LEADER_PCT`, when
/// set.
#[cfg(not(feature = "canary"))]
fn narrowed(mut cfg: RunConfig) -> RunConfig {
    if let Some(pct) = env_u64("OXETCD_CHAOS_LEADER_PCT") {
        cfg.leader_target_pct = pct.min(100);
    }
    if let Some(pct) = env_u64("OXETCD_CHAOS_OVERLAP_PCT") {
        cfg.overlap_pct = pct.min(100);
    }
    let Ok(raw) = std::env::var("OXETCD_CHAOS_FAULTS") else {
        return cfg;
    };
    let wanted: Vec<Fault> = raw
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            Fault::ALL
                .into_iter()
                .find(|f| f.key() == k)
                .unwrap_or_else(|| panic!("OXETCD_CHAOS_FAULTS: unknown fault {k:?}"))
        })
        .collect();
    cfg.faults.retain(|f| wanted.contains(f));
    assert!(
        !cfg.faults.is_empty(),
        "OXETCD_CHAOS_FAULTS={raw:?} leaves no fault this cluster can take"
    );
    cfg
}

fn execute(cfg: RunConfig) -> Report {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let report = runtime
        .block_on(run(cfg))
        .unwrap_or_else(|e| panic!("the chaos run could not start: {e}"));
    println!("{report}");
    if let Ok(path) = std::env::var("OXETCD_CHAOS_REPORT") {
        use std::io::Write;
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        writeln!(file, "{report}").unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
    report
}

fn spec(label: &str, binary: PathBuf, env: Vec<(String, String)>) -> ClusterSpec {
    ClusterSpec {
        label: label.into(),
        binary,
        members: env_u64("OXETCD_CHAOS_MEMBERS").unwrap_or(3) as usize,
        env,
        args: Vec::new(),
        disk_mb: None,
        faketime: None,
    }
}

/// Size of each member's tmpfs disk: room for two 64 MiB WAL segments (etcd preallocates the
/// next one), the database and snapshots.
#[cfg(not(feature = "canary"))]
const DISK_MB: u64 = 200;

/// libfaketime for the clock-jump fault, when Debian's package is installed. Only oxetcd's
/// members get it: Go programs (etcd) read the clock without libc, so it cannot move theirs.
#[cfg(not(feature = "canary"))]
fn faketime_for(binary_is_oxetcd: bool) -> Option<PathBuf> {
    let library = PathBuf::from(sim::chaos::cluster::FAKETIME_LIBRARY);
    if !binary_is_oxetcd {
        return None;
    }
    if library.exists() {
        Some(library)
    } else {
        eprintln!(
            "the clock-jump fault is left out: {} is missing (Debian's libfaketime)",
            library.display()
        );
        None
    }
}

/// The full nemesis's cluster: `spec` with disks of their own (the disk-full fault), the
/// clock-jump library for oxetcd, and frequent snapshots. The canary runs keep the plain
/// `spec`: their planted bugs show on members that replay the log from its start, which
/// frequent snapshots would prevent.
#[cfg(not(feature = "canary"))]
fn nemesis_spec(label: &str, binary: PathBuf) -> ClusterSpec {
    let disk_mb = match sim::chaos::cluster::small_disks_available() {
        Ok(()) => Some(DISK_MB),
        Err(e) => {
            eprintln!(
                "the disk-full fault is left out (the members cannot have disks of their own): {e}"
            );
            None
        }
    };
    ClusterSpec {
        faketime: faketime_for(label.starts_with("oxetcd")),
        disk_mb,
        // Snapshots every 200 entries: a full disk is met when one is written, not only at a
        // WAL segment's end (64 MiB, more than a run writes).
        args: vec!["--snapshot-count=200".into()],
        ..spec(label, binary, Vec::new())
    }
}

/// Every fault type of the run's plan was injected and the run saw traffic and no anomaly.
#[cfg(not(feature = "canary"))]
fn assert_clean(report: &Report, plan: &[Fault]) {
    assert!(
        report.anomalies.is_empty(),
        "{} reported anomalies:\n{report}",
        report.label
    );
    for fault in plan.iter().copied() {
        assert!(
            report.faults_by_type().contains_key(&fault),
            "{}: no {} was injected:\n{report}",
            report.label,
            fault.name()
        );
    }
    assert!(
        report.ok > report.faults.len(),
        "{}: too few successful operations:\n{report}",
        report.label
    );
    assert!(
        report.watch_events > 0,
        "the watcher saw nothing:\n{report}"
    );
    // A clock jump must have happened: the member's HTTP `Date` showed the offset asked for.
    for record in &report.faults {
        if let Some((asked, seen)) = record.clock {
            assert!(
                seen.is_some_and(|s| (s - asked).abs() <= 5),
                "{}: a clock jump of {asked:+}s on member {} was not seen ({seen:?}):\n{report}",
                report.label,
                record.member
            );
        }
    }
}

#[cfg(not(feature = "canary"))]
#[test]
fn oxetcd_members_under_the_nemesis_stay_linearizable() {
    let secs = env_u64("OXETCD_CHAOS_SECS").unwrap_or(DEFAULT_SECS);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"));
    let mut cfg = narrowed(RunConfig::new(
        nemesis_spec("oxetcd", binary),
        Duration::from_secs(secs),
        seed(),
    ));
    // oxetcd's leader confirms its leadership before renewing: no deposed-leader window.
    cfg.lease_slack = sim::chaos::CONFIRMED_LEASE_SLACK;
    let plan = cfg.faults.clone();
    assert_clean(&execute(cfg), &plan);
}

#[cfg(not(feature = "canary"))]
#[test]
fn etcd_3_5_under_the_same_nemesis_stays_linearizable() {
    let Some(tools) = common::require_etcd_tools("etcd_3_5_under_the_same_nemesis") else {
        return;
    };
    // Two thirds of the oxetcd run: long enough for every fault type of the rotation.
    let secs = env_u64("OXETCD_CHAOS_SECS").unwrap_or(DEFAULT_SECS) * 2 / 3;
    let cfg = narrowed(RunConfig::new(
        nemesis_spec("etcd 3.5.1", tools.etcd35.clone()),
        Duration::from_secs(secs.max(30)),
        seed(),
    ));
    let plan = cfg.faults.clone();
    assert_clean(&execute(cfg), &plan);
}

/// The suite can fail: with followers answering linearizable reads from their own state, an
/// isolated or lagging follower serves stale values and the checker says so.
#[cfg(feature = "canary")]
#[test]
fn planted_follower_reads_are_caught_by_the_checker() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"));
    let env = vec![(
        oxetcd::canary::PROCESS_ENV.to_string(),
        oxetcd::canary::Canary::FollowerReadWithoutReadIndex
            .name()
            .to_string(),
    )];
    let mut cfg = RunConfig::new(
        spec(
            "oxetcd (canary follower-read-without-read-index)",
            binary,
            env,
        ),
        Duration::from_secs(env_u64("OXETCD_CHAOS_SECS").unwrap_or(60)),
        seed(),
    );
    cfg.faults = vec![Fault::Partition, Fault::OneWayCut];
    cfg.leader_target_pct = 0;
    // A canary measures its checker: one fault at a time, as its catch rate was measured.
    cfg.overlap_pct = 0;
    cfg.stop_at_first_anomaly = true;
    let report = execute(cfg);
    assert!(
        report
            .anomalies
            .iter()
            .any(|a| a.starts_with("linearizability")),
        "the planted stale follower reads went unnoticed:\n{report}"
    );
}

/// The watch checker is live too: with every 7th revision's events withheld from live
/// watchers, the watcher's log has gaps the checker reports.
#[cfg(feature = "canary")]
#[test]
fn planted_dropped_watch_events_are_caught_by_the_checker() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"));
    let env = vec![(
        oxetcd::canary::PROCESS_ENV.to_string(),
        oxetcd::canary::Canary::DropWatchEvent.name().to_string(),
    )];
    let mut cfg = RunConfig::new(
        spec("oxetcd (canary drop-watch-event)", binary, env),
        Duration::from_secs(env_u64("OXETCD_CHAOS_SECS").unwrap_or(15)),
        seed(),
    );
    cfg.faults = vec![Fault::Delay];
    cfg.overlap_pct = 0;
    let report = execute(cfg);
    assert!(
        report.anomalies.iter().any(|a| a.starts_with("watch")),
        "the planted watch gaps went unnoticed:\n{report}"
    );
}

/// The lease checker is live too: a new leader that expires leases by the deadlines it noted
/// as a follower (grant time + TTL) revokes leases the client kept alive.
#[cfg(feature = "canary")]
#[test]
fn planted_lease_expiry_from_follower_clock_is_caught_by_the_checker() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"));
    let env = vec![(
        oxetcd::canary::PROCESS_ENV.to_string(),
        oxetcd::canary::Canary::LeaseExpiryFromFollowerClock
            .name()
            .to_string(),
    )];
    // The bug shows when a member that noted the lease's deadline as a follower (grant time +
    // TTL), and was not restarted since, takes office after that deadline. With kills and
    // partitions from the start, leadership and restarts moved so often that three runs in a
    // row missed it in a CI check; so the nemesis now waits until the followers' noted
    // deadlines have passed and then only partitions the leader: the first election promotes
    // a member that has never led, whose noted deadline is already behind it. Up to RUNS runs
    // still hunt, for a run whose leadership moved on its own during the quiet start.
    const RUNS: u64 = 3;
    let first = seed();
    let mut missed = Vec::new();
    for run in 0..RUNS {
        let mut cfg = RunConfig::new(
            spec(
                "oxetcd (canary lease-expiry-from-follower-clock)",
                binary.clone(),
                env.clone(),
            ),
            Duration::from_secs(env_u64("OXETCD_CHAOS_SECS").unwrap_or(45)),
            first.wrapping_add(run),
        );
        cfg.faults = vec![Fault::Partition];
        cfg.leader_target_pct = 100;
        cfg.overlap_pct = 0;
        // The TTL, plus room for a grant that came a few seconds into the run.
        cfg.first_fault_after = Duration::from_secs(sim::chaos::client::LEASE_TTL_S as u64 + 8);
        let report = execute(cfg);
        if report.anomalies.iter().any(|a| a.starts_with("lease")) {
            println!("caught in run {} of {RUNS}:\n{report}", run + 1);
            return;
        }
        missed.push(report.to_string());
    }
    panic!(
        "the planted early lease expiry went unnoticed in {RUNS} runs:\n{}",
        missed.join("\n")
    );
}

/// Keys attached to leases are checked too: when a plain put leaves its key attached to the
/// lease the key had, that lease's expiry deletes a value the KV clients wrote, at a revision
/// no write of the history explains. Only the lease holder's puts on the KV clients' keys meet
/// the bug, so here every lease takes one of them; up to RUNS runs hunt, for runs whose leases
/// all lost their key before they expired.
#[cfg(feature = "canary")]
#[test]
fn planted_plain_put_keeping_lease_is_caught_by_the_checker() {
    const RUNS: u64 = 3;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"));
    let env = vec![(
        oxetcd::canary::PROCESS_ENV.to_string(),
        oxetcd::canary::Canary::PlainPutKeepsLease
            .name()
            .to_string(),
    )];
    let first = seed();
    let mut missed = Vec::new();
    for run in 0..RUNS {
        let mut cfg = RunConfig::new(
            spec(
                "oxetcd (canary plain-put-keeps-lease)",
                binary.clone(),
                env.clone(),
            ),
            Duration::from_secs(env_u64("OXETCD_CHAOS_SECS").unwrap_or(30)),
            first.wrapping_add(run),
        );
        // Followers killed and restarted: the leader stays, so leases run out on time (every
        // new leader restarts them all; under link delays no lease expired in three runs).
        cfg.faults = vec![Fault::Kill];
        cfg.leader_target_pct = 0;
        cfg.overlap_pct = 0;
        cfg.holder_shared_pct = 100;
        cfg.lease_slack = sim::chaos::CONFIRMED_LEASE_SLACK;
        let report = execute(cfg);
        if report
            .anomalies
            .iter()
            .any(|a| a.starts_with("linearizability"))
        {
            println!("caught in run {} of {RUNS}:\n{report}", run + 1);
            return;
        }
        missed.push(report.to_string());
    }
    panic!(
        "the planted lease that keeps its detached keys went unnoticed in {RUNS} runs:\n{}",
        missed.join("\n")
    );
}
