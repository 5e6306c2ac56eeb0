//! etcd's CheckQuorum for openraft: a leader that has not heard from a quorum of voters for an
//! election timeout steps down. A leader cut off from the others is deposed on their side
//! without knowing it; etcd's steps down, so its clients are told "no leader" (require-leader
//! watches end and move to another member), its status stops claiming leadership, and
//! learners stop following it. openraft has no such rule: its leader leads in its own eyes
//! until the cut heals.
//!
//! This task reads the leader's quorum-acknowledged time from the raft metrics (openraft
//! reports `millis_since_quorum_ack` on every turn of its loop, which its ticks keep turning)
//! and, once that time is older than the election timeout, makes raft step down by granting a
//! vote one term up to candidate 0, an ID no member has: raft then follows nobody, and its
//! election timer campaigns again later, as an isolated follower does.
//!
//! Invariants: never while a leadership transfer pauses heartbeats (the transfer bounds its
//! own pause); never in a one-voter cluster (its quorum is itself); the vote goes exactly one
//! term above the leader's and claims a log covering the leader's own (see [`step_down`]), so
//! the local vote rules grant it, and no real candidate can ever be given the vote (none is 0). The
//! estimate of the acknowledged time errs recent (a metrics report is read after it was
//! made), so a step-down is never early.

use std::time::Duration;

use openraft::{ServerState, Vote};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{NodeId, Raft};

/// The candidate ID of the step-down vote: no member has it (IDs are never 0).
pub const NOBODY: NodeId = 0;

/// Whether a leader whose quorum last answered at `acked` (or who took office at `since`,
/// whichever is later) must step down at `now`.
pub fn must_step_down(
    now: Instant,
    since: Instant,
    acked: Option<Instant>,
    timeout: Duration,
) -> bool {
    let last = acked.map_or(since, |a| a.max(since));
    now.saturating_duration_since(last) > timeout
}

/// Watches this member's leadership every `period` until `stopped` is set; see the module
/// header.
pub async fn run(
    raft: Raft,
    member_id: NodeId,
    election_timeout: Duration,
    period: Duration,
    transferring: watch::Receiver<bool>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut metrics = raft.metrics();
    // When this member took office (as seen here) and the latest quorum-acknowledged time.
    let mut since: Option<(u64, Instant)> = None;
    let mut acked: Option<Instant> = None;
    loop {
        tokio::time::sleep(period).await;
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let changed = metrics.has_changed().unwrap_or(false);
        let m = metrics.borrow_and_update().clone();
        let term = m.vote.leader_id().term;
        let leading = m.state == ServerState::Leader && m.current_leader == Some(member_id);
        let voters = m.membership_config.membership().voter_ids().count();
        if !leading || voters <= 1 || *transferring.borrow() {
            since = None;
            acked = None;
            continue;
        }
        let took_office = match since {
            Some((t, at)) if t == term => at,
            _ => {
                since = Some((term, now));
                acked = None;
                now
            }
        };
        if changed {
            if let Some(at) = m
                .millis_since_quorum_ack
                .and_then(|ms| now.checked_sub(Duration::from_millis(ms)))
            {
                acked = Some(acked.map_or(at, |a| a.max(at)));
            }
        }
        if !must_step_down(now, took_office, acked, election_timeout) {
            continue;
        }
        let silent = now.saturating_duration_since(acked.unwrap_or(took_office));
        if step_down(&raft, member_id, term, silent).await {
            since = None;
            acked = None;
        }
    }
}

/// Grants the step-down vote (see the module header). The request claims a log that ends at
/// the last possible index of the leader's own term: every entry a leader holds beyond what it
/// inherited is of its term, so the claim covers its log however many entries were appended
/// since (the local vote rules refuse a candidate whose log is behind). Answers whether the
/// vote was granted; a refusal (the leader's lease on its own vote had not run out yet) is
/// tried again on the next turn.
async fn step_down(raft: &Raft, member_id: NodeId, term: u64, silent: Duration) -> bool {
    let covers_my_log =
        openraft::LogId::new(openraft::CommittedLeaderId::new(term, member_id), u64::MAX);
    let vote = Vote::new(term + 1, NOBODY);
    let request = openraft::raft::VoteRequest::new(vote, Some(covers_my_log));
    match raft.vote(request).await {
        Ok(resp) if resp.vote_granted => {
            tracing::warn!(
                local_member_id = %format!("{member_id:x}"),
                term,
                silent_ms = silent.as_millis() as u64,
                "stepped down: no quorum answered within an election timeout (check quorum)"
            );
            true
        }
        Ok(_) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_steps_down_only_after_an_election_timeout_without_its_quorum() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(1000);
        let at = |ms| t0 + Duration::from_millis(ms);
        // Fresh in office, nothing acknowledged yet: the timeout counts from taking office.
        assert!(!must_step_down(at(900), t0, None, timeout));
        assert!(must_step_down(at(1001), t0, None, timeout));
        // A quorum answered at 500 ms: good until 1500 ms.
        assert!(!must_step_down(at(1400), t0, Some(at(500)), timeout));
        assert!(must_step_down(at(1501), t0, Some(at(500)), timeout));
        // An acknowledgement from before taking office does not count for more than it.
        assert!(!must_step_down(at(2900), at(2000), Some(at(100)), timeout));
    }
}
