//! Tests of the byte format: round trips, and the properties the torn-tail rule relies on.

use super::*;

const MAX: u32 = 1 << 20;

fn all_kinds() -> Vec<Record<'static>> {
    vec![
        Record::Entry {
            index: 7,
            term: 3,
            payload: b"payload",
        },
        Record::Entry {
            index: u64::MAX,
            term: u64::MAX,
            payload: b"",
        },
        Record::Vote(b"vote"),
        Record::Vote(b""),
        Record::Committed(b"c"),
        Record::Truncate { index: 42 },
        Record::Purge {
            index: 9,
            marker: b"marker",
        },
        Record::Purge {
            index: 0,
            marker: b"",
        },
    ]
}

#[test]
fn every_record_kind_round_trips_with_a_chained_checksum() {
    let mut buf = Vec::new();
    let mut crc = 0x1234_5678;
    let mut offsets = Vec::new();
    for record in all_kinds() {
        offsets.push(buf.len() as u64);
        crc = encode_frame(&record, crc, &mut buf);
        assert_eq!(buf.len() % 8, 0);
    }
    let mut crc = 0x1234_5678;
    for (record, offset) in all_kinds().into_iter().zip(offsets) {
        match read_frame(&buf, offset, crc, MAX) {
            FrameRead::Valid {
                record_type,
                body,
                crc: next,
                frame_bytes: n,
            } => {
                assert_eq!(Record::decode(record_type, body).unwrap(), record);
                assert_eq!(n, frame_bytes(record.body_bytes()));
                crc = next;
            }
            other => panic!("{record:?}: {other:?}"),
        }
    }
}

#[test]
fn a_frame_read_with_the_wrong_chain_seed_fails() {
    let mut buf = Vec::new();
    encode_frame(&Record::Vote(b"v"), 1, &mut buf);
    assert!(matches!(
        read_frame(&buf, 0, 2, MAX),
        FrameRead::Corrupt(CorruptReason::ChecksumMismatch { .. })
    ));
}

/// The head check is an affine function of the head, so a flip pattern that goes unnoticed on
/// one head goes unnoticed on all of them: checking every one- and two-bit pattern on a few
/// heads proves the property for every head.
#[test]
fn head_check_catches_every_one_and_two_bit_flip() {
    for (len, kind) in [(0u32, 2u8), (17, 1), (MAX, 5), (123_456, 4)] {
        let head = u64::from_le_bytes(encode_head(len, kind));
        assert!(parse_head(&head.to_le_bytes(), u32::MAX).is_ok());
        for a in 0..64 {
            for b in a..64 {
                let flipped = head ^ (1u64 << a) ^ if a == b { 0 } else { 1u64 << b };
                assert!(
                    parse_head(&flipped.to_le_bytes(), u32::MAX).is_err(),
                    "bits {a},{b} of head {head:#x}"
                );
            }
        }
    }
}

#[test]
fn heads_and_tails_are_never_zero_and_survive_no_single_flip_to_zero() {
    assert!(FRAME_MARKER.count_ones() >= 2);
    assert!(TAIL_MAGIC.count_ones() >= 2);
    let mut buf = Vec::new();
    encode_frame(&Record::Vote(b""), 0, &mut buf);
    assert_eq!(buf.len(), 16);
    assert!(buf[0..8].iter().any(|&b| b != 0));
    assert!(buf[8..16].iter().any(|&b| b != 0));
}

#[test]
fn forged_length_with_a_valid_check_is_refused_before_use() {
    let mut buf = encode_head(u32::MAX, 1).to_vec();
    buf.resize(64, 0);
    assert_eq!(
        read_frame(&buf, 0, 0, MAX),
        FrameRead::Corrupt(CorruptReason::RecordTooLarge {
            body_bytes: u64::from(u32::MAX),
            record_bytes_max: MAX
        })
    );
    // Within the bound but past the end of the input: the tail never reached the disk.
    let mut buf = encode_head(1000, 1).to_vec();
    buf.resize(64, 0);
    assert_eq!(read_frame(&buf, 0, 0, MAX), FrameRead::Torn { resume: 64 });
}

#[test]
fn padding_and_tail_damage_are_corruption_and_a_zero_tail_is_torn() {
    let mut frame = Vec::new();
    encode_frame(&Record::Vote(b"abc"), 0, &mut frame);
    let mut padded = frame.clone();
    padded[8 + 4] = 1;
    assert_eq!(
        read_frame(&padded, 0, 0, MAX),
        FrameRead::Corrupt(CorruptReason::FramePadding)
    );
    let mut bad_tail = frame.clone();
    bad_tail[frame.len() - 1] ^= 0x10;
    assert_eq!(
        read_frame(&bad_tail, 0, 0, MAX),
        FrameRead::Corrupt(CorruptReason::FrameTail)
    );
    let mut torn = frame.clone();
    let n = torn.len();
    torn[n - 8..].fill(0);
    assert_eq!(
        read_frame(&torn, 0, 0, MAX),
        FrameRead::Torn { resume: n as u64 }
    );
}

