//! `watch-catchup`: time from opening a watch at `--start-revision` (default 1) on `--key`
//! (or, with `--prefix`, on every key starting with it) to its first event, for `--total`
//! watches opened one after another. What it shows is the cost of catching a watcher up over
//! the history between its start revision and the first matching event: load that history
//! first (e.g. a million puts to other keys, then one put of `--key`; see
//! `docs/perf/watch_catchup.sh`).
//!
//! Invariant: every watch is bounded by `CATCHUP_TIMEOUT`; a watch that times out or is
//! canceled counts as an error, never as a sample.

use std::time::{Duration, Instant};

use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::args::Opts;
use crate::error::BenchError;
use crate::load::RxStream;
use crate::stats::{Recorder, Summary};

/// Longest wait for one watch's first event.
const CATCHUP_TIMEOUT: Duration = Duration::from_secs(300);

/// The range end that makes `key` a prefix watch (etcd's rule: last byte below 0xff plus one).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub async fn run(opts: &Opts, channels: &[Channel]) -> Result<Summary, BenchError> {
    let key = opts.key.as_bytes().to_vec();
    let range_end = if opts.prefix {
        prefix_end(&key)
    } else {
        Vec::new()
    };
    let mut rec = Recorder::default();
    let started = Instant::now();
    for i in 0..opts.total {
        let channel = channels[usize::try_from(i).unwrap_or(0) % channels.len()].clone();
        let create = WatchCreateRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            start_revision: opts.start_revision,
            ..Default::default()
        };
        let t0 = Instant::now();
        match tokio::time::timeout(CATCHUP_TIMEOUT, first_event(channel, create)).await {
            Ok(Ok(())) => rec.ok(t0.elapsed()),
            Ok(Err(e)) => rec.error(e),
            Err(_) => rec.error("no event before the timeout"),
        }
    }
    Ok(rec.summary(started.elapsed()))
}

/// Opens one watch stream, creates the watcher and waits for its first event.
async fn first_event(channel: Channel, create: WatchCreateRequest) -> Result<(), String> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| "watch request channel closed".to_string())?;
    let mut responses = WatchClient::new(channel)
        .watch(RxStream(rx))
        .await
        .map_err(|e| format!("watch stream: {e}"))?
        .into_inner();
    loop {
        match responses.message().await {
            Ok(Some(resp)) if resp.canceled => {
                return Err(format!("watch canceled: {}", resp.cancel_reason))
            }
            Ok(Some(resp)) if !resp.events.is_empty() => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err("watch stream ended".into()),
            Err(status) => return Err(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcds_rule() {
        assert_eq!(prefix_end(b"abc"), b"abd".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
