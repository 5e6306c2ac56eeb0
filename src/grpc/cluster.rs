//! `etcdserverpb.Cluster` over `api::cluster`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::status;
use crate::api::{cluster, Api};
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

/// The Cluster service.
pub struct ClusterService {
    api: Arc<Api>,
}

impl ClusterService {
    pub fn new(api: Arc<Api>) -> Self {
        ClusterService { api }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes need the root role while auth is enabled.
        self.api
            .check_admin(&super::req_ctx(&request))
            .map_err(status)?;
        cluster::member_add(&self.api, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes need the root role while auth is enabled.
        self.api
            .check_admin(&super::req_ctx(&request))
            .map_err(status)?;
        cluster::member_remove(&self.api, request.get_ref().id)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes need the root role while auth is enabled.
        self.api
            .check_admin(&super::req_ctx(&request))
            .map_err(status)?;
        cluster::member_update(&self.api, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        cluster::member_list(&self.api, request.get_ref().linearizable)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes need the root role while auth is enabled.
        self.api
            .check_admin(&super::req_ctx(&request))
            .map_err(status)?;
        cluster::member_promote(&self.api, request.get_ref().id)
            .await
            .map(Response::new)
            .map_err(status)
    }
}
