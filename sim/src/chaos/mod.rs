//! The real-process nemesis suite: real member processes (`oxetcd`, or real etcd as the
//! calibration) on loopback, real etcd clients over real sockets, and a nemesis that injects
//! faults while the clients run; the recorded history goes through the same checkers as the
//! simulation ([`crate::linear`], [`crate::watchcheck`], [`crate::leasecheck`]). Not built under madsim.
//!
//! - [`proxy`]: a TCP proxy per member's peer port, with a state per ordered pair of members
//!   (partition, one-way blackhole, delay, segment loss).
//! - [`cluster`]: member processes, SIGKILL/restart, SIGSTOP/SIGCONT, a member's disk filled,
//!   its wall clock moved, MoveLeader, a member replaced.
//! - [`client`]: KV clients, a watcher and a lease client recording histories.
//! - [`run`] (this module): one run: start, workload + nemesis for a duration, heal, check,
//!   [`Report`].
//!
//! Invariants: at most two faults are active at a time: a step's fault and, with
//! [`RunConfig::overlap_pct`] chance, a second one on another member that was not leading when
//! it was injected, injected first and healed with it (so a membership change or a move-leader
//! runs while a member is down, paused or cut off); move-leader and member replacement run
//! with every link slowed, as part of the step's fault. Every fault is healed before the next
//! step starts and before the run is checked; each faulted member then gets a recovery probe
//! (a put through it, recorded in the history like every other write) whose latency from the
//! heal is the fault's recovery time. A run's anomalies are exactly what the checkers and the
//! liveness check at the end report.
#![cfg(not(madsim))]

pub mod client;
pub mod cluster;
pub mod proxy;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::history::{Op, Outcome, Record};
use client::{Connector, KvConfig, Recorder, Rng, WatchLog, PROBE_KEY};
use cluster::{Cluster, ClusterSpec};
use proxy::Cut;

