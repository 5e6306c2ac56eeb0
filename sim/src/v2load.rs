//! v2 clients beside the members: one per running member incarnation, in the member's own
//! simulated node (as flannel runs on the host of its etcd), calling the member's v2 API in
//! process (`api::v2::write` and `api::v2::get`, what the HTTP handlers call): sets that
//! return the previous node, compare-and-swaps on the last value seen, deletes and quorum
//! GETs on [`KEYS`] keys under `/v2sim`. A client dies with its member (a crash or kill leaves
//! its call's outcome unknown) and starts again with it; writes a follower takes are forwarded
//! to the leader as a remote client's are.
//!
//! The v2 store has an index of its own that every applied v2 write moves by one (v3 writes
//! do not), so a v2 history orders itself as a KV history does by revision: it is recorded as
//! a [`History`] with the v2 index in place of the revision and checked by
//! [`crate::linear::check`] from an empty store at index 0.
//!
//! Invariants: every value written is unique; a call is recorded before it is made, as
//! unknown, so a call cut off by its member's death stays in the history as unknown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::Rng;
use oxetcd::api::v2 as api_v2;
use oxetcd::api::{Api, ReqCtx};
use oxetcd::v2store::{NodeView, V2Outcome, V2Request};

use crate::history::{History, Op, Outcome, Record, Seen};

/// Keys the v2 clients share (`/v2sim/k0` ..).
pub const KEYS: usize = 3;
/// Client ids of the v2 clients start here (one id per member incarnation).
pub const FIRST_CLIENT: u32 = 3000;
/// How long a client waits for an answer before it takes the call as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a call that got no answer or an error, as a client backs off.
const BACK_OFF_MS: (u64, u64) = (100, 300);
/// v2's "Key not found" error code.
const KEY_NOT_FOUND: u16 = 100;

/// The shared log of every v2 client of a run.
pub struct V2Load {
    origin: madsim::time::Instant,
    records: Mutex<Vec<Record>>,
    /// Indexes into `records` of calls still waiting for their answer.
    pending: Mutex<Vec<usize>>,
    stopped: AtomicBool,
    clients: AtomicU32,
}

