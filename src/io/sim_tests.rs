//! Tests of the simulated disk's fault model: each documented rule has a test that would fail
//! if the model silently kept (or lost) data it should not.

use super::*;

fn setup(seed: u64) -> (SimDisk, PathBuf) {
    let disk = SimDisk::new(seed);
    let dir = PathBuf::from("/d");
    disk.create_dir_all(&dir).unwrap();
    (disk, dir)
}

fn read(disk: &SimDisk, path: &Path) -> Vec<u8> {
    let file = disk.open(path, OpenOptions::read_only()).unwrap();
    file.read_all().unwrap().to_vec()
}

#[test]
fn synced_data_survives_and_unsynced_data_is_dropped() {
    let (disk, dir) = setup(1);
    let path = dir.join("f");
    let file = disk.open(&path, OpenOptions::create_new()).unwrap();
    disk.sync_dir(&dir).unwrap();
    file.write_at(b"durable", 0).unwrap();
    file.sync_data().unwrap();
    file.write_at(b"VOLATILE", 7).unwrap();
    assert_eq!(read(&disk, &path), b"durableVOLATILE");
    let report = disk.crash_drop_unsynced();
    assert_eq!(report.dropped_ops, 1);
    assert_eq!(read(&disk, &path), b"durable");
}

#[test]
fn directory_entries_need_sync_dir() {
    let (disk, dir) = setup(2);
    let kept = dir.join("kept");
    let lost = dir.join("lost");
    for path in [&kept, &lost] {
        let f = disk.open(path, OpenOptions::create_new()).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        if path == &kept {
            disk.sync_dir(&dir).unwrap();
        }
    }
    let report = disk.crash_drop_unsynced();
    assert_eq!(report.lost_files, 1);
    assert_eq!(disk.list(&dir).unwrap(), vec!["kept".to_string()]);

    // A rename is also volatile until the directory is synced.
    disk.rename(&kept, &dir.join("renamed")).unwrap();
    disk.crash_drop_unsynced();
    assert_eq!(disk.list(&dir).unwrap(), vec!["kept".to_string()]);
    disk.rename(&kept, &dir.join("renamed")).unwrap();
    disk.sync_dir(&dir).unwrap();
    disk.remove(&dir.join("renamed")).unwrap();
    disk.crash_drop_unsynced();
    assert_eq!(disk.list(&dir).unwrap(), vec!["renamed".to_string()]);
}

#[test]
fn torn_writes_keep_a_sector_aligned_prefix() {
    let mut torn_seen = 0;
    let mut outcomes = BTreeSet::new();
    for seed in 0..200 {
        let (disk, dir) = setup(seed);
        let path = dir.join("f");
        let file = disk.open(&path, OpenOptions::create_new()).unwrap();
        disk.sync_dir(&dir).unwrap();
        file.set_len(4096).unwrap();
        file.sync_data().unwrap();
        // One unsynced write of 2000 bytes starting mid-sector.
        file.write_at(&[0xAB; 2000], 100).unwrap();
        let report = disk.crash();
        torn_seen += report.torn_writes;
        let bytes = read(&disk, &path);
        assert_eq!(bytes.len(), 4096);
        let written = bytes[100..2100].iter().take_while(|&&b| b == 0xAB).count();
        assert!(bytes[100 + written..].iter().all(|&b| b == 0));
        // Survivors end on a sector boundary, or the write survived whole or not at all.
        let end = 100 + written;
        assert!(
            written == 0 || written == 2000 || end % 512 == 0,
            "end {end}"
        );
        outcomes.insert(written);
    }
    assert!(torn_seen > 0);
    // None, whole, and the four inner boundaries (512 .. 2048) all occur.
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
}

#[test]
fn crash_keeps_pending_writes_only_as_an_ordered_prefix() {
    for seed in 0..100 {
        let (disk, dir) = setup(seed);
        let path = dir.join("f");
        let file = disk.open(&path, OpenOptions::create_new()).unwrap();
        disk.sync_dir(&dir).unwrap();
        for i in 0..8u8 {
            file.write_at(&[i + 1], u64::from(i) * 600).unwrap();
        }
        disk.crash();
        let bytes = read(&disk, &path);
        let kept: Vec<bool> = (0..8u64)
            .map(|i| bytes.get((i * 600) as usize).is_some_and(|&b| b != 0))
            .collect();
        // Once a write is missing, every later one is missing too.
        let first_missing = kept.iter().position(|k| !k).unwrap_or(8);
        assert!(
            kept[first_missing..].iter().all(|k| !k),
            "seed {seed}: {kept:?}"
        );
    }
}

#[test]
fn same_seed_same_crash_outcome() {
    let run = |seed| {
        let (disk, dir) = setup(seed);
        let path = dir.join("f");
        let file = disk.open(&path, OpenOptions::create_new()).unwrap();
        disk.sync_dir(&dir).unwrap();
        for i in 0..20u64 {
            file.write_at(&[7u8; 700], i * 700).unwrap();
        }
        disk.crash();
        read(&disk, &path)
    };
    assert_eq!(run(42), run(42));
}

