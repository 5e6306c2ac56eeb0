//! raft/milestones.rs — etcd's raft and cluster milestone log lines, derived from openraft's
//! metrics.
//!
//! Operators and tools that watch an etcd member wait for raft's own lines ("became leader at
//! term 2", "raft.node: … elected leader … at term 2") and for the cluster-version lines that
//! follow the first election. openraft logs its internals instead (as debug, see `logging`), so
//! this module watches openraft's server metrics and prints etcd's texts, with `"logger":"raft"` for
//! the raft lines as etcd does. [`transitions`] is a pure function of two observations, so the
//! texts and their order are unit-tested without a running raft.
//!
//! The member's own publication ("published local member to cluster through raft") is printed
//! once the membership applied here carries this member's name and client URLs (in oxetcd the
//! leader publishes every member's attributes through a raft membership entry).
//!
//! Invariant: a line is printed only for a change that was observed in the metrics (nothing is
//!   announced ahead of raft); the cluster-version and publication lines are printed once per
//!   process.

use openraft::ServerState;

use super::{MemberNode, NodeId};
use crate::config::ETCD_API_VERSION;
use crate::logging::RAFT_TARGET;

/// What the milestones are derived from: one observation of openraft's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub term: u64,
    pub state: ServerState,
    pub leader: Option<NodeId>,
}

/// One of etcd's milestone lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Milestone {
    /// `%x became follower at term %d` (raft; learners are followers in etcd's raft).
    BecameFollower { term: u64 },
    /// `%x became candidate at term %d` (raft).
    BecameCandidate { term: u64 },
    /// `%x became leader at term %d` (raft).
    BecameLeader { term: u64 },
    /// `raft.node: %x lost leader %x at term %d` (raft).
    LostLeader { leader: NodeId, term: u64 },
    /// `raft.node: %x elected leader %x at term %d` (raft).
    ElectedLeader { leader: NodeId, term: u64 },
    /// "set initial cluster version" then "enabled capabilities for version" (etcdserver),
    /// once, when the first leader is known.
    ClusterVersion,
}

/// The milestones between two observations, in the order etcd prints them.
pub fn transitions(before: &Observed, after: &Observed, version_announced: bool) -> Vec<Milestone> {
    let mut out = Vec::new();
    let state_changed = before.state != after.state || before.term != after.term;
    if state_changed {
        match after.state {
            ServerState::Leader => out.push(Milestone::BecameLeader { term: after.term }),
            ServerState::Candidate => out.push(Milestone::BecameCandidate { term: after.term }),
            ServerState::Follower | ServerState::Learner
                if !matches!(before.state, ServerState::Follower | ServerState::Learner)
                    || before.term != after.term =>
            {
                out.push(Milestone::BecameFollower { term: after.term })
            }
            _ => {}
        }
    }
    if before.leader != after.leader {
        if let Some(old) = before.leader {
            out.push(Milestone::LostLeader {
                leader: old,
                term: after.term,
            });
        }
        if let Some(new) = after.leader {
            out.push(Milestone::ElectedLeader {
                leader: new,
                term: after.term,
            });
        }
    }
    if !version_announced && after.leader.is_some() {
        out.push(Milestone::ClusterVersion);
    }
    out
}

/// Prints one milestone the way etcd 3.5 does.
fn log(me: NodeId, cluster_id: u64, m: &Milestone) {
    match m {
        Milestone::BecameFollower { term } => {
            tracing::info!(target: RAFT_TARGET, "{me:x} became follower at term {term}")
        }
        Milestone::BecameCandidate { term } => {
            tracing::info!(target: RAFT_TARGET, "{me:x} became candidate at term {term}")
        }
        Milestone::BecameLeader { term } => {
            tracing::info!(target: RAFT_TARGET, "{me:x} became leader at term {term}")
        }
        Milestone::LostLeader { leader, term } => tracing::info!(
            target: RAFT_TARGET,
            "raft.node: {me:x} lost leader {leader:x} at term {term}"
        ),
        Milestone::ElectedLeader { leader, term } => tracing::info!(
            target: RAFT_TARGET,
            "raft.node: {me:x} elected leader {leader:x} at term {term}"
        ),
        Milestone::ClusterVersion => {
            tracing::info!(
                cluster_id = %format!("{cluster_id:x}"),
                local_member_id = %format!("{me:x}"),
                cluster_version = ETCD_API_VERSION,
                "set initial cluster version"
            );
            tracing::info!(
                cluster_version = ETCD_API_VERSION,
                "enabled capabilities for version"
            );
        }
    }
}

