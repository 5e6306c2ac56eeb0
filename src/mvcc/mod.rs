//! The revisioned key space: every version of every key, reads at any retained revision,
//! writes that produce watch events, compaction and `HashKV`.
//!
//! Owns: the key index (`key_index::KeyHistory` per key), the revision-ordered records, the
//! current and compacted revisions. Knows nothing of raft, the network, leases' lifetimes or
//! time: lease existence is asked of the caller, and every function is a deterministic function
//! of the store and its arguments.
//!
//! # Revisions
//! An empty store is at revision 1. Each write request (put, delete that removed something, txn
//! whose executed branch changed something, lease revoke that deleted keys) takes the next main
//! revision; its individual changes are numbered 0, 1, 2, ... as sub-revisions, so a change is
//! addressed by `Revision { main, sub }`. Reads, no-op deletes, compaction and lease grants do not
//! move the revision.
//!
//! # Key index, by example
//! Two maps hold the data. `records` maps each `Revision` to what happened there (a put with its
//! value, create revision, version and lease, or a tombstone). `index` maps each key to its
//! history: the revisions that touched it, split into generations. A generation is one lifetime
//! of the key, from the put that created it to the delete that ended it.
//!
//! Take key `k` and these writes (every other key is left out):
//!
//! ```text
//! rev 2  put k=a   generation 1 starts           k = a  create 2, mod 2,  version 1
//! rev 4  put k=b   generation 1 continues        k = b  create 2, mod 4,  version 2
//! rev 6  del k     generation 1 ends (tombstone) k absent
//! rev 8  put k=c   generation 2 starts           k = c  create 8, mod 8,  version 1
//! rev 10 put k=d   generation 2 continues        k = d  create 8, mod 10, version 2
//!
//! index:   k -> [ {puts 2, 4; tombstone 6}, {puts 8, 10; open} ]
//! records: 2 -> put a, 4 -> put b, 6 -> tombstone k, 8 -> put c, 10 -> put d
//! ```
//!
//! A read at revision R finds the last generation that started at or before R. If that
//! generation's tombstone is at or before R the key is absent at R; otherwise the visible value
//! is its last put at or before R. So a read at 5 sees `b` (generation 1, put 4), at 7 sees
//! nothing (tombstone 6), at 9 sees `c`. Each history also keeps its newest revision (10 here)
//! and whether that is a put, so a read at or after it (at 10 or later: most reads are at the
//! current revision) answers without looking into the generations.
//!
//! A put record's value is a shared `Bytes`: the `KeyValue` of a read, an event or a watch
//! response refers to the stored bytes instead of copying them (`mvccpb.KeyValue.value` is
//! generated as `bytes::Bytes`, see build.rs).
//!
//! Compaction at C promises that reads at C or later still work and gives up everything else.
//! For each key it keeps, per generation, the put visible at C and all that came after, and it
//! drops generations whose tombstone is at or before C entirely (nobody at ≥ C can see them):
//!
//! ```text
//! compact 3:  nothing changes (read at 3 needs put 2; 4, 6, 8, 10 are later)
//! compact 5:  drop 2          -> [ {puts 4; tombstone 6}, {puts 8, 10} ]
//! compact 7:  drop 2, 4, 6    -> [ {puts 8, 10} ]
//! compact 10: drop 2, 4, 6, 8 -> [ {puts 10} ]
//! ```
//!
//! A key whose last generation ended at or before C disappears from the index. After compaction
//! at C, reads below C fail with `Compacted`; a read at exactly C still succeeds.
//!
//! # Watch history
//! `records` in revision order is the event log: `events_between` (history.rs) reads a bounded
//! span of it to replay what a watcher missed, and every write returns the events it produced. An event's `prev_kv` is the
//! key as it was at the previous main revision, except for creations (version 1), which have none.
//!
//! Invariant: `compact_revision ≤ current_revision`; both only grow.
//! Invariant: every revision named by a key history has a record for that key and vice versa;
//!            a record's kind (put or tombstone) matches its place in the history.
//! Invariant: no record has a main revision above `current_revision`.
//! Invariant: `logical_bytes` equals the sum of [`Record::logical_bytes`] over `records` plus
//!            [`COUNTERS_BYTES`]: kept up to date by every insert and removal of a record (writes,
//!            compaction, decode), so `Status` reads it in O(1); `check` recounts it.
//! Invariant: a `Writer` with changes is finished before the store is read by anyone else.
//! Invariant: while a compaction is pending (in force for reads, carried out key by key by
//!            `compact_step`), the records and histories it will drop are invisible: reads at or
//!            above the point never select them, replay skips the one kind they would (a
//!            tombstone at the point), and whatever walks every record (hash, image, export,
//!            equality) works on `settled()`. So no answer depends on how far it got.

