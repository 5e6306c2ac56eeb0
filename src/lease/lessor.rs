//! Lease deadlines: the clock side of leases, kept by the leader only.
//!
//! The lease table itself (IDs, granted TTLs, attached keys) is replicated state in `lease/`.
//! Deadlines are not: like etcd (without lease checkpoints), the leader keeps them in memory and,
//! when it takes office or restarts, gives every lease its full granted TTL again. Expiry is never
//! applied locally: an expired lease is revoked by proposing `LeaseRevoke` through raft, so every
//! member deletes the keys at the same revision.
//!
//! The deadlines are kept on this member's own clock ([`Lessor::now`]): the machine's monotonic
//! clock, or in the simulation one that runs faster or slower than real time by a set rate, as
//! a drifting quartz would.
//!
//! Invariant: a lease is proposed for revocation at most once at a time (`revoking`), and is not
//! renewed meanwhile. An expiry carries the term of the promotion it was decided under
//! ([`Lessor::take_expired`]) and applies only from an entry of that term (`apply`): a new
//! term restarts the deadlines and clears the marks, so what the expiry loop still proposes
//! from an older list changes nothing.
//! Invariant: keys are deleted only by applying a committed revoke, never from a clock here.
//! Invariant: every grant and revoke applied here bumps `changes`, so a promotion built from a
//! state view taken before one of them is refused (it would resurrect a revoked lease or drop
//! a new one).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Deadline {
    ttl_s: i64,
    expires_at: Instant,
    revoking: bool,
}

/// The deadlines, how many grants and revokes were applied to them, and the term they belong
/// to: kept under one lock, so an expiry's term always matches the deadlines that decided it.
#[derive(Debug, Default)]
struct Table {
    deadlines: HashMap<i64, Deadline>,
    changes: u64,
    /// The raft term of the last [`Lessor::promote`]: until it matches the member's term as
    /// leader, the deadlines are a follower's (never renewed) and must not answer keep-alives.
    promoted_term: u64,
}

/// The leader's lease clock.
#[derive(Debug, Default)]
pub struct Lessor {
    table: Mutex<Table>,
    /// A drifting clock: `(origin, rate_ppm)`, where local time runs `1 + rate_ppm / 10^6` as
    /// fast as real time from `origin` on; `None`: real time.
    drift: Option<(Instant, i64)>,
}

/// `real` read on a clock that agreed with real time at `origin` and runs `rate_ppm` fast since.
fn drifted(origin: Instant, real: Instant, rate_ppm: i64) -> Instant {
    let elapsed = real.saturating_duration_since(origin).as_nanos();
    // rate_ppm is bounded by CLOCK_RATE_PPM_MAX, so the factor is positive.
    let factor = u128::try_from(1_000_000 + rate_ppm).unwrap_or(1_000_000);
    let local = elapsed * factor / 1_000_000;
    origin + Duration::from_nanos(u64::try_from(local).unwrap_or(u64::MAX))
}

fn ttl_duration(ttl_s: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_s).unwrap_or(0))
}

/// The largest drift rate a clock may be given (50%): beyond that timers and deadlines would
/// mean little, and the arithmetic below stays far from overflow.
pub const CLOCK_RATE_PPM_MAX: i64 = 500_000;

impl Lessor {
    /// A lessor whose clock runs `rate_ppm` parts per million faster (negative: slower) than
    /// real time; 0 is the machine's own clock.
    pub fn with_clock_rate(rate_ppm: i64) -> Self {
        assert!(
            rate_ppm.abs() <= CLOCK_RATE_PPM_MAX,
            "clock rate {rate_ppm} ppm out of range"
        );
        Lessor {
            drift: (rate_ppm != 0).then(|| (Instant::now(), rate_ppm)),
            ..Lessor::default()
        }
    }

