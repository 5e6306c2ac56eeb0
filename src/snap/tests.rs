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
