//! Snapshot store tests on the simulated disk: durability through crashes, fallback rules,
//! retention, temp-file cleanup, and the snapshot policy.

use super::*;
use crate::io::sim::SimDisk;

fn store(disk: &SimDisk, max: usize) -> SnapStore {
    SnapStore::open(Arc::new(disk.clone()), Path::new("/m/snap"), max).unwrap()
}

fn data(index: u64) -> Vec<u8> {
    format!("image at {index}").into_bytes()
}

#[test]
fn saved_snapshot_survives_a_crash_and_loads_memory_backed_bytes() {
    let disk = SimDisk::new(1);
    let snaps = store(&disk, 5);
    snaps.save(2, 100, &data(100)).unwrap();
    disk.crash();
    let snaps = store(&disk, 5);
    let loaded = snaps.load_newest(|_| false).unwrap().unwrap();
    assert_eq!((loaded.term, loaded.index), (2, 100));
    assert_eq!(loaded.data(), &data(100)[..]);
    assert!(loaded
        .path
        .ends_with("0000000000000002-0000000000000064.snap"));
}

#[test]
fn no_snapshot_is_none() {
    let disk = SimDisk::new(2);
    assert!(store(&disk, 5).load_newest(|_| false).unwrap().is_none());
}

#[test]
fn newest_wins_by_index() {
    let disk = SimDisk::new(3);
    let snaps = store(&disk, 0);
    snaps.save(3, 200, &data(200)).unwrap();
    snaps.save(5, 300, &data(300)).unwrap();
    snaps.save(4, 250, &data(250)).unwrap();
    assert_eq!(snaps.load_newest(|_| false).unwrap().unwrap().index, 300);
}

fn damage_newest(disk: &SimDisk, snaps: &SnapStore) -> PathBuf {
    let newest = snaps.list().unwrap().pop().unwrap().path;
    disk.corrupt_durable(&newest, SNAP_HEADER_BYTES + 2, 1)
        .unwrap();
    newest
}

#[test]
fn damaged_newest_falls_back_only_when_the_wal_covers_the_gap() {
    let disk = SimDisk::new(4);
    let snaps = store(&disk, 5);
    snaps.save(1, 100, &data(100)).unwrap();
    snaps.save(1, 200, &data(200)).unwrap();
    let newest = damage_newest(&disk, &snaps);

    let covered_from_150 = |i: u64| i >= 150;
    match snaps.load_newest(covered_from_150) {
        Err(SnapError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, newest);
            assert_eq!(offset, SNAP_HEADER_BYTES);
            assert!(matches!(reason, SnapCorruptReason::DataChecksum { .. }));
        }
        other => panic!("expected corruption, got {other:?}"),
    }

    let covered_from_100 = |i: u64| i >= 100;
    let loaded = snaps.load_newest(covered_from_100).unwrap().unwrap();
    assert_eq!(loaded.index, 100);
    assert_eq!(loaded.data(), &data(100)[..]);
}

#[test]
fn only_snapshot_damaged_needs_the_whole_log() {
    let disk = SimDisk::new(5);
    let snaps = store(&disk, 5);
    snaps.save(1, 100, &data(100)).unwrap();
    damage_newest(&disk, &snaps);
    assert!(matches!(
        snaps.load_newest(|i| i >= 50),
        Err(SnapError::Corrupt { .. })
    ));
    assert!(snaps.load_newest(|_| true).unwrap().is_none());
}

