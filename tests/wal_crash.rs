//! Real-process crash test of the WAL on the real disk.
//!
//! The test re-executes its own binary as a child (`wal_crash_child`, ignored in normal runs,
//! selected by an environment variable). The child opens the WAL, appends batches of entries
//! whose payloads are a pure function of their index, calls `sync`, and prints
//! `durable <last index> <vote>` after every successful sync. The parent kills it with SIGKILL
//! at a random moment, reopens the same directory in-process, and checks:
//! - every index the child reported durable is present (unless purged), with the right payload;
//! - the log is contiguous and every entry carries the payload of its index (nothing invented,
//!   nothing after a torn tail survives);
//! - the vote is at least the last one reported durable.
//!
//! Fifty rounds reuse one directory, so each round also recovers what the previous ones left.
//! Every fifth round the parent also tears the last segment after the kill (zeroes it from a
//! sector boundary within its last 4 KiB of records) and checks that recovery cuts the torn
//! tail and keeps a clean prefix.
//! Replay a run with `OXETCD_WAL_CRASH_SEED=<seed>` (printed on failure).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oxetcd::io::os::OsDisk;
use oxetcd::io::SplitMix64;
use oxetcd::wal::{scan_segment, LogRecord, Recovered, Wal, WalConfig};

const ROUNDS: u64 = 50;
const CHILD_DIR_ENV: &str = "OXETCD_WAL_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "OXETCD_WAL_CRASH_CHILD_SEED";
const SEED_ENV: &str = "OXETCD_WAL_CRASH_SEED";

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 1024 * 1024,
        max_wals: 3,
    }
}

/// The payload every writer uses for `index`, so any reader can check it.
fn payload_for(index: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(index);
    let len = (rng.below(900)) as usize;
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn open(dir: &Path) -> (Wal, Recovered) {
    match Wal::open(Arc::new(OsDisk::new()), dir, config()) {
        Ok(pair) => pair,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// Test helper, not a test: the child process body. Runs only when the parent sets the env.
#[test]
#[ignore = "child process of kill9_rounds_keep_every_durable_entry"]
fn wal_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rng = SplitMix64::new(seed);
    let (mut wal, recovered) = open(Path::new(&dir));
    let mut next = match (recovered.last_index(), recovered.purged_upto) {
        (Some(last), _) => last + 1,
        (None, Some(purged)) => purged + 1,
        (None, None) => 1,
    };
    let mut vote = vote_of(&recovered);
    loop {
        let count = 1 + rng.below(8);
        let batch: Vec<LogRecord> = (next..next + count)
            .map(|index| LogRecord {
                index,
                term: 1,
                payload: payload_for(index),
            })
            .collect();
        wal.append(&batch).expect("append");
        next += count;
        if rng.below(4) == 0 {
            vote += 1;
            wal.save_vote(&vote.to_le_bytes()).expect("vote");
        }
        if rng.below(16) == 0 && next > 300 {
            let upto = next - 300;
            wal.purge_upto(upto, &upto.to_le_bytes()).expect("purge");
        }
        wal.sync().expect("sync");
        println!("durable {} {}", next - 1, vote);
    }
}

fn vote_of(recovered: &Recovered) -> u64 {
    match recovered.vote.as_deref().map(<[u8; 8]>::try_from) {
        Some(Ok(bytes)) => u64::from_le_bytes(bytes),
        Some(Err(_)) => panic!("vote of unexpected length"),
        None => 0,
    }
}

/// Runs one child until SIGKILL; returns the last (index, vote) it reported durable.
fn run_child(dir: &Path, seed: u64, kill_after: Duration) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "wal_crash_child",
            "--nocapture",
            "-q",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if words.next() != Some("durable") {
                continue;
            }
            let index: u64 = words.next().and_then(|w| w.parse().ok()).expect("index");
            let vote: u64 = words.next().and_then(|w| w.parse().ok()).expect("vote");
            last = Some((index, vote));
        }
        last
    });
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    reader.join().expect("reader thread")
}

/// Zeroes the last segment from a sector boundary within the last 4 KiB of its records, as a
/// power loss in the middle of the last write would. Returns whether anything was torn.
fn tear_tail(dir: &Path, rng: &mut SplitMix64) -> bool {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list wal dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    let Some(last) = names.last() else {
        return false;
    };
    let path = dir.join(last);
    let bytes = std::fs::read(&path).expect("read segment");
    let end = match scan_segment(&bytes, config().record_bytes_max) {
        Ok(scan) => scan.end.offset(),
        Err(_) => return false,
    };
    let floor = end.saturating_sub(4096).max(512).div_ceil(512) * 512;
    if floor >= end {
        return false;
    }
    let cut = floor + rng.below((end - floor).div_ceil(512)) * 512;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment");
    use std::os::unix::fs::FileExt;
    file.write_all_at(&vec![0u8; (end - cut) as usize], cut)
        .expect("zero tail");
    file.sync_data().expect("sync");
    cut < end
}

fn check(recovered: &Recovered, reported: Option<(u64, u64)>, seed: u64) {
    let entries = &recovered.entries;
    for pair in entries.windows(2) {
        assert_eq!(pair[1].index, pair[0].index + 1, "seed {seed}: gap");
    }
    for e in entries {
        assert_eq!(
            e.payload,
            payload_for(e.index),
            "seed {seed}: index {}",
            e.index
        );
    }
    if let Some((index, vote)) = reported {
        let purged = recovered.purged_upto.unwrap_or(0);
        let last = recovered.last_index().unwrap_or(purged);
        assert!(
            last >= index,
            "seed {seed}: durable {index} lost, log ends at {last}"
        );
        if index > purged {
            assert!(
                entries.first().is_some_and(|e| e.index <= purged + 1),
                "seed {seed}: entries after the purge point are missing (purged {purged}, first {:?}, durable {index})", entries.first().map(|e| e.index)
            );
        }
        assert!(vote_of(recovered) >= vote, "seed {seed}: vote went back");
    }
}

#[test]
fn kill9_rounds_keep_every_durable_entry() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            u64::from(nanos)
        });
    let mut rng = SplitMix64::new(seed);
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let tmp = tempfile::tempdir_in(base).expect("temp dir");
    let dir = tmp.path().join("member/wal");
    let mut reported_rounds = 0;
    let mut torn_tails_repaired = 0;
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(5 + rng.below(120));
        let reported = run_child(&dir, seed ^ round, kill_after);
        reported_rounds += u64::from(reported.is_some());
        let torn = round % 5 == 4 && tear_tail(&dir, &mut rng);
        let (wal, recovered) = open(&dir);
        if torn {
            // Synced bytes were destroyed on purpose: only the prefix rules can hold. (A cut
            // that lands exactly between two records leaves a clean end, not a torn one.)
            torn_tails_repaired += u64::from(recovered.torn_tail.is_some());
            check(&recovered, None, seed);
        } else {
            check(&recovered, reported, seed);
        }
        // Purges trail the head by ~300 entries (about three 64 KiB segments); without
        // retention the directory would hold hundreds of segments by the last round.
        let segments = wal.segment_paths().len();
        assert!(segments <= 8, "seed {seed}: {segments} segments kept");
    }
    assert!(
        torn_tails_repaired > 0,
        "seed {seed}: no torn tail was repaired"
    );
    assert!(
        reported_rounds >= ROUNDS / 2,
        "seed {seed}: only {reported_rounds} rounds got as far as a sync"
    );
}
