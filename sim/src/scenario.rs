//! One simulated run: start a cluster, run the client workload while a nemesis injects faults
//! drawn from the seed, optionally rot a WAL record, read the final state and run every checker.
//!
//! Faults per step of the nemesis (one step every 0.2–1.5 s of simulated time):
//! crash + restart with power loss 35 %, kill + restart (page cache survives) 20 %, the next
//! fsync fails with EIO then (0.1–1 s later) power loss + restart 10 %, pause 0.1–1 s 15 %,
//! nothing 20 %. Client deadlines are drawn per call (see `workload`).
//! Media rot (one bit of a stored value flipped in the newest WAL segment, then a restart) runs
//! at the end of a run with probability `rot_chance_pct`: the member must refuse to start, and if
//! it starts anyway its answers go through the checkers.
//!
//! Invariant: a run fails only on a checker violation, a member that refuses to start after a
//! fault it must survive, or a final state that cannot be read.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use madsim::rand::Rng;

use crate::cluster::{ClusterConfig, SimCluster, StartState};
use crate::history::{History, Op, Outcome, Record, Seen};
use crate::workload::{execute, kv_client, run_client, Recorder, WorkloadConfig};
use crate::{durability, linear};

/// Knobs of a run.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    pub cluster: ClusterConfig,
    pub workload: WorkloadConfig,
    /// Probability (percent) of the end-of-run media rot fault.
    pub rot_chance_pct: u32,
    /// Whether the nemesis runs at all.
    pub faults: bool,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            cluster: ClusterConfig::default(),
            workload: WorkloadConfig::default(),
            rot_chance_pct: 20,
            faults: true,
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ops: usize,
    pub unknown_ops: usize,
    pub crashes: u32,
    pub kills: u32,
    pub pauses: u32,
    pub sync_errors: u32,
    /// The end-of-run rot fault ran and the member refused to start, as it must.
    pub rot_detected: bool,
    pub simulated_ms: u64,
    /// Multi-member runs: drawn cluster knobs, network faults, compactions, serializable
    /// reads checked, and how long the first write after healing took.
    pub setup: String,
    pub partitions: u32,
    pub compactions: u32,
    /// Leadership transfers asked for / completed (MoveLeader answered OK).
    pub moves_asked: u32,
    pub moves_done: u32,
    /// Deep nemesis: packet-loss and raft-duplication windows, slow-disk windows, and steps
    /// that overlapped two faults.
    pub lossy: u32,
    pub slow_disks: u32,
    pub overlaps: u32,
    /// Membership changes that took effect (learner added, promoted, removed).
    pub member_changes: u32,
    pub serial_reads: usize,
    pub liveness_ms: u64,
    pub watch_events: usize,
    pub watch_segments: usize,
    pub leases: usize,
    pub leases_expired: usize,
    /// Leases the lease holder took (each with a key attached), and the expiries of them
    /// that deleted the key, as the linearizability check placed them.
    pub held_leases: usize,
    pub key_expiries: usize,
    /// Calls of the v2 clients beside the members (deeper nemesis), and how many of them got
    /// no answer.
    pub v2_ops: usize,
    pub v2_unknown: usize,
    pub v2_search_steps: u64,
    /// Steps the linearizability search took (its budget is `linear::SEARCH_STEPS_MAX`).
    pub search_steps: u64,
    /// Auth suite: changes made by the administrator, permission verdicts checked.
    pub auth_changes: usize,
    pub auth_verdicts: usize,
    /// What the nemesis did and when (printed on failure).
    pub fault_log: Vec<String>,
    pub violations: Vec<String>,
    pub history_dump: String,
}