#[test]
fn renamed_file_with_a_foreign_header_is_refused() {
    let disk = SimDisk::new(6);
    let snaps = store(&disk, 5);
    let meta = snaps.save(1, 100, &data(100)).unwrap();
    let forged = Path::new("/m/snap").join(snap_name(9, 900));
    disk.rename(&meta.path, &forged).unwrap();
    match snaps.load_newest(|_| false) {
        Err(SnapError::Corrupt { reason, .. }) => {
            assert!(matches!(reason, SnapCorruptReason::NameMismatch { .. }))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn retention_keeps_the_newest_max_snapshots() {
    let disk = SimDisk::new(7);
    let snaps = store(&disk, 3);
    for i in 1..=6u64 {
        snaps.save(1, i * 10, &data(i)).unwrap();
    }
    let kept: Vec<u64> = snaps.list().unwrap().iter().map(|m| m.index).collect();
    assert_eq!(kept, vec![40, 50, 60]);
    disk.crash();
    let kept: Vec<u64> = store(&disk, 3)
        .list()
        .unwrap()
        .iter()
        .map(|m| m.index)
        .collect();
    assert_eq!(kept, vec![40, 50, 60]);

    let unlimited = store(&disk, 0);
    unlimited.save(1, 70, &data(7)).unwrap();
    assert_eq!(unlimited.list().unwrap().len(), 4);
}

#[test]
fn crash_before_rename_leaves_nothing_and_the_temp_file_is_cleaned() {
    let disk = SimDisk::new(8);
    let snaps = store(&disk, 5);
    snaps.save(1, 10, &data(10)).unwrap();
    // A save that dies between write and rename: only the temp file exists.
    let tmp = Path::new("/m/snap").join(format!("{}.tmp", snap_name(1, 20)));
    let file = disk.open(&tmp, OpenOptions::create_new()).unwrap();
    file.write_at(b"partial", 0).unwrap();
    disk.sync_dir(Path::new("/m/snap")).unwrap();
    disk.crash();
    let snaps = store(&disk, 5);
    assert!(!disk.exists(&tmp).unwrap());
    assert_eq!(snaps.load_newest(|_| false).unwrap().unwrap().index, 10);
}

#[test]
fn a_failed_fsync_is_an_error_and_the_snapshot_is_not_published() {
    let disk = SimDisk::new(9);
    let snaps = store(&disk, 5);
    disk.fail_next_syncs(1);
    assert!(matches!(
        snaps.save(1, 10, &data(10)),
        Err(SnapError::Io { .. })
    ));
    assert!(snaps.list().unwrap().is_empty());
}

#[test]
fn policy_triggers_after_more_than_snapshot_count_entries() {
    let policy = SnapshotPolicy {
        snapshot_count: 100,
    };
    assert!(!policy.due(100, 0));
    assert!(policy.due(101, 0));
    assert!(!policy.due(150, 100));
    assert!(!policy.due(5, 10));
    assert!(!SnapshotPolicy { snapshot_count: 0 }.due(u64::MAX, 0));
    assert_eq!(SnapshotPolicy::default().snapshot_count, 100_000);
    // etcd: --snapshot-count 0 means the default, not "snapshot after every entry".
    assert_eq!(SnapshotPolicy::from_flag(0), SnapshotPolicy::default());
    assert_eq!(SnapshotPolicy::from_flag(7).snapshot_count, 7);
}

#[test]
fn real_disk_round_trip_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member/snap");
    let snaps = SnapStore::open(Arc::new(crate::io::os::OsDisk::new()), &dir, 5).unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let meta = snaps.save(7, 12345, &big).unwrap();
    let mode = std::fs::metadata(&meta.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = snaps.load_newest(|_| false).unwrap().unwrap();
    assert_eq!(loaded.data(), &big[..]);
}

/// Streams the newest snapshot, reading `take` bytes of data (all of it when `None`).
fn stream_newest(
    snaps: &SnapStore,
    covered: impl Fn(u64) -> bool,
    take: Option<usize>,
) -> Result<Option<(SnapHeader, Vec<u8>)>, StreamError<String>> {
    use std::io::Read;
    snaps.load_newest_streamed(covered, |reader| {
        let mut out = Vec::new();
        match take {
            Some(n) => {
                out.resize(n, 0);
                reader.read_exact(&mut out).map_err(|e| e.to_string())?;
            }
            None => {
                reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
            }
        }
        Ok(out)
    })
}

#[test]
fn streamed_load_yields_the_same_data_as_the_mapped_load() {
    let disk = SimDisk::new(11);
    let snaps = store(&disk, 5);
    // Larger than one read chunk, so the reader refills and hashes across chunk boundaries.
    let big: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
    snaps.save(1, 100, &data(100)).unwrap();
    snaps.save(2, 200, &big).unwrap();
    let (header, streamed) = stream_newest(&snaps, |_| false, None).unwrap().unwrap();
    assert_eq!((header.term, header.index), (2, 200));
    assert_eq!(header.data_bytes, big.len() as u64);
    assert_eq!(streamed, big);
    assert_eq!(
        snaps.load_newest(|_| false).unwrap().unwrap().data(),
        &big[..]
    );
    assert!(stream_newest(&store(&SimDisk::new(12), 5), |_| false, None)
        .unwrap()
        .is_none());
}

/// A decoder that stops early must not hide damage after the point where it stopped.
#[test]
fn streamed_load_checks_the_whole_file_even_when_the_decoder_stops_early() {
    let disk = SimDisk::new(13);
    let snaps = store(&disk, 5);
    snaps.save(1, 100, &data(100)).unwrap();
    snaps.save(1, 200, &data(200)).unwrap();
    let newest = snaps.list().unwrap().pop().unwrap().path;
    let tail = SNAP_HEADER_BYTES + data(200).len() as u64 - 1;
    disk.corrupt_durable(&newest, tail, 1).unwrap();

    match stream_newest(&snaps, |i| i >= 150, Some(3)) {
        Err(StreamError::Snap(SnapError::Corrupt { file, reason, .. })) => {
            assert_eq!(file, newest);
            assert!(matches!(reason, SnapCorruptReason::DataChecksum { .. }));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let (header, prefix) = stream_newest(&snaps, |i| i >= 100, Some(3))
        .unwrap()
        .unwrap();
    assert_eq!(header.index, 100);
    assert_eq!(prefix, data(100)[..3].to_vec());
}

#[test]
fn streamed_decode_failure_of_an_intact_file_is_a_decode_error_not_damage() {
    let disk = SimDisk::new(14);
    let snaps = store(&disk, 5);
    snaps.save(1, 100, &data(100)).unwrap();
    snaps.save(1, 200, &data(200)).unwrap();
    let result = snaps.load_newest_streamed(|_| true, |_reader| Err::<(), _>("bad image"));
    match result {
        Err(StreamError::Decode { index, error }) => assert_eq!((index, error), (200, "bad image")),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Reading past the announced data is an error the decoder sees, not extra bytes.
    let over = stream_newest(&snaps, |_| true, Some(data(200).len() + 1));
    assert!(matches!(over, Err(StreamError::Decode { index: 200, .. })));
}

#[test]
fn streamed_load_refuses_damaged_headers_and_foreign_names_like_the_mapped_load() {
    let disk = SimDisk::new(15);
    let snaps = store(&disk, 5);
    snaps.save(1, 100, &data(100)).unwrap();
    let path = snaps.list().unwrap().pop().unwrap().path;
    disk.corrupt_durable(&path, 20, 1).unwrap();
    assert!(matches!(
        stream_newest(&snaps, |_| false, None),
        Err(StreamError::Snap(SnapError::Corrupt { offset: 0, .. }))
    ));
    assert!(stream_newest(&snaps, |_| true, None).unwrap().is_none());
}
