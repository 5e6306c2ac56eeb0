//! `Wal`: the writer. Appends frames to the active segment, cuts new segments, syncs, and
//! deletes purged segments.
//!
//! # Segment cut
//! When the next frame would not fit in the active segment: write out buffered frames,
//! fdatasync the active segment (it is sealed from now on), create the next segment (seq + 1,
//! first index = the next entry index, checksum seed = the running checksum), and write the
//! current vote, committed marker and purge marker as its first records, so that deleting older
//! segments never loses state.
//!
//! # Retention (`max_wals`)
//! After a sync has made a purge durable, the oldest segments are deleted while more than
//! `max_wals` segment files exist and the oldest one is not the active segment and holds no
//! entry above the purge index in effect at the last cut. With `max_wals == 0` nothing is ever
//! deleted. Segments that still hold unpurged entries are kept even beyond `max_wals` (as etcd
//! does).
//!
//! Why the last cut and not the latest purge: the latest purge record may sit in the last
//! sector of the active segment, and a power loss while the next append rewrites that sector
//! can tear it even after it was synced. Recovery then cuts the torn tail and ends with an
//! older purge index; had retention trusted the lost record, the entries between the two would
//! be gone with nothing saying they were purged (a hole in the log). The purge index at the
//! last cut is recorded in a sealed segment, which is never written again.
//!
//! Invariant: `write_offset` and every frame offset are multiples of 8.
//! Invariant: a call that fails validation (non-contiguous, too large, ...) writes nothing.
//! Invariant: after a failed write, segment creation or sync the `Wal` is poisoned.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::WalError;
use super::format::{encode_frame, frame_bytes, Record, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::recover::recover;
use super::replay::{LogBounds, Violation};
use super::segment::{create_segment, sector_round_up, SegmentMeta};
use super::{LogRecord, Recovered, WalConfig};
use crate::io::{Disk, DiskFile};

/// Buffered frames are written out once they reach this size.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The raft log on disk. See the module docs of `wal` for guarantees.
pub struct Wal {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    cfg: WalConfig,
    /// Retained segments, oldest first; the last one is the active segment.
    segments: VecDeque<SegmentMeta>,
    active: Box<dyn DiskFile>,
    active_len: u64,
    /// Where `buf` will be written in the active segment.
    write_offset: u64,
    buf: Vec<u8>,
    crc: u32,
    bounds: LogBounds,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged_marker: Option<Vec<u8>>,
    /// The purge index when the active segment was started, durable in a sealed segment:
    /// the most retention may rely on (see the module docs).
    cut_purged_upto: Option<u64>,
    /// Frames were written since the last successful sync.
    dirty: bool,
    /// A purge or cut happened: look for segments to delete after the next sync.
    retention_due: bool,
    poisoned: Option<WalError>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("write_offset", &self.write_offset)
            .field("bounds", &self.bounds)
            .field("poisoned", &self.poisoned.is_some())
            .finish()
    }
}

