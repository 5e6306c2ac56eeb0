//! Errors of the WAL: I/O failures with the operation and path, corruption with the file and
//! byte offset, and misuse of the API (non-contiguous appends and the like).
//!
//! Invariant: every `Corrupt` error names the segment file and the byte offset of the frame (or
//! header) that failed, so an operator can inspect it with a hex dump.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a segment could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorruptReason {
    /// The file is shorter than a segment header.
    ShortHeader { file_bytes: u64 },
    /// The file does not start with the segment magic.
    BadMagic,
    /// A segment written by a format version this build does not know.
    UnsupportedVersion { version: u32 },
    /// The header checksum does not match (or its reserved word is not zero).
    HeaderChecksum,
    /// The name of the file and its header disagree.
    NameMismatch {
        name_seq: u64,
        name_first_index: u64,
        header_seq: u64,
        header_first_index: u64,
    },
    /// A non-zero frame head that is not a valid head.
    FrameHead,
    /// A frame head announcing a body larger than the configured bound.
    RecordTooLarge {
        body_bytes: u64,
        record_bytes_max: u32,
    },
    /// Non-zero padding between a body and its tail.
    FramePadding,
    /// A non-zero frame tail without the tail magic.
    FrameTail,
    /// The record checksum (chained from the previous record) does not match.
    ChecksumMismatch { expected: u32, actual: u32 },
    /// A checksummed record of a type this build does not know.
    UnknownRecordType { record_type: u8 },
    /// A checksummed record whose body has the wrong length for its type.
    BadRecordBody { record_type: u8, body_bytes: u64 },
    /// A record that never fully reached the disk, followed by a well-formed record: the
    /// damage is not confined to the tail.
    DamageBeforeValidRecord { valid_at: u64 },
    /// A torn or unwritten record inside a segment that is not the last one. Segments are
    /// synced before the next one is created, so this is damage.
    TornInSealedSegment,
    /// Segment sequence numbers are not consecutive: a segment is missing.
    MissingSegment { expected_seq: u64, found_seq: u64 },
    /// The checksum seed of a segment does not continue the previous segment's chain.
    ChainBroken { expected: u32, found: u32 },
    /// A segment's first index does not follow the previous segment's last entry.
    SegmentIndexMismatch { expected: u64, header: u64 },
    /// An entry whose index does not follow the previous entry.
    IndexGap { expected: u64, found: u64 },
    /// An entry at or below the purged index of an empty log.
    EntryBelowPurged { index: u64, purged_upto: u64 },
    /// A truncation past the end of the log or into purged entries.
    BadTruncate { index: u64 },
    /// A purge record with a lower index than an earlier one.
    PurgeBackwards { index: u64, purged_upto: u64 },
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CorruptReason::*;
        match self {
            ShortHeader { file_bytes } => {
                write!(f, "file of {file_bytes} bytes is shorter than a segment header")
            }
            BadMagic => write!(f, "bad segment magic"),
            UnsupportedVersion { version } => write!(f, "unsupported WAL format version {version}"),
            HeaderChecksum => write!(f, "segment header checksum mismatch"),
            NameMismatch {
                name_seq,
                name_first_index,
                header_seq,
                header_first_index,
            } => write!(
                f,
                "file name says seq {name_seq:#x} first index {name_first_index:#x}, header says \
                 seq {header_seq:#x} first index {header_first_index:#x}"
            ),
            FrameHead => write!(f, "invalid record frame head"),
            RecordTooLarge {
                body_bytes,
                record_bytes_max,
            } => write!(
                f,
                "record length {body_bytes} exceeds the limit of {record_bytes_max} bytes"
            ),
            FramePadding => write!(f, "non-zero record padding"),
            FrameTail => write!(f, "invalid record frame tail"),
            ChecksumMismatch { expected, actual } => write!(
                f,
                "record checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
            UnknownRecordType { record_type } => write!(f, "unknown record type {record_type}"),
            BadRecordBody {
                record_type,
                body_bytes,
            } => write!(f, "record type {record_type} with malformed body of {body_bytes} bytes"),
            DamageBeforeValidRecord { valid_at } => write!(
                f,
                "damaged record followed by a well-formed record at offset {valid_at}"
            ),
            TornInSealedSegment => write!(f, "incomplete record in a segment that is not the last"),
            MissingSegment {
                expected_seq,
                found_seq,
            } => write!(f, "segment {expected_seq:#x} is missing (found {found_seq:#x})"),
            ChainBroken { expected, found } => write!(
                f,
                "checksum chain broken: segment seed {found:#010x}, previous segment ended with \
                 {expected:#010x}"
            ),
            SegmentIndexMismatch { expected, header } => write!(
                f,
                "segment first index {header} does not follow the previous entry (expected {expected})"
            ),
            IndexGap { expected, found } => {
                write!(f, "entry index {found} where {expected} was expected")
            }
            EntryBelowPurged { index, purged_upto } => {
                write!(f, "entry index {index} is not after the purged index {purged_upto}")
            }
            BadTruncate { index } => write!(f, "truncation at index {index} outside the log"),
            PurgeBackwards { index, purged_upto } => {
                write!(f, "purge to {index} after an earlier purge to {purged_upto}")
            }
        }
    }
}

