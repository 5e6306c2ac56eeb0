//! `etcdserverpb.Cluster`: the member list from raft's membership, and membership changes
//! (MemberAdd/Remove/Update/Promote) made by the leader through `raft::membership`. A follower
//! forwards a change to the leader's client URL, as etcd's followers hand proposals to theirs.
//!
//! Invariant: a change is made only by the leader; a follower never changes anything itself.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::raft::membership::{MemberEntry, MembershipError};

/// etcd's text when a learner receives a request it does not serve.
pub const LEARNER_UNSUPPORTED: &str = "etcdserver: rpc not supported for learner";

/// The status etcd answers for a membership error.
pub fn membership_status(e: &MembershipError) -> Status {
    let msg = e.etcd_message();
    match e {
        MembershipError::MemberNotFound => Status::not_found(msg),
        MembershipError::Timeout
        | MembershipError::TransferTimeout
        | MembershipError::Stopped
        | MembershipError::Unhealthy
        | MembershipError::Raft(_) => Status::unavailable(msg),
        _ => Status::failed_precondition(msg),
    }
}

/// Fails with etcd's learner status when this member is a learner.
pub fn refuse_learner(ctx: &Ctx) -> Result<(), Status> {
    if ctx.node.is_learner() {
        return Err(Status::unavailable(LEARNER_UNSUPPORTED));
    }
    Ok(())
}

fn to_member(e: &MemberEntry) -> Member {
    Member {
        id: e.id,
        name: e.node.name.clone(),
        peer_ur_ls: e.node.peer_urls.clone(),
        client_ur_ls: e.node.client_urls.clone(),
        is_learner: e.is_learner,
    }
}

fn to_members(entries: &[MemberEntry]) -> Vec<Member> {
    let mut out: Vec<Member> = entries.iter().map(to_member).collect();
    out.sort_by_key(|m| m.id);
    out
}

/// Peer URLs as etcd validates and stores them (parsed, sorted); "etcdserver: given member
/// URLs are invalid" otherwise.
fn check_urls(urls: &[String]) -> Result<Vec<String>, Status> {
    let invalid = || Status::invalid_argument("etcdserver: given member URLs are invalid");
    if urls.is_empty() {
        return Err(invalid());
    }
    let mut parsed = Vec::with_capacity(urls.len());
    for u in urls {
        parsed.push(crate::config::Url::parse(u).map_err(|_| invalid())?);
    }
    crate::config::sort_urls(&mut parsed);
    Ok(parsed.iter().map(ToString::to_string).collect())
}

/// Bound on connecting to the leader when forwarding a change.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The service.
pub struct ClusterService {
    ctx: Arc<Ctx>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        ClusterService { ctx }
    }

    /// Every member raft has applied, voters and learners, ordered by ID.
    fn members(&self) -> Vec<Member> {
        let sm = self.ctx.node.state().read();
        let entries = crate::raft::membership::entries(sm.membership.membership());
        to_members(&entries)
    }

    fn header(&self) -> crate::proto::etcdserverpb::ResponseHeader {
        // etcd's cluster responses carry no revision.
        self.ctx.header(&None)
    }

    /// A Cluster client on the leader's client URL, for a change this follower cannot make;
    /// `None` while no other member is known to lead.
    async fn leader_client(&self) -> Result<Option<ClusterClient<Channel>>, Status> {
        let Some(leader) = super::forward::published_leader(&self.ctx).await else {
            return Ok(None);
        };
        let url = leader
            .client_urls
            .first()
            .ok_or_else(|| Status::unavailable(super::error::NO_LEADER))?;
        // An https client URL is dialed with the peer TLS settings (one CA for both ports, as
        // in the usual deployment).
        let channel = self
            .ctx
            .node
            .dialer()
            .lazy_channel(url, FORWARD_CONNECT_TIMEOUT)
            .map_err(|_| Status::unavailable(super::error::NO_LEADER))?;
        Ok(Some(ClusterClient::new(channel)))
    }

    /// Runs a membership call here when this member leads, or names the leader to forward it
    /// to. While no leader is known (an election, or this member just lost or is just taking
    /// leadership) it asks again until `LEADER_WAIT` has passed, then fails with etcd's "no
    /// leader". Bug guarded against: a call that found no leader for an instant failed at once.
    async fn on_leader<T, F, Fut>(&self, local: F) -> Result<Routed<T>, Status>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, MembershipError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            match local().await {
                Ok(v) => return Ok(Routed::Here(v)),
                Err(MembershipError::NotLeader) => {}
                Err(e) => return Err(membership_status(&e)),
            }
            if let Some(client) = self.leader_client().await? {
                return Ok(Routed::Leader(client));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(super::error::NO_LEADER));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }
}

/// Where a membership call ended up: done here, or to be sent to the leader.
enum Routed<T> {
    Here(T),
    Leader(ClusterClient<Channel>),
}

/// How long a membership call waits for some member to lead before failing.
const LEADER_WAIT: Duration = Duration::from_secs(3);
const LEADER_POLL: Duration = Duration::from_millis(50);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        let urls = check_urls(&req.peer_ur_ls)?;
        let routed = self
            .on_leader(async || self.ctx.node.add_member(urls.clone(), req.is_learner).await)
            .await?;
        match routed {
            Routed::Here((id, entries)) => {
                let members = to_members(&entries);
                let member = members.iter().find(|m| m.id == id).cloned();
                Ok(Response::new(MemberAddResponse {
                    header: Some(self.header()),
                    member,
                    members,
                }))
            }
            Routed::Leader(mut leader) => {
                let resp = leader.member_add(req).await?;
                Ok(Response::new(MemberAddResponse {
                    header: Some(self.header()),
                    ..resp.into_inner()
                }))
            }
        }
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        match self
            .on_leader(|| self.ctx.node.remove_member(req.id))
            .await?
        {
            Routed::Here(entries) => Ok(Response::new(MemberRemoveResponse {
                header: Some(self.header()),
                members: to_members(&entries),
            })),
            Routed::Leader(mut leader) => {
                let resp = leader.member_remove(req).await?;
                Ok(Response::new(MemberRemoveResponse {
                    header: Some(self.header()),
                    ..resp.into_inner()
                }))
            }
        }
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        let urls = check_urls(&req.peer_ur_ls)?;
        match self
            .on_leader(|| self.ctx.node.update_member(req.id, urls.clone()))
            .await?
        {
            Routed::Here(entries) => Ok(Response::new(MemberUpdateResponse {
                header: Some(self.header()),
                members: to_members(&entries),
            })),
            Routed::Leader(mut leader) => {
                let resp = leader.member_update(req).await?;
                Ok(Response::new(MemberUpdateResponse {
                    header: Some(self.header()),
                    ..resp.into_inner()
                }))
            }
        }
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        refuse_learner(&self.ctx)?;
        if request.get_ref().linearizable {
            self.ctx
                .node
                .read_index()
                .await
                .map_err(|e| super::error::propose_status(&e))?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.header()),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        match self
            .on_leader(|| self.ctx.node.promote_member(req.id))
            .await?
        {
            Routed::Here(entries) => Ok(Response::new(MemberPromoteResponse {
                header: Some(self.header()),
                members: to_members(&entries),
            })),
            Routed::Leader(mut leader) => {
                let resp = leader.member_promote(req).await?;
                Ok(Response::new(MemberPromoteResponse {
                    header: Some(self.header()),
                    ..resp.into_inner()
                }))
            }
        }
    }
}
