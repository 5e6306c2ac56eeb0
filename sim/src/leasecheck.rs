//! The lease checker: a lease the client keeps alive must not be revoked before its TTL ran
//! out after the last keep-alive the client saw succeed.
//!
//! A keep-alive invoked at `i` and answered with a positive TTL renewed the lease no earlier
//! than `i`, so the lease lives at least until `i + ttl`. When a later keep-alive answers that
//! the lease is gone (TTL <= 0) at `g`, then `g >= i + ttl - slack` must hold. The slack covers
//! a deposed leader that has not yet learnt of its successor and renews in its own memory:
//! raft only bounds that window by the longest network fault plus an election.
//!
//! Keys attached to a lease are checked through the history instead: [`expiry_records`] turns
//! every lease that had a key into an [`Op::Expire`] of unknown outcome, invoked at the
//! earliest moment the lease may have expired ([`LeaseLife::earliest_expiry_ns`]), so the
//! linearizability, watch and durability checkers place the deletion no earlier than that.
//!
//! Invariant: only answers the client got are used.

use crate::history::{Op, Outcome, Record};

/// One lease as the client saw it (times in nanoseconds of simulated time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseLife {
    pub id: i64,
    pub ttl_s: i64,
    /// `(invoke_ns, complete_ns)` of every keep-alive answered with a positive TTL.
    pub renewed: Vec<(u64, u64)>,
    /// When a keep-alive first answered that the lease was gone.
    pub gone_ns: Option<u64>,
    /// When the grant was sent (the lease lives at least `ttl_s` after it).
    pub granted_ns: u64,
    /// The key a put attached to the lease, if the client attached one.
    pub key: Option<String>,
}

impl LeaseLife {
    /// The earliest moment (ns) the lease may have expired: its TTL after the grant or after the
    /// last keep-alive answered with a positive TTL, whichever was sent later, less `slack_ns`.
    pub fn earliest_expiry_ns(&self, slack_ns: u64) -> u64 {
        let ttl_ns = u64::try_from(self.ttl_s).unwrap_or(0) * 1_000_000_000;
        let last = self
            .renewed
            .iter()
            .map(|(invoke, _)| *invoke)
            .fold(self.granted_ns, u64::max);
        (last + ttl_ns).saturating_sub(slack_ns)
    }
}

/// One [`Op::Expire`] record (of unknown outcome, by `client`) per lease with a key attached,
/// invoked at [`LeaseLife::earliest_expiry_ns`]; `now_ns` is when the run stopped watching.
pub fn expiry_records(
    leases: &[LeaseLife],
    slack_ns: u64,
    client: u32,
    now_ns: u64,
) -> Vec<Record> {
    leases
        .iter()
        .filter_map(|l| {
            let key = l.key.clone()?;
            let invoke_ns = l.earliest_expiry_ns(slack_ns);
            Some(Record {
                client,
                op: Op::Expire { key, lease: l.id },
                invoke_ns,
                complete_ns: now_ns.max(invoke_ns),
                outcome: Outcome::Unknown,
            })
        })
        .collect()
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
            ..LeaseLife::default()
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

    #[test]
    fn an_expiry_is_invoked_a_ttl_after_the_later_of_grant_and_last_renewal() {
        let mut l = life(&[3, 6], None);
        l.granted_ns = 2 * S;
        assert_eq!(l.earliest_expiry_ns(S), 15 * S);
        l.granted_ns = 8 * S;
        assert_eq!(l.earliest_expiry_ns(0), 18 * S);
        assert_eq!(l.earliest_expiry_ns(30 * S), 0);
        assert!(expiry_records(&[l.clone()], 0, 9, 20 * S).is_empty());
        l.key = Some("k1".into());
        let records = expiry_records(&[l], 0, 9, 20 * S);
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].op,
            Op::Expire {
                key: "k1".into(),
                lease: 7
            }
        );
        assert_eq!(
            (records[0].invoke_ns, records[0].complete_ns),
            (18 * S, 20 * S)
        );
        assert!(records[0].unknown_write());
    }
}
