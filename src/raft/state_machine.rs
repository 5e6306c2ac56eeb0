//! The raft state machine: `apply::State` in memory, made durable by snapshot files (`snap/`)
//! plus the raft log.
//!
//! Applying takes the write lock on [`SmShared`] once per call from openraft (a run of entries;
//! a batched entry applies each of its commands in order, each with its own result). Readers
//! never hold the lock while they work: [`SmShared::view`] clones the state under the read lock
//! (persistent maps, so the clone is O(1)) and releases it at once; ranges, counts, `Hash` and
//! `HashKV` then run on that immutable view while apply goes on. A snapshot is built from such a
//! view too, and its encoding and file write run on a blocking thread
//! (`tokio::task::spawn_blocking`), as do the decode and save of a snapshot received from the
//! leader and the read of a snapshot file for a follower: no async worker (which openraft's
//! heartbeats share) waits on serialization or disk I/O of a snapshot.
//!
//! Snapshot image (the payload of a `snap/` file): a version tag, then openraft's
//! `SnapshotMeta`, then the state (`image.rs`), so the meta can be read without decoding the
//! state.
//!
//! Invariant: `last_applied` only grows, except when a snapshot from the leader replaces the
//!   whole state.
//! Invariant: a snapshot received from the leader is fully checked before it is installed; the
//!   member's own snapshot (checksum matched) is checked in the background after the start
//!   (`load.rs`), and a failure there stops `apply`.
//! Invariant: every applied entry is reported to the [`ApplyObserver`] in log order, under the
//!   same write lock that applied it, so observers see revisions in order without gaps.
//! Invariant: no O(keys) or O(history) work runs under the lock, except apply itself, one
//!   batch of a compaction (`compaction.rs`, bounded by `--experimental-compaction-batch-limit`)
//!   and the watch hub's catch-up, which owns its own lock discipline.

use std::collections::VecDeque;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use super::slow_apply::SlowApply;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};

use super::{LogId, MemberNode, NodeId, Reply, StoredMembership, TypeConfig};
pub(crate) mod image;
mod load;
use crate::apply::{Applied, Command, Proposal, State};
use crate::snap::{SnapStore, StreamError};
use image::SnapshotImage;
use load::{check_loaded_image, decode_local_image, ImageDefect};

/// Receives every applied command, in log order (the watch hub implements this).
pub trait ApplyObserver: Send + Sync {
    /// Called under the state machine's write lock, right after `applied` changed the state.
    fn applied(&self, index: u64, cmd: &Command, applied: &Applied);

    /// Called under the state machine's write lock, right after the whole state was replaced
    /// by a snapshot received from the leader (revisions in between were never `applied`).
    fn restored(&self) {}
}

/// The mutable part of the state machine.
#[derive(Clone)]
pub struct SmInner {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// What a reader gets from [`SmShared::view`]: the applied state as of `last_applied`, its own
/// to keep (membership, which readers of the key space do not need, is left out).
#[derive(Clone)]
pub struct SmView {
    pub state: State,
    pub last_applied: Option<LogId>,
}

/// State machine data shared between the raft task (writer) and the read path.
pub struct SmShared {
    inner: RwLock<SmInner>,
    observer: Arc<dyn ApplyObserver>,
    /// Client commands applied since the last snapshot build started (a batched entry counts
    /// each of its commands, as etcd counts requests for `--snapshot-count`).
    commands_since_snapshot: AtomicU64,
    /// Snapshot once more than this many commands were applied; 0 = never by count.
    snapshot_commands: AtomicU64,
    snapshot_due: tokio::sync::Notify,
    /// Recent `(log index, commands applied up to and including it)` marks: enough to find the
    /// newest entry with at least [`LOG_COMMANDS_TO_KEEP`] commands after it.
    marks: Mutex<CommandMarks>,
    /// Set when the structural check of the image loaded at startup failed: the state is not
    /// trustworthy and `apply` refuses to go on (see [`StateMachineStore::recover`]).
    image_defect: OnceLock<String>,
    /// Set when an apply left a compaction pending (see `compaction.rs`).
    compaction_due: tokio::sync::Notify,
    /// Units of work per compaction batch (`--experimental-compaction-batch-limit`).
    compaction_batch: AtomicUsize,
    /// The newest compaction point this member finished carrying out.
    compacted: tokio::sync::watch::Sender<i64>,
}

/// Client commands the log keeps behind a snapshot for slow followers (etcd keeps 5000
/// entries, one request each; a batched entry holds many, so count commands instead).
pub const LOG_COMMANDS_TO_KEEP: u64 = 5000;

#[derive(Default)]
struct CommandMarks {
    total: u64,
    marks: VecDeque<(u64, u64)>,
}

impl CommandMarks {
    fn record(&mut self, index: u64, commands: u64) {
        self.total += commands;
        self.marks.push_back((index, self.total));
        let limit = self.total.saturating_sub(LOG_COMMANDS_TO_KEEP);
        while self.marks.len() > 1 && self.marks[1].1 <= limit {
            self.marks.pop_front();
        }
    }

