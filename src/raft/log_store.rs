//! The raft log store: openraft's `RaftLogStorage` on top of `wal/`.
//!
//! Entries are encoded with bincode and handed to the WAL's group-commit writer; the in-memory
//! [`LogCache`] keeps every entry after the last purge so that replication and re-apply never
//! touch the disk. The vote, the committed log ID and the "last purged" marker go through the
//! same writer, so every write reaches the disk in the order openraft issued it.
//!
//! Invariant: `append`'s callback fires only from the WAL's sync completion (never before the
//!   fdatasync that covers the entries).
//! Invariant: the cache holds a contiguous run of entries `(last_purged, last]`; no holes.
//! Invariant: `save_vote` returns only after the vote is durable.
//! Invariant: every commit advance is written to the WAL as the committed marker, and
//!   [`DurableCommit`] reports an index only once the marker covering it is durable; the state
//!   machine applies nothing past that (see `StateMachineStore::apply`), so after a restart
//!   openraft re-applies (from `read_committed`) everything this member ever applied and served,
//!   before it serves anything.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote};

use super::{LogId, NodeId, TypeConfig};
use crate::wal::{GroupCommit, LogRecord, Recovered, WalError, WalOp};

/// Entries that are in the log and not yet purged, plus the small raft state kept beside them.
#[derive(Debug, Default)]
pub struct LogCache {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
}

impl LogCache {
    fn check_contiguous(&self) {
        if cfg!(debug_assertions) {
            let mut expected = self.last_purged.map(|l| l.index + 1);
            for (index, entry) in &self.entries {
                debug_assert_eq!(*index, entry.log_id.index);
                if let Some(e) = expected {
                    debug_assert_eq!(*index, e, "hole in the raft log cache");
                }
                expected = Some(index + 1);
            }
        }
    }
}

/// openraft's log store for one member.
#[derive(Clone)]
pub struct LogStore {
    cache: Arc<Mutex<LogCache>>,
    wal: GroupCommit,
    /// How far the committed marker is durable (see [`DurableCommit`]).
    durable: Arc<watch::Sender<CommitDurability>>,
    /// The committed index raft last reported (`save_committed`), readable without a lock by
    /// the proposal path's apply-lag check.
    committed_index: Arc<AtomicU64>,
}

/// The highest committed index whose marker is durable, or the marker write's failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CommitDurability {
    index: u64,
    failed: bool,
}

/// Waits for the committed marker to be durable up to an index: the gate the state machine
/// passes before applying, so a restarted member never serves less than it served before.
#[derive(Clone)]
pub struct DurableCommit(watch::Receiver<CommitDurability>);

/// The committed marker could not be made durable (the WAL failed; the member must stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitNotDurable;

impl std::fmt::Display for CommitNotDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the committed index could not be written to the WAL")
    }
}

impl std::error::Error for CommitNotDurable {}

impl DurableCommit {
    /// Returns once the committed marker covers `index` durably.
    pub async fn covers(&self, index: u64) -> Result<(), CommitNotDurable> {
        let mut rx = self.0.clone();
        // A dropped sender means the log store is gone: nothing can become durable.
        let durable = rx
            .wait_for(|d| d.failed || d.index >= index)
            .await
            .is_ok_and(|d| !d.failed);
        if durable {
            Ok(())
        } else {
            Err(CommitNotDurable)
        }
    }
}

/// A handle that reads entries out of the cache (used by replication tasks).
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<LogCache>>,
}

/// Failure to rebuild the log from what the WAL recovered.
#[derive(Debug)]
pub enum LogRecoveryError {
    /// An entry payload, vote or marker in the WAL did not decode.
    Decode {
        what: &'static str,
        index: u64,
        reason: String,
    },
}

impl std::fmt::Display for LogRecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogRecoveryError::Decode {
                what,
                index,
                reason,
            } => {
                write!(
                    f,
                    "cannot decode {what} from the WAL (log index {index}): {reason}"
                )
            }
        }
    }
}

impl std::error::Error for LogRecoveryError {}

