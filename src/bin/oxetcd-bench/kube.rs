//! `kube`: the storage calls the Kubernetes API server makes, against objects stored under
//! `/registry/<resource>/<namespace>/<name>`:
//! - create: `Txn(If mod_revision(k) == 0 Then Put(k))`;
//! - update: `Txn(If mod_revision(k) == rev Then Put(k) Else Range(k))`, retried with the
//!   revision the Else branch returned while another client got there first (a conflict);
//! - get: `Range(k)`;
//! - list: pages of `Range(prefix, limit = --page-size)`, the first at the current revision,
//!   the others at the first page's header revision starting at the last key + `"\0"`;
//! - event: an object under `/registry/events/` created with a lease (`LeaseGrant` with the
//!   event TTL plus the reuse window, reused for `LEASE_REUSE_SECONDS` or
//!   `LEASE_MAX_OBJECTS` objects as the API server's lease manager does);
//! - one watch per resource prefix (and the events prefix) with `prev_kv` and
//!   `progress_notify`, from the revision after the untimed fill;
//! - every `--compact-interval` seconds, the compaction step: `Txn(If version(compact_rev_key)
//!   == t Then Put(compact_rev_key, rev) Else Range(compact_rev_key))`, then on success
//!   `Compact(rev)` with the revision the previous step saw (none on the first step).
//!
//! Invariant: the watch check is exact: after the load, every prefix's watch must have
//! delivered exactly as many PUT events as the load made successful writes on that prefix
//! (each with `prev_kv` when the key existed before); any difference is an error of the run.
//! Invariant: the fill (`--objects` objects, untimed) is skipped for objects already there, so
//! repeated runs on one server (the rounds of `compare`) start from the same object count or
//! more, never from an empty store.
//! Invariant: a run is bounded by `--total` operations and, with `--duration`, by time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxetcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::{
    request_op, response_op, watch_request, CompactionRequest, Compare, LeaseGrantRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::args::{KubeOp, Opts};
use crate::error::BenchError;
use crate::load::RxStream;
use crate::stats::{Recorder, Summary};

/// The key the API server's compactor keeps its state in (outside `/registry/`).
pub const COMPACT_REV_KEY: &[u8] = b"compact_rev_key";
/// The API server's lease manager reuses a lease for this long...
const LEASE_REUSE_SECONDS: i64 = 60;
/// ... or for this many objects, whichever comes first.
const LEASE_MAX_OBJECTS: u64 = 1000;
/// Attempts of one update before it counts as an error.
const UPDATE_ATTEMPTS: u32 = 16;
/// Lists restarted because their revision was compacted away, before it counts as an error.
const LIST_ATTEMPTS: u32 = 3;
/// How long the watch check waits without any new event before it gives up.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Puts per txn and txns in flight while filling.
const FILL_TXN_OPS: usize = 100;
const FILL_CLIENTS: usize = 8;
/// Largest response accepted (a page of 500 objects of the largest allowed value).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// The prefix of the events resource.
const EVENTS: &str = "events";

/// `/registry/<resource>/`.
fn prefix(resource: &str) -> Vec<u8> {
    format!("/registry/{resource}/").into_bytes()
}

/// The end of the range of every key starting with `prefix` (`prefix` with its last byte
/// incremented; prefixes here end in `/`, never in 0xff).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// The key of object `index`: resources and namespaces in turn.
pub fn object_key(resources: &[String], namespaces: usize, index: u64) -> Vec<u8> {
    let r = resources.len() as u64;
    let resource = &resources[(index % r) as usize];
    let namespace = (index / r) % namespaces as u64;
    format!("/registry/{resource}/ns-{namespace}/obj-{index:07}").into_bytes()
}

/// The index in an object key (`.../obj-<index>`), if it is one.
fn object_index(key: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(key).ok()?;
    text.rsplit_once("/obj-")?.1.parse().ok()
}

