//! metrics — the process's counters, gauges and histograms, counted where the events happen
//! (the WAL's fdatasync, the snapshot write, raft's leader changes and proposals, apply, the
//! peer transport, the gRPC server) and printed by `http::metrics` under etcd's names.
//!
//! Like etcd's (Prometheus' default registry is process-wide), the registry is a set of
//! statics: one member runs per process. Everything is an atomic or a small mutex-guarded map,
//! so the modules inside the simulated seam (wal/, raft/) count without knowing any HTTP type;
//! under madsim the values are simply never read.
//!
//! Invariant: a histogram's bucket counts are per bucket (not cumulative) and their total is its
//!   `count`; the renderer accumulates them.
//! Invariant: every labelled family has a bound on its label sets: peers at [`PEERS_MAX`], gRPC
//!   methods by the fixed [`GRPC_METHODS`] table (unknown paths are not counted).

mod applied;

pub use applied::count_applied;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// etcd's disk latency buckets: 1 ms doubling 14 times (up to 8.192 s).
pub const DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];
/// etcd's peer round-trip buckets: 0.1 ms doubling 16 times.
pub const RTT_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];
/// The Prometheus client's default buckets, which go-grpc-prometheus uses for handling times.
pub const GRPC_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over `N` fixed upper bounds (plus `+Inf`).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Observations per bucket; index `N` is above the last bound.
    buckets: [AtomicU64; 17],
    count: AtomicU64,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

