//! Hub tests against a hand-built event history.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;

/// A tiny history: a list of (revision, events) plus a compaction mark.
#[derive(Default, Clone)]
struct FakeHistory {
    revisions: Vec<(i64, Vec<Event>)>,
    compacted: i64,
}

impl FakeHistory {
    fn current(&self) -> i64 {
        self.revisions.last().map_or(1, |(r, _)| *r)
    }

    fn put(&mut self, hub: Option<&Hub>, key: &str) -> i64 {
        let rev = self.current() + 1;
        let ev = Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                ..KeyValue::default()
            }),
            prev_kv: None,
        };
        self.revisions.push((rev, vec![ev.clone()]));
        if let Some(hub) = hub {
            hub.publish(rev, &[ev]);
        }
        rev
    }
}

impl EventSource for FakeHistory {
    fn current_revision(&self) -> i64 {
        self.current()
    }
    fn compact_revision(&self) -> i64 {
        self.compacted
    }
    fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
        limits: crate::mvcc::PageLimits,
    ) -> Result<(Vec<Event>, i64), i64> {
        let revisions_max = limits.revisions_max;
        if from < self.compacted {
            return Err(self.compacted);
        }
        let w = Watcher {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            prev_kv: true,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
            next_rev: 0,
            synced: false,
            sent_since_tick: false,
            serial: 0,
        };
        let mut events = Vec::new();
        let mut revisions = 0;
        for (rev, evs) in self
            .revisions
            .iter()
            .filter(|(r, _)| *r >= from && *r <= to)
        {
            let selected = w.select(evs);
            if selected.is_empty() {
                continue;
            }
            if revisions == revisions_max {
                return Ok((events, *rev));
            }
            revisions += 1;
            events.extend(selected);
        }
        Ok((events, to + 1))
    }
}

/// The fake is its own key space: no lock, and a view is a copy.
impl KeySpace for FakeHistory {
    type View = FakeHistory;
    fn view(&self) -> FakeHistory {
        self.clone()
    }
    fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R {
        f(self.current())
    }
}

fn create(key: &str, range_end: &str, start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
        start_revision: start,
        ..WatchCreateRequest::default()
    }
}

fn drain(out: &mut StreamOutput) -> Vec<WatchResponse> {
    let mut v = Vec::new();
    while let Some(r) = out.try_next() {
        v.push(r);
    }
    v
}

fn event_revs(resps: &[WatchResponse], watch_id: i64) -> Vec<i64> {
    resps
        .iter()
        .filter(|r| r.watch_id == watch_id)
        .flat_map(|r| {
            r.events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
        })
        .collect()
}

#[test]
fn created_replies_come_in_order_with_auto_ids_from_zero() {
    let hub = Hub::new(HubLimits::default());
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("a", "", 0), h.current()).unwrap();
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 1,
            ..create("b", "", 0)
        },
        h.current(),
    )
    .unwrap();
    hub.create(sid, &create("c", "", 0), h.current()).unwrap();
    let got: Vec<(i64, bool)> = drain(&mut out)
        .iter()
        .map(|r| (r.watch_id, r.created))
        .collect();
    // Auto IDs skip 1, which the client chose.
    assert_eq!(got, vec![(0, true), (1, true), (2, true)]);
}

#[test]
fn auto_ids_are_not_reused_after_cancel() {
    let hub = Hub::new(HubLimits::default());
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("a", "", 0), h.current()).unwrap();
    hub.create(sid, &create("b", "", 0), h.current()).unwrap();
    hub.cancel(sid, 1, h.current()).unwrap();
    hub.create(sid, &create("c", "", 0), h.current()).unwrap();
    hub.cancel(sid, 0, h.current()).unwrap();
    hub.create(sid, &create("d", "", 0), h.current()).unwrap();
    let got: Vec<(i64, bool, bool)> = drain(&mut out)
        .iter()
        .map(|r| (r.watch_id, r.created, r.canceled))
        .collect();
    // As etcd: the stream's counter only moves forward, so a late response for a canceled
    // watcher can never be mistaken for a new watcher's.
    let expected = vec![
        (0, true, false),
        (1, true, false),
        (1, false, true),
        (2, true, false),
        (0, false, true),
        (3, true, false),
    ];
    assert_eq!(got, expected);
}

