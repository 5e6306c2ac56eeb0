//! A running member: opens the data dir, recovers the WAL and the newest snapshot, starts
//! openraft, bootstraps a new cluster when the data dir is empty, and offers the two calls the
//! server needs — [`RaftNode::propose`] (a write through the log, in an envelope whose request
//! ID comes from [`RaftNode::next_request_id`]) and [`RaftNode::read_index`] (the
//! linearizable-read barrier).
//!
//! Data dir layout: `member/wal/` (WAL segments), `member/snap/` (snapshot files) and
//! `member/identity` (member and cluster ID, written once at bootstrap; a restarted member reads
//! them from here and ignores the `--initial-*` flags, as etcd does).
//!
//! Invariant: `propose` returns `Ok` only for an entry that was committed and applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Config as RaftConfig, SnapshotPolicy};
use tokio::sync::watch;

use super::batch::{Accepted, BatchLimits, Batcher, Sink};
use super::forward::{
    AppliedResult, ForwardError, LeaseLeader, LeaseLeaderSlot, MembershipAnswer, MembershipChange,
};
use super::log_store::LogStore;
use super::network::{PeerIdentity, PeerNetwork, SNAPSHOT_CHUNK_BYTES};
use super::peer::PeerService;
use super::state_machine::{ApplyObserver, SmShared, StateMachineStore};
use super::{MemberNode, NodeId, Raft};
use crate::apply::{Applied, Envelope, Proposal};
use crate::config::{APPLY_LAG_ENTRIES_MAX, PROPOSAL_QUEUE_BYTES_MAX, PROPOSAL_QUEUE_COMMANDS_MAX};
use crate::io::{le, Disk, OpenOptions};
use crate::proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::snap::SnapStore;
use crate::wal::{GroupCommit, Wal, WalConfig};

/// Everything a member needs to start, already validated by `config`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    /// Where the WAL segments live (`--wal-dir`); `None`: `<data_dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    pub name: String,
    /// IDs to use when this start bootstraps a new cluster (ignored on restart).
    pub bootstrap_member_id: u64,
    pub bootstrap_cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    pub max_snapshots: usize,
    pub max_wals: usize,
    pub wal_segment_bytes: u64,
    /// Every member of the cluster a fresh start bootstraps (ID and what `--initial-cluster`
    /// says about it); empty means a one-member cluster of this member alone.
    pub bootstrap_members: Vec<(NodeId, MemberNode)>,
    /// How this member dials the others' peer URLs (TLS for `https://` ones).
    pub peer_dialer: crate::net::Dialer,
    /// `--experimental-warning-apply-duration`.
    pub warning_apply_duration: std::time::Duration,
    /// How much faster (negative: slower) this member's monotonic clock runs than real time,
    /// in parts per million, at most `lease::lessor::CLOCK_RATE_PPM_MAX` either way: raft's
    /// timers and the lease deadlines count on it. 0 in production (the machine's clock is the
    /// reference); the simulation drifts each member's clock.
    pub clock_rate_ppm: i64,
    /// A member joining with an empty data dir: its peers' view when it was found in it
    /// (`None` on every other start).
    pub join_view: Option<super::membership::JoinView>,
}

/// Why a member could not start.
#[derive(Debug)]
pub enum StartError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Identity {
        path: PathBuf,
        reason: String,
    },
    Wal(crate::wal::WalError),
    Snap(crate::snap::SnapError),
    LogRecovery(super::log_store::LogRecoveryError),
    StateRecovery(super::state_machine::SmRecoveryError),
    Raft(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StartError::Identity { path, reason } => write!(f, "{}: {reason}", path.display()),
            StartError::Wal(e) => write!(f, "{e}"),
            StartError::Snap(e) => write!(f, "{e}"),
            StartError::LogRecovery(e) => write!(f, "{e}"),
            StartError::StateRecovery(e) => write!(f, "{e}"),
            StartError::Raft(e) => write!(f, "raft: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a proposal did not produce an applied result. Serde: a leader answers forwarded
/// proposals with it (`raft::forward`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// Not proposed: there is no leader (or this member is not it and cannot forward yet).
    NoLeader,
    /// Not proposed: the raft core has stopped.
    Stopped,
    /// Proposed, outcome unknown: the deadline passed. The write may still be applied.
    Timeout,
    /// Not proposed: this member's applied index lags its committed index by more than
    /// [`APPLY_LAG_ENTRIES_MAX`] (etcd's overload rule, "etcdserver: too many requests").
    TooManyRequests,
}

/// Whether a proposal must be refused because apply lags commit too far (etcd refuses when
/// `committed > applied + maxGapBetweenApplyAndCommitIndex`).
pub fn apply_lags_too_far(committed_index: u64, applied_index: u64, lag_entries_max: u64) -> bool {
    committed_index > applied_index.saturating_add(lag_entries_max)
}

/// What a proposal goes through: the overload check, then the batcher, within the request
/// deadline. Cloned into the peer service, which proposes the commands followers forward.
#[derive(Clone)]
pub(super) struct Proposer {
    raft: Raft,
    batcher: Batcher,
    /// The committed index raft last reported to the log store.
    committed_index: Arc<AtomicU64>,
    apply_lag_entries_max: u64,
    request_timeout: Duration,
}

impl Proposer {
    /// Proposes `envelope` and waits until it is applied (see [`RaftNode::propose`]).
    pub(super) async fn propose(&self, envelope: Envelope) -> Result<Arc<Applied>, ProposeError> {
        let committed = self.committed_index.load(Ordering::Relaxed);
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        if apply_lags_too_far(committed, applied, self.apply_lag_entries_max) {
            return Err(ProposeError::TooManyRequests);
        }
        let _pending = PendingProposal::start();
        let result = match tokio::time::timeout(
            self.request_timeout,
            self.batcher.propose(envelope),
        )
        .await
        {
            Err(_) => Err(ProposeError::Timeout),
            Ok(r) => r,
        };
        if result.is_err() {
            crate::metrics::PROPOSALS_FAILED.inc();
        }
        result
    }
}

/// One proposal in `etcd_server_proposals_pending`, from the batcher to its answer (or to the
/// caller giving up on it).
struct PendingProposal;

impl PendingProposal {
    fn start() -> Self {
        crate::metrics::PROPOSALS_PENDING.inc();
        PendingProposal
    }
}

impl Drop for PendingProposal {
    fn drop(&mut self) {
        crate::metrics::PROPOSALS_PENDING.dec();
    }
}

/// One running member.
pub struct RaftNode {
    pub(super) raft: Raft,
    sm: Arc<SmShared>,
    pub(super) member_id: u64,
    pub(super) cluster_id: u64,
    pub(super) request_timeout: Duration,
    pub(super) network: PeerNetwork,
    me: MemberNode,
    stopped: Arc<AtomicBool>,
    /// When a leader last reached this member (noted by the peer service).
    pub(super) leader_contact: super::peer::LeaderContact,
    /// Set while a leadership transfer holds this leader's heartbeats ([`send_heartbeats`]).
    pub(super) heartbeats_paused: Arc<AtomicBool>,
    /// The overload check and the batcher that packs concurrent proposals (see `batch`).
    proposer: Proposer,
    /// The server's side of forwarded lease calls, once installed.
    lease_leader: LeaseLeaderSlot,
    /// Bound on one forwarded keep-alive: the shortest lease TTL (1.5 election timeouts); a
    /// renewal that takes longer is no use to the client.
    keep_alive_forward_timeout: Duration,
    /// `true` while a leadership transfer runs: proposals wait before reaching raft, so the
    /// leader's log stops growing and the transferee can hold all of it when it campaigns.
    pub(super) transferring: Arc<watch::Sender<bool>>,
    /// Serializes the runtime membership calls (checks and change), as etcd applies them.
    pub(super) membership_turn: Arc<tokio::sync::Mutex<()>>,
    /// `--strict-reconfig-check` (etcd's default: on); see `membership::prechecks`.
    pub(super) strict_reconfig_check: AtomicBool,
    /// Fresh request IDs for proposal headers.
    request_ids: RequestIds,
    /// True once `milestones` printed this member's publication (see `wait_announced`).
    announced: watch::Receiver<bool>,
    /// `NodeOptions::join_view`.
    pub(super) join_view: Option<super::membership::JoinView>,
    /// Leadership confirmations shared by concurrent lease renewals.
    confirmations: Arc<super::confirm::Confirmations>,
}

/// Request IDs unique across the cluster and across restarts, laid out as etcd's are:
/// the low 16 bits of the member ID in the top 16 bits, then a 48-bit counter that starts at
/// the wall-clock milliseconds at startup (low 40 bits) shifted left by 8. A restart more than
/// a millisecond later starts above every ID the previous run could have used, unless it issued
/// more than 256 IDs per millisecond of its life.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    const COUNTER_BITS: u32 = 48;
    const TIME_BITS: u32 = 40;

    /// Generator for `member_id` started at `unix_ms` milliseconds since the Unix epoch.
    pub fn new(member_id: u64, unix_ms: u64) -> Self {
        let prefix = (member_id & 0xffff) << Self::COUNTER_BITS;
        let start = (unix_ms & ((1 << Self::TIME_BITS) - 1)) << 8;
        RequestIds {
            prefix,
            counter: AtomicU64::new(start),
        }
    }

    /// Generator for `member_id` started now (the system clock; 0 if it reads before 1970).
    pub fn starting_now(member_id: u64) -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::new(member_id, unix_ms)
    }

    /// The next ID.
    pub fn next(&self) -> u64 {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.prefix | (counter & ((1 << Self::COUNTER_BITS) - 1))
    }
}

