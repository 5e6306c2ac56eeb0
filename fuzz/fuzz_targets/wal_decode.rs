//! Fuzz target: arbitrary bytes as one WAL segment, through the public decoder.
//!
//! Properties: never panics; no single allocation exceeds twice the record bound, whatever
//! lengths the input claims (checked by the allocator below); every decoded entry fits the
//! bound. Run with `cargo +nightly fuzz run wal_decode -- -max_total_time=60` from the
//! repository root; seeds live in `fuzz/corpus/wal_decode/` and are replayed on stable by
//! `cargo test` (see `src/wal/tests_corpus.rs`).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};

use libfuzzer_sys::fuzz_target;
use oxetcd::wal::{decode_segment, scan_segment};

const RECORD_BYTES_MAX: u32 = 1 << 20;
const ALLOCATION_BYTES_MAX: usize = 2 * RECORD_BYTES_MAX as usize;

/// Aborts on any allocation larger than `ALLOCATION_BYTES_MAX`: a length read from the input
/// was trusted before it was bounded.
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
    if let Ok(segment) = decode_segment(data, RECORD_BYTES_MAX) {
        for entry in &segment.recovered.entries {
            assert!(entry.payload.len() as u64 + 16 <= u64::from(RECORD_BYTES_MAX));
        }
    }
    if let Ok(scan) = scan_segment(data, RECORD_BYTES_MAX) {
        assert!(scan.end.offset() <= data.len() as u64);
    }
});
