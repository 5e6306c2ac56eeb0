//! etcd's KV calls: Range, Put, DeleteRange, Txn, Compact.
//!
//! Writes are validated here (size limits, etcd's pre-proposal checks), proposed through raft
//! and answered from the applied result. Linearizable ranges pass the read-index barrier first;
//! serializable ranges read the local applied state directly. Either way the range runs on a
//! view of the state ([`on_view`]), never under the state machine's lock.
//!
//! Invariant: no write is answered before raft applied it; a failed proposal that may have been
//! applied (timeout) is never reported as "not applied".
//! Invariant: a read holds the state machine lock only to take its O(1) view; work that grows
//! with the key space runs on a blocking thread, off the async workers raft shares.

use prost::Message;

use super::error::check_size;
use super::forward::propose_or_forward;
use super::{Api, ApiError, ReqCtx};
use crate::apply::{validate, Command, Outcome};
use crate::canary::{self, Canary};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::raft::state_machine::SmView;

/// The checks every write passes before it is proposed, then the proposal (or the forward).
async fn write(
    api: &Api,
    ctx: &ReqCtx,
    encoded_bytes: usize,
    cmd: Command,
) -> Result<Outcome, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    check_size(
        encoded_bytes,
        api.limits.max_request_bytes,
        api.limits.grpc_max_recv_bytes,
    )?;
    validate(&cmd, api.limits.max_txn_ops)?;
    super::quota::check(api, ctx, &cmd).await?;
    propose_or_forward(api, ctx, cmd).await
}

fn unexpected(what: &str) -> ApiError {
    // apply answers every command with the outcome of its own kind; anything else is a bug.
    ApiError::Internal(format!("etcdserver: unexpected apply outcome for {what}"))
}

/// Range: linearizable unless the request says serializable.
pub async fn range(api: &Api, ctx: &ReqCtx, req: RangeRequest) -> Result<RangeResponse, ApiError> {
    api.check_leader(ctx)?;
    let limits = &api.limits;
    check_size(
        req.encoded_len(),
        limits.max_request_bytes,
        limits.grpc_max_recv_bytes,
    )?;
    if req.key.is_empty() {
        return Err(ApiError::Kv(crate::mvcc::KvError::EmptyKey));
    }
    // Planted bug (canary builds only): the permission check before the read index.
    let checked_early = canary::active(Canary::AuthCheckBeforeReadIndex);
    if checked_early {
        api.check_read(ctx, &req.key, &req.range_end)?;
    }
    if !req.serializable {
        api.refuse_learner()?;
        // Planted bug (canary builds only): a follower answers without the read index.
        let planted = canary::active(Canary::FollowerReadWithoutReadIndex)
            && api.node.current_leader() != Some(api.node.member_id());
        if !planted {
            api.node.read_index().await?;
        }
    }
    // After the read index, so a linearizable read is checked against an auth store at least
    // as new as the data it reads (etcd's order).
    if !checked_early {
        api.check_read(ctx, &req.key, &req.range_end)?;
    }
    // One key is a lookup; a span counts every key in it, however small the limit.
    let cost = if req.range_end.is_empty() {
        ReadCost::Lookup
    } else {
        ReadCost::Scan
    };
    let mut resp = on_view(api, cost, move |sm| sm.state.kv.range(&req)).await??;
    crate::metrics::MVCC_RANGE.inc();
    resp.header = Some(api.header(&resp.header));
    Ok(resp)
}

pub async fn put(api: &Api, ctx: &ReqCtx, req: PutRequest) -> Result<PutResponse, ApiError> {
    match write(api, ctx, req.encoded_len(), Command::Put(req)).await? {
        Outcome::Put(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("put")),
    }
}

pub async fn delete_range(
    api: &Api,
    ctx: &ReqCtx,
    req: DeleteRangeRequest,
) -> Result<DeleteRangeResponse, ApiError> {
    match write(api, ctx, req.encoded_len(), Command::DeleteRange(req)).await? {
        Outcome::DeleteRange(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("delete range")),
    }
}

pub async fn txn(api: &Api, ctx: &ReqCtx, req: TxnRequest) -> Result<TxnResponse, ApiError> {
    match write(api, ctx, req.encoded_len(), Command::Txn(req)).await? {
        Outcome::Txn(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("txn")),
    }
}

pub async fn compact(
    api: &Api,
    ctx: &ReqCtx,
    req: CompactionRequest,
) -> Result<CompactionResponse, ApiError> {
    let physical = req.physical.then_some(req.revision);
    match write(api, ctx, req.encoded_len(), Command::Compact(req)).await? {
        Outcome::Compact(mut resp) => {
            // `physical`: answer once this member dropped what the compaction frees (etcd
            // waits for its backend deletions the same way).
            if let Some(revision) = physical {
                api.node.state().compaction_finished(revision).await;
            }
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("compact")),
    }
}

/// How much work a read does on its view, which decides where it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadCost {
    /// O(log keys) or less: runs on the calling worker (a thread hand-off would cost more).
    Lookup,
    /// Grows with the key space or history (a span, a count, a hash): runs on a blocking thread.
    Scan,
}

/// Runs `read` on a view of the applied state (see `SmShared::view`): the state machine lock is
/// held only while the O(1) view is taken, so apply never waits for a read. A [`ReadCost::Scan`]
/// runs under `spawn_blocking` so the async workers (and raft's heartbeats on them) stay free;
/// the view is dropped there too, with whatever nodes only it still held.
pub(crate) async fn on_view<T, F>(api: &Api, cost: ReadCost, read: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&SmView) -> T + Send + 'static,
{
    let view = api.node.state().view();
    match cost {
        ReadCost::Lookup => Ok(read(&view)),
        ReadCost::Scan => crate::raft::runtime::spawn_blocking(move || read(&view))
            .await
            .map_err(|e| ApiError::Internal(format!("etcdserver: read failed: {e}"))),
    }
}
