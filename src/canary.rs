//! Planted bugs for proving that the simulation suite catches what it claims to catch.
//!
//! Compiled in only with the test-only `canary` feature (off by default); without it
//! [`active`] is a constant `false` and every hook folds away. With the feature, a simulation
//! test picks at most one canary for its own thread with [`set`]. The selection is per thread
//! because madsim runs a whole simulated cluster on the test's thread; in a normal build the
//! WAL writer runs on its own thread and never sees a canary.
//!
//! Hooks (each a single `if canary::active(..)` at the site of the bug):
//! - [`Canary::AckBeforeFsync`] in `wal::group::commit_batch`: batches are reported durable
//!   without an fdatasync; only every [`SYNC_EVERY_BATCHES`]th batch syncs (a "lazy fsync").
//! - [`Canary::SkipRecoveryCrc`] in `wal::format::read_frame`: a frame whose body does not match
//!   its checksum is accepted.
//! - [`Canary::FollowerReadWithoutReadIndex`] in `api::kv::range`: a member that is not the
//!   leader answers a linearizable range from its own applied state, skipping the read index.
//! - [`Canary::DropWatchEvent`] in `watch::Hub::publish`: the event of one revision in
//!   [`DROP_EVENT_EVERY`] is not sent to live watchers.
//! - [`Canary::LeaseExpiryFromFollowerClock`] in `lease::lessor::Lessor::promote`: a member
//!   taking office expires leases by the deadlines its follower clock computed at grant time.
//! - [`Canary::WatchResumedLate`] in `watch::Hub` (watch create): a watch created at a past
//!   revision starts one revision later than asked, so a resuming client misses one event.
//! - [`Canary::ResendForwardedProposal`] in `raft::network::PeerNetwork::forward_call`: a
//!   follower that forwarded a client's write and heard nothing back within
//!   [`RESEND_FORWARD_AFTER`] sends it again (the write may apply twice).
//! - [`Canary::AuthCheckBeforeReadIndex`] in `api::kv::range`: a linearizable range is checked
//!   against the member's auth store before the read index, so a member behind the leader
//!   decides with permissions already changed.
//!
//! - [`Canary::PlainPutKeepsLease`] in `apply::State::attach_leases`: a put without a lease
//!   leaves the key attached to the lease it had, so the lease's expiry deletes a key that no
//!   longer belongs to it.
//!
//! - [`Canary::V2QuorumGetWithoutReadIndex`] in `api::v2::get`: a member that is not the
//!   leader answers a v2 `quorum=true` GET from its own applied store.
//!
//! - [`Canary::StaleLeaseExpiryApplied`] in `apply::State::apply_command`: a leader's lease
//!   expiry applies although its entry reached the log in a later term than the one the
//!   expiry was decided in, when the deadlines had been restarted and a keep-alive may have
//!   renewed the lease.
//!
//! Invariant: with the feature off, no behaviour of the server depends on this module.

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    /// The WAL acknowledges appends before the covering fdatasync.
    AckBeforeFsync,
    /// WAL recovery does not verify record checksums.
    SkipRecoveryCrc,
    /// A follower serves linearizable reads without the read index.
    FollowerReadWithoutReadIndex,
    /// Live watchers miss the events of some revisions.
    DropWatchEvent,
    /// A new leader keeps the lease deadlines it computed as a follower (grant time + TTL,
    /// never renewed by keep-alives) instead of restarting every lease's TTL.
    LeaseExpiryFromFollowerClock,
    /// A watch asked to start at a past revision starts one revision later.
    WatchResumedLate,
    /// A forwarded proposal without an answer is forwarded again, though it may have applied.
    ResendForwardedProposal,
    /// A linearizable range's permission check runs before its read index.
    AuthCheckBeforeReadIndex,
    /// A put without a lease does not detach the key from its previous lease.
    PlainPutKeepsLease,
    /// A follower serves v2 quorum GETs without the read index.
    V2QuorumGetWithoutReadIndex,
    /// A lease expiry decided in one term applies from an entry of a later term.
    StaleLeaseExpiryApplied,
}

impl Canary {
    /// Every canary, for parsing and listing.
    pub const ALL: [Canary; 11] = [
        Canary::AckBeforeFsync,
        Canary::SkipRecoveryCrc,
        Canary::FollowerReadWithoutReadIndex,
        Canary::DropWatchEvent,
        Canary::LeaseExpiryFromFollowerClock,
        Canary::WatchResumedLate,
        Canary::ResendForwardedProposal,
        Canary::AuthCheckBeforeReadIndex,
        Canary::PlainPutKeepsLease,
        Canary::V2QuorumGetWithoutReadIndex,
        Canary::StaleLeaseExpiryApplied,
    ];