    /// The newest log index with at least `LOG_COMMANDS_TO_KEEP` commands applied after it.
    fn purge_point(&self) -> Option<u64> {
        let limit = self.total.checked_sub(LOG_COMMANDS_TO_KEEP)?;
        self.marks
            .front()
            .filter(|(_, upto)| *upto <= limit)
            .map(|(index, _)| *index)
    }
}

impl SmShared {
    /// A read lock on the state (never hold it across an `.await`). Apply waits for it, so hold
    /// it only for O(1) work (a revision, a lookup); anything that walks keys or history takes a
    /// [`SmShared::view`] instead.
    pub fn read(&self) -> RwLockReadGuard<'_, SmInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// An immutable copy of the whole state at the last applied entry: taken under the read
    /// lock in O(1) (the maps are persistent) and released before returning, so a reader can
    /// spend as long as it likes on it while apply goes on. Writes after the view are not in
    /// it; it stays consistent (one applied index) for as long as it is held. Memory: a view
    /// keeps alive the nodes that later writes and compactions replace, so hold it for one
    /// request, not longer.
    pub fn view(&self) -> SmView {
        let inner = self.read();
        SmView {
            state: inner.state.clone(),
            last_applied: inner.last_applied,
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the image loaded at startup failed its structural check, if it did. Such a member
    /// must not serve: its apply path already refuses every entry.
    pub fn image_defect(&self) -> Option<&str> {
        self.image_defect.get().map(String::as_str)
    }

    /// Sets the `--snapshot-count` rule in client commands (0 = off).
    pub fn set_snapshot_commands(&self, snapshot_commands: u64) {
        self.snapshot_commands
            .store(snapshot_commands, Ordering::Relaxed);
    }

    /// Returns once more than the configured number of commands were applied since the last
    /// snapshot build started (or `wait` passed: `false` then).
    pub async fn snapshot_due(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.snapshot_due.notified())
            .await
            .is_ok()
    }

    /// The log index up to which the log may be purged by the command rule (see
    /// [`LOG_COMMANDS_TO_KEEP`]); openraft caps it at the last snapshot.
    pub fn purge_point(&self) -> Option<u64> {
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .purge_point()
    }

    /// Sets `--experimental-compaction-batch-limit` (already mapped by
    /// [`super::compaction::batch_limit_from_flag`]).
    pub fn set_compaction_batch_limit(&self, units: usize) {
        self.compaction_batch.store(units.max(1), Ordering::Relaxed);
    }

    /// Waits until an apply left a compaction pending, or `wait` passed (`false` then).
    pub async fn compaction_due(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.compaction_due.notified())
            .await
            .is_ok()
    }

    /// Carries the pending compaction one batch further under the write lock; `None` if none
    /// is pending, else its point and what the batch did.
    pub fn compaction_step(&self) -> Option<(i64, crate::mvcc::StepDone)> {
        let budget = self.compaction_batch.load(Ordering::Relaxed);
        let mut inner = self.write();
        let revision = inner.state.kv.compaction_pending()?;
        let done = inner.state.kv.compact_step(budget);
        drop(inner);
        if done.finished {
            self.compacted.send_if_modified(|at| {
                let newer = revision > *at;
                if newer {
                    *at = revision;
                }
                newer
            });
        }
        Some((revision, done))
    }

    /// Returns once this member finished carrying out a compaction at `revision` or later
    /// (what a `physical` Compact waits for).
    pub async fn compaction_finished(&self, revision: i64) {
        let mut finished = self.compacted.subscribe();
        // The sender lives as long as `self`, which the caller holds.
        let _ = finished.wait_for(|at| *at >= revision).await;
    }

