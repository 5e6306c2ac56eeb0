//! The server side of the peer protocol (`proto/raft.proto`) on `--listen-peer-urls`: hands
//! openraft's messages to the local raft core, answers read-index requests when leader, and
//! tells peers this member's name and URLs and its HashKV (for the initial corruption check).
//!
//! Invariant: a read index is answered only after openraft confirmed leadership with a quorum.
//! Invariant: a request that cannot be decoded is rejected, never guessed at.

use std::future::Future;
use std::net::SocketAddr;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::network::{decode, encode, PEER_MESSAGE_BYTES_MAX};
use super::state_machine::SmShared;
use super::{MemberNode, NodeId, Raft, TypeConfig};
use crate::mvcc::KvError;
use crate::net::{Listener, ListenerSettings};
use crate::proto::oxraftpb::hash_kv_response::Outcome as HashKvOutcome;
use crate::proto::oxraftpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::oxraftpb::{
    HashKvRequest, HashKvResponse, MemberEntry, MemberInfoRequest, MemberInfoResponse,
    MembershipRequest, MembershipResponse, RaftBlob, ReadIndexRequest, ReadIndexResponse,
    TimeoutNowRequest, TimeoutNowResponse,
};

/// The peer gRPC service of one member.
pub struct PeerService {
    raft: Raft,
    id: NodeId,
    me: MemberNode,
    cluster_id: u64,
    /// How long this member keeps campaigning after a leader asked it to take over.
    campaign_window: std::time::Duration,
    /// The applied state, for HashKv; `None` answers HashKv with Unavailable.
    state: Option<std::sync::Arc<SmShared>>,
}

impl PeerService {
    pub fn new(raft: Raft, id: NodeId, me: MemberNode) -> Self {
        PeerService {
            raft,
            id,
            me,
            cluster_id: 0,
            campaign_window: std::time::Duration::from_secs(5),
            state: None,
        }
    }

    /// Serves HashKv from this applied state.
    pub fn with_state(mut self, state: std::sync::Arc<SmShared>) -> Self {
        self.state = Some(state);
        self
    }

    /// Names the cluster in membership answers and sets the leadership-transfer campaign window.
    pub fn with_cluster(mut self, cluster_id: u64, campaign_window: std::time::Duration) -> Self {
        self.cluster_id = cluster_id;
        self.campaign_window = campaign_window;
        self
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

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let Some(state) = &self.state else {
            return Err(Status::unavailable("this member does not serve HashKv"));
        };
        let revision = request.into_inner().revision;
        let sm = state.read();
        let kv = &sm.state.kv;
        let mut reply = HashKvResponse {
            compact_revision: kv.compact_revision(),
            revision: kv.current_revision(),
            member_id: self.id,
            ..Default::default()
        };
        match kv.hash_kv(revision) {
            Ok((hash, compact_revision)) => {
                reply.hash = hash;
                reply.compact_revision = compact_revision;
            }
            Err(KvError::FutureRev { .. }) => {
                reply.set_outcome(HashKvOutcome::FutureRevision);
            }
            Err(KvError::Compacted { .. }) => reply.set_outcome(HashKvOutcome::Compacted),
            Err(e) => return Err(Status::internal(e.etcd_message())),
        }
        Ok(Response::new(reply))
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
    listener: Listener,
}

impl PeerListener {
    /// Binds `addr` now, so that a port conflict is reported at startup (port 0: any free port).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(PeerListener {
            listener: Listener::bind(addr, ListenerSettings::default())?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
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
        let router = self.listener.settings().server().add_service(svc);
        self.listener.serve(router, shutdown).await
    }
}
