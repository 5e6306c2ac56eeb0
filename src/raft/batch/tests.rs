//! Batcher tests against a fake raft: order of commands in the log, one reply per caller with
//! its own result, error fan-out, and the count and byte bounds.

use std::sync::Mutex;

use super::*;
use crate::apply::Outcome as Done;
use crate::proto::etcdserverpb::{PutRequest, PutResponse};

fn put(i: u64, value_bytes: usize) -> Envelope {
    let cmd = Command::Put(PutRequest {
        key: format!("k{i}").into_bytes(),
        value: vec![b'v'; value_bytes],
        ..Default::default()
    });
    let header = crate::apply::RequestHeader {
        id: 1000 + i,
        ..Default::default()
    };
    Envelope::new(header, cmd)
}

/// The fake state machine's result for a put of `k<i>`: revision `i`, so each caller can tell
/// whether it got its own result.
fn applied_for(envelope: &Envelope) -> Arc<Applied> {
    let Command::Put(req) = &envelope.command else {
        let cmd = &envelope.command;
        panic!("tests only propose puts, got {cmd:?}");
    };
    let key = String::from_utf8(req.key.clone()).unwrap();
    let revision: i64 = key[1..].parse().unwrap();
    Arc::new(Applied {
        result: Ok(Done::Put(PutResponse::default())),
        events: Vec::new(),
        revision,
    })
}

/// What the fake does with a proposal.
#[derive(Clone, PartialEq)]
enum Mode {
    Apply,
    RefuseAtSend(ProposeError),
    FailAfterSend(ProposeError),
    /// Answers a batch with one result too few.
    ShortReply,
}

#[derive(Clone)]
struct Fake {
    log: Arc<Mutex<Vec<Proposal>>>,
    /// One permit per proposal allowed to complete.
    gate: Arc<Semaphore>,
    mode: Arc<Mutex<Mode>>,
}

impl Fake {
    fn new(open: bool) -> Fake {
        Fake {
            log: Arc::default(),
            gate: Arc::new(Semaphore::new(if open { 1 << 20 } else { 0 })),
            mode: Arc::new(Mutex::new(Mode::Apply)),
        }
    }

    fn proposals(&self) -> Vec<Proposal> {
        self.log.lock().unwrap().clone()
    }
}

impl Sink for Fake {
    fn send(&self, cmd: Proposal) -> Accepted<'_> {
        let mode = self.mode.lock().unwrap().clone();
        if let Mode::RefuseAtSend(e) = mode {
            return Box::pin(async move { Err(e) });
        }
        self.log.lock().unwrap().push(cmd.clone());
        let gate = self.gate.clone();
        let pending: Pending = Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            match (mode, cmd) {
                (Mode::FailAfterSend(e), _) => Err(e),
                (Mode::ShortReply, Proposal::Batch(cmds)) => {
                    Ok(Reply::Batch(cmds[1..].iter().map(applied_for).collect()))
                }
                (_, Proposal::Batch(cmds)) => {
                    Ok(Reply::Batch(cmds.iter().map(applied_for).collect()))
                }
                (_, Proposal::One(cmd)) => Ok(Reply::Applied(applied_for(&cmd))),
            }
        });
        Box::pin(async move { Ok(pending) })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Handle = tokio::task::JoinHandle<Result<Arc<Applied>, ProposeError>>;