    /// After an apply or an install: wakes the compaction loop if a compaction is pending,
    /// or records the point as finished if there is none.
    fn note_compaction(&self, state: &State) {
        match state.kv.compaction_pending() {
            Some(_) => self.compaction_due.notify_one(),
            None => {
                let at = state.kv.compact_revision();
                self.compacted.send_if_modified(|finished| {
                    let newer = at > *finished;
                    if newer {
                        *finished = at;
                    }
                    newer
                });
            }
        }
    }

    fn count_applied(&self, commands: u64) {
        if commands == 0 {
            return;
        }
        let since = self
            .commands_since_snapshot
            .fetch_add(commands, Ordering::Relaxed)
            + commands;
        let threshold = self.snapshot_commands.load(Ordering::Relaxed);
        if threshold > 0 && since > threshold {
            self.snapshot_due.notify_one();
        }
    }
}

/// Asks raft for a snapshot whenever more than `--snapshot-count` client commands were applied
/// since the last one, and then to purge the log to [`LOG_COMMANDS_TO_KEEP`] commands. openraft's own policy counts log entries, and a batched entry carries
/// many commands, so without this the log (and the replay at restart) could grow to hundreds of
/// times etcd's bound. Runs until `stopped`.
pub async fn snapshot_by_commands(
    raft: super::Raft,
    shared: Arc<SmShared>,
    stopped: Arc<AtomicBool>,
) {
    const POLL: Duration = Duration::from_millis(500);
    const TRIGGER_GAP: Duration = Duration::from_millis(200);
    while !stopped.load(Ordering::Relaxed) {
        if !shared.snapshot_due(POLL).await {
            continue;
        }
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        // A snapshot already being built swallows the trigger; the count is reset when a build
        // starts, so only re-check after a pause.
        tokio::time::sleep(TRIGGER_GAP).await;
        // openraft keeps `max_in_snapshot_log_to_keep` entries, which with batched entries can
        // be far more than etcd's 5000 requests; purge by commands too (capped by openraft at
        // the newest snapshot, so this catches up one snapshot later at worst).
        if let Some(upto) = shared.purge_point() {
            if raft.trigger().purge_log(upto).await.is_err() {
                return;
            }
        }
    }
}

/// openraft's state machine for one member.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    snaps: Arc<SnapStore>,
    snapshot_seq: Arc<AtomicU64>,
    /// The meta of the snapshot loaded at startup, for openraft's first `get_current_snapshot`
    /// (see there); taken by that call, dropped when a newer snapshot is built or installed.
    startup_meta: Arc<Mutex<Option<SnapshotMeta<NodeId, MemberNode>>>>,
    /// When set, entries are applied only once the committed marker covering them is durable.
    durable_commit: Option<super::log_store::DurableCommit>,
    /// `--experimental-warning-apply-duration`: applies slower than this are logged.
    warning_apply: Duration,
}

/// The builder handed to openraft: a frozen copy of the state at one applied index.
pub struct SnapshotBuilder {
    frozen: SmInner,
    snaps: Arc<SnapStore>,
    seq: u64,
}

/// Failure to load the state machine at startup.
#[derive(Debug)]
pub enum SmRecoveryError {
    Snap(crate::snap::SnapError),
    Decode { file_index: u64, reason: String },
}

impl std::fmt::Display for SmRecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmRecoveryError::Snap(e) => write!(f, "{e}"),
            SmRecoveryError::Decode { file_index, reason } => {
                write!(
                    f,
                    "snapshot at index {file_index} does not decode: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for SmRecoveryError {}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn snapshot_id(last: Option<LogId>, seq: u64) -> String {
    match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
        None => format!("0-0-{seq}"),
    }
}

