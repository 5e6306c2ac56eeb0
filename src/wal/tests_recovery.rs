//! Table-driven recovery cases on the simulated disk: each case builds a WAL directory (through
//! the writer, then by editing bytes where the case needs damage) and states what `Wal::open`
//! must return.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{encode_frame, Record, SegmentHeader, SEGMENT_HEADER_BYTES};
use super::*;
use crate::io::sim::SimDisk;
use crate::io::{Disk, OpenOptions};

pub(super) struct Ctx {
    pub disk: SimDisk,
    pub dir: PathBuf,
    pub cfg: WalConfig,
}

impl Ctx {
    pub fn new(seed: u64) -> Ctx {
        Ctx {
            disk: SimDisk::new(seed),
            dir: PathBuf::from("/data/member/wal"),
            cfg: WalConfig {
                segment_bytes: 4096,
                record_bytes_max: 64 * 1024,
                max_wals: 2,
            },
        }
    }

    pub fn open(&self) -> Result<(Wal, Recovered), WalError> {
        Wal::open(Arc::new(self.disk.clone()), &self.dir, self.cfg)
    }

    pub fn segments(&self) -> Vec<PathBuf> {
        let mut names = self.disk.list(&self.dir).unwrap();
        names.retain(|n| n.ends_with(".wal"));
        names.iter().map(|n| self.dir.join(n)).collect()
    }

    /// Frame offsets of the entries in a segment, by index.
    pub fn entry_offsets(&self, path: &Path) -> Vec<(u64, u64)> {
        let bytes = self.disk.contents(path).unwrap();
        let scan = scan_segment(&bytes, self.cfg.record_bytes_max).unwrap();
        scan.records
            .iter()
            .filter_map(|r| match r.record {
                Record::Entry { index, .. } => Some((index, r.offset)),
                _ => None,
            })
            .collect()
    }

    /// Writes raw bytes durably (test-only damage).
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let file = self.disk.open(path, OpenOptions::read_write()).unwrap();
        file.write_at(bytes, offset).unwrap();
        file.sync_data().unwrap();
    }
}

pub(super) fn entry(index: u64, term: u64) -> LogRecord {
    let len = (index * 37 % 200) as usize;
    let payload = (0..len).map(|i| (index as usize + i) as u8).collect();
    LogRecord {
        index,
        term,
        payload,
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<LogRecord> {
    range.map(|i| entry(i, term)).collect()
}

fn write_synced(ctx: &Ctx, range: std::ops::RangeInclusive<u64>) {
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(range, 1)).unwrap();
    wal.sync().unwrap();
}

fn indexes(recovered: &Recovered) -> Vec<u64> {
    recovered.entries.iter().map(|e| e.index).collect()
}

enum Expect {
    Entries {
        indexes: Vec<u64>,
        torn_at: Option<u64>,
    },
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: fn(&CorruptReason) -> bool,
    },
}

fn case_empty_dir(_: &Ctx) -> Expect {
    Expect::Entries {
        indexes: vec![],
        torn_at: None,
    }
}

fn case_only_header(ctx: &Ctx) -> Expect {
    drop(ctx.open().unwrap());
    Expect::Entries {
        indexes: vec![],
        torn_at: None,
    }
}

fn case_torn_tail(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=5);
    let seg = ctx.segments()[0].clone();
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(6..=8, 1)).unwrap();
    wal.sync().unwrap();
    // Pretend the write of 7..8 was torn: the end of entry 7 and all of entry 8 never reached
    // the disk (zero from 7's tail word on).
    let offsets = ctx.entry_offsets(&seg);
    let (_, at7) = offsets[6];
    let (_, at8) = offsets[7];
    ctx.poke(&seg, at8 - 8, &[0u8; 1024]);
    Expect::Entries {
        indexes: (1..=6).collect(),
        torn_at: Some(at7),
    }
}

fn case_mid_log_corruption(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=5);
    let seg = ctx.segments()[0].clone();
    let (_, at3) = ctx.entry_offsets(&seg)[2];
    ctx.disk.corrupt_durable(&seg, at3 + 8 + 3, 5).unwrap();
    Expect::Corrupt {
        file: seg,
        offset: at3,
        reason: |r| matches!(r, CorruptReason::ChecksumMismatch { .. }),
    }
}

fn case_corrupt_last_record_is_not_a_torn_tail(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=5);
    let seg = ctx.segments()[0].clone();
    let (_, at5) = ctx.entry_offsets(&seg)[4];
    ctx.disk.corrupt_durable(&seg, at5 + 8 + 9, 0).unwrap();
    Expect::Corrupt {
        file: seg,
        offset: at5,
        reason: |r| matches!(r, CorruptReason::ChecksumMismatch { .. }),
    }
}