impl V2Load {
    pub fn new() -> Arc<V2Load> {
        Arc::new(V2Load {
            origin: madsim::time::Instant::now(),
            records: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            clients: AtomicU32::new(0),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Makes every client stop after its current call.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The history so far; calls without an answer are unknown, given up now.
    pub fn history(&self) -> History {
        let now = self.now_ns();
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for &at in self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            records[at].complete_ns = now;
        }
        History { records }
    }

    /// Records the call `op` of `client` as invoked now, of unknown outcome.
    fn begin(&self, client: u32, op: Op) -> usize {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let at = records.len();
        records.push(Record {
            client,
            op,
            invoke_ns: self.now_ns(),
            complete_ns: 0,
            outcome: Outcome::Unknown,
        });
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(at);
        at
    }

    /// Records the answer of the call recorded at `at`.
    fn finish(&self, at: usize, outcome: Outcome) {
        let now = self.now_ns();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| *p != at);
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records[at].complete_ns = now;
        records[at].outcome = outcome;
    }
}

fn index(i: u64) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

fn seen(node: &NodeView) -> Option<Seen> {
    node.value.as_ref().map(|value| Seen {
        value: value.clone(),
        mod_revision: index(node.modified_index),
    })
}

/// One v2 client on the member whose API is `api`, until the run stops it or the member dies.
pub async fn run_client(api: Arc<Api>, load: Arc<V2Load>) {
    let client = FIRST_CLIENT + load.clients.fetch_add(1, Ordering::Relaxed);
    let ctx = ReqCtx::internal();
    let mut written = 0u64;
    let mut last_seen: HashMap<String, String> = HashMap::new();
    while !load.stopped.load(Ordering::Relaxed) {
        let (k, roll, think, back_off) = {
            let mut rng = madsim::rand::thread_rng();
            (
                rng.gen_range(0..KEYS),
                rng.gen_range(0..100u32),
                rng.gen_range(20..100u64),
                rng.gen_range(BACK_OFF_MS.0..=BACK_OFF_MS.1),
            )
        };
        let mut answered = true;
        let key = format!("/v2sim/k{k}");
        let now_ns = api_v2::now_unix_ns();
        let value = format!("v2-c{client}-{written}");
        let expected = last_seen.get(&key).cloned();
        if roll < 30 {
            // A quorum GET: linearizable, through the read index.
            let at = load.begin(client, Op::Get { key: key.clone() });
            let answer = madsim::time::timeout(CALL_TIMEOUT, api_v2::get(&api, &key, false, true));
            let outcome = match answer.await {
                Ok(Ok(Ok(listing))) => {
                    let kv = seen(&listing.node);
                    if let Some(s) = &kv {
                        last_seen.insert(key.clone(), s.value.clone());
                    }
                    Outcome::Got {
                        revision: index(listing.etcd_index),
                        kv,
                    }
                }
                Ok(Ok(Err(e))) if e.code == KEY_NOT_FOUND => Outcome::Got {
                    revision: index(e.index),
                    kv: None,
                },
                _ => {
                    answered = false;
                    Outcome::Failed
                }
            };
            load.finish(at, outcome);
        } else {
            written += 1;
            let (op, req) = if roll < 45 {
                (
                    Op::Delete { key: key.clone() },
                    V2Request::Delete {
                        path: key.clone(),
                        dir: false,
                        recursive: false,
                        prev_value: String::new(),
                        prev_index: 0,
                        now_ns,
                    },
                )
            } else {
                let cas = expected.filter(|_| roll < 65);
                let op = match &cas {
                    Some(expected) => Op::Cas {
                        key: key.clone(),
                        expected: expected.clone(),
                        value: value.clone(),
                    },
                    None => Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                };
                let req = V2Request::Put {
                    path: key.clone(),
                    value: value.clone(),
                    dir: false,
                    prev_value: cas.unwrap_or_default(),
                    prev_index: 0,
                    prev_exist: None,
                    expire_ns: None,
                    refresh: false,
                    now_ns,
                };
                (op, req)
            };
            let at = load.begin(client, op.clone());
            let answer = madsim::time::timeout(CALL_TIMEOUT, api_v2::write(&api, &ctx, req));
            let outcome = match answer.await {
                Ok(Ok(V2Outcome::Event { event, etcd_index })) => match op {
                    Op::Delete { .. } => Outcome::Deleted {
                        revision: index(etcd_index),
                        deleted: 1,
                    },
                    Op::Cas { .. } => Outcome::Cas {
                        revision: index(event.node.modified_index),
                        succeeded: true,
                        current: None,
                    },
                    _ => Outcome::Put {
                        revision: index(event.node.modified_index),
                        prev: event.prev_node.as_ref().and_then(seen),
                    },
                },
                Ok(Ok(V2Outcome::Error(e))) if e.code == KEY_NOT_FOUND => match op {
                    Op::Delete { .. } => Outcome::Deleted {
                        revision: index(e.index),
                        deleted: 0,
                    },
                    // A compare on a key that is gone: applied as a failure, nothing written.
                    _ => Outcome::Failed,
                },
                // Applied as a refusal (a failed compare): nothing written.
                Ok(Ok(_)) => Outcome::Failed,
                // The proposal failed or the answer did not come: it may still apply.
                Ok(Err(_)) | Err(_) => Outcome::Unknown,
            };
            match outcome {
                Outcome::Put { .. } | Outcome::Cas { .. } => {
                    last_seen.insert(key.clone(), value);
                }
                Outcome::Unknown => answered = false,
                _ => {}
            }
            load.finish(at, outcome);
        }
        let pause = if answered { think } else { back_off };
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
}