impl Report {
    /// Takes the recorded history, counts it into the report and checks it for
    /// linearizability, with what a watcher saw change (`changes`, may be empty); returns it
    /// for the run's further checks.
    pub fn record_history(
        &mut self,
        rec: &Recorder,
        started: madsim::time::Instant,
        changes: &BTreeMap<i64, linear::Change>,
    ) -> History {
        let history = rec.snapshot();
        self.ops = history.len();
        self.unknown_ops = history
            .records
            .iter()
            .filter(|r| r.outcome == Outcome::Unknown)
            .count();
        self.simulated_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match linear::check_with_changes(&history, 1, changes) {
            Ok(summary) => {
                self.key_expiries = summary.expiries_applied;
                self.search_steps = summary.search_steps;
            }
            Err(v) => self.violations.push(format!("linearizability: {v}")),
        }
        history
    }

    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Panics with the seed and the replay command when the run failed.
    pub fn assert_ok(&self, test_file: &str, test_name: &str) {
        if self.ok() {
            return;
        }
        let canary = if cfg!(feature = "canary") {
            " --features canary"
        } else {
            ""
        };
        panic!(
            "simulation failed at seed {seed} ({setup}):\n  {v}\nfaults:\n  {faults}\nhistory ({ops} ops):\n{dump}\nreplay with:\n  \
             MADSIM_TEST_SEED={seed} MADSIM_TEST_NUM=1 cargo sim{canary} --test {test_file} -- {test_name} --exact\n",
            seed = self.seed,
            setup = self.setup,
            faults = self.fault_log.join("\n  "),
            v = self.violations.join("\n  "),
            ops = self.ops,
            dump = self.history_dump,
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} ops {} unknown {} serial {} watch events {} in {} segments leases {} expired {} held {} key expiries {} search steps {} v2 ops {} (unknown {}, search steps {}) auth changes {} verdicts {} crashes {} kills {} pauses {} partitions {} compactions {} moves {}/{} lossy {} slow_disks {} overlaps {} member_changes {} sync_errors {} rot_detected {} liveness {} ms simulated {} ms violations {}",
            self.seed,
            self.ops,
            self.unknown_ops,
            self.serial_reads,
            self.watch_events,
            self.watch_segments,
            self.leases,
            self.leases_expired,
            self.held_leases,
            self.key_expiries,
            self.search_steps,
            self.v2_ops,
            self.v2_unknown,
            self.v2_search_steps,
            self.auth_changes,
            self.auth_verdicts,
            self.crashes,
            self.kills,
            self.pauses,
            self.partitions,
            self.compactions,
            self.moves_done,
            self.moves_asked,
            self.lossy,
            self.slow_disks,
            self.overlaps,
            self.member_changes,
            self.sync_errors,
            self.rot_detected,
            self.liveness_ms,
            self.simulated_ms,
            self.violations.len()
        )
    }
}

const START_WAIT: Duration = Duration::from_secs(10);

/// Runs one scenario on the current madsim runtime.
pub async fn run(cfg: ScenarioConfig) -> Report {
    let started = madsim::time::Instant::now();
    let mut report = Report {
        seed: madsim::runtime::Handle::current().seed(),
        ..Report::default()
    };
    let cluster = SimCluster::start(cfg.cluster.clone());
    if let StartState::Failed(e) = cluster.wait_started(0, START_WAIT).await {
        report
            .violations
            .push(format!("fresh member failed to start: {e}"));
        return report;
    }
    let rec = Recorder::new();
    let mut clients = Vec::new();
    for c in 0..cfg.workload.clients {
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, 1 + c as u8));
        let node = madsim::runtime::Handle::current()
            .create_node()
            .name(format!("client{c}"))
            .ip(ip)
            .build();
        clients.push(node.spawn(run_client(
            c as u32,
            cluster.endpoint(0),
            cfg.workload.clone(),
            rec.clone(),
        )));
    }
    let mut clients_done = false;
    while !clients_done {
        if cfg.faults {
            nemesis_step(&cluster, &mut report).await;
        } else {
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        clients_done = clients.iter().all(|c| c.is_finished());
        if !report.violations.is_empty() {
            break;
        }
    }
    for c in clients {
        c.abort();
    }
    let rot = madsim::rand::thread_rng().gen_range(0..100) < cfg.rot_chance_pct;
    if report.violations.is_empty() && rot && rot_and_restart(&cluster, &mut report).await {
        finish(&mut report, &rec, None, started);
        return report;
    }
    let last = if report.violations.is_empty() {
        final_reads(&cluster, &rec, cfg.workload.keys).await
    } else {
        None
    };
    if report.violations.is_empty() && last.is_none() {
        report
            .violations
            .push("could not read the final state".into());
    }
    finish(&mut report, &rec, last, started);
    report
}

/// Runs the checkers on the recorded history (and the final state when there is one).
fn finish(
    report: &mut Report,
    rec: &Recorder,
    last: Option<(BTreeMap<String, Seen>, i64)>,
    started: madsim::time::Instant,
) {
    let history = report.record_history(rec, started, &BTreeMap::new());
    if let Some((kvs, revision)) = last {
        if let Err(v) = durability::check(&history, &kvs, revision) {
            report.violations.push(format!("durability: {v}"));
        }
    }
    if !report.ok() {
        report.history_dump = history.dump();
    }
}