#[test]
fn bad_creates_are_refused_with_etcds_reasons() {
    let hub = Hub::new(HubLimits::default());
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("b", "a", 0), h.current()).unwrap();
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 7,
            ..create("x", "", 0)
        },
        h.current(),
    )
    .unwrap();
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 7,
            ..create("y", "", 0)
        },
        h.current(),
    )
    .unwrap();
    let got = drain(&mut out);
    assert_eq!(got[0].cancel_reason, RANGE_EMPTY);
    assert_eq!(
        (got[0].watch_id, got[0].created, got[0].canceled),
        (-1, true, true)
    );
    assert_eq!(got[1].watch_id, 7);
    assert_eq!(got[2].cancel_reason, DUPLICATE_ID);
}

#[test]
fn history_then_live_events_have_no_gap_and_no_duplicate() {
    let hub = Hub::new(HubLimits::default());
    let mut h = FakeHistory::default();
    for _ in 0..5 {
        h.put(Some(&hub), "k");
    }
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 2), h.current()).unwrap();
    assert!(!hub.sync_stream(sid, &h));
    for _ in 0..3 {
        h.put(Some(&hub), "k");
    }
    let resps = drain(&mut out);
    assert_eq!(event_revs(&resps, 0), (2..=9).collect::<Vec<_>>());
    // The created reply precedes every event.
    assert!(resps[0].created && resps[0].events.is_empty());
}

#[test]
fn slow_consumer_stays_bounded_and_catches_up_exactly() {
    let limits = HubLimits {
        queued_responses_max: 4,
        catch_up_revisions_max: 3,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let mut h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 0), h.current()).unwrap();
    for _ in 0..50 {
        h.put(Some(&hub), "k");
    }
    // The consumer read nothing: at most the bound is queued (plus the created reply).
    assert!(out.len() <= limits.queued_responses_max);
    let mut all = Vec::new();
    loop {
        all.extend(drain(&mut out));
        if !hub.sync_stream(sid, &h) {
            all.extend(drain(&mut out));
            break;
        }
    }
    h.put(Some(&hub), "k");
    all.extend(drain(&mut out));
    assert_eq!(event_revs(&all, 0), (2..=52).collect::<Vec<_>>());
}

#[test]
fn catch_up_responses_hold_a_number_of_revisions_that_touched_the_range() {
    let hub = Hub::new(HubLimits {
        queued_responses_max: 16,
        catch_up_revisions_max: 3,
        ..HubLimits::default()
    });
    let mut h = FakeHistory::default();
    for i in 0..10 {
        h.put(None, if i % 2 == 0 { "a" } else { "b" });
    }
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("a", "", 1), h.current()).unwrap();
    while hub.sync_stream(sid, &h) {}
    let resps = drain(&mut out);
    let batches: Vec<Vec<i64>> = resps
        .iter()
        .filter(|r| !r.events.is_empty())
        .map(|r| {
            r.events
                .iter()
                .filter_map(|e| e.kv.as_ref())
                .map(|kv| kv.mod_revision)
                .collect()
        })
        .collect();
    // "a" changed at 2, 4, 6, 8, 10: three such revisions per response, as etcd batches.
    assert_eq!(batches, vec![vec![2, 4, 6], vec![8, 10]]);
    assert!(resps
        .iter()
        .all(|r| r.header.as_ref().map(|h| h.revision) == Some(11)));
}

#[test]
fn compacted_start_gets_created_then_cancel_with_compact_revision() {
    let hub = Hub::new(HubLimits::default());
    let mut h = FakeHistory::default();
    for _ in 0..5 {
        h.put(None, "k");
    }
    h.compacted = 4;
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 2), h.current()).unwrap();
    hub.sync_stream(sid, &h);
    let got = drain(&mut out);
    assert!(got[0].created);
    assert!(got[1].canceled);
    assert_eq!(got[1].compact_revision, 4);
    assert_eq!(hub.watcher_count(), 0);
}

#[test]
fn progress_waits_until_every_watcher_is_synced() {
    let hub = Hub::new(HubLimits::default());
    let mut h = FakeHistory::default();
    for _ in 0..3 {
        h.put(None, "k");
    }
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 1), h.current()).unwrap();
    hub.request_progress(sid, h.current()).unwrap();
    let before = drain(&mut out);
    assert!(
        before.iter().all(|r| r.watch_id != -1),
        "progress answered while unsynced"
    );
    hub.sync_stream(sid, &h);
    let after = drain(&mut out);
    let last = after
        .last()
        .map(|r| (r.watch_id, r.header.as_ref().map(|h| h.revision)));
    assert_eq!(last, Some((-1, Some(4))));
    // Events came before the progress reply.
    assert_eq!(event_revs(&after, 0), vec![2, 3, 4]);
}

