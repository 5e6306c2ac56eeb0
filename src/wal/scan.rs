//! Scanning one segment: header, then frames until the end of the log, then a verdict on what
//! follows. Pure; the input is the whole file (memory-mapped by the caller).
//!
//! # Torn tail or corruption
//! Writes land in the preallocated, all-zero part of the last segment, and the disk writes each
//! 512-byte sector atomically. A crash during a write can therefore leave, at the first frame
//! that does not verify:
//! - an all-zero head word (the frame's first sector never arrived) — `Unwritten`;
//! - a valid head with an all-zero tail word, or a tail past the end of the file — `Torn`.
//!
//! Neither can be produced by a flipped bit in data that had reached the disk: heads and tails
//! always have set bits, and the head check catches any one- or two-bit flip of a head. A frame
//! whose head and tail are both present but whose body does not match its checksum, a head that
//! is non-zero but invalid, non-zero padding or a bad tail magic are corruption.
//!
//! Because a synced record was written before every later record, a frame that never reached
//! the disk proves that no later record was synced either: the tail from there on can be cut.
//! As a second guard we look past the torn frame: if a well-formed frame (valid head, length in
//! bounds, tail magic in place) exists anywhere after it, the damage is not a clean tail and the
//! scan reports corruption (`DamageBeforeValidRecord`). A zeroed sector inside synced data (a
//! failing medium) is caught by this unless it hits the very last records.
//!
//! Invariant: a `Torn` or `Clean` end is only reported when every byte from that offset on is
//! either zero or not part of any well-formed frame.
//! Invariant: records are returned in file order, each at an 8-aligned offset.

use super::error::CorruptReason;
use super::format::{looks_like_frame, read_frame, FrameRead, Record, SegmentHeader};
use super::format::{FRAME_WORD_BYTES, SEGMENT_HEADER_BYTES};

/// One record and where its frame starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedRecord<'a> {
    pub offset: u64,
    pub record: Record<'a>,
}

/// How the records of a segment end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Only zeros from `offset` to the end of the file.
    Clean { offset: u64 },
    /// A write that never fully reached the disk starts at `offset`; nothing from there on is
    /// part of the log. Acceptable only in the last segment.
    Torn { offset: u64 },
    /// Damage at `offset`.
    Corrupt { offset: u64, reason: CorruptReason },
}

impl ScanEnd {
    /// Where the valid records stop.
    pub fn offset(&self) -> u64 {
        match self {
            ScanEnd::Clean { offset } | ScanEnd::Torn { offset } => *offset,
            ScanEnd::Corrupt { offset, .. } => *offset,
        }
    }
}

/// A scanned segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan<'a> {
    pub header: SegmentHeader,
    pub records: Vec<ScannedRecord<'a>>,
    pub end: ScanEnd,
    /// The chained checksum after the last valid record (the header's seed if there is none).
    pub last_crc: u32,
}

/// Scans a whole segment file. A bad header is an error at offset 0; everything after the
/// header is described by the returned `end`.
pub fn scan_segment(
    bytes: &[u8],
    record_bytes_max: u32,
) -> Result<SegmentScan<'_>, (u64, CorruptReason)> {
    let header = SegmentHeader::decode(bytes).map_err(|reason| (0, reason))?;
    let mut records = Vec::new();
    let mut crc = header.crc_seed;
    let mut offset = SEGMENT_HEADER_BYTES;
    let end = loop {
        debug_assert_eq!(offset % 8, 0);
        match read_frame(bytes, offset, crc, record_bytes_max) {
            FrameRead::Valid {
                record_type,
                body,
                crc: record_crc,
                frame_bytes,
            } => match Record::decode(record_type, body) {
                Ok(record) => {
                    records.push(ScannedRecord { offset, record });
                    crc = record_crc;
                    offset += frame_bytes;
                }
                Err(reason) => break ScanEnd::Corrupt { offset, reason },
            },
            FrameRead::Unwritten => {
                let rest = bytes.get(offset as usize..).unwrap_or_default();
                if rest.iter().all(|&b| b == 0) {
                    break ScanEnd::Clean { offset };
                }
                break torn_or_corrupt(bytes, offset, offset + FRAME_WORD_BYTES, record_bytes_max);
            }
            FrameRead::Torn { resume } => {
                break torn_or_corrupt(bytes, offset, resume, record_bytes_max)
            }
            FrameRead::Corrupt(reason) => break ScanEnd::Corrupt { offset, reason },
        }
    };
    Ok(SegmentScan {
        header,
        records,
        end,
        last_crc: crc,
    })
}

