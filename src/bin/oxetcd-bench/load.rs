//! The workloads: `--conns` gRPC channels shared round-robin by `--clients` tasks that together
//! issue `--total` requests, each timed from send to response.
//!
//! Invariant: exactly `--total` requests are attempted per run (a shared ticket counter hands
//! out request numbers), so every run is bounded.
//! Invariant: setup (connecting, granting leases, creating watchers, writing the range key) is
//! never inside the timed window.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::{
    request_op, watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest,
    RequestOp, StatusRequest, TxnRequest, WatchCreateRequest, WatchRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::args::{Opts, Workload};
use crate::error::BenchError;
use crate::readers::ReaderReport;
use crate::stats::{Recorder, Summary};

/// How long the watch run waits for outstanding events after the last put.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// TTL of the leases the keep-alive run refreshes.
const LEASE_TTL_SECONDS: i64 = 60;

/// Turns an mpsc receiver into the request stream a client-streaming call wants.
pub(crate) struct RxStream<T>(pub(crate) mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// How long one connect (TCP and, for https, the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `conns` channels, spread over the endpoints round-robin; `https://` endpoints with the
/// TLS files in `tls` (each channel connects, handshake included, before this returns).
pub async fn connect(
    endpoints: &[String],
    conns: usize,
    tls: &oxetcd::config::TlsFiles,
) -> Result<Vec<Channel>, BenchError> {
    debug_assert!(!endpoints.is_empty());
    let mut channels = Vec::with_capacity(conns);
    let https = endpoints.iter().any(|e| e.starts_with("https://"));
    let dialer = if https {
        let client = oxetcd::net::ClientTls::load(tls, oxetcd::net::tls::Side::Client)
            .map_err(|e| BenchError::Connect(format!("TLS files: {e}")))?;
        oxetcd::net::Dialer::with_tls(client)
    } else {
        oxetcd::net::Dialer::plaintext()
    };
    for i in 0..conns {
        let target = &endpoints[i % endpoints.len()];
        let url = if target.contains("://") {
            target.clone()
        } else {
            format!("http://{target}")
        };
        let channel = dialer
            .lazy_channel(&url, CONNECT_TIMEOUT)
            .map_err(|e| BenchError::Connect(format!("{url}: {e}")))?;
        // Connect now, so that setup stays out of the timed run.
        let mut probe = MaintenanceClient::new(channel.clone());
        probe
            .status(StatusRequest::default())
            .await
            .map_err(|e| BenchError::Connect(format!("{url}: {e}")))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// The `index`-th key: the number little-endian in `key_size` bytes (truncated or zero-padded).
pub fn key_bytes(index: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size];
    let le = index.to_le_bytes();
    let n = key_size.min(le.len());
    key[..n].copy_from_slice(&le[..n]);
    key
}

/// What one run measured.
pub struct Outcome {
    /// Every counted operation of the run.
    pub summary: Summary,
    /// `--background-readers`: what the readers did meanwhile.
    pub readers: Option<ReaderReport>,
    /// `kube`: the summary of each call type.
    pub parts: Vec<(String, Summary)>,
    /// Lines printed after the report (`kube`: conflicts, the watch check).
    pub notes: String,
}

/// Runs the workload of `opts` against `endpoints`, with `--background-readers` ranging the
/// whole key space meanwhile.
pub async fn run(opts: &Opts, endpoints: &[String]) -> Result<Outcome, BenchError> {
    if opts.workload == Workload::Kube {
        let channels = connect(endpoints, opts.conns, &opts.tls).await?;
        let report = crate::kube::run(opts, &channels).await?;
        return Ok(Outcome {
            summary: report.overall,
            readers: None,
            parts: report.parts,
            notes: report.notes,
        });
    }
    let readers = if opts.background_readers > 0 {
        Some(crate::readers::start(opts, endpoints).await?)
    } else {
        None
    };
    let summary = run_workload(opts, endpoints).await;
    let report = match readers {
        Some(readers) => Some(readers.stop().await),
        None => None,
    };
    Ok(Outcome {
        summary: summary?,
        readers: report,
        parts: Vec::new(),
        notes: String::new(),
    })
}

async fn run_workload(opts: &Opts, endpoints: &[String]) -> Result<Summary, BenchError> {
    let channels = connect(endpoints, opts.conns, &opts.tls).await?;
    match opts.workload {
        Workload::Watch => run_watch(opts, &channels).await,
        Workload::WatchCatchup => crate::catchup::run(opts, &channels).await,
        Workload::LeaseKeepalive => run_keepalive(opts, &channels).await,
        Workload::Range => {
            let put = PutRequest {
                key: opts.key.as_bytes().to_vec(),
                value: vec![b'v'; opts.val_size],
                ..Default::default()
            };
            KvClient::new(channels[0].clone())
                .put(put)
                .await
                .map_err(|e| BenchError::Server(format!("writing the range key: {e}")))?;
            run_kv(opts, &channels).await
        }
        Workload::Put | Workload::TxnPut => run_kv(opts, &channels).await,
        Workload::Kube => Err(BenchError::Usage("kube runs through kube::run".into())),
    }
}

/// Picks key indices for one client: sequential over the shared ticket, or random.
struct KeyPicker {
    rng: StdRng,
    sequential: bool,
    space: u64,
}

impl KeyPicker {
    fn next(&mut self, ticket: u64) -> u64 {
        if self.sequential {
            ticket % self.space
        } else {
            self.rng.gen_range(0..self.space)
        }
    }
}

fn kv_request(opts: &Opts, picker: &mut KeyPicker, ticket: u64, value: &[u8]) -> KvRequest {
    let put = |index: u64| PutRequest {
        key: key_bytes(index, opts.key_size),
        value: value.to_vec(),
        ..Default::default()
    };
    match opts.workload {
        Workload::Range => KvRequest::Range(RangeRequest {
            key: opts.key.as_bytes().to_vec(),
            serializable: opts.serializable,
            ..Default::default()
        }),
        Workload::TxnPut => {
            let first = picker.next(ticket);
            let success = (0..opts.txn_ops as u64)
                .map(|j| RequestOp {
                    request: Some(request_op::Request::RequestPut(put(
                        (first + j) % opts.key_space_size
                    ))),
                })
                .collect();
            KvRequest::Txn(TxnRequest {
                success,
                ..Default::default()
            })
        }
        _ => KvRequest::Put(put(picker.next(ticket))),
    }
}

enum KvRequest {
    Put(PutRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
}

async fn run_kv(opts: &Opts, channels: &[Channel]) -> Result<Summary, BenchError> {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let tickets = Arc::clone(&tickets);
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut picker = KeyPicker {
                rng: StdRng::seed_from_u64(c as u64),
                sequential: opts.sequential_keys,
                space: opts.key_space_size,
            };
            let value = vec![b'x'; opts.val_size];
            let mut rec = Recorder::default();
            loop {
                let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                if ticket >= opts.total {
                    break;
                }
                let request = kv_request(&opts, &mut picker, ticket, &value);
                let sent = Instant::now();
                let result = match request {
                    KvRequest::Put(r) => kv.put(r).await.map(drop),
                    KvRequest::Range(r) => kv.range(r).await.map(drop),
                    KvRequest::Txn(r) => kv.txn(r).await.map(drop),
                };
                match result {
                    Ok(()) => rec.ok(sent.elapsed()),
                    Err(status) => rec.error(format!("{:?}: {}", status.code(), status.message())),
                }
            }
            rec
        }));
    }
    finish(tasks, started).await
}

