//! Concurrent KV clients over madsim's network, using the project's generated tonic clients,
//! recording every operation into a shared [`History`].
//!
//! Mix per operation: get 30 %, put 35 %, compare-and-set 20 %, delete 15 %, on a small key set;
//! every written value is unique (`val-c<client>-<n>`). Each call has its own client-side
//! deadline drawn per operation, so some calls give up while the server still works on them.
//!
//! Invariant: a write whose answer did not arrive (deadline, transport error, any error status)
//! is recorded `Unknown`; only reads are ever recorded `Failed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::Rng;
use oxetcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::request_op::Request as ReqOp;
use oxetcd::proto::etcdserverpb::response_op::Response as RespOp;
use oxetcd::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use oxetcd::proto::mvccpb::KeyValue;
use tonic::transport::{Channel, Endpoint};

use crate::history::{History, Op, Outcome, Record, Seen};
use crate::serial::SerialRead;

/// Knobs of a client workload.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: usize,
    pub ops_per_client: usize,
    pub keys: usize,
    /// Client-side deadline per call, drawn uniformly from this range (milliseconds).
    pub timeout_ms: (u64, u64),
    /// Pause between a client's calls (milliseconds, uniform).
    pub think_ms: (u64, u64),
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 4,
            ops_per_client: 60,
            keys: 4,
            timeout_ms: (100, 1500),
            think_ms: (0, 40),
        }
    }
}

/// The shared history plus the time origin of the run.
#[derive(Clone)]
pub struct Recorder {
    origin: madsim::time::Instant,
    history: Arc<Mutex<History>>,
    serial: Arc<Mutex<Vec<SerialRead>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            origin: madsim::time::Instant::now(),
            history: Arc::new(Mutex::new(History::default())),
            serial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn record(&self, record: Record) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    pub fn record_serial(&self, read: SerialRead) {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(read);
    }

