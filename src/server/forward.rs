//! Forwarding of client requests from a follower to the leader, over the leader's client URL
//! with our own generated KV and Lease clients (the leader's answer travels back as it is; the
//! handler then puts this member's identity in the header).
//!
//! A follower's `client_write` fails with "forward to leader" before anything is proposed, so a
//! request is forwarded at most once and never also proposed locally.
//!
//! Invariant: a forwarded write's outcome is the leader's applied result or the leader's (or
//! transport's) error; nothing is synthesized here.
//! Invariant: one lazily-connected channel per leader client URL, shared by all requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::error::{kv_status, propose_status, NO_LEADER};
use super::stream::ChannelStream;
use super::Ctx;
use crate::apply::{Command, Envelope, Outcome};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::raft::node::ProposeError;
use crate::raft::MemberNode;

/// Bound on connecting to the leader's client URL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest forwarded message (requests are already checked against etcd's limits).
const FORWARD_MESSAGE_BYTES_MAX: usize = 1 << 30;

/// Channels to leaders' client URLs.
#[derive(Default)]
pub struct Forwarder {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Forwarder {
    fn channel(&self, leader: &MemberNode) -> Result<Channel, Status> {
        // A leader that has not published its client URLs yet cannot take forwarded requests.
        let url = leader
            .client_urls
            .first()
            .ok_or_else(|| Status::unavailable(NO_LEADER))?;
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(url) {
            return Ok(ch.clone());
        }
        let endpoint =
            Endpoint::from_shared(url.clone()).map_err(|_| Status::unavailable(NO_LEADER))?;
        let ch = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        map.insert(url.clone(), ch.clone());
        Ok(ch)
    }

    fn kv(&self, leader: &MemberNode) -> Result<KvClient<Channel>, Status> {
        Ok(KvClient::new(self.channel(leader)?)
            .max_decoding_message_size(FORWARD_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(FORWARD_MESSAGE_BYTES_MAX))
    }

    fn lease(&self, leader: &MemberNode) -> Result<LeaseClient<Channel>, Status> {
        Ok(LeaseClient::new(self.channel(leader)?))
    }

    /// Sends `cmd` to the leader as the client request it came from; returns the leader's
    /// applied outcome.
    pub async fn write(&self, leader: &MemberNode, cmd: Command) -> Result<Outcome, Status> {
        let outcome = match cmd {
            Command::Put(req) => Outcome::Put(self.kv(leader)?.put(req).await?.into_inner()),
            Command::DeleteRange(req) => {
                Outcome::DeleteRange(self.kv(leader)?.delete_range(req).await?.into_inner())
            }
            Command::Txn(req) => Outcome::Txn(self.kv(leader)?.txn(req).await?.into_inner()),
            Command::Compact(req) => {
                Outcome::Compact(self.kv(leader)?.compact(req).await?.into_inner())
            }
            Command::LeaseGrant { id, ttl } => {
                let req = LeaseGrantRequest { id, ttl };
                Outcome::LeaseGrant(self.lease(leader)?.lease_grant(req).await?.into_inner())
            }
            Command::LeaseRevoke { id } => {
                let req = LeaseRevokeRequest { id };
                Outcome::LeaseRevoke(self.lease(leader)?.lease_revoke(req).await?.into_inner())
            }
        };
        Ok(outcome)
    }

    /// The leader's view of a lease's remaining time (it owns the deadlines).
    pub async fn time_to_live(
        &self,
        leader: &MemberNode,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        Ok(self
            .lease(leader)?
            .lease_time_to_live(req)
            .await?
            .into_inner())
    }

    /// One keep-alive of lease `id` on the leader; returns the TTL it answered (0: unknown).
    pub async fn keep_alive(&self, leader: &MemberNode, id: i64) -> Result<i64, Status> {
        let mut client = self.lease(leader)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // The receiver is alive, so this send into an empty channel of capacity 1 cannot fail.
        let _ = tx.try_send(LeaseKeepAliveRequest { id });
        drop(tx);
        let outbound = ChannelStream::new(rx);
        let mut inbound = client.lease_keep_alive(outbound).await?.into_inner();
        match inbound.message().await? {
            Some(resp) => Ok(resp.ttl),
            None => Err(Status::unavailable(NO_LEADER)),
        }
    }
}

/// Proposes `cmd` here (with a fresh request header) when this member leads, or forwards it to
/// the leader when a follower's proposal was refused because another member leads (nothing was
/// proposed then; the leader gives it a header of its own).
pub async fn propose_or_forward(ctx: &Ctx, cmd: Command) -> Result<Outcome, Status> {
    match ctx
        .node
        .propose(Envelope::new(ctx.request_header(), cmd.clone()))
        .await
    {
        Ok(applied) => applied.result.clone().map_err(|e| kv_status(&e)),
        Err(ProposeError::NoLeader) => match published_leader(ctx).await {
            Some(leader) => ctx.forward.write(&leader, cmd).await,
            None => Err(propose_status(&ProposeError::NoLeader)),
        },
        Err(e) => Err(propose_status(&e)),
    }
}

/// How long a follower waits for a just-elected leader to publish its client URLs.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);
const PUBLISH_POLL: Duration = Duration::from_millis(50);

/// The remote leader's membership entry once it carries client URLs; `None` when there is no
/// remote leader (or it did not publish its URLs within `PUBLISH_WAIT`).
pub(crate) async fn published_leader(ctx: &Ctx) -> Option<MemberNode> {
    let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
    loop {
        let (_, leader) = ctx.node.remote_leader()?;
        if !leader.client_urls.is_empty() || tokio::time::Instant::now() >= deadline {
            return Some(leader);
        }
        tokio::time::sleep(PUBLISH_POLL).await;
    }
}
