//! Peer network seam for openraft.
//!
//! A single-member cluster never sends a raft message, so the only transport today is
//! [`NoPeers`], which reports every peer as unreachable. The gRPC peer transport on
//! `--listen-peer-urls` (and its simulated twin) plugs in here behind the same factory type.
//!
//! Invariant: this module never fabricates a successful reply; an unreachable peer is an error.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};

use super::{MemberNode, NodeId, TypeConfig};

/// Network factory for a cluster whose only member is this node.
#[derive(Debug, Default, Clone)]
pub struct NoPeers;

/// The (never reachable) client for one peer.
#[derive(Debug)]
pub struct NoPeerClient {
    target: NodeId,
}

#[derive(Debug)]
struct NoTransport(NodeId);

impl std::fmt::Display for NoTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no peer transport to member {:x}", self.0)
    }
}

impl std::error::Error for NoTransport {}

impl NoPeerClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, MemberNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &MemberNode) -> Self::Network {
        NoPeerClient { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>>
    {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, MemberNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
