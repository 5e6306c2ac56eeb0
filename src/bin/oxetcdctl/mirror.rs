//! `make-mirror DESTINATION`: etcdctl 3.5's mirror. The keys under `--prefix` on the source
//! (`--endpoints`) are copied to the destination at one revision, then every later change
//! (puts and deletes, from a watch starting right after that revision) is replayed there, in
//! transactions of at most `--max-txn-ops` operations. Keys are renamed with `--dest-prefix`
//! (or moved to the root with `--no-dest-prefix`). Leases are not mirrored, as in etcdctl.
//!
//! The running total of mirrored keys is printed every 30 seconds (etcdctl's output); on a
//! terminal a spinner shows it continuously.
//!
//! Invariant: events are applied to the destination in source revision order, each source
//! revision's events in one destination transaction when they fit in `--max-txn-ops`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::request_op::Request;
use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use oxetcd::proto::mvccpb::event::EventType;

use super::client::{Client, Global};
use super::kv::prefix_end;
use super::CtlError;

/// Keys fetched from the source per range request while copying the base.
const BASE_BATCH: i64 = 1000;

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// the destination endpoint
    #[arg(value_name = "DESTINATION")]
    args: Vec<String>,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long = "dest-cacert")]
    dest_cacert: Option<PathBuf>,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long = "dest-cert")]
    dest_cert: Option<PathBuf>,
    /// Identify secure client using this TLS key file
    #[arg(long = "dest-key")]
    dest_key: Option<PathBuf>,
    /// Destination username[:password] for authentication
    #[arg(long = "dest-user")]
    dest_user: Option<String>,
    /// Destination password for authentication
    #[arg(long = "dest-password")]
    dest_password: Option<String>,
    /// Disable transport security for client connections
    #[arg(long = "dest-insecure-transport", default_value = "true", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    dest_insecure_transport: bool,
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long = "dest-prefix")]
    dest_prefix: Option<String>,
    /// mirror key-values to the root of the destination cluster
    #[arg(long = "no-dest-prefix")]
    no_dest_prefix: bool,
    /// Maximum number of operations permitted in a transaction during syncing updates
    #[arg(long = "max-txn-ops", default_value_t = 128)]
    max_txn_ops: usize,
}

/// How source keys are named on the destination.
struct Rename {
    prefix: Vec<u8>,
    dest_prefix: Option<Vec<u8>>,
}

impl Rename {
    fn apply(&self, key: &[u8]) -> Vec<u8> {
        match &self.dest_prefix {
            None => key.to_vec(),
            Some(dest) => {
                let rest = key.strip_prefix(self.prefix.as_slice()).unwrap_or(key);
                [dest.as_slice(), rest].concat()
            }
        }
    }
}

pub async fn make_mirror(g: &Global, a: MirrorArgs) -> Result<(), CtlError> {
    let [destination] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    };
    if a.max_txn_ops == 0 {
        return Err(CtlError::bad_args("--max-txn-ops must be positive"));
    }
    let rename = Rename {
        prefix: a.prefix.as_bytes().to_vec(),
        dest_prefix: if a.no_dest_prefix {
            Some(Vec::new())
        } else {
            a.dest_prefix.as_ref().map(|p| p.as_bytes().to_vec())
        },
    };
    let source = Client::connect(g).await?;
    let dest_global = Global {
        endpoints: vec![destination.clone()],
        cacert: a.dest_cacert.clone(),
        cert: a.dest_cert.clone(),
        key: a.dest_key.clone(),
        insecure_transport: a.dest_insecure_transport,
        user: a.dest_user.clone(),
        password: a.dest_password.clone(),
        ..g.clone()
    };
    let dest = Client::connect(&dest_global).await?;

    let total = Arc::new(AtomicI64::new(0));
    let spinner = super::snapshot::progress_steps();
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        })
    };
    let result = mirror(&source, &dest, &a, &rename, &total, &spinner).await;
    reporter.abort();
    spinner.finish_and_clear();
    result
}

fn range_of(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
    }
}

