//! Cluster-level checkers: raft invariants over sampled metrics, and convergence of the members'
//! stores after healing. Pure code over plain data, unit-tested in every build.
//!
//! Raft invariants (from `RaftNode::metrics()` samples, 50 ms apart per member):
//! - at most one member claims leadership in any term;
//! - a member's applied index never decreases while its process lives (one incarnation);
//! - a member never reports applied > its last log index (a snapshot install raises both).
//!
//! Convergence: after healing, every member reports the same revision and the same HashKV.
//!
//! Invariant: a checker returns the first violation it finds, as a sentence naming the samples.

use std::collections::BTreeMap;

/// One observation of a member's raft metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub member: usize,
    /// Counts the member's starts: applied indexes only compare within one incarnation.
    pub incarnation: u32,
    pub at_ms: u64,
    pub term: u64,
    pub leader: bool,
    pub applied: u64,
    pub last_log: u64,
}

/// Checks the raft invariants over `samples` (in the order they were taken).
pub fn check_raft(samples: &[Sample]) -> Result<(), String> {
    let mut leaders: BTreeMap<u64, &Sample> = BTreeMap::new();
    let mut applied: BTreeMap<(usize, u32), &Sample> = BTreeMap::new();
    for s in samples {
        if s.leader {
            if let Some(other) = leaders.get(&s.term) {
                if other.member != s.member {
                    return Err(format!(
                        "two leaders in term {}: m{} (at {} ms) and m{} (at {} ms)",
                        s.term,
                        other.member + 1,
                        other.at_ms,
                        s.member + 1,
                        s.at_ms
                    ));
                }
            } else {
                leaders.insert(s.term, s);
            }
        }
        if s.applied > s.last_log {
            return Err(format!(
                "m{} applied {} beyond its last log index {} at {} ms",
                s.member + 1,
                s.applied,
                s.last_log,
                s.at_ms
            ));
        }
        let slot = (s.member, s.incarnation);
        if let Some(prev) = applied.get(&slot) {
            if s.applied < prev.applied {
                return Err(format!(
                    "m{} applied index went back from {} (at {} ms) to {} (at {} ms)",
                    s.member + 1,
                    prev.applied,
                    prev.at_ms,
                    s.applied,
                    s.at_ms
                ));
            }
        }
        applied.insert(slot, s);
    }
    Ok(())
}

/// What `Maintenance.HashKV` said on one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberHash {
    pub member: usize,
    pub revision: i64,
    pub compact_revision: i64,
    pub hash: u32,
}

/// Whether every member reports the same revision (the cluster caught up).
pub fn caught_up(hashes: &[MemberHash]) -> bool {
    hashes.windows(2).all(|w| w[0].revision == w[1].revision)
}

/// Checks that members at the same revision hold the same store.
pub fn check_converged(hashes: &[MemberHash]) -> Result<(), String> {
    for w in hashes.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.revision == b.revision
            && a.compact_revision == b.compact_revision
            && a.hash != b.hash
        {
            return Err(format!(
                "m{} and m{} differ at revision {} (compacted at {}): HashKV {:#x} vs {:#x}",
                a.member + 1,
                b.member + 1,
                a.revision,
                a.compact_revision,
                a.hash,
                b.hash
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(member: usize, inc: u32, term: u64, leader: bool, applied: u64, last: u64) -> Sample {
        Sample {
            member,
            incarnation: inc,
            at_ms: 0,
            term,
            leader,
            applied,
            last_log: last,
        }
    }

    #[test]
    fn a_healthy_history_passes() {
        let h = [
            s(0, 1, 1, true, 1, 1),
            s(1, 1, 1, false, 1, 1),
            s(0, 1, 1, true, 3, 4),
            s(1, 1, 2, true, 4, 4),
            s(0, 1, 2, false, 4, 5),
        ];
        assert_eq!(check_raft(&h), Ok(()));
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let h = [s(0, 1, 3, true, 1, 1), s(2, 1, 3, true, 1, 1)];
        let e = check_raft(&h).unwrap_err();
        assert!(e.contains("two leaders in term 3"), "{e}");
    }

    #[test]
    fn applied_going_back_is_caught_within_an_incarnation_only() {
        let h = [s(1, 1, 1, false, 7, 7), s(1, 1, 1, false, 5, 7)];
        assert!(check_raft(&h).unwrap_err().contains("went back"));
        let restarted = [s(1, 1, 1, false, 7, 7), s(1, 2, 1, false, 5, 7)];
        assert_eq!(check_raft(&restarted), Ok(()));
    }

    #[test]
    fn applied_beyond_the_log_is_caught() {
        let h = [s(0, 1, 1, false, 9, 8)];
        assert!(check_raft(&h).unwrap_err().contains("beyond its last log"));
    }

    fn mh(member: usize, revision: i64, hash: u32) -> MemberHash {
        MemberHash {
            member,
            revision,
            compact_revision: 0,
            hash,
        }
    }

    #[test]
    fn convergence_needs_equal_hashes_at_equal_revisions() {
        let same = [mh(0, 10, 5), mh(1, 10, 5), mh(2, 10, 5)];
        assert!(caught_up(&same));
        assert_eq!(check_converged(&same), Ok(()));
        let behind = [mh(0, 10, 5), mh(1, 9, 4)];
        assert!(!caught_up(&behind));
        assert_eq!(check_converged(&behind), Ok(()));
        let diverged = [mh(0, 10, 5), mh(1, 10, 6)];
        assert!(check_converged(&diverged).unwrap_err().contains("m1 and m2 differ"));
    }
}
