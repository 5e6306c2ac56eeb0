//! The WAL's bytes: segment header, record frame and record bodies. Pure encoding and
//! decoding, no I/O.
//!
//! ```text
//! segment     := header frame* zero*
//! header      := magic:[u8;8]="OXETCDWL" version:u32=1 crc_seed:u32 seq:u64 first_index:u64
//!                header_crc:u32 zero:u32                                  ; 40 bytes
//!                header_crc = crc32(header[0..32])
//! frame       := head body pad tail                                       ; starts 8-aligned
//! head        := body_len:u32 record_type:u8 marker:u8=0xA5 head_check:u16 ; one 8-byte word
//!                head_check = fold16(crc32(head[0..6]))
//! body        := byte{body_len}                                           ; body_len <= record_bytes_max
//! pad         := 0x00{(8 - body_len % 8) % 8}
//! tail        := crc:u32 tail_magic:u32=0x5741_4C0A                        ; one 8-byte word
//!                crc = crc32 continued from the previous frame's crc (or the header's
//!                crc_seed) over record_type ++ body
//! record_type := 1 entry     body = index:u64 term:u64 payload
//!              | 2 vote      body = opaque bytes (raft vote)
//!              | 3 committed body = opaque bytes (raft committed log id)
//!              | 4 truncate  body = index:u64      ; entries >= index are gone
//!              | 5 purge     body = index:u64 marker ; entries <= index are gone, marker opaque
//! ```
//! All integers are little-endian.
//!
//! Why a head *and* a tail word: a frame's head and tail are each 8 bytes at 8-aligned offsets,
//! so each sits inside one 512-byte sector, which the disk writes atomically. A valid head or
//! tail is never all zeros (the marker and the magic guarantee set bits), and the region past
//! the end of the log is all zeros (preallocated, never written before). So after a crash an
//! all-zero head or tail proves that this part of the write never reached the disk, which
//! separates a torn write from a flipped bit locally (see `scan`). The head check catches any
//! one- or two-bit flip in the head (proved exhaustively in the tests), so a damaged length can
//! never send the reader to a wrong tail.
//!
//! Invariant: every frame starts and ends at a multiple of 8 bytes from the start of the file.
//! Invariant: decoding never allocates; bodies are borrowed from the input and `body_len` is
//! checked against `record_bytes_max` and the input length before it is used.

use super::error::CorruptReason;
use crate::io::le::{u16_at, u32_at, u64_at};

/// First 8 bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"OXETCDWL";
/// The format version written in segment headers.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_BYTES: u64 = 40;
/// Size of a frame head and of a frame tail.
pub const FRAME_WORD_BYTES: u64 = 8;
/// The fixed marker byte of a frame head.
pub const FRAME_MARKER: u8 = 0xA5;
/// The fixed high half of a frame tail.
pub const TAIL_MAGIC: u32 = 0x5741_4C0A;
/// Bytes of an entry body before the payload (index and term).
pub const ENTRY_PREFIX_BYTES: u64 = 16;

/// Record types, the `record_type` byte of a frame head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    Entry = 1,
    Vote = 2,
    Committed = 3,
    Truncate = 4,
    Purge = 5,
}

/// A decoded record; byte fields borrow from the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Entry {
        index: u64,
        term: u64,
        payload: &'a [u8],
    },
    Vote(&'a [u8]),
    Committed(&'a [u8]),
    Truncate {
        index: u64,
    },
    Purge {
        index: u64,
        marker: &'a [u8],
    },
}

/// The decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub first_index: u64,
    pub crc_seed: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES as usize];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc_seed.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32fast::hash(&out[0..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, CorruptReason> {
        let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
            return Err(CorruptReason::ShortHeader {
                file_bytes: bytes.len() as u64,
            });
        };
        if header[0..8] != SEGMENT_MAGIC {
            return Err(CorruptReason::BadMagic);
        }
        let version = u32_at(header, 8);
        if version != FORMAT_VERSION {
            return Err(CorruptReason::UnsupportedVersion { version });
        }
        if u32_at(header, 32) != crc32fast::hash(&header[0..32]) || u32_at(header, 36) != 0 {
            return Err(CorruptReason::HeaderChecksum);
        }
        Ok(SegmentHeader {
            crc_seed: u32_at(header, 12),
            seq: u64_at(header, 16),
            first_index: u64_at(header, 24),
        })
    }
}