/// What a histogram holds at one moment, for the renderer.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    pub bounds: Vec<f64>,
    /// Cumulative counts, one per bound (`le`), without `+Inf` (that is `count`).
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: &'static [f64; N]) -> Self {
        assert!(N < 17, "at most 16 bounds");
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 17],
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let bucket = self.bounds.iter().position(|b| seconds <= *b).unwrap_or(N);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn values(&self) -> HistogramValues {
        let mut running = 0;
        let cumulative = (0..N)
            .map(|i| {
                running += self.buckets[i].load(Ordering::Relaxed);
                running
            })
            .collect();
        let count = running + self.buckets[N].load(Ordering::Relaxed);
        HistogramValues {
            bounds: self.bounds.to_vec(),
            cumulative,
            count,
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

// ---- disk -------------------------------------------------------------------------------

/// `etcd_disk_wal_fsync_duration_seconds`: every fdatasync of the active WAL segment (group
/// commit and segment cut).
pub static WAL_FSYNC: Histogram<14> = Histogram::new(&DISK_BUCKETS);
/// `etcd_disk_backend_commit_duration_seconds`: oxetcd's backend commit is the snapshot write
/// (the state machine image written, fsynced and renamed into place), etcd's is a bbolt commit.
pub static BACKEND_COMMIT: Histogram<14> = Histogram::new(&DISK_BUCKETS);

// ---- raft and apply ---------------------------------------------------------------------

/// `etcd_server_leader_changes_seen_total`: a known leader other than the previous one.
pub static LEADER_CHANGES: Counter = Counter::new();
/// `etcd_server_proposals_pending`: proposals made here and not yet answered.
pub static PROPOSALS_PENDING: Gauge = Gauge::new();
/// `etcd_server_proposals_failed_total`: proposals that timed out or found no leader or a
/// stopped raft.
pub static PROPOSALS_FAILED: Counter = Counter::new();
/// `etcd_server_slow_apply_total`: applied entries that took longer than [`SLOW_APPLY`].
pub static SLOW_APPLY_TOTAL: Counter = Counter::new();
/// etcd's warning threshold for one apply (`warnApplyDuration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// `etcd_server_health_success` / `_failures`: answers of `/health` (etcd counts each one).
pub static HEALTH_SUCCESS: Counter = Counter::new();
pub static HEALTH_FAILURES: Counter = Counter::new();

// ---- mvcc -------------------------------------------------------------------------------

/// `etcd_mvcc_put_total`, `_delete_total`, `_range_total`, `_txn_total` (and the debugging
/// range counter): requests as the store executes them; a txn counts its compares as ranges
/// and counts as a txn when it did more than one operation (etcd's rule).
pub static MVCC_PUT: Counter = Counter::new();
pub static MVCC_DELETE: Counter = Counter::new();
pub static MVCC_RANGE: Counter = Counter::new();
pub static MVCC_TXN: Counter = Counter::new();

/// Whether a store transaction with these operations counts as a txn (more than one).
fn is_txn(ranges: u64, puts: u64, deletes: u64) -> bool {
    ranges + puts + deletes > 1
}

/// Counts what one applied txn did: `compares` comparisons, then `puts`, `deletes`, `ranges`.
pub fn count_txn(compares: u64, puts: u64, deletes: u64, ranges: u64) {
    let ranges = ranges + compares;
    if is_txn(ranges, puts, deletes) {
        MVCC_TXN.inc();
    }
    MVCC_RANGE.add(ranges);
    MVCC_PUT.add(puts);
    MVCC_DELETE.add(deletes);
}

// ---- compaction --------------------------------------------------------------------------

/// etcd's compaction pause buckets, in milliseconds: 1 ms doubling 13 times.
pub const COMPACTION_PAUSE_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];
/// etcd's compaction total buckets, in milliseconds: 100 ms doubling 14 times.
pub const COMPACTION_TOTAL_BUCKETS_MS: [f64; 14] = [
    100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0, 25600.0, 51200.0, 102400.0,
    204800.0, 409600.0, 819200.0,
];

/// `etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds`: one batch of a scheduled
/// compaction (the time the state machine's write lock was held for it).
pub static COMPACTION_PAUSE_MS: Histogram<13> = Histogram::new(&COMPACTION_PAUSE_BUCKETS_MS);
/// `etcd_debugging_mvcc_db_compaction_total_duration_milliseconds`: a whole compaction, from
/// its first batch to its last.
pub static COMPACTION_TOTAL_MS: Histogram<14> = Histogram::new(&COMPACTION_TOTAL_BUCKETS_MS);
/// `etcd_debugging_mvcc_db_compaction_keys_total`: records dropped by compactions.
pub static COMPACTION_KEYS: Counter = Counter::new();

/// One compaction batch that held the lock for `pause` and dropped `removed` records.
pub fn observe_compaction_batch(pause: Duration, removed: usize) {
    COMPACTION_PAUSE_MS.observe(pause.as_secs_f64() * 1000.0);
    COMPACTION_KEYS.add(removed as u64);
}

/// A whole compaction that took `took`.
pub fn observe_compaction_total(took: Duration) {
    COMPACTION_TOTAL_MS.observe(took.as_secs_f64() * 1000.0);
}

// ---- network ----------------------------------------------------------------------------

/// `etcd_network_client_grpc_received_bytes_total` / `_sent_bytes_total`: gRPC message bytes
/// from and to clients on the client port.
pub static CLIENT_GRPC_RECEIVED_BYTES: Counter = Counter::new();
pub static CLIENT_GRPC_SENT_BYTES: Counter = Counter::new();

/// Peers with their own label sets at most (etcd clusters have a handful of members; a
/// longer-lived process that met more than this keeps counting the ones it has).
pub const PEERS_MAX: usize = 128;

/// What this member exchanged with one peer.
#[derive(Debug)]
pub struct PeerTraffic {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_failures: u64,
    pub round_trip: Histogram<16>,
}

static PEERS: Mutex<BTreeMap<u64, PeerTraffic>> = Mutex::new(BTreeMap::new());

fn with_peer(peer: u64, f: impl FnOnce(&mut PeerTraffic)) {
    let mut peers = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    if !peers.contains_key(&peer) && peers.len() >= PEERS_MAX {
        return;
    }
    let traffic = peers.entry(peer).or_insert_with(|| PeerTraffic {
        sent_bytes: 0,
        received_bytes: 0,
        sent_failures: 0,
        round_trip: Histogram::new(&RTT_BUCKETS),
    });
    f(traffic);
}

/// Bytes of raft messages sent to `peer` (requests and replies).
pub fn peer_sent(peer: u64, bytes: u64) {
    with_peer(peer, |t| t.sent_bytes += bytes);
}

/// Bytes of raft messages received from `peer` (requests and replies).
pub fn peer_received(peer: u64, bytes: u64) {
    with_peer(peer, |t| t.received_bytes += bytes);
}

/// A message to `peer` that could not be delivered.
pub fn peer_send_failed(peer: u64) {
    with_peer(peer, |t| t.sent_failures += 1);
}

/// The round trip of a heartbeat to `peer`.
pub fn peer_round_trip(peer: u64, rtt: Duration) {
    with_peer(peer, |t| t.round_trip.observe_duration(rtt));
}

/// One peer's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSample {
    pub id: u64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_failures: u64,
    pub round_trip: HistogramValues,
}

