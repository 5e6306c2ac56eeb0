//! Peer network for openraft: the gRPC client side of the peer protocol (`proto/raft.proto`).
//!
//! [`PeerNetwork`] is the `RaftNetworkFactory`; it keeps one lazily-connected tonic `Channel`
//! per peer URL, shared by every client of that peer, so creating a client never blocks and a
//! dead peer costs nothing until a message is sent to it. Each RPC is bounded by openraft's
//! per-RPC deadline (`RPCOption::hard_ttl`, derived from the heartbeat and election settings,
//! or `install_snapshot_timeout` for snapshot chunks).
//!
//! Raft messages (requests and openraft's results) travel in a `RaftBlob` as
//! ```text
//! blob := tag:"OXR" version:u8=1 message      ; message = bincode of the openraft type
//! ```
//! A blob with another tag is refused (members must speak the same peer format); decoding is
//! bounded by the blob's length, and entries inside carry their own proposal tag
//! (`apply::proposal`).
//!
//! Every request carries the sender's identity (member ID, cluster ID and advertised peer URLs)
//! as gRPC metadata, set by [`stamp`] and nowhere else; the receiver admits it with
//! `peer::admit` (see there for the rules).
//!
//! The same channels carry the client requests a follower forwards to the leader
//! (`forward_propose`, `forward_keep_alive`, `forward_time_to_live`, `forward_membership`; see
//! `raft::forward`), each bounded by the deadline its caller gives.
//!
//! Invariant: this module never fabricates a successful reply; a peer that cannot be reached,
//! times out or answers garbage is an error to openraft.
//! Invariant: no call here waits longer than the deadline it was given.
//! Invariant: no message sent is larger than the receiver accepts for its RPC: an append-entries
//!   batch over [`APPEND_ENTRIES_BYTES_MAX`] is handed back to openraft as `PayloadTooLarge` with
//!   a smaller entry count, which it retries at once.

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
use tonic::transport::Channel;

use super::forward::{
    Answer, AppliedResult, ForwardError, MembershipAnswer, MembershipChange, ProtoBytes,
};
use super::{MemberNode, NodeId, TypeConfig};
use crate::net::{DialError, Dialer};
use crate::proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use crate::proto::oxraftpb::raft_peer_client::RaftPeerClient;
use crate::proto::oxraftpb::{
    HashKvRequest, HashKvResponse, MemberInfoRequest, MembershipRequest, MembershipResponse,
    RaftBlob, ReadIndexRequest, TimeoutNowRequest,
};

/// Largest peer message either side decodes: an append-entries batch (see
/// [`APPEND_ENTRIES_BYTES_MAX`]); each RPC then applies its own, smaller bound.
pub const PEER_MESSAGE_BYTES_MAX: usize = APPEND_ENTRIES_BYTES_MAX;

