//! Fuzz target: arbitrary bytes as an etcd snapshot / backend file, through the bbolt reader,
//! its whole-file check, a walk of every bucket, and the etcd schema import.
//!
//! Properties: never panics, never loops (the walk is bounded by the reader's own checks), and
//! no single allocation exceeds a bound proportional to the input (checked by the allocator
//! below): nothing trusts a count or length read from the file. Run with
//! `cargo +nightly fuzz run bbolt_read -- -max_total_time=60` from the repository root; seeds
//! (real etcd 3.4/3.5 files and damaged ones) live in `fuzz/corpus/bbolt_read/` and are
//! replayed on stable by `cargo test --lib bbolt::` (`src/bbolt/tests.rs`).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};

use libfuzzer_sys::fuzz_target;
use oxetcd::bbolt::{check, Db, Value};

/// Inputs are capped at 1 MiB by libFuzzer's default; the check's page table is one byte per
/// 512 bytes and values are copied one at a time, so nothing legitimate comes near this.
const ALLOCATION_BYTES_MAX: usize = 16 << 20;

/// Buckets walked in a file that failed the check.
const BUCKETS_UNCHECKED_MAX: usize = 10_000;

/// Aborts on any allocation larger than `ALLOCATION_BYTES_MAX`.
struct BoundedAllocator;

// SAFETY: forwards to the system allocator unchanged; only adds a size check.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_BYTES_MAX {
            std::process::abort();
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_BYTES_MAX {
            std::process::abort();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

fuzz_target!(|data: &[u8]| {
    let Ok(db) = Db::open(data) else {
        return;
    };
    let checked = check(&db).is_ok();
    // A hostile file can nest a bucket inside itself; `check` rules that out, so an unchecked
    // file is walked with a bound on the buckets visited.
    let mut budget = if checked { usize::MAX } else { BUCKETS_UNCHECKED_MAX };
    let mut buckets = vec![db.root()];
    while let Some(bucket) = buckets.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        for entry in bucket.entries() {
            let Ok(entry) = entry else {
                break;
            };
            if let Value::Bucket(sub) = entry.value {
                buckets.push(sub);
            }
        }
    }
    let _ = oxetcd::backend::import(&db);
});
