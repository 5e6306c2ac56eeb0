//! `etcdserverpb.Lease` over `api::lease`. The keep-alive stream is served here: one task per
//! stream reads requests and answers each with `api::lease::keep_alive`; an error ends the
//! stream with that status.
//!
//! Invariant: a stream's queue of answers is bounded (`KEEP_ALIVE_QUEUE`); a client that does
//! not read its answers stops being read.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::stream::ChannelStream;
use super::{req_ctx, status};
use crate::api::{lease, Api};
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

/// Answers queued per keep-alive stream before the stream's reader waits for the client.
const KEEP_ALIVE_QUEUE: usize = 16;

/// The Lease service.
pub struct LeaseService {
    api: Arc<Api>,
}

impl LeaseService {
    /// Also installs this member's leader side of forwarded lease calls on the node.
    pub fn new(api: Arc<Api>) -> Self {
        lease::install_leader_side(&api);
        LeaseService { api }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let ctx = req_ctx(&request);
        lease::grant(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let ctx = req_ctx(&request);
        lease::revoke(&self.api, &ctx, request.get_ref().id)
            .await
            .map(Response::new)
            .map_err(status)
    }

    type LeaseKeepAliveStream = ChannelStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let ctx = req_ctx(&request);
        lease::open_keep_alive(&self.api, &ctx).map_err(status)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_QUEUE);
        let api = self.api.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let answer = lease::keep_alive(&api, req.id).await.map_err(status);
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ChannelStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let ctx = req_ctx(&request);
        lease::time_to_live(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let ctx = req_ctx(&request);
        lease::leases(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }
}
