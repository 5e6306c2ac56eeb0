//! The raft state machine: `apply::State` in memory, made durable by snapshot files (`snap/`)
//! plus the raft log.
//!
//! Applying takes the write lock on [`SmShared`] once per call from openraft (a run of entries;
//! a batched entry applies each of its commands in order, each with its own result); readers take the
//! read lock for the duration of one range. A snapshot is built from a clone of the state (a
//! persistent map, so the clone is O(1)) in openraft's spawned builder task, so writes never stall
//! behind serialization or disk I/O of a snapshot.
//!
//! Snapshot image (the payload of a `snap/` file): bincode of [`SnapshotImage`], whose first
//! field is openraft's `SnapshotMeta` so the meta can be read without decoding the state.
//!
//! Invariant: `last_applied` only grows, except when a snapshot from the leader replaces the
//!   whole state.
//! Invariant: every applied entry is reported to the [`ApplyObserver`] in log order, under the
//!   same write lock that applied it, so observers see revisions in order without gaps.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use super::{LogId, MemberNode, NodeId, Reply, StoredMembership, TypeConfig};
use crate::apply::{Applied, Command, State};
use crate::snap::SnapStore;

/// Receives every applied command, in log order (the watch hub implements this).
pub trait ApplyObserver: Send + Sync {
    /// Called under the state machine's write lock, right after `applied` changed the state.
    fn applied(&self, index: u64, cmd: &Command, applied: &Applied);
}

/// The mutable part of the state machine.
#[derive(Clone)]
pub struct SmInner {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// State machine data shared between the raft task (writer) and the read path.
pub struct SmShared {
    inner: RwLock<SmInner>,
    observer: Arc<dyn ApplyObserver>,
}

impl SmShared {
    /// A read lock on the state (never hold it across an `.await`).
    pub fn read(&self) -> RwLockReadGuard<'_, SmInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotImage {
    meta: SnapshotMeta<NodeId, MemberNode>,
    state: State,
}

/// openraft's state machine for one member.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<SmShared>,
    snaps: Arc<SnapStore>,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
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
    pub fn recover(
        snaps: SnapStore,
        log_first_index: Option<u64>,
        observer: Arc<dyn ApplyObserver>,
    ) -> Result<Self, SmRecoveryError> {
        let covered =
            |snap_index: u64| log_first_index.is_some_and(|first| first <= snap_index + 1);
        let loaded = snaps.load_newest(covered).map_err(SmRecoveryError::Snap)?;
        let inner = match loaded {
            None => SmInner {
                state: State::new(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
            Some(snap) => {
                let image: SnapshotImage =
                    bincode::deserialize(snap.data()).map_err(|e| SmRecoveryError::Decode {
                        file_index: snap.index,
                        reason: e.to_string(),
                    })?;
                SmInner {
                    state: image.state,
                    last_applied: image.meta.last_log_id,
                    membership: image.meta.last_membership,
                }
            }
        };
        Ok(StateMachineStore {
            shared: Arc::new(SmShared {
                inner: RwLock::new(inner),
                observer,
            }),
            snaps: Arc::new(snaps),
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// The shared state for the read path.
    pub fn shared(&self) -> Arc<SmShared> {
        self.shared.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let last = self.frozen.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.frozen.membership.clone(),
            snapshot_id: snapshot_id(last, self.seq),
        };
        let image = SnapshotImage {
            meta: meta.clone(),
            state: self.frozen.state.clone(),
        };
        let bytes = bincode::serialize(&image)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let (term, index) = last.map_or((0, 0), |l| (l.leader_id.term, l.index));
        self.snaps
            .save(term, index, &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(index, term, bytes = bytes.len(), "saved snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
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
        let mut replies = Vec::new();
        // One write lock for everything openraft hands over at once: readers wait at most one
        // call, and a burst of entries does not pay a lock round trip each.
        let mut inner = self.shared.write();
        for entry in entries {
            debug_assert!(inner
                .last_applied
                .is_none_or(|l| l.index < entry.log_id.index));
            inner.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::None,
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::None
                }
                EntryPayload::Normal(Command::Batch(cmds)) => {
                    let mut results = Vec::with_capacity(cmds.len());
                    let observer = &self.shared.observer;
                    let index = entry.log_id.index;
                    for cmd in &cmds {
                        inner.state.apply_each(cmd, &mut |leaf, applied| {
                            observer.applied(index, leaf, &applied);
                            results.push(Arc::new(applied));
                        });
                    }
                    Reply::Batch(results)
                }
                EntryPayload::Normal(cmd) => {
                    let applied = inner.state.apply(&cmd);
                    self.shared
                        .observer
                        .applied(entry.log_id.index, &cmd, &applied);
                    Reply::Applied(Arc::new(applied))
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let bytes = snapshot.into_inner();
        let image: SnapshotImage = bincode::deserialize(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let (term, index) = meta
            .last_log_id
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        self.snaps
            .save(term, index, &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let mut inner = self.shared.write();
        inner.state = image.state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(snap) = self.snaps.load_newest(|_| false).map_err(read_err)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta<NodeId, MemberNode> = bincode::deserialize(snap.data())
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(snap.data().to_vec())),
        }))
    }
}
