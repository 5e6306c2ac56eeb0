//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live, list; plus the leader's expiry
//! loop that revokes expired leases through raft.
//!
//! Invariant: grant and revoke change state only through raft; keep-alive and time-to-live read
//! the leader's deadlines (`Lessor`) and the replicated lease table. A follower forwards them to
//! the leader over the peer protocol; `LeaderLeases` answers them there.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::error::{forward_status, kv_status, propose_status};
use super::forward::propose_or_forward;
use super::lessor::Lessor;
use super::stream::ChannelStream;
use super::Ctx;
use crate::apply::{Command, Envelope, Outcome};
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::raft::forward::{LeaseAnswer, LeaseLeader};
use crate::raft::node::{ProposeError, RaftNode};

/// etcd's ceiling on a lease TTL, in seconds.
pub const LEASE_TTL_MAX_S: i64 = 9_000_000_000;
/// How often the leader looks for expired leases (etcd: 500 ms).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The Lease service.
pub struct LeaseService {
    ctx: Arc<Ctx>,
    lessor: Arc<Lessor>,
    ttl_min_s: i64,
}

impl LeaseService {
    /// Also installs this member's leader side of forwarded lease calls on the node.
    pub fn new(ctx: Arc<Ctx>, lessor: Arc<Lessor>, ttl_min_s: i64) -> Self {
        ctx.node.install_lease_leader(Arc::new(LeaderLeases {
            node: Arc::downgrade(&ctx.node),
            lessor: lessor.clone(),
        }));
        LeaseService {
            ctx,
            lessor,
            ttl_min_s,
        }
    }
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
            Ok(keep_alive_here(&node, &self.lessor, id))
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
fn keep_alive_here(node: &RaftNode, lessor: &Lessor, id: i64) -> i64 {
    promote_if_new_term(node, lessor);
    lessor
        .keep_alive(id, tokio::time::Instant::now())
        .unwrap_or(0)
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
        .remaining_s(req.id, tokio::time::Instant::now())
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

impl LeaseService {
    fn current_header(&self) -> crate::proto::etcdserverpb::ResponseHeader {
        let rev = self.ctx.node.state().read().state.kv.current_revision();
        let mut h = self.ctx.header(&None);
        h.revision = rev;
        h
    }
}

/// A fresh positive 63-bit lease ID not in use (chosen before proposing so apply stays pure).
fn fresh_lease_id(ctx: &Ctx) -> i64 {
    loop {
        // Server-chosen IDs come from the io seam so simulated runs replay them.
        let id = (crate::io::Rng::next_u64(&mut crate::io::SystemRng) & i64::MAX as u64) as i64;
        if id != 0 && !ctx.node.state().read().state.leases.contains(id) {
            return id;
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        if req.ttl > LEASE_TTL_MAX_S {
            return Err(kv_status(&KvError::LeaseTtlTooLarge {
                ttl_seconds: req.ttl,
            }));
        }
        let ttl = req.ttl.max(self.ttl_min_s);
        let id = if req.id == 0 {
            fresh_lease_id(&self.ctx)
        } else {
            req.id
        };
        match propose_or_forward(&self.ctx, Command::LeaseGrant { id, ttl }).await? {
            Outcome::LeaseGrant(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(
                "etcdserver: unexpected apply outcome for lease grant",
            )),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        let id = request.into_inner().id;
        match propose_or_forward(&self.ctx, Command::LeaseRevoke { id }).await? {
            Outcome::LeaseRevoke(mut resp) => {
                resp.header = Some(self.ctx.header(&resp.header));
                Ok(Response::new(resp))
            }
            _ => Err(Status::internal(
                "etcdserver: unexpected apply outcome for lease revoke",
            )),
        }
    }

    type LeaseKeepAliveStream = ChannelStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let (ctx, lessor) = (self.ctx.clone(), self.lessor.clone());
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let ttl = match ctx.node.remote_leader() {
                    // Deadlines live on the leader: a follower forwards each keep-alive there.
                    Some((leader, node)) => {
                        match ctx.node.forward_keep_alive(leader, &node, req.id).await {
                            Ok(ttl) => ttl,
                            Err(e) => {
                                let _ = tx.send(Err(forward_status(&e))).await;
                                break;
                            }
                        }
                    }
                    // Only the leader's deadlines count: a member that knows no leader must
                    // not answer from those it noted as a follower (never renewed), and a new
                    // leader restarts them before its first answer.
                    None if ctx.node.current_leader() != Some(ctx.node.member_id()) => {
                        let _ = tx.send(Err(propose_status(&ProposeError::NoLeader))).await;
                        break;
                    }
                    None => keep_alive_here(&ctx.node, &lessor, req.id),
                };
                let rev = ctx.node.state().read().state.kv.current_revision();
                let mut header = ctx.header(&None);
                header.revision = rev;
                let resp = LeaseKeepAliveResponse {
                    header: Some(header),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ChannelStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        let mut resp = match self.ctx.node.remote_leader() {
            // Deadlines live on the leader; a follower asks it.
            Some((leader, node)) => self
                .ctx
                .node
                .forward_time_to_live(leader, &node, &req)
                .await
                .map_err(|e| forward_status(&e))?,
            None => time_to_live_here(&self.ctx.node, &self.lessor, req)
                .await
                .map_err(|e| propose_status(&e))?,
        };
        resp.header = Some(self.ctx.header(&resp.header));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        self.ctx
            .node
            .read_index()
            .await
            .map_err(|e| propose_status(&e))?;
        let header = Some(self.current_header());
        let mut leases: Vec<LeaseStatus> = {
            // A view: listing every lease must not hold up apply.
            let sm = self.ctx.node.state().view();
            sm.state
                .leases
                .leases()
                .map(|(id, _)| LeaseStatus { id })
                .collect()
        };
        leases.sort_by_key(|l| l.id);
        Ok(Response::new(LeaseLeasesResponse { header, leases }))
    }
}

/// Restarts every lease's deadline when this leader has not done so for its current term.
fn promote_if_new_term(node: &RaftNode, lessor: &Lessor) {
    let term = node.term();
    if lessor.promoted_for(term) {
        return;
    }
    let leases: Vec<(i64, i64)> = node.state().view().state.leases.leases().collect();
    lessor.promote(leases.into_iter(), tokio::time::Instant::now());
    lessor.mark_promoted(term);
}

/// The leader's expiry loop: revokes expired leases through raft. Runs until `stop` fires.
pub async fn run_expiry(
    ctx: Arc<Ctx>,
    lessor: Arc<Lessor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let leader = ctx.node.current_leader() == Some(ctx.node.member_id());
        if leader {
            // Once per term, also when leadership was lost and regained between two ticks.
            promote_if_new_term(&ctx.node, &lessor);
        }
        let expired = if leader {
            lessor.take_expired(tokio::time::Instant::now())
        } else {
            Vec::new()
        };
        for id in expired {
            let revoke = Envelope::new(ctx.request_header(), Command::LeaseRevoke { id });
            match ctx.node.propose(revoke).await {
                Ok(_) => tracing::debug!(lease = %format!("{id:016x}"), "revoked expired lease"),
                Err(e) => {
                    tracing::warn!(lease = %format!("{id:016x}"), error = ?e, "could not revoke expired lease");
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