#[test]
fn zeros_and_short_inputs() {
    assert_eq!(read_frame(&[0u8; 64], 0, 0, MAX), FrameRead::Unwritten);
    assert_eq!(read_frame(&[0u8; 4], 0, 0, MAX), FrameRead::Unwritten);
    assert_eq!(
        read_frame(&[1u8; 4], 0, 0, MAX),
        FrameRead::Torn { resume: 4 }
    );
    assert_eq!(read_frame(&[], 0, 0, MAX), FrameRead::Unwritten);
}

#[test]
fn record_bodies_with_wrong_lengths_or_types_are_refused() {
    assert!(matches!(
        Record::decode(1, &[0u8; 15]),
        Err(CorruptReason::BadRecordBody { record_type: 1, .. })
    ));
    assert!(Record::decode(4, &[0u8; 9]).is_err());
    assert!(Record::decode(5, &[0u8; 7]).is_err());
    assert_eq!(
        Record::decode(99, &[]),
        Err(CorruptReason::UnknownRecordType { record_type: 99 })
    );
}

#[test]
fn segment_header_round_trips_and_rejects_damage() {
    let header = SegmentHeader {
        seq: 5,
        first_index: 1000,
        crc_seed: 0xdead_beef,
    };
    let bytes = header.encode();
    assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    assert_eq!(
        SegmentHeader::decode(&bytes[..39]),
        Err(CorruptReason::ShortHeader { file_bytes: 39 })
    );
    let mut bad = bytes;
    bad[0] ^= 1;
    assert_eq!(SegmentHeader::decode(&bad), Err(CorruptReason::BadMagic));
    let mut bad = bytes;
    bad[8] = 2;
    assert_eq!(
        SegmentHeader::decode(&bad),
        Err(CorruptReason::UnsupportedVersion { version: 2 })
    );
    for byte in 12..40 {
        let mut bad = bytes;
        bad[byte] ^= 0x40;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(CorruptReason::HeaderChecksum),
            "byte {byte}"
        );
    }
}

#[test]
fn looks_like_frame_accepts_real_frames_only() {
    let mut buf = vec![0u8; 8];
    encode_frame(&Record::Vote(b"x"), 0, &mut buf);
    assert!(looks_like_frame(&buf, 8, MAX));
    assert!(!looks_like_frame(&buf, 0, MAX));
    assert!(!looks_like_frame(&buf, 4, MAX));
    assert!(!looks_like_frame(&buf[..buf.len() - 1], 8, MAX));
}

// Changing these bytes changes the on-disk format: bump the version and keep a decoder for the
// old one.
const SEGMENT_HEADER_V1: &str = "
    4f 58 45 54 43 44 57 4c     # magic \"OXETCDWL\"
    01 00 00 00                 # version 1
    78 56 34 12                 # crc_seed 0x12345678
    01 00 00 00 00 00 00 00     # seq 1
    10 00 00 00 00 00 00 00     # first_index 16
    bd 58 48 dc                 # header_crc = crc32(bytes 0..32)
    00 00 00 00                 # zero
";

// Changing these bytes changes the on-disk format: bump the version and keep a decoder for the
// old one.
const ENTRY_FRAME_V1: &str = "
    17 00 00 00                 # body_len 23
    01                          # type 1: entry
    a5                          # marker
    10 e5                       # head_check
    07 00 00 00 00 00 00 00     # index 7
    02 00 00 00 00 00 00 00     # term 2
    70 61 79 6c 6f 61 64 00     # payload \"payload\", one byte of padding
    0a c1 6c 6d                 # crc, chained from 0x12345678 over type ++ body
    0a 4c 41 57                 # tail magic 0x57414C0A
";

#[test]
fn segment_header_and_frame_bytes_are_fixed() {
    let header = SegmentHeader {
        seq: 1,
        first_index: 0x10,
        crc_seed: 0x1234_5678,
    };
    crate::golden::assert_golden("segment header", &header.encode(), SEGMENT_HEADER_V1);

    let mut frame = Vec::new();
    let record = Record::Entry {
        index: 7,
        term: 2,
        payload: b"payload",
    };
    let crc = encode_frame(&record, 0x1234_5678, &mut frame);
    crate::golden::assert_golden("entry frame", &frame, ENTRY_FRAME_V1);
    assert_eq!(crc, 0x6d6c_c10a);
    let read = read_frame(&frame, 0, 0x1234_5678, MAX);
    assert!(
        matches!(
            read,
            FrameRead::Valid {
                record_type: 1,
                crc: 0x6d6c_c10a,
                frame_bytes: 40,
                ..
            }
        ),
        "{read:?}"
    );
}