/// How a start treats an uninitialized raft state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMode {
    /// Bootstrap a new cluster from `bootstrap_members` when raft has no state yet.
    #[default]
    Bootstrap,
    /// `--initial-cluster-state existing`: never bootstrap; wait for the leader's entries.
    Join,
    /// `--force-new-cluster`: keep the data, make this member the only voter.
    ForceNewCluster,
}

const IDENTITY_MAGIC: &[u8; 8] = b"OXETCDID";

/// How often a request that found no leader (an election is running, or the leader it knew is
/// gone) looks again, within its deadline.
pub const LEADER_POLL: Duration = Duration::from_millis(50);

/// The longest a follower waits for one answer to a read index request before asking again.
const READ_INDEX_ATTEMPT: Duration = Duration::from_secs(1);

/// Waits [`LEADER_POLL`] before a request looks for a leader again; `false` (at once) when
/// the next look would come after `deadline`.
pub async fn pause_for_leader(deadline: tokio::time::Instant) -> bool {
    if tokio::time::Instant::now() + LEADER_POLL >= deadline {
        return false;
    }
    tokio::time::sleep(LEADER_POLL).await;
    true
}

fn encode_identity(member_id: u64, cluster_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    out.extend_from_slice(IDENTITY_MAGIC);
    out.extend_from_slice(&member_id.to_le_bytes());
    out.extend_from_slice(&cluster_id.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_identity(bytes: &[u8]) -> Result<(u64, u64), String> {
    if bytes.len() != 28 {
        return Err(format!(
            "identity file has {} bytes, expected 28",
            bytes.len()
        ));
    }
    if &bytes[..8] != IDENTITY_MAGIC {
        return Err("identity file has a bad magic (offset 0)".into());
    }
    if crc32fast::hash(&bytes[..24]) != le::u32_at(bytes, 24) {
        return Err("identity file CRC mismatch (offset 24)".into());
    }
    Ok((le::u64_at(bytes, 8), le::u64_at(bytes, 16)))
}

/// Writes a whole new file and syncs it (a leftover file of the same name is replaced).
fn write_synced(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if disk.exists(path)? {
        disk.remove(path)?;
    }
    let file = disk.open(path, OpenOptions::create_new())?;
    file.write_at(bytes, 0)?;
    file.sync_data()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |error| StartError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes the identity file atomically (temp file, fsync, rename, directory fsync).
pub(super) fn write_identity(
    disk: &dyn Disk,
    member_dir: &Path,
    member_id: u64,
    cluster_id: u64,
) -> Result<(), StartError> {
    let path = member_dir.join("identity");
    let tmp = member_dir.join("identity.tmp");
    let bytes = encode_identity(member_id, cluster_id);
    write_synced(disk, &tmp, &bytes).map_err(io_err(&tmp))?;
    disk.rename(&tmp, &path).map_err(io_err(&path))?;
    disk.sync_dir(member_dir).map_err(io_err(member_dir))?;
    Ok(())
}

/// Reads the identity file, or writes it (atomically) when this is a fresh data dir.
/// Returns `(member_id, cluster_id, fresh)`.
fn load_or_create_identity(
    disk: &Arc<dyn Disk>,
    member_dir: &Path,
    opts: &NodeOptions,
) -> Result<(u64, u64, bool), StartError> {
    let path = member_dir.join("identity");
    if disk.exists(&path).map_err(io_err(&path))? {
        let bytes = disk
            .open(&path, OpenOptions::read_only())
            .and_then(|f| f.read_all())
            .map_err(io_err(&path))?;
        let (m, c) = decode_identity(&bytes).map_err(|reason| StartError::Identity {
            path: path.clone(),
            reason,
        })?;
        return Ok((m, c, false));
    }
    write_identity(
        disk.as_ref(),
        member_dir,
        opts.bootstrap_member_id,
        opts.bootstrap_cluster_id,
    )?;
    Ok((opts.bootstrap_member_id, opts.bootstrap_cluster_id, true))
}

/// openraft's snapshot trigger for `--snapshot-count`, from the one rule in
/// `snap::SnapshotPolicy` ("more than N entries since the last snapshot"; 0 = etcd's default).
/// openraft fires once `committed - last_snapshot >= threshold`, hence N + 1.
fn snapshot_policy(snapshot_count: u64) -> SnapshotPolicy {
    let policy = crate::snap::SnapshotPolicy::from_flag(snapshot_count);
    SnapshotPolicy::LogsSinceLast(policy.snapshot_count.saturating_add(1))
}

/// openraft's `(election_timeout_min, election_timeout_max)` for etcd's `--election-timeout`.
///
/// An etcd follower campaigns after a randomized [timeout, 2 * timeout) without a heartbeat,
/// and its peers refuse votes while they heard from the leader within one timeout. An openraft
/// follower whose leader was known waits the leader lease (= `election_timeout_max`) plus a
/// random [min, max) before it campaigns, and refuses votes during the lease. With
/// (timeout / 3, 2 * timeout / 3) a follower campaigns after [timeout, 4/3 timeout), as early
/// as etcd's earliest, and the lease stays above three heartbeats (etcd requires the timeout
/// to be at least five heartbeat intervals).
pub(crate) fn election_bounds_ms(election_timeout_ms: u64) -> (u64, u64) {
    let min = (election_timeout_ms / 3).max(1);
    let max = (election_timeout_ms * 2 / 3).max(min + 1);
    debug_assert!(min < max);
    (min, max)
}

/// `local_ms` on a clock running `rate_ppm` fast, in real milliseconds (at least 1).
fn on_real_clock_ms(local_ms: u64, rate_ppm: i64) -> u64 {
    let factor = u128::try_from(1_000_000 + rate_ppm)
        .unwrap_or(1_000_000)
        .max(1);
    let real = u128::from(local_ms) * 1_000_000 / factor;
    u64::try_from(real).unwrap_or(u64::MAX).max(1)
}

/// The deadline of one append-entries (heartbeats included) or read-index call, which openraft
/// takes from its `heartbeat_interval`, for etcd's `--heartbeat-interval` and openraft's
/// minimum election timeout.
///
/// openraft's `heartbeat_interval` is both the heartbeat period and that deadline. Set to etcd's
/// heartbeat, a round trip longer than the heartbeat (etcd advises a heartbeat near the round
/// trip, so any spike) failed every call: nothing committed, CheckQuorum deposed the leader,
/// elections followed one another, where etcd, whose raft messages are one-way, keeps working.
/// So the deadline is three heartbeats (under the minimum election timeout, which openraft
/// requires), and the node sends heartbeats itself at etcd's period ([`send_heartbeats`]).
/// openraft's tick (1.5 deadlines, at most half the election timeout) paces its election
/// timer: a follower campaigns within [timeout, 4/3 timeout + one tick), inside etcd's
/// [timeout, 2 * timeout) (the tick was 1.5 heartbeats before; at etcd's defaults the window
/// grows from [1000, 1483) to [1000, 1783) ms).
pub(crate) fn rpc_deadline_ms(heartbeat_ms: u64, election_min_ms: u64) -> u64 {
    heartbeat_ms
        .saturating_mul(3)
        .min(election_min_ms.saturating_sub(1))
        .max(1)
}

fn raft_config(opts: &NodeOptions) -> RaftConfig {
    // Raft's timers run on tokio's clock; a member whose own clock is fast fires them sooner.
    let (min, max) = election_bounds_ms(opts.election_timeout_ms);
    let real = |ms| on_real_clock_ms(ms, opts.clock_rate_ppm);
    let (election_min, election_max) = (real(min), real(max).max(real(min) + 1));
    RaftConfig {
        cluster_name: "oxetcd".into(),
        heartbeat_interval: rpc_deadline_ms(real(opts.heartbeat_ms), election_min),
        // Heartbeats go out at etcd's period from `send_heartbeats`.
        enable_heartbeat: false,
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        snapshot_policy: snapshot_policy(opts.snapshot_count),
        // etcd keeps 5000 entries after a snapshot for slow followers.
        max_in_snapshot_log_to_keep: 5000,
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
        ..Default::default()
    }
}

/// Asks raft to send a heartbeat to every follower once per `period` (etcd's
/// `--heartbeat-interval` on this member's clock) while this member leads (a no-op otherwise)
/// and no leadership transfer has `paused` them. A follower whose previous call is still out
/// gets the heartbeat when it returns (openraft keeps one call in flight per follower), so a
/// slow link is never flooded.
async fn send_heartbeats(
    raft: Raft,
    period: Duration,
    paused: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        if !paused.load(Ordering::Relaxed) && raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

/// A member that has run before keeps its log where it wrote it: a restart with a `--wal-dir`
/// whose directory holds no segment while the default WAL directory does would come back
/// without its acknowledged writes (the flag was added to a member that ran without it), so
/// it is refused. (A restored data dir has no WAL yet, wherever it is to be kept.)
fn check_wal_dir(disk: &dyn Disk, member_dir: &Path, wal_dir: &Path) -> Result<(), StartError> {
    let has_files = |dir: &Path| -> Result<bool, StartError> {
        if !disk.exists(dir).map_err(io_err(dir))? {
            return Ok(false);
        }
        Ok(!disk.list(dir).map_err(io_err(dir))?.is_empty())
    };
    let default_wal = member_dir.join("wal");
    if default_wal != wal_dir && !has_files(wal_dir)? && has_files(&default_wal)? {
        return Err(StartError::Identity {
            path: wal_dir.to_path_buf(),
            reason: format!(
                "the WAL directory holds no segments but {} holds this member's log (move \
                 its files there, or start without --wal-dir)",
                default_wal.display()
            ),
        });
    }
    Ok(())
}

impl RaftNode {
    /// How this member dials the others (TLS for `https://` URLs with the peer settings).
    pub fn dialer(&self) -> &crate::net::Dialer {
        self.network.dialer()
    }

    /// Opens (or bootstraps) the member in `opts.data_dir` and starts raft.
    pub async fn start(
        disk: Arc<dyn Disk>,
        opts: NodeOptions,
        observer: Arc<dyn ApplyObserver>,
    ) -> Result<Self, StartError> {
        Self::start_with(disk, opts, observer, StartMode::Bootstrap).await
    }

    /// [`RaftNode::start`] for a member joining an existing cluster or forced into a new one.
    pub async fn start_with(
        disk: Arc<dyn Disk>,
        opts: NodeOptions,
        observer: Arc<dyn ApplyObserver>,
        mode: StartMode,
    ) -> Result<Self, StartError> {
        let member_dir = opts.data_dir.join("member");
        disk.create_dir_all(&member_dir)
            .map_err(io_err(&member_dir))?;
        let (member_id, cluster_id, fresh) = load_or_create_identity(&disk, &member_dir, &opts)?;

        let wal_cfg = WalConfig {
            segment_bytes: opts.wal_segment_bytes,
            max_wals: opts.max_wals,
            ..WalConfig::default()
        };
        let wal_dir = opts
            .wal_dir
            .clone()
            .unwrap_or_else(|| member_dir.join("wal"));
        if !fresh {
            check_wal_dir(disk.as_ref(), &member_dir, &wal_dir)?;
        }
        let (wal, recovered) =
            Wal::open(disk.clone(), &wal_dir, wal_cfg).map_err(StartError::Wal)?;
        if let Some(torn) = &recovered.torn_tail {
            tracing::warn!(file = %torn.file.display(), offset = torn.offset, "repaired a torn WAL tail");
        }
        let log_first_index = recovered.entries.first().map(|r| r.index);
        let log_store = LogStore::recover(GroupCommit::new(wal), recovered, member_id)
            .map_err(StartError::LogRecovery)?;
        let committed_index = log_store.committed_index();
        if mode == StartMode::ForceNewCluster {
            let me = MemberNode {
                name: opts.name.clone(),
                peer_urls: opts.peer_urls.clone(),
                client_urls: opts.client_urls.clone(),
            };
            super::membership::force_new_cluster(&log_store, member_id, &me)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        }

        let snaps = SnapStore::open(disk.clone(), &member_dir.join("snap"), opts.max_snapshots)
            .map_err(StartError::Snap)?;
        let sm = StateMachineStore::recover(snaps, log_first_index, observer)
            .map_err(StartError::StateRecovery)?
            .with_durable_commit(log_store.durable_commit())
            .with_warning_apply_duration(opts.warning_apply_duration);
        let shared = sm.shared();
        {
            let inner = shared.read();
            log_store.note_snapshot_membership(
                inner.membership.log_id().map(|l| l.index),
                inner.membership.membership(),
            );
        }

        let config = Arc::new(
            raft_config(&opts)
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        let identity = PeerIdentity {
            member_id,
            cluster_id,
            peer_urls: opts.peer_urls.clone(),
        };
        let network = PeerNetwork::new(
            opts.peer_dialer.clone(),
            Duration::from_millis(opts.election_timeout_ms.max(1000)),
            identity,
        );
        let raft = Raft::new(member_id, config, network.clone(), log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let me = MemberNode {
            name: opts.name.clone(),
            peer_urls: opts.peer_urls.clone(),
            client_urls: opts.client_urls.clone(),
        };
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && mode != StartMode::Join {
            initialize(&raft, member_id, &me, &opts.bootstrap_members).await?;
            tracing::info!(local_member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), fresh, "starting local member");
        } else if initialized {
            tracing::info!(local_member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), "restarting local member");
        } else {
            tracing::info!(local_member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"), "starting local member to join an existing cluster");
        }
        let request_timeout = Duration::from_millis(5000 + 2 * opts.election_timeout_ms);
        let (transferring, transfer_gate) = watch::channel(false);
        let (announced_tx, announced) = watch::channel(false);
        let node = RaftNode {
            raft: raft.clone(),
            sm: shared,
            member_id,
            cluster_id,
            request_timeout,
            network,
            me,
            stopped: Arc::new(AtomicBool::new(false)),
            leader_contact: super::peer::LeaderContact::default(),
            heartbeats_paused: Arc::new(AtomicBool::new(false)),
            proposer: Proposer {
                raft: raft.clone(),
                batcher: Batcher::start(
                    RaftSink {
                        raft: raft.clone(),
                        transfer_gate: transfer_gate.clone(),
                    },
                    BatchLimits {
                        queue_commands_max: PROPOSAL_QUEUE_COMMANDS_MAX,
                        queue_bytes_max: PROPOSAL_QUEUE_BYTES_MAX,
                        ..BatchLimits::default()
                    },
                ),
                committed_index,
                apply_lag_entries_max: APPLY_LAG_ENTRIES_MAX,
                request_timeout,
            },
            lease_leader: LeaseLeaderSlot::default(),
            keep_alive_forward_timeout: Duration::from_millis(opts.election_timeout_ms * 3 / 2),
            transferring: Arc::new(transferring),
            membership_turn: Arc::new(tokio::sync::Mutex::new(())),
            strict_reconfig_check: AtomicBool::new(true),
            request_ids: RequestIds::starting_now(member_id),
            announced,
            join_view: opts.join_view.clone(),
            confirmations: super::confirm::Confirmations::new(raft.clone(), request_timeout),
        };
        node.sm.set_snapshot_commands(
            crate::snap::SnapshotPolicy::from_flag(opts.snapshot_count).snapshot_count,
        );
        tokio::spawn(super::state_machine::snapshot_by_commands(
            node.raft.clone(),
            node.sm.clone(),
            node.stopped.clone(),
        ));
        tokio::spawn(super::compaction::run(
            node.sm.clone(),
            node.stopped.clone(),
        ));
        let heartbeat =
            Duration::from_millis(on_real_clock_ms(opts.heartbeat_ms, opts.clock_rate_ppm));
        tokio::spawn(send_heartbeats(
            node.raft.clone(),
            heartbeat,
            node.heartbeats_paused.clone(),
            node.stopped.clone(),
        ));
        tokio::spawn(super::check_quorum::run(
            node.raft.clone(),
            member_id,
            Duration::from_millis(node.raft.config().election_timeout_max),
            heartbeat,
            node.transferring.subscribe(),
            node.stopped.clone(),
        ));
        tokio::spawn(super::milestones::run(
            node.raft.server_metrics(),
            member_id,
            cluster_id,
            announced_tx,
        ));
        tokio::spawn(publish_members(
            node.raft.clone(),
            node.network.clone(),
            member_id,
            node.me.clone(),
            node.stopped.clone(),
            transfer_gate,
            node.membership_turn.clone(),
        ));
        Ok(node)
    }

    /// The peer gRPC service of this member, to serve on `--listen-peer-urls`.
    pub fn peer_service(self: &Arc<Self>) -> PeerService {
        let campaign_window = Duration::from_millis(4 * self.raft.config().election_timeout_max);
        PeerService::new(self.raft.clone(), self.member_id, self.me.clone())
            .with_cluster(self.cluster_id, campaign_window)
            .with_state(self.sm.clone())
            .with_forwarding(self.proposer.clone(), self.lease_leader.clone())
            .with_membership(Arc::downgrade(self))
            .with_leader_contact(self.leader_contact.clone())
    }

    /// Installs the leader's side of forwarded lease calls (the server owns the lease clock).
    /// The first installation stays; until then forwarded lease calls are refused.
    pub fn install_lease_leader(&self, leases: Arc<dyn LeaseLeader>) {
        // A second installation (one per client listener) carries the same lessor.
        let _ = self.lease_leader.set(leases);
    }

    /// etcd's request timeout: 5 s + 2 × election timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends a client proposal to leader `leader`, which proposes it and answers with the
    /// applied result; bounded by `timeout`.
    pub async fn forward_propose(
        &self,
        leader: NodeId,
        node: &MemberNode,
        envelope: &Envelope,
        timeout: Duration,
    ) -> Result<AppliedResult, ForwardError> {
        self.network
            .forward_propose(leader, node, envelope, timeout)
            .await
    }

    /// A membership change made by leader `leader` (see `raft::forward::MembershipChange`).
    pub async fn forward_membership(
        &self,
        leader: NodeId,
        node: &MemberNode,
        change: &MembershipChange,
        timeout: Duration,
    ) -> Result<MembershipAnswer, ForwardError> {
        self.network
            .forward_membership(leader, node, change, timeout)
            .await
    }

    /// One keep-alive of lease `id` on leader `leader`; the TTL it answered (0: unknown).
    pub async fn forward_keep_alive(
        &self,
        leader: NodeId,
        node: &MemberNode,
        id: i64,
    ) -> Result<i64, ForwardError> {
        let timeout = self.keep_alive_forward_timeout;
        self.network
            .forward_keep_alive(leader, node, id, timeout)
            .await
    }

    /// Leader `leader`'s view of a lease (it owns the deadlines), within the request timeout.
    pub async fn forward_time_to_live(
        &self,
        leader: NodeId,
        node: &MemberNode,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ForwardError> {
        self.network
            .forward_time_to_live(leader, node, req, self.request_timeout)
            .await
    }

    /// The leader's membership entry when some other member is leader (writes are forwarded
    /// there); `None` when this member leads or no leader is known.
    pub fn remote_leader(&self) -> Option<(NodeId, MemberNode)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader.filter(|l| *l != self.member_id)?;
        let node = m
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, node))
    }

    /// Whether this member is a learner (not a voter) in the current membership.
    pub fn is_learner(&self) -> bool {
        // On the request path of every call a learner refuses: borrow, do not clone.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership.get_node(&self.member_id).is_some()
            && !membership.voter_ids().any(|v| v == self.member_id)
    }

    /// Waits (bounded) until this member's publication through raft has been logged, the
    /// moment etcd logs "ready to serve client requests" after; `false` on timeout.
    pub async fn wait_announced(&self, timeout: Duration) -> bool {
        let mut announced = self.announced.clone();
        tokio::time::timeout(timeout, announced.wait_for(|a| *a))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits (bounded) until some member is leader; used before serving clients.
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader elected")
            .await
            .is_ok()
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn state(&self) -> &Arc<SmShared> {
        &self.sm
    }

    /// Current term, leader and indexes as raft sees them.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, MemberNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The highest log index this member knows to be committed (etcd's Status.raftIndex),
    /// read from raft's own state through its input queue; `None` once raft has stopped.
    pub async fn committed_index(&self) -> Option<u64> {
        self.raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
            .await
            .ok()
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// etcd's Defragment, in our storage: writes a snapshot of everything applied so far, so
    /// that the log before it is purged and old WAL segments and snapshot files are dropped
    /// under the retention rules (memory freed by compaction is already free). Returns once
    /// that snapshot is on disk, within etcd's request timeout.
    pub async fn rewrite_storage(&self) -> Result<(), ProposeError> {
        let applied = self.metrics().last_applied.map_or(0, |l| l.index);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|_| ProposeError::Stopped)?;
        let covers = move |m: &openraft::RaftMetrics<NodeId, MemberNode>| {
            m.snapshot.map_or(0, |l| l.index) >= applied
        };
        self.raft
            .wait(Some(self.request_timeout))
            .metrics(covers, "snapshot covers the applied log")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ProposeError::Timeout,
                _ => ProposeError::Stopped,
            })
    }

    /// The leader this member currently knows, without cloning the whole metrics (which carry
    /// the membership and replication maps): this is on the request path.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// A fresh ID for a proposal's request header.
    pub fn next_request_id(&self) -> u64 {
        self.request_ids.next()
    }

    /// Proposes `envelope` and waits until it is applied. Concurrent proposals share log
    /// entries (see `batch`); each still gets its own result.
    /// Refused with `TooManyRequests` while apply lags commit by more than
    /// `APPLY_LAG_ENTRIES_MAX` entries; waits for room while the proposal queue is full.
    pub async fn propose(&self, envelope: Envelope) -> Result<Arc<Applied>, ProposeError> {
        self.proposer.propose(envelope).await
    }

    /// The linearizable-read barrier: returns once this member has applied everything that was
    /// committed when the call started (raft read index confirmed by a quorum).
    ///
    /// While no leader is known, or the leader asked cannot confirm (it stepped down, died, or
    /// lost its quorum), it asks again every [`LEADER_POLL`] until the request timeout, then
    /// fails with `Timeout` (etcd's "request timed out"), as etcd's read loop does: clients see
    /// an election as latency, not as errors. Retrying is safe: a read index changes nothing.
    pub async fn read_index(&self) -> Result<(), ProposeError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_index_once(left).await {
                Err(ProposeError::NoLeader) => {
                    if !pause_for_leader(deadline).await {
                        return Err(ProposeError::Timeout);
                    }
                }
                other => return other,
            }
        }
    }

    /// One read barrier attempt within `left`: `NoLeader` when no leader could confirm.
    async fn read_index_once(&self, left: Duration) -> Result<(), ProposeError> {
        let fut = self.raft.ensure_linearizable();
        match tokio::time::timeout(left, fut).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) if id != self.member_id => {
                        self.read_index_via(id, &node, left).await
                    }
                    _ => Err(ProposeError::NoLeader),
                }
            }
            Ok(Err(RaftError::APIError(_))) => Err(ProposeError::NoLeader),
            Ok(Err(RaftError::Fatal(_))) => Err(ProposeError::Stopped),
        }
    }

    /// A follower's read barrier: the leader confirms its leadership and names its commit
    /// index; this member then waits until it has applied that far.
    async fn read_index_via(
        &self,
        leader: NodeId,
        node: &MemberNode,
        left: Duration,
    ) -> Result<(), ProposeError> {
        // A leader cut off from this member does not answer: ask again (perhaps a new leader)
        // rather than spend the whole deadline on it. Asking again is harmless.
        let attempt = left.min(READ_INDEX_ATTEMPT);
        let index = match self.network.read_index(leader, node, attempt).await {
            Ok(Some(index)) => index,
            Ok(None) | Err(_) => return Err(ProposeError::NoLeader),
        };
        self.wait_applied(index, left, "read index").await
    }

    /// Returns once this member has applied `index`; `Timeout` after `within`.
    async fn wait_applied(
        &self,
        index: u64,
        within: Duration,
        what: &str,
    ) -> Result<(), ProposeError> {
        let wait = self.raft.wait(Some(within));
        match wait.applied_index_at_least(Some(index), what).await {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => Err(ProposeError::Timeout),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(ProposeError::Stopped),
        }
    }

    /// Confirms that this member still leads: a quorum answers a heartbeat sent after the
    /// call (raft's read-index round), within the request timeout; then this member has
    /// applied everything committed before the call. `NoLeader` when another member leads or
    /// none could be confirmed. Unlike [`RaftNode::read_index`], never asks another leader.
    ///
    /// A lease renewal needs it: a leader cut off from its quorum is deposed on the other side
    /// without knowing it (etcd's leader steps down within an election timeout, CheckQuorum),
    /// and a renewal it granted from its own deadlines would outlive the lease.
    /// Concurrent callers share rounds (`raft::confirm`).
    pub async fn confirm_leadership(&self) -> Result<(), ProposeError> {
        self.confirmations.confirm().await
    }

    /// Returns once this member has applied everything it knows to be committed (etcd's
    /// `waitAppliedIndex`), within the request timeout.
    pub async fn wait_applied_committed(&self) -> Result<(), ProposeError> {
        let committed = self.committed_index().await.ok_or(ProposeError::Stopped)?;
        if committed == 0 {
            return Ok(());
        }
        self.wait_applied(committed, self.request_timeout, "applied covers committed")
            .await
    }

    /// Whether this member can serve: raft runs and no shutdown has begun. `false` once the
    /// raft core stopped on a fatal error (a failed WAL fsync, a storage error) or the member
    /// is shutting down; the gRPC health service reports NOT_SERVING then.
    pub fn is_serving(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed) && self.raft.metrics().borrow().running_state.is_ok()
    }

    /// Marks the member as shutting down (health turns NOT_SERVING) before its servers stop.
    pub fn begin_shutdown(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Resolves with the reason once the raft core stops on its own (a fatal storage error,
    /// such as a failed WAL fdatasync, which is never retried); never resolves while raft runs
    /// or after a shutdown this member asked for. The binary exits on it, as etcd does.
    ///
    /// It waits on openraft's server metrics, which change only with the vote, the role, the
    /// leader or the membership, and close when the core ends (the core owns their sender): the
    /// full metrics change on every append and apply, and waking for each write cost the thread
    /// that awaits this (the binary's main thread) a context switch per write.
    pub async fn fatal_stop(&self) -> String {
        let mut server = self.raft.server_metrics();
        loop {
            let stopped_by = self.fatal_error();
            if self.stopped.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            if let Some(fatal) = stopped_by {
                return fatal;
            }
            if server.changed().await.is_err() {
                if self.stopped.load(Ordering::Relaxed) {
                    return std::future::pending().await;
                }
                return self
                    .fatal_error()
                    .unwrap_or_else(|| "the raft core stopped".to_string());
            }
        }
    }

    /// The fatal error the raft core recorded in its full metrics before it ended, if any.
    fn fatal_error(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.running_state.as_ref().err().map(ToString::to_string)
    }

    /// Stops raft (flushes nothing extra: every acknowledged write is already durable).
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The batcher's way into raft: `client_write_ff` queues the entry in call order; the returned
/// future waits for its applied result. While a leadership transfer runs, the next batch waits
/// here (the batcher hands batches over one at a time, so the whole queue waits behind it).
struct RaftSink {
    raft: Raft,
    transfer_gate: watch::Receiver<bool>,
}

/// Waits until no leadership transfer is running (returns at once when none is).
pub(super) async fn transfer_done(gate: &watch::Receiver<bool>) {
    let mut gate = gate.clone();
    // An error means the node is gone; the proposal then fails on its own.
    let _ = gate.wait_for(|busy| !*busy).await;
}

fn client_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ProposeError::NoLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => ProposeError::NoLeader,
        RaftError::Fatal(_) => ProposeError::Stopped,
    }
}