/// The faults the nemesis injects (one per step, sometimes with a second one, see the module
/// invariants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL, then a restart on the same data dir.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Every link to and from one member closed and refused.
    Partition,
    /// Everything one member sends (or, half the time, receives) is blackholed; the other
    /// direction still works.
    OneWayCut,
    /// Latency on every link of one member (or, half the time, of the whole cluster).
    Delay,
    /// Segment loss on every link of one member (or, half the time, of the whole cluster):
    /// 5-30 % of what is sent waits for a TCP retransmission timeout (see [`proxy`]).
    Loss,
    /// The member's disk (a small tmpfs of its own) filled to the last byte, then freed; a
    /// member that stopped on the full disk (etcd and oxetcd both stop when they cannot write
    /// their WAL or a snapshot) is started again once there is room.
    DiskFull,
    /// The member's wall clock jumps ten minutes ahead or back (libfaketime; its monotonic
    /// clock is untouched), then back to true time.
    ClockJump,
    /// While every link is slowed (`RECONFIG_DELAY_MS`), the leader is asked to hand
    /// leadership to the member (MoveLeader).
    MoveLeader,
    /// While every link is slowed (`RECONFIG_DELAY_MS`), the member is removed from the
    /// cluster (MemberRemove), wiped, added back (MemberAdd) and started to join again.
    Replace,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Partition,
        Fault::OneWayCut,
        Fault::Delay,
        Fault::Loss,
        Fault::DiskFull,
        Fault::ClockJump,
        Fault::MoveLeader,
        Fault::Replace,
    ];

    /// A short name for knobs (`OXETCD_CHAOS_FAULTS`).
    pub fn key(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::OneWayCut => "one-way-cut",
            Fault::Delay => "delay",
            Fault::Loss => "loss",
            Fault::DiskFull => "disk-full",
            Fault::ClockJump => "clock-jump",
            Fault::MoveLeader => "move-leader",
            Fault::Replace => "replace",
        }
    }

    /// Whether this fault may be held on a second member while `step` is held on another:
    /// never a second link delay under a step that slows every link (it would be overwritten),
    /// and while a member is replaced or leadership moves, only faults that keep the second
    /// member from leading (so no leader is hidden for longer than a step's hold, the lease
    /// checker's slack) and, on three members, only the clock jump (a member removed from three
    /// with a second one down leaves no quorum to add it back).
    pub fn may_overlap(self, step: Fault, members: usize) -> bool {
        match step {
            Fault::MoveLeader | Fault::Replace => match self {
                Fault::ClockJump => true,
                Fault::Kill | Fault::Pause | Fault::Partition => {
                    step == Fault::MoveLeader || members >= 5
                }
                _ => false,
            },
            _ => !matches!(self, Fault::MoveLeader | Fault::Replace),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 + restart",
            Fault::Pause => "SIGSTOP/SIGCONT",
            Fault::Partition => "partition (isolate one member)",
            Fault::OneWayCut => "one-way cut (a member's outbound or inbound)",
            Fault::Delay => "link delay (a member's links or all)",
            Fault::Loss => "segment loss (a member's links or all)",
            Fault::DiskFull => "disk full (ENOSPC), then freed",
            Fault::ClockJump => "wall clock jump (+/-10 min), then back",
            Fault::MoveLeader => "move-leader to the member, links slowed",
            Fault::Replace => "member replaced (remove, wipe, add), links slow",
        }
    }
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub cluster: ClusterSpec,
    /// How long clients run under the nemesis.
    pub duration: Duration,
    pub kv_clients: u32,
    pub keys: u64,
    /// Client timeout per operation; a write that times out is unknown.
    pub op_timeout: Duration,
    /// The faults to inject, in rotation.
    pub faults: Vec<Fault>,
    /// How long a fault stays (uniform in the range).
    pub fault_ms: (u64, u64),
    /// Quiet time before the first fault, on top of `quiet_ms` (a canary that needs the
    /// followers' noted lease deadlines to have passed before leadership first moves).
    pub first_fault_after: Duration,
    /// Quiet time after each recovery.
    pub quiet_ms: (u64, u64),
    /// The chance (percent) that a fault targets the current leader.
    pub leader_target_pct: u64,
    /// The chance (percent) that a step holds a second fault, on a member other than the
    /// step's target and the leader, for the step's whole hold ([`Fault::may_overlap`]).
    pub overlap_pct: u64,
    /// The chance (percent) that a lease of the lease holder takes one of the KV clients' keys
    /// instead of one of its own ([`client::run_lease_holder`]).
    pub holder_shared_pct: u64,
    pub watch: bool,
    /// Run the lease client (one lease kept alive at a time, [`crate::leasecheck`]) and the
    /// lease holder (short leases with a key attached, left to expire:
    /// [`client::run_lease_holder`]).
    pub leases: bool,
    /// The lease checker's slack ([`LEASE_SLACK`] or [`CONFIRMED_LEASE_SLACK`]).
    pub lease_slack: Duration,
    pub seed: u64,
    /// Stop the run early once the linearizability checker, run on the history so far after
    /// each fault, reports an anomaly (the canary test's mode).
    pub stop_at_first_anomaly: bool,
}

impl RunConfig {
    /// The default mix for `spec`: every fault type (the disk-full fault only when the members
    /// have disks of their own, the clock jump only with libfaketime), 4 clients, 5 keys.
    pub fn new(cluster: ClusterSpec, duration: Duration, seed: u64) -> Self {
        let faults = Fault::ALL
            .into_iter()
            .filter(|f| *f != Fault::DiskFull || cluster.disk_mb.is_some())
            .filter(|f| *f != Fault::ClockJump || cluster.faketime.is_some())
            .collect();
        RunConfig {
            cluster,
            duration,
            kv_clients: 4,
            keys: 5,
            op_timeout: Duration::from_secs(2),
            faults,
            fault_ms: (1_500, 3_500),
            first_fault_after: Duration::ZERO,
            quiet_ms: (500, 1_500),
            leader_target_pct: 50,
            overlap_pct: 30,
            holder_shared_pct: 25,
            watch: true,
            leases: true,
            lease_slack: LEASE_SLACK,
            seed,
            stop_at_first_anomaly: false,
        }
    }
}

