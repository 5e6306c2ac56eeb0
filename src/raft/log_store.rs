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
//! Invariant: while the newest membership the log store knows of has this member as its only
//!   voter, the entries it appends as leader are committed once durable, so `append` writes the
//!   committed marker behind them in the same WAL operation (one fdatasync for both, instead of
//!   a second one before the state machine may apply). Any doubt (a membership entry in the
//!   batch, a truncation past the known membership, no membership known) falls back to the
//!   marker written when raft reports the commit.
//! Invariant: a [`LogReader`] (what a replication stream reads from) serves entries only while
//!   the log has not been truncated since it was made. openraft lets the stream of a deposed
//!   leader finish a multi-batch send in the background; once this member, now a follower,
//!   truncated its log and took the new leader's entries, such a stream would send the new
//!   entries behind its own stale `prev_log_id`, a log that breaks raft's ordering at the
//!   receiver (found by the deeper nemesis: openraft's `do_append_entries` assertion, a
//!   learner still on the old leader's vote). A stale reader returns nothing, which openraft
//!   sends as a heartbeat; a leader never truncates its own log, so a live stream is never
//!   starved.

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
    /// The newest membership known (from the log, or from the snapshot when the log holds
    /// none): the index of the entry that carries it and whether this member is its only voter.
    membership: Option<KnownMembership>,
    /// How many truncations the log has seen: a reader made before the latest one is stale.
    truncations: u64,
}

/// See `LogCache::membership`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KnownMembership {
    index: u64,
    sole_voter: bool,
}

impl LogCache {
    /// Notes the membership an entry carries, if any.
    fn note_entry(&mut self, me: NodeId, entry: &Entry<TypeConfig>) {
        if let openraft::EntryPayload::Membership(m) = &entry.payload {
            self.membership = Some(KnownMembership {
                index: entry.log_id.index,
                sole_voter: is_sole_voter(me, m),
            });
        }
    }
}

fn is_sole_voter(me: NodeId, membership: &openraft::Membership<NodeId, super::MemberNode>) -> bool {
    let mut voters = membership.voter_ids();
    voters.next() == Some(me) && voters.next().is_none()
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
    /// This member's ID (for the sole-voter rule of `append`).
    me: NodeId,
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

/// A handle that reads entries out of the cache (used by replication tasks); it reads nothing
/// once the log was truncated after it was made (see the module's invariants).
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<LogCache>>,
    /// `LogCache::truncations` when this reader was made.
    truncations: u64,
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
    /// Builds the store from what the WAL recovered at startup, for member `me`.
    pub fn recover(
        wal: GroupCommit,
        recovered: Recovered,
        me: NodeId,
    ) -> Result<Self, LogRecoveryError> {
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
            cache.note_entry(me, &entry);
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
            me,
        })
    }

    /// Tells the store the membership of the snapshot the state machine started from; it is
    /// used when the log holds no newer membership entry (the entry was purged).
    pub fn note_snapshot_membership(
        &self,
        index: Option<u64>,
        membership: &openraft::Membership<NodeId, super::MemberNode>,
    ) {
        let Some(index) = index else { return };
        let mut cache = lock(&self.cache);
        if cache.membership.is_none_or(|known| known.index < index) {
            cache.membership = Some(KnownMembership {
                index,
                sole_voter: is_sole_voter(self.me, membership),
            });
        }
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
        {
            let mut cache = lock(&self.cache);
            cache.note_entry(self.me, &entry);
            cache.entries.insert(entry.log_id.index, entry);
        }
        self.run(WalOp::Append(vec![record])).await
    }

    /// `RaftLogStorage::append` with a plain callback: caches the entries and queues them on
    /// the WAL, with the committed marker behind them when this member is the sole voter
    /// (see the module's invariants); `flushed` runs once they are durable or failed.
    async fn append_entries<I>(
        &self,
        entries: I,
        flushed: crate::wal::Done,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        let mut records = Vec::new();
        let mut last = None;
        let sole_voter;
        {
            let mut cache = lock(&self.cache);
            let known_before = cache.membership;
            let mut all_mine = true;
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
                all_mine &= entry.log_id.leader_id.voted_for() == Some(self.me);
                last = Some(entry.log_id);
                cache.note_entry(self.me, &entry);
                cache.entries.insert(index, entry);
            }
            cache.check_contiguous();
            // Committed once durable only if this member was, and stays, the only voter, and
            // leads: a membership entry in the batch changes the quorum from there on.
            sole_voter = all_mine
                && known_before.is_some_and(|k| k.sole_voter)
                && cache.membership == known_before;
        }
        let (op, marker) = match last {
            Some(log_id) if sole_voter => (
                WalOp::AppendCommitted {
                    entries: records,
                    committed: encode(&log_id)?,
                },
                Some(log_id.index),
            ),
            _ => (WalOp::Append(records), None),
        };
        let durable = self.durable.clone();
        self.wal
            .submit(
                op,
                Box::new(move |result: Result<(), WalError>| {
                    // The marker's durability is published before raft hears of the flush, so
                    // the commit raft reports next finds it durable (`save_committed`).
                    if let Some(index) = marker {
                        durable.send_modify(|d| match &result {
                            Ok(()) => d.index = d.index.max(index),
                            Err(_) => d.failed = true,
                        });
                    }
                    flushed(result);
                }),
            )
            .await;
        Ok(())
    }

    async fn run(&self, op: WalOp) -> Result<(), StorageError<NodeId>> {
        self.wal.run(op).await.map_err(wal_write_error)
    }
}

