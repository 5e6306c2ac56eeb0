//! The lease checker: a lease the client keeps alive must not be revoked before its TTL ran
//! out after the last keep-alive the client saw succeed.
//!
//! A keep-alive invoked at `i` and answered with a positive TTL renewed the lease no earlier
//! than `i`, so the lease lives at least until `i + ttl`. When a later keep-alive answers that
//! the lease is gone (TTL <= 0) at `g`, then `g >= i + ttl - slack` must hold. The slack covers
//! a deposed leader that has not yet learnt of its successor and renews in its own memory:
//! raft only bounds that window by the longest network fault plus an election.
//!
//! Invariant: only answers the client got are used.

/// One lease as the client saw it (times in nanoseconds of simulated time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseLife {
    pub id: i64,
    pub ttl_s: i64,
    /// `(invoke_ns, complete_ns)` of every keep-alive answered with a positive TTL.
    pub renewed: Vec<(u64, u64)>,
    /// When a keep-alive first answered that the lease was gone.
    pub gone_ns: Option<u64>,
}

/// Checks every lease; `slack_ns` as described above.
pub fn check(leases: &[LeaseLife], slack_ns: u64) -> Result<(), String> {
    for l in leases {
        let Some(gone) = l.gone_ns else { continue };
        let ttl_ns = u64::try_from(l.ttl_s).unwrap_or(0) * 1_000_000_000;
        let last = l
            .renewed
            .iter()
            .filter(|(_, complete)| *complete <= gone)
            .map(|(invoke, _)| *invoke)
            .max();
        if let Some(invoke) = last {
            if gone + slack_ns < invoke + ttl_ns {
                return Err(format!(
                    "lease {:x} (ttl {} s) renewed by a keep-alive sent at {} ms was gone at {} ms, {} ms early",
                    l.id,
                    l.ttl_s,
                    invoke / 1_000_000,
                    gone / 1_000_000,
                    (invoke + ttl_ns - gone) / 1_000_000
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn life(renewed: &[u64], gone: Option<u64>) -> LeaseLife {
        LeaseLife {
            id: 7,
            ttl_s: 10,
            renewed: renewed.iter().map(|t| (t * S, t * S + S / 10)).collect(),
            gone_ns: gone.map(|g| g * S),
        }
    }

    #[test]
    fn expiry_after_the_ttl_passes() {
        assert_eq!(check(&[life(&[0, 3, 6], Some(17))], 0), Ok(()));
        assert_eq!(check(&[life(&[0, 3, 6], None)], 0), Ok(()));
    }

    #[test]
    fn early_expiry_is_caught_beyond_the_slack_only() {
        let early = [life(&[0, 3, 6], Some(12))];
        assert!(check(&early, 0).unwrap_err().contains("4000 ms early"));
        assert_eq!(check(&early, 5 * S), Ok(()));
    }
}
