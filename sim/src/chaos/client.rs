//! Real etcd clients (the `etcd-client` crate over real sockets) recording what they were told
//! into a [`History`] with wall-clock intervals, a watcher recording [`Segment`]s and a lease
//! client recording [`LeaseLife`]s, for the same checkers the simulation uses.
//!
//! Invariants: a write whose answer did not arrive (error, timeout, lost connection) is recorded
//! [`Outcome::Unknown`]; a write is recorded [`Outcome::Failed`] only when the client could not
//! even open a connection (it was never sent), whatever the server's error text claims. Every
//! written value is unique in the run (`c<client>-<n>`). Times are nanoseconds since the
//! [`Recorder`] was made.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::time::Instant;

use crate::history::{History, Op, Outcome, Record, Seen};
use crate::leasecheck::LeaseLife;
use crate::watchcheck::{Segment, WatchEvent};

/// The keys of the workload share this prefix (the watcher watches it).
pub const KEY_PREFIX: &str = "k";
/// The key recovery probes write.
pub const PROBE_KEY: &str = "kprobe";

/// The shared, thread-safe history of one run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    history: Arc<Mutex<History>>,
    errors: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// Error texts longer than this are cut (they often embed addresses and ids).
const ERROR_TEXT_MAX: usize = 120;

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            history: Arc::new(Mutex::new(History::default())),
            errors: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn record(&self, record: Record) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.push(record);
    }

    /// Counts an error a client was given (by its text, cut to [`ERROR_TEXT_MAX`]).
    pub fn note_error(&self, text: &str) {
        let text: String = text.chars().take(ERROR_TEXT_MAX).collect();
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(text).or_insert(0) += 1;
    }

    /// The errors clients were given, by text.
    pub fn errors(&self) -> BTreeMap<String, usize> {
        self.errors
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

    /// The highest revision an acknowledged write got.
    pub fn max_acked_revision(&self) -> i64 {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.records
            .iter()
            .filter(|r| r.acked_write())
            .filter_map(|r| r.effect().map(|(rev, _)| rev))
            .max()
            .unwrap_or(0)
    }
}

/// A small xorshift generator: the workload needs variety, not reproducibility (real processes
/// are not deterministic anyway); the seed is reported.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo + 1)
        }
    }
}

fn seen(kv: Option<&KeyValue>) -> Option<Seen> {
    kv.map(|kv| Seen {
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        mod_revision: kv.mod_revision(),
    })
}

/// The client library's text for a request that failed because no TCP connection could be
/// made (the request was never sent).
const NOT_SENT: &str = "message: \"tcp connect error\"";

/// Runs `op` on `client`, bounded by `timeout`; an error's text is noted in `rec`.
pub async fn execute(client: &mut Client, op: &Op, timeout: Duration, rec: &Recorder) -> Outcome {
    let error = match tokio::time::timeout(timeout, run(client, op)).await {
        Ok(Ok(outcome)) => return outcome,
        Ok(Err(text)) => text,
        Err(_) => format!("no answer within {timeout:?}"),
    };
    rec.note_error(&error);
    // A connection that could not be made carried nothing: the write was never sent.
    if op.may_write() && !error.contains(NOT_SENT) {
        Outcome::Unknown
    } else {
        Outcome::Failed
    }
}