/// Largest encoded append-entries request: openraft's batch of entries, each at most one
/// client request (`--max-request-bytes`, etcd's default 1.5 MiB) or one batched entry
/// (`batch` packs at most 1 MiB), so 64 MiB holds dozens of the largest entries. A larger
/// batch is split by the sender (`PayloadTooLarge`); a single entry above it cannot be sent
/// (only possible with `--max-request-bytes` above 64 MiB, which etcd also warns against).
pub const APPEND_ENTRIES_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The snapshot chunk size openraft sends (`snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Largest encoded install-snapshot request: one chunk plus its metadata (the membership and
/// IDs; 1 MiB of slack is far more than they take).
pub const INSTALL_SNAPSHOT_BYTES_MAX: usize = SNAPSHOT_CHUNK_BYTES + 1024 * 1024;

/// Largest encoded vote request (a vote and a log ID: well under 100 bytes).
pub const VOTE_BYTES_MAX: usize = 64 * 1024;

/// Metadata keys carrying the sender's identity on every peer request.
pub const MEMBER_ID_KEY: &str = "x-oxetcd-member-id";
pub const CLUSTER_ID_KEY: &str = "x-oxetcd-cluster-id";
pub const PEER_URLS_KEY: &str = "x-oxetcd-peer-urls";

/// Who sends a peer request. A member joining an existing cluster does not know its IDs yet
/// while it discovers them: it sends 0 for both (and its peer URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub member_id: NodeId,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
}

/// Wraps `message` in a request carrying `identity`: THE place where peer requests get their
/// sender metadata. IDs travel as lowercase hex (as etcd prints them), URLs comma-separated; a
/// URL list that is not valid metadata is left out (the receiver then does not know it).
pub fn stamp<T>(identity: &PeerIdentity, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    if let Ok(v) = format!("{:x}", identity.member_id).parse() {
        metadata.insert(MEMBER_ID_KEY, v);
    }
    if let Ok(v) = format!("{:x}", identity.cluster_id).parse() {
        metadata.insert(CLUSTER_ID_KEY, v);
    }
    if !identity.peer_urls.is_empty() {
        if let Ok(v) = identity.peer_urls.join(",").parse() {
            metadata.insert(PEER_URLS_KEY, v);
        }
    }
    request
}

/// The sender identity [`stamp`] put on a request; `None` when the IDs are missing or malformed.
pub fn identity_of(metadata: &tonic::metadata::MetadataMap) -> Option<PeerIdentity> {
    let hex = |key: &str| {
        let text = metadata.get(key)?.to_str().ok()?;
        u64::from_str_radix(text, 16).ok()
    };
    let peer_urls = metadata
        .get(PEER_URLS_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Some(PeerIdentity {
        member_id: hex(MEMBER_ID_KEY)?,
        cluster_id: hex(CLUSTER_ID_KEY)?,
        peer_urls,
    })
}

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
    /// The call never left this process (the connection was refused or never became ready):
    /// the peer received nothing, so the caller may send it elsewhere.
    Unsent(String),
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
            PeerError::Unsent(e) => write!(f, "peer unreachable (nothing sent): {e}"),
            PeerError::Codec(e) => write!(f, "peer message codec: {e}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// The tag in front of every raft message blob: peer format version 1.
pub const PEER_TAG_V1: [u8; 4] = *b"OXR\x01";

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PeerError> {
    let mut out = PEER_TAG_V1.to_vec();
    bincode::serialize_into(&mut out, value).map_err(|e| PeerError::Codec(e.to_string()))?;
    Ok(out)
}

/// Decodes with `bincode::deserialize`'s encoding, never reading (or allocating for) more than
/// the message holds: a length prefix larger than the bytes left is an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PeerError> {
    let Some(message) = bytes.strip_prefix(&PEER_TAG_V1) else {
        let mut tag = [0u8; 4];
        let present = bytes.len().min(4);
        tag[..present].copy_from_slice(&bytes[..present]);
        let what = "peer message";
        return Err(PeerError::Codec(
            crate::apply::CodecError::UnknownFormat { what, tag }.to_string(),
        ));
    };
    crate::apply::decode_bounded(message).map_err(|e| PeerError::Codec(e.to_string()))
}

/// The network factory: lazily-connected channels to peers, keyed by peer URL.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    dialer: Dialer,
    connect_timeout: Duration,
    contact: Contacts,
    /// This member, as every request names it.
    identity: Arc<PeerIdentity>,
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
    /// `dialer` makes the channels (TLS for `https://` peer URLs); `connect_timeout` bounds a
    /// connect to a peer (etcd's dial timeout is ~1 s). Requests name `identity` as their
    /// sender.
    pub fn new(dialer: Dialer, connect_timeout: Duration, identity: PeerIdentity) -> Self {
        PeerNetwork {
            channels: Arc::new(Mutex::new(HashMap::new())),
            dialer,
            connect_timeout,
            contact: Contacts::default(),
            identity: Arc::new(identity),
        }
    }

    /// A request from this member carrying `message`.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        stamp(&self.identity, message)
    }

    /// The dialer this member reaches other members with (their peer URLs, and, for
    /// membership calls a follower hands to the leader, its client URLs).
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
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
        let ch = self
            .dialer
            .lazy_channel(url, self.connect_timeout)
            .map_err(|e| match e {
                DialError::BadUrl(u) => PeerError::BadUrl(u),
                other => PeerError::Transport(other.to_string()),
            })?;
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
        let client = self.client(id, node)?;
        let call = || {
            let mut client = client.clone();
            let request = self.request(ReadIndexRequest {});
            async move { client.read_index(request).await }
        };
        let reply = with_deadline_once(timeout, call).await?;
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
        let reply = with_deadline(
            timeout,
            client.member_info(self.request(MemberInfoRequest {})),
        )
        .await?;
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
        with_deadline(
            timeout,
            client.membership(self.request(MembershipRequest {})),
        )
        .await
    }

    /// The HashKV of the member at `url` at `revision` (initial corruption check).
    pub async fn hash_kv_at(
        &self,
        url: &str,
        revision: i64,
        timeout: Duration,
    ) -> Result<HashKvResponse, PeerError> {
        let mut client = RaftPeerClient::new(self.channel(url)?);
        with_deadline(
            timeout,
            client.hash_kv(self.request(HashKvRequest { revision })),
        )
        .await
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
        Ok(
            with_deadline(timeout, client.timeout_now(self.request(req)))
                .await?
                .ok,
        )
    }
}

