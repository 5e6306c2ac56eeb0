//! Peer network for openraft: the gRPC client side of the peer protocol (`proto/raft.proto`).
//!
//! [`PeerNetwork`] is the `RaftNetworkFactory`; it keeps one lazily-connected tonic `Channel`
//! per peer URL, shared by every client of that peer, so creating a client never blocks and a
//! dead peer costs nothing until a message is sent to it. Each RPC is bounded by openraft's
//! per-RPC deadline (`RPCOption::hard_ttl`, derived from the heartbeat and election settings,
//! or `install_snapshot_timeout` for snapshot chunks). Raft messages travel as bincode bytes.
//!
//! The same channels carry the client requests a follower forwards to the leader
//! (`forward_propose`, `forward_keep_alive`, `forward_time_to_live`; see `raft::forward`), each
//! bounded by the deadline its caller gives.
//!
//! Invariant: this module never fabricates a successful reply; a peer that cannot be reached,
//! times out or answers garbage is an error to openraft.
//! Invariant: no call here waits longer than the deadline it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::forward::{Answer, AppliedResult, ForwardError, ProtoBytes};
use super::{MemberNode, NodeId, TypeConfig};
use crate::apply::Command;
use crate::proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::proto::oxraftpb::raft_peer_client::RaftPeerClient;
use crate::proto::oxraftpb::{
    MemberInfoRequest, MembershipRequest, MembershipResponse, RaftBlob, ReadIndexRequest,
    TimeoutNowRequest,
};

/// Largest peer message either side accepts: a 4 MiB snapshot chunk or a batch of entries of up
/// to `--max-request-bytes` each, with room to spare.
pub const PEER_MESSAGE_BYTES_MAX: usize = 1 << 30;

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// The member has no peer URL we can dial.
    NoUrl(NodeId),
    /// The URL is not a valid endpoint.
    BadUrl(String),
    /// The deadline passed.
    Timeout(Duration),
    /// The transport failed or the peer answered with an error status.
    Transport(String),
    /// The reply could not be encoded or decoded.
    Codec(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::NoUrl(id) => write!(f, "member {id:x} has no peer URL"),
            PeerError::BadUrl(u) => write!(f, "bad peer URL {u:?}"),
            PeerError::Timeout(d) => write!(f, "peer call timed out after {d:?}"),
            PeerError::Transport(e) => write!(f, "peer transport: {e}"),
            PeerError::Codec(e) => write!(f, "peer message codec: {e}"),
        }
    }
}

impl std::error::Error for PeerError {}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PeerError> {
    bincode::serialize(value).map_err(|e| PeerError::Codec(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PeerError> {
    bincode::deserialize(bytes).map_err(|e| PeerError::Codec(e.to_string()))
}

/// The network factory: lazily-connected channels to peers, keyed by peer URL.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
    contact: Contacts,
}

/// Which peers raft's own messages currently reach, and since when without a failure in
/// between (etcd's transport "active since"), for the membership pre-checks.
#[derive(Clone, Default)]
pub struct Contacts(Arc<Mutex<HashMap<NodeId, tokio::time::Instant>>>);

impl Contacts {
    fn record(&self, peer: NodeId, reached: bool) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if reached {
            map.entry(peer).or_insert_with(tokio::time::Instant::now);
        } else {
            map.remove(&peer);
        }
    }

    /// Since when `peer` has answered every raft message; `None` when the last one failed or
    /// none was sent yet.
    pub fn active_since(&self, peer: NodeId) -> Option<tokio::time::Instant> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&peer).copied()
    }
}

impl PeerNetwork {
    /// `connect_timeout` bounds a TCP connect to a peer (etcd's dial timeout is ~1 s).
    pub fn new(connect_timeout: Duration) -> Self {
        PeerNetwork {
            channels: Arc::new(Mutex::new(HashMap::new())),
            connect_timeout,
            contact: Contacts::default(),
        }
    }

    /// Which peers raft's messages currently reach.
    pub fn contacts(&self) -> &Contacts {
        &self.contact
    }

