//! History: compaction, `HashKV`, and the event log replay that watch catch-up reads.
//!
//! Invariant: compaction never changes what a read at a revision ≥ the compaction point returns.
//! Invariant: `hash_kv(r)` depends only on the records retained at or below `r`, so two members
//!            with the same history and compaction point agree on it.

use std::sync::Arc;

use super::{header, KvError, Record, Revision, Store};
use crate::proto::etcdserverpb::CompactionResponse;
use crate::proto::mvccpb::Event;

impl Store {
    /// Compacts at `revision`: reads below it fail from now on, what reads at or above it see is
    /// kept. No revision bump. Fails with `Compacted` if `revision` is not above the previous
    /// compaction point and with `FutureRev` if it is above the current revision.
    pub fn compact(&mut self, revision: i64) -> Result<CompactionResponse, KvError> {
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
        let changed: Vec<_> = self
            .index
            .iter()
            .filter_map(|(key, history)| {
                history
                    .compact(revision)
                    .map(|done| (Arc::clone(key), done))
            })
            .collect();
        for (key, done) in changed {
            for rev in &done.removed {
                let removed = self.remove_record(rev);
                debug_assert!(
                    removed.is_some(),
                    "compaction dropped a revision {rev} without record"
                );
            }
            match done.remaining {
                Some(history) => {
                    self.index.insert(key, Arc::new(history));
                }
                None => {
                    self.index.remove(key.as_ref());
                }
            }
        }
        self.compact_revision = revision;
        debug_assert_eq!(self.check(), Ok(()));
        Ok(CompactionResponse {
            header: header(self.current_revision),
        })
    }

    /// CRC-32 (IEEE) over every retained record at or below `revision` (0 = current), in
    /// revision order, and the compaction point. Each record is hashed as: main and sub revision
    /// (i64 big-endian), a kind byte (1 put, 0 tombstone), key length (u64 BE) and key, then for a
    /// put value length and value, create revision, version and lease (i64 BE).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), KvError> {
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
            .map(|kv| String::from_utf8(kv.value.clone()).unwrap()))
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
                    e.prev_kv.as_ref().map(|p| p.value.clone()),
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
