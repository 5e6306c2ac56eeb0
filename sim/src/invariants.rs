//! Cluster-level checkers: raft invariants over sampled metrics, and convergence of the members'
//! stores after healing. Pure code over plain data, unit-tested in every build.
//!
//! Raft invariants (from `RaftNode::metrics()` samples, 100 ms apart per member):
//! - leader completeness: a member leading term T holds in its log every index a member had
//!   applied while in a term below T (the entry was committed by a leader of a term at most
//!   the applier's, and every leader of a later term has it; a deposed leader of an older term
//!   that has not heard of its successor is no violation). (openraft orders leaders by (term, node id), so
//!   two members may lead in one term one after the other; "one leader per term" is not an
//!   invariant of this raft, completeness is.)
//! - a member's term and applied index never decrease while its process lives (one
//!   incarnation);
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

/// Checks the raft invariants over `samples` (in the order they were taken, i.e. time order).
pub fn check_raft(samples: &[Sample]) -> Result<(), String> {
    let mut last: BTreeMap<(usize, u32), &Sample> = BTreeMap::new();
    // Per term: the sample with the highest applied index taken by a member in that term.
    let mut applied_in_term: BTreeMap<u64, &Sample> = BTreeMap::new();
    for s in samples {
        if s.applied > s.last_log {
            return Err(format!(
                "m{} applied {} beyond its last log index {} at {} ms",
                s.member + 1,
                s.applied,
                s.last_log,
                s.at_ms
            ));
        }
        let older = applied_in_term.range(..s.term).map(|(_, t)| *t);
        let top = older.max_by_key(|t| t.applied);
        if let Some(top) = top.filter(|top| s.leader && s.last_log < top.applied) {
            return Err(format!(
                "m{} leads term {} at {} ms with last log index {}, but m{} had applied (so a leader of term <= {} had committed) {} at {} ms",
                s.member + 1,
                s.term,
                s.at_ms,
                s.last_log,
                top.member + 1,
                top.term,
                top.applied,
                top.at_ms
            ));
        }
        if let Some(prev) = last.get(&(s.member, s.incarnation)) {
            if s.applied < prev.applied || s.term < prev.term {
                return Err(format!(
                    "m{} went back from term {} applied {} (at {} ms) to term {} applied {} (at {} ms)",
                    s.member + 1,
                    prev.term,
                    prev.applied,
                    prev.at_ms,
                    s.term,
                    s.applied,
                    s.at_ms
                ));
            }
        }
        last.insert((s.member, s.incarnation), s);
        let slot = applied_in_term.entry(s.term).or_insert(s);
        if s.applied > slot.applied {
            *slot = s;
        }
    }
    Ok(())
}

/// The samples where a member's (incarnation, term, leadership) changed, one per line.
pub fn timeline(samples: &[Sample]) -> String {
    let mut last: BTreeMap<usize, (u32, u64, bool)> = BTreeMap::new();
    let mut out = String::new();
    for s in samples {
        let now = (s.incarnation, s.term, s.leader);
        if last.insert(s.member, now) != Some(now) {
            out.push_str(&format!(
                "{} ms m{} start {} term {} {} applied {} last_log {}\n",
                s.at_ms,
                s.member + 1,
                s.incarnation,
                s.term,
                if s.leader { "LEADER" } else { "-" },
                s.applied,
                s.last_log
            ));
        }
    }
    out
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
        if a.revision == b.revision && a.compact_revision == b.compact_revision && a.hash != b.hash
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
    fn a_leader_missing_committed_entries_is_caught() {
        let stale_leader = [s(0, 1, 4, false, 5, 5), s(2, 1, 3, true, 1, 4)];
        assert_eq!(check_raft(&stale_leader), Ok(()));
        let h = [s(0, 1, 3, true, 5, 5), s(2, 1, 4, true, 1, 4)];
        let e = check_raft(&h).unwrap_err();
        assert!(
            e.contains("m3 leads term 4") && e.contains("m1 had applied"),
            "{e}"
        );
    }

    #[test]
    fn a_term_going_back_is_caught() {
        let h = [s(1, 1, 4, false, 1, 1), s(1, 1, 3, false, 1, 1)];
        assert!(check_raft(&h)
            .unwrap_err()
            .contains("went back from term 4"));
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
        assert!(check_converged(&diverged)
            .unwrap_err()
            .contains("m1 and m2 differ"));
    }
}
