//! Durability: every acknowledged write is in the final state or was superseded in the history.
//!
//! Given the history and the store as read after the last restart (every key of the workload,
//! with values and mod revisions, and the header revision), for each key take the acknowledged
//! write with the highest revision and require:
//! - the final revision is at least every acknowledged revision (revisions never go back);
//! - if the key is present, its `mod_revision` is at least that write's revision, and equal
//!   only when it holds exactly that write's value;
//! - if the key is absent, the last acknowledged write was a delete, or some delete of the key
//!   (acknowledged later, or of unknown outcome, as every lease expiry is) can explain it.
//!
//! Invariant: unknown outcomes only ever excuse a difference, never cause one.

use std::collections::BTreeMap;
use std::fmt;

use crate::history::{History, Op, Seen};

/// An acknowledged write that the final state does not contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub record: usize,
    pub detail: String,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acknowledged write #{} lost: {}",
            self.record, self.detail
        )
    }
}

impl std::error::Error for Lost {}

/// Checks the final state (`final_kvs`, read at header revision `final_revision`).
pub fn check(
    history: &History,
    final_kvs: &BTreeMap<String, Seen>,
    final_revision: i64,
) -> Result<usize, Lost> {
    let recs = &history.records;
    let mut last: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
    for (i, r) in recs.iter().enumerate() {
        if let Some((rev, true)) = r.effect() {
            if rev > final_revision {
                let detail =
                    format!("it has revision {rev}, the final store is at {final_revision}");
                return Err(Lost { record: i, detail });
            }
            let slot = last.entry(r.op.key()).or_insert((rev, i));
            if rev > slot.0 {
                *slot = (rev, i);
            }
        }
    }
    for (key, &(rev, i)) in &last {
        let op = &recs[i].op;
        match final_kvs.get(*key) {
            Some(now) if now.mod_revision > rev => {}
            Some(now)
                if now.mod_revision == rev && Some(now.value.as_str()) == op.written_value() => {}
            Some(now) => {
                let detail =
                    format!("{key:?} was written at {rev} by {op:?}, final store has {now:?}");
                return Err(Lost { record: i, detail });
            }
            None if matches!(op, Op::Delete { .. }) => {}
            None => {
                let explained = recs.iter().any(|o| {
                    matches!(o.op, Op::Delete { .. } | Op::Expire { .. })
                        && o.op.key() == *key
                        && (o.unknown_write() || o.effect().is_some_and(|(r2, w)| w && r2 > rev))
                });
                if !explained {
                    let detail = format!("{key:?} was written at {rev} by {op:?} and is absent with no delete after it");
                    return Err(Lost { record: i, detail });
                }
            }
        }
    }
    Ok(last.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Outcome, Record};

    fn put(key: &str, value: &str, rev: i64, at: u64) -> Record {
        Record {
            client: 0,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
            invoke_ns: at,
            complete_ns: at + 1,
            outcome: Outcome::Put {
                revision: rev,
                prev: None,
            },
        }
    }

    fn seen(value: &str, rev: i64) -> Seen {
        Seen {
            value: value.into(),
            mod_revision: rev,
        }
    }

    #[test]
    fn lost_acknowledged_write_is_flagged() {
        let h = History {
            records: vec![put("a", "v1", 2, 0), put("a", "v2", 3, 10)],
        };
        // The store came back at revision 2: the write at 3 vanished in a crash.
        let kvs = BTreeMap::from([("a".to_string(), seen("v1", 2))]);
        let err = check(&h, &kvs, 2).unwrap_err();
        assert_eq!(err.record, 1);
        // Same revision reused by another value after the crash.
        let kvs = BTreeMap::from([("a".to_string(), seen("other", 3))]);
        assert_eq!(check(&h, &kvs, 3).unwrap_err().record, 1);
        // Key gone without any delete.
        assert_eq!(check(&h, &BTreeMap::new(), 3).unwrap_err().record, 1);
    }

    #[test]
    fn kept_or_superseded_writes_pass() {
        let mut h = History {
            records: vec![put("a", "v1", 2, 0), put("b", "w1", 3, 10)],
        };
        let kvs = BTreeMap::from([
            ("a".to_string(), seen("v1", 2)),
            ("b".to_string(), seen("x", 5)),
        ]);
        assert_eq!(check(&h, &kvs, 5), Ok(2));
        // "a" absent is fine once a delete of unknown outcome exists.
        h.records.push(Record {
            client: 1,
            op: Op::Delete { key: "a".into() },
            invoke_ns: 20,
            complete_ns: 30,
            outcome: Outcome::Unknown,
        });
        let kvs = BTreeMap::from([("b".to_string(), seen("w1", 3))]);
        assert_eq!(check(&h, &kvs, 4), Ok(2));
    }
}
