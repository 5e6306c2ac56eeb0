//! `etcdserverpb.KV` over `api::kv`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{req_ctx, status};
use crate::api::{kv, Api};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

/// The KV service.
pub struct KvService {
    api: Arc<Api>,
}

impl KvService {
    pub fn new(api: Arc<Api>) -> Self {
        KvService { api }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let ctx = req_ctx(&request);
        kv::range(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let ctx = req_ctx(&request);
        kv::put(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let ctx = req_ctx(&request);
        kv::delete_range(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let ctx = req_ctx(&request);
        kv::txn(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let ctx = req_ctx(&request);
        kv::compact(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