/// Every peer this member exchanged messages with, in peer ID order.
pub fn peers() -> Vec<PeerSample> {
    let peers = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    peers
        .iter()
        .map(|(id, t)| PeerSample {
            id: *id,
            sent_bytes: t.sent_bytes,
            received_bytes: t.received_bytes,
            sent_failures: t.sent_failures,
            round_trip: t.round_trip.values(),
        })
        .collect()
}

// ---- gRPC server ------------------------------------------------------------------------

/// go-grpc-prometheus' `grpc_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    pub fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// One gRPC method the client port serves.
#[derive(Debug, Clone, Copy)]
pub struct GrpcMethod {
    pub service: &'static str,
    pub method: &'static str,
    pub kind: GrpcType,
    /// Printed from the start with zeros, as etcd's registered services are; the others appear
    /// once called (etcd registers Election and Lock after the metrics are initialised).
    pub preset: bool,
}

const fn m(
    service: &'static str,
    method: &'static str,
    kind: GrpcType,
    preset: bool,
) -> GrpcMethod {
    GrpcMethod {
        service,
        method,
        kind,
        preset,
    }
}

use GrpcType::{BidiStream, ServerStream, Unary};
const KV: &str = "etcdserverpb.KV";
const WATCH: &str = "etcdserverpb.Watch";
const LEASE: &str = "etcdserverpb.Lease";
const CLUSTER: &str = "etcdserverpb.Cluster";
const MAINT: &str = "etcdserverpb.Maintenance";
const AUTH: &str = "etcdserverpb.Auth";
const HEALTH: &str = "grpc.health.v1.Health";
const ELECTION: &str = "v3electionpb.Election";
const LOCK: &str = "v3lockpb.Lock";

/// Every method the client port serves, in no particular order.
pub const GRPC_METHODS: [GrpcMethod; 50] = [
    m(KV, "Range", Unary, true),
    m(KV, "Put", Unary, true),
    m(KV, "DeleteRange", Unary, true),
    m(KV, "Txn", Unary, true),
    m(KV, "Compact", Unary, true),
    m(WATCH, "Watch", BidiStream, true),
    m(LEASE, "LeaseGrant", Unary, true),
    m(LEASE, "LeaseRevoke", Unary, true),
    m(LEASE, "LeaseKeepAlive", BidiStream, true),
    m(LEASE, "LeaseTimeToLive", Unary, true),
    m(LEASE, "LeaseLeases", Unary, true),
    m(CLUSTER, "MemberAdd", Unary, true),
    m(CLUSTER, "MemberRemove", Unary, true),
    m(CLUSTER, "MemberUpdate", Unary, true),
    m(CLUSTER, "MemberList", Unary, true),
    m(CLUSTER, "MemberPromote", Unary, true),
    m(MAINT, "Alarm", Unary, true),
    m(MAINT, "Status", Unary, true),
    m(MAINT, "Defragment", Unary, true),
    m(MAINT, "Hash", Unary, true),
    m(MAINT, "HashKV", Unary, true),
    m(MAINT, "Snapshot", ServerStream, true),
    m(MAINT, "MoveLeader", Unary, true),
    m(MAINT, "Downgrade", Unary, true),
    m(AUTH, "AuthEnable", Unary, true),
    m(AUTH, "AuthDisable", Unary, true),
    m(AUTH, "AuthStatus", Unary, true),
    m(AUTH, "Authenticate", Unary, true),
    m(AUTH, "UserAdd", Unary, true),
    m(AUTH, "UserGet", Unary, true),
    m(AUTH, "UserList", Unary, true),
    m(AUTH, "UserDelete", Unary, true),
    m(AUTH, "UserChangePassword", Unary, true),
    m(AUTH, "UserGrantRole", Unary, true),
    m(AUTH, "UserRevokeRole", Unary, true),
    m(AUTH, "RoleAdd", Unary, true),
    m(AUTH, "RoleGet", Unary, true),
    m(AUTH, "RoleList", Unary, true),
    m(AUTH, "RoleDelete", Unary, true),
    m(AUTH, "RoleGrantPermission", Unary, true),
    m(AUTH, "RoleRevokePermission", Unary, true),
    m(HEALTH, "Check", Unary, true),
    m(HEALTH, "Watch", ServerStream, true),
    m(ELECTION, "Campaign", Unary, false),
    m(ELECTION, "Proclaim", Unary, false),
    m(ELECTION, "Leader", Unary, false),
    m(ELECTION, "Observe", ServerStream, false),
    m(ELECTION, "Resign", Unary, false),
    m(LOCK, "Lock", Unary, false),
    m(LOCK, "Unlock", Unary, false),
];