impl LogCache {
    /// Copies of the entries in `range`.
    fn entries_in<RB: RangeBounds<u64>>(&self, range: RB) -> Vec<Entry<TypeConfig>> {
        self.entries.range(range).map(|(_, e)| e.clone()).collect()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let cache = lock(&self.cache);
        if cache.truncations != self.truncations {
            // A deposed leader's stream: what the log holds now does not follow the
            // `prev_log_id` it would be sent behind.
            tracing::debug!(
                ?range,
                "stale replication reader: the log was truncated since"
            );
            return Ok(Vec::new());
        }
        Ok(cache.entries_in(range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(lock(&self.cache).entries_in(range))
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
            truncations: lock(&self.cache).truncations,
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
        if self.durable.borrow().index >= log_id.index {
            // The sole voter's marker went out with the entries (see `append`): already durable.
            return Ok(());
        }
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
        self.append_entries(
            entries,
            Box::new(move |result: Result<(), WalError>| {
                callback.log_io_completed(result.map_err(|e| std::io::Error::other(e.to_string())));
            }),
        )
        .await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        {
            let mut cache = lock(&self.cache);
            let _removed = cache.entries.split_off(&log_id.index);
            cache.truncations += 1;
            if cache.membership.is_some_and(|k| k.index >= log_id.index) {
                // The membership before the removed one is not tracked: assume nothing.
                cache.membership = None;
            }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::testing::{blank_ent, membership_ent};

    use super::*;
    use crate::io::sim::SimDisk;

    const ME: NodeId = 1;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn open(disk: &SimDisk) -> LogStore {
        let cfg = crate::wal::WalConfig::default();
        let dir = std::path::Path::new("/data/member/wal");
        let (wal, recovered) = crate::wal::Wal::open(Arc::new(disk.clone()), dir, cfg).unwrap();
        LogStore::recover(GroupCommit::new(wal), recovered, ME).unwrap()
    }

    fn voters(ids: &[NodeId]) -> Vec<BTreeSet<NodeId>> {
        vec![ids.iter().copied().collect()]
    }

    /// Appends and waits until the entries are durable.
    fn append(rt: &tokio::runtime::Runtime, store: &LogStore, entries: Vec<Entry<TypeConfig>>) {
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            store
                .append_entries(
                    entries,
                    Box::new(move |result| {
                        let _ = tx.send(result);
                    }),
                )
                .await
                .unwrap();
            rx.await.unwrap().unwrap();
        });
    }

    fn durable_index(store: &LogStore) -> u64 {
        store.durable.borrow().index
    }

    fn recovered_committed(rt: &tokio::runtime::Runtime, disk: &SimDisk) -> Option<u64> {
        let mut store = open(disk);
        rt.block_on(store.read_committed())
            .unwrap()
            .map(|l| l.index)
    }

    #[test]
    fn the_sole_voters_entries_carry_their_committed_marker() {
        let rt = runtime();
        let disk = SimDisk::new(1);
        let store = open(&disk);
        // The batch that makes this member the sole voter does not commit itself.
        append(&rt, &store, vec![membership_ent(1, ME, 1, voters(&[ME]))]);
        assert_eq!(durable_index(&store), 0);
        append(&rt, &store, vec![blank_ent(1, ME, 2), blank_ent(1, ME, 3)]);
        assert_eq!(
            durable_index(&store),
            3,
            "the marker rides the entries' fdatasync"
        );
        // Power loss keeps only what was synced: the marker survives with the entries, so
        // the restarted member re-applies everything it may have served.
        drop(store);
        disk.crash_drop_unsynced();
        assert_eq!(recovered_committed(&rt, &disk), Some(3));
        // Restarted, it knows its membership from the log and keeps writing markers.
        let store = open(&disk);
        append(&rt, &store, vec![blank_ent(2, ME, 4)]);
        assert_eq!(durable_index(&store), 4);
    }

    #[test]
    fn no_marker_unless_this_member_is_the_only_voter_and_leads() {
        let rt = runtime();
        // Two voters: commitment needs the other one.
        let disk = SimDisk::new(2);
        let store = open(&disk);
        append(
            &rt,
            &store,
            vec![membership_ent(1, ME, 1, voters(&[ME, 2]))],
        );
        append(&rt, &store, vec![blank_ent(1, ME, 2)]);
        assert_eq!(durable_index(&store), 0);
        drop(store);
        assert_eq!(recovered_committed(&rt, &disk), None);

        // The sole voter's batch that adds a voter: nothing in it is committed by this member.
        let disk = SimDisk::new(3);
        let store = open(&disk);
        append(&rt, &store, vec![membership_ent(1, ME, 1, voters(&[ME]))]);
        append(
            &rt,
            &store,
            vec![
                blank_ent(1, ME, 2),
                membership_ent(1, ME, 3, voters(&[ME, 2])),
            ],
        );
        assert_eq!(durable_index(&store), 0);
        append(&rt, &store, vec![blank_ent(1, ME, 4)]);
        assert_eq!(durable_index(&store), 0);

        // Entries another member wrote as leader.
        let disk = SimDisk::new(4);
        let store = open(&disk);
        append(&rt, &store, vec![membership_ent(1, ME, 1, voters(&[ME]))]);
        append(&rt, &store, vec![blank_ent(2, 2, 2)]);
        assert_eq!(durable_index(&store), 0);
    }

    /// The deposed leader's replication stream must not read the new leader's entries: its
    /// `prev_log_id` is from the log before the truncation (see the module's invariants).
    #[test]
    fn a_reader_made_before_a_truncation_reads_nothing_after_it() {
        let rt = runtime();
        let disk = SimDisk::new(6);
        let mut store = open(&disk);
        append(&rt, &store, (1..=4).map(|i| blank_ent(3, ME, i)).collect());
        let mut stale = rt.block_on(store.get_log_reader());
        let ids = |entries: Vec<Entry<TypeConfig>>| -> Vec<(u64, u64)> {
            entries
                .iter()
                .map(|e| (e.log_id.leader_id.term, e.log_id.index))
                .collect()
        };
        let read = rt.block_on(stale.try_get_log_entries(2..5)).unwrap();
        assert_eq!(ids(read), vec![(3, 2), (3, 3), (3, 4)]);

        // Deposed: the log is cut back to index 2 and takes another leader's entries.
        rt.block_on(store.truncate(openraft::testing::log_id(3, ME, 3)))
            .unwrap();
        append(&rt, &store, vec![blank_ent(2, 2, 3), blank_ent(2, 2, 4)]);
        let read = rt.block_on(stale.try_get_log_entries(3..5)).unwrap();
        assert!(read.is_empty(), "a stale reader served {:?}", ids(read));
        // A reader made now (a new leadership's stream) and the store itself read the new log.
        let mut fresh = rt.block_on(store.get_log_reader());
        let read = rt.block_on(fresh.try_get_log_entries(2..5)).unwrap();
        assert_eq!(ids(read), vec![(3, 2), (2, 3), (2, 4)]);
        let read = rt.block_on(store.try_get_log_entries(3..5)).unwrap();
        assert_eq!(ids(read), vec![(2, 3), (2, 4)]);
        // Appends alone (no truncation) leave a reader valid.
        append(&rt, &store, vec![blank_ent(2, 2, 5)]);
        let read = rt.block_on(fresh.try_get_log_entries(5..6)).unwrap();
        assert_eq!(ids(read), vec![(2, 5)]);
    }

    #[test]
    fn a_truncation_past_the_known_membership_stops_the_markers() {
        let rt = runtime();
        let disk = SimDisk::new(5);
        let mut store = open(&disk);
        append(
            &rt,
            &store,
            vec![membership_ent(1, ME, 1, voters(&[ME, 2]))],
        );
        append(&rt, &store, vec![membership_ent(1, ME, 2, voters(&[ME]))]);
        rt.block_on(store.truncate(openraft::testing::log_id(1, ME, 2)))
            .unwrap();
        // The membership before index 2 is not tracked any more: no marker.
        append(&rt, &store, vec![blank_ent(2, ME, 2)]);
        assert_eq!(durable_index(&store), 0);
    }

    #[test]
    fn the_snapshots_membership_counts_when_the_log_has_none() {
        let rt = runtime();
        let me_alone = openraft::Membership::new(voters(&[ME]), None);
        let with_two = openraft::Membership::new(voters(&[ME, 2]), None);

        let disk = SimDisk::new(6);
        let store = open(&disk);
        store.note_snapshot_membership(Some(1), &me_alone);
        append(&rt, &store, vec![blank_ent(1, ME, 2)]);
        assert_eq!(durable_index(&store), 2);

        let disk = SimDisk::new(7);
        let store = open(&disk);
        store.note_snapshot_membership(Some(1), &with_two);
        append(&rt, &store, vec![blank_ent(1, ME, 2)]);
        assert_eq!(durable_index(&store), 0);

        // A newer membership entry in the log wins over an older snapshot's.
        let disk = SimDisk::new(8);
        let store = open(&disk);
        append(
            &rt,
            &store,
            vec![membership_ent(1, ME, 1, voters(&[ME, 2]))],
        );
        store.note_snapshot_membership(Some(0), &me_alone);
        append(&rt, &store, vec![blank_ent(1, ME, 2)]);
        assert_eq!(durable_index(&store), 0);
    }
}