impl Wal {
    /// Opens the WAL in `dir` (created with its first segment when empty) and returns what it
    /// holds. Fails with `WalError::Corrupt` naming the file and offset on any damage other
    /// than a torn tail in the last segment, which is cut off and reported in `torn_tail`.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        cfg: WalConfig,
    ) -> Result<(Wal, Recovered), WalError> {
        cfg.validate()?;
        let log = recover(&disk, dir, &cfg)?;
        let replay = log.replay;
        let wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            cfg,
            segments: log.segments,
            active: log.active,
            active_len: log.active_len,
            write_offset: log.write_offset,
            buf: Vec::new(),
            crc: log.crc,
            bounds: replay.bounds,
            vote: replay.vote.clone(),
            committed: replay.committed.clone(),
            purged_marker: replay.purged_marker.clone(),
            cut_purged_upto: log.sealed_purged_upto,
            dirty: false,
            retention_due: true,
            poisoned: None,
        };
        debug_assert_eq!(wal.write_offset % 8, 0);
        Ok((wal, replay.into_recovered(log.torn_tail)))
    }

    /// Writes entries; durable only after `sync`. The first index must be `last_index + 1`,
    /// or, when the log is empty, above the purged index.
    pub fn append(&mut self, entries: &[LogRecord]) -> Result<(), WalError> {
        self.check_usable()?;
        let mut bounds = self.bounds;
        for entry in entries {
            bounds
                .check_append(entry.index)
                .map_err(Violation::into_wal_error)?;
            bounds.append(entry.index);
            self.check_size(super::format::ENTRY_PREFIX_BYTES + entry.payload.len() as u64)?;
        }
        for entry in entries {
            self.emit(&Record::Entry {
                index: entry.index,
                term: entry.term,
                payload: &entry.payload,
            })?;
            self.bounds.append(entry.index);
        }
        debug_assert_eq!(self.bounds, bounds);
        Ok(())
    }

    /// Records the raft vote; durable only after `sync`.
    pub fn save_vote(&mut self, vote: &[u8]) -> Result<(), WalError> {
        self.check_usable()?;
        self.check_size(vote.len() as u64)?;
        self.emit(&Record::Vote(vote))?;
        self.vote = Some(vote.to_vec());
        Ok(())
    }

    /// Records the raft committed marker; durable only after `sync`.
    pub fn save_committed(&mut self, committed: &[u8]) -> Result<(), WalError> {
        self.check_usable()?;
        self.check_size(committed.len() as u64)?;
        self.emit(&Record::Committed(committed))?;
        self.committed = Some(committed.to_vec());
        Ok(())
    }

    /// Drops entries `>= index` (after `sync`). `index` may be at most `last_index + 1` and
    /// must be above the purged index.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        self.check_usable()?;
        self.bounds
            .check_truncate(index)
            .map_err(Violation::into_wal_error)?;
        self.emit(&Record::Truncate { index })?;
        self.bounds.truncate(index);
        Ok(())
    }

    /// Drops entries `<= index` and remembers `marker` (opaque, e.g. raft's last purged log
    /// id). Old segments are deleted by a later `sync` under the `max_wals` rule.
    pub fn purge_upto(&mut self, index: u64, marker: &[u8]) -> Result<(), WalError> {
        self.check_usable()?;
        self.bounds
            .check_purge(index)
            .map_err(Violation::into_wal_error)?;
        self.check_size(8 + marker.len() as u64)?;
        self.emit(&Record::Purge { index, marker })?;
        self.bounds.purge(index);
        self.purged_marker = Some(marker.to_vec());
        self.retention_due = true;
        Ok(())
    }

    /// Writes buffered frames and fdatasyncs the active segment; then applies retention. A
    /// failure poisons the WAL: a failed fsync is never retried.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        self.write_buffer()?;
        if self.dirty {
            if let Err(e) = self.timed_sync() {
                let path = self.active_path();
                return Err(self.poison(WalError::io("fdatasync", path, e)));
            }
            self.dirty = false;
        }
        if self.retention_due {
            self.apply_retention();
        }
        Ok(())
    }

    /// How much longer than usual an fdatasync takes on this log's disk (see
    /// `Disk::sync_latency`; zero on a real disk).
    pub fn sync_latency(&self) -> std::time::Duration {
        self.disk.sync_latency()
    }

    /// fdatasync of the active segment, timed into `etcd_disk_wal_fsync_duration_seconds`.
    fn timed_sync(&self) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let synced = self.active.sync_data();
        crate::metrics::WAL_FSYNC.observe_duration(started.elapsed());
        synced
    }

    /// The last entry index, if the log has entries.
    pub fn last_index(&self) -> Option<u64> {
        self.bounds.last()
    }

    /// The first entry index, if the log has entries.
    pub fn first_index(&self) -> Option<u64> {
        self.bounds.first()
    }

    /// The index of the last purge.
    pub fn purged_upto(&self) -> Option<u64> {
        self.bounds.purged_upto()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the retained segments, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// The error that poisoned the WAL, if any.
    pub fn poisoned(&self) -> Option<&WalError> {
        self.poisoned.as_ref()
    }

    fn check_usable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned {
                cause: Box::new(cause.clone()),
            }),
            None => Ok(()),
        }
    }

    fn check_size(&self, body_bytes: u64) -> Result<(), WalError> {
        if body_bytes > u64::from(self.cfg.record_bytes_max) {
            return Err(WalError::RecordTooLarge {
                body_bytes,
                record_bytes_max: self.cfg.record_bytes_max,
            });
        }
        Ok(())
    }

    fn poison(&mut self, err: WalError) -> WalError {
        tracing::error!(error = %err, "wal: poisoned");
        self.poisoned = Some(err.clone());
        err
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .back()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.dir.clone())
    }

    /// Frames `record` into the buffer, cutting a new segment first if it would not fit.
    fn emit(&mut self, record: &Record<'_>) -> Result<(), WalError> {
        let frame = frame_bytes(record.body_bytes());
        if self.write_offset + self.buf.len() as u64 + frame > self.active_len {
            self.cut(frame)?;
        }
        self.crc = encode_frame(record, self.crc, &mut self.buf);
        self.dirty = true;
        if let Record::Entry { index, .. } = record {
            if let Some(active) = self.segments.back_mut() {
                active.max_entry_index = active.max_entry_index.max(Some(*index));
            }
        }
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.write_buffer()?;
        }
        Ok(())
    }

    /// Hands buffered frames to the OS without syncing (`sync` does this itself). Useful to
    /// bound memory, and for tests that crash between write and sync.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        self.write_buffer()
    }

    /// Writes the buffered frames at `write_offset`.
    fn write_buffer(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        debug_assert_eq!(self.write_offset % 8, 0);
        debug_assert_eq!(self.buf.len() % 8, 0);
        debug_assert!(self.write_offset + self.buf.len() as u64 <= self.active_len);
        if let Err(e) = self.active.write_at(&self.buf, self.write_offset) {
            let path = self.active_path();
            return Err(self.poison(WalError::io("write", path, e)));
        }
        self.write_offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the active segment and starts the next one, sized to hold at least the state
    /// records and a frame of `next_frame_bytes`.
    fn cut(&mut self, next_frame_bytes: u64) -> Result<(), WalError> {
        self.write_buffer()?;
        if let Err(e) = self.timed_sync() {
            let path = self.active_path();
            return Err(self.poison(WalError::io("fdatasync", path, e)));
        }
        self.dirty = false;
        // Everything up to here is synced into a segment that is now sealed.
        self.cut_purged_upto = self.bounds.purged_upto();
        let prev_seq = self.segments.back().map_or(0, |s| s.seq);
        let header = SegmentHeader {
            seq: prev_seq + 1,
            first_index: self.next_index_hint(),
            crc_seed: self.crc,
        };
        let (state, crc) = self.encode_state_records();
        let needed = SEGMENT_HEADER_BYTES + state.len() as u64 + next_frame_bytes;
        let len = sector_round_up(self.cfg.segment_bytes.max(needed));
        let (file, path) = match create_segment(&self.disk, &self.dir, &header, &state, len) {
            Ok(created) => created,
            Err(e) => return Err(self.poison(e)),
        };
        debug_assert!(self.segments.back().is_none_or(|s| s.seq < header.seq));
        self.segments.push_back(SegmentMeta {
            seq: header.seq,
            first_index: header.first_index,
            path,
            max_entry_index: None,
        });
        self.active = file;
        self.active_len = len;
        self.write_offset = SEGMENT_HEADER_BYTES + state.len() as u64;
        self.crc = crc;
        self.retention_due = true;
        debug_assert_eq!(self.write_offset % 8, 0);
        Ok(())
    }

    /// The first index the next segment expects: `last + 1`, else `purged + 1`, else 0.
    fn next_index_hint(&self) -> u64 {
        self.bounds
            .next_index()
            .or_else(|| self.bounds.purged_upto().map(|p| p.wrapping_add(1)))
            .unwrap_or(0)
    }

    /// Frames of the current vote, committed and purge markers, chained from the running
    /// checksum; they open every new segment so deleting older segments never loses state.
    fn encode_state_records(&self) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let mut crc = self.crc;
        if let Some(vote) = &self.vote {
            crc = encode_frame(&Record::Vote(vote), crc, &mut out);
        }
        if let Some(committed) = &self.committed {
            crc = encode_frame(&Record::Committed(committed), crc, &mut out);
        }
        if let (Some(marker), Some(index)) = (&self.purged_marker, self.bounds.purged_upto()) {
            crc = encode_frame(&Record::Purge { index, marker }, crc, &mut out);
        }
        (out, crc)
    }

    /// Deletes old segments under the `max_wals` rule. Failures are logged and retried after
    /// the next purge; they never lose data.
    fn apply_retention(&mut self) {
        self.retention_due = false;
        let (Some(purged), max_wals) = (self.cut_purged_upto, self.cfg.max_wals) else {
            return;
        };
        debug_assert!(self.bounds.purged_upto() >= Some(purged));
        if max_wals == 0 {
            return;
        }
        let mut removed = false;
        while self.segments.len() > max_wals.max(1) {
            let Some(oldest) = self.segments.front() else {
                break;
            };
            if oldest.max_entry_index.is_some_and(|max| max > purged) {
                break;
            }
            if let Err(e) = self.disk.remove(&oldest.path) {
                tracing::warn!(file = %oldest.path.display(), error = %e, "wal: cannot delete purged segment");
                self.retention_due = true;
                break;
            }
            self.segments.pop_front();
            removed = true;
        }
        if removed {
            if let Err(e) = self.disk.sync_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "wal: fsync dir after delete");
            }
        }
    }
}
