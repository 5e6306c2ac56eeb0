//! Background readers: clients that range the whole key space in a loop while a timed write
//! workload runs, to show how much a heavy read slows writes down. Before they start, the key
//! space is filled (every key of `--key-space-size`, untimed) so each of their ranges returns
//! all of it.
//!
//! Invariant: the readers run only between `start` and `BackgroundReaders::stop`, on their own
//! connections, and nothing they do is in the timed workload's figures.
//! Invariant: filling writes at most `FILL_TXN_OPS` puts per txn (etcd's default `--max-txn-ops`
//! is 128) and is skipped when the key space already holds `--key-space-size` keys.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::{request_op, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::args::Opts;
use crate::error::BenchError;
use crate::load::{connect, key_bytes};
use crate::stats::{Recorder, Summary};

/// Puts per txn while filling the key space.
const FILL_TXN_OPS: u64 = 100;
/// Txns in flight while filling the key space.
const FILL_CLIENTS: u64 = 8;

/// A range of every key (`key` = `range_end` = `"\0"`).
fn whole_key_space() -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    }
}

/// A client that takes responses of any size (a full range of 100k keys is several MiB, above
/// tonic's 4 MiB default).
fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// Writes keys `0..--key-space-size` unless the key space already has that many keys.
pub async fn fill_key_space(opts: &Opts, channel: &Channel) -> Result<(), BenchError> {
    let server = |what: &str, e: tonic::Status| BenchError::Server(format!("{what}: {e}"));
    let count_only = RangeRequest {
        count_only: true,
        ..whole_key_space()
    };
    let present = kv_client(channel.clone())
        .range(count_only)
        .await
        .map_err(|e| server("counting keys", e))?
        .into_inner()
        .count;
    if u64::try_from(present).unwrap_or(0) >= opts.key_space_size {
        return Ok(());
    }
    let txns = opts.key_space_size.div_ceil(FILL_TXN_OPS);
    let mut tasks = Vec::new();
    for worker in 0..FILL_CLIENTS {
        let mut kv = kv_client(channel.clone());
        let (space, key_size) = (opts.key_space_size, opts.key_size);
        let value = vec![b'x'; opts.val_size];
        tasks.push(tokio::spawn(async move {
            for txn in (worker..txns).step_by(FILL_CLIENTS as usize) {
                let first = txn * FILL_TXN_OPS;
                let success = (first..(first + FILL_TXN_OPS).min(space))
                    .map(|i| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key_bytes(i, key_size),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let txn = TxnRequest {
                    success,
                    ..Default::default()
                };
                kv.txn(txn).await.map_err(|e| server("filling keys", e))?;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Server(format!("fill task failed: {e}")))??;
    }
    Ok(())
}

/// A `RangeResponse` that skips its `kvs` (field 2) while decoding: the readers only need to
/// know the range arrived whole. Decoding 100k pairs per range would make the generator, not
/// the server, the bottleneck of the run (measured: the generator's core saturated while the
/// server used a third of its own).
#[derive(Clone, PartialEq, prost::Message)]
struct RangeCount {
    #[prost(bool, tag = "3")]
    more: bool,
    #[prost(int64, tag = "4")]
    count: i64,
}

/// One full range through the plain gRPC client with the skipping decoder.
async fn range_count(grpc: &mut Grpc<Channel>) -> Result<RangeCount, tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<RangeRequest, RangeCount>::default();
    let path = PathAndQuery::from_static("/etcdserverpb.KV/Range");
    let response = grpc
        .unary(tonic::Request::new(whole_key_space()), path, codec)
        .await?;
    Ok(response.into_inner())
}

/// The readers of one run, ranging until stopped.
pub struct BackgroundReaders {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Recorder, u64)>>,
    started: Instant,
}

/// What the readers did during the run.
pub struct ReaderReport {
    pub readers: usize,
    pub ranges: Summary,
    /// Keys in the range (its `count`) the readers last received.
    pub keys_per_range: u64,
}

impl ReaderReport {
    pub fn render(&self) -> String {
        format!(
            "  background: {} readers, {} full ranges of {} keys ({} errors), range latency ms p50 {:.1} p99 {:.1}{}",
            self.readers,
            self.ranges.ok,
            self.keys_per_range,
            self.ranges.errors,
            self.ranges.p50_ms,
            self.ranges.p99_ms,
            self.ranges
                .first_error
                .as_ref()
                .map_or(String::new(), |e| format!("; first error: {e}")),
        )
    }
}

/// Fills the key space, then starts `opts.background_readers` readers on their own
/// connections; returns once each has connected.
pub async fn start(opts: &Opts, endpoints: &[String]) -> Result<BackgroundReaders, BenchError> {
    let channels = connect(endpoints, opts.background_readers, &opts.tls).await?;
    fill_key_space(opts, &channels[0]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = channels
        .into_iter()
        .map(|channel| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut grpc = Grpc::new(channel).max_decoding_message_size(usize::MAX);
                let mut rec = Recorder::default();
                let mut keys = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    match range_count(&mut grpc).await {
                        Ok(resp) => {
                            rec.ok(sent.elapsed());
                            keys = u64::try_from(resp.count).unwrap_or(0);
                        }
                        Err(status) => {
                            rec.error(format!("{:?}: {}", status.code(), status.message()))
                        }
                    }
                }
                (rec, keys)
            })
        })
        .collect();
    Ok(BackgroundReaders {
        stop,
        tasks,
        started: Instant::now(),
    })
}

impl BackgroundReaders {
    /// Stops the readers (each finishes the range in flight) and reports what they did.
    pub async fn stop(self) -> ReaderReport {
        self.stop.store(true, Ordering::Relaxed);
        let readers = self.tasks.len();
        let mut all = Recorder::default();
        let mut keys_per_range = 0;
        for task in self.tasks {
            match task.await {
                Ok((rec, keys)) => {
                    all.merge(rec);
                    keys_per_range = keys_per_range.max(keys);
                }
                Err(e) => all.error(format!("reader task failed: {e}")),
            }
        }
        ReaderReport {
            readers,
            ranges: all.summary(self.started.elapsed()),
            keys_per_range,
        }
    }
}