#[test]
fn filters_and_prev_kv_are_applied_per_watcher() {
    let hub = Hub::new(HubLimits::default());
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    let mut req = create("a", "z", 0);
    req.filters = vec![FilterType::Noput as i32];
    hub.create(sid, &req, h.current()).unwrap();
    let put = Event {
        r#type: EventType::Put as i32,
        kv: Some(KeyValue {
            key: b"b".to_vec(),
            mod_revision: 2,
            ..KeyValue::default()
        }),
        prev_kv: Some(KeyValue::default()),
    };
    let del = Event {
        r#type: EventType::Delete as i32,
        ..put.clone()
    };
    hub.publish(2, &[put]);
    hub.publish(
        3,
        &[Event {
            kv: Some(KeyValue {
                key: b"b".to_vec(),
                mod_revision: 3,
                ..KeyValue::default()
            }),
            ..del
        }],
    );
    let got = drain(&mut out);
    assert_eq!(event_revs(&got, 0), vec![3]);
    assert!(got
        .iter()
        .flat_map(|r| r.events.iter())
        .all(|e| e.prev_kv.is_none()));
}

#[test]
fn oversized_responses_are_fragmented_only_when_asked() {
    // Bug guarded against: a watcher asking for fragments on a huge revision (a txn or a lease
    // revoke touching many big keys) got one response over the client's receive limit.
    let hub = Hub::new(HubLimits {
        fragment_bytes: 1000,
        ..HubLimits::default()
    });
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    hub.create(
        sid,
        &WatchCreateRequest {
            fragment: true,
            ..create("a", "z", 0)
        },
        h.current(),
    )
    .unwrap();
    hub.create(sid, &create("a", "z", 0), h.current()).unwrap();
    let big = |k: &str| Event {
        r#type: EventType::Put as i32,
        kv: Some(KeyValue {
            key: k.as_bytes().to_vec(),
            value: vec![b'x'; 300].into(),
            mod_revision: 2,
            ..KeyValue::default()
        }),
        prev_kv: None,
    };
    let events: Vec<Event> = ["b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .map(|k| big(k))
        .collect();
    hub.publish(2, &events);
    let got = drain(&mut out);
    let fragmented: Vec<&WatchResponse> = got
        .iter()
        .filter(|r| r.watch_id == 0 && !r.created)
        .collect();
    let whole: Vec<&WatchResponse> = got
        .iter()
        .filter(|r| r.watch_id == 1 && !r.created)
        .collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 7);
    assert!(
        fragmented.len() > 1,
        "expected several fragments, got {}",
        fragmented.len()
    );
    let flags: Vec<bool> = fragmented.iter().map(|r| r.fragment).collect();
    assert!(flags[..flags.len() - 1].iter().all(|f| *f) && !flags[flags.len() - 1]);
    let total: usize = fragmented.iter().map(|r| r.events.len()).sum();
    assert_eq!(total, 7, "fragments lost or duplicated events");
    assert!(fragmented
        .iter()
        .all(|r| prost::Message::encoded_len(*r) <= 1000 + 400));
}

/// The real key space, unlocked: a view is an O(1) clone.
struct PlainStore(crate::mvcc::Store);

impl KeySpace for PlainStore {
    type View = crate::mvcc::Store;
    fn view(&self) -> crate::mvcc::Store {
        self.0.clone()
    }
    fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R {
        f(self.0.current_revision())
    }
}

fn store_put(store: &mut crate::mvcc::Store, key: &str) {
    let req = crate::proto::etcdserverpb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    assert!(store.put(&req, &|_| true).is_ok());
}

/// Syncs until the stream has no unsynced watcher, draining as a reading client does.
fn sync_all<K: KeySpace>(
    hub: &Hub,
    sid: StreamId,
    keys: &K,
    out: &mut StreamOutput,
) -> Vec<WatchResponse> {
    let mut all = Vec::new();
    for _ in 0..1_000_000 {
        let behind = hub.sync_stream(sid, keys);
        all.extend(drain(out));
        if !behind {
            return all;
        }
    }
    panic!("catch-up made no progress");
}

