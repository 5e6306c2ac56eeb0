//! The building blocks etcd's server-side Election and Lock services share with its client-side
//! concurrency recipes, run in-process on the KV, lease and watch API: the session lease, the
//! owner key `<prefix>/<lease hex>`, "wait until every older key under the prefix is deleted",
//! and a one-key in-process watch.
//!
//! Everything here goes through `api::kv`/`api::lease` and the watch hub, so other clients see
//! exactly the keys and revisions etcd's recipes produce.
//!
//! Invariant: every error these services report carries gRPC code Unknown (etcd returns its
//!   recipe errors unmapped), whatever the code of the underlying KV or lease error.
//! Invariant: a [`KeyWatch`] closes its hub stream when dropped (no watcher outlives its call).

use std::time::Duration;

use super::{kv, lease, Api, ApiError, ReqCtx};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, WatchCreateRequest, WatchResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::watch::{KeySpace, StreamId, StreamOutput};

/// TTL of the lease a Campaign or Lock without a lease is given (etcd's default session TTL);
/// nobody keeps it alive after the call.
pub const SESSION_TTL_S: i64 = 60;

/// How often an in-process watch runs a catch-up pass without being woken.
const WATCH_SYNC_TICK: Duration = Duration::from_millis(100);

pub const NOT_LEADER: &str = "election: not leader";
pub const NO_LEADER: &str = "election: no leader";
pub const LEADER_MISSING: &str = "\"leader\" field must be provided";
/// The mutex recipe's text when the caller's key is gone once it would own the lock.
pub const SESSION_EXPIRED: &str = "mutex: session is expired";

/// Why an Election or Lock call failed. Always reported with code Unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeError {
    /// Proclaim on a key that is no longer the leader's ("election: not leader").
    NotLeader,
    /// Leader or Observe on an election with no candidate ("election: no leader").
    NoLeader,
    /// Proclaim or Resign without the `leader` field.
    LeaderMissing,
    /// The caller's key vanished while it waited (its lease expired): "mutex: session is
    /// expired".
    SessionExpired,
    /// A KV, lease or watch call underneath failed; its text is kept, its code is not.
    Failed(Box<ApiError>),
}

impl RecipeError {
    pub fn message(&self) -> String {
        match self {
            RecipeError::NotLeader => NOT_LEADER.to_string(),
            RecipeError::NoLeader => NO_LEADER.to_string(),
            RecipeError::LeaderMissing => LEADER_MISSING.to_string(),
            RecipeError::SessionExpired => SESSION_EXPIRED.to_string(),
            RecipeError::Failed(e) => e.message(),
        }
    }
}

impl From<ApiError> for RecipeError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Recipe(r) => r,
            other => RecipeError::Failed(Box::new(other)),
        }
    }
}

impl From<RecipeError> for ApiError {
    fn from(e: RecipeError) -> Self {
        ApiError::Recipe(e)
    }
}

/// The session lease of a call: the caller's, or (lease 0) a fresh [`SESSION_TTL_S`] lease.
pub async fn session_lease(api: &Api, ctx: &ReqCtx, lease_id: i64) -> Result<i64, RecipeError> {
    if lease_id != 0 {
        return Ok(lease_id);
    }
    let granted = lease::grant(
        api,
        ctx,
        LeaseGrantRequest {
            ttl: SESSION_TTL_S,
            id: 0,
        },
    )
    .await?;
    Ok(granted.id)
}

/// `<prefix>/` for a recipe name, as etcd's recipes build it.
pub fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The owner key of a session under `prefix`: `<prefix><lease in lowercase hex>`.
pub fn owner_key(prefix: &[u8], lease_id: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{:x}", lease_id).as_bytes());
    k
}

/// The end of the range holding every key that starts with `prefix` (etcd's `WithPrefix`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease_id: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: lease_id,
            ..Default::default()
        })),
    }
}

pub fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The oldest key under `prefix` (sort by create revision ascending, limit 1).
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

pub fn first_created_op(prefix: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(first_created(prefix))),
    }
}

