//! Leadership confirmations shared by concurrent callers, as etcd batches its read-index
//! requests (`linearizableReadLoop`): a caller joins the next round, a round is one read-index
//! call of raft (a heartbeat a quorum must answer), and everyone waiting when a round starts
//! gets its outcome. Under load a round per round trip serves every keep-alive that arrived
//! meanwhile, instead of a round each.
//!
//! Invariants: a caller's round starts after the caller registered, so a confirmation says
//! that this member led at some instant after the call began (what a lease renewal needs, see
//! `api::lease::keep_alive_here`); at most one round runs at a time; the waiting list holds one
//! entry per caller waiting (bounded by the calls in flight), and a caller that gives up only
//! leaves an answer nobody reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::RaftError;
use tokio::sync::oneshot;

use super::node::ProposeError;
use super::Raft;

type Outcome = Result<(), ProposeError>;

/// See the module header.
pub struct Confirmations {
    raft: Raft,
    /// Bound on one round (the request timeout).
    timeout: Duration,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    /// Whether a task is running rounds (it stops when a round starts with nobody waiting).
    running: bool,
    next: Vec<oneshot::Sender<Outcome>>,
}

impl Confirmations {
    pub fn new(raft: Raft, timeout: Duration) -> Arc<Self> {
        Arc::new(Confirmations {
            raft,
            timeout,
            waiting: Mutex::new(Waiting::default()),
        })
    }

    /// Whether this member leads, confirmed by a quorum after this call began: `NoLeader`
    /// when another member leads or none could be confirmed, `Timeout` when no round ended
    /// within the timeout.
    pub async fn confirm(self: &Arc<Self>) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            w.next.push(tx);
            !std::mem::replace(&mut w.running, true)
        };
        if start {
            tokio::spawn(self.clone().rounds());
        }
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }

    async fn rounds(self: Arc<Self>) {
        loop {
            let waiters = {
                let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                if w.next.is_empty() {
                    w.running = false;
                    return;
                }
                std::mem::take(&mut w.next)
            };
            let outcome = self.round().await;
            for waiter in waiters {
                let _ = waiter.send(outcome.clone());
            }
        }
    }

    async fn round(&self) -> Outcome {
        match tokio::time::timeout(self.timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(_))) => Err(ProposeError::NoLeader),
            Ok(Err(RaftError::Fatal(_))) => Err(ProposeError::Stopped),
        }
    }
}
