//! Micro-benchmarks of the state machine's hot paths: `apply::State::apply` of a put and of a
//! 4-op txn, `mvcc::Store::range` over 10k and 1M keys, and compaction over 1M keys (all at
//! once, against one batch of `--experimental-compaction-batch-limit`'s default: the longest
//! the state lock is held for it).
//!
//! Invariant: each timed batch starts from an O(1) clone of the same prepared state, so history
//! growth from earlier batches never leaks into later ones and memory stays bounded.
//! Speed is measured here, never asserted.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use oxetcd::apply::{Command, State};
use oxetcd::proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

const VALUE_BYTES: usize = 256;

fn key(i: u64) -> Vec<u8> {
    format!("key/{i:08}").into_bytes()
}

fn put(i: u64) -> Command {
    Command::Put(PutRequest {
        key: key(i),
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    })
}

/// A state holding `keys` keys, each written once.
fn state_with(keys: u64) -> State {
    let mut state = State::new();
    for i in 0..keys {
        let applied = state.apply(&put(i));
        assert!(applied.result.is_ok(), "setup put failed");
    }
    state
}

/// A txn comparing one key's version, then three puts and a range.
fn txn(i: u64, keys: u64) -> Command {
    let op_put = |k: u64| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key(k % keys),
            value: vec![b't'; VALUE_BYTES],
            ..Default::default()
        })),
    };
    let op_range = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key((i + 3) % keys),
            ..Default::default()
        })),
    };
    let cmp = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Version as i32,
        key: key(i % keys),
        target_union: Some(compare::TargetUnion::Version(0)),
        ..Default::default()
    };
    Command::Txn(TxnRequest {
        compare: vec![cmp],
        success: vec![op_put(i), op_put(i + 1), op_put(i + 2), op_range],
        failure: vec![],
    })
}

fn bench_apply(c: &mut Criterion) {
    const KEYS: u64 = 10_000;
    let base = state_with(KEYS);
    let mut group = c.benchmark_group("apply");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("put_256B_over_10k_keys", |b| {
        let cmds: Vec<Command> = (0..KEYS).map(|i| put((i * 7919) % KEYS)).collect();
        b.iter_custom(|iters| {
            let mut state = base.clone();
            let started = Instant::now();
            for i in 0..iters {
                black_box(state.apply(&cmds[(i % KEYS) as usize]));
            }
            started.elapsed()
        })
    });
    // A batched entry of 64 puts (what the proposer sends under load), per entry; compare with
    // 64 times `put_256B_over_10k_keys`.
    group.bench_function("batch_of_64_puts_over_10k_keys", |b| {
        const BATCH: u64 = 64;
        let batches: Vec<Vec<Command>> = (0..KEYS / BATCH)
            .map(|j| {
                (0..BATCH)
                    .map(|k| put((j * BATCH + k) * 7919 % KEYS))
                    .collect()
            })
            .collect();
        b.iter_custom(|iters| {
            let mut state = base.clone();
            let started = Instant::now();
            for i in 0..iters {
                let batch = &batches[(i % (KEYS / BATCH)) as usize];
                for cmd in batch {
                    black_box(state.apply(cmd));
                }
            }
            started.elapsed()
        })
    });
    group.bench_function("txn_4ops_over_10k_keys", |b| {
        let cmds: Vec<Command> = (0..KEYS).map(|i| txn((i * 7919) % KEYS, KEYS)).collect();
        let probe = base.clone().apply(&cmds[0]);
        assert!(
            probe.result.is_ok(),
            "bench txn is invalid: {:?}",
            probe.result
        );
        b.iter_custom(|iters| {
            let mut state = base.clone();
            let started = Instant::now();
            for i in 0..iters {
                black_box(state.apply(&cmds[(i % KEYS) as usize]));
            }
            started.elapsed()
        })
    });
    group.finish();
}

fn whole_range() -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    }
}

fn bench_range(c: &mut Criterion) {
    let small = state_with(10_000);
    let mut group = c.benchmark_group("mvcc_range");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("one_key_of_10k", |b| {
        let req = RangeRequest {
            key: key(4242),
            ..Default::default()
        };
        b.iter(|| black_box(small.kv.range(&req)))
    });
    group.bench_function("all_10k_keys", |b| {
        let req = whole_range();
        b.iter(|| black_box(small.kv.range(&req)))
    });
    group.bench_function("count_only_10k_keys", |b| {
        let req = RangeRequest {
            count_only: true,
            ..whole_range()
        };
        b.iter(|| black_box(small.kv.range(&req)))
    });
    drop(small);
    let large = state_with(1_000_000);
    group.sample_size(10);
    group.bench_function("one_key_of_1m", |b| {
        let req = RangeRequest {
            key: key(424_242),
            ..Default::default()
        };
        b.iter(|| black_box(large.kv.range(&req)))
    });
    group.bench_function("limit_100_of_1m", |b| {
        let req = RangeRequest {
            limit: 100,
            ..whole_range()
        };
        b.iter(|| black_box(large.kv.range(&req)))
    });
    group.bench_function("all_1m_keys", |b| {
        let req = whole_range();
        b.iter_batched(
            || (),
            |()| black_box(large.kv.range(&req)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// 1M keys each written twice, compacted between the two rounds: half the records go.
fn bench_compaction(c: &mut Criterion) {
    const KEYS: u64 = 1_000_000;
    let mut state = state_with(KEYS);
    let point = state.kv.current_revision();
    for i in 0..KEYS {
        let applied = state.apply(&put(i));
        assert!(applied.result.is_ok(), "setup put failed");
    }
    let pending = || {
        let mut kv = state.kv.clone();
        kv.begin_compaction(point).expect("a valid point");
        kv
    };
    let mut group = c.benchmark_group("compaction");
    group.sample_size(10);
    group.bench_function("all_at_once_1m_keys", |b| {
        b.iter_batched(
            pending,
            |mut kv| {
                kv.finish_compaction();
                kv
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("one_batch_of_1000_in_1m_keys", |b| {
        b.iter_batched(
            pending,
            |mut kv| {
                black_box(kv.compact_step(1000));
                kv
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_apply, bench_range, bench_compaction);
criterion_main!(benches);
