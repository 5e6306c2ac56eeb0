//! A simulated cluster of production members (`RaftNode` + the tonic client server), each in
//! its own madsim node with its own [`SimDisk`], plus the faults the suites inject.
//!
//! A member's disk lives outside its madsim node, so it survives kills: `kill` stops every task
//! of the member (the process dies; un-synced writes stay in the page cache), `crash` also
//! power-fails the disk (un-synced writes dropped or torn, see `oxetcd::io::sim`), `restart`
//! re-runs the member's start-up from its data dir. With more than one member, each member also
//! serves the real peer transport (port 2380) and the cluster is bootstrapped with every member
//! in `bootstrap_members`, as `oxetcd --initial-cluster` does. A member is the production
//! assembly (`oxetcd::member::Member`) with the spec etcd's flags give it (`member_flags`), so
//! it runs with the production limits; only the node's IDs and WAL segment size are the
//! simulator's.
//! Every member samples its raft metrics into [`SimCluster::samples`] for the raft checker.
//! Membership changes: [`SimCluster::start_joiner`] starts one more member (a fresh disk and
//! address each time) with `--initial-cluster-state existing`, after the suite added it with
//! `MemberAdd`; it learns its IDs from the peers as `oxetcd` does (`member::node_options`).
//! Joiners sample under indexes after the founding members'.
//!
//! Invariant: every random choice comes from madsim's seeded RNG; no wall-clock time is read.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use oxetcd::config::{Config, Parsed};
use oxetcd::io::sim::SimDisk;
use oxetcd::io::Disk;
use oxetcd::member::{Member as ProdMember, MemberSpec, Stopped};
use oxetcd::raft::node::{NodeOptions, RaftNode, StartMode};
use oxetcd::raft::MemberNode;

use crate::v2load::V2Load;

pub use crate::invariants::Sample;

/// The client port every member listens on.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port every member listens on.
pub const PEER_PORT: u16 = 2380;
/// How often a member samples its raft metrics.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The shared sample log of a cluster.
pub type Samples = Arc<Mutex<Vec<Sample>>>;

/// Knobs of a simulated cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub members: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    /// More of etcd's flags for every member (e.g. `--bcrypt-cost 4` for the auth suite).
    pub extra_flags: Vec<String>,
    /// How fast each member's clock runs against simulated time, in ppm, by member index
    /// (`NodeOptions::clock_rate_ppm`); a member beyond the list keeps the true rate.
    pub clock_rate_ppm: Vec<i64>,
    /// Run a v2 client beside every member ([`crate::v2load`]).
    pub v2_clients: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            members: 1,
            heartbeat_ms: 50,
            election_timeout_ms: 300,
            snapshot_count: 100_000,
            extra_flags: Vec::new(),
            clock_rate_ppm: Vec::new(),
            v2_clients: false,
        }
    }
}

/// What a member reported about its last start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartState {
    Starting,
    Serving,
    /// The member refused to start (e.g. the WAL failed its checks).
    Failed(String),
    /// The member learnt that it was removed from the cluster and stopped.
    Removed,
}

/// One member: its madsim node, disk and start state.
pub struct Member {
    pub name: String,
    pub ip: IpAddr,
    pub disk: SimDisk,
    pub node: NodeHandle,
    pub state: Arc<Mutex<StartState>>,
    pub incarnation: Arc<Mutex<u32>>,
}

/// A running simulated cluster.
pub struct SimCluster {
    pub members: Vec<Member>,
    pub config: ClusterConfig,
    pub samples: Samples,
    /// The time origin of the samples.
    pub origin: madsim::time::Instant,
    /// The member that joined with a membership change and was not removed yet, if any.
    pub joiner: Mutex<Option<Joiner>>,
    /// How many joiners were started (names `j1`, `j2`, ...; addresses `10.0.0.21`, ...).
    pub joins: Mutex<u32>,
    /// The peer URL of a `MemberAdd` that got no answer and was not found in the member list
    /// afterwards: it may still commit later (a learner nobody started yet).
    pub unconfirmed_add: Mutex<Option<String>>,
    /// The v2 clients' log, when [`ClusterConfig::v2_clients`] is set.
    pub v2: Option<Arc<V2Load>>,
}

/// A membership change on the joiner that was asked for and not confirmed either way (its
/// answer was lost and the member list did not show it done): it may still commit later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unconfirmed {
    Promote,
    Remove,
}