/// The forwarding RPCs (`raft::forward`).
#[derive(Clone, Copy)]
enum Forward {
    Propose,
    KeepAlive,
    TimeToLive,
    Membership,
}

impl PeerNetwork {
    /// Sends a client command to leader `id`, which proposes it; its applied result, or the
    /// leader's refusal (`NoLeader`: it does not lead and proposed nothing).
    pub async fn forward_propose(
        &self,
        id: NodeId,
        node: &MemberNode,
        envelope: &crate::apply::Envelope,
        timeout: Duration,
    ) -> Result<AppliedResult, ForwardError> {
        self.forward_call(id, node, Forward::Propose, envelope, timeout)
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

    /// A membership change made by leader `id`: what it did, its refusal of the change, or
    /// (`ForwardError::Leader(NoLeader)`) word that it does not lead and did nothing.
    pub async fn forward_membership(
        &self,
        id: NodeId,
        node: &MemberNode,
        change: &MembershipChange,
        timeout: Duration,
    ) -> Result<MembershipAnswer, ForwardError> {
        self.forward_call(id, node, Forward::Membership, change, timeout)
            .await
    }

    async fn forward_call<Req: Serialize, T: DeserializeOwned>(
        &self,
        id: NodeId,
        node: &MemberNode,
        rpc: Forward,
        req: &Req,
        timeout: Duration,
    ) -> Result<T, ForwardError> {
        let client = self.client(id, node).map_err(ForwardError::Peer)?;
        let data = encode(req).map_err(ForwardError::Peer)?;
        let call = || {
            let mut client = client.clone();
            let blob = self.request(RaftBlob { data: data.clone() });
            async move {
                match rpc {
                    Forward::Propose => client.forward_propose(blob).await,
                    Forward::KeepAlive => client.forward_lease_keep_alive(blob).await,
                    Forward::TimeToLive => client.forward_lease_time_to_live(blob).await,
                    Forward::Membership => client.forward_membership(blob).await,
                }
            }
        };
        let planted = matches!(rpc, Forward::Propose)
            && crate::canary::active(crate::canary::Canary::ResendForwardedProposal);
        let reply = if planted {
            // Planted bug (test-only `canary` feature): resends what may have been received.
            with_deadline_resending_any(timeout, call).await
        } else if matches!(rpc, Forward::Propose) {
            // The caller looks for the leader again (it may have changed) and asks that one.
            with_deadline_once(timeout, call).await
        } else {
            with_deadline_resending_unsent(timeout, call).await
        }
        .map_err(ForwardError::Peer)?;
        let answer: Answer<T> = decode(&reply.data).map_err(ForwardError::Peer)?;
        answer.map_err(ForwardError::Leader)
    }
}

/// Pause before sending again a call whose connection could not be made.
const UNSENT_RETRY: Duration = Duration::from_millis(50);

/// Whether a call failed before its request left this process: the channel never became ready
/// (tonic's generated clients report that as `Unknown` "Service was not ready: ..."), or the
/// connection it needed was refused (the error chain holds a `ConnectionRefused` I/O error:
/// nothing listened, so nothing was received).
fn never_sent(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::Unknown
        && status.message().starts_with("Service was not ready")
    {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// As [`with_deadline`], but a call that failed before anything was sent is made again (after
/// [`UNSENT_RETRY`]) while the deadline allows: resending it cannot apply anything twice. Bug
/// guarded against: a follower's first forward to a leader whose connection attempt had failed
/// earlier (during the election, before the leader listened) got the stale connection error and
/// answered the client "request timed out, possibly due to connection lost".
async fn with_deadline_resending_unsent<T, F, Fut>(
    timeout: Duration,
    call: F,
) -> Result<T, PeerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, call()).await {
            Err(_) => return Err(PeerError::Timeout(timeout)),
            Ok(Err(status))
                if never_sent(&status) && tokio::time::Instant::now() + UNSENT_RETRY < deadline =>
            {
                tokio::time::sleep(UNSENT_RETRY).await;
            }
            Ok(Err(status)) => {
                return Err(PeerError::Transport(format!(
                    "{:?}: {}",
                    status.code(),
                    status.message()
                )))
            }
            Ok(Ok(resp)) => return Ok(resp.into_inner()),
        }
    }
}