    /// Now on this member's clock: the instant every deadline is measured against.
    pub fn now(&self) -> Instant {
        let real = Instant::now();
        match self.drift {
            None => real,
            Some((origin, rate_ppm)) => drifted(origin, real, rate_ppm),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A grant was applied: the lease runs for its full TTL from now.
    pub fn granted(&self, id: i64, ttl_s: i64, now: Instant) {
        let expires_at = now + ttl_duration(ttl_s);
        let mut table = self.lock();
        table.changes += 1;
        table.deadlines.insert(
            id,
            Deadline {
                ttl_s,
                expires_at,
                revoking: false,
            },
        );
    }

    /// A revoke was applied (by a client or by expiry).
    pub fn revoked(&self, id: i64) {
        let mut table = self.lock();
        table.changes += 1;
        table.deadlines.remove(&id);
    }

    /// How many grants and revokes were applied so far: read it before taking the state view
    /// a [`Lessor::promote`] is built from.
    pub fn changes(&self) -> u64 {
        self.lock().changes
    }

    /// This member leads in `term`: every lease of `leases` (the replicated lease table, read
    /// after [`Lessor::changes`] returned `changes_seen`) restarts from its granted TTL, once
    /// per term, and may be renewed again (an expiry decided in an earlier term no longer
    /// applies).
    ///
    /// `false` when a grant or revoke was applied since `changes_seen` (the table read may
    /// miss it): nothing changed then, and the caller reads again.
    pub fn promote(
        &self,
        term: u64,
        changes_seen: u64,
        leases: impl Iterator<Item = (i64, i64)>,
        now: Instant,
    ) -> bool {
        let mut table = self.lock();
        if table.promoted_term == term {
            return true;
        }
        if table.changes != changes_seen {
            return false;
        }
        let old = std::mem::take(&mut table.deadlines);
        let from_follower_clock =
            crate::canary::active(crate::canary::Canary::LeaseExpiryFromFollowerClock);
        for (id, ttl_s) in leases {
            let before = old.get(&id);
            let kept = before.filter(|_| from_follower_clock).map(|d| d.expires_at);
            table.deadlines.insert(
                id,
                Deadline {
                    ttl_s,
                    expires_at: kept.unwrap_or(now + ttl_duration(ttl_s)),
                    revoking: false,
                },
            );
        }
        table.promoted_term = term;
        true
    }

    /// Whether the deadlines belong to leadership in `term` (see `promoted_term`).
    pub fn promoted_for(&self, term: u64) -> bool {
        self.lock().promoted_term == term
    }

    /// Renews a lease; `None` when it is unknown or already being revoked.
    pub fn keep_alive(&self, id: i64, now: Instant) -> Option<i64> {
        let mut table = self.lock();
        let d = table.deadlines.get_mut(&id)?;
        if d.revoking || d.expires_at <= now {
            return None;
        }
        d.expires_at = now + ttl_duration(d.ttl_s);
        Some(d.ttl_s)
    }

    /// Whole seconds left (etcd truncates), `None` when unknown.
    pub fn remaining_s(&self, id: i64, now: Instant) -> Option<i64> {
        let table = self.lock();
        let d = table.deadlines.get(&id)?;
        let left = d.expires_at.saturating_duration_since(now);
        Some(i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
    }

    /// Leases whose deadline passed and that are not being revoked yet, and the term of the
    /// promotion their deadlines belong to (what their expiry must carry); marks them revoking.
    pub fn take_expired(&self, now: Instant) -> (u64, Vec<i64>) {
        let mut table = self.lock();
        let mut out: Vec<i64> = table
            .deadlines
            .iter_mut()
            .filter(|(_, d)| !d.revoking && d.expires_at <= now)
            .map(|(id, d)| {
                d.revoking = true;
                *id
            })
            .collect();
        out.sort_unstable();
        (table.promoted_term, out)
    }

    /// The revoke proposal for `id` failed; try again on the next pass.
    pub fn revoke_failed(&self, id: i64) {
        if let Some(d) = self.lock().deadlines.get_mut(&id) {
            d.revoking = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_runs_at_its_rate() {
        let origin = Instant::now();
        let later = origin + Duration::from_secs(10);
        assert_eq!(
            drifted(origin, later, 100_000) - origin,
            Duration::from_secs(11)
        );
        assert_eq!(
            drifted(origin, later, -100_000) - origin,
            Duration::from_secs(9)
        );
        assert_eq!(drifted(origin, later, 0), later);
        assert_eq!(
            drifted(later, origin, 100_000),
            later,
            "never before its origin"
        );
        // A lease granted at the origin on a clock 10% fast is over after 9.1 s of real time.
        let fast = Lessor::with_clock_rate(100_000);
        fast.granted(1, 10, origin);
        let real = origin + Duration::from_millis(9_100);
        assert_eq!(
            fast.take_expired(drifted(origin, real, 100_000)),
            (0, vec![1])
        );
        assert!(Lessor::with_clock_rate(0).drift.is_none());
    }

    #[test]
    fn expiry_keepalive_and_promotion() {
        let l = Lessor::default();
        let t0 = Instant::now();
        l.granted(1, 5, t0);
        l.granted(2, 10, t0);
        assert_eq!(l.remaining_s(1, t0 + Duration::from_millis(1500)), Some(3));
        assert!(l.take_expired(t0 + Duration::from_secs(4)).1.is_empty());
        // Keep-alive at 4 s pushes lease 1 to 9 s.
        assert_eq!(l.keep_alive(1, t0 + Duration::from_secs(4)), Some(5));
        assert_eq!(l.take_expired(t0 + Duration::from_secs(8)), (0, vec![]));
        assert_eq!(
            l.take_expired(t0 + Duration::from_secs(10)),
            (0, vec![1, 2])
        );
        // Being revoked: not handed out twice, not renewable.
        assert!(l.take_expired(t0 + Duration::from_secs(11)).1.is_empty());
        assert_eq!(l.keep_alive(1, t0 + Duration::from_secs(11)), None);
        l.revoke_failed(2);
        assert_eq!(l.take_expired(t0 + Duration::from_secs(12)), (0, vec![2]));
        l.revoke_failed(2);
        // A new leader restarts every lease from its full TTL.
        let seen = l.changes();
        assert!(l.promote(5, seen, [(2, 10)].into_iter(), t0 + Duration::from_secs(20)));
        assert_eq!(l.remaining_s(2, t0 + Duration::from_secs(20)), Some(10));
        assert_eq!(l.remaining_s(1, t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn deadlines_answer_only_for_the_promoted_term() {
        let l = Lessor::default();
        assert!(!l.promoted_for(3));
        assert!(l.promote(3, 0, std::iter::empty(), Instant::now()));
        assert!(l.promoted_for(3));
        assert!(!l.promoted_for(4), "a new term needs a new promotion");
    }

    /// Expiries carry the term whose deadlines decided them; a new term restarts every
    /// deadline and lets a lease whose expiry is still on its way be renewed (that expiry,
    /// carrying the old term, no longer applies).
    #[test]
    fn expiries_carry_the_term_of_their_deadlines() {
        let l = Lessor::default();
        let t0 = Instant::now();
        l.granted(1, 4, t0);
        l.granted(2, 4, t0);
        assert!(l.promote(7, l.changes(), [(1, 4), (2, 4)].into_iter(), t0));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.take_expired(later), (7, vec![1, 2]));
        assert_eq!(l.keep_alive(2, later), None, "renewed while being revoked");
        // Leadership lost and regained in term 9 while the expiry of lease 1 is proposed.
        assert!(l.promote(9, l.changes(), [(1, 4), (2, 4)].into_iter(), later));
        assert_eq!(l.keep_alive(2, later), Some(4));
        assert_eq!(l.take_expired(later), (9, vec![]));
        assert_eq!(
            l.take_expired(later + Duration::from_secs(4)),
            (9, vec![1, 2])
        );
    }

    /// A promotion built from a lease table read before a grant or revoke applied would
    /// resurrect the revoked lease (a keep-alive would then renew a lease whose keys are gone)
    /// or drop the granted one (it would never expire): it is refused.
    #[test]
    fn a_promotion_from_a_stale_table_is_refused() {
        let l = Lessor::default();
        let t0 = Instant::now();
        l.granted(1, 4, t0);
        let seen = l.changes();
        l.revoked(1);
        assert!(!l.promote(2, seen, [(1, 4)].into_iter(), t0));
        assert!(!l.promoted_for(2));
        assert_eq!(l.remaining_s(1, t0), None);
        let seen = l.changes();
        l.granted(3, 4, t0);
        assert!(!l.promote(2, seen, std::iter::empty(), t0));
        assert_eq!(l.remaining_s(3, t0), Some(4));
        assert!(l.promote(2, l.changes(), [(3, 4)].into_iter(), t0));
        assert!(l.promoted_for(2));
    }
}
