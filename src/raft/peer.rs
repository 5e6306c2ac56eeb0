//! The server side of the peer protocol (`proto/raft.proto`) on `--listen-peer-urls`: hands
//! openraft's messages to the local raft core, answers read-index requests when leader, and
//! tells peers this member's name and URLs. As leader it also serves the client requests
//! followers forward (`raft::forward`): proposals through this member's own proposer, lease
//! calls through the server's [`LeaseLeader`].
//!
//! Invariant: a read index is answered only after openraft confirmed leadership with a quorum.
//! Invariant: a request that cannot be decoded is rejected, never guessed at.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::forward::{Answer, AppliedResult, LeaseLeader, LeaseLeaderSlot, ProtoBytes};
use super::network::{decode, encode, PEER_MESSAGE_BYTES_MAX};
use super::node::{ProposeError, Proposer};
use super::{MemberNode, NodeId, Raft, TypeConfig};
use crate::proto::oxraftpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::oxraftpb::{
    MemberEntry, MemberInfoRequest, MemberInfoResponse, MembershipRequest, MembershipResponse,
    RaftBlob, ReadIndexRequest, ReadIndexResponse, TimeoutNowRequest, TimeoutNowResponse,
};

/// The peer gRPC service of one member.
pub struct PeerService {
    raft: Raft,
    /// Proposes forwarded commands; `None` for a service built without forwarding.
    proposer: Option<Proposer>,
    lease_leader: LeaseLeaderSlot,
    id: NodeId,
    me: MemberNode,
    cluster_id: u64,
    /// How long this member keeps campaigning after a leader asked it to take over.
    campaign_window: std::time::Duration,
}

impl PeerService {
    pub fn new(raft: Raft, id: NodeId, me: MemberNode) -> Self {
        PeerService {
            raft,
            proposer: None,
            lease_leader: LeaseLeaderSlot::default(),
            id,
            me,
            cluster_id: 0,
            campaign_window: std::time::Duration::from_secs(5),
        }
    }

    /// Names the cluster in membership answers and sets the leadership-transfer campaign window.
    pub fn with_cluster(mut self, cluster_id: u64, campaign_window: std::time::Duration) -> Self {
        self.cluster_id = cluster_id;
        self.campaign_window = campaign_window;
        self
    }

    /// Serves forwarded proposals through `proposer` and forwarded lease calls through the lease
    /// side the server installs in `lease_leader`.
    pub(super) fn with_forwarding(
        mut self,
        proposer: Proposer,
        lease_leader: LeaseLeaderSlot,
    ) -> Self {
        self.proposer = Some(proposer);
        self.lease_leader = lease_leader;
        self
    }

    /// The installed lease side, or the refusal a follower treats as "ask again elsewhere".
    fn leases(&self) -> Answer<Arc<dyn LeaseLeader>> {
        self.lease_leader
            .get()
            .cloned()
            .ok_or(ProposeError::NoLeader)
    }
}

fn blob<T: Serialize>(value: &T) -> Result<Response<RaftBlob>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftBlob { data }))
}

fn parse<T: serde::de::DeserializeOwned>(req: Request<RaftBlob>) -> Result<T, Status> {
    decode(&req.into_inner().data).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = parse(request)?;
        blob(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc: VoteRequest<NodeId> = parse(request)?;
        blob(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = parse(request)?;
        blob(&self.raft.install_snapshot(rpc).await)
    }

    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let reply = match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => ReadIndexResponse {
                ok: true,
                index: read.map_or(0, |l| l.index),
            },
            Err(_) => ReadIndexResponse {
                ok: false,
                index: 0,
            },
        };
        Ok(Response::new(reply))
    }

    async fn member_info(
        &self,
        _request: Request<MemberInfoRequest>,
    ) -> Result<Response<MemberInfoResponse>, Status> {
        Ok(Response::new(MemberInfoResponse {
            id: self.id,
            name: self.me.name.clone(),
            peer_urls: self.me.peer_urls.clone(),
            client_urls: self.me.client_urls.clone(),
        }))
    }

    async fn membership(
        &self,
        _request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberEntry {
                id: *id,
                name: node.name.clone(),
                peer_urls: node.peer_urls.clone(),
                client_urls: node.client_urls.clone(),
                is_learner: !membership.voter_ids().any(|v| v == *id),
            })
            .collect();
        Ok(Response::new(MembershipResponse {
            cluster_id: self.cluster_id,
            member_id: self.id,
            leader_id: m.current_leader.unwrap_or(0),
            membership_index: m.membership_config.log_id().map_or(0, |l| l.index),
            members,
        }))
    }

    async fn timeout_now(
        &self,
        request: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        let req = request.into_inner();
        let m = self.raft.metrics().borrow().clone();
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        if !is_voter || m.current_leader != Some(req.leader_id) {
            return Ok(Response::new(TimeoutNowResponse { ok: false }));
        }
        let handover = Handover {
            leader_id: req.leader_id,
            last_log_index: req.last_log_index,
            window: self.campaign_window,
        };
        tokio::spawn(campaign(self.raft.clone(), self.id, handover));
        Ok(Response::new(TimeoutNowResponse { ok: true }))
    }

    async fn forward_propose(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let cmd: crate::apply::Command = parse(request)?;
        if matches!(cmd, crate::apply::Command::Batch(_)) {
            // Batches are formed by the leader's proposer, never by a request handler.
            return Err(Status::invalid_argument("a batch cannot be forwarded"));
        }
        blob(&self.propose_forwarded(cmd).await)
    }

    async fn forward_lease_keep_alive(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let id: i64 = parse(request)?;
        let answer = match self.leases() {
            Ok(leases) => leases.keep_alive(id).await,
            Err(e) => Err(e),
        };
        blob(&answer)
    }

    async fn forward_lease_time_to_live(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let req: ProtoBytes = parse(request)?;
        let req = req
            .decode()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let answer = match self.leases() {
            Ok(leases) => leases
                .time_to_live(req)
                .await
                .map(|r| ProtoBytes::encode(&r)),
            Err(e) => Err(e),
        };
        blob(&answer)
    }
}