    pub fn serial_reads(&self) -> Vec<SerialRead> {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn snapshot(&self) -> History {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A KV client for `endpoint` that connects per call (survives server restarts).
pub fn kv_client(endpoint: &str) -> KvClient<Channel> {
    let channel = match Endpoint::from_shared(endpoint.to_string()) {
        Ok(ep) => ep.connect_lazy(),
        Err(e) => panic!("bad endpoint {endpoint}: {e}"),
    };
    KvClient::new(channel)
}

fn seen(kv: Option<&KeyValue>) -> Option<Seen> {
    kv.map(|kv| Seen {
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        mod_revision: kv.mod_revision,
    })
}

fn rev(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// Runs one operation with `deadline` and returns its outcome.
pub async fn execute(kv: &mut KvClient<Channel>, op: &Op, deadline: Duration) -> Outcome {
    let call = run(kv, op);
    match madsim::time::timeout(deadline, call).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) | Err(_) if op.may_write() => Outcome::Unknown,
        Ok(None) | Err(_) => Outcome::Failed,
    }
}

async fn run(kv: &mut KvClient<Channel>, op: &Op) -> Option<Outcome> {
    match op {
        Op::Get { key } => {
            let req = RangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            };
            let resp = kv.range(req).await.ok()?.into_inner();
            Some(Outcome::Got {
                revision: rev(&resp.header),
                kv: seen(resp.kvs.first()),
            })
        }
        Op::Put { key, value } | Op::LeasePut { key, value, .. } => {
            let lease = match op {
                Op::LeasePut { lease, .. } => *lease,
                _ => 0,
            };
            let req = PutRequest {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
                prev_kv: true,
                lease,
                ..Default::default()
            };
            let resp = kv.put(req).await.ok()?.into_inner();
            Some(Outcome::Put {
                revision: rev(&resp.header),
                prev: seen(resp.prev_kv.as_ref()),
            })
        }
        Op::Delete { key } => {
            let req = DeleteRangeRequest {
                key: key.clone().into_bytes(),
                ..Default::default()
            };
            let resp = kv.delete_range(req).await.ok()?.into_inner();
            Some(Outcome::Deleted {
                revision: rev(&resp.header),
                deleted: resp.deleted,
            })
        }
        Op::Cas {
            key,
            expected,
            value,
        } => {
            let resp = kv
                .txn(cas_request(key, expected, value))
                .await
                .ok()?
                .into_inner();
            let current = match resp.responses.first().and_then(|r| r.response.as_ref()) {
                Some(RespOp::ResponseRange(r)) => seen(r.kvs.first()),
                _ => None,
            };
            Some(Outcome::Cas {
                revision: rev(&resp.header),
                succeeded: resp.succeeded,
                current,
            })
        }
        // The server's own write: never sent (an unknown outcome, as recorded).
        Op::Expire { .. } => None,
    }
}

fn cas_request(key: &str, expected: &str, value: &str) -> TxnRequest {
    let key = key.as_bytes().to_vec();
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::Value(expected.as_bytes().to_vec())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(ReqOp::RequestPut(PutRequest {
                key: key.clone(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(ReqOp::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        }],
    }
}

fn between(rng: &mut impl Rng, (lo, hi): (u64, u64)) -> u64 {
    if hi <= lo {
        lo
    } else {
        rng.gen_range(lo..=hi)
    }
}

/// Picks the next operation of `client`; `last` is the newest value it saw per key.
fn next_op(
    rng: &mut impl Rng,
    client: u32,
    n: usize,
    keys: usize,
    last: &HashMap<String, String>,
) -> Op {
    let key = format!("k{}", rng.gen_range(0..keys.max(1)));
    let value = format!("val-c{client}-{n}");
    match rng.gen_range(0..100) {
        0..=29 => Op::Get { key },
        30..=64 => Op::Put { key, value },
        65..=84 => {
            let expected = last.get(&key).cloned().unwrap_or_else(|| "absent".into());
            Op::Cas {
                key,
                expected,
                value,
            }
        }
        _ => Op::Delete { key },
    }
}

/// One client's loop: `cfg.ops_per_client` operations against `endpoint`.
pub async fn run_client(client: u32, endpoint: String, cfg: WorkloadConfig, rec: Recorder) {
    let mut kv = kv_client(&endpoint);
    let mut last: HashMap<String, String> = HashMap::new();
    for n in 0..cfg.ops_per_client {
        let (op, deadline, think) = {
            let mut rng = madsim::rand::thread_rng();
            let op = next_op(&mut rng, client, n, cfg.keys, &last);
            (
                op,
                between(&mut rng, cfg.timeout_ms),
                between(&mut rng, cfg.think_ms),
            )
        };
        let invoke_ns = rec.now_ns();
        let outcome = execute(&mut kv, &op, Duration::from_millis(deadline)).await;
        let complete_ns = rec.now_ns();
        note_seen(&mut last, &op, &outcome);
        rec.record(Record {
            client,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        });
        madsim::time::sleep(Duration::from_millis(think)).await;
    }
}

fn note_seen(last: &mut HashMap<String, String>, op: &Op, outcome: &Outcome) {
    let key = op.key().to_string();
    match outcome {
        Outcome::Got { kv: Some(s), .. }
        | Outcome::Cas {
            current: Some(s), ..
        } => {
            last.insert(key, s.value.clone());
        }
        Outcome::Put { .. }
        | Outcome::Cas {
            succeeded: true, ..
        } => {
            if let Some(v) = op.written_value() {
                last.insert(key, v.to_string());
            }
        }
        _ => {}
    }
}

/// A serializable single-key read on `kv` (answered from the member's own applied state).
pub async fn serial_get(
    kv: &mut KvClient<Channel>,
    member: usize,
    key: &str,
    deadline: Duration,
) -> Option<SerialRead> {
    let req = RangeRequest {
        key: key.as_bytes().to_vec(),
        serializable: true,
        ..Default::default()
    };
    let resp = madsim::time::timeout(deadline, kv.range(req))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(SerialRead {
        member,
        key: key.to_string(),
        revision: rev(&resp.header),
        seen: seen(resp.kvs.first()),
    })
}

/// A client of a multi-member cluster: talks to one member and moves to another (drawn from
/// the seed) after an answer it did not get; runs until `stop_at` or `cfg.ops_per_client`.
/// One operation in ten is a serializable read, recorded apart from the history.
pub async fn run_cluster_client(
    client: u32,
    endpoints: Vec<String>,
    cfg: WorkloadConfig,
    rec: Recorder,
    stop_at: madsim::time::Instant,
) {
    let pick = |rng: &mut madsim::rand::GlobalRng| rng.gen_range(0..endpoints.len());
    let mut member = pick(&mut madsim::rand::thread_rng());
    let mut kv = kv_client(&endpoints[member]);
    let mut last: HashMap<String, String> = HashMap::new();
    for n in 0..cfg.ops_per_client {
        if madsim::time::Instant::now() >= stop_at {
            break;
        }
        let (op, deadline, think, serial) = {
            let mut rng = madsim::rand::thread_rng();
            let op = next_op(&mut rng, client, n, cfg.keys, &last);
            (
                op,
                between(&mut rng, cfg.timeout_ms),
                between(&mut rng, cfg.think_ms),
                rng.gen_range(0..10) == 0,
            )
        };
        let deadline = Duration::from_millis(deadline);
        let answered = if serial {
            let read = serial_get(&mut kv, member, op.key(), deadline).await;
            let ok = read.is_some();
            if let Some(read) = read {
                rec.record_serial(read);
            }
            ok
        } else {
            let invoke_ns = rec.now_ns();
            let outcome = execute(&mut kv, &op, deadline).await;
            let complete_ns = rec.now_ns();
            note_seen(&mut last, &op, &outcome);
            let ok = !matches!(outcome, Outcome::Unknown | Outcome::Failed);
            rec.record(Record {
                client,
                op,
                invoke_ns,
                complete_ns,
                outcome,
            });
            ok
        };
        if !answered {
            member = pick(&mut madsim::rand::thread_rng());
            kv = kv_client(&endpoints[member]);
        }
        madsim::time::sleep(Duration::from_millis(think)).await;
    }
}

/// A request stream that sends one request and then stays open (closing the request side
/// would end the watch).
struct OneRequest(Option<oxetcd::proto::etcdserverpb::WatchRequest>);

impl futures_core::Stream for OneRequest {
    type Item = oxetcd::proto::etcdserverpb::WatchRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.0.take() {
            Some(r) => std::task::Poll::Ready(Some(r)),
            None => std::task::Poll::Pending,
        }
    }
}

/// The watch log of one watcher, shared with the scenario.
pub type WatchLog = Arc<Mutex<Vec<crate::watchcheck::Segment>>>;

/// One watcher on the key prefix `k`, with `prev_kv`, from `first_start` (0 = current),
/// resuming after every broken stream from the revision after the last one delivered, on a
/// member drawn from the seed; until `stop_at`.
pub async fn run_watcher(
    endpoints: Vec<String>,
    first_start: i64,
    log: WatchLog,
    stop_at: madsim::time::Instant,
) {
    use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
    use oxetcd::proto::etcdserverpb::watch_request::RequestUnion;
    use oxetcd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
    let mut next = first_start;
    let mut after_compaction = false;
    while madsim::time::Instant::now() < stop_at {
        let member = madsim::rand::thread_rng().gen_range(0..endpoints.len());
        let channel = match Endpoint::from_shared(endpoints[member].clone()) {
            Ok(ep) => ep.connect_lazy(),
            Err(_) => return,
        };
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                start_revision: next,
                prev_kv: true,
                ..Default::default()
            })),
        };
        let seg = crate::watchcheck::Segment {
            start_revision: next,
            responses: Vec::new(),
            after_compaction,
        };
        let index = {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.push(seg);
            l.len() - 1
        };
        after_compaction = false;
        let mut client = WatchClient::new(channel);
        let left = stop_at.saturating_duration_since(madsim::time::Instant::now());
        let call = client.watch(OneRequest(Some(create)));
        let Ok(Ok(resp)) = madsim::time::timeout(left.min(Duration::from_secs(2)), call).await
        else {
            madsim::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = resp.into_inner();
        loop {
            let left = stop_at.saturating_duration_since(madsim::time::Instant::now());
            // A silent stream for long is treated as broken (its member may be cut off).
            let wait = left.min(Duration::from_secs(5));
            let Ok(Ok(Some(msg))) = madsim::time::timeout(wait, stream.message()).await else {
                break;
            };
            if msg.compact_revision > 0 {
                next = msg.compact_revision;
                after_compaction = true;
                break;
            }
            if msg.canceled {
                break;
            }
            if msg.created && next == 0 {
                // From "now": the watch covers the revisions after the creation header's.
                next = rev(&msg.header) + 1;
                log.lock().unwrap_or_else(|p| p.into_inner())[index].start_revision = next;
            }
            let events: Vec<crate::watchcheck::WatchEvent> = msg
                .events
                .iter()
                .filter_map(|e| {
                    let kv = e.kv.as_ref()?;
                    let put = e.r#type == oxetcd::proto::mvccpb::event::EventType::Put as i32;
                    Some(crate::watchcheck::WatchEvent {
                        revision: kv.mod_revision,
                        key: String::from_utf8_lossy(&kv.key).into_owned(),
                        value: put.then(|| String::from_utf8_lossy(&kv.value).into_owned()),
                        prev: seen(e.prev_kv.as_ref()),
                    })
                })
                .collect();
            if let Some(last) = events.last() {
                next = last.revision + 1;
            }
            if !events.is_empty() {
                log.lock().unwrap_or_else(|p| p.into_inner())[index]
                    .responses
                    .push(events);
            }
        }
    }
}

