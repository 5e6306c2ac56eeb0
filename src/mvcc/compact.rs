//! History: compaction, `HashKV`, and the event log replay that watch catch-up reads.
//!
//! Invariant: compaction never changes what a read at a revision ≥ the compaction point returns.
//! Invariant: `hash_kv(r)` depends only on the records retained at or below `r`, so two members
//!            with the same history and compaction point agree on it.

use std::borrow::Cow;
use std::ops::Bound;
use std::sync::Arc;

use super::{header, KvError, Record, Revision, Store};
use crate::proto::etcdserverpb::CompactionResponse;
use crate::proto::mvccpb::Event;

/// A compaction in force for reads but not yet carried out for every key: the keys from
/// `resume` on (in key order; `None` = from the first key) may still hold records that no read
/// at or above `revision` can see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    revision: i64,
    resume: Option<Arc<[u8]>>,
}

/// What one [`Store::compact_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepDone {
    /// Keys whose history was looked at.
    pub keys: usize,
    /// Records dropped.
    pub removed: usize,
    /// Whether the pending compaction is now complete.
    pub finished: bool,
}

impl Store {
    /// Compacts at `revision` at once: [`Store::begin_compaction`] then every step. Used where
    /// nobody waits on the store (tools, tests, imports); members go step by step.
    pub fn compact(&mut self, revision: i64) -> Result<CompactionResponse, KvError> {
        let response = self.begin_compaction(revision)?;
        self.finish_compaction();
        Ok(response)
    }

    /// Puts a compaction at `revision` in force: from now on reads below it fail and reads at
    /// or above it see what they saw before. Dropping the records nobody can see any more is
    /// left to [`Store::compact_step`]; until that is done the store answers every read, hash
    /// and encoding exactly as if it were. No revision bump. Fails with `Compacted` if
    /// `revision` is not above the previous compaction point and with `FutureRev` if it is
    /// above the current revision. O(1).
    pub fn begin_compaction(&mut self, revision: i64) -> Result<CompactionResponse, KvError> {
        if revision <= self.compact_revision {
            return Err(KvError::Compacted {
                requested: revision,
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.current_revision {
            return Err(KvError::FutureRev {
                requested: revision,
                current_revision: self.current_revision,
            });
        }
        self.compact_revision = revision;
        // A newer point covers an unfinished older one: start over from the first key, since
        // the keys already done were only compacted to the older point.
        self.pending = Some(Pending {
            revision,
            resume: None,
        });
        Ok(CompactionResponse {
            header: header(self.current_revision),
        })
    }

    /// The compaction point still being carried out, if any.
    pub fn compaction_pending(&self) -> Option<i64> {
        self.pending.as_ref().map(|p| p.revision)
    }

    /// Carries the pending compaction on over the next keys, until `budget` units of work were
    /// done (one per key looked at and one per record dropped; at least one key per call).
    pub fn compact_step(&mut self, budget: usize) -> StepDone {
        let Some(pending) = self.pending.clone() else {
            return StepDone {
                finished: true,
                ..StepDone::default()
            };
        };
        let mut done = StepDone::default();
        let mut changed = Vec::new();
        let mut next = None;
        let from = match &pending.resume {
            Some(key) => Bound::Included(Arc::clone(key)),
            None => Bound::Unbounded,
        };
        for (key, history) in self.index.range((from, Bound::Unbounded)) {
            if done.keys > 0 && done.keys + done.removed >= budget {
                next = Some(Arc::clone(key));
                break;
            }
            done.keys += 1;
            if let Some(compacted) = history.compact(pending.revision) {
                done.removed += compacted.removed.len();
                changed.push((Arc::clone(key), compacted));
            }
        }
        for (key, compacted) in changed {
            for rev in &compacted.removed {
                let removed = self.remove_record(rev);
                assert!(
                    removed.is_some(),
                    "compaction dropped a revision {rev} without record"
                );
            }
            match compacted.remaining {
                Some(history) => {
                    self.index.insert(key, Arc::new(history));
                }
                None => {
                    self.index.remove(key.as_ref());
                }
            }
        }
        match next {
            Some(key) => {
                self.pending = Some(Pending {
                    revision: pending.revision,
                    resume: Some(key),
                })
            }
            None => {
                self.pending = None;
                done.finished = true;
                debug_assert_eq!(self.check(), Ok(()));
            }
        }
        done
    }

    /// Carries the pending compaction, if any, through to the end.
    pub fn finish_compaction(&mut self) {
        while !self.compact_step(usize::MAX).finished {}
    }

    /// This store with its pending compaction carried out: itself if there is none, otherwise
    /// a finished copy (O(1) to copy, O(keys) to finish). For whatever walks every record and
    /// must not depend on how far compaction got: hashes, images, equality.
    pub fn settled(&self) -> Cow<'_, Store> {
        if self.pending.is_none() {
            return Cow::Borrowed(self);
        }
        let mut copy = self.clone();
        copy.finish_compaction();
        Cow::Owned(copy)
    }

    /// Whether the record at `rev` is one the pending compaction will drop although the key
    /// walk has not reached it: records at or above the point survive compaction, except a
    /// tombstone exactly at the point (its generation ended there, nobody at or above can see
    /// it). What reads starting at the compaction point rely on to see a finished compaction.
    pub(crate) fn dropped_by_pending(&self, rev: Revision, record: &Record) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| rev.main == p.revision && matches!(record, Record::Tombstone { .. }))
    }

