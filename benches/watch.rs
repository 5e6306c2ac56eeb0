//! Micro-benchmark of `watch::Hub::publish`: one revision with one 256-byte put event fanned out
//! to 1, 100 and 1000 synced watchers, each on its own stream (as gRPC clients would be).
//!
//! Invariant: only `publish` is timed; streams are drained between timed batches, before they
//! reach the hub's queue bound, so every watcher stays synced and receives every event.
//! Speed is measured here, never asserted.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use oxetcd::mvcc::Store;
use oxetcd::proto::etcdserverpb::WatchCreateRequest;
use oxetcd::proto::mvccpb::{event::EventType, Event, KeyValue};
use oxetcd::watch::{Hub, HubLimits, StreamOutput};

fn event(revision: i64) -> Event {
    Event {
        r#type: EventType::Put as i32,
        kv: Some(KeyValue {
            key: b"bench/key".to_vec(),
            value: vec![b'v'; 256].into(),
            mod_revision: revision,
            create_revision: 2,
            version: 1,
            lease: 0,
        }),
        prev_kv: None,
    }
}

/// Takes every queued response out of each stream; returns how many event responses it saw.
fn drain(outputs: &mut [StreamOutput]) -> usize {
    let mut seen = 0;
    for out in outputs.iter_mut() {
        while let Some(resp) = out.try_next() {
            seen += usize::from(!resp.events.is_empty());
        }
    }
    seen
}

fn bench_publish(c: &mut Criterion) {
    let limits = HubLimits::default();
    let batch_max = (limits.queued_responses_max / 2) as u64;
    let mut group = c.benchmark_group("hub_publish");
    group.measurement_time(Duration::from_secs(3));
    for watchers in [1usize, 100, 1000] {
        let store = Store::new();
        let hub = Hub::new(limits);
        let create = WatchCreateRequest {
            key: b"bench/".to_vec(),
            range_end: b"bench0".to_vec(),
            ..Default::default()
        };
        let mut outputs: Vec<StreamOutput> = (0..watchers)
            .map(|_| {
                let (id, out) = hub.open_stream();
                let created = hub.create(id, &create, store.current_revision());
                assert!(
                    created.is_ok(),
                    "an empty stream has room for a created reply"
                );
                out
            })
            .collect();
        drain(&mut outputs);
        assert_eq!(hub.watcher_count(), watchers);
        let mut revision = store.current_revision();
        group.bench_with_input(BenchmarkId::from_parameter(watchers), &watchers, |b, &w| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(batch_max);
                    let events: Vec<(i64, [Event; 1])> = (0..batch)
                        .map(|_| {
                            revision += 1;
                            (revision, [event(revision)])
                        })
                        .collect();
                    let started = Instant::now();
                    for (rev, evs) in &events {
                        hub.publish(*rev, black_box(evs));
                    }
                    timed += started.elapsed();
                    let seen = drain(&mut outputs);
                    assert_eq!(seen, w * batch as usize, "a watcher missed an event");
                    left -= batch;
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_publish);
criterion_main!(benches);