async fn apply(dest: &Client, ops: Vec<RequestOp>) -> Result<(), CtlError> {
    if ops.is_empty() {
        return Ok(());
    }
    let txn = TxnRequest {
        success: ops,
        ..TxnRequest::default()
    };
    dest.call(|c, r| async move { KvClient::new(c).txn(r).await }, txn)
        .await
        .map(|_| ())
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key,
            value,
            ..PutRequest::default()
        })),
    }
}

async fn mirror(
    source: &Client,
    dest: &Client,
    a: &MirrorArgs,
    rename: &Rename,
    total: &AtomicI64,
    spinner: &indicatif::ProgressBar,
) -> Result<(), CtlError> {
    let (mut start, end) = range_of(&a.prefix);
    // The base: every key at one revision, in batches.
    let mut revision = 0i64;
    loop {
        let request = RangeRequest {
            key: start.clone(),
            range_end: end.clone(),
            limit: BASE_BATCH,
            revision,
            ..RangeRequest::default()
        };
        let r = source
            .call(
                |c, r| async move { KvClient::new(c).range(r).await },
                request,
            )
            .await?;
        if revision == 0 {
            revision = r.header.unwrap_or_default().revision;
        }
        let mut ops = Vec::new();
        for kv in &r.kvs {
            ops.push(put_op(rename.apply(&kv.key), kv.value.to_vec()));
            if ops.len() == a.max_txn_ops {
                apply(dest, std::mem::take(&mut ops)).await?;
            }
        }
        apply(dest, ops).await?;
        total.fetch_add(r.kvs.len() as i64, Ordering::Relaxed);
        spinner.set_message(format!("{} keys mirrored", total.load(Ordering::Relaxed)));
        match r.kvs.last() {
            Some(last) if r.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }

    // The updates: everything after that revision, in order.
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
    let (key, range_end) = range_of(&a.prefix);
    let create = WatchCreateRequest {
        key,
        range_end,
        start_revision: revision + 1,
        ..WatchCreateRequest::default()
    };
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| CtlError::general("the watch stream closed"))?;
    let mut watch_client = WatchClient::new(source.channel.clone());
    let mut events = watch_client
        .watch(source.request(oxetcd::grpc::stream::ChannelStream::new(rx)))
        .await
        .map_err(|s| CtlError::from_status(&s))?
        .into_inner();
    loop {
        let Some(r) = events
            .message()
            .await
            .map_err(|s| CtlError::from_status(&s))?
        else {
            return Err(CtlError::general("watch is canceled by the server"));
        };
        if r.canceled {
            return Err(CtlError::general(format!(
                "watch was canceled ({})",
                r.cancel_reason
            )));
        }
        let mut ops = Vec::new();
        let mut last_revision = 0;
        for e in &r.events {
            let Some(kv) = &e.kv else { continue };
            // One destination transaction per source revision; a revision cannot put and
            // delete the same key, so the batch never holds a duplicate.
            if kv.mod_revision != last_revision || ops.len() == a.max_txn_ops {
                apply(dest, std::mem::take(&mut ops)).await?;
                last_revision = kv.mod_revision;
            }
            let key = rename.apply(&kv.key);
            ops.push(if e.r#type == EventType::Delete as i32 {
                RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..DeleteRangeRequest::default()
                    })),
                }
            } else {
                put_op(key, kv.value.to_vec())
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        apply(dest, ops).await?;
        spinner.set_message(format!("{} keys mirrored", total.load(Ordering::Relaxed)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_renamed_as_etcdctl_renames_them() {
        let keep = Rename {
            prefix: b"/a/".to_vec(),
            dest_prefix: None,
        };
        assert_eq!(keep.apply(b"/a/x"), b"/a/x".to_vec());
        let moved = Rename {
            prefix: b"/a/".to_vec(),
            dest_prefix: Some(b"/b/".to_vec()),
        };
        assert_eq!(moved.apply(b"/a/x"), b"/b/x".to_vec());
        let root = Rename {
            prefix: b"/a/".to_vec(),
            dest_prefix: Some(Vec::new()),
        };
        assert_eq!(root.apply(b"/a/x"), b"x".to_vec());
    }
}