fn lock(cache: &Mutex<LogCache>) -> MutexGuard<'_, LogCache> {
    // A poisoned cache means a panic happened mid-update; the data is still the best we have and
    // every mutation below is a single map operation, so continuing is sound.
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    index: u64,
    bytes: &[u8],
) -> Result<T, LogRecoveryError> {
    crate::apply::decode_bounded(bytes).map_err(|e| LogRecoveryError::Decode {
        what,
        index,
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    bincode::serialize(value).map_err(|e| StorageIOError::write_logs(&e).into())
}

fn wal_write_error(e: WalError) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// Builds the store from what the WAL recovered at startup.
    pub fn recover(wal: GroupCommit, recovered: Recovered) -> Result<Self, LogRecoveryError> {
        let mut cache = LogCache::default();
        if let Some(bytes) = &recovered.purged {
            cache.last_purged = Some(decode("last purged log id", 0, bytes)?);
        }
        if let Some(bytes) = &recovered.vote {
            cache.vote = Some(decode("vote", 0, bytes)?);
        }
        if let Some(bytes) = &recovered.committed {
            cache.committed = Some(decode("committed log id", 0, bytes)?);
        }
        let purged_index = cache.last_purged.map(|l| l.index);
        for record in &recovered.entries {
            if purged_index.is_some_and(|p| record.index <= p) {
                continue;
            }
            let entry: Entry<TypeConfig> = decode("entry", record.index, &record.payload)?;
            if entry.log_id.index != record.index {
                return Err(LogRecoveryError::Decode {
                    what: "entry",
                    index: record.index,
                    reason: format!("payload carries index {}", entry.log_id.index),
                });
            }
            cache.entries.insert(record.index, entry);
        }
        cache.check_contiguous();
        let durable = CommitDurability {
            index: cache.committed.map_or(0, |l| l.index),
            failed: false,
        };
        Ok(LogStore {
            cache: Arc::new(Mutex::new(cache)),
            wal,
            committed_index: Arc::new(AtomicU64::new(durable.index)),
            durable: Arc::new(watch::channel(durable).0),
        })
    }

    /// The gate on the committed marker's durability, for the state machine.
    pub fn durable_commit(&self) -> DurableCommit {
        DurableCommit(self.durable.subscribe())
    }

    /// The committed index as raft last reported it; shared, so it can be read after the store
    /// was handed to raft.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    /// The last log ID: the newest entry, else the purge point.
    pub fn last_log_id(&self) -> Option<LogId> {
        let cache = lock(&self.cache);
        cache
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(cache.last_purged)
    }

    /// Appends `entry` right after the last entry and waits until it is durable. Only for use
    /// before raft starts (`--force-new-cluster` rewrites the membership this way).
    pub async fn append_before_start(
        &self,
        entry: Entry<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>> {
        debug_assert_eq!(
            self.last_log_id().map_or(0, |l| l.index + 1).max(1),
            entry.log_id.index,
            "the entry must extend the log"
        );
        let record = LogRecord {
            index: entry.log_id.index,
            term: entry.log_id.leader_id.term,
            payload: encode(&entry)?,
        };
        lock(&self.cache).entries.insert(entry.log_id.index, entry);
        self.run(WalOp::Append(vec![record])).await
    }

    async fn run(&self, op: WalOp) -> Result<(), StorageError<NodeId>> {
        self.wal.run(op).await.map_err(wal_write_error)
    }
}

fn read_range<RB: RangeBounds<u64>>(cache: &Mutex<LogCache>, range: RB) -> Vec<Entry<TypeConfig>> {
    lock(cache)
        .entries
        .range(range)
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let cache = lock(&self.cache);
        let last = cache.entries.values().next_back().map(|e| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id: last.or(cache.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = bincode::serialize(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.wal
            .run(WalOp::SaveVote(bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        lock(&self.cache).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.cache).vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // Queued (waiting only for room in the WAL queue), not synced here: the marker shares the
        // group commit's next fdatasync with the entries being appended, and only the state
        // machine waits for it (`DurableCommit`)
        // before applying past the previous marker. Bug guarded against: the marker lived in
        // memory only, so a member restarted without a leader served its snapshot state, a
        // revision lower than it had served before.
        let Some(log_id) = committed else {
            return Ok(());
        };
        let bytes = encode(&log_id)?;
        self.committed_index
            .fetch_max(log_id.index, std::sync::atomic::Ordering::Relaxed);
        lock(&self.cache).committed = Some(log_id);
        let durable = self.durable.clone();
        self.wal
            .submit(
                WalOp::SaveCommitted(bytes),
                Box::new(move |result: Result<(), WalError>| {
                    durable.send_modify(|d| match result {
                        Ok(()) => d.index = d.index.max(log_id.index),
                        Err(_) => d.failed = true,
                    });
                }),
            )
            .await;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(lock(&self.cache).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        {
            let mut cache = lock(&self.cache);
            for entry in entries {
                let index = entry.log_id.index;
                if let Some((last, _)) = cache.entries.last_key_value() {
                    debug_assert_eq!(
                        *last + 1,
                        index,
                        "append must extend the log without a hole"
                    );
                }
                records.push(LogRecord {
                    index,
                    term: entry.log_id.leader_id.term,
                    payload: encode(&entry)?,
                });
                cache.entries.insert(index, entry);
            }
            cache.check_contiguous();
        }
        self.wal
            .submit(
                WalOp::Append(records),
                Box::new(move |result: Result<(), WalError>| {
                    callback
                        .log_io_completed(result.map_err(|e| std::io::Error::other(e.to_string())));
                }),
            )
            .await;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        {
            let mut cache = lock(&self.cache);
            let _removed = cache.entries.split_off(&log_id.index);
            cache.check_contiguous();
        }
        self.run(WalOp::TruncateFrom(log_id.index)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let marker = encode(&log_id)?;
        {
            let mut cache = lock(&self.cache);
            debug_assert!(cache.last_purged.is_none_or(|p| p.index <= log_id.index));
            let kept = cache.entries.split_off(&(log_id.index + 1));
            cache.entries = kept;
            cache.last_purged = Some(log_id);
            cache.check_contiguous();
        }
        self.run(WalOp::PurgeUpto {
            index: log_id.index,
            marker,
        })
        .await?;
        tracing::info!(compact_index = log_id.index, "compacted Raft logs");
        Ok(())
    }
}
