//! `v3electionpb.Election` over `api::election`. Observe runs as one task per stream feeding a
//! bounded channel; it ends when the client goes away (the channel's receiver is dropped).

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::stream::ChannelStream;
use super::{req_ctx, status};
use crate::api::{election, Api, ApiError};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

/// Leader updates queued per Observe stream before the observer waits for the client.
pub const OBSERVE_QUEUE: usize = 16;

/// The Election service.
pub struct ElectionService {
    api: Arc<Api>,
}

impl ElectionService {
    pub fn new(api: Arc<Api>) -> Self {
        ElectionService { api }
    }
}

/// Starts an Observe task; its answers arrive on the returned receiver.
pub fn spawn_observe(
    api: Arc<Api>,
    ctx: crate::api::ReqCtx,
    req: LeaderRequest,
) -> mpsc::Receiver<Result<LeaderResponse, ApiError>> {
    let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
    tokio::spawn(election::observe(api, ctx, req, tx));
    rx
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let ctx = req_ctx(&request);
        election::campaign(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let ctx = req_ctx(&request);
        election::proclaim(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let ctx = req_ctx(&request);
        election::leader(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    type ObserveStream = ChannelStream<Result<LeaderResponse, Status>>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let ctx = req_ctx(&request);
        let mut answers = spawn_observe(self.api.clone(), ctx, request.into_inner());
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    answer = answers.recv() => {
                        let Some(answer) = answer else { return };
                        if tx.send(answer.map_err(status)).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ChannelStream::new(rx)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let ctx = req_ctx(&request);
        election::resign(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