async fn run(client: &mut Client, op: &Op) -> Result<Outcome, String> {
    let rev = |h: Option<&etcd_client::ResponseHeader>| h.map_or(0, |h| h.revision());
    match op {
        Op::Get { key } => {
            let resp = client
                .get(key.as_str(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Outcome::Got {
                revision: rev(resp.header()),
                kv: seen(resp.kvs().first()),
            })
        }
        Op::Put { key, value } | Op::LeasePut { key, value, .. } => {
            let mut options = PutOptions::new().with_prev_key();
            if let Op::LeasePut { lease, .. } = op {
                options = options.with_lease(*lease);
            }
            let resp = client
                .put(key.as_str(), value.as_str(), Some(options))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Outcome::Put {
                revision: rev(resp.header()),
                prev: seen(resp.prev_key()),
            })
        }
        Op::Delete { key } => {
            let resp = client
                .delete(key.as_str(), None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Outcome::Deleted {
                revision: rev(resp.header()),
                deleted: resp.deleted(),
            })
        }
        Op::Cas {
            key,
            expected,
            value,
        } => {
            let txn = Txn::new()
                .when([Compare::value(
                    key.as_str(),
                    CompareOp::Equal,
                    expected.as_str(),
                )])
                .and_then([TxnOp::put(key.as_str(), value.as_str(), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let resp = client.txn(txn).await.map_err(|e| e.to_string())?;
            let current = match resp.op_responses().first() {
                Some(TxnOpResponse::Get(r)) => seen(r.kvs().first()),
                _ => None,
            };
            Ok(Outcome::Cas {
                revision: rev(resp.header()),
                succeeded: resp.succeeded(),
                current,
            })
        }
        Op::Expire { .. } => Err(format!("{op:?} is the server's, not a client call")),
    }
}

/// The next operation of `client`: reads, puts, compare-and-swaps and deletes on `keys` keys;
/// `last` is the newest value the client saw per key (the CAS expectation).
pub fn next_op(
    rng: &mut Rng,
    client: u32,
    n: u64,
    keys: u64,
    last: &HashMap<String, String>,
) -> Op {
    let key = format!("{KEY_PREFIX}{}", rng.between(0, keys.saturating_sub(1)));
    let value = format!("c{client}-{n}");
    match rng.between(0, 99) {
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
        Outcome::Got { kv: None, .. } | Outcome::Deleted { .. } => {
            last.remove(&key);
        }
        _ => {}
    }
}

/// Workload parameters of one KV client.
#[derive(Clone, Debug)]
pub struct KvConfig {
    pub keys: u64,
    pub timeout: Duration,
    pub think_ms: (u64, u64),
}

/// Connects to a member: `connect(i)` returns a client of member `i` or `None`.
pub type Connector = Arc<
    dyn Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Client>> + Send>>
        + Send
        + Sync,
>;

/// One KV client until `stop`: talks to one member and moves to the next one after an answer
/// it did not get.
#[allow(clippy::too_many_arguments)]
pub async fn run_kv_client(
    client_id: u32,
    members: usize,
    connect: Connector,
    cfg: KvConfig,
    rec: Recorder,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ (u64::from(client_id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut member = client_id as usize % members.max(1);
    let mut conn: Option<Client> = None;
    let mut last: HashMap<String, String> = HashMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let client = match conn.as_mut() {
            Some(c) => c,
            None => match connect(member).await {
                Some(c) => conn.insert(c),
                None => {
                    member = (member + 1) % members;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let op = next_op(&mut rng, client_id, n, cfg.keys, &last);
        n += 1;
        let invoke_ns = rec.now_ns();
        let outcome = execute(client, &op, cfg.timeout, &rec).await;
        let complete_ns = rec.now_ns();
        if matches!(outcome, Outcome::Unknown | Outcome::Failed) {
            conn = None;
            member = (member + 1) % members;
        }
        note_seen(&mut last, &op, &outcome);
        rec.record(Record {
            client: client_id,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        });
        let think = rng.between(cfg.think_ms.0, cfg.think_ms.1);
        if think > 0 {
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
    }
}

/// How long one watch stays on a member before the watcher resumes on the next one.
pub const WATCH_ROTATE: Duration = Duration::from_secs(8);

/// What the watcher recorded.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub segments: Vec<Segment>,
}

impl WatchLog {
    /// The newest revision delivered.
    pub fn last_revision(&self) -> i64 {
        self.segments
            .iter()
            .flat_map(|s| s.responses.iter().flatten())
            .map(|e| e.revision)
            .max()
            .unwrap_or(0)
    }
}

/// Watches every workload key from revision 1 until `stop`, resuming after the last delivered
/// revision on the next member whenever a stream breaks, stalls or has run [`WATCH_ROTATE`].
pub async fn run_watcher(
    members: usize,
    connect: Connector,
    log: Arc<Mutex<WatchLog>>,
    stop: Arc<AtomicBool>,
) {
    let mut member = 0usize;
    let mut next_rev = 1i64;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(member).await else {
            member = (member + 1) % members;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(next_rev);
        let started = Instant::now();
        let watch = tokio::time::timeout(
            Duration::from_secs(2),
            client.watch(KEY_PREFIX, Some(options)),
        )
        .await;
        let Ok(Ok(mut stream)) = watch else {
            member = (member + 1) % members;
            continue;
        };
        let mut segment = Segment {
            start_revision: next_rev,
            ..Segment::default()
        };
        while !stop.load(Ordering::Relaxed) && started.elapsed() < WATCH_ROTATE {
            let msg = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            let resp = match msg {
                Err(_) => continue,
                Ok(Ok(Some(resp))) => resp,
                Ok(Ok(None)) | Ok(Err(_)) => break,
            };
            if resp.canceled() {
                break;
            }
            let events: Vec<WatchEvent> = resp
                .events()
                .iter()
                .filter_map(|e| {
                    let kv = e.kv()?;
                    Some(WatchEvent {
                        revision: kv.mod_revision(),
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: match e.event_type() {
                            EventType::Put => {
                                Some(String::from_utf8_lossy(kv.value()).into_owned())
                            }
                            EventType::Delete => None,
                        },
                        prev: seen(e.prev_kv()),
                    })
                })
                .collect();
            if let Some(last) = events.last() {
                next_rev = last.revision + 1;
                segment.responses.push(events);
            }
        }
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .segments
            .push(segment);
        member = (member + 1) % members;
    }
}

/// The TTL of the lease client's leases, and how often it sends a keep-alive.
pub const LEASE_TTL_S: i64 = 10;
pub const LEASE_KEEP_ALIVE_EVERY: Duration = Duration::from_secs(2);

/// Keeps one lease alive at a time until `stop`, on one member, moving to the next member when
/// a call gets no answer; records every answered keep-alive into `log` for
/// [`crate::leasecheck`]. A lease reported gone is replaced by a fresh grant.
///
/// `lease_keep_alive` of the client library sends a first keep-alive and waits for its answer
/// before it hands over the stream: a positive answer there is a renewal like any other, and
/// its "lease not found" error is the server saying the lease is gone (TTL 0), not a failed
/// connection.
pub async fn run_lease_client(
    members: usize,
    connect: Connector,
    rec: Recorder,
    log: Arc<Mutex<Vec<LeaseLife>>>,
    stop: Arc<AtomicBool>,
) {
    let mut member = 0usize;
    let mut lease: Option<usize> = None;
    let call = Duration::from_secs(1);
    // After a failed call the next member is tried after this pause: a member that answers at
    // once with an error must not be asked in a tight loop.
    let retry = Duration::from_millis(100);
    let renewed = |index: usize, invoke_ns: u64, complete_ns: u64| {
        log.lock().unwrap_or_else(|p| p.into_inner())[index]
            .renewed
            .push((invoke_ns, complete_ns));
    };
    let gone = |index: usize, complete_ns: u64| {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        l[index].gone_ns.get_or_insert(complete_ns);
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(member).await else {
            member = (member + 1) % members;
            tokio::time::sleep(retry).await;
            continue;
        };
        let index = match lease {
            Some(i) => i,
            None => {
                let granted_ns = rec.now_ns();
                let grant = tokio::time::timeout(call, client.lease_grant(LEASE_TTL_S, None));
                let Ok(Ok(resp)) = grant.await else {
                    member = (member + 1) % members;
                    tokio::time::sleep(retry).await;
                    continue;
                };
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                l.push(LeaseLife {
                    id: resp.id(),
                    ttl_s: LEASE_TTL_S,
                    granted_ns,
                    ..LeaseLife::default()
                });
                lease = Some(l.len() - 1);
                l.len() - 1
            }
        };
        let id = log.lock().unwrap_or_else(|p| p.into_inner())[index].id;
        let invoke_ns = rec.now_ns();
        let open = tokio::time::timeout(call, client.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match open_outcome(open) {
            Opened::Renewed(opened) => {
                renewed(index, invoke_ns, rec.now_ns());
                opened
            }
            Opened::Gone => {
                gone(index, rec.now_ns());
                lease = None;
                continue;
            }
            Opened::Failed => {
                member = (member + 1) % members;
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(LEASE_KEEP_ALIVE_EVERY).await;
            let invoke_ns = rec.now_ns();
            if !matches!(
                tokio::time::timeout(call, keeper.keep_alive()).await,
                Ok(Ok(()))
            ) {
                break;
            }
            let Ok(Ok(Some(answer))) = tokio::time::timeout(call, stream.message()).await else {
                break;
            };
            let complete_ns = rec.now_ns();
            if answer.ttl() > 0 {
                renewed(index, invoke_ns, complete_ns);
            } else {
                gone(index, complete_ns);
                lease = None;
                break;
            }
        }
        if lease.is_some() {
            // The stream broke: the next member is asked.
            member = (member + 1) % members;
            tokio::time::sleep(retry).await;
        }
    }
}

/// The TTL of the lease holder's leases: short enough that most expire during the run, long
/// enough for etcd's minimum TTL (1.5 election timeouts) on the clusters of this suite.
pub const HOLDER_TTL_S: i64 = 5;
/// Keys only the lease holder writes (`k<keys>`...), so most of its leases still hold their
/// key when they expire.
pub const HOLDER_KEYS: u64 = 6;
/// The lease holder's client number in the history.
pub const HOLDER_CLIENT: u32 = 2_000;

/// A lease holder, the way a lock or an election candidate uses leases (the real-process
/// twin of `workload::run_lease_holder`): grants a [`HOLDER_TTL_S`] lease, attaches a key
/// with a put recorded in the history ([`Op::LeasePut`]), reads its key and keeps the lease
/// alive 0–3 times a third of the TTL apart, then abandons it so that it expires with its key
/// attached, under whatever fault holds then; until `stop`. The key is one of its own
/// [`HOLDER_KEYS`] in turn (reused after six leases), or, `shared_pct` percent of the time, one
/// of the KV clients' `keys`. Every granted lease goes to `log` with its key, for
/// [`crate::leasecheck::expiry_records`].
#[allow(clippy::too_many_arguments)]
pub async fn run_lease_holder(
    members: usize,
    connect: Connector,
    keys: u64,
    shared_pct: u64,
    rec: Recorder,
    log: Arc<Mutex<Vec<LeaseLife>>>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed ^ 0x5EED_1EA5_E0F0_1DE5);
    let call = Duration::from_secs(1);
    let every = Duration::from_millis(HOLDER_TTL_S as u64 * 1000 / 3);
    let mut member = 0usize;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut client) = connect(member).await else {
            member = (member + 1) % members;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let key = if rng.between(1, 100) <= shared_pct {
            rng.between(0, keys.saturating_sub(1))
        } else {
            keys + n % HOLDER_KEYS
        };
        let key = format!("{KEY_PREFIX}{key}");
        let granted_ns = rec.now_ns();
        let grant = tokio::time::timeout(call, client.lease_grant(HOLDER_TTL_S, None)).await;
        let Ok(Ok(granted)) = grant else {
            member = (member + 1) % members;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let id = granted.id();
        let index = {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.push(LeaseLife {
                id,
                ttl_s: HOLDER_TTL_S,
                granted_ns,
                key: Some(key.clone()),
                ..LeaseLife::default()
            });
            l.len() - 1
        };
        let put = Op::LeasePut {
            key: key.clone(),
            value: format!("l{HOLDER_CLIENT}-{n}"),
            lease: id,
        };
        n += 1;
        execute_recorded(&mut client, HOLDER_CLIENT, put, call, &rec).await;
        for _ in 0..rng.between(0, 3) {
            tokio::time::sleep(every).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let get = Op::Get { key: key.clone() };
            execute_recorded(&mut client, HOLDER_CLIENT, get, call, &rec).await;
            let invoke_ns = rec.now_ns();
            let open = tokio::time::timeout(call, client.lease_keep_alive(id)).await;
            let complete_ns = rec.now_ns();
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            match open_outcome(open) {
                Opened::Renewed(_) => l[index].renewed.push((invoke_ns, complete_ns)),
                Opened::Gone => {
                    l[index].gone_ns.get_or_insert(complete_ns);
                    break;
                }
                // No answer in time: the holder gives up on the lease (as a lock holder would).
                Opened::Failed => break,
            }
        }
        member = (member + 1) % members;
        tokio::time::sleep(Duration::from_millis(rng.between(0, 1000))).await;
    }
}

/// Runs `op` as `client` within `timeout` and records it.
async fn execute_recorded(
    client: &mut Client,
    client_id: u32,
    op: Op,
    timeout: Duration,
    rec: &Recorder,
) {
    let invoke_ns = rec.now_ns();
    let outcome = execute(client, &op, timeout, rec).await;
    let complete_ns = rec.now_ns();
    rec.record(Record {
        client: client_id,
        op,
        invoke_ns,
        complete_ns,
        outcome,
    });
}

/// The client library's error text when a keep-alive stream opens on a lease that is gone.
const LEASE_NOT_FOUND: &str = "lease not found";

/// What opening a keep-alive stream told the lease client.
enum Opened<T> {
    /// The first keep-alive was answered with a positive TTL: a renewal.
    Renewed(T),
    /// The server answered that the lease is gone (TTL 0).
    Gone,
    /// No answer (error, timeout, lost connection): nothing is known.
    Failed,
}

fn open_outcome<T>(
    open: Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>,
) -> Opened<T> {
    match open {
        Ok(Ok(opened)) => Opened::Renewed(opened),
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) if e == LEASE_NOT_FOUND => Opened::Gone,
        _ => Opened::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn elapsed() -> tokio::time::error::Elapsed {
        tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .expect_err("a pending future cannot finish")
    }

    /// A keep-alive stream that opens on a revoked lease is the lease reported gone; it was once
    /// taken for a failed connection, so a lease revoked between two streams was never seen gone.
    #[tokio::test]
    async fn opening_on_a_gone_lease_is_a_report_not_a_failure() {
        let gone: Result<Result<(), _>, _> = Ok(Err(etcd_client::Error::LeaseKeepAliveError(
            LEASE_NOT_FOUND.to_string(),
        )));
        assert!(matches!(open_outcome(gone), Opened::Gone));
        assert!(matches!(open_outcome(Ok(Ok(7))), Opened::Renewed(7)));
        let other: Result<Result<(), _>, _> = Ok(Err(etcd_client::Error::LeaseKeepAliveError(
            "channel closed".to_string(),
        )));
        assert!(matches!(open_outcome(other), Opened::Failed));
        let timed_out: Result<Result<(), etcd_client::Error>, _> = Err(elapsed().await);
        assert!(matches!(open_outcome(timed_out), Opened::Failed));
    }
}