/// An object's stored bytes: the `k8s\0` magic of the API server's protobuf encoding, then
/// filler that differs per write (so that no two versions are equal).
fn object_value(size: usize, seed: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(size);
    value.extend_from_slice(b"k8s\0");
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while value.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(b'a' + (x % 26) as u8);
    }
    value.truncate(size);
    value
}

fn put_op(key: Vec<u8>, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn range_op(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

fn compare(key: &[u8], target: CompareTarget, value: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(value),
        ..Default::default()
    }
}

/// The kube-apiserver's create: put only if the key does not exist.
fn create_txn(key: Vec<u8>, value: Vec<u8>, lease: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(
            &key,
            CompareTarget::Mod,
            TargetUnion::ModRevision(0),
        )],
        success: vec![put_op(key, value, lease)],
        failure: vec![],
    }
}

/// The kube-apiserver's update: put if unchanged since `rev`, else read the current object.
fn update_txn(key: Vec<u8>, value: Vec<u8>, rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(
            &key,
            CompareTarget::Mod,
            TargetUnion::ModRevision(rev),
        )],
        success: vec![put_op(key.clone(), value, 0)],
        failure: vec![range_op(key)],
    }
}

/// The compactor's step: record `rev` if nobody else advanced the key since version `t`.
fn compact_txn(t: i64, rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![compare(
            COMPACT_REV_KEY,
            CompareTarget::Version,
            TargetUnion::Version(t),
        )],
        success: vec![put_op(
            COMPACT_REV_KEY.to_vec(),
            rev.to_string().into_bytes(),
            0,
        )],
        failure: vec![range_op(COMPACT_REV_KEY.to_vec())],
    }
}

/// The first key-value of the Range in a failed txn's responses.
fn failure_kv(resp: &TxnResponse) -> Option<&oxetcd::proto::mvccpb::KeyValue> {
    match resp.responses.first()?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first(),
        _ => None,
    }
}

fn header_revision(resp: &TxnResponse) -> i64 {
    resp.header.as_ref().map_or(0, |h| h.revision)
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The call types reported, in report order.
pub const CALLS: [&str; 8] = [
    "create",
    "update",
    "get",
    "list",
    "event",
    "lease-grant",
    "compact-txn",
    "compact",
];

fn call_index(op: KubeOp) -> usize {
    match op {
        KubeOp::Create => 0,
        KubeOp::Update => 1,
        KubeOp::Get => 2,
        KubeOp::List => 3,
        KubeOp::Event => 4,
    }
}
const LEASE_GRANT: usize = 5;
const COMPACT_TXN: usize = 6;
const COMPACT: usize = 7;

/// The objects the load knows of: key and the last mod revision seen for it.
struct Objects {
    known: Mutex<Vec<(Vec<u8>, i64)>>,
    next_index: AtomicU64,
}

impl Objects {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Vec<u8>, i64)>> {
        // A panicking client task cannot leave the table inconsistent (each access is one
        // push or one assignment), so a poisoned lock is still usable.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pick(&self, rng: &mut StdRng) -> Option<(usize, Vec<u8>, i64)> {
        let known = self.lock();
        if known.is_empty() {
            return None;
        }
        let slot = rng.gen_range(0..known.len());
        let (key, rev) = &known[slot];
        Some((slot, key.clone(), *rev))
    }

    fn saw(&self, slot: usize, rev: i64) {
        if let Some(entry) = self.lock().get_mut(slot) {
            entry.1 = entry.1.max(rev);
        }
    }
}

/// The lease the events share, as the API server's lease manager hands it out.
#[derive(Default)]
struct LeaseState {
    id: i64,
    granted: Option<Instant>,
    objects: u64,
}

/// Successful writes per watched prefix (the watch check's expected counts).
struct Writes {
    prefixes: Vec<Vec<u8>>,
    counts: Vec<AtomicU64>,
}