/// A member added to the running cluster.
pub struct Joiner {
    pub name: String,
    pub ip: IpAddr,
    /// Its index in the samples (after the founding members').
    pub index: usize,
    /// The member ID the cluster gave it (`MemberAdd`'s answer or the member list).
    pub id: u64,
    pub learner: bool,
    /// The last change asked for on it, when its outcome is unknown.
    pub unconfirmed: Option<Unconfirmed>,
    pub disk: SimDisk,
    pub node: NodeHandle,
    pub state: Arc<Mutex<StartState>>,
}

impl Joiner {
    pub fn peer_url(&self) -> String {
        format!("http://{}:{PEER_PORT}", self.ip)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{CLIENT_PORT}", self.ip)
    }
}

/// Whether `peer_url` is a joiner's (founders have `10.0.0.1`..`10.0.0.5`, joiners
/// `10.0.0.21` and up).
pub fn is_joiner_peer(peer_url: &str) -> bool {
    let host = peer_url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap_or("");
    host.strip_prefix("10.0.0.")
        .and_then(|o| o.parse::<u8>().ok())
        .is_some_and(|o| o >= 20)
}

/// The peer URL the next joiner will have (what `MemberAdd` is asked to add).
pub fn joiner_ip(k: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 20 + (k % 200) as u8))
}

fn member_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + i as u8))
}

/// The data dir of every member (each member has its own disk).
pub fn data_dir() -> PathBuf {
    PathBuf::from("/data")
}

fn set_state(state: &Mutex<StartState>, s: StartState) {
    *state.lock().unwrap_or_else(|p| p.into_inner()) = s;
}

impl SimCluster {
    /// Creates and starts every member.
    pub fn start(config: ClusterConfig) -> SimCluster {
        assert!(config.members >= 1, "a cluster needs a member");
        let handle = Handle::current();
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let boot = bootstrap_members(config.members);
        let origin = madsim::time::Instant::now();
        let v2 = config.v2_clients.then(V2Load::new);
        let mut members = Vec::new();
        for i in 0..config.members {
            let name = format!("m{}", i + 1);
            let ip = member_ip(i);
            let disk = SimDisk::new(madsim::rand::random::<u64>());
            let state = Arc::new(Mutex::new(StartState::Starting));
            let incarnation = Arc::new(Mutex::new(0u32));
            let mut opts = node_options(&name, ip, i as u64, &config);
            opts.bootstrap_members = boot.clone();
            let ctx = MemberCtx {
                join: false,
                index: i,
                disk: disk.clone(),
                flags: member_flags(&name, ip, &config),
                opts,
                state: state.clone(),
                incarnation: incarnation.clone(),
                samples: samples.clone(),
                origin,
                v2: v2.clone(),
            };
            let node = handle
                .create_node()
                .name(&name)
                .ip(ip)
                .init(move || run_member(ctx.clone()))
                .build();
            members.push(Member {
                name,
                ip,
                disk,
                node,
                state,
                incarnation,
            });
        }
        SimCluster {
            members,
            config,
            samples,
            origin,
            joiner: Mutex::new(None),
            joins: Mutex::new(0),
            unconfirmed_add: Mutex::new(None),
            v2,
        }
    }

    /// The address the next joiner gets.
    pub fn next_joiner_ip(&self) -> IpAddr {
        joiner_ip(*self.joins.lock().unwrap_or_else(|p| p.into_inner()) + 1)
    }