    /// CRC-32 (IEEE) over every retained record at or below `revision` (0 = current), in
    /// revision order, and the compaction point. Each record is hashed as: main and sub revision
    /// (i64 big-endian), a kind byte (1 put, 0 tombstone), key length (u64 BE) and key, then for a
    /// put value length and value, create revision, version and lease (i64 BE).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), KvError> {
        if self.pending.is_some() {
            return self.settled().hash_kv(revision);
        }
        let at = self.read_revision(revision)?;
        let mut hasher = crc32fast::Hasher::new();
        // A fixed domain prefix, so that even an empty key space has a non-zero hash.
        hasher.update(b"key");
        for (rev, record) in self.records.range(..=Revision::end_of(at)) {
            hasher.update(&rev.main.to_be_bytes());
            hasher.update(&rev.sub.to_be_bytes());
            let key = record.key();
            match record.as_ref() {
                Record::Put {
                    value,
                    create_revision,
                    version,
                    lease,
                    ..
                } => {
                    hasher.update(&[1]);
                    hash_bytes(&mut hasher, key);
                    hash_bytes(&mut hasher, value);
                    hasher.update(&create_revision.to_be_bytes());
                    hasher.update(&version.to_be_bytes());
                    hasher.update(&lease.to_be_bytes());
                }
                Record::Tombstone { .. } => {
                    hasher.update(&[0]);
                    hash_bytes(&mut hasher, key);
                }
            }
        }
        Ok((hasher.finalize(), self.compact_revision))
    }

    /// The events at revisions ≥ `start_revision` for keys in (`key`, `range_end`) (range rules),
    /// in revision order, covering at most `max_revisions` revisions and never splitting one.
    /// Fewer revisions than asked means the replay reached the current revision. Fails with
    /// `Compacted` if `start_revision` is below the compaction point (equal is allowed, as in
    /// etcd: watchers resume from the `compact_revision` they were told).
    pub fn events_since(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        max_revisions: usize,
    ) -> Result<Vec<Event>, KvError> {
        self.events_between(
            key,
            range_end,
            start_revision,
            self.current_revision,
            super::PageLimits::revisions(max_revisions),
        )
        .map(|page| page.events)
    }
}