/// Starts one proposal per `i` in order, each queued before the next starts.
async fn propose_all(b: &Batcher, ids: impl IntoIterator<Item = u64>, bytes: usize) -> Vec<Handle> {
    let mut handles = Vec::new();
    for i in ids {
        let b = b.clone();
        handles.push(tokio::spawn(async move { b.propose(put(i, bytes)).await }));
        tokio::task::yield_now().await;
    }
    handles
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn keys(proposal: &Proposal) -> Vec<u64> {
    let key = |envelope: &Envelope| match &envelope.command {
        Command::Put(r) => String::from_utf8(r.key[1..].to_vec())
            .unwrap()
            .parse()
            .unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    proposal.envelopes().iter().map(key).collect()
}

fn proposal_bytes(proposal: &Proposal) -> usize {
    proposal.envelopes().iter().map(envelope_bytes).sum()
}

fn limits(count_max: usize, bytes_max: usize) -> BatchLimits {
    BatchLimits {
        count_max,
        bytes_max,
        in_flight_max: 1,
        ..BatchLimits::default()
    }
}

/// Commands sitting in the batcher's queue (not yet taken into a proposal).
fn queued(b: &Batcher) -> usize {
    b.tx.max_capacity() - b.tx.capacity()
}

/// Bug guarded against: the proposal queue was an unbounded channel, so while raft was stalled
/// every client write piled up in memory. Now at most `queue_commands_max` commands wait; more
/// proposers wait for room, and everyone is served in arrival order once raft moves again.
#[test]
fn a_stalled_raft_makes_proposers_wait_at_the_command_bound() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let b = Batcher::start(
            fake.clone(),
            BatchLimits {
                queue_commands_max: 4,
                ..limits(100, 1 << 20)
            },
        );
        let mut handles = propose_all(&b, [0], 4).await;
        settle().await;
        handles.extend(propose_all(&b, 1..=10, 4).await);
        settle().await;
        assert_eq!(fake.proposals().len(), 1, "raft holds the first proposal");
        assert_eq!(queued(&b), 4, "the queue stops at its bound");
        assert!(handles.iter().all(|h| !h.is_finished()));
        fake.gate.add_permits(100);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().revision, i as i64);
        }
        let order: Vec<u64> = fake.proposals().iter().flat_map(keys).collect();
        assert_eq!(order, (0..=10).collect::<Vec<_>>());
    });
}

/// The same for bytes: big commands are held back by the byte budget long before the count
/// bound; a command larger than the whole budget still gets through once the queue is empty.
#[test]
fn a_stalled_raft_makes_proposers_wait_at_the_byte_bound() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let one = envelope_bytes(&put(1, 100));
        let b = Batcher::start(
            fake.clone(),
            BatchLimits {
                queue_bytes_max: 3 * one,
                ..limits(100, 1 << 20)
            },
        );
        let mut handles = propose_all(&b, [0], 100).await;
        settle().await;
        handles.extend(propose_all(&b, 1..=10, 100).await);
        handles.extend(propose_all(&b, [11], 10 * one).await);
        settle().await;
        assert_eq!(fake.proposals().len(), 1);
        assert_eq!(queued(&b), 3, "three commands fill the byte budget");
        assert!(b.room_bytes.available_permits() < one);
        fake.gate.add_permits(100);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().revision, i as i64);
        }
        let order: Vec<u64> = fake.proposals().iter().flat_map(keys).collect();
        assert_eq!(order, (0..=11).collect::<Vec<_>>());
        assert_eq!(
            b.room_bytes.available_permits(),
            3 * one,
            "every share returned"
        );
    });
}

#[test]
fn a_lone_command_is_proposed_at_once_and_unwrapped() {
    runtime().block_on(async {
        let fake = Fake::new(true);
        let b = Batcher::start(fake.clone(), BatchLimits::default());
        let applied = b.propose(put(7, 4)).await.unwrap();
        assert_eq!(applied.revision, 7);
        assert_eq!(
            fake.proposals(),
            vec![Proposal::One(put(7, 4))],
            "a single command is not wrapped"
        );
    });
}

#[test]
fn commands_queued_behind_a_proposal_leave_together_in_order_with_their_own_results() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let b = Batcher::start(fake.clone(), limits(100, 1 << 20));
        let first = propose_all(&b, [1], 4).await;
        settle().await;
        assert_eq!(
            fake.proposals().len(),
            1,
            "the first command left alone, at once"
        );
        let rest = propose_all(&b, 2..=11, 4).await;
        settle().await;
        assert_eq!(
            fake.proposals().len(),
            1,
            "nothing leaves while the slot is busy"
        );
        fake.gate.add_permits(2);
        for (i, h) in first.into_iter().chain(rest).enumerate() {
            assert_eq!(h.await.unwrap().unwrap().revision, i as i64 + 1);
        }
        let proposals = fake.proposals();
        assert_eq!(proposals.len(), 2);
        assert!(matches!(proposals[1], Proposal::Batch(_)));
        assert_eq!(keys(&proposals[1]), (2..=11).collect::<Vec<_>>());
        let ids: Vec<u64> = proposals[1]
            .envelopes()
            .iter()
            .map(|e| e.header.id)
            .collect();
        assert_eq!(
            ids,
            (1002..=1011).collect::<Vec<_>>(),
            "each keeps its own header"
        );
    });
}

