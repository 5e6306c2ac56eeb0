//! Segment files: names, creation, and the in-memory description of a retained segment.
//!
//! A segment is `{seq:016x}-{first_index:016x}.wal` in the WAL directory. It is built under
//! `<name>.tmp` (header and initial state records written, space allocated, fdatasync), renamed to its final name, and the
//! directory is fsynced, so a segment with its final name always has a complete, durable header
//! and its full preallocated length. Leftover `.tmp` files are removed on open.
//!
//! Invariant: `seq` increases by exactly one from each segment to the next.
//! Invariant: segment lengths are multiples of the sector size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::WalError;
use super::format::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::io::{Disk, DiskFile, OpenOptions, SECTOR_BYTES};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of segments being built.
pub const TMP_SUFFIX: &str = ".tmp";

/// What the writer remembers about a retained segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
    /// The highest entry index ever written into this segment (truncated or not).
    pub max_entry_index: Option<u64>,
}

pub fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// Parses `{seq:016x}-{first_index:016x}.wal`; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first_index) = stem.split_once('-')?;
    if seq.len() != 16 || first_index.len() != 16 {
        return None;
    }
    let seq = u64::from_str_radix(seq, 16).ok()?;
    let first_index = u64::from_str_radix(first_index, 16).ok()?;
    Some((seq, first_index))
}

/// Rounds a length up to whole sectors.
pub fn sector_round_up(len_bytes: u64) -> u64 {
    len_bytes.div_ceil(SECTOR_BYTES) * SECTOR_BYTES
}

/// Creates a segment durably (temp name, header and `initial` frames, allocate, fdatasync,
/// rename, fsync dir) and returns it open for writing.
pub fn create_segment(
    disk: &Arc<dyn Disk>,
    dir: &Path,
    header: &SegmentHeader,
    initial: &[u8],
    len_bytes: u64,
) -> Result<(Box<dyn DiskFile>, PathBuf), WalError> {
    debug_assert_eq!(len_bytes % SECTOR_BYTES, 0);
    debug_assert_eq!(initial.len() % 8, 0);
    debug_assert!(SEGMENT_HEADER_BYTES + initial.len() as u64 <= len_bytes);
    let name = segment_name(header.seq, header.first_index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    if disk
        .exists(&tmp)
        .map_err(|e| WalError::io("stat", &tmp, e))?
    {
        disk.remove(&tmp)
            .map_err(|e| WalError::io("remove", &tmp, e))?;
    }
    let file = disk
        .open(&tmp, OpenOptions::create_new())
        .map_err(|e| WalError::io("create", &tmp, e))?;
    file.write_at(&header.encode(), 0)
        .map_err(|e| WalError::io("write", &tmp, e))?;
    if !initial.is_empty() {
        file.write_at(initial, SEGMENT_HEADER_BYTES)
            .map_err(|e| WalError::io("write", &tmp, e))?;
    }
    file.allocate(len_bytes)
        .map_err(|e| WalError::io("allocate", &tmp, e))?;
    file.sync_data()
        .map_err(|e| WalError::io("fdatasync", &tmp, e))?;
    disk.rename(&tmp, &path)
        .map_err(|e| WalError::io("rename", &tmp, e))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_strangers() {
        let name = segment_name(0x1f, 0xabc);
        assert_eq!(name, "000000000000001f-0000000000000abc.wal");
        assert_eq!(parse_segment_name(&name), Some((0x1f, 0xabc)));
        assert_eq!(parse_segment_name("1f-abc.wal"), None);
        assert_eq!(parse_segment_name(&format!("{name}.tmp")), None);
        assert_eq!(
            parse_segment_name("000000000000001g-0000000000000abc.wal"),
            None
        );
    }

    #[test]
    fn sectors_round_up() {
        assert_eq!(sector_round_up(1), 512);
        assert_eq!(sector_round_up(512), 512);
        assert_eq!(sector_round_up(513), 1024);
    }
}
