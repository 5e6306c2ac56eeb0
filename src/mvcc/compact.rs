//! History: compaction, `HashKV`, and the event log replay that watch catch-up reads.
//!
//! Invariant: compaction never changes what a read at a revision ≥ the compaction point returns.
//! Invariant: `hash_kv(r)` depends only on the records retained at or below `r`, so two members
//!            with the same history and compaction point agree on it.

use std::sync::Arc;

use super::{header, KeySpan, KvError, Record, Revision, Store};
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
            .filter_map(|(key, history)| history.compact(revision).map(|done| (Arc::clone(key), done)))
            .collect();
        for (key, done) in changed {
            for rev in &done.removed {
                let removed = self.records.remove(rev);
                debug_assert!(removed.is_some(), "compaction dropped a revision {rev} without record");
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
        Ok(CompactionResponse { header: header(self.current_revision) })
    }

    /// CRC-32 (IEEE) over every retained record at or below `revision` (0 = current), in
    /// revision order, and the compaction point. Each record is hashed as: main and sub revision
    /// (i64 big-endian), a kind byte (1 put, 0 tombstone), key length (u64 BE) and key, then for a
    /// put value length and value, create revision, version and lease (i64 BE).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64), KvError> {
        let at = self.read_revision(revision)?;
        let mut hasher = crc32fast::Hasher::new();
        for (rev, record) in self.records.range(..=Revision::end_of(at)) {
            hasher.update(&rev.main.to_be_bytes());
            hasher.update(&rev.sub.to_be_bytes());
            let key = record.key();
            match record.as_ref() {
                Record::Put { value, create_revision, version, lease, .. } => {
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
        if start_revision < self.compact_revision {
            return Err(KvError::Compacted {
                requested: start_revision,
                compact_revision: self.compact_revision,
            });
        }
        let span = KeySpan::new(key, range_end);
        let mut events = Vec::new();
        let mut revisions = 0usize;
        let mut last_main = None;
        for (rev, record) in self.records.range(Revision::new(start_revision, 0)..) {
            if !span.contains(record.key()) {
                continue;
            }
            if last_main != Some(rev.main) {
                if revisions == max_revisions {
                    break;
                }
                revisions += 1;
                last_main = Some(rev.main);
            }
            events.push(self.event_for(*rev, record));
        }
        Ok(events)
    }
}

fn hash_bytes(hasher: &mut crc32fast::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}