/// Every failure of the WAL.
#[derive(Clone, Debug)]
pub enum WalError {
    /// A disk operation failed. On the write path this also poisons the `Wal`.
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// The data on disk is damaged or inconsistent; recovery refuses to guess.
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: CorruptReason,
    },
    /// An append that does not continue the log.
    NotContiguous { expected: u64, found: u64 },
    /// An append or truncation at or below the purged index.
    BelowPurged { index: u64, purged_upto: u64 },
    /// A truncation beyond the end of the log.
    TruncateBeyondEnd { index: u64, next_index: u64 },
    /// A purge below an earlier purge.
    PurgeBackwards { index: u64, purged_upto: u64 },
    /// A record larger than `WalConfig::record_bytes_max`.
    RecordTooLarge {
        body_bytes: u64,
        record_bytes_max: u32,
    },
    /// A configuration value out of range.
    BadConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// An earlier write or sync failed; the WAL accepts nothing more (a failed fsync is never
    /// retried: the kernel may already have dropped the data).
    Poisoned { cause: Box<WalError> },
    /// The group-commit writer has stopped.
    Closed,
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Whether this error (or the error that poisoned the WAL) is a corruption report.
    pub fn is_corruption(&self) -> bool {
        match self {
            WalError::Corrupt { .. } => true,
            WalError::Poisoned { cause } => cause.is_corruption(),
            _ => false,
        }
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { op, path, source } => {
                write!(f, "wal: {op} {}: {source}", path.display())
            }
            WalError::Corrupt {
                file,
                offset,
                reason,
            } => write!(f, "wal: {} at offset {offset}: {reason}", file.display()),
            WalError::NotContiguous { expected, found } => write!(
                f,
                "wal: append of index {found} does not continue the log (expected {expected})"
            ),
            WalError::BelowPurged { index, purged_upto } => write!(
                f,
                "wal: index {index} is not after the purged index {purged_upto}"
            ),
            WalError::TruncateBeyondEnd { index, next_index } => write!(
                f,
                "wal: truncation at {index} is beyond the end of the log (next index {next_index})"
            ),
            WalError::PurgeBackwards { index, purged_upto } => write!(
                f,
                "wal: purge to {index} is below the earlier purge to {purged_upto}"
            ),
            WalError::RecordTooLarge {
                body_bytes,
                record_bytes_max,
            } => write!(
                f,
                "wal: record of {body_bytes} bytes exceeds the limit of {record_bytes_max} bytes"
            ),
            WalError::BadConfig { field, reason } => write!(f, "wal: config {field}: {reason}"),
            WalError::Poisoned { cause } => {
                write!(f, "wal: unusable after an earlier failure: {cause}")
            }
            WalError::Closed => write!(f, "wal: writer stopped"),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source.as_ref()),
            WalError::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