/// gRPC status code names, by code number (the `grpc_code` label).
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The counts of one method.
#[derive(Debug)]
pub struct GrpcStats {
    pub started: Counter,
    pub handled: [Counter; 17],
    pub msg_received: Counter,
    pub msg_sent: Counter,
    pub handling: Histogram<11>,
}

impl GrpcStats {
    const fn new() -> Self {
        GrpcStats {
            started: Counter::new(),
            handled: [const { Counter::new() }; 17],
            msg_received: Counter::new(),
            msg_sent: Counter::new(),
            handling: Histogram::new(&GRPC_BUCKETS),
        }
    }
}

/// One [`GrpcStats`] per entry of [`GRPC_METHODS`], same index.
pub static GRPC_STATS: [GrpcStats; 50] = [const { GrpcStats::new() }; 50];

/// The index in [`GRPC_METHODS`] of the method a request path (`/service/method`) names.
pub fn grpc_method_index(path: &str) -> Option<usize> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    GRPC_METHODS
        .iter()
        .position(|m| m.service == service && m.method == method)
}

/// `--metrics extensive`: the gRPC handling-time histograms are printed (they are always
/// counted; etcd only turns them on with that flag).
static EXTENSIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_extensive(on: bool) {
    EXTENSIVE.store(on, Ordering::Relaxed);
}

pub fn extensive() -> bool {
    EXTENSIVE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds_and_count_everything() {
        static H: Histogram<14> = Histogram::new(&DISK_BUCKETS);
        H.observe(0.0005);
        H.observe(0.001);
        H.observe(0.003);
        H.observe(100.0);
        let v = H.values();
        assert_eq!(v.cumulative[0], 2, "0.0005 and exactly 0.001 are <= 0.001");
        assert_eq!(v.cumulative[1], 2);
        assert_eq!(v.cumulative[2], 3);
        assert_eq!(v.cumulative[13], 3, "100 s is only in +Inf");
        assert_eq!(v.count, 4);
        assert!((v.sum - 100.0045).abs() < 1e-9);
    }

    #[test]
    fn buckets_are_etcds_doublings() {
        for (k, b) in DISK_BUCKETS.iter().enumerate() {
            assert!((b - 0.001 * 2f64.powi(k as i32)).abs() < 1e-12);
        }
        for (k, b) in RTT_BUCKETS.iter().enumerate() {
            assert!((b - 0.0001 * 2f64.powi(k as i32)).abs() < 1e-12);
        }
    }

    #[test]
    fn grpc_paths_map_to_the_method_table() {
        let put = grpc_method_index("/etcdserverpb.KV/Put").map(|i| GRPC_METHODS[i]);
        assert!(matches!(
            put,
            Some(GrpcMethod {
                method: "Put",
                kind: GrpcType::Unary,
                ..
            })
        ));
        let watch = grpc_method_index("/etcdserverpb.Watch/Watch").map(|i| GRPC_METHODS[i].kind);
        assert_eq!(watch, Some(GrpcType::BidiStream));
        assert_eq!(grpc_method_index("/etcdserverpb.KV/Nope"), None);
        assert_eq!(grpc_method_index("/metrics"), None);
        let mut seen = std::collections::HashSet::new();
        for m in GRPC_METHODS {
            assert!(seen.insert((m.service, m.method)), "{} twice", m.method);
        }
    }

    #[test]
    fn a_txn_counts_when_it_did_more_than_one_thing() {
        assert!(!is_txn(0, 1, 0), "a lone put is no txn");
        assert!(!is_txn(0, 0, 0), "an empty txn is none");
        assert!(is_txn(1, 1, 0), "a compare (a range) and a put are");
        assert!(is_txn(0, 0, 2));
    }
}
