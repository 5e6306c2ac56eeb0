//! api/ — etcd's client API as plain functions, independent of any transport.
//!
//! Each call takes the member's [`Api`] (node, watch hub, lease clock, limits), the caller's
//! [`ReqCtx`] (who asks, as which user, until when, whether a leader is required) and the
//! request message; it returns the response or an [`ApiError`]. The gRPC adapters (`grpc/`)
//! and the HTTP side (JSON gateway, health) call these and translate only at the edge.
//!
//! The caller's identity (auth token or certificate CN) is resolved once per call by
//! `Api::auth_info` (`auth`); reads are checked here, writes in apply against the auth revision
//! the request header carries.
//!
//! Writes are validated (size limits, etcd's pre-proposal checks), proposed through raft (or
//! forwarded to the leader over the peer protocol, `forward`) and answered from the applied
//! result. Linearizable reads pass the read-index barrier first; every read runs on an O(1)
//! view of the applied state (`kv::on_view`), never under the state machine's lock.
//!
//! Invariant: nothing here sees tonic, hyper or openraft types.
//! Invariant: no lock is held across an `.await`.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod error;
pub mod forward;
#[cfg(not(madsim))]
pub mod jwt;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod quota;
pub mod recipe;
pub mod v2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use error::{ApiError, Code};

use crate::apply::RequestHeader;
use crate::lease::lessor::Lessor;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::raft::node::RaftNode;
use crate::watch::Hub;

/// Request limits enforced on client requests (etcd's defaults come from `config`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_request_bytes: usize,
    pub grpc_max_recv_bytes: usize,
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (`None`: disabled): a write that would take the member's data
    /// size (`mvcc::Store::logical_bytes`) past it raises NOSPACE and is refused.
    pub quota_bytes: Option<u64>,
}

/// `--cors` and `--host-whitelist`, which the plain-HTTP endpoints of the client port enforce
/// (`http::access`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAccess {
    /// Origins allowed to read responses; `None`: any (`*`, etcd's default).
    pub cors_origins: Option<Vec<String>>,
    /// Host names a plaintext HTTP request may name; empty: any (`*`, etcd's default).
    pub host_whitelist: Vec<String>,
    /// `--enable-grpc-gateway=false`: `/v3/...` is not served (Go's 404, as any unknown path).
    pub gateway_disabled: bool,
}

/// What every call needs: the member's node and the member-wide services beside it.
pub struct Api {
    pub node: Arc<RaftNode>,
    pub limits: ServerLimits,
    /// `--cors` and `--host-whitelist` for the HTTP endpoints.
    pub http_access: HttpAccess,
    pub hub: Arc<Hub>,
    /// The leader's lease deadlines.
    pub lessor: Arc<Lessor>,
    /// `--min-lease-ttl`-like floor: etcd raises a granted TTL to 1.5 × election timeout.
    pub lease_ttl_min_s: i64,
    pub progress_notify_interval: Duration,
    /// A watch stream opened with `hasleader` metadata is canceled with "etcdserver: no leader"
    /// after the member has had no leader this long (etcd: 3 election timeouts).
    pub leader_lost_watch_cancel: Duration,
    /// Auth settings and this member's simple tokens (`auth`).
    pub auth: Arc<auth::AuthContext>,
    /// `--enable-v2` and the notice of applied v2 writes (`v2`).
    pub v2: Arc<v2::V2Context>,
}

/// Who makes a call, and its bounds. Built by the transport from what it knows of the caller.
#[derive(Debug, Clone)]
pub struct ReqCtx {
    /// The client's address, when the transport has one.
    pub peer: Option<SocketAddr>,
    /// The common name of the client's verified TLS certificate (etcd uses it as the user when
    /// no token is given).
    pub cert_common_name: Option<String>,
    /// A user the transport already established (none today: tokens and certificate names are
    /// resolved by `Api::auth_info`).
    pub user: Option<String>,
    /// The auth token the client sent (`token` or `authorization` metadata).
    pub token: Option<String>,
    /// Whether the client asked to fail without a leader (Go clientv3's `WithRequireLeader`,
    /// used by kube-apiserver and flannel watches).
    pub require_leader: bool,
    /// The client's deadline, when it sent one; server-side bounds (etcd's request timeout)
    /// apply in any case, the earlier of the two wins.
    pub deadline: Option<Instant>,
}

impl ReqCtx {
    /// A context with nothing known about the caller (in-process callers, tests).
    pub fn internal() -> ReqCtx {
        ReqCtx {
            peer: None,
            cert_common_name: None,
            user: None,
            token: None,
            require_leader: false,
            deadline: None,
        }
    }

    /// The earlier of the client's deadline and `now + bound`.
    pub fn deadline_within(&self, bound: Duration) -> Instant {
        let server = Instant::now() + bound;
        self.deadline.map_or(server, |d| d.min(server))
    }
}

impl Api {
    /// Fails with "etcdserver: no leader" when the caller requires a leader and this member
    /// knows none, and with "etcdserver: corrupt cluster" when the snapshot this member started
    /// from failed its background structural check (its apply path already refuses every
    /// entry; reads must not be served from it either). Nothing has been proposed at this point.
    pub fn check_leader(&self, ctx: &ReqCtx) -> Result<(), ApiError> {
        if self.node.state().image_defect().is_some() {
            return Err(ApiError::Corrupt);
        }
        if ctx.require_leader && self.node.current_leader().is_none() {
            return Err(ApiError::NoLeader);
        }
        Ok(())
    }

    /// Fails with etcd's learner error when this member is a learner.
    pub fn refuse_learner(&self) -> Result<(), ApiError> {
        if self.node.is_learner() {
            return Err(ApiError::Learner);
        }
        Ok(())
    }

    /// The request header of a client's proposal: a fresh request ID, the caller's user and the
    /// auth revision it was resolved at (never 0, so apply checks it while auth is enabled).
    pub fn request_header(&self, ctx: &ReqCtx) -> Result<RequestHeader, ApiError> {
        let info = self.auth_info(ctx)?;
        Ok(RequestHeader {
            id: self.node.next_request_id(),
            user: info.user,
            auth_revision: info.revision,
        })
    }

    /// The request header of a proposal this member makes on its own (lease expiry): no user,
    /// auth revision 0, which apply does not check.
    pub fn internal_header(&self) -> RequestHeader {
        RequestHeader {
            id: self.node.next_request_id(),
            user: String::new(),
            auth_revision: 0,
        }
    }

    /// A full response header around the revision the state machine reported (0 when none).
    pub fn header(&self, partial: &Option<ResponseHeader>) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.member_id(),
            revision: partial.as_ref().map_or(0, |h| h.revision),
            raft_term: self.node.term(),
        }
    }

    /// A full response header carrying the current revision.
    pub fn current_header(&self) -> ResponseHeader {
        let revision = self.node.state().read().state.kv.current_revision();
        let mut header = self.header(&None);
        header.revision = revision;
        header
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    /// The client's deadline bounds a call only when it is the earlier one.
    #[test]
    fn the_earlier_of_the_client_and_server_deadlines_wins() {
        let bound = Duration::from_secs(7);
        let before = Instant::now();
        let mut ctx = ReqCtx::internal();
        let server = ctx.deadline_within(bound);
        assert!(server >= before + bound && server <= Instant::now() + bound);
        let early = before + Duration::from_secs(2);
        ctx.deadline = Some(early);
        assert_eq!(ctx.deadline_within(bound), early);
        ctx.deadline = Some(before + Duration::from_secs(60));
        assert!(ctx.deadline_within(bound) <= Instant::now() + bound);
    }
}