    /// Starts the next joiner (already added to the cluster as member `id`), as `oxetcd`
    /// started with `--initial-cluster-state existing` and an `--initial-cluster` naming the
    /// founding members and itself.
    pub fn start_joiner(&self, id: u64, learner: bool) {
        let k = {
            let mut n = self.joins.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let name = format!("j{k}");
        let ip = joiner_ip(k);
        let index = self.members.len() + k as usize - 1;
        let disk = SimDisk::new(madsim::rand::random::<u64>());
        let state = Arc::new(Mutex::new(StartState::Starting));
        let mut flags = member_flags(&name, ip, &self.config);
        if let Some(at) = flags.iter().position(|f| f == "--initial-cluster") {
            flags[at + 1] = format!("{},{name}=http://{ip}:{PEER_PORT}", flags[at + 1]);
        }
        flags.extend([
            "--initial-cluster-state".to_string(),
            "existing".to_string(),
        ]);
        let ctx = MemberCtx {
            join: true,
            index,
            disk: disk.clone(),
            flags,
            // Only the clock rate is used: a joiner's other options come from its peers.
            opts: node_options(&name, ip, index as u64, &self.config),
            state: state.clone(),
            incarnation: Arc::new(Mutex::new(0u32)),
            samples: self.samples.clone(),
            origin: self.origin,
            v2: self.v2.clone(),
        };
        let node = Handle::current()
            .create_node()
            .name(&name)
            .ip(ip)
            .init(move || run_member(ctx.clone()))
            .build();
        *self.joiner.lock().unwrap_or_else(|p| p.into_inner()) = Some(Joiner {
            name,
            ip,
            index,
            id,
            learner,
            unconfirmed: None,
            disk,
            node,
            state,
        });
        *self
            .unconfirmed_add
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Stops the joiner's process for good and forgets it (after its removal).
    pub fn drop_joiner(&self) {
        if let Some(j) = self.joiner.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Handle::current().kill(j.node.id());
        }
    }

    /// The joiner's (ID, learner, endpoint, start state), if one is running.
    pub fn joiner_info(&self) -> Option<(u64, bool, String, StartState)> {
        let j = self.joiner.lock().unwrap_or_else(|p| p.into_inner());
        j.as_ref().map(|j| {
            let state = j.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (j.id, j.learner, j.endpoint(), state)
        })
    }

    /// Waits until the joiner (if any) serves or failed to start, up to `limit`.
    pub async fn wait_joiner_started(&self, limit: Duration) {
        let deadline = madsim::time::Instant::now() + limit;
        while madsim::time::Instant::now() < deadline {
            match self.joiner_info() {
                Some((_, _, _, StartState::Starting)) => {}
                _ => return,
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Records that the joiner was promoted to voter.
    pub fn joiner_promoted(&self) {
        if let Some(j) = self
            .joiner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            j.learner = false;
            j.unconfirmed = None;
        }
    }

    /// Records that `change` was asked for on the joiner and its outcome is unknown.
    pub fn joiner_unconfirmed(&self, change: Unconfirmed) {
        if let Some(j) = self
            .joiner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            j.unconfirmed = Some(change);
        }
    }

    /// The joiner's unconfirmed change, if any.
    pub fn joiner_unconfirmed_change(&self) -> Option<Unconfirmed> {
        self.joiner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|j| j.unconfirmed)
    }

    /// Records a `MemberAdd` of `peer_url` whose outcome is unknown.
    pub fn add_unconfirmed(&self, peer_url: String) {
        *self
            .unconfirmed_add
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(peer_url);
    }

    /// The client endpoint of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:{CLIENT_PORT}", self.members[i].ip)
    }

    pub fn state(&self, i: usize) -> StartState {
        self.members[i]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kills member `i`'s process; its disk keeps even un-synced writes (page cache survives).
    pub fn kill(&self, i: usize) {
        Handle::current().kill(self.members[i].node.id());
    }

    /// Kills member `i` and power-fails its disk.
    pub fn crash(&self, i: usize) -> oxetcd::io::sim::CrashReport {
        self.kill(i);
        self.members[i].disk.crash()
    }

    /// Starts member `i` again from its data dir.
    pub fn restart(&self, i: usize) {
        set_state(&self.members[i].state, StartState::Starting);
        Handle::current().restart(self.members[i].node.id());
    }

    pub fn pause(&self, i: usize) {
        Handle::current().pause(self.members[i].node.id());
    }

    pub fn resume(&self, i: usize) {
        Handle::current().resume(self.members[i].node.id());
    }

    /// Cuts every link between a member of `side` and a member outside it (both directions).
    pub fn partition(&self, side: &[usize]) {
        let net = madsim::net::NetSim::current();
        for a in side {
            for b in (0..self.members.len()).filter(|b| !side.contains(b)) {
                let (na, nb) = (self.members[*a].node.id(), self.members[b].node.id());
                net.clog_link(na, nb);
                net.clog_link(nb, na);
            }
        }
    }

    /// Cuts the link from member `src` to member `dst` only.
    pub fn clog_one_way(&self, src: usize, dst: usize) {
        let net = madsim::net::NetSim::current();
        net.clog_link(self.members[src].node.id(), self.members[dst].node.id());
    }

    /// Restores every link between members.
    pub fn heal(&self) {
        let net = madsim::net::NetSim::current();
        for a in &self.members {
            for b in &self.members {
                if a.node.id() != b.node.id() {
                    net.unclog_link(a.node.id(), b.node.id());
                }
            }
        }
    }

    /// The member the newest samples name leader, if any (from the metrics samples).
    pub fn leader(&self) -> Option<usize> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest: Vec<Option<&Sample>> = vec![None; self.members.len()];
        let founders = newest.len();
        for s in samples.iter().rev().filter(|s| s.member < founders) {
            if newest[s.member].is_none() {
                newest[s.member] = Some(s);
            }
            if newest.iter().all(Option::is_some) {
                break;
            }
        }
        newest
            .iter()
            .flatten()
            .filter(|s| s.leader)
            .max_by_key(|s| s.term)
            .map(|s| s.member)
    }