async fn finish(
    tasks: Vec<tokio::task::JoinHandle<Recorder>>,
    started: Instant,
) -> Result<Summary, BenchError> {
    let mut all = Recorder::default();
    for task in tasks {
        match task.await {
            Ok(rec) => all.merge(rec),
            Err(e) => all.error(format!("client task failed: {e}")),
        }
    }
    Ok(all.summary(started.elapsed()))
}

async fn run_keepalive(opts: &Opts, channels: &[Channel]) -> Result<Summary, BenchError> {
    let mut clients = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        let granted = lease
            .lease_grant(LeaseGrantRequest {
                ttl: LEASE_TTL_SECONDS,
                id: 0,
            })
            .await
            .map_err(|e| BenchError::Server(format!("lease grant: {e}")))?
            .into_inner();
        // grpc-go servers send the response headers with the first message, so one untimed
        // keep-alive goes in before the call returns.
        let (tx, rx) = mpsc::channel(1);
        let first = tx.send(LeaseKeepAliveRequest { id: granted.id }).await;
        first.map_err(|_| BenchError::Connect("keep-alive request channel closed".into()))?;
        let mut responses = lease
            .lease_keep_alive(RxStream(rx))
            .await
            .map_err(|e| BenchError::Connect(format!("keep-alive stream: {e}")))?
            .into_inner();
        match responses.message().await {
            Ok(Some(r)) if r.ttl > 0 => {}
            other => return Err(BenchError::Server(format!("first keep-alive: {other:?}"))),
        }
        clients.push((granted.id, tx, responses));
    }
    let tickets = Arc::new(AtomicU64::new(0));
    let total = opts.total;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.clients);
    for (id, tx, mut responses) in clients {
        let tickets = Arc::clone(&tickets);
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::default();
            while tickets.fetch_add(1, Ordering::Relaxed) < total {
                let sent = Instant::now();
                if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    rec.error("keep-alive stream closed");
                    continue;
                }
                match responses.message().await {
                    Ok(Some(r)) if r.ttl > 0 => rec.ok(sent.elapsed()),
                    Ok(Some(_)) => rec.error("lease not found"),
                    Ok(None) => rec.error("keep-alive stream ended"),
                    Err(status) => rec.error(format!("{:?}: {}", status.code(), status.message())),
                }
            }
            rec
        }));
    }
    finish(tasks, started).await
}

