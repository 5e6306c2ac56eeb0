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
//! Invariant: a lease is proposed for revocation at most once at a time (`revoking`).
//! Invariant: keys are deleted only by applying a committed revoke, never from a clock here.

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

/// The leader's lease clock.
#[derive(Debug, Default)]
pub struct Lessor {
    deadlines: Mutex<HashMap<i64, Deadline>>,
    /// A drifting clock: `(origin, rate_ppm)`, where local time runs `1 + rate_ppm / 10^6` as
    /// fast as real time from `origin` on; `None`: real time.
    drift: Option<(Instant, i64)>,
    /// The raft term of the last [`Lessor::promote`]: until it matches the member's term as
    /// leader, the deadlines are a follower's (never renewed) and must not answer keep-alives.
    promoted_term: std::sync::atomic::AtomicU64,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Deadline>> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A grant was applied: the lease runs for its full TTL from now.
    pub fn granted(&self, id: i64, ttl_s: i64, now: Instant) {
        let expires_at = now + ttl_duration(ttl_s);
        self.lock().insert(
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
        self.lock().remove(&id);
    }

    /// This member became leader (or started): every lease restarts from its granted TTL.
    pub fn promote(&self, leases: impl Iterator<Item = (i64, i64)>, now: Instant) {
        let mut map = self.lock();
        let old = std::mem::take(&mut *map);
        let planted = crate::canary::active(crate::canary::Canary::LeaseExpiryFromFollowerClock);
        for (id, ttl_s) in leases {
            let kept = old.get(&id).filter(|_| planted).map(|d| d.expires_at);
            map.insert(
                id,
                Deadline {
                    ttl_s,
                    expires_at: kept.unwrap_or(now + ttl_duration(ttl_s)),
                    revoking: false,
                },
            );
        }
    }

    /// Records that the deadlines were restarted for leadership in `term`.
    pub fn mark_promoted(&self, term: u64) {
        self.promoted_term
            .store(term, std::sync::atomic::Ordering::Release);
    }

    /// Whether the deadlines belong to leadership in `term` (see `promoted_term`).
    pub fn promoted_for(&self, term: u64) -> bool {
        self.promoted_term
            .load(std::sync::atomic::Ordering::Acquire)
            == term
    }

    /// Renews a lease; `None` when it is unknown or already being revoked.
    pub fn keep_alive(&self, id: i64, now: Instant) -> Option<i64> {
        let mut map = self.lock();
        let d = map.get_mut(&id)?;
        if d.revoking || d.expires_at <= now {
            return None;
        }
        d.expires_at = now + ttl_duration(d.ttl_s);
        Some(d.ttl_s)
    }

    /// Whole seconds left (etcd truncates), `None` when unknown.
    pub fn remaining_s(&self, id: i64, now: Instant) -> Option<i64> {
        let map = self.lock();
        let d = map.get(&id)?;
        let left = d.expires_at.saturating_duration_since(now);
        Some(i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
    }

    /// Leases whose deadline passed and that are not being revoked yet; marks them revoking.
    pub fn take_expired(&self, now: Instant) -> Vec<i64> {
        let mut map = self.lock();
        let mut out: Vec<i64> = map
            .iter_mut()
            .filter(|(_, d)| !d.revoking && d.expires_at <= now)
            .map(|(id, d)| {
                d.revoking = true;
                *id
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The revoke proposal for `id` failed; try again on the next pass.
    pub fn revoke_failed(&self, id: i64) {
        if let Some(d) = self.lock().get_mut(&id) {
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
        assert_eq!(fast.take_expired(drifted(origin, real, 100_000)), vec![1]);
        assert!(Lessor::with_clock_rate(0).drift.is_none());
    }

    #[test]
    fn expiry_keepalive_and_promotion() {
        let l = Lessor::default();
        let t0 = Instant::now();
        l.granted(1, 5, t0);
        l.granted(2, 10, t0);
        assert_eq!(l.remaining_s(1, t0 + Duration::from_millis(1500)), Some(3));
        assert!(l.take_expired(t0 + Duration::from_secs(4)).is_empty());
        // Keep-alive at 4 s pushes lease 1 to 9 s.
        assert_eq!(l.keep_alive(1, t0 + Duration::from_secs(4)), Some(5));
        assert_eq!(
            l.take_expired(t0 + Duration::from_secs(8)),
            Vec::<i64>::new()
        );
        assert_eq!(l.take_expired(t0 + Duration::from_secs(10)), vec![1, 2]);
        // Being revoked: not handed out twice, not renewable.
        assert!(l.take_expired(t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(l.keep_alive(1, t0 + Duration::from_secs(11)), None);
        l.revoke_failed(2);
        assert_eq!(l.take_expired(t0 + Duration::from_secs(12)), vec![2]);
        // A new leader restarts every lease from its full TTL.
        l.promote([(2, 10)].into_iter(), t0 + Duration::from_secs(20));
        assert_eq!(l.remaining_s(2, t0 + Duration::from_secs(20)), Some(10));
        assert_eq!(l.remaining_s(1, t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn deadlines_answer_only_for_the_promoted_term() {
        let l = Lessor::default();
        assert!(!l.promoted_for(3));
        l.mark_promoted(3);
        assert!(l.promoted_for(3));
        assert!(!l.promoted_for(4), "a new term needs a new promotion");
    }
}
