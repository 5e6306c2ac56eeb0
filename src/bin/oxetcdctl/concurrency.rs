//! The client-side lock and election recipes etcdctl's `lock` and `elect` run (clientv3's
//! `concurrency` package), built on plain KV, Watch and Lease calls so that oxetcdctl and
//! etcdctl holders and waiters interoperate on the same keys:
//!
//! - a [`Session`] is a lease kept alive in the background (a keep-alive every third of the
//!   TTL); it reports when the lease is lost;
//! - a lock or an election under the name `N` is a key `N/<lease ID in hex>` put with the
//!   session's lease; the key with the lowest create revision under `N/` holds the lock / leads;
//!   a waiter watches the deletion of the key created just before its own, then checks again.
//!
//! Invariant: a waiter never takes the lock while a key with a lower create revision exists
//! under the prefix: it only proceeds once a read at one revision finds none.

use std::time::Duration;

use oxetcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd::proto::etcdserverpb::request_op::Request;
use oxetcd::proto::etcdserverpb::response_op::Response;
use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use oxetcd::proto::mvccpb::event::EventType;
use oxetcd::proto::mvccpb::KeyValue;

use super::client::Client;
use super::kv::prefix_end;
use super::CtlError;

/// A lease kept alive until the process ends (etcdctl never revokes it: the keys it holds
/// are deleted explicitly, and the lease runs out on its own).
pub struct Session {
    pub lease: i64,
    lost: tokio::sync::watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Session {
    pub async fn new(client: &Client, ttl: i64) -> Result<Session, CtlError> {
        let granted = client
            .call(
                |c, r| async move { LeaseClient::new(c).lease_grant(r).await },
                LeaseGrantRequest { ttl, id: 0 },
            )
            .await?;
        if !granted.error.is_empty() {
            return Err(CtlError::general(granted.error));
        }
        let (lost_tx, lost) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(keep_alive(client.clone(), granted.id, granted.ttl, lost_tx));
        Ok(Session {
            lease: granted.id,
            lost,
            keeper,
        })
    }

    /// Resolves once the lease is known to be gone (expired, revoked, or not renewed before
    /// its deadline).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|gone| *gone).await;
    }
}

/// Renews the lease every third of its TTL over one keep-alive stream (reopened after a
/// transport error) and reports its loss: a TTL of 0 from the server, or no renewal before
/// the lease's own deadline.
async fn keep_alive(client: Client, lease: i64, ttl: i64, lost: tokio::sync::watch::Sender<bool>) {
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1));
    let mut deadline = tokio::time::Instant::now() + ttl;
    'streams: while tokio::time::Instant::now() < deadline {
        let (tx, rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(1);
        if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
            break;
        }
        let outbound = oxetcd::grpc::stream::ChannelStream::new(rx);
        let mut lease_client = LeaseClient::new(client.channel.clone());
        let call = lease_client.lease_keep_alive(client.request(outbound));
        let mut responses = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => break,
        };
        loop {
            match tokio::time::timeout_at(deadline, responses.message()).await {
                Ok(Ok(Some(r))) if r.ttl > 0 => {
                    let renewed = Duration::from_secs(u64::try_from(r.ttl).unwrap_or(1));
                    deadline = tokio::time::Instant::now() + renewed;
                    tokio::time::sleep(renewed / 3).await;
                    if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                        continue 'streams;
                    }
                }
                Ok(Ok(Some(_))) => break 'streams,
                Ok(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue 'streams;
                }
                Err(_) => break 'streams,
            }
        }
    }
    let _ = lost.send(true);
}

/// `name/` + the lease ID in lower-case hex: the key a session holds under a lock or
/// election prefix.
pub fn session_key(prefix: &str, lease: i64) -> String {
    format!("{prefix}{lease:x}")
}

fn create_revision_is(key: &str, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn get_one(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..RangeRequest::default()
    }
}

/// The key with the lowest create revision under `prefix` (clientv3's `WithFirstCreate`).
fn first_created(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_end(prefix.as_bytes()),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..RangeRequest::default()
    }
}

pub async fn range(client: &Client, request: RangeRequest) -> Result<RangeResponse, CtlError> {
    client
        .call(
            |c, r| async move { KvClient::new(c).range(r).await },
            request,
        )
        .await
}

async fn txn(client: &Client, request: TxnRequest) -> Result<TxnResponse, CtlError> {
    client
        .call(|c, r| async move { KvClient::new(c).txn(r).await }, request)
        .await
}

pub async fn delete(client: &Client, key: &str) -> Result<(), CtlError> {
    client
        .call(
            |c, r| async move { KvClient::new(c).delete_range(r).await },
            DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..DeleteRangeRequest::default()
            },
        )
        .await
        .map(|_| ())
}