impl StateMachineStore {
    /// Loads the newest usable snapshot (or an empty state) and wires the observer.
    ///
    /// `log_first_index` is the first entry index still in the WAL: an older snapshot is an
    /// acceptable fallback only if the log still covers everything after it.
    ///
    /// The snapshot is streamed from its file and decoded as it is read. Its checksum is
    /// trusted (this member wrote and synced the file), so the O(size) structural check of the
    /// store does not delay the start: it runs on a copy in the background, and if it fails the
    /// defect is logged and recorded, and `apply` refuses every later entry (a storage error,
    /// which stops raft on this member). Snapshots received from a leader are always fully
    /// checked before they are installed.
    pub fn recover(
        snaps: SnapStore,
        log_first_index: Option<u64>,
        observer: Arc<dyn ApplyObserver>,
    ) -> Result<Self, SmRecoveryError> {
        let covered =
            |snap_index: u64| log_first_index.is_some_and(|first| first <= snap_index + 1);
        let started = Instant::now();
        let loaded = snaps
            .load_newest_streamed(covered, decode_local_image)
            .map_err(|e| match e {
                StreamError::Snap(e) => SmRecoveryError::Snap(e),
                StreamError::Decode { index, error } => SmRecoveryError::Decode {
                    file_index: index,
                    reason: error.to_string(),
                },
            })?;
        let mut startup_meta = None;
        let (inner, loaded_index) = match loaded {
            None => {
                let inner = SmInner {
                    state: State::new(),
                    last_applied: None,
                    membership: StoredMembership::default(),
                };
                (inner, None)
            }
            Some((header, image)) => {
                tracing::info!(
                    index = header.index,
                    bytes = header.data_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded snapshot"
                );
                let inner = SmInner {
                    state: image.state.0,
                    last_applied: image.meta.last_log_id,
                    membership: image.meta.last_membership.clone(),
                };
                startup_meta = Some(image.meta);
                (inner, Some(header.index))
            }
        };
        let to_check = loaded_index.map(|index| (index, inner.state.clone()));
        debug_assert!(inner.state.kv.compaction_pending().is_none());
        let compacted = tokio::sync::watch::Sender::new(inner.state.kv.compact_revision());
        let shared = Arc::new(SmShared {
            inner: RwLock::new(inner),
            observer,
            commands_since_snapshot: AtomicU64::new(0),
            snapshot_commands: AtomicU64::new(0),
            snapshot_due: tokio::sync::Notify::new(),
            marks: Mutex::new(CommandMarks::default()),
            image_defect: OnceLock::new(),
            compaction_due: tokio::sync::Notify::new(),
            compaction_batch: AtomicUsize::new(super::compaction::DEFAULT_BATCH_LIMIT),
            compacted,
        });
        if let Some((index, state)) = to_check {
            check_loaded_image(Arc::downgrade(&shared), index, state);
        }
        Ok(StateMachineStore {
            shared,
            snaps: Arc::new(snaps),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            startup_meta: Arc::new(Mutex::new(startup_meta)),
            durable_commit: None,
            warning_apply: super::slow_apply::WARNING_APPLY_DURATION_DEFAULT,
        })
    }

    /// Logs etcd's "apply request took too long" for applies slower than `threshold`.
    pub fn with_warning_apply_duration(mut self, threshold: Duration) -> Self {
        self.warning_apply = threshold;
        self
    }

    /// Applies nothing past the durable committed marker (see `log_store::DurableCommit`).
    pub fn with_durable_commit(mut self, gate: super::log_store::DurableCommit) -> Self {
        self.durable_commit = Some(gate);
        self
    }

