//! Replays the committed fuzz corpus (`fuzz/corpus/wal_decode/`) through the decoder on stable,
//! as plain `cargo test`. Every file must decode without panicking and within the record bound;
//! the hand-made seeds must give the verdict their names promise.
//!
//! The seeds are regenerated with
//! `cargo test --lib write_fuzz_corpus -- --ignored` (files found by the fuzzer are added by
//! hand and kept).

use std::path::{Path, PathBuf};

use super::format::{encode_frame, Record, SegmentHeader, FRAME_MARKER};
use super::tests_recovery::{entry, Ctx};
use super::*;
use crate::io::Disk;

/// The bound the fuzz target uses.
const FUZZ_RECORD_BYTES_MAX: u32 = 1 << 20;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wal_decode")
}

fn decode(bytes: &[u8]) -> Result<DecodedSegment, (u64, CorruptReason)> {
    let decoded = decode_segment(bytes, FUZZ_RECORD_BYTES_MAX);
    if let Ok(segment) = &decoded {
        for e in &segment.recovered.entries {
            assert!(e.payload.len() as u64 + 16 <= u64::from(FUZZ_RECORD_BYTES_MAX));
        }
    }
    decoded
}

#[test]
fn fuzz_corpus_replays_without_panics_and_seeds_keep_their_verdicts() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("fuzz corpus directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "corpus too small: {names:?}");
    for name in &names {
        let bytes = std::fs::read(corpus_dir().join(name)).expect("corpus file");
        let decoded = decode(&bytes);
        let _ = scan_segment(&bytes, FUZZ_RECORD_BYTES_MAX);
        let verdict_ok = match name.as_str() {
            "ok-torn-tail" => {
                matches!(&decoded, Ok(s) if matches!(s.end, ScanEnd::Torn { .. }))
            }
            "ok-second-segment" => {
                matches!(&decoded, Ok(s) if s.header.seq == 1 && s.recovered.vote.is_some())
            }
            n if n.starts_with("ok-") => decoded.is_ok(),
            "bad-huge-length" => matches!(decoded, Err((_, CorruptReason::RecordTooLarge { .. }))),
            "bad-huge-index" => matches!(decoded, Err((_, CorruptReason::IndexGap { .. }))),
            "bad-zeros" => decoded == Err((0, CorruptReason::BadMagic)),
            "bad-truncated-header" => {
                matches!(decoded, Err((0, CorruptReason::ShortHeader { .. })))
            }
            "bad-wrong-chain" | "bad-flipped-bit" => {
                matches!(decoded, Err((_, CorruptReason::ChecksumMismatch { .. })))
            }
            _ => true,
        };
        assert!(verdict_ok, "{name}: {decoded:?}");
    }
}

fn write(name: &str, bytes: &[u8]) {
    std::fs::write(corpus_dir().join(name), bytes).expect("write corpus file");
}

fn segment_of(records: &[Record<'_>], seed: u32) -> Vec<u8> {
    let header = SegmentHeader {
        seq: 0,
        first_index: 0,
        crc_seed: seed,
    };
    let mut bytes = header.encode().to_vec();
    let mut crc = seed;
    for r in records {
        crc = encode_frame(r, crc, &mut bytes);
    }
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes
}

#[test]
#[ignore = "regenerates the seed corpus; run by hand"]
fn write_fuzz_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    // Real segments written by the WAL: first, second (state records first) and a torn last.
    let mut ctx = Ctx::new(3);
    ctx.cfg.segment_bytes = 1024;
    let (mut wal, _) = ctx.open().unwrap();
    wal.save_vote(b"vote").unwrap();
    wal.append(&(1..=12).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    wal.truncate_from(10).unwrap();
    wal.purge_upto(2, b"purged").unwrap();
    wal.save_committed(b"committed").unwrap();
    wal.sync().unwrap();
    let segments = ctx.segments();
    write(
        "ok-first-segment",
        &ctx.disk.contents(&segments[0]).unwrap(),
    );
    write(
        "ok-second-segment",
        &ctx.disk.contents(&segments[1]).unwrap(),
    );
    let mut torn = ctx.disk.contents(segments.last().unwrap()).unwrap();
    let end = scan_segment(&torn, 1 << 20).unwrap().end.offset() as usize;
    torn[end - 8..end].fill(0);
    write("ok-torn-tail", &torn);

    let e = |index, payload: &'static [u8]| Record::Entry {
        index,
        term: 1,
        payload,
    };
    let mut huge = segment_of(&[e(1, b"a")], 0);
    let at = huge.iter().rposition(|&b| b != 0).unwrap().div_ceil(8) * 8;
    let mut head = [0u8; 8];
    head[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    head[4] = 1;
    head[5] = FRAME_MARKER;
    let crc = crc32fast::hash(&head[0..6]);
    head[6..8].copy_from_slice(&((crc ^ (crc >> 16)) as u16).to_le_bytes());
    huge[at..at + 8].copy_from_slice(&head);
    write("bad-huge-length", &huge);
    write(
        "bad-huge-index",
        &segment_of(&[e(u64::MAX, b"x"), e(0, b"y")], 0),
    );
    write("bad-zeros", &[0u8; 4096]);
    write("bad-truncated-header", &segment_of(&[], 0)[..20]);
    let mut chain = segment_of(&[e(1, b"a"), e(2, b"b")], 7);
    chain[12..16].copy_from_slice(&8u32.to_le_bytes());
    let crc = crc32fast::hash(&chain[0..32]);
    chain[32..36].copy_from_slice(&crc.to_le_bytes());
    write("bad-wrong-chain", &chain);
    let mut flipped = segment_of(&[e(1, b"hello"), e(2, b"world")], 0);
    flipped[40 + 8 + 17] ^= 4;
    write("bad-flipped-bit", &flipped);
    drop(wal);
    assert!(ctx.disk.exists(&segments[0]).unwrap());
}
