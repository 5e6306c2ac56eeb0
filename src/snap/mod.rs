//! Snapshot files of the state machine image in `member/snap/`: atomic write, checksums,
//! fallback on a damaged newest snapshot, retention, and the policy that says when to take one.
//! The image bytes are opaque here; the raft layer encodes them.
//!
//! Writing: `{name}.tmp` is created, header and data written, fdatasynced, renamed to
//! `{term:016x}-{index:016x}.snap`, and the directory fsynced; then snapshots beyond
//! `max_snapshots` are deleted oldest first (by index, then term). Leftover temp files are
//! removed on open.
//!
//! Loading: the newest valid snapshot is returned, memory-mapped (`load_newest`), or streamed
//! through a checksumming reader into a decoder (`load_newest_streamed`, see `stream.rs`).
//! When the newest is damaged we may fall back to an older one only if the WAL still holds every entry after that older
//! snapshot's index (`covered(index)`): otherwise entries between the two would be lost
//! silently, so loading fails with `SnapError::Corrupt`. Falling back to "no snapshot at all"
//! asks `covered(0)`.
//!
//! Invariant: a file with a final `.snap` name is complete and durable (written through a temp
//! name); a damaged one is never returned, only skipped with a warning or reported.
//! Invariant: retention never deletes the snapshot just written.

mod format;
mod stream;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{parse_snap_name, snap_name, SnapCorruptReason, SnapHeader, SNAP_HEADER_BYTES};
pub use stream::{SnapReader, StreamError};

use crate::io::{Disk, FileBytes, OpenOptions};

const TMP_SUFFIX: &str = ".tmp";

/// Failures of the snapshot store.
#[derive(Clone, Debug)]
pub enum SnapError {
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// The newest snapshot is damaged and no fallback is allowed.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: SnapCorruptReason,
    },
}

impl SnapError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> SnapError {
        SnapError::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

impl fmt::Display for SnapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapError::Io { op, path, source } => {
                write!(f, "snap: {op} {}: {source}", path.display())
            }
            SnapError::Corrupt {
                file,
                offset,
                reason,
            } => write!(f, "snap: {} at offset {offset}: {reason}", file.display()),
        }
    }
}

impl std::error::Error for SnapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapError::Io { source, .. } => Some(source.as_ref()),
            SnapError::Corrupt { .. } => None,
        }
    }
}

/// A snapshot file on disk, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapMeta {
    pub term: u64,
    pub index: u64,
    pub path: PathBuf,
}

/// A loaded, verified snapshot; the data stays memory-mapped.
#[derive(Debug)]
pub struct Snapshot {
    pub term: u64,
    pub index: u64,
    pub path: PathBuf,
    bytes: FileBytes,
}

impl Snapshot {
    /// The state machine image.
    pub fn data(&self) -> &[u8] {
        &self.bytes[SNAP_HEADER_BYTES as usize..]
    }
}

/// When to take a snapshot: after more than `snapshot_count` entries were applied since the
/// last one (etcd's `--snapshot-count`, default 100000). Build it with [`SnapshotPolicy::from_flag`],
/// which maps 0 to the default as etcd does; the raft layer derives openraft's trigger from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub snapshot_count: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            snapshot_count: 100_000,
        }
    }
}

impl SnapshotPolicy {
    /// The policy for a `--snapshot-count` value: etcd treats 0 as "use the default".
    pub fn from_flag(snapshot_count: u64) -> Self {
        if snapshot_count == 0 {
            SnapshotPolicy::default()
        } else {
            SnapshotPolicy { snapshot_count }
        }
    }

    pub fn due(&self, applied_index: u64, last_snapshot_index: u64) -> bool {
        self.snapshot_count > 0
            && applied_index.saturating_sub(last_snapshot_index) > self.snapshot_count
    }
}

/// The snapshot directory.
#[derive(Debug)]
pub struct SnapStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// Keep at most this many snapshot files (0 = keep all). etcd's `--max-snapshots`, default 5.
    max_snapshots: usize,
}

impl SnapStore {
    pub const MAX_SNAPSHOTS_DEFAULT: usize = 5;