fn case_read_corruption(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=3);
    let seg = ctx.segments()[0].clone();
    let (_, at2) = ctx.entry_offsets(&seg)[1];
    ctx.disk.flip_bit_on_read(&seg, at2 + 20, 7).unwrap();
    Expect::Corrupt {
        file: seg,
        offset: at2,
        reason: |r| matches!(r, CorruptReason::ChecksumMismatch { .. }),
    }
}

/// Builds a one-segment WAL by hand from `records`.
fn forge_segment(ctx: &Ctx, records: &[Record<'_>]) -> (PathBuf, Vec<u64>) {
    ctx.disk.create_dir_all(&ctx.dir).unwrap();
    let header = SegmentHeader {
        seq: 0,
        first_index: 0,
        crc_seed: 0,
    };
    let mut bytes = header.encode().to_vec();
    let mut crc = 0;
    let mut offsets = Vec::new();
    for record in records {
        offsets.push(bytes.len() as u64);
        crc = encode_frame(record, crc, &mut bytes);
    }
    bytes.resize(4096, 0);
    let path = ctx.dir.join(segment_name(0, 0));
    let file = ctx.disk.open(&path, OpenOptions::create_new()).unwrap();
    file.write_at(&bytes, 0).unwrap();
    file.sync_data().unwrap();
    ctx.disk.sync_dir(&ctx.dir).unwrap();
    (path, offsets)
}

fn case_index_gap(ctx: &Ctx) -> Expect {
    let e = |index| Record::Entry {
        index,
        term: 1,
        payload: b"x",
    };
    let (file, offsets) = forge_segment(ctx, &[e(1), e(2), e(4)]);
    Expect::Corrupt {
        file,
        offset: offsets[2],
        reason: |r| {
            *r == CorruptReason::IndexGap {
                expected: 3,
                found: 4,
            }
        },
    }
}

fn case_truncate_then_append(ctx: &Ctx) -> Expect {
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(1..=10, 1)).unwrap();
    wal.truncate_from(6).unwrap();
    wal.append(&entries(6..=8, 2)).unwrap();
    wal.sync().unwrap();
    Expect::Entries {
        indexes: (1..=8).collect(),
        torn_at: None,
    }
}

fn case_purge_across_segments(ctx: &Ctx) -> Expect {
    let (mut wal, _) = ctx.open().unwrap();
    wal.save_vote(b"vote-1").unwrap();
    for chunk in 0..20u64 {
        wal.append(&entries(chunk * 10 + 1..=chunk * 10 + 10, 1))
            .unwrap();
        wal.sync().unwrap();
    }
    assert!(wal.segment_paths().len() > 4);
    wal.purge_upto(150, b"purged-150").unwrap();
    wal.sync().unwrap();
    // Retention relies only on a purge sealed by a cut: nothing goes yet.
    assert_eq!(ctx.segments().len(), wal.segment_paths().len());
    let before = wal.segment_paths().len();
    for chunk in 20..30u64 {
        wal.append(&entries(chunk * 10 + 1..=chunk * 10 + 10, 1))
            .unwrap();
        wal.sync().unwrap();
    }
    assert!(wal.segment_paths().len() < before, "no segment was deleted");
    // max_wals = 2: old segments go until two are left or the oldest holds an entry > 150.
    let kept = wal.segment_paths();
    assert_eq!(ctx.segments(), kept);
    let oldest_max = ctx.entry_offsets(&kept[0]).last().map(|(i, _)| *i);
    assert!(kept.len() == 2 || oldest_max > Some(150), "{kept:?}");
    let oldest_min = ctx.entry_offsets(&kept[0]).first().map(|(i, _)| *i);
    assert!(oldest_min <= Some(151), "{kept:?} starts at {oldest_min:?}");
    Expect::Entries {
        indexes: (151..=300).collect(),
        torn_at: None,
    }
}

fn case_bad_header_magic(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=2);
    let seg = ctx.segments()[0].clone();
    ctx.poke(&seg, 0, b"X");
    Expect::Corrupt {
        file: seg,
        offset: 0,
        reason: |r| *r == CorruptReason::BadMagic,
    }
}