fn range_kvs(response: &TxnResponse, index: usize) -> &[KeyValue] {
    match response
        .responses
        .get(index)
        .and_then(|r| r.response.as_ref())
    {
        Some(Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// A watch from `revision` on `[key, range_end)`, as a stream of responses.
async fn open_watch(
    client: &Client,
    key: &str,
    range_end: Vec<u8>,
    revision: i64,
) -> Result<
    (
        tonic::Streaming<WatchResponse>,
        tokio::sync::mpsc::Sender<WatchRequest>,
    ),
    CtlError,
> {
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
    let create = WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        range_end,
        start_revision: revision,
        ..WatchCreateRequest::default()
    };
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| CtlError::general("the watch stream closed"))?;
    let outbound = oxetcd::grpc::stream::ChannelStream::new(rx);
    let mut watch_client = WatchClient::new(client.channel.clone());
    let call = watch_client.watch(client.request(outbound));
    let responses = tokio::time::timeout(client.command_timeout, call)
        .await
        .map_err(|_| CtlError::general("context deadline exceeded"))?
        .map_err(|s| CtlError::from_status(&s))?
        .into_inner();
    // The sender stays alive with the stream: dropping it would end the request half.
    Ok((responses, tx))
}

/// Waits until `key` is deleted at or after `revision`.
async fn wait_delete(client: &Client, key: &str, revision: i64) -> Result<(), CtlError> {
    let (mut responses, _requests) = open_watch(client, key, Vec::new(), revision).await?;
    loop {
        match responses.message().await {
            Ok(Some(r)) => {
                if r.events
                    .iter()
                    .any(|e| e.r#type == EventType::Delete as i32)
                {
                    return Ok(());
                }
                if r.canceled {
                    return Err(CtlError::general(r.cancel_reason));
                }
            }
            Ok(None) => return Err(CtlError::general("lost watcher waiting for delete")),
            Err(status) => return Err(CtlError::from_status(&status)),
        }
    }
}

/// Waits until no key under `prefix` has a create revision at or below `max_create`.
async fn wait_deletes(
    client: &Client,
    prefix: &str,
    max_create: i64,
) -> Result<ResponseHeader, CtlError> {
    loop {
        let last = range(
            client,
            RangeRequest {
                max_create_revision: max_create,
                sort_order: SortOrder::Descend as i32,
                ..first_created(prefix)
            },
        )
        .await?;
        let Some(kv) = last.kvs.first() else {
            return Ok(last.header.unwrap_or_default());
        };
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let revision = last.header.unwrap_or_default().revision;
        wait_delete(client, &key, revision).await?;
    }
}

/// clientv3's `Mutex` under `name/`.
pub struct Mutex {
    prefix: String,
    pub key: String,
    revision: i64,
    /// The header of the read that found the lock held (etcdctl's `ETCD_LOCK_REV`).
    pub header: ResponseHeader,
}

impl Mutex {
    pub fn new(session: &Session, name: &str) -> Mutex {
        let prefix = format!("{name}/");
        Mutex {
            key: session_key(&prefix, session.lease),
            prefix,
            revision: -1,
            header: ResponseHeader::default(),
        }
    }

    /// Puts this session's key (or finds it there already) and waits until it is the oldest
    /// under the prefix. On an error after the key was put, the key is deleted again.
    pub async fn lock(&mut self, client: &Client, session: &Session) -> Result<(), CtlError> {
        let response = txn(
            client,
            TxnRequest {
                compare: vec![create_revision_is(&self.key, 0)],
                success: vec![
                    op(Request::RequestPut(PutRequest {
                        key: self.key.as_bytes().to_vec(),
                        lease: session.lease,
                        ..PutRequest::default()
                    })),
                    op(Request::RequestRange(first_created(&self.prefix))),
                ],
                failure: vec![
                    op(Request::RequestRange(get_one(&self.key))),
                    op(Request::RequestRange(first_created(&self.prefix))),
                ],
            },
        )
        .await?;
        let header = response.header.unwrap_or_default();
        self.revision = if response.succeeded {
            header.revision
        } else {
            range_kvs(&response, 0)
                .first()
                .map(|kv| kv.create_revision)
                .ok_or_else(|| CtlError::general("lock key vanished"))?
        };
        let owner = range_kvs(&response, 1);
        if owner.is_empty() || owner[0].create_revision == self.revision {
            self.header = header;
            return Ok(());
        }
        if let Err(e) = wait_deletes(client, &self.prefix, self.revision - 1).await {
            let _ = delete(client, &self.key).await;
            return Err(e);
        }
        let mine = match range(client, get_one(&self.key)).await {
            Ok(r) => r,
            Err(e) => {
                let _ = delete(client, &self.key).await;
                return Err(e);
            }
        };
        if mine.kvs.is_empty() {
            return Err(CtlError::general("mutex: session is expired"));
        }
        self.header = mine.header.unwrap_or_default();
        Ok(())
    }

    pub async fn unlock(&self, client: &Client) -> Result<(), CtlError> {
        delete(client, &self.key).await
    }
}

/// clientv3's `Election` under `name/`.
pub struct Election {
    pub prefix: String,
    pub key: String,
    /// The create revision of this session's key, once the campaign has put it.
    revision: Option<i64>,
    lease: i64,
}

impl Election {
    pub fn new(session: &Session, name: &str) -> Election {
        let prefix = format!("{name}/");
        Election {
            key: session_key(&prefix, session.lease),
            prefix,
            revision: None,
            lease: session.lease,
        }
    }

    /// Puts this session's candidacy (or updates its value) and waits until it leads.
    pub async fn campaign(&mut self, client: &Client, value: &str) -> Result<(), CtlError> {
        let response = txn(
            client,
            TxnRequest {
                compare: vec![create_revision_is(&self.key, 0)],
                success: vec![op(Request::RequestPut(PutRequest {
                    key: self.key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    lease: self.lease,
                    ..PutRequest::default()
                }))],
                failure: vec![op(Request::RequestRange(get_one(&self.key)))],
            },
        )
        .await?;
        let mut revision = response.header.unwrap_or_default().revision;
        if !response.succeeded {
            let kv = range_kvs(&response, 0)
                .first()
                .cloned()
                .ok_or_else(|| CtlError::general("election key vanished"))?;
            revision = kv.create_revision;
            self.revision = Some(revision);
            if kv.value != value.as_bytes() {
                self.proclaim(client, value).await?;
            }
        }
        self.revision = Some(revision);
        wait_deletes(client, &self.prefix, revision - 1).await?;
        Ok(())
    }

    async fn proclaim(&mut self, client: &Client, value: &str) -> Result<(), CtlError> {
        let Some(revision) = self.revision else {
            return Err(CtlError::general("election: not leader"));
        };
        let response = txn(
            client,
            TxnRequest {
                compare: vec![create_revision_is(&self.key, revision)],
                success: vec![op(Request::RequestPut(PutRequest {
                    key: self.key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    lease: self.lease,
                    ..PutRequest::default()
                }))],
                failure: Vec::new(),
            },
        )
        .await?;
        if !response.succeeded {
            self.revision = None;
            return Err(CtlError::general("election: not leader"));
        }
        Ok(())
    }

    /// Deletes this session's key if it is still the one the campaign put.
    pub async fn resign(&mut self, client: &Client) -> Result<(), CtlError> {
        let Some(revision) = self.revision.take() else {
            return Ok(());
        };
        txn(
            client,
            TxnRequest {
                compare: vec![create_revision_is(&self.key, revision)],
                success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: self.key.as_bytes().to_vec(),
                    ..DeleteRangeRequest::default()
                }))],
                failure: Vec::new(),
            },
        )
        .await
        .map(|_| ())
    }
}

