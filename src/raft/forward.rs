//! Follower-to-leader forwarding over the peer protocol: what a follower sends to the leader
//! for a client write, a lease keep-alive or a lease time-to-live, and what comes back.
//!
//! A follower's proposal is refused by its own raft before anything is appended ("forward to
//! leader"); it then sends the command to the leader's PEER URL (`ForwardPropose`, on the raft
//! network's one cached channel per peer) and the leader proposes it through its own
//! [`super::node::RaftNode::propose`] and answers with the applied result. Lease deadlines live
//! on the leader (`lease::lessor`), so keep-alives and time-to-live questions go there too; the
//! server installs the leader side of those as a [`LeaseLeader`]. Membership changes
//! (MemberAdd/Remove/Update/Promote) are made by the leader only; a follower sends them as a
//! [`MembershipChange`] (`ForwardMembership`) and gets the leader's [`MembershipAnswer`] back.
//!
//! Bodies are bincode: a request is the command (or lease ID / protobuf request bytes), an answer
//! is `Result<T, ProposeError>`. `ProposeError::NoLeader` in an answer means "the member you
//! asked does not lead; nothing was done", so the follower may ask the new leader.
//!
//! Invariant: an answer is either the leader's applied result or its refusal; nothing here
//! synthesizes a success.
//! Invariant: every forwarded call is bounded by the deadline the caller gives it.

use std::future::Future;
use std::pin::Pin;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::membership::{MemberEntry, MembershipError};
use super::network::PeerError;
use super::node::ProposeError;
use super::NodeId;
use crate::apply::Outcome;
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};

/// The applied result of a forwarded proposal, as the client request's handler sees it.
pub type AppliedResult = Result<Outcome, KvError>;

/// What the leader answers to a forwarded request.
pub type Answer<T> = Result<T, ProposeError>;

/// Why a forwarded request has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// The member asked answered with this refusal (`NoLeader`: it does not lead, nothing done).
    Leader(ProposeError),
    /// The call did not get an answer: transport failure, deadline, or an undecodable reply.
    /// A forwarded write may or may not have been applied then.
    Peer(PeerError),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Leader(e) => write!(f, "leader refused: {e:?}"),
            ForwardError::Peer(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ForwardError {}

/// A lease time-to-live request or response as protobuf bytes inside the bincode body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoBytes(pub Vec<u8>);

impl ProtoBytes {
    pub fn encode<M: Message>(msg: &M) -> ProtoBytes {
        ProtoBytes(msg.encode_to_vec())
    }

    pub fn decode<M: Message + Default>(&self) -> Result<M, PeerError> {
        M::decode(self.0.as_slice()).map_err(|e| PeerError::Codec(e.to_string()))
    }
}

/// A membership change a follower asks the leader to make (etcd's Cluster calls). Peer URLs
/// are already validated and normalized by the follower; the leader checks everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    Add {
        peer_urls: Vec<String>,
        is_learner: bool,
    },
    Remove {
        id: NodeId,
    },
    Update {
        id: NodeId,
        peer_urls: Vec<String>,
    },
    Promote {
        id: NodeId,
    },
}

/// What a membership change did: the added member's ID (MemberAdd only) and the members after
/// the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDone {
    pub added: Option<NodeId>,
    pub members: Vec<MemberEntry>,
}

/// The leader's answer to a forwarded membership change: its refusal (`MembershipError`, never
/// `NotLeader`: a member that does not lead answers `ProposeError::NoLeader` outside) or what it
/// did.
pub type MembershipAnswer = Result<MembershipDone, MembershipError>;

/// A boxed answer of the leader's lease side.
pub type LeaseAnswer<'a, T> = Pin<Box<dyn Future<Output = Answer<T>> + Send + 'a>>;

/// The leader's side of forwarded lease calls. Implemented by the server, which owns the lease
/// clock; each call answers `Err(ProposeError::NoLeader)` when this member does not lead.
pub trait LeaseLeader: Send + Sync + 'static {
    /// Renews lease `id`; the TTL to report (0: unknown or expired lease).
    fn keep_alive(&self, id: i64) -> LeaseAnswer<'_, i64>;
    /// The lease's remaining and granted TTL (and keys when asked), header revision only.
    fn time_to_live(&self, req: LeaseTimeToLiveRequest)
        -> LeaseAnswer<'_, LeaseTimeToLiveResponse>;
}

/// Where the peer service finds the lease side once the server has installed it.
pub type LeaseLeaderSlot = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn LeaseLeader>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{PutResponse, ResponseHeader};
    use crate::raft::network::{decode, encode};

    /// The answers survive the peer codec: applied outcomes with their revision, apply-time
    /// errors, and every refusal.
    #[test]
    fn answers_round_trip_through_the_peer_codec() {
        let put = Outcome::Put(PutResponse {
            header: Some(ResponseHeader {
                revision: 42,
                ..Default::default()
            }),
            prev_kv: None,
        });
        let answers: Vec<Answer<AppliedResult>> = vec![
            Ok(Ok(put)),
            Ok(Err(KvError::LeaseNotFound { id: 7 })),
            Ok(Err(KvError::TooManyOps {
                ops: 200,
                ops_max: 128,
            })),
            Err(ProposeError::NoLeader),
            Err(ProposeError::Timeout),
            Err(ProposeError::TooManyRequests),
            Err(ProposeError::Stopped),
        ];
        for answer in answers {
            let back: Answer<AppliedResult> = decode(&encode(&answer).unwrap()).unwrap();
            assert_eq!(back, answer);
        }
        let done: Answer<MembershipAnswer> = Ok(Ok(MembershipDone {
            added: Some(9),
            members: vec![MemberEntry {
                id: 9,
                node: crate::raft::MemberNode {
                    name: String::new(),
                    peer_urls: vec!["http://10.0.0.9:2380".into()],
                    client_urls: vec![],
                },
                is_learner: true,
            }],
        }));
        let refused: Answer<MembershipAnswer> = Ok(Err(MembershipError::LearnerNotReady));
        for answer in [done, refused, Err(ProposeError::NoLeader)] {
            let back: Answer<MembershipAnswer> = decode(&encode(&answer).unwrap()).unwrap();
            assert_eq!(back, answer);
        }
        let change = MembershipChange::Update {
            id: 3,
            peer_urls: vec!["https://10.0.0.3:2380".into()],
        };
        let back: MembershipChange = decode(&encode(&change).unwrap()).unwrap();
        assert_eq!(back, change);
        let req = LeaseTimeToLiveRequest { id: 5, keys: true };
        let wire = ProtoBytes::encode(&req);
        let back: ProtoBytes = decode(&encode(&wire).unwrap()).unwrap();
        assert_eq!(back.decode::<LeaseTimeToLiveRequest>().unwrap(), req);
        assert!(ProtoBytes(vec![0xff])
            .decode::<LeaseTimeToLiveRequest>()
            .is_err());
    }
}