impl<'a> Record<'a> {
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::Entry { .. } => RecordType::Entry,
            Record::Vote(_) => RecordType::Vote,
            Record::Committed(_) => RecordType::Committed,
            Record::Truncate { .. } => RecordType::Truncate,
            Record::Purge { .. } => RecordType::Purge,
        }
    }

    /// Length of the encoded body.
    pub fn body_bytes(&self) -> u64 {
        match self {
            Record::Entry { payload, .. } => ENTRY_PREFIX_BYTES + payload.len() as u64,
            Record::Vote(bytes) | Record::Committed(bytes) => bytes.len() as u64,
            Record::Truncate { .. } => 8,
            Record::Purge { marker, .. } => 8 + marker.len() as u64,
        }
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry {
                index,
                term,
                payload,
            } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&term.to_le_bytes());
                out.extend_from_slice(payload);
            }
            Record::Vote(bytes) | Record::Committed(bytes) => out.extend_from_slice(bytes),
            Record::Truncate { index } => out.extend_from_slice(&index.to_le_bytes()),
            Record::Purge { index, marker } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(marker);
            }
        }
    }

    /// Decodes a body whose frame (length, checksum) was already verified.
    pub fn decode(record_type: u8, body: &'a [u8]) -> Result<Record<'a>, CorruptReason> {
        let bad = || CorruptReason::BadRecordBody {
            record_type,
            body_bytes: body.len() as u64,
        };
        let record = match record_type {
            1 if body.len() >= ENTRY_PREFIX_BYTES as usize => Record::Entry {
                index: u64_at(body, 0),
                term: u64_at(body, 8),
                payload: &body[ENTRY_PREFIX_BYTES as usize..],
            },
            2 => Record::Vote(body),
            3 => Record::Committed(body),
            4 if body.len() == 8 => Record::Truncate {
                index: u64_at(body, 0),
            },
            5 if body.len() >= 8 => Record::Purge {
                index: u64_at(body, 0),
                marker: &body[8..],
            },
            1 | 4 | 5 => return Err(bad()),
            other => return Err(CorruptReason::UnknownRecordType { record_type: other }),
        };
        Ok(record)
    }
}

/// Total frame size for a body of `body_bytes`.
pub const fn frame_bytes(body_bytes: u64) -> u64 {
    FRAME_WORD_BYTES + body_bytes.div_ceil(8) * 8 + FRAME_WORD_BYTES
}

/// The head word for a body length and type.
fn encode_head(body_len: u32, record_type: u8) -> [u8; 8] {
    let mut head = [0u8; 8];
    head[0..4].copy_from_slice(&body_len.to_le_bytes());
    head[4] = record_type;
    head[5] = FRAME_MARKER;
    let check = head_check(&head[0..6]);
    head[6..8].copy_from_slice(&check.to_le_bytes());
    head
}

fn head_check(covered: &[u8]) -> u16 {
    let crc = crc32fast::hash(covered);
    (crc ^ (crc >> 16)) as u16
}

/// The chained checksum of one record.
pub fn record_crc(crc_seed: u32, record_type: u8, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(crc_seed);
    hasher.update(&[record_type]);
    hasher.update(body);
    hasher.finalize()
}

/// Appends the frame of `record` to `out` and returns the record's chained checksum. The caller
/// has checked the body against `record_bytes_max`; `out` must be 8-aligned relative to the
/// file.
pub fn encode_frame(record: &Record<'_>, crc_seed: u32, out: &mut Vec<u8>) -> u32 {
    let body_bytes = record.body_bytes();
    let body_len = u32::try_from(body_bytes).unwrap_or(u32::MAX);
    assert_eq!(u64::from(body_len), body_bytes, "record body over 4 GiB");
    let start = out.len();
    let record_type = record.record_type() as u8;
    out.extend_from_slice(&encode_head(body_len, record_type));
    let body_start = out.len();
    record.write_body(out);
    debug_assert_eq!((out.len() - body_start) as u64, body_bytes);
    let crc = record_crc(crc_seed, record_type, &out[body_start..]);
    out.resize(
        start + (frame_bytes(body_bytes) - FRAME_WORD_BYTES) as usize,
        0,
    );
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&TAIL_MAGIC.to_le_bytes());
    debug_assert_eq!((out.len() - start) as u64, frame_bytes(body_bytes));
    crc
}