    fn take_startup_meta(&self) -> Option<SnapshotMeta<NodeId, MemberNode>> {
        self.startup_meta
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The shared state for the read path.
    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let last = self.frozen.last_applied;
        tracing::info!(
            local_member_applied_index = last.map_or(0, |l| l.index),
            "triggering snapshot"
        );
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.frozen.membership.clone(),
            snapshot_id: snapshot_id(last, self.seq),
        };
        let image = SnapshotImage {
            meta: meta.clone(),
            state: self.frozen.state.clone(),
        };
        let snaps = self.snaps.clone();
        let signature = meta.signature();
        // Encoding is O(state) and the save ends in fsyncs: both off the async workers.
        let bytes = off_worker(move || {
            let bytes = bincode::serialize(&image)
                .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), &e))?;
            let (term, index) = last.map_or((0, 0), |l| (l.leader_id.term, l.index));
            snaps
                .save(term, index, &bytes)
                .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
            tracing::info!(
                snapshot_index = index,
                snapshot_term = term,
                snapshot_bytes = bytes.len(),
                "saved snapshot"
            );
            Ok(bytes)
        })
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Runs blocking work (encoding, decoding, file I/O) on the blocking pool, so the async workers
/// keep serving raft and clients meanwhile. Under madsim the closure runs as a simulated task.
async fn off_worker<T, F>(work: F) -> Result<T, StorageError<NodeId>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError<NodeId>> + Send + 'static,
{
    crate::raft::runtime::spawn_blocking(work)
        .await
        .map_err(|e| StorageIOError::write_state_machine(&e).into())
        .and_then(|done| done)
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        let inner = self.shared.read();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        if let Some(defect) = self.shared.image_defect.get() {
            return Err(StorageIOError::read_state_machine(&ImageDefect(defect.clone())).into());
        }
        let entries: Vec<openraft::Entry<TypeConfig>> = entries.into_iter().collect();
        if let (Some(gate), Some(last)) = (&self.durable_commit, entries.last()) {
            gate.covers(last.log_id.index)
                .await
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        let mut replies = Vec::new();
        let mut commands = 0u64;
        let mut marks = Vec::new();
        let mut slow = Vec::new();
        let threshold = self.warning_apply;
        // One write lock for everything openraft hands over at once: readers wait at most one
        // call, and a burst of entries does not pay a lock round trip each.
        let mut inner = self.shared.write();
        for entry in entries {
            debug_assert!(inner
                .last_applied
                .is_none_or(|l| l.index < entry.log_id.index));
            inner.last_applied = Some(entry.log_id);
            let entry_index = entry.log_id.index;
            let entry_id = crate::apply::EntryId {
                index: entry_index,
                term: entry.log_id.leader_id.term,
            };
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::None,
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::None
                }
                // The request header's user and auth revision decide the auth checks.
                EntryPayload::Normal(Proposal::Batch(envelopes)) => {
                    let mut results = Vec::with_capacity(envelopes.len());
                    for envelope in &envelopes {
                        let started = Instant::now();
                        let applied =
                            inner
                                .state
                                .apply_entry(entry_id, &envelope.header, &envelope.command);
                        slow.extend(SlowApply::check(
                            started.elapsed(),
                            threshold,
                            &envelope.header,
                            &envelope.command,
                            &applied,
                        ));
                        crate::metrics::count_applied(
                            &envelope.command,
                            &applied,
                            started.elapsed(),
                        );
                        self.shared
                            .observer
                            .applied(entry_index, &envelope.command, &applied);
                        results.push(Arc::new(applied));
                    }
                    commands += results.len() as u64;
                    Reply::Batch(results)
                }
                EntryPayload::Normal(Proposal::One(envelope)) => {
                    let started = Instant::now();
                    let applied =
                        inner
                            .state
                            .apply_entry(entry_id, &envelope.header, &envelope.command);
                    slow.extend(SlowApply::check(
                        started.elapsed(),
                        threshold,
                        &envelope.header,
                        &envelope.command,
                        &applied,
                    ));
                    crate::metrics::count_applied(&envelope.command, &applied, started.elapsed());
                    self.shared
                        .observer
                        .applied(entry_index, &envelope.command, &applied);
                    commands += 1;
                    Reply::Applied(Arc::new(applied))
                }
            };
            let in_entry = match &reply {
                Reply::None => 0,
                Reply::Applied(_) => 1,
                Reply::Batch(results) => results.len() as u64,
            };
            marks.push((entry_index, in_entry));
            replies.push(reply);
        }
        self.shared.note_compaction(&inner.state);
        drop(inner);
        for s in &slow {
            s.log(threshold);
        }
        self.shared.count_applied(commands);
        let mut log_marks = self.shared.marks.lock().unwrap_or_else(|p| p.into_inner());
        for (index, in_entry) in marks {
            log_marks.record(index, in_entry);
        }
        drop(log_marks);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        self.take_startup_meta();
        self.shared
            .commands_since_snapshot
            .store(0, Ordering::Relaxed);
        SnapshotBuilder {
            frozen: self.shared.read().clone(),
            snaps: self.snaps.clone(),
            seq,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.take_startup_meta();
        let (incoming_term, incoming_index) = meta
            .last_log_id
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        tracing::info!(
            current_applied_index = self.shared.read().last_applied.map_or(0, |l| l.index),
            incoming_leader_snapshot_index = incoming_index,
            incoming_leader_snapshot_term = incoming_term,
            "applying snapshot"
        );
        let bytes = snapshot.into_inner();
        let snaps = self.snaps.clone();
        let signature = meta.signature();
        let (term, index) = meta
            .last_log_id
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        // Decoding (with its full structural check) and the save are O(image): off the workers.
        let image = off_worker(move || {
            let image: SnapshotImage<State> = crate::apply::decode_bounded(&bytes)
                .map_err(|e| StorageIOError::read_snapshot(Some(signature.clone()), &e))?;
            snaps
                .save(term, index, &bytes)
                .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
            Ok(image)
        })
        .await?;
        let replaced = {
            let mut inner = self.shared.write();
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            let replaced = std::mem::replace(&mut inner.state, image.state);
            self.shared.observer.restored();
            self.shared.note_compaction(&inner.state);
            replaced
        };
        // Freeing the replaced state is O(state): neither under the lock nor on a worker.
        off_worker(move || {
            drop(replaced);
            Ok(())
        })
        .await?;
        tracing::info!(
            incoming_leader_snapshot_index = incoming_index,
            incoming_leader_snapshot_term = incoming_term,
            "applied snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // openraft 0.9 calls this once while starting (`get_initial_state`) and keeps only the
        // meta. Re-reading the file there cost a second pass over the image and a full copy in
        // memory (the peak of a large member's restart), so that first call gets the meta of
        // the snapshot recovery just verified, with no data. Every later call (a snapshot for a
        // follower) reads the file; should an empty image ever reach a follower, its install
        // fails to decode and is retried, nothing is applied.
        if let Some(meta) = self.take_startup_meta() {
            return Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(Vec::new())),
            }));
        }
        // Damaged snapshots are skipped: the running state never needs them (recovery already
        // decided whether the log covers a damaged one), and what is sent to a lagging
        // follower must be a valid image. A newer one is built at the next trigger.
        let snaps = self.snaps.clone();
        off_worker(move || {
            let Some(snap) = snaps.load_newest(|_| true).map_err(read_err)? else {
                return Ok(None);
            };
            let meta = image::decode_meta(snap.data())
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(snap.data().to_vec())),
            }))
        })
        .await
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use openraft::{CommittedLeaderId, Entry};

    use super::*;
    use crate::apply::Envelope;
    use crate::io::sim::SimDisk;
    use crate::proto::etcdserverpb::PutRequest;

    struct Quiet;
    impl ApplyObserver for Quiet {
        fn applied(&self, _index: u64, _cmd: &Command, _applied: &Applied) {}
    }

    fn put(key: &str) -> Command {
        Command::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    fn entry(index: u64, proposal: impl Into<Proposal>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(proposal.into()),
        }
    }

    fn batch(cmds: Vec<Command>) -> Proposal {
        let header = crate::apply::RequestHeader::default();
        let envelopes = cmds.into_iter().map(|c| Envelope::new(header.clone(), c));
        Proposal::Batch(envelopes.collect())
    }

    #[test]
    fn the_purge_point_keeps_enough_commands_behind_it() {
        let mut marks = CommandMarks::default();
        assert_eq!(marks.purge_point(), None);
        // Entries 1..=100 of 40 commands each: 4000 commands, not enough to purge anything.
        for index in 1..=100 {
            marks.record(index, 40);
        }
        assert_eq!(marks.purge_point(), None);
        // 30 more entries (5200 commands): purging through entry 5 (200 commands) keeps 5000.
        for index in 101..=130 {
            marks.record(index, 40);
        }
        assert_eq!(marks.purge_point(), Some(5));
        assert_eq!(marks.total - 5 * 40, LOG_COMMANDS_TO_KEEP);
        // A blank entry counts nothing; one-command entries move the point one by one.
        marks.record(131, 0);
        marks.record(132, 1);
        assert_eq!(marks.purge_point(), Some(5));
        assert_eq!(marks.marks.len(), 128, "entries 5..=132 are kept as marks");
        for index in 133..=20_000 {
            marks.record(index, 1);
        }
        assert_eq!(marks.purge_point(), Some(20_000 - LOG_COMMANDS_TO_KEEP));
        assert!(marks.marks.len() as u64 <= LOG_COMMANDS_TO_KEEP + 1);
    }

    /// Bug guarded against: openraft counts entries, so with batching a snapshot came only
    /// after `--snapshot-count` entries of up to 512 commands each.
    #[test]
    fn batched_commands_count_toward_the_snapshot_rule_and_apply_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(3));
            let snaps = SnapStore::open(disk, std::path::Path::new("/s/snap"), 5).unwrap();
            let mut sm = StateMachineStore::recover(snaps, None, Arc::new(Quiet)).unwrap();
            let shared = sm.shared();
            shared.set_snapshot_commands(3);
            let batch = batch(vec![put("a"), put("b"), put("a")]);
            let replies = sm.apply([entry(1, batch)]).await.unwrap();
            let Reply::Batch(results) = &replies[0] else {
                panic!("a batch yields a batch reply: {replies:?}");
            };
            let revisions: Vec<i64> = results.iter().map(|a| a.revision).collect();
            assert_eq!(revisions, vec![2, 3, 4]);
            assert!(
                !shared.snapshot_due(Duration::ZERO).await,
                "3 is not more than 3"
            );
            let replies = sm.apply([entry(2, put("c"))]).await.unwrap();
            assert!(matches!(&replies[0], Reply::Applied(a) if a.revision == 5));
            assert!(shared.snapshot_due(Duration::ZERO).await, "4 commands > 3");
            let _builder = sm.get_snapshot_builder().await;
            sm.apply([entry(3, put("d"))]).await.unwrap();
            assert!(
                !shared.snapshot_due(Duration::ZERO).await,
                "count restarts at a build"
            );
            assert_eq!(shared.read().last_applied.map(|l| l.index), Some(3));
        });
    }

    /// Bug guarded against: ranges, `Status`, `Hash` and `HashKV` ran under the state machine's
    /// read lock, so apply (which needs the write lock) waited for the longest read, and every
    /// write stalled behind a large range. A reader now walks a view while apply goes on; the
    /// view keeps seeing the state it was taken at.
    #[test]
    fn a_write_applies_while_a_reader_is_in_the_middle_of_a_range() {
        use crate::mvcc::KeySpan;
        use crate::proto::etcdserverpb::RangeRequest;

        let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(25));
        let mut sm = StateMachineStore::recover(snap_store(&disk), None, Arc::new(Quiet)).unwrap();
        let keys: Vec<Command> = (0..1000).map(|i| put(&format!("k{i:04}"))).collect();
        block_on(sm.apply([entry(1, batch(keys))])).unwrap();
        let shared = sm.shared();

        // The reader stops half way through its walk of the key space.
        let view = shared.view();
        let mut walk = view.state.kv.keys_in(KeySpan::From(b""));
        let walked = walk.by_ref().take(500).count();
        assert_eq!(walked, 500);

        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let applied = block_on(sm.apply([entry(2, put("new"))]));
            let _ = done_tx.send(applied.map(|replies| replies.len()));
        });
        let applied = done_rx.recv_timeout(Duration::from_secs(20));
        assert!(
            matches!(applied, Ok(Ok(1))),
            "the write did not apply while a range was in progress: {applied:?}"
        );
        assert_eq!(shared.read().last_applied.map(|l| l.index), Some(2));
        assert!(shared.read().state.kv.get(b"new").is_some());

        // The reader finishes on the state it started from.
        assert_eq!(walk.count(), 500, "the view does not see the later write");
        let everything = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        let seen = view.state.kv.range(&everything).unwrap();
        assert_eq!(seen.count, 1000);
        assert_eq!(seen.header.map(|h| h.revision), Some(1001));
        writer.join().unwrap();
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn snap_store(disk: &Arc<dyn crate::io::Disk>) -> SnapStore {
        SnapStore::open(disk.clone(), std::path::Path::new("/s/snap"), 5).unwrap()
    }

    fn meta_at(index: u64) -> SnapshotMeta<NodeId, MemberNode> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{index}-0"),
        }
    }

    /// A snapshot whose store replays but breaks an invariant: the first put of "k" (nothing
    /// compacted) claims version 2. Written with the image's field order by hand, since no
    /// valid `State` can encode it.
    fn defective_image(index: u64) -> Vec<u8> {
        type Put = (Vec<u8>, i64, i64, i64);
        let records: Vec<(i64, i64, Vec<u8>, Option<Put>)> =
            vec![(2, 0, b"k".to_vec(), Some((b"v".to_vec(), 2, 2, 0)))];
        let store = (1u32, 2i64, -1i64, records);
        let state = (1u32, store, Vec::<(i64, i64)>::new());
        bincode::serialize(&(image::IMAGE_TAG_V1, meta_at(index), state)).unwrap()
    }

    /// A restart from the member's own snapshot skips the check up front, and must still give
    /// exactly the state the fully checked decoder gives.
    #[test]
    fn local_restart_without_the_upfront_check_yields_the_checked_state() {
        block_on(async {
            let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(21));
            let mut sm =
                StateMachineStore::recover(snap_store(&disk), None, Arc::new(Quiet)).unwrap();
            let batch = batch(vec![put("a"), put("b"), put("a")]);
            sm.apply([entry(1, batch), entry(2, put("c"))])
                .await
                .unwrap();
            let mut builder = sm.get_snapshot_builder().await;
            builder.build_snapshot().await.unwrap();
            let before = sm.shared().read().clone();

            let restarted =
                StateMachineStore::recover(snap_store(&disk), Some(1), Arc::new(Quiet)).unwrap();
            let after = restarted.shared().read().clone();
            let file = snap_store(&disk).load_newest(|_| false).unwrap().unwrap();
            let checked: SnapshotImage<State> = bincode::deserialize(file.data()).unwrap();
            assert_eq!(after.state, checked.state);
            assert_eq!(after.state, before.state);
            assert_eq!(after.last_applied, before.last_applied);
            assert_eq!(after.membership, before.membership);
            assert_eq!(after.state.check(), Ok(()));
        });
    }

    /// Untrusted input: a snapshot from the leader with a structural defect is refused.
    #[test]
    fn a_received_snapshot_with_a_structural_defect_is_rejected() {
        block_on(async {
            let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(22));
            let mut sm =
                StateMachineStore::recover(snap_store(&disk), None, Arc::new(Quiet)).unwrap();
            let bytes = defective_image(7);
            let result = sm
                .install_snapshot(&meta_at(7), Box::new(Cursor::new(bytes)))
                .await;
            assert!(result.is_err());
            assert_eq!(sm.shared().read().last_applied, None);
            assert!(
                snap_store(&disk).list().unwrap().is_empty(),
                "nothing saved"
            );
        });
    }

    /// A local snapshot that passes its checksum but fails the background check: the member
    /// starts, then records the defect and refuses to apply anything more.
    #[test]
    fn a_local_image_failing_the_background_check_stops_apply() {
        block_on(async {
            let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(23));
            snap_store(&disk).save(1, 7, &defective_image(7)).unwrap();
            let mut sm =
                StateMachineStore::recover(snap_store(&disk), Some(8), Arc::new(Quiet)).unwrap();
            let shared = sm.shared();
            let deadline = Instant::now() + Duration::from_secs(20);
            while shared.image_defect().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let defect = shared.image_defect().map(str::to_owned);
            assert!(
                defect.as_deref().is_some_and(|d| d.contains("put at 2.0")),
                "{defect:?}"
            );
            assert!(sm.apply([entry(8, put("x"))]).await.is_err());
            assert_eq!(shared.read().last_applied.map(|l| l.index), Some(7));
        });
    }

    /// openraft's start-up call only needs the meta: it gets the recovered meta without a
    /// second read of the image; any later call gets the full image.
    #[test]
    fn the_first_current_snapshot_after_recovery_is_meta_only_and_later_ones_are_whole() {
        block_on(async {
            let disk: Arc<dyn crate::io::Disk> = Arc::new(SimDisk::new(24));
            let mut sm =
                StateMachineStore::recover(snap_store(&disk), None, Arc::new(Quiet)).unwrap();
            sm.apply([entry(1, put("a")), entry(2, put("b"))])
                .await
                .unwrap();
            let built = sm
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            let whole = built.snapshot.into_inner();

            let mut restarted =
                StateMachineStore::recover(snap_store(&disk), Some(1), Arc::new(Quiet)).unwrap();
            let first = restarted.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(first.meta, built.meta);
            assert!(first.snapshot.get_ref().is_empty());
            let second = restarted.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(second.meta, built.meta);
            assert_eq!(second.snapshot.into_inner(), whole);

            // A build after recovery drops the start-up meta: it is not served instead.
            let mut again =
                StateMachineStore::recover(snap_store(&disk), Some(1), Arc::new(Quiet)).unwrap();
            again.apply([entry(3, put("c"))]).await.unwrap();
            let newer = again
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            let current = again.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta, newer.meta);
            assert!(!current.snapshot.get_ref().is_empty());
        });
    }
}