impl Sink for RaftSink {
    fn send(&self, proposal: Proposal) -> Accepted<'_> {
        Box::pin(async move {
            transfer_done(&self.transfer_gate).await;
            let rx = self
                .raft
                .client_write_ff(proposal)
                .await
                .map_err(|_| ProposeError::Stopped)?;
            let pending: super::batch::Pending = Box::pin(async move {
                match rx.await {
                    Err(_) => Err(ProposeError::Stopped),
                    Ok(Ok(resp)) => Ok(resp.data),
                    Ok(Err(e)) => Err(client_write_error(RaftError::APIError(e))),
                }
            });
            Ok(pending)
        })
    }
}

/// Initializes a fresh cluster. Every bootstrap member calls this with the same membership
/// (names and peer URLs from `--initial-cluster`, no client URLs yet), which openraft allows;
/// a member that already received the first entries from an elected leader skips it.
async fn initialize(
    raft: &Raft,
    member_id: NodeId,
    me: &MemberNode,
    members: &[(NodeId, MemberNode)],
) -> Result<(), StartError> {
    let members: BTreeMap<NodeId, MemberNode> = if members.is_empty() {
        BTreeMap::from([(member_id, me.clone())])
    } else {
        members.iter().cloned().collect()
    };
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(StartError::Raft(e.to_string())),
    }
}