    /// Opens (creating) the directory and removes leftover temp files.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        max_snapshots: usize,
    ) -> Result<SnapStore, SnapError> {
        disk.create_dir_all(dir)
            .map_err(|e| SnapError::io("create dir", dir, e))?;
        let names = disk.list(dir).map_err(|e| SnapError::io("list", dir, e))?;
        let mut removed = false;
        for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
            let path = dir.join(name);
            disk.remove(&path)
                .map_err(|e| SnapError::io("remove", &path, e))?;
            removed = true;
        }
        if removed {
            disk.sync_dir(dir)
                .map_err(|e| SnapError::io("fsync dir", dir, e))?;
        }
        Ok(SnapStore {
            disk,
            dir: dir.to_path_buf(),
            max_snapshots,
        })
    }

    /// Snapshot files by name, oldest first (by index, then term). Content is not checked.
    pub fn list(&self) -> Result<Vec<SnapMeta>, SnapError> {
        let names = self
            .disk
            .list(&self.dir)
            .map_err(|e| SnapError::io("list", &self.dir, e))?;
        let mut metas: Vec<SnapMeta> = names
            .iter()
            .filter_map(|name| {
                let (term, index) = parse_snap_name(name)?;
                let path = self.dir.join(name);
                Some(SnapMeta { term, index, path })
            })
            .collect();
        metas.sort_by_key(|m| (m.index, m.term));
        Ok(metas)
    }

    /// Writes a snapshot durably, then applies retention.
    pub fn save(&self, term: u64, index: u64, data: &[u8]) -> Result<SnapMeta, SnapError> {
        let started = std::time::Instant::now();
        let name = snap_name(term, index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let header = SnapHeader::for_data(term, index, data);
        let file = self
            .disk
            .open(&tmp, OpenOptions::create_new())
            .map_err(|e| SnapError::io("create", &tmp, e))?;
        let written = file
            .write_at(&header.encode(), 0)
            .and_then(|()| file.write_at(data, SNAP_HEADER_BYTES))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            drop(file);
            // Best effort: the next open removes it anyway.
            let _ = self.disk.remove(&tmp);
            return Err(SnapError::io("write", &tmp, e));
        }
        drop(file);
        self.disk
            .rename(&tmp, &path)
            .map_err(|e| SnapError::io("rename", &tmp, e))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(|e| SnapError::io("fsync dir", &self.dir, e))?;
        // oxetcd's counterpart of etcd's backend commit: the image is durable from here on.
        crate::metrics::BACKEND_COMMIT.observe_duration(started.elapsed());
        self.apply_retention(&path)?;
        Ok(SnapMeta { term, index, path })
    }

    /// Deletes the oldest snapshots beyond `max_snapshots`, never `keep`.
    fn apply_retention(&self, keep: &Path) -> Result<(), SnapError> {
        if self.max_snapshots == 0 {
            return Ok(());
        }
        let metas = self.list()?;
        let excess = metas.len().saturating_sub(self.max_snapshots);
        let mut removed = false;
        for meta in metas.iter().take(excess).filter(|m| m.path != keep) {
            self.disk
                .remove(&meta.path)
                .map_err(|e| SnapError::io("remove", &meta.path, e))?;
            removed = true;
        }
        if removed {
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| SnapError::io("fsync dir", &self.dir, e))?;
        }
        Ok(())
    }

    /// The newest valid snapshot, or `None` when there is none. `covered(i)` must say whether
    /// the WAL still holds every entry after index `i`; see the module docs.
    pub fn load_newest(
        &self,
        covered: impl Fn(u64) -> bool,
    ) -> Result<Option<Snapshot>, SnapError> {
        self.newest_valid(covered, |store, meta| store.load(meta))
    }

    /// The fallback walk shared by the loaders: `load_one` returns an outer error for failures
    /// that stop the walk and an inner one for damage (skipped while the WAL covers it).
    fn newest_valid<T, E: From<SnapError>>(
        &self,
        covered: impl Fn(u64) -> bool,
        mut load_one: impl FnMut(&Self, &SnapMeta) -> Result<Result<T, SnapError>, E>,
    ) -> Result<Option<T>, E> {
        let metas = self.list()?;
        let mut first_damage: Option<SnapError> = None;
        for meta in metas.iter().rev() {
            if let Some(damage) = &first_damage {
                if !covered(meta.index) {
                    // Falling back this far would skip entries the WAL no longer has.
                    return Err(damage.clone().into());
                }
            }
            match load_one(self, meta)? {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(damage) => {
                    tracing::warn!(error = %damage, "snap: skipping damaged snapshot");
                    first_damage.get_or_insert(damage);
                }
            }
        }
        match first_damage {
            Some(damage) if !covered(0) => Err(damage.into()),
            _ => Ok(None),
        }
    }

    /// Reads and verifies one snapshot: outer error for I/O, inner for damage.
    fn load(&self, meta: &SnapMeta) -> Result<Result<Snapshot, SnapError>, SnapError> {
        let file = self
            .disk
            .open(&meta.path, OpenOptions::read_only())
            .map_err(|e| SnapError::io("open", &meta.path, e))?;
        let bytes = file
            .read_all()
            .map_err(|e| SnapError::io("map", &meta.path, e))?;
        let header = match SnapHeader::validate(&bytes) {
            Ok(header) => header,
            Err((offset, reason)) => return Ok(Err(meta.damage(offset, reason))),
        };
        if let Err(damage) = meta.matches(&header) {
            return Ok(Err(damage));
        }
        Ok(Ok(Snapshot {
            term: header.term,
            index: header.index,
            path: meta.path.clone(),
            bytes,
        }))
    }
}

impl SnapMeta {
    fn damage(&self, offset: u64, reason: SnapCorruptReason) -> SnapError {
        SnapError::Corrupt {
            file: self.path.clone(),
            offset,
            reason,
        }
    }

    /// The file name and the header must name the same snapshot.
    fn matches(&self, header: &SnapHeader) -> Result<(), SnapError> {
        if (header.term, header.index) == (self.term, self.index) {
            return Ok(());
        }
        let reason = SnapCorruptReason::NameMismatch {
            name_term: self.term,
            name_index: self.index,
            term: header.term,
            index: header.index,
        };
        Err(self.damage(16, reason))
    }
}

#[cfg(test)]
mod tests;