mod codec;
mod compact;
mod error;
mod history;
mod key_index;
mod range;
mod txn;
pub mod validate;
mod write;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod range_tests;
#[cfg(test)]
mod txn_tests;

use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdMap;
use prost::bytes::Bytes;

use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

pub(crate) use codec::bytes_serde;
pub use codec::UncheckedStore;
pub use codec::{PutFields, StoreBuilder};
pub use compact::StepDone;
pub use error::KvError;
#[cfg(test)]
pub use history::history_entries_visited;
pub use history::{HistoryPage, PageLimits};
use key_index::KeyHistory;
pub use key_index::Revision;

/// The revision of an empty store.
pub const FIRST_REVISION: i64 = 1;
/// `compact_revision()` of a store that was never compacted (etcd reports the same).
pub const NEVER_COMPACTED: i64 = -1;

/// The response of a write together with the watch events it produced (empty if nothing
/// changed). Each event carries `prev_kv` when the key existed before (see module header).
#[derive(Clone, Debug, PartialEq)]
pub struct Written<T> {
    pub response: T,
    pub events: Vec<Event>,
}

/// What happened at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Put {
        key: Arc<[u8]>,
        /// Shared with every response and event that carries it (cloning is a count).
        value: Bytes,
        create_revision: i64,
        version: i64,
        lease: i64,
    },
    Tombstone {
        key: Arc<[u8]>,
    },
}

/// Bytes counted per record on top of its key and value, for its revisions and metadata.
pub(crate) const RECORD_OVERHEAD_BYTES: u64 = 48;
/// Bytes counted once per store, for the current and compacted revisions.
pub(crate) const COUNTERS_BYTES: u64 = 16;

impl Record {
    /// What this record adds to [`Store::logical_bytes`]: key + value + a fixed overhead.
    pub fn logical_bytes(&self) -> u64 {
        let value_bytes = match self {
            Record::Put { value, .. } => value.len() as u64,
            Record::Tombstone { .. } => 0,
        };
        self.key().len() as u64 + value_bytes + RECORD_OVERHEAD_BYTES
    }

    pub fn key(&self) -> &Arc<[u8]> {
        match self {
            Record::Put { key, .. } | Record::Tombstone { key } => key,
        }
    }

    /// The pair as clients see it, `None` for a tombstone.
    pub fn key_value(&self, rev: Revision) -> Option<KeyValue> {
        match self {
            Record::Put {
                key,
                value,
                create_revision,
                version,
                lease,
            } => Some(KeyValue {
                key: key.to_vec(),
                create_revision: *create_revision,
                mod_revision: rev.main,
                version: *version,
                value: value.clone(),
                lease: *lease,
            }),
            Record::Tombstone { .. } => None,
        }
    }
}

/// Lower and upper bound of a key span, as the ordered maps take them.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Which keys a request addresses, from its `key` and `range_end` (etcd's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// `range_end` empty: the key alone.
    One(&'a [u8]),
    /// `range_end` is `"\0"`: every key ≥ `key`.
    From(&'a [u8]),
    /// `[key, range_end)` with `key < range_end`.
    Between(&'a [u8], &'a [u8]),
    /// `range_end ≤ key`: nothing.
    Nothing,
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::One(key),
            [0] => KeySpan::From(key),
            end if end > key => KeySpan::Between(key, end),
            _ => KeySpan::Nothing,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeySpan::One(one) => key == one,
            KeySpan::From(start) => key >= start,
            KeySpan::Between(start, end) => key >= start && key < end,
            KeySpan::Nothing => false,
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'a>> {
        match *self {
            KeySpan::One(one) => Some((Bound::Included(one), Bound::Included(one))),
            KeySpan::From(start) => Some((Bound::Included(start), Bound::Unbounded)),
            KeySpan::Between(start, end) => Some((Bound::Included(start), Bound::Excluded(end))),
            KeySpan::Nothing => None,
        }
    }
}

/// A response header with only the revision set; the server fills in cluster, member and term.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

