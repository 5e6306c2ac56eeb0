//! The watch checker: what one watcher received, segment by segment (a segment is one watch
//! from its start revision until the stream broke), against the clients' write history.
//!
//! - **Ordered and unique**: revisions strictly increase over the whole log (a resumed watch
//!   starts after the last revision delivered, so a repeat is a duplicate).
//! - **Atomic per revision**: every write of this workload is single-key (a lease holds at
//!   most one key, so its expiry is too), so a revision is exactly one event and a revision
//!   split over responses shows as a duplicate. (Catch-up responses may carry many revisions.)
//! - **Real**: an event at a revision an acknowledged write owns is that write (key, put value
//!   or delete); other events are writes of unknown outcome on the same key (a lease expiry
//!   is one: a delete).
//! - **No gaps**: every acknowledged write whose revision lies between a segment's start and
//!   its last delivered revision was delivered in that segment (but a delete at the start of a
//!   segment resumed at a compaction's revision, which the compaction removed).
//! - **prev_kv**: while the log is contiguous from revision 1 (no compaction skipped over), an
//!   event's `prev_kv` is the key as the previous event on it left it.
//!
//! Invariant: only what clients were told is trusted; unknown writes never convict.

use std::collections::{BTreeMap, HashMap};

use crate::history::{History, Op, Seen};
use crate::linear::Change;

/// One event as a watcher received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    pub prev: Option<Seen>,
}

/// One watch, from its start revision until its stream ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub start_revision: i64,
    /// The responses received, each a list of events.
    pub responses: Vec<Vec<WatchEvent>>,
    /// Set when the segment started after a compaction skipped revisions.
    pub after_compaction: bool,
}

/// What the segments saw change, per revision, for [`crate::linear::check_with_changes`]: the
/// first event delivered at each revision (this checker reports any other disagreement).
pub fn changes(segments: &[Segment]) -> BTreeMap<i64, Change> {
    let mut out = BTreeMap::new();
    for e in segments.iter().flat_map(|s| s.responses.iter().flatten()) {
        out.entry(e.revision).or_insert_with(|| Change {
            key: e.key.clone(),
            value: e.value.clone(),
        });
    }
    out
}

/// Checks a watcher's segments against `history`.
pub fn check(history: &History, segments: &[Segment]) -> Result<(), String> {
    let owners = acked_owners(history);
    let mut last_rev = 0i64;
    let mut state: Option<HashMap<String, Seen>> = None;
    for (si, seg) in segments.iter().enumerate() {
        if seg.start_revision <= 1 && si == 0 {
            state = Some(HashMap::new());
        }
        if seg.after_compaction {
            state = None;
        }
        let mut seg_last = seg.start_revision - 1;
        for resp in &seg.responses {
            for e in resp {
                if e.revision <= last_rev {
                    return Err(format!(
                        "segment {si}: revision {} delivered after {last_rev} (out of order or duplicated)",
                        e.revision
                    ));
                }
                last_rev = e.revision;
                seg_last = e.revision;
                check_real(history, &owners, e).map_err(|v| format!("segment {si}: {v}"))?;
                if let Some(st) = state.as_mut() {
                    let before = st.get(&e.key).cloned();
                    if e.prev != before {
                        return Err(format!(
                            "segment {si}: event at revision {} on {} has prev_kv {:?}, expected {:?}",
                            e.revision, e.key, e.prev, before
                        ));
                    }
                    match &e.value {
                        Some(v) => st.insert(
                            e.key.clone(),
                            Seen {
                                value: v.clone(),
                                mod_revision: e.revision,
                            },
                        ),
                        None => st.remove(&e.key),
                    };
                }
            }
        }
        for (rev, rec) in &owners {
            let delivered = seg.responses.iter().flatten().any(|e| e.revision == *rev);
            // A compaction at revision C keeps each key's last revision up to C but not a
            // deletion (etcd drops the tombstone), so a watch resumed at C, as its compacted
            // answer says, cannot see a delete made at C itself.
            let compacted_away = seg.after_compaction
                && *rev == seg.start_revision
                && matches!(rec, Op::Delete { .. });
            if *rev >= seg.start_revision && *rev <= seg_last && !delivered && !compacted_away {
                return Err(format!(
                    "segment {si}: gap: the acknowledged write at revision {rev} ({:?}) was not delivered",
                    rec
                ));
            }
        }
    }
    Ok(())
}

fn acked_owners(history: &History) -> HashMap<i64, &Op> {
    history
        .records
        .iter()
        .filter(|r| r.acked_write())
        .filter_map(|r| r.effect().map(|(rev, _)| (rev, &r.op)))
        .collect()
}

