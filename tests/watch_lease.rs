//! Watch and Lease semantics through the Rust `etcd-client` crate, against a real oxetcd process
//! (and, for the cheaper scenarios, the same checks against real etcd 3.5).
//!
//! The concurrent scenario records every write's resulting revision and events, which together
//! form the complete history of the key space; every watcher's stream is then compared with the
//! slice of that history it should see: ordered, gap-free, duplicate-free, one revision never
//! split across responses, and `prev_kv` equal to the model's previous value.
//!
//! Invariant: every scenario starts its own server, so no test depends on another's writes.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{require_etcd_tools, Server, ServerKind};
use etcd_client::{
    Client, DeleteOptions, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

/// Upper bound for waiting on any single expected message.
const MESSAGE_WAIT: Duration = Duration::from_secs(15);

async fn start(kind: ServerKind, test: &str) -> Option<(Server, Client)> {
    require_etcd_tools(test)?;
    let server = Server::start(kind).unwrap_or_else(|e| panic!("{test}: server start: {e}"));
    let client = Client::connect([format!("http://{}", server.endpoint)], None)
        .await
        .unwrap();
    Some((server, client))
}

/// One event as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    rev: i64,
    put: bool,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// What one watcher received.
#[derive(Default, Debug)]
struct Received {
    events: Vec<Ev>,
    /// (mod_revision, prev_kv value or None) per event, for prev_kv checks.
    prevs: Vec<Option<(Vec<u8>, i64)>>,
    /// The revisions contained in each response.
    responses: Vec<Vec<i64>>,
}

fn to_ev(e: &etcd_client::Event) -> Ev {
    let kv = e.kv().unwrap();
    Ev {
        rev: kv.mod_revision(),
        put: e.event_type() == EventType::Put,
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
    }
}

fn record(got: &mut Received, resp: &etcd_client::WatchResponse) {
    let mut revs: Vec<i64> = Vec::new();
    for e in resp.events() {
        let ev = to_ev(e);
        if revs.last() != Some(&ev.rev) {
            revs.push(ev.rev);
        }
        got.prevs
            .push(e.prev_kv().map(|p| (p.value().to_vec(), p.mod_revision())));
        got.events.push(ev);
    }
    got.responses.push(revs);
}

/// Reads `stream` (already past its created reply) until it has an event at revision `last`
/// (if any is expected), then asks for progress and reads until a progress reply at or beyond
/// `until`; events arriving meanwhile are recorded (and fail the later comparison).
///
/// Waiting for the last expected event first keeps the check valid on etcd 3.5.1, which answers
/// a progress request at once even while a watcher is still catching up (3.5.8+ and oxetcd wait).
async fn collect_until(stream: &mut WatchStream, last: Option<i64>, until: i64) -> Received {
    let mut got = Received::default();
    collect_more(stream, last, until, &mut got).await;
    got
}

async fn next_response(stream: &mut WatchStream) -> etcd_client::WatchResponse {
    let resp = tokio::time::timeout(MESSAGE_WAIT, stream.message())
        .await
        .expect("watch stalled")
        .unwrap()
        .expect("watch stream ended");
    assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
    resp
}

async fn collect_more(stream: &mut WatchStream, last: Option<i64>, until: i64, got: &mut Received) {
    if let Some(last) = last {
        while got.events.last().is_none_or(|e| e.rev < last) {
            let resp = next_response(stream).await;
            assert!(!resp.events().is_empty(), "unexpected empty response");
            record(got, &resp);
        }
    }
    loop {
        stream.request_progress().await.unwrap();
        loop {
            let resp = next_response(stream).await;
            if resp.events().is_empty() {
                let rev = resp.header().unwrap().revision();
                assert_eq!(
                    resp.watch_id(),
                    -1,
                    "an empty response must be a progress reply"
                );
                if rev >= until {
                    return;
                }
                break;
            }
            record(got, &resp);
        }
    }
}

/// The last revision of `history` at or after `from` that touches `range`.
fn last_in_range(history: &History, range: &Range, from: i64) -> Option<i64> {
    history
        .range(from..)
        .rev()
        .find(|(_, evs)| evs.iter().any(|e| range.contains(&e.key)))
        .map(|(rev, _)| *rev)
}

async fn created(stream: &mut WatchStream) -> i64 {
    let resp = stream.message().await.unwrap().unwrap();
    assert!(resp.created(), "first reply must be the created reply");
    resp.header().unwrap().revision()
}

/// The complete history written by the load, by revision.
type History = BTreeMap<i64, Vec<Ev>>;

fn key(n: usize) -> Vec<u8> {
    format!("w/k{:02}", n % 20).into_bytes()
}

async fn writer(mut client: Client, task: usize, ops: usize) -> History {
    let mut history = History::new();
    for i in 0..ops {
        let n = task * 7 + i * 3;
        let value = format!("t{task}-{i}").into_bytes();
        match i % 4 {
            0 | 1 => {
                let resp = client.put(key(n), value.clone(), None).await.unwrap();
                let rev = resp.header().unwrap().revision();
                let ev = Ev {
                    rev,
                    put: true,
                    key: key(n),
                    value,
                };
                assert!(history.insert(rev, vec![ev]).is_none());
            }
            2 => {
                let resp = client.delete(key(n + 5), None).await.unwrap();
                if resp.deleted() > 0 {
                    let rev = resp.header().unwrap().revision();
                    let ev = Ev {
                        rev,
                        put: false,
                        key: key(n + 5),
                        value: Vec::new(),
                    };
                    assert!(history.insert(rev, vec![ev]).is_none());
                }
            }
            _ => {
                let (a, b, c) = (key(n), key(n + 1), key(n + 2));
                let txn = Txn::new().and_then(vec![
                    TxnOp::put(a.clone(), value.clone(), None),
                    TxnOp::put(b.clone(), value.clone(), None),
                    TxnOp::delete(c.clone(), None),
                ]);
                let resp = client.txn(txn).await.unwrap();
                let rev = resp.header().unwrap().revision();
                let mut evs = vec![
                    Ev {
                        rev,
                        put: true,
                        key: a,
                        value: value.clone(),
                    },
                    Ev {
                        rev,
                        put: true,
                        key: b,
                        value,
                    },
                ];
                for op in resp.op_responses() {
                    if let TxnOpResponse::Delete(d) = op {
                        if d.deleted() > 0 {
                            evs.push(Ev {
                                rev,
                                put: false,
                                key: c.clone(),
                                value: Vec::new(),
                            });
                        }
                    }
                }
                assert!(history.insert(rev, evs).is_none());
            }
        }
    }
    history
}

/// A watcher's range: `[start, end)` with etcd's empty-end = single key rule.
#[derive(Clone)]
struct Range {
    key: Vec<u8>,
    end: Vec<u8>,
}

impl Range {
    fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            k == self.key.as_slice()
        } else {
            k >= self.key.as_slice() && k < self.end.as_slice()
        }
    }

    fn options(&self) -> WatchOptions {
        let opts = WatchOptions::new().with_prev_key();
        if self.end.is_empty() {
            opts
        } else {
            opts.with_range(self.end.clone())
        }
    }
}

