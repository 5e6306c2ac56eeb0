//! Every size, count and time limit of the server in one place, with etcd 3.5's values,
//! derived from a validated `Config`.
//!
//! Invariant: `grpc_max_recv_bytes == max_request_bytes + GRPC_OVERHEAD_BYTES`.
//! Invariant: `lease_ttl_min_s >= 1` and `lease_ttl_min_s <= lease_ttl_max_s` for every
//! configuration that passed validation (election timeout ≤ 50 s).

use std::time::Duration;

use super::{AutoCompaction, Config, QUOTA_BACKEND_BYTES_DEFAULT};

/// etcd adds this much to `--max-request-bytes` for the gRPC receive limit (512 KiB).
pub const GRPC_OVERHEAD_BYTES: u64 = 512 * 1024;

/// Proposals are refused ("etcdserver: too many requests") when a member's applied index lags
/// its committed index by more than this many entries (etcd's `maxGapBetweenApplyAndCommitIndex`).
pub const APPLY_LAG_ENTRIES_MAX: u64 = 5000;
/// Commands waiting in the proposal queue before proposers wait for room. etcd has no such
/// queue (a proposal waits on an unbuffered channel into raft); this is our bound.
pub const PROPOSAL_QUEUE_COMMANDS_MAX: usize = 4096;
/// Estimated bytes of the commands waiting in the proposal queue before proposers wait for
/// room (a command larger than this waits for an empty queue). No etcd equivalent.
pub const PROPOSAL_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes of WAL operations queued for the group-commit writer before raft's appends wait for
/// room (an operation larger than this waits for an empty queue). No etcd equivalent: etcd's
/// raft loop writes its WAL inline.
pub const WAL_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Limits with units in their names. Sizes are `u64` to match flags and the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    // requests
    pub max_txn_ops: u64,
    pub max_request_bytes: u64,
    /// gRPC receive limit: max_request_bytes + 512 KiB.
    pub grpc_max_recv_bytes: u64,
    /// gRPC send limit: 2^31 - 1.
    pub grpc_max_send_bytes: u64,
    pub grpc_keepalive_min_time: Duration,
    pub grpc_keepalive_interval: Duration,
    pub grpc_keepalive_timeout: Duration,
    /// 5 s + 2 × election timeout.
    pub request_timeout: Duration,
    /// Proposals are refused ("etcdserver: too many requests") when the applied index lags
    /// the committed index by more than this.
    pub apply_lag_entries_max: u64,
    /// Commands and estimated bytes waiting to be proposed before proposers wait for room.
    pub proposal_queue_commands_max: u64,
    pub proposal_queue_bytes_max: u64,
    /// Bytes of WAL operations waiting for the group-commit writer before appends wait.
    pub wal_queue_bytes_max: u64,
    /// Bound on one keep-alive a follower forwards to the leader: the shortest lease TTL,
    /// 1.5 election timeouts (a renewal slower than that is no use).
    pub keep_alive_forward_timeout: Duration,
    // storage
    /// NOSPACE threshold; `None` when the quota is disabled (negative flag).
    pub quota_backend_bytes: Option<u64>,
    pub snapshot_count: u64,
    /// Raft log entries kept behind a snapshot for slow followers.
    pub snapshot_catchup_entries: u64,
    /// 0 = unlimited.
    pub max_snapshots: u64,
    /// 0 = unlimited.
    pub max_wals: u64,
    /// Records at or above this size are treated as corruption during recovery.
    pub wal_record_bytes_max: u64,
    /// Snapshot stream chunk size (Maintenance.Snapshot).
    pub snapshot_chunk_bytes: u64,
    // raft timing
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Watch streams that require a leader are cancelled after this long without one.
    pub leader_lost_watch_cancel: Duration,
    // leases
    pub lease_ttl_max_s: i64,
    /// ceil(1.5 × election timeout) in etcd's tick arithmetic.
    pub lease_ttl_min_s: i64,
    // watch
    /// etcd's event buffer per watch stream (128). A stream's one bounded queue holds this
    /// plus `watch_ctrl_queue_len` responses of either kind (`member::MemberSpec`); a synced
    /// watcher that finds it full turns unsynced and catches up from history later.
    pub watch_event_queue_len: u64,
    /// etcd's control-response buffer per stream (16; created/canceled/progress), counted in
    /// the same queue as events.
    pub watch_ctrl_queue_len: u64,
    /// Unsynced watchers caught up per sync round.
    pub watch_sync_watchers_max: u64,
    /// Revisions per catch-up response.
    pub watch_catchup_revisions_max: u64,
    /// Responses larger than this are fragmented when the watcher asked for it.
    pub watch_fragment_bytes: u64,
    pub watch_progress_notify_interval: Duration,
    pub watch_progress_notify_interval_min: Duration,
    // membership
    pub learners_max: u64,
    // v2
    pub v2_event_history_len: u64,
    pub v2_ttl_sweep_interval: Duration,
    // auth
    pub auth_token_ttl: Duration,
    pub bcrypt_cost: u32,
    // compaction
    pub auto_compaction: AutoCompaction,
    /// Revision-mode compaction checks this often.
    pub auto_compaction_revision_check_interval: Duration,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        let election_timeout = Duration::from_millis(c.election_timeout_ms);
        let grpc_max_recv_bytes = c.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
        Limits {
            max_txn_ops: c.max_txn_ops,
            max_request_bytes: c.max_request_bytes,
            grpc_max_recv_bytes,
            grpc_max_send_bytes: i32::MAX as u64,
            grpc_keepalive_min_time: c.grpc_keepalive_min_time,
            grpc_keepalive_interval: c.grpc_keepalive_interval,
            grpc_keepalive_timeout: c.grpc_keepalive_timeout,
            request_timeout: Duration::from_secs(5) + election_timeout * 2,
            apply_lag_entries_max: APPLY_LAG_ENTRIES_MAX,
            proposal_queue_commands_max: PROPOSAL_QUEUE_COMMANDS_MAX as u64,
            proposal_queue_bytes_max: PROPOSAL_QUEUE_BYTES_MAX as u64,
            wal_queue_bytes_max: WAL_QUEUE_BYTES_MAX as u64,
            keep_alive_forward_timeout: election_timeout * 3 / 2,
            quota_backend_bytes: quota_bytes(c.quota_backend_bytes),
            snapshot_count: c.snapshot_count,
            snapshot_catchup_entries: 5000,
            max_snapshots: c.max_snapshots,
            max_wals: c.max_wals,
            wal_record_bytes_max: 10 * 1024 * 1024,
            snapshot_chunk_bytes: 32 * 1024,
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
            election_timeout,
            leader_lost_watch_cancel: election_timeout * 3,
            lease_ttl_max_s: 9_000_000_000,
            lease_ttl_min_s: lease_ttl_min_s(c.heartbeat_interval_ms, c.election_timeout_ms),
            watch_event_queue_len: 128,
            watch_ctrl_queue_len: 16,
            watch_sync_watchers_max: 512,
            watch_catchup_revisions_max: 1000,
            watch_fragment_bytes: grpc_max_recv_bytes,
            watch_progress_notify_interval: c.experimental_watch_progress_notify_interval,
            watch_progress_notify_interval_min: Duration::from_millis(100),
            learners_max: 1,
            v2_event_history_len: 1000,
            v2_ttl_sweep_interval: Duration::from_millis(500),
            auth_token_ttl: Duration::from_secs(c.auth_token_ttl_s),
            bcrypt_cost: c.bcrypt_cost,
            auto_compaction: c.auto_compaction,
            auto_compaction_revision_check_interval: Duration::from_secs(300),
        }
    }
}