#[test]
fn batches_respect_the_count_bound() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let b = Batcher::start(fake.clone(), limits(3, 1 << 20));
        let mut handles = propose_all(&b, [0], 4).await;
        settle().await;
        handles.extend(propose_all(&b, 1..=7, 4).await);
        fake.gate.add_permits(100);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().revision, i as i64);
        }
        let sizes: Vec<Vec<u64>> = fake.proposals().iter().map(keys).collect();
        assert_eq!(sizes, vec![vec![0], vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    });
}

#[test]
fn batches_respect_the_byte_bound_and_an_oversized_command_travels_alone() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let one = envelope_bytes(&put(1, 100));
        let b = Batcher::start(fake.clone(), limits(100, 2 * one + one / 2));
        let mut handles = propose_all(&b, [0], 4).await;
        settle().await;
        handles.extend(propose_all(&b, 1..=5, 100).await);
        handles.extend(propose_all(&b, [6], 10 * one).await);
        handles.extend(propose_all(&b, [7], 100).await);
        fake.gate.add_permits(100);
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().revision, i as i64);
        }
        let groups: Vec<Vec<u64>> = fake.proposals().iter().map(keys).collect();
        assert_eq!(
            groups,
            vec![vec![0], vec![1, 2], vec![3, 4], vec![5], vec![6], vec![7]]
        );
        for p in fake.proposals().iter().filter(|p| keys(p).len() > 1) {
            assert!(proposal_bytes(p) <= 2 * one + one / 2 + 16);
        }
    });
}

#[test]
fn a_failed_proposal_fails_every_caller_in_it_and_later_ones_still_work() {
    for failure in [
        Mode::FailAfterSend(ProposeError::Timeout),
        Mode::RefuseAtSend(ProposeError::NoLeader),
        Mode::ShortReply,
    ] {
        runtime().block_on(async {
            let fake = Fake::new(false);
            let b = Batcher::start(fake.clone(), limits(100, 1 << 20));
            let first = propose_all(&b, [0], 4).await;
            settle().await;
            *fake.mode.lock().unwrap() = failure.clone();
            let batch = propose_all(&b, 1..=5, 4).await;
            fake.gate.add_permits(1);
            assert_eq!(
                first
                    .into_iter()
                    .next()
                    .unwrap()
                    .await
                    .unwrap()
                    .unwrap()
                    .revision,
                0
            );
            let expected = match &failure {
                Mode::FailAfterSend(e) | Mode::RefuseAtSend(e) => e.clone(),
                _ => ProposeError::Stopped,
            };
            fake.gate.add_permits(1);
            for h in batch {
                assert_eq!(h.await.unwrap().unwrap_err(), expected);
            }
            *fake.mode.lock().unwrap() = Mode::Apply;
            fake.gate.add_permits(1);
            assert_eq!(b.propose(put(9, 4)).await.unwrap().revision, 9);
        });
    }
}

#[test]
fn a_caller_that_gave_up_is_not_proposed() {
    runtime().block_on(async {
        let fake = Fake::new(false);
        let b = Batcher::start(fake.clone(), limits(100, 1 << 20));
        let first = propose_all(&b, [0], 4).await;
        settle().await;
        let gone = propose_all(&b, [1], 4).await;
        let kept = propose_all(&b, [2], 4).await;
        settle().await;
        gone[0].abort();
        settle().await;
        fake.gate.add_permits(100);
        assert_eq!(
            first
                .into_iter()
                .next()
                .unwrap()
                .await
                .unwrap()
                .unwrap()
                .revision,
            0
        );
        assert_eq!(
            kept.into_iter()
                .next()
                .unwrap()
                .await
                .unwrap()
                .unwrap()
                .revision,
            2
        );
        let groups: Vec<Vec<u64>> = fake.proposals().iter().map(keys).collect();
        assert_eq!(groups, vec![vec![0], vec![2]]);
    });
}