    /// The shared channel to `url`; created (not connected) on first use.
    pub fn channel(&self, url: &str) -> Result<Channel, PeerError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(url) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|_| PeerError::BadUrl(url.to_string()))?;
        let ch = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        map.insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    /// A gRPC client for member `id` at its first peer URL.
    pub fn client(
        &self,
        id: NodeId,
        node: &MemberNode,
    ) -> Result<RaftPeerClient<Channel>, PeerError> {
        let url = node.peer_urls.first().ok_or(PeerError::NoUrl(id))?;
        let ch = self.channel(url)?;
        Ok(RaftPeerClient::new(ch)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }

    /// Asks the leader `id` for a read index (its commit index, confirmed by a quorum).
    /// `Ok(None)`: the member is not the leader.
    pub async fn read_index(
        &self,
        id: NodeId,
        node: &MemberNode,
        timeout: Duration,
    ) -> Result<Option<u64>, PeerError> {
        let mut client = self.client(id, node)?;
        let reply = with_deadline(timeout, client.read_index(ReadIndexRequest {})).await?;
        Ok(reply.ok.then_some(reply.index))
    }

    /// Asks member `id` for its own name and URLs.
    pub async fn member_info(
        &self,
        id: NodeId,
        node: &MemberNode,
        timeout: Duration,
    ) -> Result<MemberNode, PeerError> {
        let mut client = self.client(id, node)?;
        let reply = with_deadline(timeout, client.member_info(MemberInfoRequest {})).await?;
        if reply.id != id {
            return Err(PeerError::Transport(format!(
                "peer URL of {id:x} is served by member {:x}",
                reply.id
            )));
        }
        Ok(MemberNode {
            name: reply.name,
            peer_urls: reply.peer_urls,
            client_urls: reply.client_urls,
        })
    }
}

