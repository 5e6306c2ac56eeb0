//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live, list; plus the leader's expiry
//! loop that revokes expired leases through raft.
//!
//! Invariant: grant and revoke change state only through raft; keep-alive and time-to-live read
//! the leader's deadlines (`Lessor`) and the replicated lease table.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::error::{kv_status, propose_status};
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
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::node::ProposeError;

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
    pub fn new(ctx: Arc<Ctx>, lessor: Arc<Lessor>, ttl_min_s: i64) -> Self {
        LeaseService {
            ctx,
            lessor,
            ttl_min_s,
        }
    }

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
                let ttl = match super::forward::published_leader(&ctx).await {
                    // Deadlines live on the leader: a follower forwards each keep-alive there.
                    Some(leader) => match ctx.forward.keep_alive(&leader, req.id).await {
                        Ok(ttl) => ttl,
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            break;
                        }
                    },
                    // Only the leader's deadlines count: a member that knows no leader must
                    // not answer from those it noted as a follower (never renewed), and a new
                    // leader restarts them before its first answer.
                    None if ctx.node.current_leader() != Some(ctx.node.member_id()) => {
                        let _ = tx.send(Err(propose_status(&ProposeError::NoLeader))).await;
                        break;
                    }
                    None => {
                        promote_if_new_term(&ctx, &lessor);
                        lessor
                            .keep_alive(req.id, tokio::time::Instant::now())
                            .unwrap_or(0)
                    }
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
        if let Some(leader) = super::forward::published_leader(&self.ctx).await {
            // Deadlines live on the leader; a follower asks it.
            let mut resp = self.ctx.forward.time_to_live(&leader, req).await?;
            resp.header = Some(self.ctx.header(&resp.header));
            return Ok(Response::new(resp));
        }
        self.ctx
            .node
            .read_index()
            .await
            .map_err(|e| propose_status(&e))?;
        let header = Some(self.current_header());
        let (granted, keys) = {
            // A view: listing a lease's keys must not hold up apply.
            let sm = self.ctx.node.state().view();
            (
                sm.state.leases.granted_ttl(req.id),
                sm.state.leases.keys(req.id),
            )
        };
        let Some(granted_ttl) = granted else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                ..Default::default()
            }));
        };
        let ttl = self
            .lessor
            .remaining_s(req.id, tokio::time::Instant::now())
            .unwrap_or(granted_ttl);
        let keys = if req.keys {
            keys.unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl,
            granted_ttl,
            keys,
        }))
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
fn promote_if_new_term(ctx: &Ctx, lessor: &Lessor) {
    let term = ctx.node.term();
    if lessor.promoted_for(term) {
        return;
    }
    let leases: Vec<(i64, i64)> = ctx.node.state().view().state.leases.leases().collect();
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
            promote_if_new_term(&ctx, &lessor);
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