impl Writes {
    fn add(&self, key: &[u8]) {
        if let Some(i) = self.prefixes.iter().position(|p| key.starts_with(p)) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a watch saw.
#[derive(Default)]
struct WatchSeen {
    puts: AtomicU64,
    deletes: AtomicU64,
    progress: AtomicU64,
    /// PUT events of keys that existed before (version > 1) that came without `prev_kv`.
    missing_prev_kv: AtomicU64,
    ended: AtomicBool,
    error: Mutex<Option<String>>,
}

/// The outcome of one `kube` run.
pub struct KubeReport {
    /// Every call together.
    pub overall: Summary,
    /// Per call type, in `CALLS` order (types with no call left out).
    pub parts: Vec<(String, Summary)>,
    /// Conflicts, list restarts, the watch check: printed after the table.
    pub notes: String,
}

/// Shared state of one run.
struct Run {
    opts: Opts,
    objects: Objects,
    lease: tokio::sync::Mutex<LeaseState>,
    writes: Writes,
    events_made: AtomicU64,
    conflicts: AtomicU64,
    list_restarts: AtomicU64,
    list_pages: AtomicU64,
    run_tag: u64,
}

/// Runs the `kube` workload over `channels`.
pub async fn run(opts: &Opts, channels: &[Channel]) -> Result<KubeReport, BenchError> {
    let k = &opts.kube;
    let kv = kv_client(channels[0].clone());
    let known = fill(opts, &kv).await?;
    let next_index = known
        .iter()
        .filter_map(|(key, _)| object_index(key))
        .max()
        .map_or(0, |m| m + 1);
    let start_rev = current_revision(&kv).await?;
    let mut watched: Vec<String> = k.resources.clone();
    watched.push(EVENTS.into());
    let prefixes: Vec<Vec<u8>> = watched.iter().map(|r| prefix(r)).collect();
    let run = Arc::new(Run {
        opts: opts.clone(),
        objects: Objects {
            known: Mutex::new(known),
            next_index: AtomicU64::new(next_index),
        },
        lease: tokio::sync::Mutex::new(LeaseState::default()),
        writes: Writes {
            prefixes: prefixes.clone(),
            counts: prefixes.iter().map(|_| AtomicU64::new(0)).collect(),
        },
        events_made: AtomicU64::new(0),
        conflicts: AtomicU64::new(0),
        list_restarts: AtomicU64::new(0),
        list_pages: AtomicU64::new(0),
        run_tag: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64),
    });

    // The watches, one stream each, created before the timed window.
    let mut seen = Vec::with_capacity(prefixes.len());
    let mut watch_tasks = Vec::with_capacity(prefixes.len());
    for (i, p) in prefixes.iter().enumerate() {
        let state = Arc::new(WatchSeen::default());
        let task = start_watch(&channels[i % channels.len()], p, start_rev + 1, &state).await?;
        seen.push(state);
        watch_tasks.push(task);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let compactor = (k.compact_interval_s > 0).then(|| {
        let kv = kv_client(channels[0].clone());
        let stop = Arc::clone(&stop);
        let interval = Duration::from_secs(k.compact_interval_s);
        tokio::spawn(compactor(kv, interval, stop))
    });

    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = k.duration_s.map(|s| started + Duration::from_secs(s));
    let mut clients = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let channel = channels[c % channels.len()].clone();
        let run = Arc::clone(&run);
        let tickets = Arc::clone(&tickets);
        clients.push(tokio::spawn(client(
            run, channel, c as u64, tickets, deadline,
        )));
    }
    let mut recorders: Vec<Recorder> = CALLS.iter().map(|_| Recorder::default()).collect();
    for task in clients {
        match task.await {
            Ok(recs) => merge_into(&mut recorders, recs),
            Err(e) => recorders[0].error(format!("client task failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(task) = compactor {
        match task.await {
            Ok(recs) => merge_into(&mut recorders, recs),
            Err(e) => recorders[COMPACT].error(format!("compactor task failed: {e}")),
        }
    }
    let (watch_notes, watch_errors) = drain_watches(&run.writes, &seen, &watched).await;
    for task in watch_tasks {
        task.abort();
    }

    let mut overall = Recorder::default();
    let mut parts = Vec::new();
    for (name, rec) in CALLS.iter().zip(recorders) {
        let summary = rec.clone().summary(elapsed);
        if summary.ok + summary.errors > 0 {
            parts.push((name.to_string(), summary));
        }
        overall.merge(rec);
    }
    for e in &watch_errors {
        overall.error(e);
    }
    let mut notes = format!(
        "  update conflicts retried: {}; list pages: {}; lists restarted after compaction: {}; events created: {}\n",
        run.conflicts.load(Ordering::Relaxed),
        run.list_pages.load(Ordering::Relaxed),
        run.list_restarts.load(Ordering::Relaxed),
        run.events_made.load(Ordering::Relaxed),
    );
    notes.push_str(&watch_notes);
    Ok(KubeReport {
        overall: overall.summary(elapsed),
        parts,
        notes,
    })
}

fn merge_into(all: &mut [Recorder], recs: Vec<Recorder>) {
    for (a, r) in all.iter_mut().zip(recs) {
        a.merge(r);
    }
}

fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

async fn current_revision(kv: &KvClient<Channel>) -> Result<i64, BenchError> {
    let resp = kv
        .clone()
        .range(RangeRequest {
            key: b"/registry/".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| BenchError::Server(format!("reading the revision: {e}")))?
        .into_inner();
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// Creates objects `0..--objects` that are not there yet (untimed) and returns every object
/// key under the resources with its mod revision.
async fn fill(opts: &Opts, kv: &KvClient<Channel>) -> Result<Vec<(Vec<u8>, i64)>, BenchError> {
    let k = &opts.kube;
    let existing = list_keys(kv, &k.resources).await?;
    let present: std::collections::HashSet<u64> = existing
        .iter()
        .filter_map(|(key, _)| object_index(key))
        .collect();
    let missing: Vec<u64> = (0..k.objects).filter(|i| !present.contains(i)).collect();
    if missing.is_empty() {
        return Ok(existing);
    }
    let batches: Vec<Vec<u64>> = missing.chunks(FILL_TXN_OPS).map(<[u64]>::to_vec).collect();
    let batches = Arc::new(Mutex::new(batches));
    let mut tasks = Vec::new();
    for _ in 0..FILL_CLIENTS {
        let mut kv = kv.clone();
        let batches = Arc::clone(&batches);
        let (resources, namespaces, size) = (k.resources.clone(), k.namespaces, opts.val_size);
        tasks.push(tokio::spawn(async move {
            loop {
                let batch = batches.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(batch) = batch else {
                    return Ok::<(), BenchError>(());
                };
                let success = batch
                    .iter()
                    .map(|i| {
                        put_op(
                            object_key(&resources, namespaces, *i),
                            object_value(size, *i),
                            0,
                        )
                    })
                    .collect();
                let txn = TxnRequest {
                    success,
                    ..Default::default()
                };
                kv.txn(txn)
                    .await
                    .map_err(|e| BenchError::Server(format!("filling objects: {e}")))?;
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Server(format!("fill task failed: {e}")))??;
    }
    list_keys(kv, &k.resources).await
}

/// Every object key under the resources' prefixes, with its mod revision (keys only).
async fn list_keys(
    kv: &KvClient<Channel>,
    resources: &[String],
) -> Result<Vec<(Vec<u8>, i64)>, BenchError> {
    let mut out = Vec::new();
    for resource in resources {
        let p = prefix(resource);
        let resp = kv
            .clone()
            .range(RangeRequest {
                key: p.clone(),
                range_end: prefix_end(&p),
                keys_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| BenchError::Server(format!("listing {resource}: {e}")))?
            .into_inner();
        out.extend(resp.kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)));
    }
    Ok(out)
}

/// Opens a watch on every key under `prefix` from `start_revision`; returns once the server
/// confirmed it, with the task counting its events.
async fn start_watch(
    channel: &Channel,
    prefix: &[u8],
    start_revision: i64,
    seen: &Arc<WatchSeen>,
) -> Result<tokio::task::JoinHandle<()>, BenchError> {
    let (tx, rx) = mpsc::channel(1);
    let create = WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        start_revision,
        progress_notify: true,
        prev_kv: true,
        ..Default::default()
    };
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| BenchError::Connect("watch request channel closed".into()))?;
    let mut responses = WatchClient::new(channel.clone())
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .watch(RxStream(rx))
        .await
        .map_err(|e| BenchError::Connect(format!("watch stream: {e}")))?
        .into_inner();
    match responses.message().await {
        Ok(Some(r)) if r.created && !r.canceled => {}
        other => {
            return Err(BenchError::Server(format!(
                "watch on {} not created: {other:?}",
                String::from_utf8_lossy(prefix)
            )))
        }
    }
    let seen = Arc::clone(seen);
    Ok(tokio::spawn(async move {
        let _keep_open = tx;
        loop {
            let resp = match responses.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => break,
                Err(status) => {
                    *seen.error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(status_text(&status));
                    break;
                }
            };
            if resp.canceled {
                *seen.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                    "watch canceled (compact revision {}): {}",
                    resp.compact_revision, resp.cancel_reason
                ));
                break;
            }
            if resp.events.is_empty() {
                seen.progress.fetch_add(1, Ordering::Relaxed);
            }
            for event in &resp.events {
                // mvccpb.Event.EventType: PUT = 0, DELETE = 1.
                if event.r#type == 0 {
                    seen.puts.fetch_add(1, Ordering::Relaxed);
                    let existed = event.kv.as_ref().is_some_and(|kv| kv.version > 1);
                    if existed && event.prev_kv.is_none() {
                        seen.missing_prev_kv.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    seen.deletes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        seen.ended.store(true, Ordering::Relaxed);
    }))
}

/// Waits until every watch has caught up with the writes on its prefix (or stopped moving for
/// `WATCH_DRAIN_TIMEOUT`); returns the report lines and the errors of the check.
async fn drain_watches(
    writes: &Writes,
    seen: &[Arc<WatchSeen>],
    names: &[String],
) -> (String, Vec<String>) {
    let expected: Vec<u64> = writes
        .counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let total_seen = || -> u64 { seen.iter().map(|s| s.puts.load(Ordering::Relaxed)).sum() };
    let mut last = total_seen();
    let mut last_move = Instant::now();
    loop {
        let caught_up = seen
            .iter()
            .zip(&expected)
            .all(|(s, e)| s.puts.load(Ordering::Relaxed) >= *e);
        if caught_up || seen.iter().all(|s| s.ended.load(Ordering::Relaxed)) {
            break;
        }
        let now = total_seen();
        if now != last {
            last = now;
            last_move = Instant::now();
        } else if last_move.elapsed() > WATCH_DRAIN_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lines = String::from("  watch (one per prefix, prev_kv, progress_notify):\n");
    let mut errors = Vec::new();
    for ((s, e), name) in seen.iter().zip(&expected).zip(names) {
        let puts = s.puts.load(Ordering::Relaxed);
        let deletes = s.deletes.load(Ordering::Relaxed);
        let missing = s.missing_prev_kv.load(Ordering::Relaxed);
        lines.push_str(&format!(
            "    {name:12} writes {e:>8}  PUT events {puts:>8}  DELETE events {deletes}  progress notifications {}  {}\n",
            s.progress.load(Ordering::Relaxed),
            if puts == *e { "ok" } else { "MISMATCH" }
        ));
        if puts != *e {
            errors.push(format!("watch on {name}: {puts} PUT events for {e} writes"));
        }
        if deletes != 0 {
            errors.push(format!(
                "watch on {name}: {deletes} DELETE events (the load deletes nothing)"
            ));
        }
        if missing != 0 {
            errors.push(format!(
                "watch on {name}: {missing} updates without prev_kv"
            ));
        }
        if let Some(err) = s.error.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            errors.push(format!("watch on {name}: {err}"));
        }
    }
    (lines, errors)
}

/// The compaction loop of the API server, every `interval` until `stop`.
async fn compactor(
    mut kv: KvClient<Channel>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Recorder> {
    let mut recs: Vec<Recorder> = CALLS.iter().map(|_| Recorder::default()).collect();
    let (mut t, mut rev) = (0i64, 0i64);
    let mut next = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        next += interval;
        let sent = Instant::now();
        let resp = match kv.txn(compact_txn(t, rev)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                recs[COMPACT_TXN].error(status_text(&status));
                continue;
            }
        };
        recs[COMPACT_TXN].ok(sent.elapsed());
        let current = header_revision(&resp);
        if !resp.succeeded {
            // Someone else compacted: adopt their count and wait for the next turn.
            match failure_kv(&resp) {
                Some(kv) => (t, rev) = (kv.version, current),
                None => recs[COMPACT_TXN].error("compact txn failed without the key's value"),
            }
            continue;
        }
        let compact_to = rev;
        (t, rev) = (t + 1, current);
        if compact_to == 0 {
            continue;
        }
        let sent = Instant::now();
        match kv
            .compact(CompactionRequest {
                revision: compact_to,
                physical: false,
            })
            .await
        {
            Ok(_) => recs[COMPACT].ok(sent.elapsed()),
            Err(status) => recs[COMPACT].error(status_text(&status)),
        }
    }
    recs
}

/// One client: picks calls by the mix until the tickets or the time run out.
async fn client(
    run: Arc<Run>,
    channel: Channel,
    seed: u64,
    tickets: Arc<AtomicU64>,
    deadline: Option<Instant>,
) -> Vec<Recorder> {
    let mut recs: Vec<Recorder> = CALLS.iter().map(|_| Recorder::default()).collect();
    let mut kv = kv_client(channel.clone());
    let mut lease = LeaseClient::new(channel);
    let mut rng = StdRng::seed_from_u64(seed ^ run.run_tag);
    let weights = run.opts.kube.mix.clone();
    let weight_sum: u32 = weights.iter().map(|(_, w)| *w).sum();
    loop {
        if tickets.fetch_add(1, Ordering::Relaxed) >= run.opts.total {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut pick = rng.gen_range(0..weight_sum);
        let mut op = weights[0].0;
        for (o, w) in &weights {
            if pick < *w {
                op = *o;
                break;
            }
            pick -= w;
        }
        let sent = Instant::now();
        let result = match op {
            KubeOp::Create => create(&run, &mut kv).await,
            KubeOp::Update => update(&run, &mut kv, &mut rng).await,
            KubeOp::Get => get(&run, &mut kv, &mut rng).await,
            KubeOp::List => list(&run, &mut kv, &mut rng).await,
            KubeOp::Event => event(&run, &mut kv, &mut lease, &mut recs).await,
        };
        let rec = &mut recs[call_index(op)];
        match result {
            Ok(()) => rec.ok(sent.elapsed()),
            Err(e) => rec.error(e),
        }
    }
    recs
}

async fn create(run: &Run, kv: &mut KvClient<Channel>) -> Result<(), String> {
    let k = &run.opts.kube;
    let index = run.objects.next_index.fetch_add(1, Ordering::Relaxed);
    let key = object_key(&k.resources, k.namespaces, index);
    let value = object_value(run.opts.val_size, index ^ run.run_tag);
    let resp = kv
        .txn(create_txn(key.clone(), value, 0))
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    if !resp.succeeded {
        return Err(format!(
            "create of {} found the key already there",
            String::from_utf8_lossy(&key)
        ));
    }
    run.writes.add(&key);
    run.objects.lock().push((key, header_revision(&resp)));
    Ok(())
}

async fn update(run: &Run, kv: &mut KvClient<Channel>, rng: &mut StdRng) -> Result<(), String> {
    let (slot, key, mut rev) = run.objects.pick(rng).ok_or("no object to update")?;
    for attempt in 0..UPDATE_ATTEMPTS {
        let value = object_value(run.opts.val_size, rng.gen());
        let resp = kv
            .txn(update_txn(key.clone(), value, rev))
            .await
            .map_err(|s| status_text(&s))?
            .into_inner();
        if resp.succeeded {
            run.writes.add(&key);
            run.objects.saw(slot, header_revision(&resp));
            return Ok(());
        }
        let current = failure_kv(&resp)
            .ok_or_else(|| format!("update of {}: object gone", String::from_utf8_lossy(&key)))?;
        rev = current.mod_revision;
        run.objects.saw(slot, rev);
        if attempt + 1 < UPDATE_ATTEMPTS {
            run.conflicts.fetch_add(1, Ordering::Relaxed);
        }
    }
    Err(format!(
        "update: still conflicting after {UPDATE_ATTEMPTS} attempts"
    ))
}

async fn get(run: &Run, kv: &mut KvClient<Channel>, rng: &mut StdRng) -> Result<(), String> {
    let (_, key, _) = run.objects.pick(rng).ok_or("no object to get")?;
    let resp = kv
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    if resp.kvs.len() != 1 {
        return Err(format!(
            "get of {}: not found",
            String::from_utf8_lossy(&key)
        ));
    }
    Ok(())
}

/// A paged list of one resource, restarted (as the API server's clients do on 410 Gone) when
/// compaction removed its revision between pages.
async fn list(run: &Run, kv: &mut KvClient<Channel>, rng: &mut StdRng) -> Result<(), String> {
    let k = &run.opts.kube;
    let resource = &k.resources[rng.gen_range(0..k.resources.len())];
    let p = prefix(resource);
    let end = prefix_end(&p);
    let mut attempt = 0;
    'restart: loop {
        attempt += 1;
        let mut key = p.clone();
        let mut revision = 0;
        loop {
            let request = RangeRequest {
                key: key.clone(),
                range_end: end.clone(),
                limit: k.page_size as i64,
                revision,
                ..Default::default()
            };
            let resp = match kv.range(request).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.message().contains("compacted") && attempt < LIST_ATTEMPTS => {
                    run.list_restarts.fetch_add(1, Ordering::Relaxed);
                    continue 'restart;
                }
                Err(s) => return Err(status_text(&s)),
            };
            run.list_pages.fetch_add(1, Ordering::Relaxed);
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            let Some(last) = resp.kvs.last() else {
                return Ok(());
            };
            if !resp.more {
                return Ok(());
            }
            key = last.key.clone();
            key.push(0);
        }
    }
}

/// Creates one TTL'd event, granting a new lease when the shared one is used up.
async fn event(
    run: &Run,
    kv: &mut KvClient<Channel>,
    lease: &mut LeaseClient<Channel>,
    recs: &mut [Recorder],
) -> Result<(), String> {
    let k = &run.opts.kube;
    let id = {
        let mut state = run.lease.lock().await;
        let fresh = state.granted.is_some_and(|g| {
            g.elapsed() < Duration::from_secs(LEASE_REUSE_SECONDS as u64)
                && state.objects < LEASE_MAX_OBJECTS
        });
        if !fresh {
            let sent = Instant::now();
            let granted = lease
                .lease_grant(LeaseGrantRequest {
                    ttl: k.event_ttl_s + LEASE_REUSE_SECONDS,
                    id: 0,
                })
                .await;
            match granted {
                Ok(r) => {
                    recs[LEASE_GRANT].ok(sent.elapsed());
                    *state = LeaseState {
                        id: r.into_inner().id,
                        granted: Some(Instant::now()),
                        objects: 0,
                    };
                }
                Err(s) => {
                    recs[LEASE_GRANT].error(status_text(&s));
                    return Err(format!("lease grant: {}", status_text(&s)));
                }
            }
        }
        state.objects += 1;
        state.id
    };
    let n = run.events_made.fetch_add(1, Ordering::Relaxed);
    let namespace = n % k.namespaces as u64;
    let key = format!("/registry/{EVENTS}/ns-{namespace}/ev-{:x}-{n}", run.run_tag).into_bytes();
    let value = object_value(run.opts.val_size / 2, n ^ run.run_tag);
    let resp = kv
        .txn(create_txn(key.clone(), value, id))
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    if !resp.succeeded {
        return Err("event create found the key already there".into());
    }
    run.writes.add(&key);
    Ok(())
}

/// The mix as `--mix` spells it, for the report header.
pub fn mix_text(mix: &[(KubeOp, u32)]) -> String {
    mix.iter()
        .map(|(op, w)| format!("{}={w}", CALLS[call_index(*op)]))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_spread_over_resources_and_namespaces_and_parse_back() {
        let resources = vec!["pods".to_string(), "configmaps".to_string()];
        assert_eq!(
            object_key(&resources, 3, 0),
            b"/registry/pods/ns-0/obj-0000000".to_vec()
        );
        assert_eq!(
            object_key(&resources, 3, 5),
            b"/registry/configmaps/ns-2/obj-0000005".to_vec()
        );
        for i in [0, 7, 99_999] {
            assert_eq!(object_index(&object_key(&resources, 3, i)), Some(i));
        }
        assert_eq!(object_index(b"/registry/events/ns-0/ev-1-2"), None);
    }

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        let p = prefix("pods");
        let end = prefix_end(&p);
        assert!(b"/registry/pods/ns-0/x".as_slice() < end.as_slice());
        assert!(b"/registry/pods0".as_slice() >= end.as_slice());
        assert_eq!(end, b"/registry/pods0".to_vec());
    }

    #[test]
    fn txns_have_the_api_servers_shape() {
        let t = update_txn(b"k".to_vec(), b"v".to_vec(), 42);
        assert_eq!(t.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(
            t.compare[0].target_union,
            Some(TargetUnion::ModRevision(42))
        );
        assert!(matches!(
            t.failure[0].request,
            Some(request_op::Request::RequestRange(_))
        ));
        let c = create_txn(b"k".to_vec(), b"v".to_vec(), 7);
        assert_eq!(c.compare[0].target_union, Some(TargetUnion::ModRevision(0)));
        assert!(c.failure.is_empty());
        match &c.success[0].request {
            Some(request_op::Request::RequestPut(p)) => assert_eq!(p.lease, 7),
            other => panic!("not a put: {other:?}"),
        }
        let k = compact_txn(3, 900);
        assert_eq!(k.compare[0].target, CompareTarget::Version as i32);
        assert_eq!(k.compare[0].key, COMPACT_REV_KEY.to_vec());
        match &k.success[0].request {
            Some(request_op::Request::RequestPut(p)) => assert_eq!(p.value, b"900".to_vec()),
            other => panic!("not a put: {other:?}"),
        }
    }

    #[test]
    fn values_have_the_size_asked_and_the_protobuf_magic() {
        let v = object_value(1536, 9);
        assert_eq!(v.len(), 1536);
        assert!(v.starts_with(b"k8s\0"));
        assert_ne!(object_value(64, 1), object_value(64, 2));
        assert_eq!(object_value(2, 1).len(), 2);
    }
}