impl PeerService {
    /// The leader side of `ForwardPropose`: propose through this member's own proposer. A
    /// member that does not lead refuses before proposing (`NoLeader`), so the follower may ask
    /// the new leader.
    async fn propose_forwarded(&self, cmd: crate::apply::Command) -> Answer<AppliedResult> {
        let proposer = self.proposer.as_ref().ok_or(ProposeError::NoLeader)?;
        let applied = proposer.propose(cmd).await?;
        Ok(applied.result.clone())
    }
}

/// How often a member asked to take over leadership re-triggers its campaign.
const CAMPAIGN_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the leader said when it asked this member to take over.
struct Handover {
    leader_id: NodeId,
    last_log_index: u64,
    window: std::time::Duration,
}

/// Campaigns until this member leads, another member than the old leader leads, or the window
/// passes. It first waits until it holds the leader's log up to the announced index: a
/// candidate with less log is refused by every member that has it, and campaigning anyway
/// only raises the term and unseats the leader. Each retry starts a new term, so a competing
/// candidate of the same term cannot block it, and members still inside the old leader's
/// lease get asked again once it has run out.
async fn campaign(raft: Raft, id: NodeId, h: Handover) {
    let deadline = tokio::time::Instant::now() + h.window;
    let has_log = raft
        .wait(Some(h.window))
        .metrics(
            |m| m.last_log_index.unwrap_or(0) >= h.last_log_index,
            "transferee holds the leader's log",
        )
        .await;
    if has_log.is_err() {
        tracing::warn!(
            wanted = h.last_log_index,
            "leadership transfer: the leader's log did not arrive; not campaigning"
        );
        return;
    }
    while tokio::time::Instant::now() < deadline {
        let leader = raft.metrics().borrow().current_leader;
        if leader == Some(id) {
            tracing::info!("took over leadership");
            return;
        }
        if let Some(other) = leader.filter(|l| *l != h.leader_id) {
            tracing::info!(leader = %format!("{other:x}"), "another member took over; campaign stopped");
            return;
        }
        if raft.trigger().elect().await.is_err() {
            return;
        }
        tokio::time::sleep(CAMPAIGN_RETRY).await;
    }
    tracing::warn!("leadership transfer campaign did not succeed in time");
}

/// A bound peer listener, ready to serve.
pub struct PeerListener {
    addr: SocketAddr,
    #[cfg(not(madsim))]
    incoming: tonic::transport::server::TcpIncoming,
}

impl PeerListener {
    /// Binds `addr` now, so that a port conflict is reported at startup.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        #[cfg(not(madsim))]
        {
            let incoming =
                tonic::transport::server::TcpIncoming::bind(addr)?.with_nodelay(Some(true));
            let addr = incoming.local_addr()?;
            Ok(PeerListener { addr, incoming })
        }
        #[cfg(madsim)]
        {
            Ok(PeerListener { addr })
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the peer protocol until `shutdown` resolves.
    pub async fn serve(
        self,
        service: PeerService,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let svc = RaftPeerServer::new(service)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let router = tonic::transport::Server::builder().add_service(svc);
        #[cfg(not(madsim))]
        {
            router
                .serve_with_incoming_shutdown(self.incoming, shutdown)
                .await
        }
        #[cfg(madsim)]
        {
            router.serve_with_shutdown(self.addr, shutdown).await
        }
    }
}