fn ranges() -> Vec<Range> {
    let r = |a: &str, b: &str| Range {
        key: a.as_bytes().to_vec(),
        end: b.as_bytes().to_vec(),
    };
    vec![
        r("w/", "w0"),
        r("w/k0", "w/k1"),
        r("w/k1", "w/k2"),
        r("w/k05", "w/k15"),
        r("w/k07", ""),
        r("w/k13", ""),
        r("w/", "w0"),
        r("w/k18", "w/k99"),
    ]
}

/// Checks one watcher's stream against the history from `from` on.
fn check_stream(name: &str, got: &Received, history: &History, range: &Range, from: i64) {
    let expected: Vec<Ev> = history
        .range(from..)
        .flat_map(|(_, evs)| evs.iter().filter(|e| range.contains(&e.key)).cloned())
        .collect();
    assert_eq!(got.events.len(), expected.len(), "{name}: event count");
    for (i, (g, e)) in got.events.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "{name}: event {i}");
    }
    // One revision is never split across two responses.
    let mut seen = std::collections::BTreeSet::new();
    for revs in &got.responses {
        for r in revs {
            assert!(
                seen.insert(*r),
                "{name}: revision {r} split across responses"
            );
        }
    }
    // prev_kv: the key's value before this revision, from the model.
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = BTreeMap::new();
    let mut next = 0;
    for (rev, evs) in history {
        for e in evs {
            if *rev >= from && range.contains(&e.key) {
                assert_eq!(
                    got.prevs[next],
                    model.get(&e.key).cloned(),
                    "{name}: prev_kv of {e:?}"
                );
                next += 1;
            }
            if e.put {
                model.insert(e.key.clone(), (e.value.clone(), *rev));
            } else {
                model.remove(&e.key);
            }
        }
    }
}