/// Nanoseconds since `origin`, as carried in the first 8 bytes of a watch-run value.
fn stamp(origin: Instant) -> [u8; 8] {
    u64::try_from(origin.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .to_le_bytes()
}

async fn run_watch(opts: &Opts, channels: &[Channel]) -> Result<Summary, BenchError> {
    let origin = Instant::now();
    let expected = opts.total;
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(opts.clients);
    let mut watchers = Vec::with_capacity(opts.clients);
    for c in 0..opts.clients {
        let mut watch = WatchClient::new(channels[c % channels.len()].clone());
        let (tx, rx) = mpsc::channel(1);
        let create = WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        let sent = tx
            .send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .await;
        sent.map_err(|_| BenchError::Connect("watch request channel closed".into()))?;
        let mut responses = watch
            .watch(RxStream(rx))
            .await
            .map_err(|e| BenchError::Connect(format!("watch stream: {e}")))?
            .into_inner();
        let ready = ready_tx.clone();
        watchers.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut rec = Recorder::default();
            let mut seen = 0u64;
            let mut deadline = tokio::time::Instant::now() + WATCH_DRAIN_TIMEOUT * 6;
            while seen < expected {
                let next = tokio::time::timeout_at(deadline, responses.message()).await;
                let resp = match next {
                    Ok(Ok(Some(resp))) => resp,
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) => {
                        rec.error(format!("{:?}: {}", status.code(), status.message()));
                        break;
                    }
                    Err(_) => break,
                };
                if resp.created {
                    let _ = ready.send(()).await;
                }
                let now_ns = origin.elapsed().as_nanos();
                for ev in resp.events.iter().filter_map(|e| e.kv.as_ref()) {
                    let Some(sent) = ev.value.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok())
                    else {
                        continue;
                    };
                    let sent_ns = u128::from(u64::from_le_bytes(sent));
                    rec.ok(Duration::from_nanos(
                        u64::try_from(now_ns.saturating_sub(sent_ns)).unwrap_or(u64::MAX),
                    ));
                    seen += 1;
                }
                deadline = tokio::time::Instant::now() + WATCH_DRAIN_TIMEOUT;
            }
            for _ in seen..expected {
                rec.error("event not received before the drain timeout");
            }
            rec
        }));
    }
    drop(ready_tx);
    for _ in 0..opts.clients {
        if ready_rx.recv().await.is_none() {
            return Err(BenchError::Server(
                "a watch stream ended before it was created".into(),
            ));
        }
    }
    let started = Instant::now();
    let mut kv = KvClient::new(channels[0].clone());
    let mut value = vec![b'x'; opts.val_size];
    for i in 0..opts.total {
        value[..8].copy_from_slice(&stamp(origin));
        let put = PutRequest {
            key: key_bytes(i % opts.key_space_size, opts.key_size),
            value: value.clone(),
            ..Default::default()
        };
        if let Err(e) = kv.put(put).await {
            return Err(BenchError::Server(format!("watch writer put: {e}")));
        }
    }
    finish(watchers, started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_requested_size_and_are_distinct_within_the_space() {
        assert_eq!(key_bytes(0x0102, 8), vec![2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(key_bytes(0x0102, 1), vec![2]);
        assert_eq!(key_bytes(5, 12).len(), 12);
        let keys: std::collections::HashSet<Vec<u8>> = (0..1000).map(|i| key_bytes(i, 8)).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn sequential_picker_cycles_the_key_space_and_random_stays_inside() {
        let mut seq = KeyPicker {
            rng: StdRng::seed_from_u64(1),
            sequential: true,
            space: 3,
        };
        assert_eq!(
            (0..7).map(|t| seq.next(t)).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2, 0]
        );
        let mut rnd = KeyPicker {
            rng: StdRng::seed_from_u64(1),
            sequential: false,
            space: 10,
        };
        let picks: Vec<u64> = (0..1000).map(|t| rnd.next(t)).collect();
        assert!(picks.iter().all(|k| *k < 10));
        assert!(picks.iter().collect::<std::collections::HashSet<_>>().len() > 5);
    }
}