    /// Whether member `i`'s newest metrics sample has it leading (`None`: no sample yet).
    pub fn leads_in_own_eyes(&self, i: usize) -> Option<bool> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .rev()
            .find(|s| s.member == i)
            .map(|s| s.leader)
    }

    /// Waits until member `i` serves or failed to start, up to `limit` of simulated time.
    pub async fn wait_started(&self, i: usize, limit: Duration) -> StartState {
        let deadline = madsim::time::Instant::now() + limit;
        loop {
            let s = self.state(i);
            if s != StartState::Starting || madsim::time::Instant::now() >= deadline {
                return s;
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Flips bit `bit` of the last occurrence of `needle` (plus `skip` bytes) in member `i`'s
    /// newest WAL segment, on the medium itself. Returns the file and offset, or `None` when
    /// the needle is not there. The member should be down.
    pub fn rot_wal(&self, i: usize, needle: &[u8], skip: usize, bit: u8) -> Option<(PathBuf, u64)> {
        let disk = &self.members[i].disk;
        let wal_dir = data_dir().join("member").join("wal");
        let names = disk.list(&wal_dir).ok()?;
        let newest = names.iter().rev().find(|n| n.ends_with(".wal"))?;
        let path = wal_dir.join(newest);
        let bytes = disk.contents(&path).ok()?;
        let at = bytes.windows(needle.len()).rposition(|w| w == needle)? + skip;
        disk.corrupt_durable(&path, at as u64, bit).ok()?;
        Some((path, at as u64))
    }
}

fn node_options(name: &str, ip: IpAddr, index: u64, config: &ClusterConfig) -> NodeOptions {
    let peer = format!("http://{ip}:2380");
    NodeOptions {
        data_dir: data_dir(),
        wal_dir: None,
        name: name.to_string(),
        bootstrap_member_id: 0x1000 + index,
        bootstrap_cluster_id: 0xc1,
        peer_urls: vec![peer],
        client_urls: vec![format!("http://{ip}:{CLIENT_PORT}")],
        heartbeat_ms: config.heartbeat_ms,
        election_timeout_ms: config.election_timeout_ms,
        snapshot_count: config.snapshot_count,
        max_snapshots: 5,
        max_wals: 5,
        wal_segment_bytes: WAL_SEGMENT_BYTES,
        bootstrap_members: Vec::new(),
        peer_dialer: oxetcd::net::Dialer::plaintext(),
        warning_apply_duration: oxetcd::raft::slow_apply::WARNING_APPLY_DURATION_DEFAULT,
        clock_rate_ppm: usize::try_from(index)
            .ok()
            .and_then(|i| config.clock_rate_ppm.get(i))
            .copied()
            .unwrap_or(0),
        join_view: None,
    }
}

/// The initial membership of an `n`-member cluster (empty for one member, as `oxetcd` does).
fn bootstrap_members(n: usize) -> Vec<(u64, MemberNode)> {
    if n <= 1 {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let node = MemberNode {
                name: format!("m{}", i + 1),
                peer_urls: vec![format!("http://{}:{PEER_PORT}", member_ip(i))],
                client_urls: Vec::new(),
            };
            (0x1000 + i as u64, node)
        })
        .collect()
}

/// Everything a member's madsim node needs to (re)start.
#[derive(Clone)]
struct MemberCtx {
    /// Joins a running cluster: IDs learned from the peers (`member::node_options`).
    join: bool,
    index: usize,
    disk: SimDisk,
    /// etcd's flags of this member: the serving limits come from them, as in production.
    flags: Vec<String>,
    opts: NodeOptions,
    state: Arc<Mutex<StartState>>,
    incarnation: Arc<Mutex<u32>>,
    samples: Samples,
    origin: madsim::time::Instant,
    /// Where this member's v2 client (if any) records.
    v2: Option<Arc<V2Load>>,
}

/// Samples the member's raft metrics until its node dies.
async fn sample_metrics(
    node: Arc<RaftNode>,
    member: usize,
    incarnation: u32,
    origin: madsim::time::Instant,
    samples: Samples,
) {
    loop {
        let m = node.metrics();
        let sample = Sample {
            member,
            incarnation,
            at_ms: u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX),
            term: m.current_term,
            leader: m.state == openraft::ServerState::Leader,
            applied: m.last_applied.map_or(0, |l| l.index),
            last_log: m.last_log_index.unwrap_or(0),
        };
        samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
        madsim::time::sleep(SAMPLE_EVERY).await;
    }
}