    /// The name [`PROCESS_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Canary::AckBeforeFsync => "ack-before-fsync",
            Canary::SkipRecoveryCrc => "skip-recovery-crc",
            Canary::FollowerReadWithoutReadIndex => "follower-read-without-read-index",
            Canary::DropWatchEvent => "drop-watch-event",
            Canary::LeaseExpiryFromFollowerClock => "lease-expiry-from-follower-clock",
            Canary::WatchResumedLate => "watch-resumed-late",
            Canary::ResendForwardedProposal => "resend-forwarded-proposal",
            Canary::AuthCheckBeforeReadIndex => "auth-check-before-read-index",
            Canary::PlainPutKeepsLease => "plain-put-keeps-lease",
            Canary::V2QuorumGetWithoutReadIndex => "v2-quorum-get-without-read-index",
            Canary::StaleLeaseExpiryApplied => "stale-lease-expiry-applied",
        }
    }

    /// The canary named `name`, if any.
    pub fn from_name(name: &str) -> Option<Canary> {
        Canary::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Environment variable that plants one canary in a whole process (canary builds only).
pub const PROCESS_ENV: &str = "OXETCD_CANARY";

/// Under [`Canary::ResendForwardedProposal`], how long a forwarded write waits for its answer
/// before it is sent again.
pub const RESEND_FORWARD_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Under [`Canary::DropWatchEvent`], revisions divisible by this lose their live events.
pub const DROP_EVENT_EVERY: i64 = 7;

/// Under [`Canary::AckBeforeFsync`], one batch in this many is synced.
pub const SYNC_EVERY_BATCHES: u64 = 16;

#[cfg(feature = "canary")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Canary>> = const { std::cell::Cell::new(None) };
    static BATCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether the lazy-fsync canary skips the sync of the current batch (counts batches).
#[cfg(feature = "canary")]
pub fn skip_this_sync() -> bool {
    if !active(Canary::AckBeforeFsync) {
        return false;
    }
    let n = BATCHES.with(|b| {
        let n = b.get() + 1;
        b.set(n);
        n
    });
    n % SYNC_EVERY_BATCHES != 0
}

/// Whether the lazy-fsync canary skips this sync: never, without the `canary` feature.
#[cfg(not(feature = "canary"))]
#[inline(always)]
pub fn skip_this_sync() -> bool {
    false
}

/// Selects the canary of the current thread (`None` turns planted bugs off).
#[cfg(feature = "canary")]
pub fn set(canary: Option<Canary>) {
    ACTIVE.with(|a| a.set(canary));
}

/// The canary the process environment selected (read once). An unknown name plants nothing
/// and is reported once on stderr, so a typo cannot pass for a clean run unnoticed.
#[cfg(feature = "canary")]
fn process_canary() -> Option<Canary> {
    static PROCESS: std::sync::OnceLock<Option<Canary>> = std::sync::OnceLock::new();
    *PROCESS.get_or_init(|| {
        let name = std::env::var(PROCESS_ENV).ok()?;
        let canary = Canary::from_name(&name);
        if canary.is_none() {
            eprintln!("{PROCESS_ENV}={name:?} names no canary; none is planted");
        }
        canary
    })
}

/// Whether `canary` is planted on the current thread (or in the whole process).
#[cfg(feature = "canary")]
pub fn active(canary: Canary) -> bool {
    ACTIVE.with(|a| a.get() == Some(canary)) || process_canary() == Some(canary)
}

/// Whether `canary` is planted: never, without the `canary` feature.
#[cfg(not(feature = "canary"))]
#[inline(always)]
pub fn active(_canary: Canary) -> bool {
    false
}

#[cfg(all(test, feature = "canary"))]
mod tests {
    use super::*;

    #[test]
    fn selection_is_per_thread() {
        set(Some(Canary::AckBeforeFsync));
        assert!(active(Canary::AckBeforeFsync));
        assert!(!active(Canary::SkipRecoveryCrc));
        let other = std::thread::spawn(|| active(Canary::AckBeforeFsync))
            .join()
            .unwrap();
        assert!(!other);
        let skipped = (0..SYNC_EVERY_BATCHES).filter(|_| skip_this_sync()).count() as u64;
        assert_eq!(skipped, SYNC_EVERY_BATCHES - 1);
        set(None);
        assert!(!active(Canary::AckBeforeFsync));
        assert!(!skip_this_sync());
    }

    #[test]
    fn names_round_trip() {
        for c in Canary::ALL {
            assert_eq!(Canary::from_name(c.name()), Some(c));
        }
        assert_eq!(Canary::from_name("no-such-canary"), None);
    }
}
