//! etcd's Lease calls: grant, revoke, keep-alive, time-to-live, list; plus the leader's expiry
//! loop that revokes expired leases through raft.
//!
//! Invariant: grant and revoke change state only through raft; keep-alive and time-to-live read
//! the leader's deadlines (`Lessor`) and the replicated lease table. A follower forwards them to
//! the leader over the peer protocol; `LeaderLeases` answers them there.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::forward::propose_or_forward;
use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Envelope, Outcome};
use crate::lease::lessor::Lessor;
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    ResponseHeader,
};
use crate::raft::forward::{LeaseAnswer, LeaseLeader};
use crate::raft::node::{ProposeError, RaftNode};

/// etcd's ceiling on a lease TTL, in seconds.
pub const LEASE_TTL_MAX_S: i64 = 9_000_000_000;
/// How often the leader looks for expired leases (etcd: 500 ms).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Installs this member's leader side of forwarded lease calls on the node (once per member;
/// a second call changes nothing).
pub fn install_leader_side(api: &Api) {
    api.node.install_lease_leader(Arc::new(LeaderLeases {
        node: Arc::downgrade(&api.node),
        lessor: api.lessor.clone(),
    }));
}

/// The leader's side of the lease calls followers forward (`raft::forward::LeaseLeader`).
/// Holds the node weakly: the node keeps this object.
struct LeaderLeases {
    node: Weak<RaftNode>,
    lessor: Arc<Lessor>,
}

impl LeaderLeases {
    /// The node when it is still running and leads; else the refusal that sends the follower
    /// elsewhere (`NoLeader`: nothing done).
    fn leading(&self) -> Result<Arc<RaftNode>, ProposeError> {
        let node = self.node.upgrade().ok_or(ProposeError::Stopped)?;
        if node.current_leader() != Some(node.member_id()) {
            return Err(ProposeError::NoLeader);
        }
        Ok(node)
    }
}

impl LeaseLeader for LeaderLeases {
    fn keep_alive(&self, id: i64) -> LeaseAnswer<'_, i64> {
        Box::pin(async move {
            let node = self.leading()?;
            keep_alive_here(&node, &self.lessor, id).await
        })
    }

    fn time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> LeaseAnswer<'_, LeaseTimeToLiveResponse> {
        Box::pin(async move {
            let node = self.leading()?;
            time_to_live_here(&node, &self.lessor, req).await
        })
    }
}

/// A keep-alive on the leader: the TTL to report (0: unknown or expired lease).
///
/// The leader first confirms with a quorum that it still leads ([`RaftNode::confirm_leadership`]):
/// a leader cut off from the others keeps its deadlines and would renew leases that the new
/// leader on the other side expires; a renewal confirmed this way comes before any successor
/// took office, and a successor restarts every deadline with a full TTL, so the renewal holds.
///
/// A lease the deadlines do not know may be one whose grant was committed before this member
/// took office and is not applied here yet: as etcd waits for its applied index before a
/// renewal, the leader then waits until it has applied everything committed and looks again,
/// so a live lease is never reported gone (only unknown leases pay for the wait).
async fn keep_alive_here(node: &RaftNode, lessor: &Lessor, id: i64) -> Result<i64, ProposeError> {
    node.confirm_leadership().await?;
    if !promote_if_new_term(node, lessor) {
        return Err(ProposeError::Timeout);
    }
    if let Some(ttl) = lessor.keep_alive(id, lessor.now()) {
        return Ok(ttl);
    }
    node.wait_applied_committed().await?;
    Ok(lessor.keep_alive(id, lessor.now()).unwrap_or(0))
}

/// Time-to-live on the leader (it owns the deadlines), after a read barrier; the header carries
/// the revision only.
async fn time_to_live_here(
    node: &RaftNode,
    lessor: &Lessor,
    req: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, ProposeError> {
    node.read_index().await?;
    let (revision, granted, keys) = {
        // A view: listing a lease's keys must not hold up apply.
        let sm = node.state().view();
        (
            sm.state.kv.current_revision(),
            sm.state.leases.granted_ttl(req.id),
            sm.state.leases.keys(req.id),
        )
    };
    let header = Some(ResponseHeader {
        revision,
        ..Default::default()
    });
    let Some(granted_ttl) = granted else {
        return Ok(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl: -1,
            ..Default::default()
        });
    };
    let ttl = lessor
        .remaining_s(req.id, lessor.now())
        .unwrap_or(granted_ttl);
    let keys = if req.keys {
        keys.unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(LeaseTimeToLiveResponse {
        header,
        id: req.id,
        ttl,
        granted_ttl,
        keys,
    })
}

/// A fresh positive 63-bit lease ID not in use (chosen before proposing so apply stays pure).
fn fresh_lease_id(api: &Api) -> i64 {
    loop {
        // Server-chosen IDs come from the io seam so simulated runs replay them.
        let id = (crate::io::Rng::next_u64(&mut crate::io::SystemRng) & i64::MAX as u64) as i64;
        if id != 0 && !api.node.state().read().state.leases.contains(id) {
            return id;
        }
    }
}

fn unexpected(what: &str) -> ApiError {
    ApiError::Internal(format!("etcdserver: unexpected apply outcome for {what}"))
}

pub async fn grant(
    api: &Api,
    ctx: &ReqCtx,
    req: LeaseGrantRequest,
) -> Result<LeaseGrantResponse, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    if req.ttl > LEASE_TTL_MAX_S {
        return Err(ApiError::Kv(KvError::LeaseTtlTooLarge {
            ttl_seconds: req.ttl,
        }));
    }
    let ttl = req.ttl.max(api.lease_ttl_min_s);
    let id = if req.id == 0 {
        fresh_lease_id(api)
    } else {
        req.id
    };
    let grant = Command::LeaseGrant { id, ttl };
    super::quota::check(api, ctx, &grant).await?;
    match propose_or_forward(api, ctx, grant).await? {
        Outcome::LeaseGrant(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("lease grant")),
    }
}