async fn open_watch(client: &mut Client, range: &Range, start_rev: Option<i64>) -> WatchStream {
    let mut opts = range.options();
    if let Some(rev) = start_rev {
        opts = opts.with_start_revision(rev);
    }
    let mut stream = client.watch(range.key.clone(), Some(opts)).await.unwrap();
    created(&mut stream).await;
    stream
}

async fn concurrent_writers_and_watchers(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "concurrent_writers_and_watchers").await else {
        return;
    };
    let ranges = ranges();
    // Half the watchers replay from revision 1, half start live (their first revision is the
    // created reply's revision + 1).
    let mut streams = Vec::new();
    for (i, range) in ranges.iter().enumerate() {
        let start = if i % 2 == 0 { Some(1) } else { None };
        let mut stream = client
            .watch(
                range.key.clone(),
                Some(match start {
                    Some(r) => range.options().with_start_revision(r),
                    None => range.options(),
                }),
            )
            .await
            .unwrap();
        let created_rev = created(&mut stream).await;
        streams.push((stream, start.unwrap_or(created_rev + 1)));
    }
    let writers: Vec<_> = (0..8)
        .map(|task| tokio::spawn(writer(client.clone(), task, 200)))
        .collect();
    // Watchers read while the load runs.
    let final_rev_rx = {
        let (tx, rx) = tokio::sync::watch::channel((0i64, None));
        let mut readers = Vec::new();
        for (i, (mut stream, from)) in streams.into_iter().enumerate() {
            let mut rx = rx.clone();
            let range = ranges[i].clone();
            readers.push(tokio::spawn(async move {
                // Read while the load runs, then up to the final revision.
                let mut got = Received::default();
                while rx.borrow_and_update().0 == 0 {
                    let next = tokio::time::timeout(Duration::from_millis(50), stream.message());
                    if let Ok(resp) = next.await {
                        let resp = resp.unwrap().expect("watch stream ended");
                        assert!(!resp.canceled() && !resp.events().is_empty());
                        record(&mut got, &resp);
                    }
                }
                let (until, history): (i64, Option<std::sync::Arc<History>>) = rx.borrow().clone();
                let last = history.and_then(|h| last_in_range(&h, &range, from));
                collect_more(&mut stream, last, until, &mut got).await;
                (got, from)
            }));
        }
        (tx, readers)
    };
    let mut history = History::new();
    for w in writers {
        history.extend(w.await.unwrap());
    }
    let final_rev = client
        .get("w/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // The writers' revisions are the complete history 2..=final_rev.
    let revs: Vec<i64> = history.keys().copied().collect();
    assert_eq!(
        revs,
        (2..=final_rev).collect::<Vec<_>>(),
        "history has gaps"
    );
    let (tx, readers) = final_rev_rx;
    tx.send((final_rev, Some(std::sync::Arc::new(history.clone()))))
        .unwrap();
    for (i, reader) in readers.into_iter().enumerate() {
        let (got, from) = reader.await.unwrap();
        check_stream(&format!("watcher {i}"), &got, &history, &ranges[i], from);
    }
    // A late watcher from a mid revision gets exactly the tail.
    let mid = final_rev / 2;
    for (i, range) in [&ranges[0], &ranges[3]].into_iter().enumerate() {
        let mut stream = open_watch(&mut client, range, Some(mid)).await;
        let last = last_in_range(&history, range, mid);
        let got = collect_until(&mut stream, last, final_rev).await;
        check_stream(&format!("late watcher {i}"), &got, &history, range, mid);
    }
    // The model's final state is what the server holds.
    let got = client
        .get("w/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for evs in history.values() {
        for e in evs {
            if e.put {
                model.insert(e.key.clone(), e.value.clone());
            } else {
                model.remove(&e.key);
            }
        }
    }
    let server: BTreeMap<Vec<u8>, Vec<u8>> = got
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect();
    assert_eq!(server, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_watchers_oxetcd() {
    concurrent_writers_and_watchers(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_watchers_etcd() {
    concurrent_writers_and_watchers(ServerKind::Etcd35).await;
}

/// A watcher that reads nothing while 5,000 puts happen still receives each event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_every_event_once() {
    let Some((_server, mut client)) = start(ServerKind::Oxetcd, "slow_consumer").await else {
        return;
    };
    let range = Range {
        key: b"s/".to_vec(),
        end: b"s0".to_vec(),
    };
    let mut stream = open_watch(&mut client, &range, None).await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..625 {
                    let k = format!("s/{t}/{}", i % 10);
                    let r = c.put(k, vec![b'x'; 100], None).await.unwrap();
                    revs.push(r.header().unwrap().revision());
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all.len(), 5000);
    let last = *all.last().unwrap();
    let got = collect_until(&mut stream, Some(last), last).await;
    let revs: Vec<i64> = got.events.iter().map(|e| e.rev).collect();
    assert_eq!(revs, all, "every put exactly once, in revision order");
}

/// A progress reply comes after every event at or below its revision.
async fn progress_after_events(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "progress_after_events").await else {
        return;
    };
    let range = Range {
        key: b"p/".to_vec(),
        end: b"p0".to_vec(),
    };
    let mut stream = open_watch(&mut client, &range, None).await;
    let mut last = 0;
    for i in 0..50 {
        let r = client.put(format!("p/{}", i % 5), "v", None).await.unwrap();
        last = r.header().unwrap().revision();
    }
    stream.request_progress().await.unwrap();
    let mut seen = 0;
    loop {
        let resp = tokio::time::timeout(MESSAGE_WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if resp.events().is_empty() {
            assert_eq!(resp.watch_id(), -1);
            assert!(resp.header().unwrap().revision() >= last);
            assert_eq!(seen, last, "progress reply before the events it covers");
            break;
        }
        for e in resp.events() {
            seen = e.kv().unwrap().mod_revision();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_after_events_oxetcd() {
    progress_after_events(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_after_events_etcd() {
    progress_after_events(ServerKind::Etcd35).await;
}

fn grpc_error(e: etcd_client::Error) -> (String, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (format!("{:?}", s.code()), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// Expiry, keep-alive, revoke, time-to-live, list, duplicate IDs and the minimum TTL.
async fn lease_semantics(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "lease_semantics").await else {
        return;
    };
    // TTL 1 is raised to the minimum of 2 s.
    let short = client.lease_grant(1, None).await.unwrap();
    assert_eq!(short.ttl(), 2);
    let kept = client.lease_grant(2, None).await.unwrap();
    let revoked = client.lease_grant(600, None).await.unwrap();
    for (k, id) in [
        ("l/e1", short.id()),
        ("l/e2", short.id()),
        ("l/k", kept.id()),
    ] {
        client
            .put(k, "v", Some(PutOptions::new().with_lease(id)))
            .await
            .unwrap();
    }
    for k in ["l/r1", "l/r2", "l/r3"] {
        client
            .put(k, "v", Some(PutOptions::new().with_lease(revoked.id())))
            .await
            .unwrap();
    }
    let range = Range {
        key: b"l/".to_vec(),
        end: b"l0".to_vec(),
    };
    let mut watch = open_watch(&mut client, &range, None).await;
    // Listing shows the granted leases.
    let listed: Vec<i64> = client
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    for id in [short.id(), kept.id(), revoked.id()] {
        assert!(listed.contains(&id), "{id:x} not listed in {listed:?}");
    }
    // Revoke deletes all its keys in one revision.
    let rev = client
        .lease_revoke(revoked.id())
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // Keep `kept` alive for over three TTLs while `short` expires.
    let (mut keeper, mut replies) = client.lease_keep_alive(kept.id()).await.unwrap();
    let started = Instant::now();
    let mut deletes: Vec<(i64, Vec<u8>, usize)> = Vec::new();
    let mut response_no = 0;
    while started.elapsed() < Duration::from_millis(6500) {
        keeper.keep_alive().await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert!(reply.ttl() > 0, "keep-alive answered TTL {}", reply.ttl());
        while let Ok(Some(resp)) = tokio::time::timeout(Duration::from_millis(500), watch.message())
            .await
            .map(|r| r.unwrap())
        {
            response_no += 1;
            for e in resp.events() {
                let kv = e.kv().unwrap();
                assert_eq!(e.event_type(), EventType::Delete, "unexpected event {kv:?}");
                deletes.push((kv.mod_revision(), kv.key().to_vec(), response_no));
            }
        }
    }
    let expected_keys: Vec<&[u8]> = vec![b"l/r1", b"l/r2", b"l/r3", b"l/e1", b"l/e2"];
    let got_keys: Vec<&[u8]> = deletes.iter().map(|d| d.1.as_slice()).collect();
    assert_eq!(got_keys, expected_keys, "revoke then expiry deletes");
    assert!(
        deletes[..3]
            .iter()
            .all(|d| d.0 == rev && d.2 == deletes[0].2),
        "revoke in one revision: {deletes:?}"
    );
    assert!(
        deletes[3..]
            .iter()
            .all(|d| d.0 == rev + 1 && d.2 == deletes[3].2),
        "expiry in one revision: {deletes:?}"
    );
    let left = client
        .get("l/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let left: Vec<&[u8]> = left.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(
        left,
        vec![b"l/k".as_slice()],
        "only the kept-alive lease's key is left"
    );
    let ttl = client
        .lease_time_to_live(kept.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert!(ttl.ttl() > 0 && ttl.granted_ttl() == 2);
    assert_eq!(ttl.keys(), [b"l/k".to_vec()]);

    // Unknown and expired leases: TTL -1.
    for id in [short.id(), revoked.id(), 0x1234] {
        assert_eq!(client.lease_time_to_live(id, None).await.unwrap().ttl(), -1);
    }
    // An explicit ID twice.
    client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap();
    let err = client
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap_err();
    assert_eq!(
        grpc_error(err),
        (
            "FailedPrecondition".to_string(),
            "etcdserver: lease already exists".to_string()
        )
    );
    let err = client.lease_revoke(0x4321).await.unwrap_err();
    assert_eq!(
        grpc_error(err),
        (
            "NotFound".to_string(),
            "etcdserver: requested lease not found".to_string()
        )
    );
    // Deleting keys is not affected by their lease.
    client
        .delete("l/k", Some(DeleteOptions::new()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_semantics_oxetcd() {
    lease_semantics(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_semantics_etcd() {
    lease_semantics(ServerKind::Etcd35).await;
}

/// Several watchers on one stream: auto IDs, explicit IDs, cancel, filters, duplicate IDs.
async fn stream_multiplexing(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "stream_multiplexing").await else {
        return;
    };
    let mut stream = client.watch("m/a", None).await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.created());
    let mut ids = vec![first.watch_id()];
    let nodel = WatchOptions::new().with_filters([etcd_client::WatchFilterType::NoDelete]);
    let noput = WatchOptions::new().with_filters([etcd_client::WatchFilterType::NoPut]);
    stream.watch("m/b", Some(noput)).await.unwrap();
    ids.push(next_response(&mut stream).await.watch_id());
    stream.watch("m/z", None).await.unwrap();
    ids.push(next_response(&mut stream).await.watch_id());
    stream.cancel(ids[2]).await.unwrap();
    let canceled = next_response_any(&mut stream).await;
    assert!(canceled.canceled() && canceled.watch_id() == ids[2]);
    // Auto IDs keep counting up (0 stays on m/a, which sees nothing): a canceled watcher's ID is not handed out again.
    stream.watch("m/c", Some(nodel)).await.unwrap();
    ids.push(next_response(&mut stream).await.watch_id());
    stream
        .watch("m/d", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    ids.push(next_response(&mut stream).await.watch_id());
    stream.watch("m/d", None).await.unwrap();
    ids.push(next_response(&mut stream).await.watch_id());
    assert_eq!(ids, [0, 1, 2, 3, 7, 4], "watch IDs");
    // A duplicate explicit ID is refused.
    stream
        .watch("m/e", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let dup = next_response_any(&mut stream).await;
    assert!(dup.created() && dup.canceled(), "{dup:?}");
    assert_eq!(dup.watch_id(), -1);
    assert_eq!(
        dup.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    for k in ["m/b", "m/c", "m/d", "m/z"] {
        client.put(k, "1", None).await.unwrap();
        client.delete(k, None).await.unwrap();
    }
    let last = client
        .get("m", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut seen: Vec<(i64, i64, bool, Vec<u8>)> = Vec::new();
    stream.request_progress().await.unwrap();
    loop {
        let resp = next_response(&mut stream).await;
        if resp.events().is_empty() {
            assert_eq!(resp.header().unwrap().revision(), last);
            break;
        }
        for e in resp.events() {
            let put = e.event_type() == EventType::Put;
            let kv = e.kv().unwrap();
            seen.push((kv.mod_revision(), resp.watch_id(), put, kv.key().to_vec()));
        }
    }
    // Watchers of one revision may be served in any order (etcd keeps them in a hash map).
    seen.sort();
    let base = last - 8;
    let expected = vec![
        (base + 2, 1, false, b"m/b".to_vec()),
        (base + 3, 3, true, b"m/c".to_vec()),
        (base + 5, 4, true, b"m/d".to_vec()),
        (base + 5, 7, true, b"m/d".to_vec()),
        (base + 6, 4, false, b"m/d".to_vec()),
        (base + 6, 7, false, b"m/d".to_vec()),
    ];
    assert_eq!(seen, expected);
}

async fn next_response_any(stream: &mut WatchStream) -> etcd_client::WatchResponse {
    tokio::time::timeout(MESSAGE_WAIT, stream.message())
        .await
        .expect("watch stalled")
        .unwrap()
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_multiplexing_oxetcd() {
    stream_multiplexing(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_multiplexing_etcd() {
    stream_multiplexing(ServerKind::Etcd35).await;
}

/// Lease bookkeeping details: detaching on delete and on overwrite, revoke of an empty lease,
/// keep-alive and time-to-live of unknown leases, the TTL ceiling.
async fn lease_details(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "lease_details").await else {
        return;
    };
    let lease = client.lease_grant(600, None).await.unwrap().id();
    let with_lease = || Some(PutOptions::new().with_lease(lease));
    client.put("d/del", "1", with_lease()).await.unwrap();
    client.put("d/over", "1", with_lease()).await.unwrap();
    client.put("d/kept", "1", with_lease()).await.unwrap();
    // Deleting a key and writing it again without the lease detaches it; so does an overwrite.
    client.delete("d/del", None).await.unwrap();
    client.put("d/del", "2", None).await.unwrap();
    client.put("d/over", "2", None).await.unwrap();
    let ttl = client
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.keys(), [b"d/kept".to_vec()]);
    let before = client
        .get("d", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let revoke = client.lease_revoke(lease).await.unwrap();
    assert_eq!(revoke.header().unwrap().revision(), before + 1);
    let left = client
        .get("d/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let left: Vec<(&[u8], &[u8])> = left.kvs().iter().map(|kv| (kv.key(), kv.value())).collect();
    assert_eq!(
        left,
        vec![(b"d/del".as_slice(), b"2".as_slice()), (b"d/over", b"2")]
    );

    // Revoking a lease without keys writes nothing: the revision stays.
    let empty = client.lease_grant(600, None).await.unwrap().id();
    let revoke = client.lease_revoke(empty).await.unwrap();
    assert_eq!(revoke.header().unwrap().revision(), before + 1);

    // Keep-alive of an unknown lease answers TTL 0 (which etcd-client reports as "lease not
    // found"); time-to-live answers -1.
    match client.lease_keep_alive(0x5555).await {
        Err(etcd_client::Error::LeaseKeepAliveError(m)) => assert_eq!(m, "lease not found"),
        other => panic!("keep-alive of an unknown lease: {:?}", other.map(|_| ())),
    }
    let ttl = client.lease_time_to_live(0x5555, None).await.unwrap();
    assert_eq!((ttl.ttl(), ttl.granted_ttl()), (-1, 0));

    let err = client.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(
        grpc_error(err),
        (
            "OutOfRange".to_string(),
            "etcdserver: too large lease TTL".to_string()
        )
    );
    let at_max = client.lease_grant(9_000_000_000, None).await.unwrap();
    assert_eq!(at_max.ttl(), 9_000_000_000);
    // An explicit ID is taken as given, negative ones included; TTL 1 is raised to 2.
    let neg = LeaseGrantOptions::new().with_id(-5);
    let granted = client.lease_grant(1, Some(neg)).await.unwrap();
    assert_eq!((granted.id(), granted.ttl()), (-5, 2));
    assert_eq!(
        client
            .lease_time_to_live(-5, None)
            .await
            .unwrap()
            .granted_ttl(),
        2
    );
    // Attaching a key to an unknown lease fails.
    let err = client
        .put("d/x", "1", Some(PutOptions::new().with_lease(0x5555)))
        .await
        .unwrap_err();
    assert_eq!(
        grpc_error(err),
        (
            "NotFound".to_string(),
            "etcdserver: requested lease not found".to_string()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_details_oxetcd() {
    lease_details(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_details_etcd() {
    lease_details(ServerKind::Etcd35).await;
}

/// A replay of a long history comes in responses of at most 1,000 revisions that touched the
/// watcher's range (etcd's batch rule), however sparse the range is in the history.
async fn catch_up_batches(kind: ServerKind) {
    let Some((_server, mut client)) = start(kind, "catch_up_batches").await else {
        return;
    };
    // 1,100 puts of c/a interleaved with 300 of c/b, from 7 writers.
    let tasks: Vec<_> = (0..7)
        .map(|t| {
            let mut c = client.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    let key = if (t * 200 + i) % 14 < 11 {
                        "c/a"
                    } else {
                        "c/b"
                    };
                    c.put(key, "v", None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let last = client
        .get("c", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let range = Range {
        key: b"c/a".to_vec(),
        end: Vec::new(),
    };
    let mut stream = open_watch(&mut client, &range, Some(1)).await;
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < 1100 {
        let resp = next_response(&mut stream).await;
        assert_eq!(resp.header().unwrap().revision(), last);
        sizes.push(resp.events().len());
        total += resp.events().len();
    }
    assert_eq!(sizes, [1000, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_batches_oxetcd() {
    catch_up_batches(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_batches_etcd() {
    catch_up_batches(ServerKind::Etcd35).await;
}
