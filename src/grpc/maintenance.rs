//! `etcdserverpb.Maintenance` over `api::maintenance`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status;
use super::stream::ChannelStream;
use crate::api::maintenance;
use crate::api::Api;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};

/// The Maintenance service.
pub struct MaintenanceService {
    api: Arc<Api>,
}

impl MaintenanceService {
    pub fn new(api: Arc<Api>) -> Self {
        MaintenanceService { api }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let ctx = super::req_ctx(&request);
        maintenance::alarm(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        maintenance::status(&self.api)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        // etcd 3.5 lets only root do this, and refuses with the auth package's raw text.
        self.api
            .check_admin_raw(&super::req_ctx(&request))
            .map_err(status)?;
        maintenance::defragment(&self.api)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // etcd 3.5 lets only root do this, and refuses with the auth package's raw text.
        self.api
            .check_admin_raw(&super::req_ctx(&request))
            .map_err(status)?;
        maintenance::hash(&self.api)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        // etcd 3.5 lets only root do this, and refuses with the auth package's raw text.
        self.api
            .check_admin_raw(&super::req_ctx(&request))
            .map_err(status)?;
        maintenance::hash_kv(&self.api, request.get_ref().revision)
            .await
            .map(Response::new)
            .map_err(status)
    }

    type SnapshotStream = ChannelStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        // etcd 3.5 lets only root do this, and refuses with the auth package's raw text.
        self.api
            .check_admin_raw(&super::req_ctx(&request))
            .map_err(status)?;
        Ok(Response::new(ChannelStream::new(maintenance::snapshot(
            &self.api, status,
        ))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        // etcd 3.5 lets only root do this, and refuses with the auth package's raw text.
        self.api
            .check_admin_raw(&super::req_ctx(&request))
            .map_err(status)?;
        maintenance::move_leader(&self.api, request.get_ref().target_id)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        // etcd 3.5.1 checks no permission here (its auth wrapper of the Maintenance service does
        // not cover Downgrade; `tests/downgrade.rs` observes it). Nothing here changes state.
        maintenance::downgrade(&self.api, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
