//! The server side of the peer protocol (`proto/raft.proto`) on `--listen-peer-urls`: hands
//! openraft's messages to the local raft core, answers read-index requests when leader, and
//! tells peers this member's name and URLs and its HashKV (for the initial corruption check).
//! As leader it also serves the client requests followers forward (`raft::forward`):
//! proposals through this member's own proposer, lease calls through the server's
//! [`LeaseLeader`]; forwarded requests are admitted from members only.
//!
//! Who may talk to this member: every handler first calls [`PeerService::admit`] with what
//! kind of request it serves ([`PeerRpc`]); the rules, checked against the sender identity
//! `network::stamp` puts in the request metadata and this member's current membership:
//! - every request names its sender's member and cluster ID; a request without them is
//!   refused (FailedPrecondition), and one naming another cluster is refused with etcd's
//!   rafthttp text "cluster ID mismatch" (FailedPrecondition; etcd answers HTTP 412);
//! - `Membership` (discovery) is the one exception for a sender that does not know its IDs
//!   yet: a member joining with `--initial-cluster-state existing` sends cluster ID 0 and its
//!   peer URLs, and is answered only when one of those URLs belongs to a member of this
//!   cluster (it was `member add`ed); anyone else naming cluster 0 is refused;
//! - append-entries and install-snapshot must come from the leader they name (raft's own term
//!   and log checks decide the rest, so a member that has not yet seen the entry adding a new
//!   leader still accepts it);
//! - a vote request must come from the candidate it names, a member of this member's
//!   membership (any sender while the membership is still empty: a joining member);
//! - a read index is answered only to a member of the membership;
//! - `TimeoutNow` makes this member campaign only when it comes from the current leader of the
//!   current term (otherwise it is answered `ok: false` and ignored).
//!
//! Identities are what the sender claims: this keeps members of other clusters and removed
//! members out by mistake, not an attacker out (peer TLS with client certificates does that).
//!
//! Sizes: the service decodes at most `PEER_MESSAGE_BYTES_MAX`; each RPC then refuses a
//! message above its own bound (`network::*_BYTES_MAX`) before decoding it.
//!
//! Invariant: a read index is answered only after openraft confirmed leadership with a quorum.
//! Invariant: a request that cannot be decoded is rejected, never guessed at.
//! Invariant: no handler acts on a request before `admit` accepted it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::forward::{
    Answer, AppliedResult, LeaseLeader, LeaseLeaderSlot, MembershipAnswer, MembershipChange,
    ProtoBytes,
};
use super::membership::MembershipError;
use super::network::{
    decode, encode, identity_of, PeerIdentity, APPEND_ENTRIES_BYTES_MAX,
    INSTALL_SNAPSHOT_BYTES_MAX, PEER_MESSAGE_BYTES_MAX, VOTE_BYTES_MAX,
};
use super::node::{ProposeError, Proposer, RaftNode};
use super::state_machine::SmShared;
use super::{MemberNode, NodeId, Raft, TypeConfig};
use crate::mvcc::KvError;
use crate::net::{Listener, ListenerSettings, ServerTls};
use crate::proto::oxraftpb::hash_kv_response::Outcome as HashKvOutcome;
use crate::proto::oxraftpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use crate::proto::oxraftpb::{
    HashKvRequest, HashKvResponse, MemberEntry, MemberInfoRequest, MemberInfoResponse,
    MembershipRequest, MembershipResponse, RaftBlob, ReadIndexRequest, ReadIndexResponse,
    TimeoutNowRequest, TimeoutNowResponse,
};

/// Test-only fault switch, set by `main` from `OXETCD_TEST_SKEW_HASH_KV`: this member answers
/// `HashKv` with a wrong hash, which a corruption check must catch. Never set otherwise.
pub static SKEW_HASH_KV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The peer gRPC service of one member.
pub struct PeerService {
    raft: Raft,
    /// Proposes forwarded commands; `None` for a service built without forwarding.
    proposer: Option<Proposer>,
    lease_leader: LeaseLeaderSlot,
    /// Makes forwarded membership changes; held weakly (the node owns this service's task).
    membership: Option<std::sync::Weak<RaftNode>>,
    id: NodeId,
    me: MemberNode,
    cluster_id: u64,
    /// How long this member keeps campaigning after a leader asked it to take over.
    campaign_window: std::time::Duration,
    leader_contact: LeaderContact,
    /// The applied state, for HashKv; `None` answers HashKv with Unavailable.
    state: Option<std::sync::Arc<SmShared>>,
}