fn case_huge_forged_length(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=3);
    let seg = ctx.segments()[0].clone();
    let (_, at3) = ctx.entry_offsets(&seg)[2];
    let end = at3 + format::frame_bytes(16 + entry(3, 1).payload.len() as u64);
    // A well-formed head announcing a 4 GiB record right after the last one: not a torn write
    // (a torn write leaves a zero head), so it must stop recovery.
    let mut head = [0u8; 8];
    head[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    head[4] = 1;
    head[5] = format::FRAME_MARKER;
    let crc = crc32fast::hash(&head[0..6]);
    head[6..8].copy_from_slice(&((crc ^ (crc >> 16)) as u16).to_le_bytes());
    ctx.poke(&seg, end, &head);
    Expect::Corrupt {
        file: seg,
        offset: end,
        reason: |r| matches!(r, CorruptReason::RecordTooLarge { .. }),
    }
}

fn case_missing_middle_segment(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=100);
    let segs = ctx.segments();
    assert!(segs.len() >= 3);
    ctx.disk.remove(&segs[1]).unwrap();
    ctx.disk.sync_dir(&ctx.dir).unwrap();
    Expect::Corrupt {
        file: segs[2].clone(),
        offset: 0,
        reason: |r| matches!(r, CorruptReason::MissingSegment { .. }),
    }
}

fn case_torn_record_in_sealed_segment(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=100);
    let seg = ctx.segments()[0].clone();
    let (_, last_at) = *ctx.entry_offsets(&seg).last().unwrap();
    let bytes = ctx.disk.contents(&seg).unwrap();
    let end = scan_segment(&bytes, ctx.cfg.record_bytes_max)
        .unwrap()
        .end
        .offset();
    // The last record's tail word is zero, as if its final sector had never been written.
    ctx.poke(&seg, end - 8, &[0u8; 8]);
    Expect::Corrupt {
        file: seg,
        offset: last_at,
        reason: |r| *r == CorruptReason::TornInSealedSegment,
    }
}

fn case_damage_followed_by_valid_record(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=6);
    let seg = ctx.segments()[0].clone();
    let (_, at3) = ctx.entry_offsets(&seg)[2];
    // Zero the head of entry 3 as a lost sector would, while 4..6 are intact after it.
    ctx.poke(&seg, at3, &[0u8; 8]);
    Expect::Corrupt {
        file: seg,
        offset: at3,
        reason: |r| matches!(r, CorruptReason::DamageBeforeValidRecord { .. }),
    }
}

fn case_leftover_tmp_is_removed(ctx: &Ctx) -> Expect {
    write_synced(ctx, 1..=2);
    let tmp = ctx.dir.join(format!("{}.tmp", segment_name(1, 3)));
    ctx.disk.open(&tmp, OpenOptions::create_new()).unwrap();
    ctx.disk.sync_dir(&ctx.dir).unwrap();
    Expect::Entries {
        indexes: vec![1, 2],
        torn_at: None,
    }
}

