//! Hub tests against a hand-built event history.

use super::*;
use crate::proto::mvccpb::KeyValue;

/// A tiny history: a list of (revision, events) plus a compaction mark.
#[derive(Default)]
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
    ) -> Result<Vec<Event>, i64> {
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
        };
        Ok(self
            .revisions
            .iter()
            .filter(|(r, _)| *r >= from && *r <= to)
            .flat_map(|(_, evs)| w.select(evs))
            .collect())
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
    while let Ok(r) = out.rx.try_recv() {
        Hub::delivered(&out.queued, &r);
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
    hub.create(sid, &create("a", "", 0), &h);
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 1,
            ..create("b", "", 0)
        },
        &h,
    );
    hub.create(sid, &create("c", "", 0), &h);
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
    hub.create(sid, &create("a", "", 0), &h);
    hub.create(sid, &create("b", "", 0), &h);
    hub.cancel(sid, 1, h.current());
    hub.create(sid, &create("c", "", 0), &h);
    hub.cancel(sid, 0, h.current());
    hub.create(sid, &create("d", "", 0), &h);
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
    hub.create(sid, &create("b", "a", 0), &h);
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 7,
            ..create("x", "", 0)
        },
        &h,
    );
    hub.create(
        sid,
        &WatchCreateRequest {
            watch_id: 7,
            ..create("y", "", 0)
        },
        &h,
    );
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
    hub.create(sid, &create("k", "", 2), &h);
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
    hub.create(sid, &create("k", "", 0), &h);
    for _ in 0..50 {
        h.put(Some(&hub), "k");
    }
    // The consumer read nothing: at most the bound is queued (plus the created reply).
    assert!(out.queued.load(Ordering::Relaxed) <= limits.queued_responses_max);
    assert!(out.rx.len() <= limits.queued_responses_max + 1);
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
    hub.create(sid, &create("a", "", 1), &h);
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
    hub.create(sid, &create("k", "", 2), &h);
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
    hub.create(sid, &create("k", "", 1), &h);
    hub.request_progress(sid, &h);
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
    hub.create(sid, &req, &h);
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
        &h,
    );
    hub.create(sid, &create("a", "z", 0), &h);
    let big = |k: &str| Event {
        r#type: EventType::Put as i32,
        kv: Some(KeyValue {
            key: k.as_bytes().to_vec(),
            value: vec![b'x'; 300],
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
