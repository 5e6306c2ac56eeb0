//! One simulated run of a multi-member cluster: 3 or 5 production members talking over the real
//! peer transport, clients on every member, and a nemesis that draws network, process and
//! timing faults from the seed; then heal, and check everything.
//!
//! Drawn per seed: heartbeat 50/100 ms, election timeout 5x or 10x the heartbeat (the bounds
//! etcd accepts), `--snapshot-count` 50/100/1000 (small counts make the leader send snapshots
//! to members that fell behind), a base network latency of 0–(heartbeat / 2) ms.
//!
//! Nemesis, one fault at a time, one step every 0.5–3 s, each fault lasting 1–5 s (pauses:
//! 1–3 election timeouts): isolate the leader 14 %, partition off a random minority 12 %,
//! partition off a random majority side (the rest keeps the minority) 6 %, one-way clogged link
//! 8 %, crash with power loss of any member 14 %, kill 8 %, pause 10 %, latency burst (up to
//! 4 heartbeats) 8 %, compaction during traffic 10 %, nothing 10 %.
//!
//! After `run_secs` of simulated time: heal every link, restore the network config, then check
//! liveness (a put commits within [`LIVENESS_LIMIT`]), read every key linearizably, wait for
//! every member to reach the same revision and compare `Maintenance.HashKV`, and run the
//! linearizability, durability, serializable-read, watch and raft-invariant checkers. One
//! watcher (prefix `k`, `prev_kv`, from revision 1 or from "now", drawn) follows the whole run,
//! resuming on another member whenever its stream breaks or is compacted away. One lease client
//! keeps a 15 s lease alive every 5 s (`leasecheck`: never revoked more than [`LEASE_SLACK`]
//! before its TTL ran out after the last successful keep-alive). Every member's clock drifts
//! (up to [`CLOCK_DRIFT_PPM_MAX`] either way, drawn per member), which the slack allows for.
//!
//! Invariant: every random choice comes from madsim's seeded RNG (one seed replays the run).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use madsim::rand::Rng;
use oxetcd::proto::etcdserverpb::cluster_client::ClusterClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::{
    CompactionRequest, HashKvRequest, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, MoveLeaderRequest, RangeRequest, StatusRequest,
};
use tonic::transport::Endpoint;

use crate::cluster::{
    is_joiner_peer, ClusterConfig, SimCluster, StartState, Unconfirmed, PEER_PORT,
};
use crate::history::{Op, Outcome, Record, Seen};
use crate::invariants::{self, MemberHash};
use crate::scenario::{read_all, Report};
use crate::workload::{
    execute, kv_client, run_cluster_client, run_lease_client, run_lease_holder, run_watcher,
    LeaseLog, Recorder, WatchLog, WorkloadConfig, HOLDER_KEYS,
};
use crate::{durability, leasecheck, serial, watchcheck};

/// After healing, a write must commit within this much simulated time.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(20);
/// After healing, members must reach the same revision within this much simulated time.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
const START_WAIT: Duration = Duration::from_secs(20);
/// The TTL of the lease client's leases (kept alive every third of it).
pub const LEASE_TTL_S: i64 = 15;
/// The TTL of the lease holder's leases ([`run_lease_holder`]): short, so that most of them
/// expire, key attached, while the nemesis holds a fault.
pub const HOLDER_TTL_S: i64 = 4;
/// How much earlier than its TTL after the last renewal the lease holder's key may go. A
/// keep-alive is answered only after the leader confirmed its leadership with a quorum, and a
/// new leader gives every lease its whole TTL again, so no deposed leader renews: what is left
/// is clock drift, 4 s × 10 % / 1.1 = 0.37 s, rounded up to a second.
pub const HOLDER_LEASE_SLACK: Duration = Duration::from_secs(1);
/// The lease holder's client number in the history (the KV clients count from 0).
pub const HOLDER_CLIENT: u32 = 100;
/// How long a deposed leader may keep renewing leases in its own memory: the longest network
/// fault (5 s) plus an election (at most 1 s).
pub const LEASE_SLACK: Duration = Duration::from_secs(6);
/// The same under the deeper nemesis, where a second fault may start while the first still
/// holds (up to half its 5 s later) and last 5 s more: 7.5 s of cuts plus an election.
pub const DEEP_LEASE_SLACK: Duration = Duration::from_secs(9);
/// Each member's clock runs up to this much (ppm) faster or slower than simulated time, drawn
/// per member and seed: raft's timers and the lease deadlines count on it.
pub const CLOCK_DRIFT_PPM_MAX: i64 = 100_000;
/// What a leader whose clock runs [`CLOCK_DRIFT_PPM_MAX`] fast takes off a lease's TTL in real
/// time: TTL * drift / (1 + drift), rounded up to whole seconds (15 s at 10%: 1.36 s).
pub const DRIFT_LEASE_SLACK: Duration = Duration::from_secs(
    (LEASE_TTL_S as u64 * CLOCK_DRIFT_PPM_MAX as u64)
        .div_ceil(1_000_000 + CLOCK_DRIFT_PPM_MAX as u64),
);