/// One injected fault and how long the cluster took to take a write through the faulted
/// member once it was healed (`None`: not within [`RECOVERY_DEADLINE`]).
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub fault: Fault,
    pub member: usize,
    pub was_leader: bool,
    pub held: Duration,
    pub recovery: Option<Duration>,
    /// The member's process ended during the fault and was started again at the heal (a
    /// disk-full fault: the member stopped on ENOSPC).
    pub restarted: bool,
    /// A clock jump: the offset asked for and the one the member's log showed before the
    /// heal (seconds; `None`: no answer).
    pub clock: Option<(i64, Option<i64>)>,
    /// A move-leader: whether the leader handed over.
    pub moved: Option<bool>,
    /// The other fault held at the same time, on the other member.
    pub alongside: Option<(Fault, usize)>,
}

/// The link delay (each direction, ms) while leadership moves or a member is replaced: a
/// round trip stays under the default 100 ms heartbeat interval, which bounds each of
/// oxetcd's append-entries calls (see docs/reliability.md, "Findings").
pub const RECONFIG_DELAY_MS: (u64, u64) = (10, 40);

/// How long after the hold a clock jump may still be on its way: libfaketime re-reads its
/// offset file only once the whole seconds since its last read exceed the cache duration (1 s),
/// so a member can keep its old offset for up to about two seconds, more on a loaded machine.
const CLOCK_PICKUP: Duration = Duration::from_secs(5);

