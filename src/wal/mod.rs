//! The write-ahead log: raft log entries, the vote and the committed marker, in segment files
//! under `member/wal/`. The byte format is in [`format`], the torn-tail rules in [`scan`], the
//! index rules in [`replay`], the writer in [`Wal`] and the shared-fsync front end in
//! [`GroupCommit`]. `docs/wal.md` describes all of it for operators.
//!
//! Payloads, votes, committed markers and purge markers are opaque bytes: the raft layer owns
//! their encoding. The WAL owns ordering, durability and integrity.
//!
//! Invariant: a record is durable only after a `sync` that started after it was written returned
//! `Ok`; nothing in this module reports durability earlier.
//! Invariant: after any failed write or sync the `Wal` is poisoned and refuses every later call.
//! Invariant: recovery either returns every record that was synced, in order, or fails with an
//! error naming a file and offset; it never drops a synced record silently.
//! Invariant: a segment that is not the last one is complete and durable (it was fdatasynced
//! before its successor was created).

mod error;
pub mod format;
mod group;
mod log;
mod recover;
mod replay;
pub mod scan;
mod segment;

#[cfg(test)]
mod tests_corpus;
#[cfg(test)]
mod tests_crash;
#[cfg(test)]
mod tests_props;
#[cfg(test)]
mod tests_recovery;

use std::path::PathBuf;

pub use error::{CorruptReason, WalError};
pub use group::{Done, GroupCommit, WalOp};
pub use log::Wal;
pub use scan::{scan_segment, ScanEnd, SegmentScan};
pub use segment::{parse_segment_name, segment_name};

use replay::Replay;

/// Limits of the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// Preallocated size of a segment; a new segment is cut when the next record would not fit.
    /// Rounded up to whole 512-byte sectors. Default 64 MiB.
    pub segment_bytes: u64,
    /// Largest record body (for an entry: 16 bytes of index and term plus the payload).
    /// Checked before writing and, on recovery, before any length read from disk is used.
    /// Default 16 MiB.
    pub record_bytes_max: u32,
    /// Keep at most this many segment files once their entries are purged (0 = keep all).
    /// Default 5, like etcd's `--max-wals`.
    pub max_wals: usize,
}

impl WalConfig {
    pub const SEGMENT_BYTES_MIN: u64 = 1024;
    pub const RECORD_BYTES_MIN: u32 = 64;

    pub fn validate(&self) -> Result<(), WalError> {
        if self.segment_bytes < Self::SEGMENT_BYTES_MIN {
            return Err(WalError::BadConfig {
                field: "segment_bytes",
                reason: "must be at least 1024",
            });
        }
        if self.record_bytes_max < Self::RECORD_BYTES_MIN {
            return Err(WalError::BadConfig {
                field: "record_bytes_max",
                reason: "must be at least 64",
            });
        }
        Ok(())
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 * 1024 * 1024,
            record_bytes_max: 16 * 1024 * 1024,
            max_wals: 5,
        }
    }
}

/// One raft log entry as the WAL stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// Where a torn tail was cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
}

/// The state found on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Entries after truncations and purges: contiguous, ascending.
    pub entries: Vec<LogRecord>,
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    /// The marker of the last purge.
    pub purged: Option<Vec<u8>>,
    /// The index of the last purge: every entry at or below it is gone.
    pub purged_upto: Option<u64>,
    /// Set when the last segment ended in a torn write that was cut off.
    pub torn_tail: Option<TornTail>,
}

impl Recovered {
    pub fn last_index(&self) -> Option<u64> {
        self.entries.last().map(|e| e.index)
    }
}

/// One segment decoded as if it were the whole log: frames, then the index rules. The entry
/// point for fuzzing and for tools that inspect a single file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedSegment {
    pub header: format::SegmentHeader,
    pub recovered: Recovered,
    pub end: ScanEnd,
}

/// Decodes one segment file's bytes. Errors carry the byte offset of the failing frame.
pub fn decode_segment(
    bytes: &[u8],
    record_bytes_max: u32,
) -> Result<DecodedSegment, (u64, CorruptReason)> {
    let scan = scan_segment(bytes, record_bytes_max)?;
    if let ScanEnd::Corrupt { offset, reason } = scan.end {
        return Err((offset, reason));
    }
    let mut replay = Replay::default();
    for scanned in &scan.records {
        replay
            .apply(&scanned.record)
            .map_err(|reason| (scanned.offset, reason))?;
    }
    Ok(DecodedSegment {
        header: scan.header,
        recovered: replay.into_recovered(None),
        end: scan.end,
    })
}

impl Replay {
    fn into_recovered(self, torn_tail: Option<TornTail>) -> Recovered {
        Recovered {
            purged_upto: self.bounds.purged_upto(),
            entries: self.entries.into(),
            vote: self.vote,
            committed: self.committed,
            purged: self.purged_marker,
            torn_tail,
        }
    }
}