#[test]
fn failed_fsync_forgets_the_dirty_data_even_if_a_retry_succeeds() {
    let (disk, dir) = setup(3);
    let path = dir.join("f");
    let file = disk.open(&path, OpenOptions::create_new()).unwrap();
    disk.sync_dir(&dir).unwrap();
    file.write_at(b"lost", 0).unwrap();
    disk.fail_next_syncs(1);
    let err = file.sync_data().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // Still readable from the "page cache"...
    assert_eq!(read(&disk, &path), b"lost");
    // ...and a retry reports success, but the data never reaches the disk.
    file.sync_data().unwrap();
    disk.crash();
    assert!(read(&disk, &path).is_empty());
}

#[test]
fn enospc_fails_writes_and_creates_until_cleared() {
    let (disk, dir) = setup(4);
    let file = disk
        .open(&dir.join("f"), OpenOptions::create_new())
        .unwrap();
    disk.set_enospc(true);
    assert_eq!(
        file.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    assert_eq!(
        file.allocate(4096).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    assert!(disk
        .open(&dir.join("g"), OpenOptions::create_new())
        .is_err());
    disk.set_enospc(false);
    file.write_at(b"x", 0).unwrap();
}

#[test]
fn read_corruption_flips_the_returned_bit_only() {
    let (disk, dir) = setup(5);
    let path = dir.join("f");
    let file = disk.open(&path, OpenOptions::create_new()).unwrap();
    file.write_at(&[0u8; 16], 0).unwrap();
    disk.flip_bit_on_read(&path, 9, 3).unwrap();
    let mut buf = [0u8; 4];
    file.read_at(&mut buf, 8).unwrap();
    assert_eq!(buf, [0, 8, 0, 0]);
    assert_eq!(read(&disk, &path)[9], 8);
    assert_eq!(disk.contents(&path).unwrap()[9], 0);
    disk.clear_read_faults();
    assert_eq!(read(&disk, &path)[9], 0);

    file.sync_data().unwrap();

    disk.corrupt_durable(&path, 2, 0).unwrap();
    assert_eq!(read(&disk, &path)[2], 1);
}

#[test]
fn handles_from_before_a_crash_fail() {
    let (disk, dir) = setup(6);
    let file = disk
        .open(&dir.join("f"), OpenOptions::create_new())
        .unwrap();
    disk.sync_dir(&dir).unwrap();
    disk.crash();
    assert_eq!(
        file.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    assert!(disk.open(&dir.join("f"), OpenOptions::read_write()).is_ok());
}

#[test]
fn open_rules_match_the_real_disk() {
    let (disk, dir) = setup(7);
    assert!(disk
        .open(&dir.join("nope"), OpenOptions::read_only())
        .is_err());
    assert!(disk
        .open(Path::new("/missing/f"), OpenOptions::create_new())
        .is_err());
    let file = disk
        .open(&dir.join("f"), OpenOptions::create_new())
        .unwrap();
    file.write_at(b"abc", 0).unwrap();
    let ro = disk.open(&dir.join("f"), OpenOptions::read_only()).unwrap();
    assert!(ro.write_at(b"x", 0).is_err());
    let truncating = OpenOptions {
        truncate: true,
        ..OpenOptions::read_write()
    };
    disk.open(&dir.join("f"), truncating).unwrap();
    assert_eq!(file.len().unwrap(), 0);
    disk.create_dir_all(&dir.join("sub")).unwrap();
    assert_eq!(
        disk.list(&dir).unwrap(),
        vec!["f".to_string(), "sub".to_string()]
    );
    assert!(disk.exists(&dir.join("sub")).unwrap());
}

#[test]
fn sync_latency_is_reported_until_cleared_and_changes_nothing_else() {
    let (disk, dir) = setup(9);
    let as_disk: &dyn Disk = &disk;
    assert_eq!(as_disk.sync_latency(), std::time::Duration::ZERO);
    disk.set_sync_latency(std::time::Duration::from_millis(250));
    assert_eq!(
        as_disk.sync_latency(),
        std::time::Duration::from_millis(250)
    );
    // A slow disk still makes synced data durable and drops what was not synced.
    let path = dir.join("f");
    let file = disk.open(&path, OpenOptions::create_new()).unwrap();
    disk.sync_dir(&dir).unwrap();
    file.write_at(b"kept", 0).unwrap();
    file.sync_data().unwrap();
    file.write_at(b"lost", 4).unwrap();
    disk.crash_drop_unsynced();
    assert_eq!(read(&disk, &path), b"kept");
    disk.set_sync_latency(std::time::Duration::ZERO);
    assert_eq!(as_disk.sync_latency(), std::time::Duration::ZERO);
}