/// How often the leader looks for members whose client URLs are not yet in the membership.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(300);

/// The leader's publication loop: fills in the name and client URLs of every member that has
/// not published them yet (asked over the peer protocol), through a raft membership entry, so
/// that every member can list them and forward requests to the leader's client URL.
async fn publish_members(
    raft: Raft,
    network: PeerNetwork,
    member_id: NodeId,
    me: MemberNode,
    stopped: Arc<AtomicBool>,
    transfer_gate: watch::Receiver<bool>,
    membership_turn: Arc<tokio::sync::Mutex<()>>,
) {
    while !stopped.load(Ordering::Relaxed) {
        tokio::time::sleep(PUBLISH_INTERVAL).await;
        transfer_done(&transfer_gate).await;
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(member_id) {
            continue;
        }
        let mut updates = BTreeMap::new();
        for (id, node) in m.membership_config.membership().nodes() {
            if !node.client_urls.is_empty() {
                continue;
            }
            let info = if *id == member_id {
                Ok(me.clone())
            } else {
                network.member_info(*id, node, Duration::from_secs(1)).await
            };
            match info {
                // Like etcd's attribute publication: name and client URLs only. The peer URLs
                // stay those of the membership (`member update` may have changed them; the
                // member's ID was checked by `member_info`). Bug guarded against: a member
                // whose peer URLs were updated before it published was never published.
                Ok(info) => {
                    let published = MemberNode {
                        peer_urls: node.peer_urls.clone(),
                        ..info
                    };
                    updates.insert(*id, published);
                }
                Err(e) => {
                    tracing::debug!(member = %format!("{id:x}"), error = %e, "member not reachable yet")
                }
            }
        }
        // In turn with the Cluster API's changes; a member changed meanwhile (e.g. by `member
        // update`) waits for the next round rather than having the change overwritten.
        let _turn = membership_turn.lock().await;
        let now = raft.metrics().borrow().membership_config.clone();
        updates.retain(|id, published| {
            now.membership()
                .get_node(id)
                .is_some_and(|n| n.client_urls.is_empty() && n.peer_urls == published.peer_urls)
        });
        if updates.is_empty() {
            continue;
        }
        match raft
            .change_membership(ChangeMembers::SetNodes(updates), false)
            .await
        {
            Ok(_) => tracing::info!("published member attributes"),
            Err(e) => tracing::debug!(error = %e, "could not publish member attributes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug guarded against: `--snapshot-count 0` became openraft's `LogsSinceLast(0)`, a
    /// snapshot after every entry; and openraft's `>=` fired one entry earlier than etcd's rule.
    #[test]
    fn follower_campaign_window_starts_at_the_etcd_election_timeout() {
        for (heartbeat, timeout) in [(100u64, 1000u64), (25, 250), (10, 50), (1, 5)] {
            let (min, max) = election_bounds_ms(timeout);
            assert!(min < max, "{timeout}: {min} !< {max}");
            // openraft: lease (= max) + random [min, max).
            let (earliest, latest) = (max + min, 2 * max);
            assert!(
                earliest + 2 >= timeout && earliest <= timeout,
                "{timeout}: {earliest}"
            );
            assert!(latest < 2 * timeout, "{timeout}: {latest}");
            assert!(
                max >= 3 * heartbeat,
                "{timeout}: lease {max} vs heartbeat {heartbeat}"
            );
            // openraft checks its election timer once per tick, 1.5 call deadlines.
            let tick = rpc_deadline_ms(heartbeat, min) * 3 / 2;
            assert!(latest + tick < 2 * timeout, "{timeout}: {latest} + {tick}");
        }
    }

    #[test]
    fn openraft_trigger_matches_the_snap_policy() {
        for count in [0u64, 1, 5, 100] {
            let policy = crate::snap::SnapshotPolicy::from_flag(count);
            let SnapshotPolicy::LogsSinceLast(threshold) = snapshot_policy(count) else {
                panic!("snapshots must stay enabled for --snapshot-count {count}");
            };
            for since_last in 0..=policy.snapshot_count.min(200) + 2 {
                assert_eq!(
                    since_last >= threshold,
                    policy.due(since_last, 0),
                    "count {count}, {since_last} entries"
                );
            }
        }
    }

    /// Request IDs carry the member, grow by one, and a later start begins above them.
    #[test]
    fn request_ids_are_per_member_and_start_above_an_earlier_run() {
        let ids = RequestIds::new(0x8e9e05c52164694d, 1_700_000_000_123);
        let first = ids.next();
        assert_eq!(first >> 48, 0x694d);
        assert_eq!(
            first & 0xffff_ffff_ffff,
            ((1_700_000_000_123u64 & 0xff_ffff_ffff) << 8) + 1
        );
        assert_eq!(ids.next(), first + 1);
        let later = RequestIds::new(0x8e9e05c52164694d, 1_700_000_000_124);
        assert!(later.next() > first + 1);
        let other = RequestIds::new(0x1234, 1_700_000_000_123);
        assert_ne!(other.next() >> 48, first >> 48);
    }

    /// etcd's overload rule: refuse only when commit is MORE than 5000 entries ahead of apply.
    #[test]
    fn proposals_are_refused_only_beyond_the_apply_lag_bound() {
        assert_eq!(APPLY_LAG_ENTRIES_MAX, 5000);
        let max = APPLY_LAG_ENTRIES_MAX;
        assert!(!apply_lags_too_far(0, 0, max));
        assert!(!apply_lags_too_far(5000, 0, max));
        assert!(apply_lags_too_far(5001, 0, max));
        assert!(!apply_lags_too_far(105_000, 100_000, max));
        assert!(apply_lags_too_far(105_001, 100_000, max));
        // A member that applied past what its log store last heard committed (a snapshot
        // installed, or a restart before raft reported the commit) does not lag at all.
        assert!(!apply_lags_too_far(10, 20_000, max));
        assert!(!apply_lags_too_far(u64::MAX, u64::MAX - 1, max));
    }

    #[test]
    fn identity_round_trips_and_detects_damage() {
        let bytes = encode_identity(0x2e1259d415f2a040, 0x48276a8f75b6a87);
        assert_eq!(
            decode_identity(&bytes),
            Ok((0x2e1259d415f2a040, 0x48276a8f75b6a87))
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode_identity(&bad).is_err(),
                "flip at byte {i} not detected"
            );
        }
        assert!(decode_identity(&bytes[..27]).is_err());
    }
}

#[cfg(all(test, not(madsim)))]
mod fault_tests {
    use super::*;
    use crate::apply::Command;
    use crate::io::sim::SimDisk;
    use std::future::Future;

    struct Quiet;

    impl ApplyObserver for Quiet {
        fn applied(&self, _index: u64, _cmd: &Command, _applied: &Applied) {}
    }

    /// A member whose clock runs fast fires raft's timers sooner in real time, and keeps them
    /// in order (election bounds apart, heartbeat well inside them).
    #[test]
    fn a_drifting_clock_scales_the_raft_timers() {
        assert_eq!(on_real_clock_ms(1000, 0), 1000);
        assert_eq!(on_real_clock_ms(1000, 100_000), 909);
        assert_eq!(on_real_clock_ms(1000, -100_000), 1111);
        assert_eq!(on_real_clock_ms(0, 100_000), 1);
        let mut opts = NodeOptions {
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            ..options()
        };
        for rate in [-500_000, -100_000, 0, 100_000, 500_000] {
            opts.clock_rate_ppm = rate;
            let c = raft_config(&opts);
            assert!(c.election_timeout_min < c.election_timeout_max, "{rate}");
            assert!(c.heartbeat_interval < c.election_timeout_min, "{rate}");
            assert!(!c.enable_heartbeat, "{rate}");
            c.validate().expect("openraft accepts the timers");
        }
    }

    /// The call deadline is three heartbeats, kept under openraft's minimum election timeout,
    /// for every heartbeat/election pair etcd accepts (election >= 5 heartbeats).
    #[test]
    fn the_call_deadline_outlasts_the_heartbeat_within_the_election_timeout() {
        assert_eq!(rpc_deadline_ms(100, election_bounds_ms(1000).0), 300);
        assert_eq!(rpc_deadline_ms(100, election_bounds_ms(500).0), 165);
        for hb in [10, 50, 100, 1000] {
            for ticks in [5, 6, 10, 50] {
                let (min, _) = election_bounds_ms(hb * ticks);
                let d = rpc_deadline_ms(hb, min);
                assert!(d >= hb && d < min, "{hb} {ticks}: {d}");
            }
        }
    }

    fn options() -> NodeOptions {
        NodeOptions {
            data_dir: PathBuf::from("/data"),
            wal_dir: None,
            name: "m1".into(),
            bootstrap_member_id: 0x1111,
            bootstrap_cluster_id: 0x2222,
            peer_urls: vec!["http://127.0.0.1:1".into()],
            client_urls: vec!["http://127.0.0.1:2".into()],
            heartbeat_ms: 20,
            election_timeout_ms: 100,
            clock_rate_ppm: 0,
            join_view: None,
            snapshot_count: 0,
            max_snapshots: 5,
            max_wals: 5,
            wal_segment_bytes: 1 << 20,
            bootstrap_members: Vec::new(),
            peer_dialer: crate::net::Dialer::plaintext(),
            warning_apply_duration: crate::raft::slow_apply::WARNING_APPLY_DURATION_DEFAULT,
        }
    }

    fn put(key: &str) -> Command {
        Command::Put(crate::proto::etcdserverpb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    /// A runtime with two workers, as a member has at least.
    fn two_worker_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A single member on a simulated disk (kept to inject faults), once it leads.
    async fn leading_node() -> (SimDisk, RaftNode) {
        let disk = SimDisk::new(7);
        let node = RaftNode::start(Arc::new(disk.clone()), options(), Arc::new(Quiet))
            .await
            .unwrap();
        assert!(node.wait_for_leader(Duration::from_secs(10)).await);
        (disk, node)
    }

    /// A failed WAL fdatasync stops the member for good: `fatal_stop` names the failure (the
    /// binary logs it and exits) and the member no longer reports itself serving. Bug guarded
    /// against: the raft core stopped but the process kept answering reads and health checks
    /// as if it were alive.
    #[test]
    fn a_failed_fsync_stops_the_member() {
        two_worker_runtime().block_on(async {
            let (disk, node) = leading_node().await;
            node.propose(crate::apply::Envelope::new(Default::default(), put("a")))
                .await
                .unwrap();
            assert!(node.is_serving());
            disk.fail_next_syncs(u32::MAX);
            assert!(node
                .propose(crate::apply::Envelope::new(Default::default(), put("b")))
                .await
                .is_err());
            let fatal = tokio::time::timeout(Duration::from_secs(10), node.fatal_stop())
                .await
                .expect("raft did not stop after a failed fsync");
            assert!(fatal.contains("fdatasync"), "{fatal}");
            assert!(!node.is_serving());
        });
    }

    /// Counts the wakes of the future it is the waker of.
    struct WakeCount(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `fatal_stop` is awaited for the whole life of the member (by the binary's main thread):
    /// it must sleep through writes and still name a failure that happens while it waits. Bug
    /// guarded against: it followed openraft's full metrics, which change on every append and
    /// apply, so every write woke the main thread (a context switch per put on a busy core).
    #[test]
    fn fatal_stop_sleeps_through_writes_and_wakes_for_a_failure() {
        two_worker_runtime().block_on(async {
            let (disk, node) = leading_node().await;
            // Settle the first entries (leader's blank entry, membership) before counting.
            node.propose(crate::apply::Envelope::new(Default::default(), put("a")))
                .await
                .unwrap();
            let wakes = Arc::new(WakeCount(std::sync::atomic::AtomicUsize::new(0)));
            let waker = std::task::Waker::from(wakes.clone());
            let mut cx = std::task::Context::from_waker(&waker);
            let mut fatal = Box::pin(node.fatal_stop());
            assert!(fatal.as_mut().poll(&mut cx).is_pending());
            for i in 0..50 {
                node.propose(crate::apply::Envelope::new(
                    Default::default(),
                    put(&format!("k{i}")),
                ))
                .await
                .unwrap();
            }
            assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "woken by writes");
            disk.fail_next_syncs(u32::MAX);
            assert!(node
                .propose(crate::apply::Envelope::new(Default::default(), put("b")))
                .await
                .is_err());
            let fatal = tokio::time::timeout(Duration::from_secs(10), fatal)
                .await
                .expect("fatal_stop did not wake when raft stopped");
            assert!(fatal.contains("fdatasync"), "{fatal}");
        });
    }
}