async fn nemesis_step(cluster: &SimCluster, report: &mut Report) {
    let (wait_ms, pick, pause_ms) = {
        let mut rng = madsim::rand::thread_rng();
        (
            rng.gen_range(200..1500u64),
            rng.gen_range(0..100u32),
            rng.gen_range(100..1000u64),
        )
    };
    madsim::time::sleep(Duration::from_millis(wait_ms)).await;
    match pick {
        0..=34 => {
            let crash = cluster.crash(0);
            tracing::info!(?crash, "crash with power loss");
            report.crashes += 1;
            restart_checked(cluster, report, "power loss").await;
        }
        35..=54 => {
            cluster.kill(0);
            report.kills += 1;
            restart_checked(cluster, report, "kill").await;
        }
        55..=64 => {
            // fsync EIO: the member must fail-stop (never ack what it could not sync); a
            // supervisor then restarts it after a power loss.
            cluster.members[0].disk.fail_next_syncs(1);
            report.sync_errors += 1;
            madsim::time::sleep(Duration::from_millis(pause_ms)).await;
            cluster.crash(0);
            // The fault was transient: the restarted member gets a healthy disk.
            cluster.members[0].disk.fail_next_syncs(0);
            restart_checked(cluster, report, "fsync EIO and power loss").await;
        }
        65..=79 => {
            cluster.pause(0);
            report.pauses += 1;
            madsim::time::sleep(Duration::from_millis(pause_ms)).await;
            cluster.resume(0);
        }
        _ => {}
    }
}

async fn restart_checked(cluster: &SimCluster, report: &mut Report, after: &str) {
    cluster.restart(0);
    match cluster.wait_started(0, START_WAIT).await {
        StartState::Serving => {}
        StartState::Failed(e) => report
            .violations
            .push(format!("member refused to start after {after}: {e}")),
        StartState::Starting => report.violations.push(format!(
            "member still starting {START_WAIT:?} after {after}"
        )),
        StartState::Removed => report.violations.push(format!(
            "member says it was removed from its cluster after {after}"
        )),
    }
}

/// Power-fails the member, flips a bit in the newest stored value, restarts. Returns true when
/// the member refused to start (the run is over: the data is declared damaged).
async fn rot_and_restart(cluster: &SimCluster, report: &mut Report) -> bool {
    cluster.crash(0);
    let rotted = cluster.rot_wal(0, b"val-", 4, 0);
    tracing::info!(?rotted, "media rot");
    cluster.restart(0);
    match cluster.wait_started(0, START_WAIT).await {
        StartState::Failed(e) if rotted.is_some() => {
            report.rot_detected = true;
            tracing::info!(error = %e, "member refused a rotten WAL, as it must");
            true
        }
        StartState::Failed(e) => {
            report
                .violations
                .push(format!("member refused to start after power loss: {e}"));
            true
        }
        _ => false,
    }
}

/// Reads every key with retries from a checker node; records the reads; returns the final
/// state and revision.
async fn final_reads(
    cluster: &SimCluster,
    rec: &Recorder,
    keys: usize,
) -> Option<(BTreeMap<String, Seen>, i64)> {
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 1));
    let node = madsim::runtime::Handle::current()
        .create_node()
        .name("checker")
        .ip(ip)
        .build();
    node.spawn(read_all(cluster.endpoint(0), rec.clone(), keys))
        .await
        .ok()
        .flatten()
}

/// Reads every workload key with linearizable gets (recorded in the history, retried up to 50
/// times) and returns the values seen and the highest header revision.
pub(crate) async fn read_all(
    endpoint: String,
    rec: Recorder,
    keys: usize,
) -> Option<(BTreeMap<String, Seen>, i64)> {
    let mut kv = kv_client(&endpoint);
    let mut kvs = BTreeMap::new();
    let mut revision = 0;
    for k in 0..keys {
        let op = Op::Get {
            key: format!("k{k}"),
        };
        let mut answer = None;
        for _ in 0..50 {
            let invoke_ns = rec.now_ns();
            let outcome = execute(&mut kv, &op, Duration::from_secs(2)).await;
            if let Outcome::Got {
                revision: r,
                kv: seen,
            } = &outcome
            {
                answer = Some((*r, seen.clone()));
                rec.record(Record {
                    client: u32::MAX,
                    op: op.clone(),
                    invoke_ns,
                    complete_ns: rec.now_ns(),
                    outcome,
                });
                break;
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
        let (r, seen) = answer?;
        revision = revision.max(r);
        if let Some(s) = seen {
            kvs.insert(op.key().to_string(), s);
        }
    }
    Some((kvs, revision))
}
