//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.
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

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::error::{check_size, kv_status, propose_status};
use super::Ctx;
use crate::apply::{validate, Command, Outcome};
use crate::canary::{self, Canary};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::raft::state_machine::SmView;

/// The KV service.
pub struct KvService {
    ctx: Arc<Ctx>,
}

impl KvService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        KvService { ctx }
    }

    async fn write(&self, encoded_bytes: usize, cmd: Command) -> Result<Outcome, Status> {
        super::cluster::refuse_learner(&self.ctx)?;
        check_size(
            encoded_bytes,
            self.ctx.limits.max_request_bytes,
            self.ctx.limits.grpc_max_recv_bytes,
        )?;
        validate(&cmd, self.ctx.limits.max_txn_ops).map_err(|e| kv_status(&e))?;
        super::forward::propose_or_forward(&self.ctx, cmd).await
    }
}

fn unexpected(what: &str) -> Status {
    // apply answers every command with the outcome of its own kind; anything else is a bug.
    Status::internal(format!("etcdserver: unexpected apply outcome for {what}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        let req = request.into_inner();
        let limits = &self.ctx.limits;
        check_size(
            req.encoded_len(),
            limits.max_request_bytes,
            limits.grpc_max_recv_bytes,
        )?;
        if req.key.is_empty() {
            return Err(kv_status(&crate::mvcc::KvError::EmptyKey));
        }
        if !req.serializable {
            super::cluster::refuse_learner(&self.ctx)?;
            // Planted bug (canary builds only): a follower answers without the read index.
            let planted = canary::active(Canary::FollowerReadWithoutReadIndex)
                && self.ctx.node.current_leader() != Some(self.ctx.node.member_id());
            if !planted {
                self.ctx
                    .node
                    .read_index()
                    .await
                    .map_err(|e| propose_status(&e))?;
            }
        }
        // One key is a lookup; a span counts every key in it, however small the limit.
        let cost = if req.range_end.is_empty() {
            ReadCost::Lookup
        } else {
            ReadCost::Scan
        };
        let mut resp = on_view(&self.ctx, cost, move |sm| sm.state.kv.range(&req))
            .await?
            .map_err(|e| kv_status(&e))?;
        resp.header = Some(self.ctx.header(&resp.header));
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        let req = request.into_inner();
        match self.write(req.encoded_len(), Command::Put(req)).await? {
            Outcome::Put(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("put")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        let req = request.into_inner();
        match self
            .write(req.encoded_len(), Command::DeleteRange(req))
            .await?
        {
            Outcome::DeleteRange(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("delete range")),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        let req = request.into_inner();
        match self.write(req.encoded_len(), Command::Txn(req)).await? {
            Outcome::Txn(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("txn")),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        let req = request.into_inner();
        match self.write(req.encoded_len(), Command::Compact(req)).await? {
            Outcome::Compact(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("compact")),
        }
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
pub(crate) async fn on_view<T, F>(ctx: &Ctx, cost: ReadCost, read: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&SmView) -> T + Send + 'static,
{
    let view = ctx.node.state().view();
    match cost {
        ReadCost::Lookup => Ok(read(&view)),
        ReadCost::Scan => tokio::task::spawn_blocking(move || read(&view))
            .await
            .map_err(|e| Status::internal(format!("etcdserver: read failed: {e}"))),
    }
}

/// Keeps the revision the state machine put in `partial` and fills in the member's identity.
pub(crate) fn full_header(ctx: &Ctx, partial: &Option<ResponseHeader>) -> ResponseHeader {
    ResponseHeader {
        cluster_id: ctx.node.cluster_id(),
        member_id: ctx.node.member_id(),
        revision: partial.as_ref().map_or(0, |h| h.revision),
        raft_term: ctx.node.term(),
    }
}