type Case = (&'static str, fn(&Ctx) -> Expect);

const CASES: &[Case] = &[
    ("empty dir", case_empty_dir),
    ("only header", case_only_header),
    ("torn tail", case_torn_tail),
    ("mid-log corruption", case_mid_log_corruption),
    (
        "flipped bit in the last record",
        case_corrupt_last_record_is_not_a_torn_tail,
    ),
    ("read corruption", case_read_corruption),
    ("index gap", case_index_gap),
    ("truncate_from then append", case_truncate_then_append),
    ("purge across segments", case_purge_across_segments),
    ("bad header magic", case_bad_header_magic),
    ("huge forged length", case_huge_forged_length),
    ("missing middle segment", case_missing_middle_segment),
    (
        "torn record in a sealed segment",
        case_torn_record_in_sealed_segment,
    ),
    (
        "damage followed by a valid record",
        case_damage_followed_by_valid_record,
    ),
    ("leftover temp segment", case_leftover_tmp_is_removed),
];

#[test]
fn recovery_cases() {
    for (name, build) in CASES {
        let ctx = Ctx::new(7);
        let expect = build(&ctx);
        match (expect, ctx.open()) {
            (
                Expect::Entries {
                    indexes: want,
                    torn_at,
                },
                Ok((_, got)),
            ) => {
                assert_eq!(indexes(&got), want, "{name}");
                for e in &got.entries {
                    assert_eq!(e.payload, entry(e.index, e.term).payload, "{name}");
                }
                assert_eq!(got.torn_tail.map(|t| t.offset), torn_at, "{name}");
                // A second open sees the same entries and nothing left to repair.
                let (_, again) = ctx.open().unwrap();
                assert_eq!(indexes(&again), want, "{name}: reopen");
                assert_eq!(again.torn_tail, None, "{name}: reopen");
            }
            (
                Expect::Corrupt {
                    file,
                    offset,
                    reason,
                },
                Err(WalError::Corrupt {
                    file: got_file,
                    offset: got_offset,
                    reason: got_reason,
                }),
            ) => {
                assert_eq!(got_file, file, "{name}");
                assert_eq!(got_offset, offset, "{name}: {got_reason}");
                assert!(reason(&got_reason), "{name}: {got_reason}");
            }
            (_, Ok((_, got))) => panic!("{name}: expected corruption, got {got:?}"),
            (_, Err(e)) => panic!("{name}: unexpected error {e}"),
        }
    }
}

#[test]
fn vote_committed_and_purge_marker_survive_segment_deletion() {
    let ctx = Ctx::new(1);
    let (mut wal, _) = ctx.open().unwrap();
    wal.save_vote(b"v1").unwrap();
    wal.save_committed(b"c1").unwrap();
    for i in 1..=300 {
        wal.append(&[entry(i, 1)]).unwrap();
    }
    wal.purge_upto(290, b"p290").unwrap();
    wal.sync().unwrap();
    for i in 301..=400 {
        wal.append(&[entry(i, 1)]).unwrap();
    }
    wal.sync().unwrap();
    // The segments holding the vote, committed marker and entries up to 290 are gone.
    let kept = wal.segment_paths();
    let oldest_min = ctx.entry_offsets(&kept[0]).first().map(|(i, _)| *i);
    assert!(oldest_min > Some(250), "{kept:?} starts at {oldest_min:?}");
    drop(wal);
    let (_, got) = ctx.open().unwrap();
    assert_eq!(got.vote.as_deref(), Some(&b"v1"[..]));
    assert_eq!(got.committed.as_deref(), Some(&b"c1"[..]));
    assert_eq!(got.purged.as_deref(), Some(&b"p290"[..]));
    assert_eq!(got.purged_upto, Some(290));
    assert_eq!(indexes(&got), (291..=400).collect::<Vec<_>>());
}

#[test]
fn max_wals_zero_keeps_every_segment() {
    let mut ctx = Ctx::new(2);
    ctx.cfg.max_wals = 0;
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(1..=200, 1)).unwrap();
    wal.purge_upto(200, b"all").unwrap();
    wal.sync().unwrap();
    let count = wal.segment_paths().len();
    assert!(count > 3);
    assert_eq!(ctx.segments().len(), count);
    let (_, got) = ctx.open().unwrap();
    assert!(got.entries.is_empty());
    assert_eq!(got.purged_upto, Some(200));
    let (mut wal, _) = ctx.open().unwrap();
    assert!(wal.append(&[entry(200, 1)]).is_err());
    wal.append(&[entry(201, 1)]).unwrap();
}

#[test]
fn failed_fsync_poisons_the_wal_and_the_unsynced_entry_is_not_recovered() {
    let ctx = Ctx::new(3);
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&[entry(1, 1)]).unwrap();
    wal.sync().unwrap();
    wal.append(&[entry(2, 1)]).unwrap();
    ctx.disk.fail_next_syncs(1);
    let err = wal.sync().unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
    // Never retried: every later call fails, including sync.
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
    assert!(matches!(
        wal.append(&[entry(3, 1)]),
        Err(WalError::Poisoned { .. })
    ));
    ctx.disk.crash();
    let (_, got) = ctx.open().unwrap();
    assert_eq!(indexes(&got), vec![1]);
}

#[test]
fn disk_full_while_cutting_a_segment_poisons_the_wal() {
    let ctx = Ctx::new(4);
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(1..=10, 1)).unwrap();
    wal.sync().unwrap();
    ctx.disk.set_enospc(true);
    let err = wal.append(&entries(11..=100, 1)).unwrap_err();
    assert!(
        matches!(&err, WalError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{err}"
    );
    assert!(wal.poisoned().is_some());
    ctx.disk.set_enospc(false);
    drop(wal);
    let (_, got) = ctx.open().unwrap();
    assert!(indexes(&got).starts_with(&(1..=10).collect::<Vec<_>>()));
}