fn observe(m: &openraft::metrics::RaftServerMetrics<NodeId, MemberNode>) -> Observed {
    Observed {
        term: m.vote.leader_id().get_term(),
        state: m.state,
        leader: m.current_leader,
    }
}

/// This member's published attributes, once the applied membership carries its client URLs.
fn published(
    m: &openraft::metrics::RaftServerMetrics<NodeId, MemberNode>,
    me: NodeId,
) -> Option<MemberNode> {
    m.membership_config
        .membership()
        .get_node(&me)
        .filter(|n| !n.client_urls.is_empty())
        .cloned()
}

/// Follows openraft's server metrics (vote, role, leader, membership: they change with those
/// only, not with every append and apply) until raft stops, printing each milestone once.
/// `announced` turns true once this member's publication line and the first leader's lines are
/// printed: the member logs "ready to serve client requests" after them, as etcd does (see
/// `RaftNode::wait_announced`).
pub async fn run(
    mut metrics: tokio::sync::watch::Receiver<
        openraft::metrics::RaftServerMetrics<NodeId, MemberNode>,
    >,
    me: NodeId,
    cluster_id: u64,
    announced: tokio::sync::watch::Sender<bool>,
) {
    // The member starts as a follower without a leader (etcd prints "became follower at term
    // N" when it starts); the first observation is compared against that.
    let mut last = Observed {
        term: 0,
        state: ServerState::Learner,
        leader: None,
    };
    let mut version_announced = false;
    let mut publication_announced = false;
    loop {
        let (now, attributes) = {
            let m = metrics.borrow_and_update();
            let attributes = (!publication_announced)
                .then(|| published(&m, me))
                .flatten();
            (observe(&m), attributes)
        };
        for m in transitions(&last, &now, version_announced) {
            version_announced |= m == Milestone::ClusterVersion;
            if matches!(m, Milestone::ElectedLeader { .. }) {
                crate::metrics::LEADER_CHANGES.inc();
            }
            log(me, cluster_id, &m);
        }
        if let Some(node) = attributes {
            publication_announced = true;
            tracing::info!(
                local_member_id = %format!("{me:x}"),
                local_member_attributes = %format!(
                    "{{Name:{} ClientURLs:[{}]}}",
                    node.name,
                    node.client_urls.join(" ")
                ),
                cluster_id = %format!("{cluster_id:x}"),
                "published local member to cluster through raft"
            );
        }
        if publication_announced && version_announced {
            announced.send_if_modified(|a| !std::mem::replace(a, true));
        }
        last = now;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(term: u64, state: ServerState, leader: Option<NodeId>) -> Observed {
        Observed {
            term,
            state,
            leader,
        }
    }

    #[test]
    fn a_single_member_election_reads_like_etcds() {
        let start = obs(0, ServerState::Learner, None);
        let follower = obs(1, ServerState::Follower, None);
        let candidate = obs(2, ServerState::Candidate, None);
        let leader = obs(2, ServerState::Leader, Some(7));
        assert_eq!(
            transitions(&start, &follower, false),
            vec![Milestone::BecameFollower { term: 1 }]
        );
        assert_eq!(
            transitions(&follower, &candidate, false),
            vec![Milestone::BecameCandidate { term: 2 }]
        );
        assert_eq!(
            transitions(&candidate, &leader, false),
            vec![
                Milestone::BecameLeader { term: 2 },
                Milestone::ElectedLeader { leader: 7, term: 2 },
                Milestone::ClusterVersion,
            ]
        );
        // Nothing changed: nothing printed, and the cluster version only once.
        assert!(transitions(&leader, &leader, true).is_empty());
    }

    #[test]
    fn a_leader_change_prints_lost_then_elected() {
        let a = obs(3, ServerState::Follower, Some(1));
        let b = obs(4, ServerState::Follower, Some(2));
        assert_eq!(
            transitions(&a, &b, true),
            vec![
                Milestone::BecameFollower { term: 4 },
                Milestone::LostLeader { leader: 1, term: 4 },
                Milestone::ElectedLeader { leader: 2, term: 4 },
            ]
        );
        let none = obs(4, ServerState::Follower, None);
        assert_eq!(
            transitions(&b, &none, true),
            vec![Milestone::LostLeader { leader: 2, term: 4 }]
        );
    }

    #[test]
    fn a_learner_promoted_to_voter_is_not_a_new_follower() {
        let learner = obs(5, ServerState::Learner, Some(1));
        let voter = obs(5, ServerState::Follower, Some(1));
        assert!(transitions(&learner, &voter, true).is_empty());
    }
}