pub async fn revoke(api: &Api, ctx: &ReqCtx, id: i64) -> Result<LeaseRevokeResponse, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    match propose_or_forward(api, ctx, Command::LeaseRevoke { id }).await? {
        Outcome::LeaseRevoke(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(unexpected("lease revoke")),
    }
}

/// The checks a keep-alive stream passes once, when it opens.
pub fn open_keep_alive(api: &Api, ctx: &ReqCtx) -> Result<(), ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()
}

/// One keep-alive of lease `id`: renewed by the leader (a follower forwards it there). TTL 0
/// in the answer: unknown or expired lease. An error ends the client's stream.
pub async fn keep_alive(api: &Api, id: i64) -> Result<LeaseKeepAliveResponse, ApiError> {
    let ttl = match api.node.remote_leader() {
        // Deadlines live on the leader: a follower forwards each keep-alive there.
        Some((leader, node)) => api.node.forward_keep_alive(leader, &node, id).await?,
        // Only the leader's deadlines count: a member that knows no leader must not answer
        // from those it noted as a follower (never renewed), and a new leader restarts them
        // before its first answer.
        None if api.node.current_leader() != Some(api.node.member_id()) => {
            return Err(ApiError::Propose(ProposeError::NoLeader));
        }
        None => keep_alive_here(&api.node, &api.lessor, id).await?,
    };
    Ok(LeaseKeepAliveResponse {
        header: Some(api.current_header()),
        id,
        ttl,
    })
}

pub async fn time_to_live(
    api: &Api,
    ctx: &ReqCtx,
    req: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    let with_keys = req.keys;
    let mut resp = match api.node.remote_leader() {
        // Deadlines live on the leader; a follower asks it.
        Some((leader, node)) => api.node.forward_time_to_live(leader, &node, &req).await?,
        None => time_to_live_here(&api.node, &api.lessor, req).await?,
    };
    if with_keys {
        // The attached keys are only shown to a caller that may read every one of them.
        api.check_lease_keys(ctx, &resp.keys)?;
    }
    resp.header = Some(api.header(&resp.header));
    Ok(resp)
}

/// Every lease, ordered by ID, after a read barrier.
pub async fn leases(api: &Api, ctx: &ReqCtx) -> Result<LeaseLeasesResponse, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    api.node.read_index().await?;
    let header = Some(api.current_header());
    let mut leases: Vec<LeaseStatus> = {
        // A view: listing every lease must not hold up apply.
        let sm = api.node.state().view();
        sm.state
            .leases
            .leases()
            .map(|(id, _)| LeaseStatus { id })
            .collect()
    };
    leases.sort_by_key(|l| l.id);
    Ok(LeaseLeasesResponse { header, leases })
}

/// Restarts every lease's deadline when this leader has not done so for its current term.
/// `false` when grants and revokes kept coming while the lease table was read (the caller
/// tries again later: keep-alives are refused meanwhile, nothing expires).
fn promote_if_new_term(node: &RaftNode, lessor: &Lessor) -> bool {
    /// Reads of the lease table per promotion before giving up for now.
    const ATTEMPTS: usize = 8;
    let term = node.term();
    if lessor.promoted_for(term) {
        return true;
    }
    for _ in 0..ATTEMPTS {
        let seen = lessor.changes();
        let leases: Vec<(i64, i64)> = node.state().view().state.leases.leases().collect();
        if lessor.promote(term, seen, leases.into_iter(), lessor.now()) {
            return true;
        }
    }
    false
}

/// The leader's expiry loop: revokes expired leases through raft. Runs until `stop` fires.
pub async fn run_expiry(api: Arc<Api>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let lessor = api.lessor.clone();
    loop {
        let leader = api.node.current_leader() == Some(api.node.member_id());
        // Once per term, also when leadership was lost and regained between two ticks.
        let (term, expired) = if leader && promote_if_new_term(&api.node, &lessor) {
            lessor.take_expired(lessor.now())
        } else {
            (0, Vec::new())
        };
        // The list may outlive this term (a proposal held up by a slow disk): each expiry
        // carries the term it was decided in and applies only from an entry of that term.
        for id in expired {
            let expire = Envelope::new(api.internal_header(), Command::LeaseExpire { id, term });
            let lease = format!("{id:016x}");
            match api.node.propose(expire).await {
                Ok(applied) => match &applied.result {
                    Ok(_) => tracing::debug!(%lease, "revoked expired lease"),
                    Err(e) => {
                        tracing::info!(%lease, error = %e, "expired lease not revoked");
                        lessor.revoke_failed(id);
                    }
                },
                Err(e) => {
                    tracing::warn!(%lease, error = ?e, "could not revoke expired lease");
                    lessor.revoke_failed(id);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_CHECK_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