/// Follows the leader of the election under `prefix`: calls `show` with the leader's key-value
/// (in a range response, as etcdctl prints it) when one is elected and on every change of its
/// value. Returns only on an error (the caller stops it on a signal).
pub async fn observe(
    client: &Client,
    prefix: &str,
    mut show: impl FnMut(&RangeResponse),
) -> Result<(), CtlError> {
    loop {
        // Updates are shown as this read's response with the event's header and key-value
        // (its count and `more` stay), as clientv3's Observe hands them out.
        let current = range(client, first_created(prefix)).await?;
        let (mut header, kv) = match current.kvs.first() {
            Some(kv) => {
                show(&current);
                (current.header.unwrap_or_default(), kv.clone())
            }
            None => {
                let from = current.header.unwrap_or_default().revision;
                let (mut responses, _requests) =
                    open_watch(client, prefix, prefix_end(prefix.as_bytes()), from).await?;
                let (header, kv) = loop {
                    let r = responses
                        .message()
                        .await
                        .map_err(|s| CtlError::from_status(&s))?
                        .ok_or_else(|| CtlError::general("elect: observer lost"))?;
                    let put = r
                        .events
                        .iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv.clone());
                    if let Some(kv) = put {
                        let mut header = r.header.unwrap_or_default();
                        header.revision = kv.mod_revision;
                        break (header, kv);
                    }
                };
                show(&RangeResponse {
                    header: Some(header),
                    kvs: vec![kv.clone()],
                    more: false,
                    count: 0,
                });
                (header, kv)
            }
        };
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        let (mut responses, _requests) =
            open_watch(client, &key, Vec::new(), header.revision + 1).await?;
        'key: loop {
            let r = responses
                .message()
                .await
                .map_err(|s| CtlError::from_status(&s))?
                .ok_or_else(|| CtlError::general("elect: observer lost"))?;
            for event in &r.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'key;
                }
                header = r.header.unwrap_or_default();
                show(&RangeResponse {
                    header: Some(header),
                    kvs: event.kv.iter().cloned().collect(),
                    ..current.clone()
                });
            }
        }
    }
}
