//! WAL micro-benchmarks on the real disk (a temp dir under the target dir, not /tmp):
//! - `wal/append_sync/{1,16,256}`: append a batch of 256-byte entries and fdatasync it;
//!   throughput in entries per second (multiply by 256 for payload bytes per second);
//! - `fdatasync/write_4k`: one 4 KiB write plus fdatasync on a preallocated file, the floor
//!   under any durable write on this disk.
//!
//! Run: `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 3`.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use oxetcd::io::os::OsDisk;
use oxetcd::io::{Disk, OpenOptions};
use oxetcd::wal::{LogRecord, Wal, WalConfig};

const PAYLOAD_BYTES: usize = 256;
/// Purge behind the head so the benchmark does not fill the disk with segments.
const KEEP_ENTRIES: u64 = 200_000;

fn open_wal(dir: &Path) -> Wal {
    let cfg = WalConfig::default();
    match Wal::open(Arc::new(OsDisk::new()), dir, cfg) {
        Ok((wal, _)) => wal,
        Err(e) => panic!("open wal: {e}"),
    }
}

fn append_sync(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let payload = vec![0x5A; PAYLOAD_BYTES];
    let mut group = c.benchmark_group("wal/append_sync");
    for batch in [1u64, 16, 256] {
        let mut wal = open_wal(&tmp.path().join(format!("batch-{batch}")));
        let mut next = 1u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                let entries: Vec<LogRecord> = (next..next + batch)
                    .map(|index| LogRecord {
                        index,
                        term: 1,
                        payload: payload.clone(),
                    })
                    .collect();
                wal.append(&entries).expect("append");
                next += batch;
                if next % KEEP_ENTRIES < batch && next > KEEP_ENTRIES {
                    wal.purge_upto(next - KEEP_ENTRIES, b"bench")
                        .expect("purge");
                }
                wal.sync().expect("sync");
            })
        });
    }
    group.finish();
}

fn raw_fdatasync(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let disk = OsDisk::new();
    let file = disk
        .open(&tmp.path().join("raw"), OpenOptions::create_new())
        .expect("create");
    const FILE_BYTES: u64 = 64 * 1024 * 1024;
    file.allocate(FILE_BYTES).expect("allocate");
    file.sync_data().expect("sync");
    let block = vec![0xA5u8; 4096];
    let mut offset = 0u64;
    c.bench_function("fdatasync/write_4k", |b| {
        b.iter(|| {
            file.write_at(&block, offset).expect("write");
            file.sync_data().expect("fdatasync");
            offset = (offset + 4096) % FILE_BYTES;
        })
    });
}

criterion_group!(benches, append_sync, raw_fdatasync);
criterion_main!(benches);
