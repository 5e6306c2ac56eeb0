//! Write batching: the proposer in front of raft that packs concurrent client commands (each in
//! its own `Envelope`, with its own request header) into one log entry (`Proposal::Batch`), so
//! that a burst of writes costs one entry, one append and one round of raft bookkeeping instead
//! of one each.
//!
//! A single task owns the queue. While fewer than [`BatchLimits::in_flight_max`] proposals are
//! waiting to be applied it takes whatever is queued — one command when the queue holds one, so
//! a lone writer is proposed at once — up to the count and byte bounds, and hands it to raft.
//! Commands that arrive while every slot is busy wait in the queue and leave together in the
//! next proposal. Proposals are handed to raft in queue order by that one task, so the log order
//! is the arrival order.
//!
//! Invariant: every caller gets exactly one answer: its own command's `Applied`, or the error of
//!   the proposal that carried it (or `Stopped` when the batcher is gone).
//! Invariant: a batch holds at most `count_max` commands and at most `bytes_max` estimated
//!   bytes, except a single command larger than `bytes_max`, which travels alone.
//! Invariant: commands leave in arrival order, and the results are matched to callers by
//!   position within the batch.
//! Invariant: the queue holds at most `queue_commands_max` commands and `queue_bytes_max`
//!   estimated bytes (a larger command only when it is alone); a proposer waits for room
//!   (its caller's deadline bounds the wait), so a stalled raft cannot grow memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::node::ProposeError;
use super::Reply;
use crate::apply::{Applied, Command, Envelope, Proposal};

/// How big a batch may get and how many may be in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Commands in one proposal.
    pub count_max: usize,
    /// Estimated encoded bytes of one proposal (kept below the request size limit).
    pub bytes_max: usize,
    /// Proposals handed to raft and not yet applied.
    pub in_flight_max: usize,
    /// Commands waiting in the queue.
    pub queue_commands_max: usize,
    /// Estimated bytes of the commands waiting in the queue.
    pub queue_bytes_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            count_max: 512,
            bytes_max: 1024 * 1024,
            in_flight_max: 2,
            queue_commands_max: crate::config::PROPOSAL_QUEUE_COMMANDS_MAX,
            queue_bytes_max: crate::config::PROPOSAL_QUEUE_BYTES_MAX,
        }
    }
}

/// The outcome of one proposal as raft reports it.
pub type Outcome = Result<Reply, ProposeError>;
/// Resolves when the proposal was applied (or failed).
pub type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;
/// Resolves once raft accepted the proposal into its queue, with the wait for its outcome.
pub type Accepted<'a> = Pin<Box<dyn Future<Output = Result<Pending, ProposeError>> + Send + 'a>>;

/// Where batches go: raft in a member, a fake in tests.
pub trait Sink: Send + Sync + 'static {
    /// Hands `proposal` to raft. Returning means raft has queued it (calls are ordered); the
    /// returned future waits for the result.
    fn send(&self, proposal: Proposal) -> Accepted<'_>;
}

/// A command waiting for a batch, with the caller's reply channel.
struct Queued {
    envelope: Envelope,
    bytes: usize,
    reply: oneshot::Sender<Result<Arc<Applied>, ProposeError>>,
    /// The command's share of the queue's byte budget; released once it was handed to raft.
    room: OwnedSemaphorePermit,
}

/// The handle callers use; dropping every handle stops the batching task.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Queued>,
    /// The queue's byte budget, in bytes (at most `u32::MAX`).
    room_bytes: Arc<Semaphore>,
    room_bytes_max: u32,
}

impl Batcher {
    /// Starts the batching task on the current runtime.
    pub fn start<S: Sink>(sink: S, limits: BatchLimits) -> Batcher {
        let (tx, rx) = mpsc::channel(limits.queue_commands_max.max(1));
        let room_bytes_max = u32::try_from(limits.queue_bytes_max.max(1)).unwrap_or(u32::MAX);
        tokio::spawn(run(Arc::new(sink), limits, rx));
        Batcher {
            tx,
            room_bytes: Arc::new(Semaphore::new(room_bytes_max as usize)),
            room_bytes_max,
        }
    }

    /// Queues `envelope` and waits for its own result; waits for room first while the queue is
    /// full. No deadline here: the caller bounds the wait.
    pub async fn propose(&self, envelope: Envelope) -> Result<Arc<Applied>, ProposeError> {
        let (reply, rx) = oneshot::channel();
        let bytes = envelope_bytes(&envelope);
        // A command larger than the whole budget takes all of it: it waits for an empty queue.
        let share = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .min(self.room_bytes_max);
        let Ok(room) = self.room_bytes.clone().acquire_many_owned(share).await else {
            return Err(ProposeError::Stopped);
        };
        let queued = Queued {
            envelope,
            bytes,
            reply,
            room,
        };
        if self.tx.send(queued).await.is_err() {
            return Err(ProposeError::Stopped);
        }
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }
}