impl PeerNetwork {
    /// Asks the member at peer URL `url` for its view of the cluster.
    pub async fn membership_at(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<MembershipResponse, PeerError> {
        let mut client = RaftPeerClient::new(self.channel(url)?);
        with_deadline(timeout, client.membership(MembershipRequest {})).await
    }

    /// Tells member `id` to campaign at once (leadership transfer); `Ok(false)` when it refused.
    pub async fn timeout_now(
        &self,
        id: NodeId,
        node: &MemberNode,
        req: TimeoutNowRequest,
        timeout: Duration,
    ) -> Result<bool, PeerError> {
        let mut client = self.client(id, node)?;
        Ok(with_deadline(timeout, client.timeout_now(req)).await?.ok)
    }
}

/// The forwarding RPCs (`raft::forward`).
#[derive(Clone, Copy)]
enum Forward {
    Propose,
    KeepAlive,
    TimeToLive,
}

impl PeerNetwork {
    /// Sends a client command to leader `id`, which proposes it; its applied result, or the
    /// leader's refusal (`NoLeader`: it does not lead and proposed nothing).
    pub async fn forward_propose(
        &self,
        id: NodeId,
        node: &MemberNode,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<AppliedResult, ForwardError> {
        self.forward_call(id, node, Forward::Propose, cmd, timeout)
            .await
    }

    /// One keep-alive of lease `lease` on leader `id`; the TTL it answered (0: unknown lease).
    pub async fn forward_keep_alive(
        &self,
        id: NodeId,
        node: &MemberNode,
        lease: i64,
        timeout: Duration,
    ) -> Result<i64, ForwardError> {
        self.forward_call(id, node, Forward::KeepAlive, &lease, timeout)
            .await
    }

    /// Leader `id`'s view of a lease's remaining time (it owns the deadlines).
    pub async fn forward_time_to_live(
        &self,
        id: NodeId,
        node: &MemberNode,
        req: &LeaseTimeToLiveRequest,
        timeout: Duration,
    ) -> Result<LeaseTimeToLiveResponse, ForwardError> {
        let req = ProtoBytes::encode(req);
        let resp: ProtoBytes = self
            .forward_call(id, node, Forward::TimeToLive, &req, timeout)
            .await?;
        resp.decode().map_err(ForwardError::Peer)
    }

    async fn forward_call<Req: Serialize, T: DeserializeOwned>(
        &self,
        id: NodeId,
        node: &MemberNode,
        rpc: Forward,
        req: &Req,
        timeout: Duration,
    ) -> Result<T, ForwardError> {
        let mut client = self.client(id, node).map_err(ForwardError::Peer)?;
        let data = encode(req).map_err(ForwardError::Peer)?;
        let blob = RaftBlob { data };
        let fut = async {
            match rpc {
                Forward::Propose => client.forward_propose(blob).await,
                Forward::KeepAlive => client.forward_lease_keep_alive(blob).await,
                Forward::TimeToLive => client.forward_lease_time_to_live(blob).await,
            }
        };
        let reply = with_deadline(timeout, fut)
            .await
            .map_err(ForwardError::Peer)?;
        let answer: Answer<T> = decode(&reply.data).map_err(ForwardError::Peer)?;
        answer.map_err(ForwardError::Leader)
    }
}

async fn with_deadline<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(PeerError::Timeout(timeout)),
        Ok(Err(status)) => Err(PeerError::Transport(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Self::Network {
        PeerClient {
            target,
            client: self.client(target, node),
            contact: self.contact.clone(),
        }
    }
}

/// openraft's client for one peer.
pub struct PeerClient {
    target: NodeId,
    client: Result<RaftPeerClient<Channel>, PeerError>,
    contact: Contacts,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    /// Sends one bincode-encoded request and decodes openraft's remote result.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, MemberNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.target;
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let blob = RaftBlob { data };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(blob).await,
                Rpc::Vote => client.vote(blob).await,
                Rpc::Snapshot => client.install_snapshot(blob).await,
            }
        };
        let reply = with_deadline(ttl, fut).await;
        self.contact.record(target, reply.is_ok());
        let reply = match reply {
            Ok(r) => r,
            Err(e @ PeerError::Transport(_)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let result: Result<Resp, E> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>>
    {
        self.call(Rpc::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, MemberNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A loopback URL on which nothing listens (the port was free a moment ago).
    fn dead_url() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn raft_messages_round_trip_through_the_codec() {
        let vote = VoteRequest::<NodeId>::new(
            Vote::new(7, 42),
            Some(LogId::new(CommittedLeaderId::new(6, 41), 1234)),
        );
        let back: VoteRequest<NodeId> = decode(&encode(&vote).unwrap()).unwrap();
        assert_eq!(back, vote);
        let remote: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            Ok(VoteResponse::new(Vote::new(7, 42), None, true));
        let back: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            decode(&encode(&remote).unwrap()).unwrap();
        assert_eq!(back, remote);
        assert!(matches!(
            decode::<VoteRequest<NodeId>>(b"\x01"),
            Err(PeerError::Codec(_))
        ));
    }

    #[test]
    fn one_channel_per_peer_url() {
        let rt = runtime();
        rt.block_on(async {
            let net = PeerNetwork::new(Duration::from_millis(200));
            let url = dead_url();
            net.channel(&url).unwrap();
            net.channel(&url).unwrap();
            net.channel(&dead_url()).unwrap();
            assert_eq!(net.channels.lock().unwrap().len(), 2);
            assert!(matches!(
                net.channel("not a url"),
                Err(PeerError::BadUrl(_))
            ));
        });
    }

    #[test]
    fn a_dead_peer_is_unreachable_within_the_deadline() {
        let rt = runtime();
        rt.block_on(async {
            let mut net = PeerNetwork::new(Duration::from_millis(200));
            let node = MemberNode {
                name: "b".into(),
                peer_urls: vec![dead_url()],
                client_urls: vec![],
            };
            let mut client = net.new_client(2, &node).await;
            let started = std::time::Instant::now();
            let rpc = VoteRequest::<NodeId>::new(Vote::new(1, 1), None);
            let err = client
                .vote(rpc, RPCOption::new(Duration::from_millis(500)))
                .await
                .unwrap_err();
            assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
            assert!(started.elapsed() < Duration::from_millis(1500));
            let no_url = MemberNode::default();
            let mut client = net.new_client(3, &no_url).await;
            let rpc = VoteRequest::<NodeId>::new(Vote::new(1, 1), None);
            let err = client
                .vote(rpc, RPCOption::new(Duration::from_millis(500)))
                .await
                .unwrap_err();
            assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
            assert!(net
                .read_index(2, &node, Duration::from_millis(500))
                .await
                .is_err());
        });
    }
}
