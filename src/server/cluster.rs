//! `etcdserverpb.Cluster`: the member list from raft's membership.
//!
//! Membership changes (MemberAdd/Remove/Update/Promote) belong to multi-member support and
//! answer `Unimplemented` until it lands, rather than pretending to succeed.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};

/// The Cluster service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ClusterService { ctx }
    }

    /// Every member raft knows, voters and learners, ordered by ID.
    fn members(&self) -> Vec<Member> {
        let sm = self.ctx.node.state().read();
        let membership = sm.membership.membership();
        let mut out: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: node.client_urls.clone(),
                is_learner: !membership.voter_ids().any(|v| v == *id),
            })
            .collect();
        out.sort_by_key(|m| m.id);
        out
    }

    fn header(&self) -> crate::proto::etcdserverpb::ResponseHeader {
        // etcd's cluster responses carry no revision.
        self.ctx.header(&None)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented("adding members is not supported yet"))
    }

    async fn member_remove(&self, _request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented("removing members is not supported yet"))
    }

    async fn member_update(&self, _request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("updating members is not supported yet"))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.ctx.node.read_index().await.map_err(|e| super::error::propose_status(&e))?;
        }
        Ok(Response::new(MemberListResponse { header: Some(self.header()), members: self.members() }))
    }

    async fn member_promote(&self, _request: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented("promoting members is not supported yet"))
    }
}
