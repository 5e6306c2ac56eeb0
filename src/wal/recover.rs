//! Recovery: list the segments, memory-map and scan each one in sequence order, replay the
//! records, cut a torn tail off the last segment, and make what was found durable.
//!
//! Checks, each failing with `WalError::Corrupt { file, offset, reason }`:
//! - file name and header agree (seq, first index); seqs are consecutive;
//! - each segment's checksum seed equals the previous segment's final checksum;
//! - each segment's first index follows the previous entries when there are any;
//! - every frame verifies (see `scan`); the records obey the index rules (see `replay`);
//! - only the last segment may end in a torn write.
//!
//! Invariant: when recovery returns, every record it reported is durable. After a process
//! crash the recovered tail may still sit only in the page cache, and raft will act on it, so
//! the last segment is always fdatasynced. Worse, after a failed fdatasync Linux marks the
//! unwritten pages clean: a new process reads them back, but no later fsync writes them. So the
//! records of the last segment are rewritten (same bytes, read back through the cache) before
//! that fdatasync. Sealed segments need none of this: they were synced successfully before
//! their successor existed.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{CorruptReason, WalError};
use super::format::{Record, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::replay::Replay;
use super::scan::{scan_segment, ScanEnd};
use super::segment::{
    create_segment, parse_segment_name, sector_round_up, SegmentMeta, SEGMENT_SUFFIX, TMP_SUFFIX,
};
use super::{TornTail, WalConfig};
use crate::io::{Disk, DiskFile, OpenOptions};

/// Everything the writer needs to continue after recovery.
pub(super) struct RecoveredLog {
    pub replay: Replay,
    pub segments: VecDeque<SegmentMeta>,
    pub active: Box<dyn DiskFile>,
    pub active_len: u64,
    pub write_offset: u64,
    pub crc: u32,
    pub torn_tail: Option<TornTail>,
    /// The purge index after every sealed segment (all but the last) was replayed.
    pub sealed_purged_upto: Option<u64>,
}

/// Repairs write at most this much per call.
const ZERO_CHUNK_BYTES: usize = 64 * 1024;

pub(super) fn recover(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    cfg: &WalConfig,
) -> Result<RecoveredLog, WalError> {
    disk.create_dir_all(dir)
        .map_err(|e| WalError::io("create dir", dir, e))?;
    let found = list_segments(disk, dir)?;
    let Some(last_position) = found.len().checked_sub(1) else {
        return create_first(disk, dir, cfg);
    };
    let mut replay = Replay::default();
    let mut segments = VecDeque::with_capacity(found.len());
    let mut prev: Option<(u64, u32)> = None;
    let mut tail = None;
    let mut sealed_purged_upto = None;
    for (position, (seq, first_index, path)) in found.into_iter().enumerate() {
        let is_last = position == last_position;
        if is_last {
            sealed_purged_upto = replay.bounds.purged_upto();
        }
        let options = if is_last {
            OpenOptions::read_write()
        } else {
            OpenOptions::read_only()
        };
        let file = disk
            .open(&path, options)
            .map_err(|e| WalError::io("open", &path, e))?;
        let outcome = {
            let bytes = file.read_all().map_err(|e| WalError::io("map", &path, e))?;
            let names = NameInfo {
                path: &path,
                seq,
                first_index,
                prev,
            };
            replay_segment(&bytes, &names, &mut replay, is_last, cfg.record_bytes_max)?
        };
        prev = Some((seq, outcome.last_crc));
        segments.push_back(SegmentMeta {
            seq,
            first_index,
            path: path.clone(),
            max_entry_index: outcome.max_entry_index,
        });
        if is_last {
            tail = Some((file, path, outcome));
        }
    }
    let Some((active, path, outcome)) = tail else {
        unreachable!("the loop visits the last segment");
    };
    rewrite_range(
        active.as_ref(),
        &path,
        SEGMENT_HEADER_BYTES,
        outcome.end_offset,
    )?;
    let torn_tail = match outcome.torn_zero_range {
        Some((offset, zero_end)) => {
            zero_range(active.as_ref(), &path, offset, zero_end)?;
            tracing::warn!(file = %path.display(), offset, "wal: cut off torn tail");
            Some(TornTail {
                file: path.clone(),
                offset,
            })
        }
        None => None,
    };
    active
        .sync_data()
        .map_err(|e| WalError::io("fdatasync", &path, e))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))?;
    let active_len = active.len().map_err(|e| WalError::io("stat", &path, e))?;
    Ok(RecoveredLog {
        replay,
        segments,
        active,
        active_len,
        write_offset: outcome.end_offset,
        crc: outcome.last_crc,
        torn_tail,
        sealed_purged_upto,
    })
}

/// Segment files sorted by seq, after removing leftover temp files.
fn list_segments(disk: &Arc<dyn Disk>, dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, WalError> {
    let names = disk.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut removed_tmp = false;
    let mut found = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(&format!("{SEGMENT_SUFFIX}{TMP_SUFFIX}")) {
            disk.remove(&path)
                .map_err(|e| WalError::io("remove", &path, e))?;
            removed_tmp = true;
        } else if let Some((seq, first_index)) = parse_segment_name(&name) {
            found.push((seq, first_index, path));
        }
    }
    if removed_tmp {
        disk.sync_dir(dir)
            .map_err(|e| WalError::io("fsync dir", dir, e))?;
    }
    found.sort_by_key(|(seq, _, _)| *seq);
    Ok(found)
}