#[test]
fn catch_up_is_linear_in_the_history_behind_the_watcher() {
    // Bug guarded against: each 1000-revision step of a catch-up scanned history to its end
    // and filtered afterwards, so a watch from revision 1 after N revisions visited about
    // N²/2000 history entries (200M for N = 20k) while holding the state machine lock.
    const N: usize = 20_000;
    let mut store = crate::mvcc::Store::new();
    store_put(&mut store, "a/x");
    for _ in 0..N {
        store_put(&mut store, "other");
    }
    store_put(&mut store, "a/y");
    let keys = PlainStore(store);
    let hub = Hub::new(HubLimits::default());
    let (sid, mut out) = hub.open_stream();
    let current = keys.0.current_revision();
    let before = crate::mvcc::history_entries_visited();
    hub.create(sid, &create("a/", "a0", 1), current).unwrap();
    hub.create(sid, &create("a/y", "", 1), current).unwrap();
    let got = sync_all(&hub, sid, &keys, &mut out);
    let visited = crate::mvcc::history_entries_visited() - before;
    assert_eq!(event_revs(&got, 0), vec![2, current]);
    assert_eq!(event_revs(&got, 1), vec![current]);
    // The prefix watcher reads each record once; the single-key one reads its key's history.
    assert!(
        visited <= (N as u64) + 100,
        "visited {visited} history entries to catch up over {N} revisions"
    );
}

/// A key space whose copy checks, while history is read, that neither the "state machine
/// lock" nor the hub lock is held, and lets one apply (put + publish under the write lock)
/// run in the middle of the read, as a concurrent apply would.
struct LockedKeys {
    live: Arc<std::sync::RwLock<FakeHistory>>,
    hub: Arc<Hub>,
    applies_during_read: Arc<AtomicUsize>,
}

struct Probe {
    copy: FakeHistory,
    live: Arc<std::sync::RwLock<FakeHistory>>,
    hub: Arc<Hub>,
    applies_during_read: Arc<AtomicUsize>,
}

impl KeySpace for LockedKeys {
    type View = Probe;
    fn view(&self) -> Probe {
        let copy = self.live.read().unwrap().clone();
        Probe {
            copy,
            live: self.live.clone(),
            hub: self.hub.clone(),
            applies_during_read: self.applies_during_read.clone(),
        }
    }
    fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R {
        let live = self.live.read().unwrap();
        f(live.current())
    }
}

impl EventSource for Probe {
    fn current_revision(&self) -> i64 {
        self.copy.current()
    }
    fn compact_revision(&self) -> i64 {
        self.copy.compacted
    }
    fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
        limits: crate::mvcc::PageLimits,
    ) -> Result<(Vec<Event>, i64), i64> {
        assert!(
            self.live.try_write().is_ok(),
            "history read under the state machine lock"
        );
        assert!(
            self.hub.inner.try_lock().is_ok(),
            "history read under the hub lock"
        );
        if self.applies_during_read.load(Ordering::Relaxed) > 0 {
            self.applies_during_read.fetch_sub(1, Ordering::Relaxed);
            let mut live = self.live.write().unwrap();
            live.put(Some(&self.hub), "k");
        }
        self.copy.events_in(key, range_end, from, to, limits)
    }
}

#[test]
fn catch_up_reads_history_without_locks_and_hands_over_without_gap_or_duplicate() {
    // Bug guarded against: the syncer read history under the state machine's read lock (and
    // the hub lock), so a long catch-up stalled every apply.
    let hub = Arc::new(Hub::new(HubLimits {
        catch_up_revisions_max: 2,
        ..HubLimits::default()
    }));
    let live = Arc::new(std::sync::RwLock::new(FakeHistory::default()));
    for _ in 0..10 {
        live.write().unwrap().put(Some(&hub), "k");
    }
    let keys = LockedKeys {
        live: live.clone(),
        hub: hub.clone(),
        applies_during_read: Arc::new(AtomicUsize::new(3)),
    };
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 2), live.read().unwrap().current())
        .unwrap();
    let mut got = sync_all(&hub, sid, &keys, &mut out);
    // Three applies landed while history was being read; the watcher is synced now, so the
    // next one arrives live.
    live.write().unwrap().put(Some(&hub), "k");
    got.extend(drain(&mut out));
    let last = live.read().unwrap().current();
    assert_eq!(last, 15);
    assert_eq!(event_revs(&got, 0), (2..=last).collect::<Vec<_>>());
}