/// One attempt of `call` within `timeout`; a call that never left the process is reported as
/// [`PeerError::Unsent`] (the caller may send it elsewhere), any other failure as `Transport`.
async fn with_deadline_once<T, F, Fut>(timeout: Duration, call: F) -> Result<T, PeerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call()).await {
        Err(_) => Err(PeerError::Timeout(timeout)),
        Ok(Err(status)) => {
            let text = format!("{:?}: {}", status.code(), status.message());
            Err(if never_sent(&status) {
                PeerError::Unsent(text)
            } else {
                PeerError::Transport(text)
            })
        }
        Ok(Ok(resp)) => Ok(resp.into_inner()),
    }
}

/// The planted bug of [`crate::canary::Canary::ResendForwardedProposal`]: a call without an
/// answer within `RESEND_FORWARD_AFTER` (or that failed) is sent again while the deadline allows.
async fn with_deadline_resending_any<T, F, Fut>(timeout: Duration, call: F) -> Result<T, PeerError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(PeerError::Timeout(timeout));
        }
        let attempt = left.min(crate::canary::RESEND_FORWARD_AFTER);
        if let Ok(Ok(resp)) = tokio::time::timeout(attempt, call()).await {
            return Ok(resp.into_inner());
        }
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
            identity: self.identity.clone(),
        }
    }
}

/// openraft's client for one peer.
pub struct PeerClient {
    target: NodeId,
    client: Result<RaftPeerClient<Channel>, PeerError>,
    contact: Contacts,
    identity: Arc<PeerIdentity>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    /// An append-entries call without entries: its round trip is the peer RTT metric.
    Heartbeat,
    Vote,
    Snapshot,
}

impl Rpc {
    /// The largest encoded request the receiver accepts for this RPC.
    fn bytes_max(self) -> usize {
        match self {
            Rpc::Append | Rpc::Heartbeat => APPEND_ENTRIES_BYTES_MAX,
            Rpc::Vote => VOTE_BYTES_MAX,
            Rpc::Snapshot => INSTALL_SNAPSHOT_BYTES_MAX,
        }
    }
}

