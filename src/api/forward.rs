//! Forwarding of client writes from a follower to the leader, over the peer protocol
//! (`raft::forward`: the leader's peer URL, the raft network's cached channel, a deadline on
//! every call). The leader proposes the command itself and answers with the applied result;
//! the caller then puts this member's identity in the header.
//!
//! A follower's proposal is refused by its raft with "forward to leader" before anything is
//! proposed, so a request is forwarded, never also proposed locally. A leader that no longer
//! leads refuses before proposing, and a call that could not connect sent nothing; in these
//! cases, and while no leader is known, the write waits for a leader (polling every
//! `raft::node::LEADER_POLL`) and tries again, as etcd's proposals wait for an election
//! instead of failing. When the deadline passes with nothing proposed, the answer is etcd's
//! "request timed out".
//!
//! Invariant: a forwarded write's outcome is the leader's applied result or an error with
//! etcd's text; a write that may have been applied is never answered with a connection-level
//! error a client would retry (etcd-api §1.10), only with etcd's "request timed out" texts.
//! Invariant: the whole forward, retry included, ends within etcd's request timeout (or the
//! client's deadline, when earlier).

use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Envelope, Outcome};
use crate::raft::forward::ForwardError;
use crate::raft::network::PeerError;
use crate::raft::node::{pause_for_leader, ProposeError};

/// Proposes `cmd` here (with a fresh request header) when this member leads, or forwards it to
/// the leader when a follower's proposal was refused because another member leads (nothing was
/// proposed then; the leader gives it a header of its own).
pub async fn propose_or_forward(
    api: &Api,
    ctx: &ReqCtx,
    cmd: Command,
) -> Result<Outcome, ApiError> {
    let envelope = Envelope::new(api.request_header(ctx)?, cmd);
    propose_envelope_or_forward(api, ctx, envelope).await
}

/// [`propose_or_forward`] with the request header already chosen (v2 writes carry none).
pub async fn propose_envelope_or_forward(
    api: &Api,
    ctx: &ReqCtx,
    envelope: Envelope,
) -> Result<Outcome, ApiError> {
    let deadline = ctx.deadline_within(api.node.request_timeout());
    loop {
        match api.node.propose(envelope.clone()).await {
            Ok(applied) => {
                return applied
                    .result
                    .clone()
                    .map_err(|e| api.unmapped_if_jwt(e.into()))
            }
            Err(ProposeError::NoLeader) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((leader, node)) = api.node.remote_leader() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match api
                .node
                .forward_propose(leader, &node, &envelope, left)
                .await
            {
                Ok(result) => return result.map_err(|e| api.unmapped_if_jwt(e.into())),
                // The member asked no longer leads and proposed nothing, or the call never
                // reached it (it is down): look for the leader again.
                Err(ForwardError::Leader(ProposeError::NoLeader))
                | Err(ForwardError::Peer(PeerError::Unsent(_))) => {}
                Err(e) => {
                    if let ForwardError::Peer(peer) = &e {
                        tracing::warn!(
                            leader = %format!("{leader:x}"),
                            error = %peer,
                            "forwarding a request to the leader failed"
                        );
                    }
                    return Err(e.into());
                }
            }
        }
        // Nothing was proposed: wait for an election to name a leader, within the deadline.
        if !pause_for_leader(deadline).await {
            return Err(ProposeError::Timeout.into());
        }
    }
}