/// Knobs of a multi-member run.
#[derive(Clone, Debug)]
pub struct MultiConfig {
    pub members: usize,
    pub workload: WorkloadConfig,
    /// Simulated seconds of faults and traffic before healing.
    pub run_secs: u64,
    pub faults: bool,
    /// The deeper nemesis: packet loss, duplicated raft messages and slow fsyncs join the fault
    /// mix, and half the steps inject a second fault that overlaps the first.
    pub deep: bool,
}

impl MultiConfig {
    pub fn new(members: usize) -> Self {
        MultiConfig {
            members,
            workload: WorkloadConfig {
                clients: 4,
                ops_per_client: 100_000,
                keys: 4,
                timeout_ms: (300, 3000),
                think_ms: (100, 400),
            },
            run_secs: 60,
            faults: true,
            deep: false,
        }
    }

    /// A run under the deeper nemesis (see [`MultiConfig::deep`]).
    pub fn deep(members: usize) -> Self {
        MultiConfig {
            deep: true,
            ..MultiConfig::new(members)
        }
    }

    /// How long a deposed leader may keep renewing leases in its own memory in this run.
    pub fn lease_slack(&self) -> Duration {
        let faults = if self.deep {
            DEEP_LEASE_SLACK
        } else {
            LEASE_SLACK
        };
        faults + DRIFT_LEASE_SLACK
    }
}

/// Draws the timers and snapshot count of this seed.
pub(crate) fn draw_cluster(members: usize) -> ClusterConfig {
    let mut rng = madsim::rand::thread_rng();
    let heartbeat_ms = [50, 100][rng.gen_range(0..2)];
    let election_timeout_ms = heartbeat_ms * [5, 10][rng.gen_range(0..2)];
    let snapshot_count = [50, 100, 1000][rng.gen_range(0..3)];
    // Joiners (member indexes past the founders) drift too.
    let clock_rate_ppm = (0..members + 2)
        .map(|_| rng.gen_range(-CLOCK_DRIFT_PPM_MAX..=CLOCK_DRIFT_PPM_MAX))
        .collect();
    ClusterConfig {
        members,
        heartbeat_ms,
        election_timeout_ms,
        snapshot_count,
        extra_flags: Vec::new(),
        clock_rate_ppm,
        v2_clients: false,
    }
}