/// An estimate of the command's encoded size (protobuf bytes plus a little framing).
pub fn command_bytes(cmd: &Command) -> usize {
    const FRAMING_BYTES: usize = 16;
    FRAMING_BYTES
        + match cmd {
            Command::Put(r) => r.encoded_len(),
            Command::DeleteRange(r) => r.encoded_len(),
            Command::Txn(r) => r.encoded_len(),
            Command::Compact(r) => r.encoded_len(),
            Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
            | Command::LeaseExpire { .. } => 16,
            Command::Alarm { .. } => 24,
            // Names, a bcrypt hash, a permission's keys: small, bounded by the request size.
            Command::Auth(change) => bincode::serialized_size(change).map_or(256, |n| n as usize),
            Command::V2(req) => bincode::serialized_size(req).map_or(256, |n| n as usize),
        }
}

/// An estimate of the envelope's encoded size: the command's, plus its request header.
pub fn envelope_bytes(envelope: &Envelope) -> usize {
    const HEADER_FIXED_BYTES: usize = 24;
    command_bytes(&envelope.command) + HEADER_FIXED_BYTES + envelope.header.user.len()
}

/// Takes the next batch: `first`, then queued commands while the bounds allow. A command that
/// does not fit is returned as the start of the following batch.
fn fill(
    first: Queued,
    rx: &mut mpsc::Receiver<Queued>,
    limits: &BatchLimits,
) -> (Vec<Queued>, Option<Queued>) {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < limits.count_max {
        let Ok(next) = rx.try_recv() else {
            break;
        };
        if bytes + next.bytes > limits.bytes_max {
            return (batch, Some(next));
        }
        bytes += next.bytes;
        batch.push(next);
    }
    (batch, None)
}

async fn run<S: Sink>(sink: Arc<S>, limits: BatchLimits, mut rx: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(limits.in_flight_max.max(1)));
    let mut carried: Option<Queued> = None;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let (batch, rest) = fill(first, &mut rx, &limits);
        carried = rest;
        propose_batch(sink.as_ref(), batch, permit).await;
    }
}

/// Hands one batch to the sink (in order, before the next batch is formed) and spawns the wait
/// that fans the results out.
async fn propose_batch<S: Sink>(sink: &S, mut batch: Vec<Queued>, permit: OwnedSemaphorePermit) {
    // Callers that already gave up (deadline passed) are dropped before proposing.
    batch.retain(|q| !q.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    // The commands keep their share of the queue's budget until raft has them.
    let mut rooms = Vec::with_capacity(batch.len());
    let mut envelopes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for q in batch {
        envelopes.push(q.envelope);
        replies.push(q.reply);
        rooms.push(q.room);
    }
    let proposal = match envelopes.pop() {
        Some(lone) if envelopes.is_empty() => Proposal::One(lone),
        Some(last) => {
            envelopes.push(last);
            Proposal::Batch(envelopes)
        }
        None => return,
    };
    let accepted = sink.send(proposal).await;
    drop(rooms);
    match accepted {
        Err(e) => fan_out(replies, Err(e)),
        Ok(pending) => {
            tokio::spawn(async move {
                let outcome = pending.await;
                drop(permit);
                fan_out(replies, outcome);
            });
        }
    }
}

type ReplyTx = oneshot::Sender<Result<Arc<Applied>, ProposeError>>;

/// Sends each caller its own result: position `i` of a batch reply goes to caller `i`.
fn fan_out(replies: Vec<ReplyTx>, outcome: Outcome) {
    // A caller that stopped waiting has dropped its receiver; nothing to tell it then.
    match outcome {
        Err(e) => {
            for tx in replies {
                let _ = tx.send(Err(e.clone()));
            }
        }
        Ok(Reply::Applied(applied)) if replies.len() == 1 => {
            for tx in replies {
                let _ = tx.send(Ok(applied.clone()));
            }
        }
        Ok(Reply::Batch(results)) if results.len() == replies.len() => {
            for (tx, applied) in replies.into_iter().zip(results) {
                let _ = tx.send(Ok(applied));
            }
        }
        Ok(other) => {
            // A normal entry always yields one result per command; anything else is a broken
            // invariant of the state machine. Report it as a stopped member, not a success.
            tracing::error!(commands = replies.len(), reply = ?other, "proposal reply does not match its batch");
            for tx in replies {
                let _ = tx.send(Err(ProposeError::Stopped));
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests;
