//! Property tests of the format and of recovery:
//! - frames round-trip through the scanner;
//! - cutting the last segment at any byte (or zeroing it from any sector boundary) recovers
//!   exactly the records that lie wholly before the cut;
//! - flipping any bit of written data is reported as corruption naming the file and an offset
//!   at or before the flip, never silently dropped;
//! - arbitrary bytes after a valid header never make the decoder panic.

use std::path::PathBuf;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::format::{encode_frame, Record, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::replay::Replay;
use super::tests_recovery::Ctx;
use super::*;
use crate::io::{Disk, OpenOptions};

#[derive(Clone, Debug)]
enum Op {
    Entry(Vec<u8>),
    Vote(Vec<u8>),
    Truncate(u64),
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 500..1500),
        1 => (0usize..1100).prop_map(|n| vec![0u8; n]),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => payload().prop_map(Op::Entry),
        1 => vec(any::<u8>(), 0..40).prop_map(Op::Vote),
        1 => (0u64..4).prop_map(Op::Truncate),
    ]
}

fn owned_record() -> impl Strategy<Value = (u8, u64, u64, Vec<u8>)> {
    (1u8..=5, any::<u64>(), any::<u64>(), payload())
}

fn as_record(r: &(u8, u64, u64, Vec<u8>)) -> Record<'_> {
    let (kind, a, b, bytes) = r;
    match kind {
        1 => Record::Entry {
            index: *a,
            term: *b,
            payload: bytes,
        },
        2 => Record::Vote(bytes),
        3 => Record::Committed(bytes),
        4 => Record::Truncate { index: *a },
        _ => Record::Purge {
            index: *a,
            marker: bytes,
        },
    }
}

/// Writes `ops` through the WAL with a sync after each, returning the context.
fn write_all(ops: &[Op], segment_bytes: u64) -> Ctx {
    let mut ctx = Ctx::new(11);
    ctx.cfg.segment_bytes = segment_bytes;
    ctx.cfg.max_wals = 0;
    let (mut wal, _) = ctx.open().unwrap();
    let mut next = 1u64;
    for op in ops {
        match op {
            Op::Entry(payload) => {
                let record = LogRecord {
                    index: next,
                    term: 1,
                    payload: payload.clone(),
                };
                wal.append(&[record]).unwrap();
                next += 1;
            }
            Op::Vote(vote) => wal.save_vote(vote).unwrap(),
            Op::Truncate(back) => {
                let at = next.saturating_sub(*back).max(1);
                wal.truncate_from(at).unwrap();
                next = at;
            }
        }
        wal.sync().unwrap();
    }
    ctx
}

/// Every record in log order with its segment and the offset where its frame ends.
fn all_records(ctx: &Ctx) -> Vec<(PathBuf, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for path in ctx.segments() {
        let bytes = ctx.disk.contents(&path).unwrap();
        let scan = scan_segment(&bytes, ctx.cfg.record_bytes_max).unwrap();
        let ends: Vec<u64> = scan
            .records
            .iter()
            .skip(1)
            .map(|r| r.offset)
            .chain([scan.end.offset()])
            .collect();
        for (r, end) in scan.records.iter().zip(ends) {
            let mut frame = Vec::new();
            encode_frame(&r.record, 0, &mut frame);
            out.push((path.clone(), end, frame));
        }
    }
    out
}

/// The state after replaying the records that end at or before `cut` in `last` (and all
/// records of earlier segments).
fn expected_after_cut(ctx: &Ctx, last: &PathBuf, cut: u64) -> Recovered {
    let mut replay = Replay::default();
    for (path, end, frame) in all_records(ctx) {
        if &path == last && end > cut {
            break;
        }
        let scan = super::format::read_frame(&frame, 0, 0, u32::MAX);
        let super::format::FrameRead::Valid {
            record_type, body, ..
        } = scan
        else {
            panic!("re-encoded frame must verify");
        };
        replay
            .apply(&Record::decode(record_type, body).unwrap())
            .unwrap();
    }
    replay.into_recovered(None)
}