#[test]
fn refused_calls_write_nothing() {
    let ctx = Ctx::new(5);
    let (mut wal, _) = ctx.open().unwrap();
    wal.append(&entries(1..=3, 1)).unwrap();
    assert!(matches!(
        wal.append(&[entry(5, 1)]),
        Err(WalError::NotContiguous {
            expected: 4,
            found: 5
        })
    ));
    // The valid prefix of a bad batch is not written either.
    assert!(wal.append(&[entry(4, 1), entry(6, 1)]).is_err());
    let huge = LogRecord {
        index: 4,
        term: 1,
        payload: vec![0; 64 * 1024],
    };
    assert!(matches!(
        wal.append(&[huge]),
        Err(WalError::RecordTooLarge { .. })
    ));
    assert!(matches!(
        wal.truncate_from(9),
        Err(WalError::TruncateBeyondEnd { .. })
    ));
    wal.purge_upto(1, b"m").unwrap();
    assert!(matches!(
        wal.purge_upto(0, b"m"),
        Err(WalError::PurgeBackwards { .. })
    ));
    assert!(matches!(
        wal.truncate_from(1),
        Err(WalError::BelowPurged { .. })
    ));
    wal.sync().unwrap();
    assert_eq!(wal.last_index(), Some(3));
    drop(wal);
    let (_, got) = ctx.open().unwrap();
    assert_eq!(indexes(&got), vec![2, 3]);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_larger_segment() {
    let ctx = Ctx::new(6);
    let (mut wal, _) = ctx.open().unwrap();
    let big = LogRecord {
        index: 1,
        term: 1,
        payload: vec![0xEE; 20_000],
    };
    wal.append(&[big.clone(), entry(2, 1)]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, got) = ctx.open().unwrap();
    assert_eq!(got.entries[0], big);
    assert_eq!(indexes(&got), vec![1, 2]);
}

#[test]
fn the_recovered_tail_is_made_durable_on_open() {
    // After a process crash the tail may exist only in the page cache; open must sync it, or a
    // later power loss would take back a vote raft has already acted on.
    let ctx = Ctx::new(8);
    let (mut wal, _) = ctx.open().unwrap();
    wal.save_vote(b"term-5").unwrap();
    wal.append(&[entry(1, 5)]).unwrap();
    wal.flush().unwrap();
    drop(wal); // written to the OS but never synced: the process died
    let (_, got) = ctx.open().unwrap();
    assert_eq!(got.vote.as_deref(), Some(&b"term-5"[..]));
    ctx.disk.crash_drop_unsynced();
    let (_, got) = ctx.open().unwrap();
    assert_eq!(got.vote.as_deref(), Some(&b"term-5"[..]));
    assert_eq!(indexes(&got), vec![1]);
}

#[test]
fn config_bounds_are_checked() {
    let mut ctx = Ctx::new(9);
    ctx.cfg.segment_bytes = 100;
    assert!(matches!(ctx.open(), Err(WalError::BadConfig { .. })));
    ctx.cfg.segment_bytes = 4096;
    ctx.cfg.record_bytes_max = 1;
    assert!(matches!(ctx.open(), Err(WalError::BadConfig { .. })));
}

#[test]
fn first_segment_has_the_documented_name_and_header() {
    let ctx = Ctx::new(10);
    drop(ctx.open().unwrap());
    let segs = ctx.segments();
    assert_eq!(
        segs,
        vec![ctx.dir.join("0000000000000000-0000000000000000.wal")]
    );
    let bytes = ctx.disk.contents(&segs[0]).unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[..8], b"OXETCDWL");
    assert!(bytes[SEGMENT_HEADER_BYTES as usize..]
        .iter()
        .all(|&b| b == 0));
}

/// A power loss can tear the last sector of the active segment even after it was synced (the
/// next append rewrites that sector). When that sector held the latest purge record, recovery
/// ends with an older purge index; retention must not have deleted the entries in between.
#[test]
fn a_torn_purge_record_never_leaves_a_hole_after_the_purge_point() {
    let ctx = Ctx::new(9);
    let (mut wal, _) = ctx.open().unwrap();
    for chunk in 0..30u64 {
        wal.append(&entries(chunk * 10 + 1..=chunk * 10 + 10, 1))
            .unwrap();
        if chunk >= 5 {
            let upto = chunk * 10 - 40;
            wal.purge_upto(upto, &upto.to_le_bytes()).unwrap();
        }
        wal.sync().unwrap();
    }
    wal.purge_upto(290, b"p290").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let active = ctx.segments().last().unwrap().clone();
    let bytes = ctx.disk.contents(&active).unwrap();
    let scan = scan_segment(&bytes, ctx.cfg.record_bytes_max).unwrap();
    let last_purge = scan
        .records
        .iter()
        .rev()
        .find(|r| matches!(r.record, Record::Purge { index: 290, .. }))
        .map(|r| r.offset)
        .unwrap();
    let end = scan.end.offset();
    ctx.poke(&active, last_purge, &vec![0u8; (end - last_purge) as usize]);
    let (_, got) = ctx.open().unwrap();
    let purged = got.purged_upto.unwrap();
    assert!(purged < 290, "the torn purge record was recovered");
    assert_eq!(
        got.entries.first().map(|e| e.index),
        Some(purged + 1),
        "entries after the recovered purge point {purged} are missing"
    );
    assert_eq!(got.last_index(), Some(300));
}