/// How many of `entries` entries, encoded in `bytes` bytes, to send at once so that the batch
/// fits in [`APPEND_ENTRIES_BYTES_MAX`] (entries are assumed of even size; openraft retries
/// with this hint, and a batch that still does not fit is split again). At least one.
fn entries_that_fit(entries: usize, bytes: usize) -> u64 {
    let fit = (entries as u128 * APPEND_ENTRIES_BYTES_MAX as u128) / (bytes.max(1) as u128);
    u64::try_from(fit)
        .unwrap_or(u64::MAX)
        .clamp(1, entries.max(1) as u64)
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
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(rpc, data, ttl).await
    }

    /// Sends one encoded request and decodes openraft's remote result.
    async fn send<Resp, E>(
        &mut self,
        rpc: Rpc,
        data: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, MemberNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let target = self.target;
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(e))),
        };
        let bytes_max = rpc.bytes_max();
        if data.len() > bytes_max {
            let e = PeerError::Codec(format!(
                "{} bytes to send, the peer accepts {bytes_max}",
                data.len()
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let sent_bytes = data.len() as u64;
        #[cfg(madsim)]
        if let Some(delay) = super::sim_faults::draw_duplicate() {
            let mut copy = client.clone();
            let blob = stamp(&self.identity, RaftBlob { data: data.clone() });
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = match rpc {
                    Rpc::Append | Rpc::Heartbeat => copy.append_entries(blob).await,
                    Rpc::Vote => copy.vote(blob).await,
                    Rpc::Snapshot => copy.install_snapshot(blob).await,
                };
            });
        }
        let blob = stamp(&self.identity, RaftBlob { data });
        let fut = async {
            match rpc {
                Rpc::Append | Rpc::Heartbeat => client.append_entries(blob).await,
                Rpc::Vote => client.vote(blob).await,
                Rpc::Snapshot => client.install_snapshot(blob).await,
            }
        };
        let started = std::time::Instant::now();
        let reply = with_deadline(ttl, fut).await;
        self.contact.record(target, reply.is_ok());
        match &reply {
            Ok(r) => {
                crate::metrics::peer_sent(target, sent_bytes);
                crate::metrics::peer_received(target, r.data.len() as u64);
                if matches!(rpc, Rpc::Heartbeat) {
                    crate::metrics::peer_round_trip(target, started.elapsed());
                }
            }
            Err(_) => crate::metrics::peer_send_failed(target),
        }
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
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if data.len() > APPEND_ENTRIES_BYTES_MAX && rpc.entries.len() > 1 {
            let hint = entries_that_fit(rpc.entries.len(), data.len());
            return Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let rpc_kind = if rpc.entries.is_empty() {
            Rpc::Heartbeat
        } else {
            Rpc::Append
        };
        self.send(rpc_kind, data, option.hard_ttl()).await
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

    /// A call that never left (no connection) is made again until it gets through; one that
    /// was sent and failed is not (it may have been applied); and the deadline bounds it all.
    #[test]
    fn only_calls_that_never_left_are_sent_again() {
        let rt = runtime();
        let attempts = std::cell::Cell::new(0);
        let flaky = || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move {
                if n < 3 {
                    Err(tonic::Status::unknown(
                        "Service was not ready: connection refused",
                    ))
                } else {
                    Ok(tonic::Response::new(n))
                }
            }
        };
        let got = rt.block_on(with_deadline_resending_unsent(
            Duration::from_secs(5),
            flaky,
        ));
        assert_eq!(got.ok(), Some(3));

        attempts.set(0);
        let lost = || {
            attempts.set(attempts.get() + 1);
            async { Err::<tonic::Response<u32>, _>(tonic::Status::unavailable("connection reset")) }
        };
        let got = rt.block_on(with_deadline_resending_unsent(Duration::from_secs(5), lost));
        assert!(matches!(got, Err(PeerError::Transport(_))), "{got:?}");
        assert_eq!(attempts.get(), 1, "a sent call is never resent");

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut status = tonic::Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(refused));
        assert!(never_sent(&status));
        assert!(!never_sent(&tonic::Status::unavailable("connection reset")));

        let never = || async {
            Err::<tonic::Response<u32>, _>(tonic::Status::unknown("Service was not ready: x"))
        };
        let got = rt.block_on(with_deadline_resending_unsent(
            Duration::from_millis(300),
            never,
        ));
        assert!(matches!(got, Err(PeerError::Transport(_))), "{got:?}");
    }

    /// A single attempt tells a call that never left from one that was sent and failed.
    #[test]
    fn a_single_attempt_reports_whether_the_call_left() {
        let rt = runtime();
        let attempts = std::cell::Cell::new(0);
        let refused = || {
            attempts.set(attempts.get() + 1);
            async {
                Err::<tonic::Response<u32>, _>(tonic::Status::unknown(
                    "Service was not ready: connection refused",
                ))
            }
        };
        let got = rt.block_on(with_deadline_once(Duration::from_secs(5), refused));
        assert!(matches!(got, Err(PeerError::Unsent(_))), "{got:?}");
        assert_eq!(attempts.get(), 1, "one attempt only");
        let lost = || async {
            Err::<tonic::Response<u32>, _>(tonic::Status::unavailable("connection reset"))
        };
        let got = rt.block_on(with_deadline_once(Duration::from_secs(5), lost));
        assert!(matches!(got, Err(PeerError::Transport(_))), "{got:?}");
        let fine = || async { Ok::<_, tonic::Status>(tonic::Response::new(7u32)) };
        assert_eq!(
            rt.block_on(with_deadline_once(Duration::from_secs(5), fine))
                .ok(),
            Some(7)
        );
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
            let net = PeerNetwork::new(
                Dialer::plaintext(),
                Duration::from_millis(200),
                PeerIdentity::default(),
            );
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

    /// What a real refused connection looks like to a caller is recognised as never sent.
    #[test]
    fn a_refused_connection_is_a_call_that_never_left() {
        let rt = runtime();
        rt.block_on(async {
            let net = PeerNetwork::new(
                Dialer::plaintext(),
                Duration::from_millis(200),
                PeerIdentity::default(),
            );
            let node = MemberNode {
                name: "b".into(),
                peer_urls: vec![dead_url()],
                client_urls: vec![],
            };
            let mut client = net.client(2, &node).unwrap();
            let status = client
                .read_index(net.request(ReadIndexRequest {}))
                .await
                .unwrap_err();
            assert!(never_sent(&status), "{status:?}");
        });
    }

    #[test]
    fn a_dead_peer_is_unreachable_within_the_deadline() {
        let rt = runtime();
        rt.block_on(async {
            let mut net = PeerNetwork::new(
                Dialer::plaintext(),
                Duration::from_millis(200),
                PeerIdentity::default(),
            );
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