fn check_real(history: &History, owners: &HashMap<i64, &Op>, e: &WatchEvent) -> Result<(), String> {
    let matches = |op: &Op| {
        op.key() == e.key
            && match (&e.value, op) {
                (
                    Some(v),
                    Op::Put { value, .. } | Op::Cas { value, .. } | Op::LeasePut { value, .. },
                ) => v == value,
                (None, Op::Delete { .. } | Op::Expire { .. }) => true,
                _ => false,
            }
    };
    if let Some(op) = owners.get(&e.revision) {
        if !matches(op) {
            return Err(format!(
                "event at revision {} ({} = {:?}) is not the acknowledged write {:?}",
                e.revision, e.key, e.value, op
            ));
        }
        return Ok(());
    }
    let possible = history
        .records
        .iter()
        .any(|r| r.unknown_write() && matches(&r.op));
    if !possible {
        return Err(format!(
            "event at revision {} ({} = {:?}) matches no write of the history",
            e.revision, e.key, e.value
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{put, Outcome, Record};

    fn del(key: &str, revision: i64) -> Record {
        Record {
            client: 0,
            op: Op::Delete { key: key.into() },
            invoke_ns: 0,
            complete_ns: 1,
            outcome: Outcome::Deleted {
                revision,
                deleted: 1,
            },
        }
    }

    fn ev(revision: i64, key: &str, value: Option<&str>, prev: Option<(&str, i64)>) -> WatchEvent {
        WatchEvent {
            revision,
            key: key.into(),
            value: value.map(Into::into),
            prev: prev.map(|(v, m)| Seen {
                value: v.into(),
                mod_revision: m,
            }),
        }
    }

    fn history() -> History {
        History {
            records: vec![
                put("a", "v1", 2),
                put("b", "w1", 3),
                put("a", "v2", 4),
                del("a", 5),
            ],
        }
    }

    fn good_events() -> Vec<WatchEvent> {
        vec![
            ev(2, "a", Some("v1"), None),
            ev(3, "b", Some("w1"), None),
            ev(4, "a", Some("v2"), Some(("v1", 2))),
            ev(5, "a", None, Some(("v2", 4))),
        ]
    }

    fn seg(start: i64, events: &[WatchEvent]) -> Segment {
        Segment {
            start_revision: start,
            responses: events.iter().map(|e| vec![e.clone()]).collect(),
            after_compaction: false,
        }
    }

    #[test]
    fn a_complete_log_passes_whole_or_resumed() {
        let e = good_events();
        assert_eq!(check(&history(), &[seg(1, &e)]), Ok(()));
        let resumed = [seg(1, &e[..2]), seg(4, &e[2..])];
        assert_eq!(check(&history(), &resumed), Ok(()));
    }

    #[test]
    fn a_dropped_event_is_a_gap() {
        let mut e = good_events();
        e.remove(2);
        let err = check(&history(), &[seg(1, &e)]).unwrap_err();
        assert!(err.contains("gap") || err.contains("prev_kv"), "{err}");
        let err = check(&history(), &[seg(1, &e[..2]), seg(5, &e[2..])]).unwrap_err();
        assert!(err.contains("prev_kv"), "{err}");
    }

    #[test]
    fn duplicates_and_disorder_are_caught() {
        let e = good_events();
        let dup = [seg(1, &e[..3]), seg(3, &e[1..])];
        assert!(check(&history(), &dup).unwrap_err().contains("duplicated"));
        let mut swapped = e.clone();
        swapped.swap(0, 1);
        assert!(check(&history(), &[seg(1, &swapped)])
            .unwrap_err()
            .contains("out of order"));
    }

    #[test]
    fn wrong_values_prev_kv_and_split_revisions_are_caught() {
        let mut e = good_events();
        e[2].value = Some("zz".into());
        assert!(check(&history(), &[seg(1, &e)])
            .unwrap_err()
            .contains("not the acknowledged write"));
        let mut e = good_events();
        e[3].prev = None;
        assert!(check(&history(), &[seg(1, &e)])
            .unwrap_err()
            .contains("prev_kv"));
        let e = good_events();
        let batched = Segment {
            start_revision: 1,
            responses: vec![e[..3].to_vec(), e[3..].to_vec()],
            after_compaction: false,
        };
        assert_eq!(check(&history(), &[batched]), Ok(()));
        let split = Segment {
            start_revision: 1,
            responses: vec![e[..3].to_vec(), e[2..].to_vec()],
            after_compaction: false,
        };
        assert!(check(&history(), &[split])
            .unwrap_err()
            .contains("duplicated"));
    }

    #[test]
    fn after_compaction_prev_kv_is_not_judged() {
        let e = good_events();
        let mut late = seg(4, &e[2..]);
        late.after_compaction = true;
        assert_eq!(check(&history(), &[late]), Ok(()));
    }

    #[test]
    fn changes_are_the_first_event_seen_at_each_revision() {
        let events = good_events();
        let resumed = [seg(1, &events[..3]), seg(4, &events[2..])];
        let changes = changes(&resumed);
        assert_eq!(changes.len(), 4);
        let change = |key: &str, value: Option<&str>| Change {
            key: key.into(),
            value: value.map(Into::into),
        };
        assert_eq!(changes[&3], change("b", Some("w1")));
        assert_eq!(changes[&5], change("a", None));
    }

    /// A watch resumed at the compaction's revision C does not get a delete made at C: the
    /// compaction dropped that tombstone (etcd's rule). Found by a soak seed (deep_faults
    /// 173230: compaction at 103, where a delete of k2 was). Anything else stays a gap.
    #[test]
    fn a_delete_at_the_compaction_revision_may_be_missing_after_a_resume() {
        let mut records = history().records;
        records.push(put("b", "w2", 6));
        let history = History { records };
        let resumed = |events: &[WatchEvent]| {
            let mut s = seg(5, events);
            s.after_compaction = true;
            vec![seg(1, &good_events()[..2]), s]
        };
        let after = [ev(6, "b", Some("w2"), Some(("w1", 3)))];
        assert_eq!(check(&history, &resumed(&after)), Ok(()));
        // The same hole in a segment that was not resumed after a compaction is a gap.
        let plain = vec![seg(1, &good_events()[..2]), seg(5, &after)];
        assert!(check(&history, &plain).unwrap_err().contains("gap"));
        // A put at the compaction revision is kept, so missing it is a gap even then.
        let mut records = vec![put("a", "v1", 2), put("b", "w1", 3), put("a", "v2", 4)];
        records.push(put("a", "v3", 5));
        records.push(put("b", "w2", 6));
        let puts = History { records };
        assert!(check(&puts, &resumed(&after)).unwrap_err().contains("gap"));
    }
}
