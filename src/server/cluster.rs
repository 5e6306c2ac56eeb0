//! `etcdserverpb.Cluster`: the member list from raft's membership, and membership changes
//! (MemberAdd/Remove/Update/Promote) made by the leader through `raft::membership`. A follower
//! forwards a change to the leader over the peer protocol (`raft::forward::MembershipChange`),
//! never through the leader's client URL (which may need client certificates and tokens).
//!
//! Invariant: a change is made only by the leader; a follower never changes anything itself.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::Ctx;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::raft::forward::{ForwardError, MembershipChange, MembershipDone};
use crate::raft::membership::{MemberEntry, MembershipError};
use crate::raft::node::{ProposeError, RaftNode};

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

    /// Makes `change` here when this member leads, or has the leader make it (over the peer
    /// protocol, `ForwardMembership`). While no leader is known, or the member asked answers
    /// that it no longer leads (it changed nothing), it asks again until `LEADER_WAIT` has
    /// passed, then fails with etcd's "no leader". The whole call ends within etcd's request
    /// timeout. Bug guarded against: a call that found no leader for an instant failed at once.
    async fn change(&self, change: MembershipChange) -> Result<MembershipDone, Status> {
        let node = &self.ctx.node;
        let now = tokio::time::Instant::now();
        let leader_deadline = now + LEADER_WAIT;
        let deadline = now + node.request_timeout();
        loop {
            match change_here(node, change.clone()).await {
                Ok(done) => return Ok(done),
                Err(MembershipError::NotLeader) => {}
                Err(e) => return Err(membership_status(&e)),
            }
            if let Some((leader, leader_node)) = node.remote_leader() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match node
                    .forward_membership(leader, &leader_node, &change, left)
                    .await
                {
                    Ok(answer) => return answer.map_err(|e| membership_status(&e)),
                    // It no longer leads and did nothing: look for the new leader.
                    Err(ForwardError::Leader(ProposeError::NoLeader)) => {}
                    Err(e) => return Err(super::error::forward_status(&e)),
                }
            }
            if tokio::time::Instant::now() >= leader_deadline {
                return Err(Status::unavailable(super::error::NO_LEADER));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }
}

/// `change` made by this member's raft (refused with `NotLeader` unless it leads).
async fn change_here(
    node: &RaftNode,
    change: MembershipChange,
) -> Result<MembershipDone, MembershipError> {
    let members_only = |members| MembershipDone {
        added: None,
        members,
    };
    match change {
        MembershipChange::Add {
            peer_urls,
            is_learner,
        } => {
            let (id, members) = node.add_member(peer_urls, is_learner).await?;
            Ok(MembershipDone {
                added: Some(id),
                members,
            })
        }
        MembershipChange::Remove { id } => node.remove_member(id).await.map(members_only),
        MembershipChange::Update { id, peer_urls } => {
            node.update_member(id, peer_urls).await.map(members_only)
        }
        MembershipChange::Promote { id } => node.promote_member(id).await.map(members_only),
    }
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
        let peer_urls = check_urls(&req.peer_ur_ls)?;
        let done = self
            .change(MembershipChange::Add {
                peer_urls,
                is_learner: req.is_learner,
            })
            .await?;
        let members = to_members(&done.members);
        let member = members.iter().find(|m| Some(m.id) == done.added).cloned();
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header()),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let id = request.get_ref().id;
        let done = self.change(MembershipChange::Remove { id }).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header()),
            members: to_members(&done.members),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        let peer_urls = check_urls(&req.peer_ur_ls)?;
        let done = self
            .change(MembershipChange::Update {
                id: req.id,
                peer_urls,
            })
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.header()),
            members: to_members(&done.members),
        }))
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
        let id = request.get_ref().id;
        let done = self.change(MembershipChange::Promote { id }).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header()),
            members: to_members(&done.members),
        }))
    }
}