/// What sits at a frame position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A complete frame whose checksum matches.
    Valid {
        record_type: u8,
        body: &'a [u8],
        crc: u32,
        frame_bytes: u64,
    },
    /// The head word is all zeros (or the input ends in fewer than 8 zero bytes): nothing was
    /// ever written here.
    Unwritten,
    /// A frame whose head reached the disk but whose tail did not (the tail is zero or lies past
    /// the end of the file): the signature of a torn write. `resume` is where the frame would
    /// have ended.
    Torn { resume: u64 },
    /// Anything else: bytes that a torn write cannot produce.
    Corrupt(CorruptReason),
}

/// Reads the frame at `offset` (8-aligned) of `bytes`, chaining the checksum from `crc_seed`.
pub fn read_frame(
    bytes: &[u8],
    offset: u64,
    crc_seed: u32,
    record_bytes_max: u32,
) -> FrameRead<'_> {
    debug_assert_eq!(offset % 8, 0);
    let len = bytes.len() as u64;
    if offset >= len {
        return FrameRead::Unwritten;
    }
    let at = offset as usize;
    if len - offset < FRAME_WORD_BYTES {
        return if bytes[at..].iter().all(|&b| b == 0) {
            FrameRead::Unwritten
        } else {
            FrameRead::Torn { resume: len }
        };
    }
    let head = &bytes[at..at + 8];
    if head.iter().all(|&b| b == 0) {
        return FrameRead::Unwritten;
    }
    let (body_len, record_type) = match parse_head(head, record_bytes_max) {
        Ok(parsed) => parsed,
        Err(reason) => return FrameRead::Corrupt(reason),
    };
    let total = frame_bytes(u64::from(body_len));
    if total > len - offset {
        return FrameRead::Torn { resume: len };
    }
    let tail_at = at + (total - FRAME_WORD_BYTES) as usize;
    let tail = &bytes[tail_at..tail_at + 8];
    if tail.iter().all(|&b| b == 0) {
        return FrameRead::Torn {
            resume: offset + total,
        };
    }
    if u32_at(tail, 4) != TAIL_MAGIC {
        return FrameRead::Corrupt(CorruptReason::FrameTail);
    }
    let body = &bytes[at + 8..at + 8 + body_len as usize];
    if bytes[at + 8 + body_len as usize..tail_at]
        .iter()
        .any(|&b| b != 0)
    {
        return FrameRead::Corrupt(CorruptReason::FramePadding);
    }
    let expected = u32_at(tail, 0);
    let actual = record_crc(crc_seed, record_type, body);
    // Planted bug (test-only `canary` feature): accept a body that fails its checksum.
    let skip_crc = crate::canary::active(crate::canary::Canary::SkipRecoveryCrc);
    if expected != actual && !skip_crc {
        return FrameRead::Corrupt(CorruptReason::ChecksumMismatch { expected, actual });
    }
    FrameRead::Valid {
        record_type,
        body,
        crc: actual,
        frame_bytes: total,
    }
}

/// Validates a non-zero head word; returns body length and record type.
fn parse_head(head: &[u8], record_bytes_max: u32) -> Result<(u32, u8), CorruptReason> {
    if head[5] != FRAME_MARKER || u16_at(head, 6) != head_check(&head[0..6]) {
        return Err(CorruptReason::FrameHead);
    }
    let body_len = u32_at(head, 0);
    if body_len > record_bytes_max {
        return Err(CorruptReason::RecordTooLarge {
            body_bytes: u64::from(body_len),
            record_bytes_max,
        });
    }
    Ok((body_len, head[4]))
}

/// Whether a well-formed frame (valid head, in-bounds length, tail magic in place) starts at
/// `offset`. The checksum cannot be verified without the chain, so this is a shape test.
pub fn looks_like_frame(bytes: &[u8], offset: u64, record_bytes_max: u32) -> bool {
    let len = bytes.len() as u64;
    if offset % 8 != 0 || len.saturating_sub(offset) < 2 * FRAME_WORD_BYTES {
        return false;
    }
    let at = offset as usize;
    let head = &bytes[at..at + 8];
    if head[5] != FRAME_MARKER {
        return false;
    }
    let Ok((body_len, _)) = parse_head(head, record_bytes_max) else {
        return false;
    };
    let total = frame_bytes(u64::from(body_len));
    if total > len - offset {
        return false;
    }
    let tail_at = at + (total - FRAME_WORD_BYTES) as usize;
    u32_at(bytes, tail_at + 4) == TAIL_MAGIC
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