fn hash_bytes(hasher: &mut crc32fast::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::range_tests::{delete, fixture, put};
    use crate::mvcc::NEVER_COMPACTED;
    use crate::proto::etcdserverpb::RangeRequest;

    /// The module-header example at store level: k put at 2 and 4, deleted at 6, put at 8 and
    /// 10 (with "other" written at the odd revisions).
    fn example() -> Store {
        let mut store = Store::new();
        for step in 0..9 {
            match step {
                0 => put(&mut store, "k", "a"),
                2 => put(&mut store, "k", "b"),
                4 => delete(&mut store, "k", ""),
                6 => put(&mut store, "k", "c"),
                8 => put(&mut store, "k", "d"),
                _ => put(&mut store, "other", &step.to_string()),
            };
        }
        assert_eq!(store.current_revision(), 10);
        store
    }

    fn value_at(store: &Store, key: &str, revision: i64) -> Result<Option<String>, KvError> {
        let req = RangeRequest {
            key: key.into(),
            revision,
            ..Default::default()
        };
        let response = store.range(&req)?;
        Ok(response
            .kvs
            .first()
            .map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()))
    }

    /// A replay from the compaction point must not show the tombstone at the point, whether or
    /// not the key walk reached its key yet (a finished compaction dropped it).
    #[test]
    fn replay_from_a_pending_point_hides_the_tombstone_there() {
        let full = example();
        let mut eager = full.clone();
        eager.compact(6).unwrap();
        let mut lazy = full.clone();
        lazy.begin_compaction(6).unwrap();
        assert_eq!(lazy.compaction_pending(), Some(6));
        assert_eq!(lazy.record_count(), full.record_count());
        let all = |s: &Store| s.events_since(6, b"\0", b"\0", usize::MAX).unwrap();
        assert_eq!(all(&lazy), all(&eager));
        let k = |s: &Store| s.events_since(6, b"k", b"", usize::MAX).unwrap();
        assert_eq!(k(&lazy), k(&eager));
        assert!(
            k(&full).iter().any(|e| e.r#type == 1),
            "the tombstone is in the log"
        );
        assert_eq!(lazy.hash_kv(0), eager.hash_kv(0));
        assert!(lazy == eager);
    }

    /// Each step looks at one key at least and stops once its budget is spent; the last one
    /// says so and leaves the records a compaction at once leaves.
    #[test]
    fn steps_keep_to_their_budget() {
        let mut eager = example();
        eager.compact(9).unwrap();
        let mut lazy = example();
        lazy.begin_compaction(9).unwrap();
        // Keys "k" (2, 4 and the tombstone 6 go) and "other" (3, 5 and 7 go).
        let first = lazy.compact_step(1);
        assert_eq!((first.keys, first.removed, first.finished), (1, 3, false));
        let second = lazy.compact_step(1);
        assert_eq!((second.keys, second.removed, second.finished), (1, 3, true));
        assert_eq!(lazy.compaction_pending(), None);
        assert_eq!(lazy.record_count(), eager.record_count());
        lazy.check().unwrap();
        let none = lazy.compact_step(1);
        assert_eq!((none.keys, none.finished), (0, true));
    }

    #[test]
    fn worked_example() {
        // (compact at, records of k that remain)
        let table: [(i64, &[i64]); 5] = [
            (3, &[2, 4, 6, 8, 10]),
            (5, &[4, 6, 8, 10]),
            (7, &[8, 10]),
            (9, &[8, 10]),
            (10, &[10]),
        ];
        let full = example();
        for (at, remaining) in table {
            let mut store = full.clone();
            store.compact(at).unwrap();
            store.check().unwrap();
            let k_revisions: Vec<i64> = store
                .records
                .iter()
                .filter(|(_, record)| record.key().as_ref() == b"k")
                .map(|(rev, _)| rev.main)
                .collect();
            assert_eq!(k_revisions, remaining, "compact at {at}");
            for read in at..=10 {
                assert_eq!(
                    value_at(&store, "k", read),
                    value_at(&full, "k", read),
                    "read {read}"
                );
            }
            if at > 1 {
                assert!(matches!(
                    value_at(&store, "k", at - 1),
                    Err(KvError::Compacted { .. })
                ));
            }
        }
        assert_eq!(full.compact_revision(), NEVER_COMPACTED);
    }

    #[test]
    fn compaction_errors_and_revision() {
        let mut store = fixture();
        assert_eq!(
            store.compact(10).unwrap_err(),
            KvError::FutureRev {
                requested: 10,
                current_revision: 9
            }
        );
        let done = store.compact(5).unwrap();
        assert_eq!(
            done.header.unwrap().revision,
            9,
            "compaction does not move the revision"
        );
        assert_eq!(store.current_revision(), 9);
        assert_eq!(store.compact_revision(), 5);
        assert_eq!(
            store.compact(5).unwrap_err(),
            KvError::Compacted {
                requested: 5,
                compact_revision: 5
            }
        );
        assert_eq!(
            store.compact(4).unwrap_err(),
            KvError::Compacted {
                requested: 4,
                compact_revision: 5
            }
        );
        store.compact(9).unwrap();
        assert_eq!(store.record_count(), 5, "only the live pairs remain");
        // A key deleted before the compaction point leaves no trace.
        delete(&mut store, "a", "");
        put(&mut store, "z", "1");
        store.compact(11).unwrap();
        assert!(!store.index.contains_key(&b"a"[..]));
        store.check().unwrap();
    }

    #[test]
    fn hash_kv_rules() {
        let mut store = fixture();
        let (at_9, compacted) = store.hash_kv(0).unwrap();
        assert_eq!(compacted, NEVER_COMPACTED);
        assert_eq!(store.hash_kv(9).unwrap().0, at_9, "0 means current");
        assert_ne!(store.hash_kv(8).unwrap().0, at_9);
        assert_eq!(
            store.hash_kv(10).unwrap_err(),
            KvError::FutureRev {
                requested: 10,
                current_revision: 9
            }
        );
        // Writes after r do not change hash_kv(r).
        let (at_8, _) = store.hash_kv(8).unwrap();
        put(&mut store, "new", "1");
        assert_eq!(store.hash_kv(8).unwrap().0, at_8);
        // Same history, same hash; compaction changes what is hashed and is reported.
        let mut twin = fixture();
        put(&mut twin, "new", "1");
        assert_eq!(twin.hash_kv(0), store.hash_kv(0));
        store.compact(6).unwrap();
        twin.compact(6).unwrap();
        assert_eq!(store.hash_kv(7), twin.hash_kv(7));
        assert_eq!(store.hash_kv(7).unwrap().1, 6);
        assert_eq!(
            store.hash_kv(5).unwrap_err(),
            KvError::Compacted {
                requested: 5,
                compact_revision: 6
            }
        );
        let mut other = fixture();
        put(&mut other, "new", "2");
        assert_ne!(other.hash_kv(0).unwrap().0, fixture().hash_kv(0).unwrap().0);
    }

    #[test]
    fn events_since_replays_history() {
        let mut store = fixture();
        let all = store.events_since(1, b"\0", b"\0", usize::MAX).unwrap();
        assert_eq!(all.len(), 8, "one event per change since revision 2");
        let revisions: Vec<i64> = all
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        assert_eq!(revisions, vec![2, 3, 4, 5, 6, 7, 8, 9]);
        // Key filter and prev_kv: b was created at 3, deleted at 6, created again at 8.
        let b = store.events_since(2, b"b", b"", usize::MAX).unwrap();
        let shape: Vec<(i32, i64, Option<Vec<u8>>)> = b
            .iter()
            .map(|e| {
                (
                    e.r#type,
                    e.kv.as_ref().unwrap().mod_revision,
                    e.prev_kv.as_ref().map(|p| p.value.to_vec()),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![(0, 3, None), (1, 6, Some(b"22".to_vec())), (0, 8, None)]
        );
        // Batches stop at revision boundaries.
        let mut txn_store = Store::new();
        put(&mut txn_store, "x", "1");
        txn_store.delete_keys(&[]);
        put(&mut txn_store, "y", "1");
        put(&mut txn_store, "x", "2");
        delete(&mut txn_store, "\0", "\0");
        let batch = txn_store.events_since(2, b"\0", b"\0", 3).unwrap();
        assert_eq!(batch.len(), 3);
        let rest = txn_store.events_since(5, b"\0", b"\0", 3).unwrap();
        assert_eq!(rest.len(), 2, "both deletes of revision 5 come together");
        assert!(txn_store
            .events_since(5, b"\0", b"\0", 0)
            .unwrap()
            .is_empty());
        assert!(
            txn_store
                .events_since(6, b"\0", b"\0", 10)
                .unwrap()
                .is_empty(),
            "nothing yet"
        );
        // Compaction: replay from the compaction point works, from before it fails.
        store.compact(6).unwrap();
        assert_eq!(
            store.events_since(5, b"\0", b"\0", 10).unwrap_err(),
            KvError::Compacted {
                requested: 5,
                compact_revision: 6
            }
        );
        let resumed = store.events_since(7, b"\0", b"\0", 10).unwrap();
        assert_eq!(
            resumed,
            all[5..].to_vec(),
            "events after the compaction point are intact"
        );
        assert!(store.events_since(6, b"\0", b"\0", 10).is_ok());
    }
}