/// The revisioned key space. `Clone` is O(1): the maps are persistent, so a snapshot can be
/// encoded from a clone while writes continue on the original.
#[derive(Clone, Debug)]
pub struct Store {
    /// Key → its retained history. `Arc` values keep copy-on-write of shared nodes cheap.
    index: OrdMap<Arc<[u8]>, Arc<KeyHistory>>,
    /// Revision → what happened there, for every retained revision.
    records: OrdMap<Revision, Arc<Record>>,
    current_revision: i64,
    compact_revision: i64,
    /// [`Store::logical_bytes`], maintained as records come and go (see the module header).
    logical_bytes: u64,
    /// A compaction already in force for reads but not yet carried out for every key (see
    /// compact.rs); `None` when the records hold exactly what the compaction point keeps.
    pending: Option<compact::Pending>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Store {
    /// Equal as clients can tell: a compaction still being carried out compares as finished.
    fn eq(&self, other: &Self) -> bool {
        if self.pending.is_some() || other.pending.is_some() {
            return *self.settled() == *other.settled();
        }
        self.current_revision == other.current_revision
            && self.compact_revision == other.compact_revision
            && self.logical_bytes == other.logical_bytes
            && self.records == other.records
            && self.index == other.index
    }
}

impl Store {
    /// An empty store at revision 1.
    pub fn new() -> Self {
        Store {
            index: OrdMap::new(),
            records: OrdMap::new(),
            current_revision: FIRST_REVISION,
            compact_revision: NEVER_COMPACTED,
            logical_bytes: COUNTERS_BYTES,
            pending: None,
        }
    }

    /// The revision of the latest write.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the latest compaction, `NEVER_COMPACTED` (-1) if there was none.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Number of keys that exist now (their last generation is open); O(keys), for
    /// `etcd_debugging_mvcc_keys_total`. Run it on a view, not under a lock.
    pub fn live_key_count(&self) -> usize {
        self.index.values().filter(|h| h.live().is_some()).count()
    }

    /// Number of retained records (live values, older versions and tombstones).
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Bytes the retained history takes, counted as keys + values + a fixed per-record
    /// overhead for revision and metadata. This is what `Status.dbSize` reports: oxetcd has no
    /// backend file, so the logical size is the honest equivalent: the two revision counters
    /// plus every record. O(1): kept up to date as records are inserted and removed.
    pub fn logical_bytes(&self) -> u64 {
        self.logical_bytes
    }

    /// Every retained record in revision order: its revision, key, and the pair as clients see
    /// it (`None` for a tombstone). Walks the persistent map: run it on a view, not under a lock.
    pub fn records(&self) -> impl Iterator<Item = (Revision, &[u8], Option<KeyValue>)> + '_ {
        self.records
            .iter()
            .map(|(rev, record)| (*rev, record.key().as_ref(), record.key_value(*rev)))
    }

    /// [`Store::logical_bytes`] recounted from every record; O(records). For `check` and tests.
    pub fn recount_logical_bytes(&self) -> u64 {
        COUNTERS_BYTES
            + self
                .records
                .values()
                .map(|record| record.logical_bytes())
                .sum::<u64>()
    }

    /// Inserts the record of a new revision and counts its bytes.
    pub(crate) fn insert_record(&mut self, rev: Revision, record: Record) {
        self.logical_bytes += record.logical_bytes();
        let replaced = self.records.insert(rev, Arc::new(record));
        debug_assert!(replaced.is_none(), "revision {rev} written twice");
    }

    /// Removes the record at `rev` (compaction) and uncounts its bytes.
    pub(crate) fn remove_record(&mut self, rev: &Revision) -> Option<Arc<Record>> {
        let removed = self.records.remove(rev)?;
        debug_assert!(self.logical_bytes >= removed.logical_bytes() + COUNTERS_BYTES);
        self.logical_bytes -= removed.logical_bytes();
        Some(removed)
    }