/// The offset member `target` shows once it has taken `jump` (looked at every half second for
/// up to [`CLOCK_PICKUP`]); the last answer when it never shows it.
async fn observe_clock_jump(cluster: &Cluster, target: usize, jump: i64) -> Option<i64> {
    let deadline = Instant::now() + CLOCK_PICKUP;
    loop {
        let seen = cluster.observed_clock_offset(target).await;
        if seen.is_some_and(|s| (s - jump).abs() <= 5) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Lines of a member's log quoted in the report when the member exited on its own.
const EXIT_LOG_LINES: usize = 8;

/// How far a clock jump moves a member's wall clock.
pub const CLOCK_JUMP_S: i64 = 600;

/// How long a recovery probe keeps trying.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// How long the healed cluster has at the end to take a write through every member.
pub const FINAL_DEADLINE: Duration = Duration::from_secs(60);
/// How long the watcher has at the end to catch up with the last acknowledged write.
pub const WATCH_CATCH_UP: Duration = Duration::from_secs(15);
/// Distinct client error texts a report prints.
const CLIENT_ERRORS_SHOWN: usize = 8;
/// How much earlier than its TTL after the last renewal a lease may be reported gone, for a
/// server whose deposed leader renews from its own deadlines until it learns of its successor
/// or steps down (etcd 3.5.1: for up to an election timeout by CheckQuorum, longer while a
/// fault hides the new leader from it: the longest fault, 3.5 s, plus an election).
pub const LEASE_SLACK: Duration = Duration::from_secs(6);
/// The slack for oxetcd, whose leader confirms its leadership with a quorum before each
/// renewal: a renewal precedes any successor's term, and a successor restarts every deadline
/// with a full TTL, so no lease can go early; the second is for timer granularity (the expiry
/// loop looks every 500 ms) and scheduling on a loaded machine.
pub const CONFIRMED_LEASE_SLACK: Duration = Duration::from_secs(1);
/// The client id of recovery probes in the history.
pub const PROBE_CLIENT: u32 = 1_000;

/// The outcome of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub label: String,
    pub members: usize,
    pub seed: u64,
    pub elapsed: Duration,
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub faults: Vec<FaultRecord>,
    pub watch_events: usize,
    pub watch_segments: usize,
    pub leases: usize,
    pub leases_gone: usize,
    pub keep_alives: usize,
    /// Leases the lease holder took (each with a key attached), and the expiries of them
    /// that deleted the key, as the linearizability check placed them.
    pub held_leases: usize,
    pub key_expiries: usize,
    pub peer_connections: proxy::NetStats,
    /// The errors clients were given (text, count), most frequent first.
    pub client_errors: Vec<(String, usize)>,
    /// Where the whole history was written, when the run had anomalies.
    pub history_file: Option<std::path::PathBuf>,
    pub anomalies: Vec<String>,
}

impl Report {
    /// Faults injected per type.
    pub fn faults_by_type(&self) -> BTreeMap<Fault, usize> {
        let mut by = BTreeMap::new();
        for f in &self.faults {
            *by.entry(f.fault).or_insert(0) += 1;
        }
        by
    }

    /// Recovery times (ms) of one fault type, sorted; `None` for one that never recovered.
    pub fn recoveries(&self, fault: Fault) -> Vec<Option<u128>> {
        let mut v: Vec<Option<u128>> = self
            .faults
            .iter()
            .filter(|f| f.fault == fault)
            .map(|f| f.recovery.map(|d| d.as_millis()))
            .collect();
        v.sort();
        v
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos run: {} x{} members, seed {}, {:.1}s",
            self.label,
            self.members,
            self.seed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  operations: {} (ok {}, failed reads {}, unknown {})",
            self.ops, self.ok, self.failed, self.unknown
        )?;
        writeln!(
            f,
            "  watch: {} events in {} segments",
            self.watch_events, self.watch_segments
        )?;
        writeln!(
            f,
            "  leases: {} granted, {} answered keep-alives, {} reported gone; {} held with a key, {} expiries deleted it",
            self.leases, self.keep_alives, self.leases_gone, self.held_leases, self.key_expiries
        )?;
        let net = &self.peer_connections;
        writeln!(
            f,
            "  peer connections through the proxies: {} accepted, {} forwarded, {} refused by a cut, {} to a member that was down, {} from no member",
            net.accepted, net.forwarded, net.refused, net.upstream_down, net.unidentified
        )?;
        writeln!(f, "  client errors (most frequent first):")?;
        for (text, count) in self.client_errors.iter().take(CLIENT_ERRORS_SHOWN) {
            writeln!(f, "    {count:>6}  {text}")?;
        }
        writeln!(
            f,
            "  faults injected: {} ({} of them in overlapping pairs)",
            self.faults.len(),
            self.faults.iter().filter(|r| r.alongside.is_some()).count()
        )?;
        for (fault, count) in self.faults_by_type() {
            let times = self.recoveries(fault);
            let known: Vec<u128> = times.iter().flatten().copied().collect();
            let unrecovered = times.len() - known.len();
            let (min, med, max) = match (known.first(), known.last()) {
                (Some(min), Some(max)) => (*min, known[known.len() / 2], *max),
                _ => (0, 0, 0),
            };
            let restarts = self
                .faults
                .iter()
                .filter(|r| r.fault == fault && r.restarted)
                .count();
            writeln!(
                f,
                "    {:<44} {count:>3}  recovery ms min/median/max {min}/{med}/{max}{}{}",
                fault.name(),
                if unrecovered > 0 {
                    format!(", {unrecovered} not within {RECOVERY_DEADLINE:?}")
                } else {
                    String::new()
                },
                if restarts > 0 {
                    format!(", the member stopped itself {restarts} times")
                } else {
                    String::new()
                }
            )?;
            let clocks: Vec<String> = self
                .faults
                .iter()
                .filter(|r| r.fault == fault)
                .filter_map(|r| r.clock)
                .map(|(asked, seen)| match seen {
                    Some(seen) => format!("{asked:+}s seen as {seen:+}s"),
                    None => format!("{asked:+}s not seen"),
                })
                .collect();
            if !clocks.is_empty() {
                writeln!(f, "      clock offsets: {}", clocks.join(", "))?;
            }
            let moves: Vec<bool> = self
                .faults
                .iter()
                .filter(|r| r.fault == fault)
                .filter_map(|r| r.moved)
                .collect();
            if !moves.is_empty() {
                writeln!(
                    f,
                    "      leadership handed over {} of {} times",
                    moves.iter().filter(|m| **m).count(),
                    moves.len()
                )?;
            }
        }
        writeln!(f, "  anomalies: {}", self.anomalies.len())?;
        for a in &self.anomalies {
            writeln!(f, "    {a}")?;
        }
        if let Some(path) = &self.history_file {
            writeln!(f, "  history (record numbers as above): {}", path.display())?;
        }
        Ok(())
    }
}

fn connector(cluster: &Cluster, timeout: Duration) -> Connector {
    let urls: Vec<String> = (0..cluster.len()).map(|i| cluster.client_url(i)).collect();
    Arc::new(move |i: usize| {
        let url = urls[i].clone();
        Box::pin(async move {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(timeout);
            let connect = etcd_client::Client::connect([url], Some(options));
            tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .ok()?
                .ok()
        })
    })
}