/// A keep-alive request stream fed from a channel.
struct ChanStream(tokio::sync::mpsc::Receiver<oxetcd::proto::etcdserverpb::LeaseKeepAliveRequest>);

impl futures_core::Stream for ChanStream {
    type Item = oxetcd::proto::etcdserverpb::LeaseKeepAliveRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The leases of one lease client, shared with the scenario.
pub type LeaseLog = Arc<Mutex<Vec<crate::leasecheck::LeaseLife>>>;

/// One lease client: grants a `ttl_s` lease, keeps it alive every `ttl_s / 3` seconds over a
/// keep-alive stream (to a member drawn from the seed, another one after a broken stream), and
/// grants a new lease once an answer says the lease is gone; until `stop_at`.
pub async fn run_lease_client(
    endpoints: Vec<String>,
    ttl_s: i64,
    rec: Recorder,
    log: LeaseLog,
    stop_at: madsim::time::Instant,
) {
    use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
    use oxetcd::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest};
    let every = Duration::from_millis(u64::try_from(ttl_s).unwrap_or(3) * 1000 / 3);
    let mut lease: Option<usize> = None;
    while madsim::time::Instant::now() < stop_at {
        let member = madsim::rand::thread_rng().gen_range(0..endpoints.len());
        let Ok(ep) = Endpoint::from_shared(endpoints[member].clone()) else {
            return;
        };
        let mut client = LeaseClient::new(ep.connect_lazy());
        let index = match lease {
            Some(i) => i,
            None => {
                // The client picks the ID: the server would draw it from the OS RNG, outside
                // the seed (the run would not replay).
                let id = madsim::rand::thread_rng().gen_range(1..i64::MAX);
                let granted_ns = rec.now_ns();
                let grant = client.lease_grant(LeaseGrantRequest { ttl: ttl_s, id });
                let Ok(Ok(resp)) = madsim::time::timeout(Duration::from_secs(2), grant).await
                else {
                    madsim::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let i = {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    l.push(crate::leasecheck::LeaseLife {
                        id: resp.into_inner().id,
                        ttl_s,
                        granted_ns,
                        ..Default::default()
                    });
                    l.len() - 1
                };
                lease = Some(i);
                i
            }
        };
        let id = log.lock().unwrap_or_else(|p| p.into_inner())[index].id;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let open = client.lease_keep_alive(ChanStream(rx));
        let Ok(Ok(resp)) = madsim::time::timeout(Duration::from_secs(2), open).await else {
            madsim::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut stream = resp.into_inner();
        while madsim::time::Instant::now() < stop_at {
            let invoke_ns = rec.now_ns();
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                break;
            }
            let answer = madsim::time::timeout(Duration::from_secs(1), stream.message()).await;
            let Ok(Ok(Some(msg))) = answer else { break };
            let complete_ns = rec.now_ns();
            let alive = msg.ttl > 0;
            {
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                if alive {
                    l[index].renewed.push((invoke_ns, complete_ns));
                } else {
                    l[index].gone_ns = Some(complete_ns);
                }
            }
            if !alive {
                lease = None;
                break;
            }
            madsim::time::sleep(every).await;
        }
    }
}

/// Keys only the lease holder writes, after the workload's `keys` (`k<keys>`...), so most of
/// its leases still hold their key when they expire.
pub const HOLDER_KEYS: usize = 3;

/// A lease holder, the way a lock or an election candidate uses leases: grants a `ttl_s` lease
/// on a member drawn from the seed, attaches a key to it with a put recorded in the history
/// ([`Op::LeasePut`], value `val-l<client>-<n>`), keeps it alive for 0–3 rounds of `ttl_s / 3`
/// (reading its key before each, as a lock holder checks it still holds the lock), then
/// abandons it so that it expires with its key attached, under whatever fault the nemesis
/// holds then; and starts over with a new lease until `stop_at`. The key is one of its own
/// [`HOLDER_KEYS`] in turn (reused after three leases), and one time in four one of the
/// workload's `keys`, which the KV clients may overwrite (detaching it) or delete first.
/// Every granted lease goes to `log` with its key, for [`crate::leasecheck::expiry_records`].
pub async fn run_lease_holder(
    client: u32,
    endpoints: Vec<String>,
    keys: usize,
    ttl_s: i64,
    rec: Recorder,
    log: LeaseLog,
    stop_at: madsim::time::Instant,
) {
    let every = Duration::from_millis(u64::try_from(ttl_s).unwrap_or(3) * 1000 / 3);
    let mut n = 0usize;
    while madsim::time::Instant::now() < stop_at {
        let (member, key, rounds, pause_ms) = {
            let mut rng = madsim::rand::thread_rng();
            let key = if rng.gen_range(0..4) == 0 {
                rng.gen_range(0..keys.max(1))
            } else {
                keys + n % HOLDER_KEYS
            };
            (
                rng.gen_range(0..endpoints.len()),
                format!("k{key}"),
                rng.gen_range(0..=3),
                rng.gen_range(0..=1000),
            )
        };
        let endpoint = endpoints[member].clone();
        let granted_ns = rec.now_ns();
        let Some(id) = grant_lease(endpoint.clone(), ttl_s).await else {
            madsim::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let index = {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.push(crate::leasecheck::LeaseLife {
                id,
                ttl_s,
                granted_ns,
                key: Some(key.clone()),
                ..Default::default()
            });
            l.len() - 1
        };
        let mut kv = kv_client(&endpoint);
        let put = Op::LeasePut {
            key: key.clone(),
            value: format!("val-l{client}-{n}"),
            lease: id,
        };
        execute_recorded(&mut kv, client, put, &rec).await;
        n += 1;
        for _ in 0..rounds {
            madsim::time::sleep(every).await;
            execute_recorded(&mut kv, client, Op::Get { key: key.clone() }, &rec).await;
            let invoke_ns = rec.now_ns();
            // No answer in time: the holder gives up on the lease (as a lock holder would).
            let Ok(ttl) = keep_alive_once(endpoint.clone(), id, Duration::from_secs(1)).await
            else {
                break;
            };
            let complete_ns = rec.now_ns();
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            if ttl > 0 {
                l[index].renewed.push((invoke_ns, complete_ns));
            } else {
                l[index].gone_ns.get_or_insert(complete_ns);
                break;
            }
        }
        madsim::time::sleep(Duration::from_millis(pause_ms)).await;
    }
}

/// Runs `op` as `client` with a two-second deadline and records it.
async fn execute_recorded(kv: &mut KvClient<Channel>, client: u32, op: Op, rec: &Recorder) {
    let invoke_ns = rec.now_ns();
    let outcome = execute(kv, &op, Duration::from_secs(2)).await;
    let complete_ns = rec.now_ns();
    rec.record(Record {
        client,
        op,
        invoke_ns,
        complete_ns,
        outcome,
    });
}

/// Grants a `ttl_s` lease with a client-chosen ID through `endpoint`; the ID, or `None`
/// when no answer came within two seconds.
pub async fn grant_lease(endpoint: String, ttl_s: i64) -> Option<i64> {
    use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
    use oxetcd::proto::etcdserverpb::LeaseGrantRequest;
    let mut client = LeaseClient::new(Endpoint::from_shared(endpoint).ok()?.connect_lazy());
    let id = madsim::rand::thread_rng().gen_range(1..i64::MAX);
    let grant = client.lease_grant(LeaseGrantRequest { ttl: ttl_s, id });
    let resp = madsim::time::timeout(Duration::from_secs(2), grant)
        .await
        .ok()?
        .ok()?;
    Some(resp.into_inner().id)
}

/// One keep-alive of lease `id` through `endpoint` on a fresh stream: the TTL answered, or
/// why there was none within `limit`.
pub async fn keep_alive_once(endpoint: String, id: i64, limit: Duration) -> Result<i64, String> {
    use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
    use oxetcd::proto::etcdserverpb::LeaseKeepAliveRequest;
    let ep = Endpoint::from_shared(endpoint).map_err(|e| e.to_string())?;
    let mut client = LeaseClient::new(ep.connect_lazy());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|e| e.to_string())?;
    let call = async move {
        let mut stream = client
            .lease_keep_alive(ChanStream(rx))
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner();
        match stream.message().await {
            Ok(Some(msg)) => Ok(msg.ttl),
            Ok(None) => Err("the stream ended".to_string()),
            Err(e) => Err(e.message().to_string()),
        }
    };
    let answer = madsim::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")));
    drop(tx);
    answer
}