#[test]
fn a_client_opening_100k_watchers_gets_refusals_past_the_bound() {
    let hub = Hub::new(HubLimits::default());
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    let (mut created, mut refused) = (0usize, 0usize);
    for i in 0..100_000 {
        hub.create(sid, &create(&format!("k{i}"), "", 0), h.current())
            .unwrap();
        for r in drain(&mut out) {
            match (r.created, r.canceled) {
                (true, false) => created += 1,
                (true, true) => {
                    assert_eq!(r.cancel_reason, TOO_MANY_WATCHERS);
                    assert_eq!(r.watch_id, -1);
                    refused += 1;
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }
    assert_eq!(created, WATCHERS_PER_STREAM_MAX);
    assert_eq!(refused, 100_000 - WATCHERS_PER_STREAM_MAX);
    assert_eq!(hub.watcher_count(), WATCHERS_PER_STREAM_MAX);
    // Canceling one makes room for one more.
    hub.cancel(sid, 0, h.current()).unwrap();
    hub.create(sid, &create("again", "", 0), h.current())
        .unwrap();
    let last = drain(&mut out);
    assert!(last[1].created && !last[1].canceled, "{last:?}");
}

#[test]
fn watcher_keys_are_bounded_in_bytes_too() {
    let hub = Hub::new(HubLimits {
        watcher_key_bytes_per_stream_max: 1000,
        ..HubLimits::default()
    });
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    let big = "x".repeat(600);
    hub.create(sid, &create(&big, "", 0), h.current()).unwrap();
    hub.create(sid, &create(&big, "", 0), h.current()).unwrap();
    let got = drain(&mut out);
    assert!(!got[0].canceled);
    assert_eq!(got[1].cancel_reason, TOO_MANY_WATCHERS);
}

#[test]
fn creates_without_reading_get_backpressure_not_memory() {
    // Bug guarded against: created/canceled/progress replies bypassed the stream's bound, so
    // a client sending creates without reading grew the server's memory without limit.
    let limits = HubLimits {
        queued_responses_max: 8,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    let mut accepted = 0;
    while hub.create(sid, &create("k", "", 0), h.current()).is_ok() {
        accepted += 1;
        assert!(accepted < 100, "creates never pushed back");
    }
    assert!(out.len() <= limits.queued_responses_max);
    assert_eq!(hub.request_progress(sid, h.current()), Err(QueueFull));
    assert_eq!(hub.cancel(sid, 0, h.current()), Err(QueueFull));
    // Reading one reply lets the next request through.
    assert!(out.try_next().is_some());
    assert!(out.try_next().is_some());
    assert_eq!(hub.create(sid, &create("k", "", 0), h.current()), Ok(()));
    let replies = drain(&mut out);
    assert_eq!(replies.len(), accepted + 1 - 2);
    assert!(replies.iter().all(|r| r.created));
}

#[test]
fn a_flood_of_progress_requests_stays_bounded() {
    let limits = HubLimits {
        queued_responses_max: 16,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let mut h = FakeHistory::default();
    for _ in 0..5 {
        h.put(None, "k");
    }
    let (sid, mut out) = hub.open_stream();
    // While a watcher is unsynced, any number of requests are answered by one reply.
    hub.create(sid, &create("k", "", 2), h.current()).unwrap();
    for _ in 0..100_000 {
        hub.request_progress(sid, h.current()).unwrap();
    }
    assert_eq!(out.len(), 1, "only the created reply is queued");
    let got = sync_all(&hub, sid, &h, &mut out);
    assert_eq!(got.iter().filter(|r| r.watch_id == -1).count(), 1);
    // Once synced, every request is answered, until the client stops reading.
    let mut answered = 0;
    while hub.request_progress(sid, h.current()).is_ok() {
        answered += 1;
        assert!(answered <= 100, "progress requests never pushed back");
    }
    assert!(out.len() <= limits.queued_responses_max);
    assert!(drain(&mut out).iter().all(|r| r.watch_id == -1));
}

#[test]
fn progress_ticks_are_skipped_not_queued_when_full() {
    let limits = HubLimits {
        queued_responses_max: 16,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let h = FakeHistory::default();
    let (sid, mut out) = hub.open_stream();
    for i in 0..100 {
        let req = WatchCreateRequest {
            progress_notify: true,
            ..create(&format!("k{i}"), "", 0)
        };
        hub.create(sid, &req, h.current()).unwrap();
        drain(&mut out);
    }
    hub.progress_tick(sid, h.current());
    assert_eq!(out.len(), limits.queued_responses_max);
    // Every watcher hears at a later tick once the client reads.
    let mut notified = std::collections::BTreeSet::new();
    for _ in 0..10 {
        notified.extend(drain(&mut out).iter().map(|r| r.watch_id));
        hub.progress_tick(sid, h.current());
    }
    notified.extend(drain(&mut out).iter().map(|r| r.watch_id));
    assert_eq!(notified.len(), 100);
}

#[test]
fn a_client_that_never_reads_costs_bounded_memory_and_gets_every_event_later() {
    let limits = HubLimits {
        queued_responses_max: 32,
        queued_bytes_max: 64 * 1024,
        catch_up_revisions_max: 1000,
        catch_up_bytes_max: 16 * 1024,
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let (sid, mut out) = hub.open_stream();
    let mut store = crate::mvcc::Store::new();
    hub.create(sid, &create("k", "", 0), store.current_revision())
        .unwrap();
    hub.create(sid, &create("\0", "\0", 0), store.current_revision())
        .unwrap();
    let value = vec![b'v'; 1000];
    for i in 0..5_000 {
        let req = crate::proto::etcdserverpb::PutRequest {
            key: if i % 2 == 0 {
                b"k".to_vec()
            } else {
                b"j".to_vec()
            },
            value: value.clone(),
            ..Default::default()
        };
        let written = store.put(&req, &|_| true).unwrap();
        hub.publish(store.current_revision(), &written.events);
        assert!(out.len() <= limits.queued_responses_max);
        assert!(out.queued_bytes() <= limits.queued_bytes_max + 4096);
    }
    let keys = PlainStore(store);
    let got = sync_all(&hub, sid, &keys, &mut out);
    let last = keys.0.current_revision();
    assert_eq!(
        event_revs(&got, 0),
        (2..=last).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(event_revs(&got, 1), (2..=last).collect::<Vec<_>>());
    // Catch-up responses close near `catch_up_bytes_max`, not at 1000 revisions.
    assert!(got
        .iter()
        .all(|r| prost::Message::encoded_len(r) <= limits.catch_up_bytes_max + 4096));
}

/// Bug guarded against: after a follower installed the leader's snapshot, its synced watchers
/// kept waiting for the next published revision and silently skipped every revision the
/// snapshot covered. Now they fall back to unsynced and catch up from the new history, or are
/// canceled with the compaction revision when that history starts after them.
#[test]
fn a_restored_key_space_resyncs_watchers_without_a_gap() {
    let hub = Hub::new(HubLimits::default());
    let mut h = FakeHistory::default();
    h.put(Some(&hub), "k");
    let (sid, mut out) = hub.open_stream();
    hub.create(sid, &create("k", "", 0), h.current()).unwrap();
    hub.create(sid, &create("k", "", 0), h.current()).unwrap();
    assert!(!hub.sync_stream(sid, &h), "both synced");
    let first = h.put(Some(&hub), "k");
    // Revisions applied elsewhere arrive as one snapshot: never published here.
    let mut restored = h.clone();
    for _ in 0..4 {
        restored.put(None, "k");
    }
    hub.restored();
    assert!(
        !hub.sync_stream(sid, &restored),
        "caught up and synced again"
    );
    let after = restored.put(Some(&hub), "k");
    hub.sync_stream(sid, &restored);
    let resps = drain(&mut out);
    let want: Vec<i64> = (first..=after).collect();
    assert_eq!(event_revs(&resps, 0), want);
    assert_eq!(event_revs(&resps, 1), want);

    // A snapshot whose history was compacted past the watchers cancels them.
    let (sid2, mut out2) = hub.open_stream();
    hub.create(sid2, &create("k", "", 0), restored.current())
        .unwrap();
    assert!(!hub.sync_stream(sid2, &restored));
    drain(&mut out2);
    let mut compacted = restored.clone();
    for _ in 0..3 {
        compacted.put(None, "k");
    }
    compacted.compacted = compacted.current();
    hub.restored();
    hub.sync_stream(sid2, &compacted);
    let got = drain(&mut out2);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].canceled);
    assert_eq!(got[0].compact_revision, compacted.current());
}