/// A frame at `offset` never fully reached the disk; it is a torn tail unless a well-formed
/// frame starts somewhere from `resume` on.
fn torn_or_corrupt(bytes: &[u8], offset: u64, resume: u64, record_bytes_max: u32) -> ScanEnd {
    let start = resume.div_ceil(8) * 8;
    let len = bytes.len() as u64;
    let mut at = start;
    while at + 2 * FRAME_WORD_BYTES <= len {
        if looks_like_frame(bytes, at, record_bytes_max) {
            return ScanEnd::Corrupt {
                offset,
                reason: CorruptReason::DamageBeforeValidRecord { valid_at: at },
            };
        }
        at += 8;
    }
    ScanEnd::Torn { offset }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{encode_frame, frame_bytes};

    fn segment(records: &[Record<'_>], len: usize) -> Vec<u8> {
        let header = SegmentHeader {
            seq: 3,
            first_index: 10,
            crc_seed: 77,
        };
        let mut out = header.encode().to_vec();
        let mut crc = header.crc_seed;
        for r in records {
            crc = encode_frame(r, crc, &mut out);
        }
        out.resize(len, 0);
        out
    }

    fn entry(index: u64, payload: &[u8]) -> Record<'_> {
        Record::Entry {
            index,
            term: 1,
            payload,
        }
    }

    #[test]
    fn clean_segment_scans_every_record() {
        let records = [entry(10, b"a"), Record::Vote(b"v"), entry(11, b"bcd")];
        let bytes = segment(&records, 4096);
        let scan = scan_segment(&bytes, 1024).unwrap();
        let got: Vec<Record<'_>> = scan.records.iter().map(|r| r.record).collect();
        assert_eq!(got, records);
        assert!(matches!(scan.end, ScanEnd::Clean { .. }));
        assert_eq!(scan.records[0].offset, SEGMENT_HEADER_BYTES);
    }

    #[test]
    fn zeroed_tail_word_is_torn_and_junk_after_it_is_ignored_unless_well_formed() {
        let records = [entry(10, &[1; 600]), entry(11, &[2; 600])];
        let mut bytes = segment(&records, 4096);
        let second = (SEGMENT_HEADER_BYTES + frame_bytes(616)) as usize;
        let second_end = second + frame_bytes(616) as usize;
        // Tear the second frame: its last sector never arrived.
        bytes[second_end - 8..second_end].fill(0);
        let scan = scan_segment(&bytes, 1024).unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(
            scan.end,
            ScanEnd::Torn {
                offset: second as u64
            }
        );

        // A well-formed frame after the torn one turns the verdict into corruption.
        let mut later = segment(&[entry(12, b"x")], 4096);
        let frame = later[SEGMENT_HEADER_BYTES as usize..][..frame_bytes(17) as usize].to_vec();
        later.clear();
        bytes[3000..3000 + frame.len()].copy_from_slice(&frame);
        let scan = scan_segment(&bytes, 1024).unwrap();
        assert_eq!(
            scan.end,
            ScanEnd::Corrupt {
                offset: second as u64,
                reason: CorruptReason::DamageBeforeValidRecord { valid_at: 3000 }
            }
        );
    }

    #[test]
    fn flipped_body_bit_is_corruption_not_a_torn_tail() {
        let records = [entry(10, b"hello")];
        let mut bytes = segment(&records, 1024);
        bytes[SEGMENT_HEADER_BYTES as usize + 8 + 16] ^= 1;
        let scan = scan_segment(&bytes, 1024).unwrap();
        assert!(matches!(
            scan.end,
            ScanEnd::Corrupt {
                offset: SEGMENT_HEADER_BYTES,
                reason: CorruptReason::ChecksumMismatch { .. }
            }
        ));
    }

    #[test]
    fn junk_after_an_unwritten_head_is_a_torn_tail() {
        let mut bytes = segment(&[entry(10, b"a")], 2048);
        bytes[1500] = 0x42;
        let scan = scan_segment(&bytes, 1024).unwrap();
        let end_of_first = SEGMENT_HEADER_BYTES + frame_bytes(17);
        assert_eq!(
            scan.end,
            ScanEnd::Torn {
                offset: end_of_first
            }
        );
    }

    #[test]
    fn forged_head_without_a_matching_check_is_corrupt() {
        let mut bytes = segment(&[], 1024);
        let head = [0xFF, 0xFF, 0xFF, 0x7F, 1, 0xA5, 0, 0];
        bytes[SEGMENT_HEADER_BYTES as usize..][..8].copy_from_slice(&head);
        let scan = scan_segment(&bytes, 1 << 20).unwrap();
        assert_eq!(
            scan.end,
            ScanEnd::Corrupt {
                offset: SEGMENT_HEADER_BYTES,
                reason: CorruptReason::FrameHead
            }
        );
    }
}