/// When this member last took an append-entries call that its raft did not refuse for an old
/// vote: the sign that a leader still reaches it. openraft's metrics do not give a follower
/// this (its `current_leader` stays set after that leader went silent or was deposed, and a
/// joiner that took one late append from a deposed leader would show that leader forever).
#[derive(Clone, Default)]
pub struct LeaderContact(std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl LeaderContact {
    fn note(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
    }

    /// How long ago the last such call came; `None` if none came since this process started.
    pub fn since(&self) -> Option<std::time::Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }
}

impl PeerService {
    pub fn new(raft: Raft, id: NodeId, me: MemberNode) -> Self {
        PeerService {
            raft,
            proposer: None,
            lease_leader: LeaseLeaderSlot::default(),
            membership: None,
            id,
            me,
            cluster_id: 0,
            campaign_window: std::time::Duration::from_secs(5),
            state: None,
            leader_contact: LeaderContact::default(),
        }
    }

    /// Notes every append-entries call from a current leader in `contact`.
    pub(super) fn with_leader_contact(mut self, contact: LeaderContact) -> Self {
        self.leader_contact = contact;
        self
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

    /// Makes the membership changes followers forward through `node` (when it leads).
    pub(super) fn with_membership(mut self, node: std::sync::Weak<RaftNode>) -> Self {
        self.membership = Some(node);
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

/// Decodes a raft message of at most `bytes_max` encoded bytes.
fn parse<T: serde::de::DeserializeOwned>(data: &[u8], bytes_max: usize) -> Result<T, Status> {
    if data.len() > bytes_max {
        return Err(Status::resource_exhausted(format!(
            "peer message larger than max ({} vs. {bytes_max})",
            data.len()
        )));
    }
    decode(data).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// etcd's rafthttp answer to a peer of another cluster.
pub const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";
/// The refusal a joining member gets when its peer URLs are not in the member list (its
/// discovery reports it as "not in the cluster's member list").
pub const NOT_A_MEMBER: &str = "peer URLs are not in this cluster's member list";

/// What a peer request asks for, with what the rules need to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRpc {
    /// Append-entries or install-snapshot from the leader the message names.
    FromLeader {
        leader: Option<NodeId>,
    },
    /// A vote request from the candidate it names.
    Vote {
        candidate: Option<NodeId>,
    },
    ReadIndex,
    /// HashKv for a peer's initial corruption check: members only, like the read index.
    HashKv,
    /// A client request a follower forwards to its leader: members only.
    Forward,
    MemberInfo,
    Membership,
    TimeoutNow,
}

/// This member's side of an admission decision.
#[derive(Debug, Clone, Default)]
pub struct LocalView {
    pub cluster_id: u64,
    /// Members (voters and learners) of the membership this member uses.
    pub members: Vec<(NodeId, Vec<String>)>,
}

impl LocalView {
    fn is_member(&self, id: NodeId) -> bool {
        self.members.iter().any(|(m, _)| *m == id)
    }

    fn knows_peer_url(&self, urls: &[String]) -> bool {
        self.members
            .iter()
            .any(|(_, known)| urls.iter().any(|u| known.contains(u)))
    }
}

/// The admission rules of the module header, as a function of the sender and this member's
/// view. Returns the sender's identity when admitted.
pub fn admit(
    view: &LocalView,
    sender: Option<PeerIdentity>,
    rpc: PeerRpc,
) -> Result<PeerIdentity, Status> {
    let Some(sender) = sender else {
        return Err(Status::failed_precondition(
            "peer request without the sender's member and cluster ID",
        ));
    };
    if rpc == PeerRpc::Membership && sender.cluster_id == 0 {
        return if view.knows_peer_url(&sender.peer_urls) {
            Ok(sender)
        } else {
            Err(Status::failed_precondition(format!(
                "{NOT_A_MEMBER}: {:?}",
                sender.peer_urls
            )))
        };
    }
    if sender.cluster_id != view.cluster_id {
        tracing::warn!(
            local = %format!("{:x}", view.cluster_id),
            remote = %format!("{:x}", sender.cluster_id),
            sender = %format!("{:x}", sender.member_id),
            "refused a peer request of another cluster"
        );
        return Err(Status::failed_precondition(CLUSTER_ID_MISMATCH));
    }
    let from = sender.member_id;
    let refuse = |why: &str| {
        Err(Status::failed_precondition(format!(
            "peer request from member {from:x} refused: {why}"
        )))
    };
    match rpc {
        PeerRpc::FromLeader { leader } if leader != Some(from) => {
            refuse("it is not the leader the message names")
        }
        PeerRpc::Vote { candidate } if candidate != Some(from) => {
            refuse("it is not the candidate the message names")
        }
        PeerRpc::Vote { .. } if !view.members.is_empty() && !view.is_member(from) => {
            refuse("it is not a member of this cluster")
        }
        PeerRpc::ReadIndex | PeerRpc::HashKv | PeerRpc::Forward if !view.is_member(from) => {
            refuse("it is not a member of this cluster")
        }
        _ => Ok(sender),
    }
}

impl PeerService {
    /// This member's view for [`admit`], from the membership raft uses now.
    fn local_view(&self) -> LocalView {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let members = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.peer_urls.clone()))
            .collect();
        LocalView {
            cluster_id: self.cluster_id,
            members,
        }
    }

    /// THE admission check every handler runs first (see the module header).
    pub fn admit<T>(&self, request: &Request<T>, rpc: PeerRpc) -> Result<PeerIdentity, Status> {
        admit(&self.local_view(), identity_of(request.metadata()), rpc)
    }
}

/// Counts an admitted raft message and its reply into the peer traffic metrics.
fn counted(
    from: &PeerIdentity,
    request: &Request<RaftBlob>,
    reply: Result<Response<RaftBlob>, Status>,
) -> Result<Response<RaftBlob>, Status> {
    crate::metrics::peer_received(from.member_id, request.get_ref().data.len() as u64);
    if let Ok(r) = &reply {
        crate::metrics::peer_sent(from.member_id, r.get_ref().data.len() as u64);
    }
    reply
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            parse(&request.get_ref().data, APPEND_ENTRIES_BYTES_MAX)?;
        let leader = rpc.vote.leader_id().voted_for();
        let from = self.admit(&request, PeerRpc::FromLeader { leader })?;
        let answer = self.raft.append_entries(rpc).await;
        if matches!(&answer, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.leader_contact.note();
        }
        counted(&from, &request, blob(&answer))
    }