/// Waits until no key under `prefix` has a create revision at or below `max_create_rev`,
/// newest first, as etcd's `waitDeletes`; returns the header of the last (empty) range.
pub async fn wait_deletes(
    api: &Api,
    ctx: &ReqCtx,
    prefix: &[u8],
    max_create_rev: i64,
) -> Result<ResponseHeader, RecipeError> {
    loop {
        let resp: RangeResponse = kv::range(
            api,
            ctx,
            RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: 1,
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Create as i32,
                max_create_revision: max_create_rev,
                ..Default::default()
            },
        )
        .await?;
        let header = resp.header.unwrap_or_default();
        let Some(last) = resp.kvs.first() else {
            return Ok(header);
        };
        wait_delete(api, &last.key, header.revision).await?;
    }
}

/// Waits for a DELETE of `key` at or after revision `from`.
async fn wait_delete(api: &Api, key: &[u8], from: i64) -> Result<(), RecipeError> {
    let mut watch = KeyWatch::open(api, key, Vec::new(), from);
    loop {
        let resp = watch.next().await?;
        if resp
            .events
            .iter()
            .any(|e| e.r#type == EventType::Delete as i32)
        {
            return Ok(());
        }
    }
}

/// One in-process watcher on the member's hub (a stream of one watcher), read by its owner.
pub struct KeyWatch<'a> {
    api: &'a Api,
    id: StreamId,
    output: StreamOutput,
}

impl<'a> KeyWatch<'a> {
    /// Watches `[key, range_end)` from revision `start` (0: from now on).
    pub fn open(api: &'a Api, key: &[u8], range_end: Vec<u8>, start: i64) -> KeyWatch<'a> {
        let (id, output) = api.hub.open_stream();
        let create = WatchCreateRequest {
            key: key.to_vec(),
            range_end,
            start_revision: start,
            ..Default::default()
        };
        // A fresh stream's queue is empty: the created reply always fits.
        let _ = api
            .node
            .state()
            .with_current_revision(|current| api.hub.create(id, &create, current));
        KeyWatch { api, id, output }
    }

    /// The next response carrying events; fails when the watcher was canceled (compaction) or
    /// the hub dropped the stream.
    pub async fn next(&mut self) -> Result<WatchResponse, RecipeError> {
        let wake = self.output.wake.clone();
        loop {
            self.api.hub.sync_stream(self.id, &**self.api.node.state());
            while let Some(resp) = self.output.try_next() {
                if let Some(answer) = judge(resp) {
                    return answer;
                }
            }
            if !self.api.hub.is_open(self.id) {
                return Err(watch_canceled(String::new()));
            }
            tokio::select! {
                next = self.output.next() => match next {
                    Some(resp) => {
                        if let Some(answer) = judge(resp) {
                            return answer;
                        }
                    }
                    None => return Err(watch_canceled(String::new())),
                },
                _ = tokio::time::timeout(WATCH_SYNC_TICK, wake.notified()) => {}
            }
        }
    }
}

fn watch_canceled(reason: String) -> RecipeError {
    let text = if reason.is_empty() {
        "etcdserver: watch canceled".to_string()
    } else {
        reason
    };
    RecipeError::Failed(Box::new(ApiError::Internal(text)))
}

/// What a watch response means to a waiting recipe: an answer, or nothing yet (created,
/// progress).
fn judge(resp: WatchResponse) -> Option<Result<WatchResponse, RecipeError>> {
    if resp.canceled {
        return Some(Err(watch_canceled(resp.cancel_reason)));
    }
    (!resp.events.is_empty()).then_some(Ok(resp))
}

impl Drop for KeyWatch<'_> {
    fn drop(&mut self) {
        self.api.hub.close_stream(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_like_etcds_recipes() {
        let p = prefix_of(b"el");
        assert_eq!(p, b"el/");
        assert_eq!(owner_key(&p, 0x2040a218e9629d30), b"el/2040a218e9629d30");
        assert_eq!(prefix_end(b"el/"), b"el0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn recipe_errors_keep_the_text_of_what_failed() {
        let e = RecipeError::from(ApiError::NoLeader);
        assert_eq!(e.message(), "etcdserver: no leader");
        assert_eq!(ApiError::from(e).code(), super::super::Code::Unknown);
        assert_eq!(RecipeError::NotLeader.message(), "election: not leader");
    }
}