fn create_first(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    cfg: &WalConfig,
) -> Result<RecoveredLog, WalError> {
    let header = SegmentHeader {
        seq: 0,
        first_index: 0,
        crc_seed: 0,
    };
    let len = sector_round_up(cfg.segment_bytes);
    let (active, path) = create_segment(disk, dir, &header, &[], len)?;
    Ok(RecoveredLog {
        replay: Replay::default(),
        segments: VecDeque::from([SegmentMeta {
            seq: 0,
            first_index: 0,
            path,
            max_entry_index: None,
        }]),
        active,
        active_len: len,
        write_offset: SEGMENT_HEADER_BYTES,
        crc: 0,
        torn_tail: None,
        sealed_purged_upto: None,
    })
}

struct NameInfo<'a> {
    path: &'a Path,
    seq: u64,
    first_index: u64,
    /// Seq and final checksum of the previous segment.
    prev: Option<(u64, u32)>,
}

struct SegmentOutcome {
    last_crc: u32,
    end_offset: u64,
    max_entry_index: Option<u64>,
    /// For a torn last segment: the cut offset and where the non-zero bytes end.
    torn_zero_range: Option<(u64, u64)>,
}

fn replay_segment(
    bytes: &[u8],
    names: &NameInfo<'_>,
    replay: &mut Replay,
    is_last: bool,
    record_bytes_max: u32,
) -> Result<SegmentOutcome, WalError> {
    let corrupt = |offset: u64, reason: CorruptReason| WalError::Corrupt {
        file: names.path.to_path_buf(),
        offset,
        reason,
    };
    let scan = scan_segment(bytes, record_bytes_max).map_err(|(o, r)| corrupt(o, r))?;
    check_header(&scan.header, names, replay).map_err(|(o, r)| corrupt(o, r))?;
    let mut max_entry_index = None;
    for scanned in &scan.records {
        replay
            .apply(&scanned.record)
            .map_err(|reason| corrupt(scanned.offset, reason))?;
        if let Record::Entry { index, .. } = scanned.record {
            max_entry_index = max_entry_index.max(Some(index));
        }
    }
    let torn_zero_range = match scan.end {
        ScanEnd::Clean { .. } => None,
        ScanEnd::Torn { offset } if is_last => Some((offset, nonzero_end(bytes, offset))),
        ScanEnd::Torn { offset } => {
            return Err(corrupt(offset, CorruptReason::TornInSealedSegment))
        }
        ScanEnd::Corrupt { offset, reason } => return Err(corrupt(offset, reason)),
    };
    Ok(SegmentOutcome {
        last_crc: scan.last_crc,
        end_offset: scan.end.offset(),
        max_entry_index,
        torn_zero_range,
    })
}

/// Offsets of the header fields named in errors.
const CRC_SEED_OFFSET: u64 = 12;
const FIRST_INDEX_OFFSET: u64 = 24;

fn check_header(
    header: &SegmentHeader,
    names: &NameInfo<'_>,
    replay: &Replay,
) -> Result<(), (u64, CorruptReason)> {
    if header.seq != names.seq || header.first_index != names.first_index {
        return Err((
            0,
            CorruptReason::NameMismatch {
                name_seq: names.seq,
                name_first_index: names.first_index,
                header_seq: header.seq,
                header_first_index: header.first_index,
            },
        ));
    }
    if let Some((prev_seq, prev_crc)) = names.prev {
        let expected_seq = prev_seq.wrapping_add(1);
        if header.seq != expected_seq {
            return Err((
                0,
                CorruptReason::MissingSegment {
                    expected_seq,
                    found_seq: header.seq,
                },
            ));
        }
        if header.crc_seed != prev_crc {
            return Err((
                CRC_SEED_OFFSET,
                CorruptReason::ChainBroken {
                    expected: prev_crc,
                    found: header.crc_seed,
                },
            ));
        }
    }
    if let Some(expected) = replay.bounds.next_index() {
        if header.first_index != expected {
            return Err((
                FIRST_INDEX_OFFSET,
                CorruptReason::SegmentIndexMismatch {
                    expected,
                    header: header.first_index,
                },
            ));
        }
    }
    Ok(())
}

/// The end of the last non-zero byte at or after `from`, rounded up to a sector and capped at
/// the file length.
fn nonzero_end(bytes: &[u8], from: u64) -> u64 {
    let start = from as usize;
    let last = bytes[start..].iter().rposition(|&b| b != 0);
    match last {
        Some(at) => sector_round_up((start + at + 1) as u64).min(bytes.len() as u64),
        None => from,
    }
}

/// Writes `[from, to)` back with the bytes it already holds, so a sync covers them.
fn rewrite_range(file: &dyn DiskFile, path: &Path, from: u64, to: u64) -> Result<(), WalError> {
    debug_assert!(from <= to);
    let mut chunk = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        crate::io::read_exact_at(file, &mut chunk[..n], at)
            .map_err(|e| WalError::io("read back", path, e))?;
        file.write_at(&chunk[..n], at)
            .map_err(|e| WalError::io("rewrite", path, e))?;
        at += n as u64;
    }
    Ok(())
}

fn zero_range(file: &dyn DiskFile, path: &Path, from: u64, to: u64) -> Result<(), WalError> {
    debug_assert!(from <= to);
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64);
        file.write_at(&zeros[..n as usize], at)
            .map_err(|e| WalError::io("zero torn tail", path, e))?;
        at += n;
    }
    Ok(())
}