    async fn vote(&self, request: Request<RaftBlob>) -> Result<Response<RaftBlob>, Status> {
        let rpc: VoteRequest<NodeId> = parse(&request.get_ref().data, VOTE_BYTES_MAX)?;
        let candidate = rpc.vote.leader_id().voted_for();
        let from = self.admit(&request, PeerRpc::Vote { candidate })?;
        counted(&from, &request, blob(&self.raft.vote(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            parse(&request.get_ref().data, INSTALL_SNAPSHOT_BYTES_MAX)?;
        let leader = rpc.vote.leader_id().voted_for();
        let from = self.admit(&request, PeerRpc::FromLeader { leader })?;
        counted(
            &from,
            &request,
            blob(&self.raft.install_snapshot(rpc).await),
        )
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.admit(&request, PeerRpc::ReadIndex)?;
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
        request: Request<MemberInfoRequest>,
    ) -> Result<Response<MemberInfoResponse>, Status> {
        self.admit(&request, PeerRpc::MemberInfo)?;
        Ok(Response::new(MemberInfoResponse {
            id: self.id,
            name: self.me.name.clone(),
            peer_urls: self.me.peer_urls.clone(),
            client_urls: self.me.client_urls.clone(),
        }))
    }

    async fn membership(
        &self,
        request: Request<MembershipRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        self.admit(&request, PeerRpc::Membership)?;
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
        let sender = self.admit(&request, PeerRpc::TimeoutNow)?;
        let req = request.into_inner();
        let m = self.raft.metrics().borrow().clone();
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        if !timeout_now_from_leader(&m, sender.member_id, &req) || !is_voter {
            tracing::warn!(
                sender = %format!("{:x}", sender.member_id),
                term = req.term,
                "ignored a leadership hand-over not sent by the current leader of the current term"
            );
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
        self.admit(&request, PeerRpc::HashKv)?;
        let Some(state) = &self.state else {
            return Err(Status::unavailable("this member does not serve HashKv"));
        };
        let revision = request.into_inner().revision;
        // Hashing walks the whole history: on a view, off the async workers, never under the
        // state machine's lock.
        let view = state.view();
        let computed = crate::raft::runtime::spawn_blocking(move || {
            let kv = &view.state.kv;
            (
                kv.compact_revision(),
                kv.current_revision(),
                kv.hash_kv(revision),
            )
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let (compact_revision, current_revision, hashed) = computed;
        let mut reply = HashKvResponse {
            compact_revision,
            revision: current_revision,
            member_id: self.id,
            ..Default::default()
        };
        match hashed {
            Ok((hash, compact_revision)) => {
                // Test-only fault (`OXETCD_TEST_SKEW_HASH_KV`): answer another hash, as a
                // member whose data silently differs would.
                reply.hash = if SKEW_HASH_KV.load(std::sync::atomic::Ordering::Relaxed) {
                    hash ^ 0x5a5a_5a5a
                } else {
                    hash
                };
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

    async fn forward_propose(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        self.admit(&request, PeerRpc::Forward)?;
        // One envelope: batches are formed by the leader's proposer, never forwarded.
        let envelope: crate::apply::Envelope =
            parse(&request.get_ref().data, APPEND_ENTRIES_BYTES_MAX)?;
        blob(&self.propose_forwarded(envelope).await)
    }

    async fn forward_lease_keep_alive(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        self.admit(&request, PeerRpc::Forward)?;
        let id: i64 = parse(&request.get_ref().data, VOTE_BYTES_MAX)?;
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
        self.admit(&request, PeerRpc::Forward)?;
        let req: ProtoBytes = parse(&request.get_ref().data, VOTE_BYTES_MAX)?;
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

    async fn forward_membership(
        &self,
        request: Request<RaftBlob>,
    ) -> Result<Response<RaftBlob>, Status> {
        self.admit(&request, PeerRpc::Forward)?;
        let change: MembershipChange = parse(&request.get_ref().data, VOTE_BYTES_MAX)?;
        blob(&self.change_membership(change).await)
    }
}

impl PeerService {
    /// The leader side of `ForwardMembership`: the change made through this member's own
    /// membership calls. A member that does not lead refuses (`NoLeader`) and changes nothing.
    async fn change_membership(&self, change: MembershipChange) -> Answer<MembershipAnswer> {
        let node = self
            .membership
            .as_ref()
            .ok_or(ProposeError::NoLeader)?
            .upgrade()
            .ok_or(ProposeError::Stopped)?;
        let done = node.change_membership(change).await;
        match done {
            Err(MembershipError::NotLeader) => Err(ProposeError::NoLeader),
            other => Ok(other),
        }
    }

    /// The leader side of `ForwardPropose`: propose through this member's own proposer. A
    /// member that does not lead refuses before proposing (`NoLeader`), so the follower may ask
    /// the new leader.
    async fn propose_forwarded(&self, envelope: crate::apply::Envelope) -> Answer<AppliedResult> {
        let proposer = self.proposer.as_ref().ok_or(ProposeError::NoLeader)?;
        let applied = proposer.propose(envelope).await?;
        Ok(applied.result.clone())
    }
}

/// Whether a `TimeoutNow` comes from the leader this member follows, in the current term,
/// naming itself as that leader.
fn timeout_now_from_leader(
    m: &openraft::RaftMetrics<NodeId, MemberNode>,
    sender: NodeId,
    req: &TimeoutNowRequest,
) -> bool {
    req.leader_id == sender && m.current_leader == Some(sender) && req.term == m.current_term
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
    /// With `tls`, every connection is a TLS session (an `https://` peer URL).
    pub fn bind(addr: SocketAddr, tls: Option<ServerTls>) -> std::io::Result<Self> {
        PeerListener::bind_to(&crate::net::listener::BindAddr::Tcp(addr), tls)
    }

    /// As [`PeerListener::bind`], for a TCP address or a unix socket (a `unix://` peer URL).
    pub fn bind_to(
        addr: &crate::net::listener::BindAddr,
        tls: Option<ServerTls>,
    ) -> std::io::Result<Self> {
        let settings = ListenerSettings {
            tls,
            ..ListenerSettings::default()
        };
        Ok(PeerListener {
            listener: Listener::bind_to(addr, settings)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> LocalView {
        LocalView {
            cluster_id: 0xc1,
            members: vec![
                (1, vec!["http://a:2380".into()]),
                (2, vec!["http://b:2380".into()]),
            ],
        }
    }

    fn from(member_id: NodeId, cluster_id: u64) -> Option<PeerIdentity> {
        Some(PeerIdentity {
            member_id,
            cluster_id,
            peer_urls: Vec::new(),
        })
    }

    /// Bug guarded against: raft messages carried no cluster ID, so a member of another
    /// cluster (e.g. a reused peer port) could append entries or win votes here.
    #[test]
    fn a_peer_of_another_cluster_is_refused_with_etcds_text() {
        for rpc in [
            PeerRpc::FromLeader { leader: Some(1) },
            PeerRpc::Vote { candidate: Some(1) },
            PeerRpc::ReadIndex,
            PeerRpc::MemberInfo,
            PeerRpc::Membership,
            PeerRpc::TimeoutNow,
        ] {
            let err = admit(&view(), from(1, 0xc2), rpc).unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{rpc:?}");
            assert_eq!(err.message(), CLUSTER_ID_MISMATCH, "{rpc:?}");
            let anonymous = admit(&view(), None, rpc).unwrap_err();
            assert_eq!(anonymous.code(), tonic::Code::FailedPrecondition);
            assert!(admit(&view(), from(1, 0xc1), rpc).is_ok(), "{rpc:?}");
        }
    }

    #[test]
    fn raft_messages_come_from_the_members_they_name() {
        let v = view();
        // A leader message whose sender is not the leader it names.
        assert!(admit(&v, from(2, 0xc1), PeerRpc::FromLeader { leader: Some(1) }).is_err());
        // A leader not (yet) in this member's membership is still heard: raft's own checks
        // decide, and a lagging member must be able to learn about a new leader.
        assert!(admit(&v, from(9, 0xc1), PeerRpc::FromLeader { leader: Some(9) }).is_ok());
        // Votes only from members, except while this member knows no membership at all.
        assert!(admit(&v, from(9, 0xc1), PeerRpc::Vote { candidate: Some(9) }).is_err());
        assert!(admit(&v, from(2, 0xc1), PeerRpc::Vote { candidate: Some(1) }).is_err());
        let empty = LocalView {
            cluster_id: 0xc1,
            members: Vec::new(),
        };
        assert!(admit(&empty, from(9, 0xc1), PeerRpc::Vote { candidate: Some(9) }).is_ok());
        assert!(admit(&v, from(9, 0xc1), PeerRpc::ReadIndex).is_err());
    }

    #[test]
    fn discovery_answers_only_listed_peer_urls_when_the_cluster_is_unknown() {
        let joining = |urls: &[&str]| {
            Some(PeerIdentity {
                member_id: 0,
                cluster_id: 0,
                peer_urls: urls.iter().map(|u| u.to_string()).collect(),
            })
        };
        assert!(admit(&view(), joining(&["http://b:2380"]), PeerRpc::Membership).is_ok());
        let err = admit(&view(), joining(&["http://x:2380"]), PeerRpc::Membership).unwrap_err();
        assert!(err.message().contains(NOT_A_MEMBER), "{}", err.message());
        assert!(admit(&view(), joining(&[]), PeerRpc::Membership).is_err());
        // Cluster 0 opens nothing but discovery.
        assert!(admit(&view(), joining(&["http://b:2380"]), PeerRpc::ReadIndex).is_err());
    }

    #[test]
    fn an_oversized_message_is_refused_before_decoding() {
        let big = vec![0u8; VOTE_BYTES_MAX + 1];
        let err = parse::<VoteRequest<NodeId>>(&big, VOTE_BYTES_MAX).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        // A length prefix claiming more than the message holds is an error, not an allocation.
        let lying = u64::MAX.to_le_bytes();
        assert!(decode::<Vec<u8>>(&lying).is_err());
    }

    /// Bug guarded against: any member could claim to be the leader and make this member
    /// campaign (unseating the real leader).
    #[test]
    fn timeout_now_only_from_the_current_leader_of_the_current_term() {
        let mut m = openraft::RaftMetrics::<NodeId, MemberNode>::new_initial(3);
        m.current_leader = Some(1);
        m.current_term = 5;
        let req = |leader_id, term| TimeoutNowRequest {
            leader_id,
            term,
            last_log_index: 0,
        };
        assert!(timeout_now_from_leader(&m, 1, &req(1, 5)));
        assert!(
            !timeout_now_from_leader(&m, 2, &req(1, 5)),
            "sender is not the leader"
        );
        assert!(
            !timeout_now_from_leader(&m, 2, &req(2, 5)),
            "claims to lead, does not"
        );
        assert!(!timeout_now_from_leader(&m, 1, &req(1, 4)), "an older term");
    }
}