fn same_state(got: &Recovered, want: &Recovered) -> bool {
    got.entries == want.entries && got.vote == want.vote
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn frames_round_trip(records in vec(owned_record(), 0..20), seed in any::<u32>()) {
        let header = SegmentHeader { seq: 1, first_index: 0, crc_seed: seed };
        let mut bytes = header.encode().to_vec();
        let mut crc = seed;
        for r in &records {
            crc = encode_frame(&as_record(r), crc, &mut bytes);
        }
        let written = bytes.len() as u64;
        bytes.resize(bytes.len() + 512, 0);
        let scan = scan_segment(&bytes, u32::MAX).unwrap();
        let got: Vec<Record<'_>> = scan.records.iter().map(|r| r.record).collect();
        let want: Vec<Record<'_>> = records.iter().map(as_record).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(scan.end, ScanEnd::Clean { offset: written });
        prop_assert_eq!(scan.last_crc, crc);
    }

    #[test]
    fn cutting_the_last_segment_anywhere_recovers_exactly_a_prefix(
        ops in vec(op(), 1..30),
        at in any::<Index>(),
        shorten in any::<bool>(),
    ) {
        let ctx = write_all(&ops, 2048);
        let last = ctx.segments().last().unwrap().clone();
        let bytes = ctx.disk.contents(&last).unwrap();
        let end = scan_segment(&bytes, ctx.cfg.record_bytes_max).unwrap().end.offset();
        let file = ctx.disk.open(&last, OpenOptions::read_write()).unwrap();
        let cut = if shorten {
            // The file itself ends early, at any byte.
            let cut = SEGMENT_HEADER_BYTES + at.index((end - SEGMENT_HEADER_BYTES + 1) as usize) as u64;
            file.set_len(cut).unwrap();
            cut
        } else {
            // A torn write: everything from a sector boundary on never arrived.
            let sectors = end.div_ceil(512);
            let cut = (at.index(sectors as usize) as u64 * 512).max(SEGMENT_HEADER_BYTES);
            file.write_at(&vec![0u8; (bytes.len() as u64 - cut) as usize], cut).unwrap();
            cut
        };
        file.sync_data().unwrap();
        let want = expected_after_cut(&ctx, &last, cut);
        let (mut wal, got) = ctx.open().unwrap();
        prop_assert!(same_state(&got, &want), "cut {} of {}: got {:?} want {:?}", cut, end, got.entries.len(), want.entries.len());
        // The repaired log accepts new entries and keeps them.
        let next = got.last_index().map_or(1, |i| i + 1);
        wal.append(&[LogRecord { index: next, term: 9, payload: b"after".to_vec() }]).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, again) = ctx.open().unwrap();
        prop_assert_eq!(again.last_index(), Some(next));
        prop_assert_eq!(&again.entries[..got.entries.len()], &got.entries[..]);
    }

    #[test]
    fn any_flipped_bit_of_written_data_is_reported_with_file_and_offset(
        ops in vec(op(), 1..30),
        which in any::<Index>(),
        at in any::<Index>(),
        bit in 0u8..8,
    ) {
        let ctx = write_all(&ops, 2048);
        let segments = ctx.segments();
        let path = which.get(&segments).clone();
        let bytes = ctx.disk.contents(&path).unwrap();
        let end = scan_segment(&bytes, ctx.cfg.record_bytes_max).unwrap().end.offset();
        let pos = at.index(end as usize) as u64;
        ctx.disk.corrupt_durable(&path, pos, bit).unwrap();
        match ctx.open() {
            Err(WalError::Corrupt { file, offset, reason }) => {
                prop_assert_eq!(&file, &path);
                prop_assert!(offset <= pos, "offset {} after flip at {} ({})", offset, pos, reason);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
            Ok((_, got)) => prop_assert!(false, "flip at {} of {:?} went unnoticed: {} entries", pos, path, got.entries.len()),
        }
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(tail in vec(any::<u8>(), 0..4096), max in 0u32..100_000) {
        let mut bytes = SegmentHeader { seq: 0, first_index: 0, crc_seed: 0 }.encode().to_vec();
        bytes.extend_from_slice(&tail);
        let _ = decode_segment(&bytes, max);
        let _ = decode_segment(&tail, max);
    }
}
