//! `v3lockpb.Lock` over `api::lock`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{req_ctx, status};
use crate::api::{lock, Api};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

/// The Lock service.
pub struct LockService {
    api: Arc<Api>,
}

impl LockService {
    pub fn new(api: Arc<Api>) -> Self {
        LockService { api }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let ctx = req_ctx(&request);
        lock::lock(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let ctx = req_ctx(&request);
        lock::unlock(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