/// etcd's flags for member `name` of the cluster: what `oxetcd` would be started with.
fn member_flags(name: &str, ip: IpAddr, config: &ClusterConfig) -> Vec<String> {
    let initial_cluster: Vec<String> = (0..config.members)
        .map(|i| format!("m{}=http://{}:{PEER_PORT}", i + 1, member_ip(i)))
        .collect();
    let client = format!("http://{ip}:{CLIENT_PORT}");
    let peer = format!("http://{ip}:{PEER_PORT}");
    [
        "--name",
        name,
        "--data-dir",
        &data_dir().display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &initial_cluster.join(","),
        "--heartbeat-interval",
        &config.heartbeat_ms.to_string(),
        "--election-timeout",
        &config.election_timeout_ms.to_string(),
        "--snapshot-count",
        &config.snapshot_count.to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .chain(config.extra_flags.iter().cloned())
    .collect()
}

/// The production member spec for these flags, around the simulator's node options (fixed
/// member IDs, small WAL segments).
fn member_config(flags: &[String]) -> Result<Config, String> {
    match Config::parse(flags, &[]) {
        Ok(Parsed::Run(config)) => Ok(*config),
        Ok(_) => Err("the member flags asked for help or the version".into()),
        Err(e) => Err(format!("member flags {flags:?}: {e}")),
    }
}

fn member_spec(flags: &[String], opts: NodeOptions) -> Result<MemberSpec, String> {
    let config = member_config(flags)?;
    MemberSpec::from_config(&config, opts, StartMode::Bootstrap)
}

/// A joiner's spec: node options and start mode as `oxetcd` derives them (IDs from the peers
/// on the first start, from the data dir after), with the simulator's WAL segment size.
async fn joiner_spec(flags: &[String], disk: &dyn Disk) -> Result<MemberSpec, String> {
    let config = member_config(flags)?;
    let (opts, mode) = oxetcd::member::node_options(&config, disk, WAL_SEGMENT_BYTES).await?;
    MemberSpec::from_config(&config, opts, mode)
}

const WAL_SEGMENT_BYTES: u64 = 1024 * 1024;

/// The body of a member's madsim node: start from the data dir, then serve forever.
async fn run_member(m: MemberCtx) {
    let MemberCtx {
        join,
        index,
        disk,
        flags,
        opts,
        state,
        incarnation,
        samples,
        origin,
        v2,
    } = m;
    let incarnation = {
        let mut n = incarnation.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        *n
    };
    let clock_rate_ppm = opts.clock_rate_ppm;
    let spec = if join {
        joiner_spec(&flags, &disk).await
    } else {
        member_spec(&flags, opts)
    };
    let spec = match spec {
        Ok(mut spec) => {
            // A joiner's options come from `oxetcd`'s own derivation; its clock from the sim.
            spec.node.clock_rate_ppm = clock_rate_ppm;
            spec
        }
        Err(e) => {
            set_state(&state, StartState::Failed(e));
            return;
        }
    };
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let member = match ProdMember::start(disk, spec).await {
        Ok(member) => member,
        Err(e) => {
            tracing::warn!(error = %e, "member refused to start");
            set_state(&state, StartState::Failed(e));
            return;
        }
    };
    tokio::spawn(sample_metrics(
        member.node().clone(),
        index,
        incarnation,
        origin,
        samples,
    ));
    if let Some(v2) = v2 {
        tokio::spawn(crate::v2load::run_client(member.api().clone(), v2));
    }
    set_state(&state, StartState::Serving);
    match member.serve_until(std::future::pending::<()>()).await {
        Stopped::ListenerFailed(e) => set_state(&state, StartState::Failed(format!("serve: {e}"))),
        Stopped::Fatal(e) => set_state(&state, StartState::Failed(format!("raft stopped: {e}"))),
        Stopped::Removed => set_state(&state, StartState::Removed),
        Stopped::Requested => {}
    }
}