/// Puts through member `member` until one is acknowledged or `deadline` has passed since
/// `since`; every attempt is recorded. Answers the time from `since` to the acknowledgement.
async fn probe_write(
    connect: &Connector,
    member: usize,
    rec: &Recorder,
    counter: &mut u64,
    since: Instant,
    deadline: Duration,
) -> Option<Duration> {
    let started = since;
    while started.elapsed() < deadline {
        // A fresh connection for every attempt, as a client library redials after a failure.
        let Some(mut client) = connect(member).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        *counter += 1;
        let op = Op::Put {
            key: PROBE_KEY.into(),
            value: format!("probe-{counter}"),
        };
        let invoke_ns = rec.now_ns();
        let outcome = client::execute(&mut client, &op, Duration::from_secs(1), rec).await;
        let complete_ns = rec.now_ns();
        let acked = matches!(outcome, Outcome::Put { .. });
        rec.record(Record {
            client: PROBE_CLIENT,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        });
        if acked {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// What injecting a fault left to report: the clock offset asked for, whether leadership
/// moved, and whether a fault healed halfway (see [`inject`]) had left its member stopped.
struct Injected {
    clock: Option<i64>,
    moved: Option<bool>,
    /// Whether that member had stopped and was started again, and when it was healed.
    healed_between: Option<(bool, Instant)>,
}

/// Injects `fault` on member `target`. A replacement heals `heal_between` (the step's second
/// fault) between its MemberRemove and its MemberAdd: both etcd and oxetcd refuse a MemberAdd
/// while a voter is unreachable (strict reconfiguration check), so the removal is what runs
/// under the second fault.
async fn inject(
    cluster: &mut Cluster,
    fault: Fault,
    target: usize,
    rng: &mut Rng,
    heal_between: Option<(Fault, usize)>,
) -> Result<Injected, String> {
    let mut injected = Injected {
        clock: None,
        moved: None,
        healed_between: None,
    };
    match fault {
        Fault::Kill => cluster.kill(target),
        Fault::Pause => cluster.pause(target, true),
        Fault::Partition => cluster.net.isolate(target, Cut::Drop),
        Fault::OneWayCut if rng.between(0, 1) == 0 => cluster.net.cut_outbound(target, Cut::Stall),
        Fault::OneWayCut => cluster.net.cut_inbound(target, Cut::Stall),
        Fault::Delay => {
            let delay = Duration::from_millis(rng.between(50, 250));
            if rng.between(0, 1) == 0 {
                cluster.net.delay_member(target, delay);
            } else {
                cluster.net.delay_all(delay);
            }
        }
        Fault::Loss => {
            let pct = rng.between(5, 30);
            if rng.between(0, 1) == 0 {
                cluster.net.lose_member(target, pct);
            } else {
                cluster.net.lose_all(pct);
            }
        }
        Fault::DiskFull => {
            cluster.fill_disk(target)?;
        }
        Fault::MoveLeader => {
            cluster.net.delay_all(Duration::from_millis(
                rng.between(RECONFIG_DELAY_MS.0, RECONFIG_DELAY_MS.1),
            ));
            injected.moved = Some(cluster.move_leader(target).await?);
        }
        Fault::Replace => {
            let delay =
                Duration::from_millis(rng.between(RECONFIG_DELAY_MS.0, RECONFIG_DELAY_MS.1));
            cluster.net.delay_all(delay);
            let started = Instant::now();
            let removal = cluster
                .remove_member(target, started, RECOVERY_DEADLINE)
                .await;
            // MemberAdd is refused until the member asked is connected to every voter; a clock
            // jump does not stand in its way and stays for the whole step.
            let heal_between = heal_between.filter(|(kind, _)| *kind != Fault::ClockJump);
            if let (Ok(_), Some((kind, member))) = (&removal, heal_between) {
                let restarted = heal(cluster, kind, member).await?;
                injected.healed_between = Some((restarted, Instant::now()));
                cluster.net.delay_all(delay);
            }
            let replaced = match removal {
                Ok(removed) => {
                    cluster
                        .add_back(target, removed, started, RECOVERY_DEADLINE)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = replaced {
                return Err(format!("{e}\n{}", cluster.log_tails()));
            }
        }
        Fault::ClockJump => {
            let jump = if rng.between(0, 1) == 0 {
                CLOCK_JUMP_S
            } else {
                -CLOCK_JUMP_S
            };
            cluster.set_clock_offset(target, &format!("{jump:+}"))?;
            injected.clock = Some(jump);
        }
    }
    Ok(injected)
}

/// Heals `fault` on member `target` (a link fault heals every link); answers whether the
/// member had stopped itself and was started again (a full disk).
async fn heal(cluster: &mut Cluster, fault: Fault, target: usize) -> Result<bool, String> {
    match fault {
        Fault::Kill => cluster.spawn(target)?,
        Fault::Pause => cluster.pause(target, false),
        Fault::Partition
        | Fault::OneWayCut
        | Fault::Delay
        | Fault::Loss
        | Fault::MoveLeader
        | Fault::Replace => cluster.net.heal(),
        Fault::DiskFull => {
            cluster.free_disk(target)?;
            if cluster.exited(target).is_some() {
                cluster.spawn(target)?;
                return Ok(true);
            }
        }
        Fault::ClockJump => cluster.set_clock_offset(target, "+0")?,
    }
    Ok(false)
}

/// Runs one nemesis run. Must be called inside a multi-threaded Tokio runtime.
pub async fn run(cfg: RunConfig) -> Result<Report, String> {
    let mut cluster = Cluster::start(cfg.cluster.clone()).await?;
    let members = cluster.len();
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let connect = connector(&cluster, cfg.op_timeout);
    let started = Instant::now();

    let mut workers = Vec::new();
    for c in 0..cfg.kv_clients {
        let kv = KvConfig {
            keys: cfg.keys,
            timeout: cfg.op_timeout,
            think_ms: (0, 10),
        };
        workers.push(tokio::spawn(client::run_kv_client(
            c,
            members,
            connect.clone(),
            kv,
            rec.clone(),
            cfg.seed,
            stop.clone(),
        )));
    }
    let lease_log = Arc::new(Mutex::new(Vec::new()));
    let leases = cfg.leases.then(|| {
        tokio::spawn(client::run_lease_client(
            members,
            connect.clone(),
            rec.clone(),
            lease_log.clone(),
            stop.clone(),
        ))
    });
    let holder_log = Arc::new(Mutex::new(Vec::new()));
    let holder = cfg.leases.then(|| {
        tokio::spawn(client::run_lease_holder(
            members,
            connect.clone(),
            cfg.keys,
            cfg.holder_shared_pct,
            rec.clone(),
            holder_log.clone(),
            cfg.seed,
            stop.clone(),
        ))
    });
    let watch_log = Arc::new(Mutex::new(WatchLog::default()));
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = cfg.watch.then(|| {
        tokio::spawn(client::run_watcher(
            members,
            connect.clone(),
            watch_log.clone(),
            watch_stop.clone(),
        ))
    });

    let mut report = Report {
        label: cfg.cluster.label.clone(),
        members,
        seed: cfg.seed,
        ..Report::default()
    };
    let mut rng = Rng::new(cfg.seed.wrapping_add(0x5EED));
    let mut probes = 0u64;
    let mut turn = 0usize;
    let mut anomaly_seen = false;
    tokio::time::sleep(cfg.first_fault_after.min(cfg.duration)).await;
    while started.elapsed() < cfg.duration && !cfg.faults.is_empty() && !anomaly_seen {
        let quiet = rng.between(cfg.quiet_ms.0, cfg.quiet_ms.1);
        tokio::time::sleep(Duration::from_millis(quiet)).await;
        let fault = cfg.faults[turn % cfg.faults.len()];
        turn += 1;
        let leader = cluster.leader().await;
        let target = match leader {
            Some(l) if rng.between(0, 99) < cfg.leader_target_pct => l,
            _ => rng.between(0, members as u64 - 1) as usize,
        };
        // Leadership is moved to another member than the leader.
        let target = if fault == Fault::MoveLeader && leader == Some(target) && members > 1 {
            (target + 1 + rng.between(0, members as u64 - 2) as usize) % members
        } else {
            target
        };
        let hold = Duration::from_millis(rng.between(cfg.fault_ms.0, cfg.fault_ms.1));
        let second = if cfg.overlap_pct > 0 && rng.between(0, 99) < cfg.overlap_pct {
            let kinds: Vec<Fault> = cfg
                .faults
                .iter()
                .copied()
                .filter(|f| f.may_overlap(fault, members))
                .collect();
            let others: Vec<usize> = (0..members)
                .filter(|m| *m != target && Some(*m) != leader)
                .collect();
            (!kinds.is_empty() && !others.is_empty()).then(|| {
                let kind = kinds[rng.between(0, kinds.len() as u64 - 1) as usize];
                let member = others[rng.between(0, others.len() as u64 - 1) as usize];
                (kind, member)
            })
        } else {
            None
        };
        let second_since = Instant::now();
        let second_injected = match second {
            Some((kind, member)) => Some(inject(&mut cluster, kind, member, &mut rng, None).await?),
            None => None,
        };
        let injected = inject(&mut cluster, fault, target, &mut rng, second).await?;
        tokio::time::sleep(hold).await;
        let clock = match injected.clock {
            Some(jump) => Some((jump, observe_clock_jump(&cluster, target, jump).await)),
            None => None,
        };
        let second_clock = match (second, second_injected.as_ref().and_then(|i| i.clock)) {
            (Some((_, member)), Some(jump)) => {
                Some((jump, observe_clock_jump(&cluster, member, jump).await))
            }
            _ => None,
        };
        let restarted = heal(&mut cluster, fault, target).await?;
        let (second_restarted, second_held) = match (second, injected.healed_between) {
            (_, Some((restarted, at))) => (restarted, at - second_since),
            (Some((kind, member)), None) => {
                let held = second_since.elapsed();
                (heal(&mut cluster, kind, member).await?, held)
            }
            (None, None) => (false, Duration::ZERO),
        };
        let healed = Instant::now();
        let recovery = probe_write(
            &connect,
            target,
            &rec,
            &mut probes,
            healed,
            RECOVERY_DEADLINE,
        )
        .await;
        report.faults.push(FaultRecord {
            fault,
            member: target,
            was_leader: leader == Some(target),
            held: hold,
            recovery,
            restarted,
            clock,
            moved: injected.moved,
            alongside: second,
        });
        if let Some((kind, member)) = second {
            let recovery = probe_write(
                &connect,
                member,
                &rec,
                &mut probes,
                healed,
                RECOVERY_DEADLINE,
            )
            .await;
            report.faults.push(FaultRecord {
                fault: kind,
                member,
                was_leader: false,
                held: second_held,
                recovery,
                restarted: second_restarted,
                clock: second_clock,
                moved: second_injected.and_then(|i| i.moved),
                alongside: Some((fault, target)),
            });
        }
        for i in 0..members {
            if let Some(status) = cluster.exited(i) {
                // Its last words go into the report, which outlives the run's directory.
                report.anomalies.push(format!(
                    "member {i} exited on its own ({status}); its log ends:\n{}",
                    cluster.log_tail(i, EXIT_LOG_LINES)
                ));
                anomaly_seen = true;
            }
        }
        if cfg.stop_at_first_anomaly && crate::linear::check(&rec.snapshot(), 1).is_err() {
            anomaly_seen = true;
        }
    }
    // Heal everything (already healed after each fault; this is the guard for early exits).
    cluster.net.heal();
    for i in 0..members {
        cluster.pause(i, false);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    if let Some(leases) = leases {
        let _ = leases.await;
    }
    if let Some(holder) = holder {
        let _ = holder.await;
    }
    // The holder's leases expire on the servers' clocks: each expiry enters the history as a
    // delete of unknown outcome, no earlier than its TTL after the last renewal.
    let held = holder_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let slack = u64::try_from(cfg.lease_slack.as_nanos()).unwrap_or(u64::MAX);
    for r in crate::leasecheck::expiry_records(&held, slack, client::HOLDER_CLIENT, rec.now_ns()) {
        rec.record(r);
    }
    // Liveness: every member takes a write once the faults are over.
    for i in 0..members {
        if probe_write(
            &connect,
            i,
            &rec,
            &mut probes,
            Instant::now(),
            FINAL_DEADLINE,
        )
        .await
        .is_none()
        {
            report.anomalies.push(format!(
                "member {i} took no write within {FINAL_DEADLINE:?} after every fault healed"
            ));
        }
    }
    if let Some(watcher) = watcher {
        let target = rec.max_acked_revision();
        let waited = Instant::now();
        while waited.elapsed() < WATCH_CATCH_UP {
            let last = watch_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_revision();
            if last >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        watch_stop.store(true, Ordering::Relaxed);
        let _ = watcher.await;
    }
    report.elapsed = started.elapsed();

    let history = rec.snapshot();
    report.ops = history.len();
    report.unknown = history
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Unknown)
        .count();
    report.failed = history
        .records
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .count();
    report.ok = report.ops - report.unknown - report.failed;
    let changes = if cfg.watch {
        let log = watch_log.lock().unwrap_or_else(|p| p.into_inner());
        crate::watchcheck::changes(&log.segments)
    } else {
        BTreeMap::new()
    };
    match crate::linear::check_with_changes(&history, 1, &changes) {
        Ok(summary) => report.key_expiries = summary.expiries_applied,
        Err(v) => report.anomalies.push(format!("linearizability: {v}")),
    }
    report.held_leases = held.len();
    if let Err(v) = crate::leasecheck::check(&held, slack) {
        report.anomalies.push(format!("lease holder: {v}"));
    }
    if cfg.leases {
        let lives = lease_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.leases = lives.len();
        report.leases_gone = lives.iter().filter(|l| l.gone_ns.is_some()).count();
        report.keep_alives = lives.iter().map(|l| l.renewed.len()).sum();
        let slack = u64::try_from(cfg.lease_slack.as_nanos()).unwrap_or(u64::MAX);
        if let Err(v) = crate::leasecheck::check(&lives, slack) {
            report.anomalies.push(format!("lease: {v}"));
        }
    }
    if cfg.watch {
        let log = watch_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.watch_segments = log.segments.len();
        report.watch_events = log
            .segments
            .iter()
            .flat_map(|s| s.responses.iter())
            .map(Vec::len)
            .sum();
        if let Err(v) = crate::watchcheck::check(&history, &log.segments) {
            report.anomalies.push(format!("watch: {v}"));
        }
    }
    report.peer_connections = cluster.net.stats();
    report.client_errors = rec.errors().into_iter().collect();
    report
        .client_errors
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if !report.anomalies.is_empty() {
        eprintln!("{}", cluster.log_tails());
        let path = std::env::temp_dir().join(format!("oxetcd-chaos-history-{}.txt", cfg.seed));
        match std::fs::write(&path, history.dump()) {
            Ok(()) => report.history_file = Some(path),
            Err(e) => eprintln!("cannot write the history to {}: {e}", path.display()),
        }
    }
    drop(cluster);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn a_second_fault_never_leaves_a_replacement_without_quorum() {
        let with = |step: Fault, members: usize| -> Vec<Fault> {
            Fault::ALL
                .into_iter()
                .filter(|f| f.may_overlap(step, members))
                .collect()
        };
        // Three members: removing one while a second is down leaves no quorum to add it back.
        assert_eq!(with(Fault::Replace, 3), vec![Fault::ClockJump]);
        assert_eq!(
            with(Fault::Replace, 5),
            vec![
                Fault::Kill,
                Fault::Pause,
                Fault::Partition,
                Fault::ClockJump
            ]
        );
        assert_eq!(
            with(Fault::MoveLeader, 3),
            vec![
                Fault::Kill,
                Fault::Pause,
                Fault::Partition,
                Fault::ClockJump
            ]
        );
        // Membership changes and move-leader are a step's own fault, never the second one.
        for step in Fault::ALL {
            for members in [3, 5] {
                let second = with(step, members);
                assert!(!second.contains(&Fault::Replace), "{step:?}");
                assert!(!second.contains(&Fault::MoveLeader), "{step:?}");
            }
        }
        assert_eq!(with(Fault::Kill, 3).len(), Fault::ALL.len() - 2);
    }
}