pub fn node_at(name: &str, ip: [u8; 4]) -> madsim::runtime::NodeHandle {
    madsim::runtime::Handle::current()
        .create_node()
        .name(name)
        .ip(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
}

/// Runs one multi-member scenario on the current madsim runtime.
pub async fn run(cfg: MultiConfig) -> Report {
    let started = madsim::time::Instant::now();
    let mut report = Report {
        seed: madsim::runtime::Handle::current().seed(),
        ..Report::default()
    };
    let cluster = SimCluster::start(ClusterConfig {
        // The deeper nemesis runs v2 clients beside the members too.
        v2_clients: cfg.deep,
        ..draw_cluster(cfg.members)
    });
    report.setup = format!("{:?}", cluster.config);
    let base_latency_ms = madsim::rand::thread_rng().gen_range(0..=cluster.config.heartbeat_ms / 2);
    set_latency(base_latency_ms);
    for i in 0..cfg.members {
        if let StartState::Failed(e) = cluster.wait_started(i, START_WAIT).await {
            report
                .violations
                .push(format!("m{} failed to start: {e}", i + 1));
            return report;
        }
    }
    let endpoints: Vec<String> = (0..cfg.members).map(|i| cluster.endpoint(i)).collect();
    let rec = Recorder::new();
    let stop_at = started + Duration::from_secs(cfg.run_secs);
    let mut clients = Vec::new();
    for c in 0..cfg.workload.clients {
        let node = node_at(&format!("client{c}"), [10, 0, 1, 1 + c as u8]);
        clients.push(node.spawn(run_cluster_client(
            c as u32,
            endpoints.clone(),
            cfg.workload.clone(),
            rec.clone(),
            stop_at,
        )));
    }
    let watch_log = WatchLog::default();
    let first_start = [0, 1][madsim::rand::thread_rng().gen_range(0..2)];
    let watcher = node_at("watcher", [10, 0, 2, 3]).spawn(run_watcher(
        endpoints.clone(),
        first_start,
        watch_log.clone(),
        stop_at,
    ));
    let lease_log = LeaseLog::default();
    let leases = node_at("leases", [10, 0, 2, 4]).spawn(run_lease_client(
        endpoints.clone(),
        LEASE_TTL_S,
        rec.clone(),
        lease_log.clone(),
        stop_at,
    ));
    let holder_log = LeaseLog::default();
    let holder = node_at("holder", [10, 0, 2, 5]).spawn(run_lease_holder(
        HOLDER_CLIENT,
        endpoints.clone(),
        cfg.workload.keys,
        HOLDER_TTL_S,
        rec.clone(),
        holder_log.clone(),
        stop_at,
    ));
    let ops_node = node_at("nemesis", [10, 0, 2, 2]);
    while madsim::time::Instant::now() < stop_at {
        if cfg.faults {
            nemesis_step(&cluster, &ops_node, &mut report, base_latency_ms, cfg.deep).await;
        } else {
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        if !report.violations.is_empty() {
            break;
        }
    }
    for c in clients {
        let _ = c.await;
    }
    if let Some(v2) = &cluster.v2 {
        v2.stop();
        check_v2(&v2.history(), &mut report);
    }
    let _ = watcher.await;
    let _ = leases.await;
    let _ = holder.await;
    // The holder's leases expire on the servers' clocks: each expiry enters the history as a
    // delete of unknown outcome, no earlier than its TTL after the last renewal.
    let held = holder_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let holder_slack = HOLDER_LEASE_SLACK.as_nanos() as u64;
    for r in leasecheck::expiry_records(&held, holder_slack, HOLDER_CLIENT, rec.now_ns()) {
        rec.record(r);
    }
    cluster.heal();
    set_latency(base_latency_ms);
    set_packet_loss(0.0);
    oxetcd::raft::sim_faults::set_duplicate_pct(0);
    for m in &cluster.members {
        m.disk.set_sync_latency(Duration::ZERO);
    }
    let checker = node_at("checker", [10, 0, 2, 1]);
    let healed = madsim::time::Instant::now();
    let live = checker
        .spawn(liveness_put(endpoints.clone(), rec.clone()))
        .await
        .ok()
        .flatten();
    match live {
        Some(d) => report.liveness_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        None => report.violations.push(format!(
            "liveness: no write committed within {LIVENESS_LIMIT:?} after healing"
        )),
    }
    let last = checker
        .spawn(read_all(
            endpoints[0].clone(),
            rec.clone(),
            cfg.workload.keys + HOLDER_KEYS,
        ))
        .await
        .ok()
        .flatten();
    if last.is_none() {
        report
            .violations
            .push("final reads: could not read every key after healing".into());
    }
    // A joiner still in the cluster must converge too (a learner included), and every member
    // must report the same membership.
    // A learner refuses HashKV and MemberList (etcd's learner rules): it must instead reach
    // the converged revision, by its Status.
    let mut converging = endpoints.clone();
    let mut learner_ep = None;
    // A membership change whose answer was lost may have committed after the nemesis gave up
    // on it; the liveness write above committed after it, so the member list is final now.
    if cfg.deep {
        reconcile_unconfirmed(&cluster, &checker, &endpoints).await;
    }
    // A joiner added by the last steps may still be discovering its peers or catching up.
    cluster.wait_joiner_started(START_WAIT).await;
    if let Some((id, learner, ep, state)) = cluster.joiner_info() {
        if state == StartState::Serving {
            if learner {
                learner_ep = Some(ep);
            } else {
                converging.push(ep);
            }
        } else {
            report.violations.push(format!(
                "membership: joiner {id:x} (learner {learner}) is not serving: {state:?}"
            ));
        }
    }
    if cfg.deep {
        let agreed = checker
            .spawn(membership_agrees(converging.clone()))
            .await
            .ok()
            .flatten();
        match (agreed, cluster.joiner_info()) {
            (None, _) => report.violations.push(format!(
                "membership: members did not agree on one member list within {CONVERGE_LIMIT:?}"
            )),
            (Some(list), joiner) => {
                let founders = list
                    .iter()
                    .filter(|m| !m.2.iter().any(|u| is_joiner_peer(u)))
                    .count();
                let expect_joiner = joiner.map(|(id, learner, _, _)| (id, learner));
                let joined: Vec<(u64, bool)> = list
                    .iter()
                    .filter(|m| m.2.iter().any(|u| is_joiner_peer(u)))
                    .map(|m| (m.0, m.1))
                    .collect();
                let stray = joined.iter().filter(|j| Some(**j) != expect_joiner).count();
                if founders != cfg.members
                    || expect_joiner.is_some_and(|j| !joined.contains(&j))
                    || stray > 0
                {
                    report.violations.push(format!(
                        "membership: the agreed list {list:?} is not the {} founders plus the joiner {expect_joiner:?}",
                        cfg.members
                    ));
                }
            }
        }
    }
    let hashes = checker.spawn(converge(converging)).await.ok().flatten();
    match hashes {
        Some(h) => {
            if let Err(v) = invariants::check_converged(&h) {
                report.violations.push(format!("convergence: {v}"));
            }
            let revision = h.iter().map(|m| m.revision).max().unwrap_or(0);
            if let Some(ep) = learner_ep {
                let reached = checker
                    .spawn(learner_catches_up(ep.clone(), revision))
                    .await
                    .unwrap_or(false);
                if !reached {
                    report.violations.push(format!(
                        "convergence: the learner at {ep} did not reach revision {revision} within {CONVERGE_LIMIT:?}"
                    ));
                }
            }
        }
        None => report.violations.push(format!(
            "convergence: members did not reach one revision within {CONVERGE_LIMIT:?} of healing"
        )),
    }
    tracing::info!(after = ?healed.elapsed(), "post-heal checks done");
    let segments = watch_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.watch_events = segments.iter().map(|s| s.responses.len()).sum();
    report.watch_segments = segments.len();
    if let Err(v) = watchcheck::check(&rec.snapshot(), &segments) {
        report.violations.push(format!("watch: {v}"));
    }
    let lives = lease_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.leases = lives.len();
    report.leases_expired = lives.iter().filter(|l| l.gone_ns.is_some()).count();
    if let Err(v) = leasecheck::check(&lives, cfg.lease_slack().as_nanos() as u64) {
        report.violations.push(format!("lease: {v}"));
    }
    report.held_leases = held.len();
    if let Err(v) = leasecheck::check(&held, holder_slack) {
        report.violations.push(format!("lease holder: {v}"));
    }
    let changes = watchcheck::changes(&segments);
    finish(&cluster, &rec, last, started, &changes, &mut report);
    report
}

fn report_ms(cluster: &SimCluster) -> u64 {
    u64::try_from(cluster.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn set_packet_loss(rate: f64) {
    madsim::net::NetSim::current().update_config(|c| c.packet_loss_rate = rate);
}

/// Checks the v2 clients' history (v2 store indexes in place of revisions, from an empty
/// store at index 0) and counts it into the report.
fn check_v2(history: &crate::history::History, report: &mut Report) {
    report.v2_ops = history.len();
    report.v2_unknown = history
        .records
        .iter()
        .filter(|r| r.outcome == crate::history::Outcome::Unknown)
        .count();
    match crate::linear::check(history, 0) {
        Ok(summary) => report.v2_search_steps = summary.search_steps,
        Err(v) => {
            report.violations.push(format!("v2 linearizability: {v}"));
            report
                .fault_log
                .push(format!("v2 history:\n{}", history.dump()));
        }
    }
}

pub(crate) fn set_latency(ms: u64) {
    madsim::net::NetSim::current().update_config(|c| {
        c.send_latency = Duration::from_millis(1)..Duration::from_millis(2 + ms);
    });
}

fn finish(
    cluster: &SimCluster,
    rec: &Recorder,
    last: Option<(BTreeMap<String, Seen>, i64)>,
    started: madsim::time::Instant,
    changes: &BTreeMap<i64, crate::linear::Change>,
    report: &mut Report,
) {
    let history = report.record_history(rec, started, changes);
    let committed_max = history
        .records
        .iter()
        .filter_map(|r| r.effect().map(|(rev, _)| rev))
        .max()
        .unwrap_or(1);
    if let Some((kvs, revision)) = &last {
        if let Err(v) = durability::check(&history, kvs, *revision) {
            report.violations.push(format!("durability: {v}"));
        }
    }
    let reads = rec.serial_reads();
    report.serial_reads = reads.len();
    if let Err(v) = serial::check(&history, &reads, committed_max) {
        report.violations.push(format!("serializable reads: {v}"));
    }
    let samples = cluster
        .samples
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Err(v) = invariants::check_raft(&samples) {
        report.violations.push(format!("raft: {v}"));
    }
    if !report.ok() {
        report.history_dump = history.dump();
        report.fault_log.push(format!(
            "raft timeline:\n{}",
            invariants::timeline(&samples)
        ));
    }
}

/// Which fault the nemesis injects this step.
#[derive(Clone, Copy, Debug)]
enum Fault {
    IsolateLeader,
    Minority,
    Majority,
    OneWay,
    Crash,
    Kill,
    Pause,
    Latency,
    Compact,
    MoveLeader,
    /// Deep nemesis only: a share of packets lost (TCP retransmits after a backoff; new
    /// connections are refused).
    PacketLoss,
    /// Deep nemesis only: a share of raft requests sent twice, the copy late.
    Duplicate,
    /// Deep nemesis only: one member's fsyncs take 20–500 ms longer.
    SlowDisk,
    /// Deep nemesis only: the next membership change of the cycle add learner -> promote ->
    /// remove, while other faults run.
    Membership,
    Nothing,
}

/// Draws a fault of the deeper nemesis: the base mix scaled to 62 %, packet loss 12 %,
/// duplicated raft messages 8 %, slow disk 8 %, a membership change 10 %.
fn draw_deep_fault(rng: &mut impl Rng) -> Fault {
    match rng.gen_range(0..100u32) {
        0..=61 => draw_fault(rng),
        62..=73 => Fault::PacketLoss,
        74..=81 => Fault::Duplicate,
        82..=89 => Fault::SlowDisk,
        _ => Fault::Membership,
    }
}

/// One fault with everything drawn for it.
#[derive(Clone, Debug)]
struct Plan {
    fault: Fault,
    /// How long after the step starts the fault is injected (the second fault of a step
    /// starts while the first still holds).
    delay_ms: u64,
    hold_ms: u64,
    pause_ms: u64,
    victim: usize,
    other: usize,
    minority: Vec<usize>,
    down_ms: u64,
    /// Packet loss rate, duplicated share (percent) or fsync latency (ms), by fault.
    amount: u64,
    /// A crash, kill or pause hits the member leading when it starts (not `victim`).
    at_leader: bool,
}

/// What injecting one fault did.
#[derive(Default)]
struct Tally {
    partitions: u32,
    crashes: u32,
    kills: u32,
    pauses: u32,
    compactions: u32,
    moves_asked: u32,
    moves_done: u32,
    lossy: u32,
    slow_disks: u32,
    member_changes: u32,
    violations: Vec<String>,
}

impl Tally {
    fn add_to(self, report: &mut Report) {
        report.partitions += self.partitions;
        report.crashes += self.crashes;
        report.kills += self.kills;
        report.pauses += self.pauses;
        report.compactions += self.compactions;
        report.moves_asked += self.moves_asked;
        report.moves_done += self.moves_done;
        report.lossy += self.lossy;
        report.slow_disks += self.slow_disks;
        report.member_changes += self.member_changes;
        report.violations.extend(self.violations);
    }
}

fn draw_fault(rng: &mut impl Rng) -> Fault {
    match rng.gen_range(0..100u32) {
        0..=13 => Fault::IsolateLeader,
        14..=25 => Fault::Minority,
        26..=31 => Fault::Majority,
        32..=39 => Fault::OneWay,
        40..=53 => Fault::Crash,
        54..=61 => Fault::Kill,
        62..=71 => Fault::Pause,
        72..=79 => Fault::Latency,
        80..=89 => Fault::Compact,
        90..=96 => Fault::MoveLeader,
        _ => Fault::Nothing,
    }
}

/// `k` distinct members drawn from `n`.
fn draw_members(rng: &mut impl Rng, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = rng.gen_range(i..n);
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

fn draw_plan(rng: &mut impl Rng, n: usize, election_ms: u64, deep: bool) -> Plan {
    let victim = rng.gen_range(0..n);
    let other = (victim + rng.gen_range(1..n)) % n;
    let minority_len = rng.gen_range(1..=(n - 1) / 2);
    let fault = if deep {
        draw_deep_fault(rng)
    } else {
        draw_fault(rng)
    };
    let amount = match fault {
        Fault::PacketLoss => rng.gen_range(5..=30),
        Fault::Duplicate => rng.gen_range(10..=50),
        Fault::SlowDisk => rng.gen_range(20..=500),
        _ => 0,
    };
    Plan {
        fault,
        delay_ms: 0,
        hold_ms: rng.gen_range(1000..5000u64),
        pause_ms: rng.gen_range(election_ms..=3 * election_ms),
        victim,
        other,
        minority: draw_members(rng, n, minority_len),
        down_ms: rng.gen_range(0..3000u64),
        amount,
        at_leader: false,
    }
}

pub(crate) async fn nemesis_step(
    cluster: &SimCluster,
    ops_node: &madsim::runtime::NodeHandle,
    report: &mut Report,
    base_latency_ms: u64,
    deep: bool,
) {
    let n = cluster.members.len();
    let election_ms = cluster.config.election_timeout_ms;
    let (wait_ms, first, second) = {
        let mut rng = madsim::rand::thread_rng();
        let wait_ms = rng.gen_range(500..3000u64);
        let first = draw_plan(&mut rng, n, election_ms, deep);
        // Half the deep steps overlap a second fault, on another victim, starting while the
        // first still holds.
        let second = if deep && rng.gen_bool(0.5) {
            let mut p = draw_plan(&mut rng, n, election_ms, deep);
            let process = |f: Fault| matches!(f, Fault::Crash | Fault::Kill | Fault::Pause);
            if !process(first.fault) && process(p.fault) {
                // e.g. a slow disk or lossy network, and then the leader killed.
                p.at_leader = rng.gen_bool(0.5);
            }
            if process(first.fault) && process(p.fault) && p.victim == first.victim {
                p.victim = (p.victim + rng.gen_range(1..n)) % n;
                if p.other == p.victim {
                    p.other = (p.victim + 1) % n;
                }
            }
            p.delay_ms = rng.gen_range(0..=first.hold_ms / 2);
            if matches!(
                (first.fault, p.fault),
                (Fault::Membership, Fault::Membership)
            ) {
                p.fault = Fault::Nothing;
            }
            Some(p)
        } else {
            None
        };
        (wait_ms, first, second)
    };
    madsim::time::sleep(Duration::from_millis(wait_ms)).await;
    let at_ms = report_ms(cluster);
    let leader = cluster.leader().map(|l| l + 1);
    for p in std::iter::once(&first).chain(second.as_ref()) {
        tracing::info!(fault = ?p.fault, victim = p.victim, "nemesis");
        report.fault_log.push(format!(
            "{} ms: {:?} victim m{}{} other m{} minority {:?} hold {} ms pause {} ms down {} ms amount {} leader {leader:?}",
            at_ms + p.delay_ms,
            p.fault,
            p.victim + 1,
            if p.at_leader { " (or the leader)" } else { "" },
            p.other + 1,
            p.minority,
            p.hold_ms,
            p.pause_ms,
            p.down_ms,
            p.amount,
        ));
    }
    match second {
        None => inject(cluster, ops_node, first, base_latency_ms)
            .await
            .add_to(report),
        Some(second) => {
            report.overlaps += 1;
            let (a, b) = tokio::join!(
                inject(cluster, ops_node, first, base_latency_ms),
                inject(cluster, ops_node, second, base_latency_ms)
            );
            a.add_to(report);
            b.add_to(report);
        }
    }
}

/// Injects one fault, holds it, and lifts it.
async fn inject(
    cluster: &SimCluster,
    ops_node: &madsim::runtime::NodeHandle,
    plan: Plan,
    base_latency_ms: u64,
) -> Tally {
    let mut t = Tally::default();
    if plan.delay_ms > 0 {
        madsim::time::sleep(Duration::from_millis(plan.delay_ms)).await;
    }
    let n = cluster.members.len();
    let Plan {
        fault,
        hold_ms,
        pause_ms,
        victim,
        other,
        minority,
        down_ms,
        amount,
        at_leader,
        ..
    } = plan;
    let victim = if at_leader {
        cluster.leader().unwrap_or(victim)
    } else {
        victim
    };
    let hold = Duration::from_millis(hold_ms);
    match fault {
        Fault::IsolateLeader => {
            let leader = cluster.leader().unwrap_or(victim);
            cluster.partition(&[leader]);
            t.partitions += 1;
            madsim::time::sleep(hold).await;
            cluster.heal();
        }
        Fault::Minority | Fault::Majority => {
            // Both sides of a split are cut alike; "majority" draws which side the leader is
            // likelier to be on by cutting the minority's complement.
            let side: Vec<usize> = match fault {
                Fault::Majority => (0..n).filter(|m| !minority.contains(m)).collect(),
                _ => minority,
            };
            cluster.partition(&side);
            t.partitions += 1;
            madsim::time::sleep(hold).await;
            cluster.heal();
        }
        Fault::OneWay => {
            cluster.clog_one_way(victim, other);
            t.partitions += 1;
            madsim::time::sleep(hold).await;
            cluster.heal();
        }
        Fault::Crash | Fault::Kill => {
            if matches!(fault, Fault::Crash) {
                cluster.crash(victim);
                t.crashes += 1;
            } else {
                cluster.kill(victim);
                t.kills += 1;
            }
            madsim::time::sleep(Duration::from_millis(down_ms)).await;
            cluster.restart(victim);
            match cluster.wait_started(victim, START_WAIT).await {
                StartState::Serving => {}
                other => t.violations.push(format!(
                    "m{} did not come back after {fault:?}: {other:?}",
                    victim + 1
                )),
            }
        }
        Fault::Pause => {
            cluster.pause(victim);
            t.pauses += 1;
            madsim::time::sleep(Duration::from_millis(pause_ms)).await;
            cluster.resume(victim);
        }
        Fault::Latency => {
            set_latency(cluster.config.heartbeat_ms * 4);
            madsim::time::sleep(hold).await;
            set_latency(base_latency_ms);
        }
        Fault::Compact => {
            let endpoint = cluster.endpoint(victim);
            let done = ops_node.spawn(compact_behind(endpoint)).await;
            if matches!(done, Ok(true)) {
                t.compactions += 1;
            }
        }
        Fault::MoveLeader => {
            // Asked of the member believed to lead (it may not: then etcd's "not leader").
            let from = cluster.leader().unwrap_or(victim);
            let to = if other == from { (from + 1) % n } else { other };
            let (leader_ep, target_ep) = (cluster.endpoint(from), cluster.endpoint(to));
            t.moves_asked += 1;
            let done = ops_node.spawn(move_leader(leader_ep, target_ep)).await;
            if matches!(done, Ok(true)) {
                t.moves_done += 1;
            }
        }
        Fault::PacketLoss => {
            set_packet_loss(amount as f64 / 100.0);
            t.lossy += 1;
            madsim::time::sleep(hold).await;
            set_packet_loss(0.0);
        }
        Fault::Duplicate => {
            oxetcd::raft::sim_faults::set_duplicate_pct(u32::try_from(amount).unwrap_or(100));
            t.lossy += 1;
            madsim::time::sleep(hold).await;
            oxetcd::raft::sim_faults::set_duplicate_pct(0);
        }
        Fault::SlowDisk => {
            let disk = &cluster.members[victim].disk;
            disk.set_sync_latency(Duration::from_millis(amount));
            t.slow_disks += 1;
            madsim::time::sleep(hold).await;
            disk.set_sync_latency(Duration::ZERO);
        }
        Fault::Membership => {
            let via = cluster.endpoint(victim);
            match cluster.joiner_info() {
                None => {
                    let peer = format!("http://{}:{}", cluster.next_joiner_ip(), PEER_PORT);
                    let id = ops_node
                        .spawn(add_learner(via.clone(), peer.clone()))
                        .await
                        .ok()
                        .flatten();
                    if let Some(id) = id {
                        cluster.start_joiner(id, true);
                        t.member_changes += 1;
                    } else {
                        cluster.add_unconfirmed(peer);
                    }
                }
                Some((id, true, _, _)) => {
                    if matches!(ops_node.spawn(promote(via, id)).await, Ok(true)) {
                        cluster.joiner_promoted();
                        t.member_changes += 1;
                    } else {
                        cluster.joiner_unconfirmed(Unconfirmed::Promote);
                    }
                }
                Some((id, false, _, _)) => {
                    if matches!(ops_node.spawn(remove(via, id)).await, Ok(true)) {
                        cluster.drop_joiner();
                        t.member_changes += 1;
                    } else {
                        cluster.joiner_unconfirmed(Unconfirmed::Remove);
                    }
                }
            }
        }
        Fault::Nothing => {}
    }
    t
}

fn cluster_client(endpoint: &str) -> Option<ClusterClient<tonic::transport::Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect_lazy();
    Some(ClusterClient::new(channel))
}

/// The member list as `endpoint` answers it (linearizable), within 2 s.
pub async fn member_list(endpoint: &str) -> Option<Vec<(u64, bool, Vec<String>)>> {
    let mut c = cluster_client(endpoint)?;
    let call = c.member_list(MemberListRequest { linearizable: true });
    let resp = madsim::time::timeout(Duration::from_secs(2), call)
        .await
        .ok()?
        .ok()?
        .into_inner();
    let mut members: Vec<(u64, bool, Vec<String>)> = resp
        .members
        .into_iter()
        .map(|m| (m.id, m.is_learner, m.peer_ur_ls))
        .collect();
    members.sort();
    Some(members)
}

/// Adds a learner at `peer`; its member ID (from the answer, or, when the answer was lost,
/// from the member list: the add may have happened), or `None` when it is not a member.
pub async fn add_learner(endpoint: String, peer: String) -> Option<u64> {
    let mut c = cluster_client(&endpoint)?;
    let call = c.member_add(MemberAddRequest {
        peer_ur_ls: vec![peer.clone()],
        is_learner: true,
    });
    if let Ok(Ok(resp)) = madsim::time::timeout(Duration::from_secs(5), call).await {
        if let Some(m) = resp.into_inner().member {
            return Some(m.id);
        }
    }
    for _ in 0..5 {
        if let Some(list) = member_list(&endpoint).await {
            return list.into_iter().find(|m| m.2.contains(&peer)).map(|m| m.0);
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Whether member `id` is a voter now (the promote answered OK, or the list says so).
async fn promote(endpoint: String, id: u64) -> bool {
    let Some(mut c) = cluster_client(&endpoint) else {
        return false;
    };
    let call = c.member_promote(MemberPromoteRequest { id });
    if let Ok(Ok(_)) = madsim::time::timeout(Duration::from_secs(5), call).await {
        return true;
    }
    member_list(&endpoint)
        .await
        .is_some_and(|l| l.iter().any(|m| m.0 == id && !m.1))
}

/// Whether member `id` is gone now (the remove answered OK, or the list no longer has it).
pub async fn remove(endpoint: String, id: u64) -> bool {
    let Some(mut c) = cluster_client(&endpoint) else {
        return false;
    };
    let call = c.member_remove(MemberRemoveRequest { id });
    if let Ok(Ok(_)) = madsim::time::timeout(Duration::from_secs(5), call).await {
        return true;
    }
    member_list(&endpoint)
        .await
        .is_some_and(|l| l.iter().all(|m| m.0 != id))
}

/// Brings the nemesis's record of the joiner in line with the founders' agreed member list
/// where a change's outcome was unknown: a promote that did commit, a remove that did, or a
/// `MemberAdd` that did (its learner is started now, as the nemesis would have). Outcomes the
/// nemesis knows are left alone, so a list that contradicts them still fails the membership
/// check that follows. Bug guarded against: a promote answered with a timeout and committed
/// later was reported as a membership violation.
async fn reconcile_unconfirmed(
    cluster: &SimCluster,
    checker: &madsim::runtime::NodeHandle,
    founders: &[String],
) {
    let Some(list) = checker
        .spawn(membership_agrees(founders.to_vec()))
        .await
        .ok()
        .flatten()
    else {
        // The membership check reports a list the founders do not agree on.
        return;
    };
    let joined: Vec<&(u64, bool, Vec<String>)> = list
        .iter()
        .filter(|m| m.2.iter().any(|u| is_joiner_peer(u)))
        .collect();
    match cluster.joiner_info() {
        Some((id, _, _, _)) => {
            let entry = joined.iter().find(|m| m.0 == id);
            match (cluster.joiner_unconfirmed_change(), entry) {
                (Some(Unconfirmed::Promote), Some(m)) if !m.1 => cluster.joiner_promoted(),
                (Some(Unconfirmed::Remove), None) => cluster.drop_joiner(),
                _ => {}
            }
        }
        None => {
            let peer = cluster
                .unconfirmed_add
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(peer) = peer {
                if let Some(m) = joined.iter().find(|m| m.2.contains(&peer)) {
                    cluster.start_joiner(m.0, m.1);
                }
            }
        }
    }
}

/// Polls a learner's `Maintenance.Status` until its revision reaches `revision`.
async fn learner_catches_up(endpoint: String, revision: i64) -> bool {
    let start = madsim::time::Instant::now();
    while start.elapsed() < CONVERGE_LIMIT {
        if let Ok(ep) = Endpoint::from_shared(endpoint.clone()) {
            let mut m = MaintenanceClient::new(ep.connect_lazy());
            let call = m.status(StatusRequest {});
            if let Ok(Ok(resp)) = madsim::time::timeout(Duration::from_secs(1), call).await {
                let got = resp.into_inner().header.map_or(0, |h| h.revision);
                if got >= revision {
                    return true;
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Polls every endpoint's member list until all answer the same one; `None` after
/// [`CONVERGE_LIMIT`].
async fn membership_agrees(endpoints: Vec<String>) -> Option<Vec<(u64, bool, Vec<String>)>> {
    let start = madsim::time::Instant::now();
    while start.elapsed() < CONVERGE_LIMIT {
        let mut lists = Vec::new();
        for ep in &endpoints {
            if let Some(l) = member_list(ep).await {
                lists.push(l);
            }
        }
        if lists.len() == endpoints.len() && lists.windows(2).all(|w| w[0] == w[1]) {
            return lists.pop();
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Asks the member at `leader` to hand leadership to the member at `target` (its ID read from
/// its own Status); `true` when MoveLeader answered OK.
async fn move_leader(leader: String, target: String) -> bool {
    let Some(target_id) = member_id(&target).await else {
        return false;
    };
    let Ok(endpoint) = Endpoint::from_shared(leader) else {
        return false;
    };
    let mut m = MaintenanceClient::new(endpoint.connect_lazy());
    let call = m.move_leader(MoveLeaderRequest { target_id });
    matches!(
        madsim::time::timeout(Duration::from_secs(10), call).await,
        Ok(Ok(_))
    )
}

async fn member_id(endpoint: &str) -> Option<u64> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect_lazy();
    let mut m = MaintenanceClient::new(channel);
    let call = m.status(StatusRequest {});
    let resp = madsim::time::timeout(Duration::from_secs(1), call)
        .await
        .ok()?
        .ok()?
        .into_inner();
    resp.header.map(|h| h.member_id)
}

/// Compacts at a revision a few writes behind the current one (what a client sees).
async fn compact_behind(endpoint: String) -> bool {
    let mut kv = kv_client(&endpoint);
    let call = kv.range(RangeRequest {
        key: b"k0".to_vec(),
        serializable: true,
        ..Default::default()
    });
    let Ok(Ok(resp)) = madsim::time::timeout(Duration::from_secs(1), call).await else {
        return false;
    };
    let revision = resp.into_inner().header.map_or(0, |h| h.revision) - 5;
    if revision < 2 {
        return false;
    }
    let call = kv.compact(CompactionRequest {
        revision,
        physical: false,
    });
    matches!(
        madsim::time::timeout(Duration::from_secs(2), call).await,
        Ok(Ok(_))
    )
}

/// Puts a fresh key through each member in turn until one commits; returns how long it took.
async fn liveness_put(endpoints: Vec<String>, rec: Recorder) -> Option<Duration> {
    let start = madsim::time::Instant::now();
    let mut n = 0usize;
    while start.elapsed() < LIVENESS_LIMIT {
        let mut kv = kv_client(&endpoints[n % endpoints.len()]);
        let op = Op::Put {
            key: "k0".into(),
            value: format!("val-live-{n}"),
        };
        let invoke_ns = rec.now_ns();
        let outcome = execute(&mut kv, &op, Duration::from_secs(2)).await;
        let acked = matches!(outcome, Outcome::Put { .. });
        rec.record(Record {
            client: u32::MAX - 1,
            op,
            invoke_ns,
            complete_ns: rec.now_ns(),
            outcome,
        });
        if acked {
            return Some(start.elapsed());
        }
        n += 1;
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Polls `Maintenance.HashKV` on every member until all report one revision.
async fn converge(endpoints: Vec<String>) -> Option<Vec<MemberHash>> {
    let start = madsim::time::Instant::now();
    while start.elapsed() < CONVERGE_LIMIT {
        let mut hashes = Vec::new();
        for (member, ep) in endpoints.iter().enumerate() {
            if let Some(h) = hash_kv(member, ep).await {
                hashes.push(h);
            }
        }
        if hashes.len() == endpoints.len() && invariants::caught_up(&hashes) {
            return Some(hashes);
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn hash_kv(member: usize, endpoint: &str) -> Option<MemberHash> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .connect_lazy();
    let mut m = MaintenanceClient::new(channel);
    let call = m.hash_kv(HashKvRequest { revision: 0 });
    let resp = madsim::time::timeout(Duration::from_secs(1), call)
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(MemberHash {
        member,
        revision: resp.header.map_or(0, |h| h.revision),
        compact_revision: resp.compact_revision,
        hash: resp.hash,
    })
}