    /// The live pair for `key`, if the key exists now.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        let (rev, record) = self.live(key)?;
        record.key_value(rev)
    }

    /// Every live key that has a lease, as (key, lease ID), in key order.
    pub fn leased_keys(&self) -> impl Iterator<Item = (&[u8], i64)> + '_ {
        self.index.iter().filter_map(|(key, history)| {
            match self.records.get(&history.live()?)?.as_ref() {
                Record::Put { lease, .. } if *lease != 0 => Some((key.as_ref(), *lease)),
                _ => None,
            }
        })
    }

    /// The live put of `key` (never a tombstone).
    pub(crate) fn live(&self, key: &[u8]) -> Option<(Revision, &Record)> {
        let rev = self.index.get(key)?.live()?;
        self.record(rev).map(|record| (rev, record))
    }

    /// The pair visible for `key` to a read at `main`.
    pub(crate) fn visible(&self, key: &[u8], main: i64) -> Option<KeyValue> {
        let rev = self.index.get(key)?.visible_at(main)?;
        self.record(rev)?.key_value(rev)
    }

    pub(crate) fn record(&self, rev: Revision) -> Option<&Record> {
        let record = self.records.get(&rev).map(Arc::as_ref);
        debug_assert!(
            record.is_some(),
            "index names revision {rev} without a record"
        );
        record
    }

    /// The keys (with their histories) a span addresses, in key order.
    pub(crate) fn keys_in<'s>(
        &'s self,
        span: KeySpan<'s>,
    ) -> impl Iterator<Item = (&'s Arc<[u8]>, &'s Arc<KeyHistory>)> + 's {
        span.bounds()
            .into_iter()
            .flat_map(move |bounds| self.index.range::<_, [u8]>(bounds))
    }

    /// The watch event for the record at `rev`, with `prev_kv` as described in the module header.
    /// The key as it was just before main revision `main`: `None` when that is below the
    /// compaction point, whether or not a pending compaction dropped it yet (a finished one has).
    fn visible_before(&self, key: &[u8], main: i64) -> Option<KeyValue> {
        if main - 1 < self.compact_revision {
            return None;
        }
        self.visible(key, main - 1)
    }

    pub(crate) fn event_for(&self, rev: Revision, record: &Record) -> Event {
        match record.key_value(rev) {
            Some(kv) => {
                let prev_kv = if kv.version > 1 {
                    self.visible_before(&kv.key, rev.main)
                } else {
                    None
                };
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv),
                    prev_kv,
                }
            }
            None => {
                let key = record.key();
                let kv = KeyValue {
                    key: key.to_vec(),
                    mod_revision: rev.main,
                    ..KeyValue::default()
                };
                let prev_kv = self.visible_before(key, rev.main);
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(kv),
                    prev_kv,
                }
            }
        }
    }

    /// Checks every invariant of the module header; O(size). Used by tests, by snapshot decode
    /// and by debug builds after compaction.
    pub fn check(&self) -> Result<(), String> {
        if self.current_revision < FIRST_REVISION {
            return Err(format!(
                "current revision {} below 1",
                self.current_revision
            ));
        }
        if self.compact_revision > self.current_revision {
            return Err(format!(
                "compacted at {} beyond current {}",
                self.compact_revision, self.current_revision
            ));
        }
        let mut named = 0usize;
        for (key, history) in self.index.iter() {
            history.check().map_err(|e| format!("key {key:?}: {e}"))?;
            self.check_history(key, history)?;
            named += history.revisions().count();
        }
        if named != self.records.len() {
            return Err(format!(
                "{} records but the index names {named}",
                self.records.len()
            ));
        }
        let recounted = self.recount_logical_bytes();
        if recounted != self.logical_bytes {
            return Err(format!(
                "logical size counted as {} but the records add up to {recounted}",
                self.logical_bytes
            ));
        }
        match self.records.get_max() {
            Some((rev, _)) if rev.main > self.current_revision => Err(format!(
                "record at {rev} beyond current {}",
                self.current_revision
            )),
            _ => Ok(()),
        }
    }

    fn check_history(&self, key: &[u8], history: &KeyHistory) -> Result<(), String> {
        let mut previous: Option<(i64, i64)> = None; // (create_revision, version) of the last put
        for rev in history.revisions() {
            let record = self
                .records
                .get(&rev)
                .ok_or(format!("no record at {rev}"))?;
            if record.key().as_ref() != key {
                return Err(format!("record at {rev} is for another key"));
            }
            match record.as_ref() {
                Record::Put {
                    create_revision,
                    version,
                    ..
                } => {
                    let fits = match previous {
                        Some((create, prev_version)) => {
                            *create_revision == create && *version == prev_version + 1
                        }
                        None if *version == 1 => *create_revision == rev.main,
                        None => rev.main <= self.compact_revision && *create_revision <= rev.main,
                    };
                    if !fits {
                        return Err(format!("put at {rev} has create {create_revision} version {version} after {previous:?}"));
                    }
                    previous = Some((*create_revision, *version));
                }
                Record::Tombstone { .. } => {
                    if previous.is_none() {
                        return Err(format!("tombstone at {rev} of an absent key"));
                    }
                    previous = None;
                }
            }
        }
        Ok(())
    }
}
