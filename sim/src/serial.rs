//! Serializable reads: a member answers from its own applied state, which may be stale but must
//! be a state the store really had. Checked against the client history of writes:
//!
//! - the header revision is at most the newest revision the run ever saw committed;
//! - a returned key was written with that exact value by a write that was not definitely
//!   failed, and an acknowledged write of that value owns that `mod_revision`;
//! - `mod_revision <= revision`, and no acknowledged write on the key has a revision in
//!   `(mod_revision, revision]` (the value was still current at the read revision).
//!
//! Invariant: only facts the clients were told are used; unknown writes never convict.

use std::collections::HashMap;

use crate::history::{History, Op, Seen};

/// One serializable single-key read and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialRead {
    pub member: usize,
    pub key: String,
    pub revision: i64,
    pub seen: Option<Seen>,
}

/// Checks every read of `reads` against `history`; `committed_max` is the newest revision the
/// run knows was committed (e.g. the final read revision).
pub fn check(history: &History, reads: &[SerialRead], committed_max: i64) -> Result<(), String> {
    let mut writers: HashMap<&str, (&Op, Option<i64>, bool)> = HashMap::new();
    for r in &history.records {
        if let Some(v) = r.op.written_value() {
            let failed = r.outcome == crate::history::Outcome::Failed;
            let acked_at = if r.acked_write() {
                r.effect().map(|(rev, _)| rev)
            } else {
                None
            };
            writers.insert(v, (&r.op, acked_at, failed));
        }
    }
    for read in reads {
        if read.revision > committed_max {
            return Err(format!(
                "serializable read of {} on m{} answered at revision {} beyond the newest committed {committed_max}",
                read.key,
                read.member + 1,
                read.revision
            ));
        }
        let Some(seen) = &read.seen else { continue };
        let Some((op, acked_at, failed)) = writers.get(seen.value.as_str()) else {
            return Err(format!(
                "serializable read of {} on m{} returned {:?}, which no client wrote",
                read.key,
                read.member + 1,
                seen.value
            ));
        };
        if *failed || op.key() != read.key {
            return Err(format!(
                "serializable read of {} on m{} returned {:?}, written by a failed op or to another key",
                read.key,
                read.member + 1,
                seen.value
            ));
        }
        if acked_at.is_some_and(|rev| rev != seen.mod_revision) || seen.mod_revision > read.revision
        {
            return Err(format!(
                "serializable read of {} on m{} returned {:?} at mod_revision {} (read revision {}), acknowledged at {:?}",
                read.key,
                read.member + 1,
                seen.value,
                seen.mod_revision,
                read.revision,
                acked_at
            ));
        }
        if let Some(newer) = newer_acked_write(history, &read.key, seen.mod_revision, read.revision)
        {
            return Err(format!(
                "serializable read of {} on m{} at revision {} returned {:?} (mod_revision {}), but an acknowledged write changed the key at revision {newer}",
                read.key,
                read.member + 1,
                read.revision,
                seen.value,
                seen.mod_revision
            ));
        }
    }
    Ok(())
}

fn newer_acked_write(history: &History, key: &str, after: i64, upto: i64) -> Option<i64> {
    history
        .records
        .iter()
        .filter(|r| r.op.key() == key && r.acked_write())
        .filter_map(|r| r.effect().map(|(rev, _)| rev))
        .find(|rev| *rev > after && *rev <= upto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::put;

    fn read(key: &str, revision: i64, seen: Option<(&str, i64)>) -> SerialRead {
        SerialRead {
            member: 1,
            key: key.into(),
            revision,
            seen: seen.map(|(v, m)| Seen {
                value: v.into(),
                mod_revision: m,
            }),
        }
    }

    fn history() -> History {
        History {
            records: vec![put("a", "v1", 2), put("a", "v2", 4), put("b", "w1", 3)],
        }
    }

    #[test]
    fn stale_but_real_states_pass() {
        let reads = [
            read("a", 2, Some(("v1", 2))),
            read("a", 3, Some(("v1", 2))),
            read("a", 4, Some(("v2", 4))),
            read("b", 1, None),
        ];
        assert_eq!(check(&history(), &reads, 4), Ok(()));
    }

    #[test]
    fn a_value_overwritten_before_the_read_revision_is_caught() {
        let e = check(&history(), &[read("a", 4, Some(("v1", 2)))], 4).unwrap_err();
        assert!(e.contains("changed the key at revision 4"), "{e}");
    }

    #[test]
    fn a_revision_from_the_future_is_caught() {
        let e = check(&history(), &[read("a", 9, Some(("v2", 4)))], 4).unwrap_err();
        assert!(e.contains("beyond the newest committed"), "{e}");
    }

    #[test]
    fn invented_or_misplaced_values_are_caught() {
        assert!(check(&history(), &[read("a", 4, Some(("zz", 4)))], 4)
            .unwrap_err()
            .contains("no client wrote"));
        assert!(check(&history(), &[read("a", 4, Some(("w1", 3)))], 4)
            .unwrap_err()
            .contains("another key"));
        assert!(check(&history(), &[read("a", 4, Some(("v2", 3)))], 4)
            .unwrap_err()
            .contains("acknowledged at Some(4)"));
    }
}