impl Default for Limits {
    /// etcd's defaults.
    fn default() -> Limits {
        Limits::from_config(&Config::default())
    }
}

/// `--quota-backend-bytes`: 0 = 2 GiB, negative = disabled.
fn quota_bytes(flag: i64) -> Option<u64> {
    match u64::try_from(flag) {
        Ok(0) => Some(QUOTA_BACKEND_BYTES_DEFAULT),
        Ok(bytes) => Some(bytes),
        Err(_) => None,
    }
}

/// etcd: election ticks = election / heartbeat; minimum TTL = ceil((3 × ticks / 2) ×
/// heartbeat) in seconds, with integer division on the ticks.
pub fn lease_ttl_min_s(heartbeat_ms: u64, election_ms: u64) -> i64 {
    debug_assert!(
        heartbeat_ms > 0,
        "validated config has a positive heartbeat"
    );
    let ticks = election_ms / heartbeat_ms.max(1);
    let min_ms = (3 * ticks / 2).saturating_mul(heartbeat_ms);
    let min_s = min_ms.div_ceil(1000);
    i64::try_from(min_s).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_defaults() {
        let l = Limits::default();
        assert_eq!(l.max_txn_ops, 128);
        assert_eq!(l.max_request_bytes, 1_572_864);
        assert_eq!(l.grpc_max_recv_bytes, 2_097_152);
        assert_eq!(l.grpc_max_send_bytes, 2_147_483_647);
        assert_eq!(l.quota_backend_bytes, Some(2_147_483_648));
        assert_eq!(l.lease_ttl_max_s, 9_000_000_000);
        assert_eq!(l.lease_ttl_min_s, 2);
        assert_eq!(l.request_timeout, Duration::from_secs(7));
        assert_eq!(l.apply_lag_entries_max, 5000);
        assert_eq!(l.keep_alive_forward_timeout, Duration::from_millis(1500));
        assert_eq!(l.snapshot_count, 100_000);
        assert_eq!(l.snapshot_catchup_entries, 5000);
        assert_eq!(l.max_snapshots, 5);
        assert_eq!(l.max_wals, 5);
        assert_eq!(l.grpc_keepalive_min_time, Duration::from_secs(5));
        assert_eq!(l.grpc_keepalive_interval, Duration::from_secs(7200));
        assert_eq!(l.grpc_keepalive_timeout, Duration::from_secs(20));
        assert_eq!(l.watch_progress_notify_interval, Duration::from_secs(600));
        assert_eq!(l.auth_token_ttl, Duration::from_secs(300));
        assert_eq!(l.bcrypt_cost, 10);
        assert_eq!(l.leader_lost_watch_cancel, Duration::from_secs(3));
        assert_eq!(l.auto_compaction, AutoCompaction::Off);
    }

    #[test]
    fn min_lease_ttl_uses_tick_arithmetic() {
        assert_eq!(lease_ttl_min_s(100, 1000), 2);
        assert_eq!(lease_ttl_min_s(100, 500), 1);
        // 7 ticks → 3*7/2 = 10 ticks (integer division) × 300 ms = 3 s.
        assert_eq!(lease_ttl_min_s(300, 2100), 3);
        assert_eq!(lease_ttl_min_s(1000, 50_000), 75);
    }

    #[test]
    fn quota_flag_meanings() {
        assert_eq!(quota_bytes(0), Some(QUOTA_BACKEND_BYTES_DEFAULT));
        assert_eq!(quota_bytes(1024), Some(1024));
        assert_eq!(quota_bytes(-1), None);
    }
}
