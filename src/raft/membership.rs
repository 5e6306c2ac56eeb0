//! Runtime membership changes (etcd's MemberAdd/Remove/Update/Promote and MoveLeader) mapped
//! onto openraft's membership, the discovery a member joining an existing cluster does, and the
//! detection of this member's own removal.
//!
//! Mapping: an etcd learner is an openraft learner (a node outside every voter set); an etcd
//! voter is an openraft voter. Adding a voter first adds it as a learner (without waiting for it
//! to catch up) and then makes it a voter, as etcd counts a new voter in the quorum right away:
//! the call returns once the new member is in the voter set the leader uses, so adding a voter
//! that never starts costs the cluster the same fault tolerance it costs etcd.
//!
//! Invariant: every change is made by the leader through a raft membership entry; a member that
//!   is not leader answers `NotLeader` and changes nothing.
//! Invariant: membership calls run one at a time on the leader (checks and change under
//!   `membership_turn`), and a change openraft refuses because the previous one is still in
//!   its joint configuration is asked again (`in_turn`), so calls are applied in turn as etcd
//!   applies them instead of failing.
//! With `--strict-reconfig-check=false` the pre-checks of `prechecks` (started-member quorum,
//! reachability) are skipped, as etcd does; everything else is checked either way.
//!
//! Invariant: a member ID is never reused: runtime IDs hash the peer URLs with the current time,
//!   and an ID already in the membership is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::ChangeMembers;

use super::network::PeerNetwork;
use super::node::RaftNode;
use super::{MemberNode, NodeId, TypeConfig};
use crate::proto::oxraftpb::{MembershipResponse, TimeoutNowRequest};

/// One member as the Cluster API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberEntry {
    pub id: NodeId,
    pub node: MemberNode,
    pub is_learner: bool,
}

/// Why a membership change or leadership transfer was refused or did not finish. Serde: a
/// leader answers forwarded changes with it (`raft::forward`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MembershipError {
    /// This member is not the leader (the request belongs on the leader).
    NotLeader,
    MemberNotFound,
    IdExists,
    PeerUrlsExist,
    NotEnoughStarted,
    TooManyLearners,
    NotLearner,
    LearnerNotReady,
    BadTransferee,
    TransferTimeout,
    Timeout,
    Stopped,
    /// A voter the change relies on is not reachable (etcd's strict reconfiguration check).
    Unhealthy,
    /// openraft refused the change.
    Raft(String),
}

impl MembershipError {
    /// etcd's error text for this error.
    pub fn etcd_message(&self) -> &str {
        match self {
            MembershipError::NotLeader => "etcdserver: not leader",
            MembershipError::MemberNotFound => "etcdserver: member not found",
            MembershipError::IdExists => "etcdserver: member ID already exist",
            MembershipError::PeerUrlsExist => "etcdserver: Peer URLs already exists",
            MembershipError::NotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            MembershipError::TooManyLearners => "etcdserver: too many learner members in cluster",
            MembershipError::NotLearner => "etcdserver: can only promote a learner member",
            MembershipError::LearnerNotReady => {
                "etcdserver: can only promote a learner member which is in sync with leader"
            }
            MembershipError::BadTransferee => "etcdserver: bad leader transferee",
            MembershipError::TransferTimeout => {
                "etcdserver: request timed out, leader transfer took too long"
            }
            MembershipError::Timeout => "etcdserver: request timed out",
            MembershipError::Stopped => "etcdserver: server stopped",
            MembershipError::Unhealthy | MembershipError::Raft(_) => {
                "etcdserver: unhealthy cluster"
            }
        }
    }
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::Raft(detail) => write!(f, "{}: {detail}", self.etcd_message()),
            other => f.write_str(other.etcd_message()),
        }
    }
}

impl std::error::Error for MembershipError {}

/// etcd's limit on learners in one cluster.
const LEARNERS_MAX: usize = 1;
/// etcd promotes a learner only once it has matched this fraction of the leader's log.
const LEARNER_READY_FRACTION: f64 = 0.9;

/// A member counts as started once it has published its name (etcd's `IsStarted`).
fn is_started(node: &MemberNode) -> bool {
    !node.name.is_empty()
}

/// etcd's strict reconfiguration check for adding (or promoting) one voter: the started voters
/// must still form a quorum of the grown voter set.
fn ready_to_add_voter(voters: &[&MemberNode]) -> bool {
    let members = voters.len() + 1;
    let started = voters.iter().filter(|n| is_started(n)).count();
    // A one-member cluster may always grow to two.
    if started == 1 && members == 2 {
        return true;
    }
    let quorum = members / 2 + 1;
    started >= quorum
}

/// etcd's strict reconfiguration check for removing a voter: the started voters that remain
/// must form a quorum of the remaining voter set.
fn ready_to_remove_voter(remaining: &[&MemberNode]) -> bool {
    let started = remaining.iter().filter(|n| is_started(n)).count();
    let quorum = remaining.len() / 2 + 1;
    started >= quorum
}

/// etcd's reconfiguration pre-checks. With `--strict-reconfig-check=false` (`strict` false)
/// etcd skips them all: the started-members quorum rules and the reachability of the voters.
/// The learner limit, ID and URL checks and a learner's readiness for promotion are not part
/// of them and always apply.
mod prechecks {
    use super::{ready_to_add_voter, ready_to_remove_voter, MemberNode, MembershipError};

    /// MemberAdd: a new voter must leave a quorum of started voters, and every voter must be
    /// reachable (`all_reached`, evaluated only when it matters).
    pub(super) fn add(
        strict: bool,
        is_learner: bool,
        voters: &[&MemberNode],
        all_reached: impl FnOnce() -> bool,
    ) -> Result<(), MembershipError> {
        if !strict {
            return Ok(());
        }
        if !is_learner && !ready_to_add_voter(voters) {
            return Err(MembershipError::NotEnoughStarted);
        }
        if !all_reached() {
            return Err(MembershipError::Unhealthy);
        }
        Ok(())
    }

    /// MemberRemove of a voter: the voters that remain must hold a quorum of started and of
    /// reached members.
    pub(super) fn remove_voter(
        strict: bool,
        remaining: &[&MemberNode],
        quorum_reached: impl FnOnce() -> bool,
    ) -> Result<(), MembershipError> {
        if !strict {
            return Ok(());
        }
        if !ready_to_remove_voter(remaining) {
            return Err(MembershipError::NotEnoughStarted);
        }
        if !quorum_reached() {
            return Err(MembershipError::Unhealthy);
        }
        Ok(())
    }

    /// MemberPromote: the grown voter set must keep a quorum of started voters.
    pub(super) fn promote(strict: bool, voters: &[&MemberNode]) -> Result<(), MembershipError> {
        if strict && !ready_to_add_voter(voters) {
            return Err(MembershipError::NotEnoughStarted);
        }
        Ok(())
    }
}

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>;

fn map_write_err(e: WriteError) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            MembershipError::Raft(c.to_string())
        }
        RaftError::Fatal(_) => MembershipError::Stopped,
    }
}

/// How long a membership change waits before asking again while the previous one is running.
const IN_TURN_RETRY: Duration = Duration::from_millis(20);

/// Runs one membership change, asking again while openraft refuses it because the previous
/// change has not finished (its joint configuration is not committed yet): etcd applies
/// changes one after another instead of refusing. The caller bounds the wait.
async fn in_turn<F, Fut>(mut change: F) -> Result<ClientWriteResponse<TypeConfig>, WriteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ClientWriteResponse<TypeConfig>, WriteError>>,
{
    loop {
        match change().await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) => tokio::time::sleep(IN_TURN_RETRY).await,
            other => return other,
        }
    }
}

/// The members of the membership the leader uses, ordered by ID.
pub fn entries(membership: &openraft::Membership<NodeId, MemberNode>) -> Vec<MemberEntry> {
    membership
        .nodes()
        .map(|(id, node)| MemberEntry {
            id: *id,
            node: node.clone(),
            is_learner: !membership.voter_ids().any(|v| v == *id),
        })
        .collect()
}

impl RaftNode {
    /// `--strict-reconfig-check`: whether MemberAdd/Remove/Promote run etcd's pre-checks
    /// (on unless switched off; see `prechecks`).
    pub fn set_strict_reconfig_check(&self, on: bool) {
        self.strict_reconfig_check.store(on, Ordering::Relaxed);
    }

    fn strict_reconfig(&self) -> bool {
        self.strict_reconfig_check.load(Ordering::Relaxed)
    }

    fn membership_now(&self) -> openraft::Membership<NodeId, MemberNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        if self.current_leader() == Some(self.member_id) {
            Ok(())
        } else {
            Err(MembershipError::NotLeader)
        }
    }

    /// Whether raft's messages currently reach every other voter (etcd refuses to add a member
    /// otherwise). etcd asks that each stream has been up for 5 s; this asks that the latest
    /// message got through, so a cluster that has just started can grow at once.
    fn voters_all_reached(&self, membership: &openraft::Membership<NodeId, MemberNode>) -> bool {
        let contacts = self.network.contacts();
        membership
            .voter_ids()
            .filter(|v| *v != self.member_id)
            .all(|v| contacts.active_since(v).is_some())
    }

    /// Whether the voters still reached after removing `removed` form a quorum of the voters
    /// that remain (etcd refuses the removal otherwise). Removing an unreachable member is
    /// always allowed: it is not part of the active quorum.
    fn quorum_reached_without(
        &self,
        membership: &openraft::Membership<NodeId, MemberNode>,
        removed: NodeId,
    ) -> bool {
        let contacts = self.network.contacts();
        let reached = |v: NodeId| v == self.member_id || contacts.active_since(v).is_some();
        if !reached(removed) {
            return true;
        }
        let voters = membership.voter_ids().count();
        let active = membership.voter_ids().filter(|v| reached(*v)).count();
        // After the removal: active - 1 reached voters must be a quorum of voters - 1.
        active > 1 + (voters - 1) / 2
    }

    /// The members in the latest membership this member knows (voters and learners).
    pub fn member_entries(&self) -> Vec<MemberEntry> {
        entries(&self.membership_now())
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, MembershipError>>,
    ) -> Result<T, MembershipError> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(MembershipError::Timeout),
        }
    }

    /// etcd's MemberAdd: a new member with `peer_urls`, as a learner or a voter. Returns its ID
    /// and the members after the change.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(NodeId, Vec<MemberEntry>), MembershipError> {
        self.require_leader()?;
        let _turn = self.membership_turn.lock().await;
        let membership = self.membership_now();
        let voters: Vec<&MemberNode> = membership
            .voter_ids()
            .filter_map(|v| membership.get_node(&v))
            .collect();
        prechecks::add(self.strict_reconfig(), is_learner, &voters, || {
            self.voters_all_reached(&membership)
        })?;
        // etcd's order of checks: ID, then peer URLs, then the learner limit.
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = crate::ids::member_id(&peer_urls, "", Some(now_s));
        if membership.get_node(&id).is_some() {
            return Err(MembershipError::IdExists);
        }
        let taken = membership
            .nodes()
            .any(|(_, n)| n.peer_urls.iter().any(|u| peer_urls.contains(u)));
        if taken {
            return Err(MembershipError::PeerUrlsExist);
        }
        let learners = membership.nodes().count() - voters.len();
        if is_learner && learners >= LEARNERS_MAX {
            return Err(MembershipError::TooManyLearners);
        }
        let node = MemberNode {
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
        };
        self.bounded(async {
            in_turn(|| self.raft.add_learner(id, node.clone(), false))
                .await
                .map_err(map_write_err)
        })
        .await?;
        if !is_learner {
            self.make_voter(id).await?;
        }
        tracing::info!(member = %format!("{id:x}"), is_learner, "added member");
        Ok((id, self.member_entries()))
    }

    /// Makes learner `id` a voter. Returns once the leader's membership counts it as a voter:
    /// the joint configuration may need the new member itself to commit (e.g. growing one
    /// member to two), so the change finishes in the background, as in etcd, where the cluster
    /// waits for the new member from the moment it is added.
    async fn make_voter(&self, id: NodeId) -> Result<(), MembershipError> {
        let raft = self.raft.clone();
        let change = tokio::spawn(async move {
            let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            in_turn(|| raft.change_membership(voters.clone(), false)).await
        });
        let waiter = self.raft.wait(Some(self.request_timeout));
        let wait = waiter.metrics(
            |m| {
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id)
            },
            "new voter in the membership",
        );
        let settle = Duration::from_millis(2 * self.raft.config().election_timeout_max);
        match wait.await {
            Ok(_) => {}
            Err(openraft::metrics::WaitError::Timeout(..)) => return Err(MembershipError::Timeout),
            Err(openraft::metrics::WaitError::ShuttingDown) => {
                return Err(MembershipError::Stopped)
            }
        }
        // Report a refusal (e.g. another change in progress) when it comes quickly.
        match tokio::time::timeout(settle, change).await {
            Ok(Ok(Err(e))) => Err(map_write_err(e)),
            _ => Ok(()),
        }
    }

    /// etcd's MemberRemove.
    pub async fn remove_member(&self, id: NodeId) -> Result<Vec<MemberEntry>, MembershipError> {
        self.require_leader()?;
        let _turn = self.membership_turn.lock().await;
        let membership = self.membership_now();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::MemberNotFound);
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        let change = if is_voter {
            let remaining: Vec<&MemberNode> = membership
                .voter_ids()
                .filter(|v| *v != id)
                .filter_map(|v| membership.get_node(&v))
                .collect();
            prechecks::remove_voter(self.strict_reconfig(), &remaining, || {
                self.quorum_reached_without(&membership, id)
            })?;
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.bounded(async {
            in_turn(|| self.raft.change_membership(change.clone(), false))
                .await
                .map_err(map_write_err)
        })
        .await?;
        tracing::info!(member = %format!("{id:x}"), "removed member");
        Ok(self.member_entries())
    }

    /// etcd's MemberUpdate: new peer URLs for member `id` (name and client URLs are kept).
    pub async fn update_member(
        &self,
        id: NodeId,
        peer_urls: Vec<String>,
    ) -> Result<Vec<MemberEntry>, MembershipError> {
        self.require_leader()?;
        let _turn = self.membership_turn.lock().await;
        let membership = self.membership_now();
        let Some(current) = membership.get_node(&id) else {
            return Err(MembershipError::MemberNotFound);
        };
        let taken = membership
            .nodes()
            .filter(|(other, _)| **other != id)
            .any(|(_, n)| n.peer_urls.iter().any(|u| peer_urls.contains(u)));
        if taken {
            return Err(MembershipError::PeerUrlsExist);
        }
        let node = MemberNode {
            peer_urls,
            ..current.clone()
        };
        let nodes = ChangeMembers::SetNodes(BTreeMap::from([(id, node)]));
        self.bounded(async {
            in_turn(|| self.raft.change_membership(nodes.clone(), false))
                .await
                .map_err(map_write_err)
        })
        .await?;
        Ok(self.member_entries())
    }

    /// etcd's MemberPromote: learner `id` becomes a voter once it has caught up.
    pub async fn promote_member(&self, id: NodeId) -> Result<Vec<MemberEntry>, MembershipError> {
        self.require_leader()?;
        let _turn = self.membership_turn.lock().await;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::MemberNotFound);
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(MembershipError::NotLearner);
        }
        let voters: Vec<&MemberNode> = membership
            .voter_ids()
            .filter_map(|v| membership.get_node(&v))
            .collect();
        prechecks::promote(self.strict_reconfig(), &voters)?;
        let leader_match = m.last_log_index.unwrap_or(0);
        let learner_match = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        if (learner_match as f64) < (leader_match as f64) * LEARNER_READY_FRACTION {
            return Err(MembershipError::LearnerNotReady);
        }
        let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.bounded(async {
            in_turn(|| self.raft.change_membership(voters.clone(), false))
                .await
                .map_err(map_write_err)
        })
        .await?;
        tracing::info!(member = %format!("{id:x}"), "promoted learner");
        Ok(self.member_entries())
    }

    /// etcd's MoveLeader: hands leadership to voter `target`. As raft's leadership transfer
    /// does, the leader first stops taking proposals (they wait and then go to whichever member
    /// leads), waits until the target holds its whole log, pauses its own heartbeats and
    /// elections, and asks the target to campaign; everything resumes whatever the outcome.
    ///
    /// The transfer runs in its own task, so a caller that stops waiting (a client whose
    /// deadline passed drops this future) cannot leave the member paused: the task always
    /// restores proposals, heartbeats and elections, and gives up after `request_timeout`
    /// (with heartbeats paused for at most [`handover_ms_max`]), as etcd answers "leader
    /// transfer took too long".
    pub async fn move_leader(&self, target: NodeId) -> Result<(), MembershipError> {
        self.require_leader()?;
        if target == self.member_id {
            return Ok(());
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let node = match membership.get_node(&target) {
            Some(node) if membership.voter_ids().any(|v| v == target) => node.clone(),
            _ => return Err(MembershipError::BadTransferee),
        };
        let transfer = Transfer {
            raft: self.raft.clone(),
            network: self.network.clone(),
            member_id: self.member_id,
            transferring: self.transferring.clone(),
            heartbeats_paused: self.heartbeats_paused.clone(),
            request_timeout: self.request_timeout,
            handover_max: Duration::from_millis(handover_ms_max(
                self.raft.config().election_timeout_max,
            )),
        };
        match tokio::spawn(transfer.run(target, node)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(MembershipError::Stopped),
        }
    }

    /// Makes `change` (refused with `NotLeader` unless this member leads): the one dispatch of
    /// a membership change, for calls made here and for those a follower forwards.
    pub async fn change_membership(
        &self,
        change: super::forward::MembershipChange,
    ) -> Result<super::forward::MembershipDone, MembershipError> {
        use super::forward::{MembershipChange, MembershipDone};
        let members_only = |members| MembershipDone {
            added: None,
            members,
        };
        match change {
            MembershipChange::Add {
                peer_urls,
                is_learner,
            } => {
                let (id, members) = self.add_member(peer_urls, is_learner).await?;
                Ok(MembershipDone {
                    added: Some(id),
                    members,
                })
            }
            MembershipChange::Remove { id } => self.remove_member(id).await.map(members_only),
            MembershipChange::Update { id, peer_urls } => {
                self.update_member(id, peer_urls).await.map(members_only)
            }
            MembershipChange::Promote { id } => self.promote_member(id).await.map(members_only),
        }
    }

    /// etcd's leadership transfer on a graceful stop: a leader with other voters hands
    /// leadership to the voter its messages have reached the longest (etcd's
    /// "longest connected"), so a rolling restart costs no election timeout. Bounded by
    /// [`RaftNode::move_leader`]'s bounds; a failure is logged and the stop goes on.
    pub async fn transfer_leadership_on_stop(&self) {
        let local = format!("{:x}", self.member_id);
        if self.require_leader().is_err() {
            tracing::info!(local_member_id = %local, "skipped leadership transfer; local server is not leader");
            return;
        }
        let membership = self.membership_now();
        if !membership.voter_ids().any(|v| v != self.member_id) {
            tracing::info!(local_member_id = %local, "skipped leadership transfer for single voting member cluster");
            return;
        }
        // etcd's "longest connected": the voter our messages have reached the longest.
        let contacts = self.network.contacts();
        let transferee = membership
            .voter_ids()
            .filter(|v| *v != self.member_id)
            .filter_map(|v| contacts.active_since(v).map(|since| (since, v)))
            .min()
            .map(|(_, v)| v);
        let Some(target) = transferee else {
            tracing::warn!(local_member_id = %local, error = %MembershipError::Unhealthy, "leadership transfer failed");
            return;
        };
        tracing::info!(
            local_member_id = %local,
            current_leader_member_id = %local,
            transferee_member_id = %format!("{target:x}"),
            "leadership transfer starting"
        );
        match self.move_leader(target).await {
            Ok(()) => tracing::info!(
                local_member_id = %local,
                old_leader_member_id = %local,
                new_leader_member_id = %format!("{target:x}"),
                "leadership transfer finished"
            ),
            Err(e) => {
                tracing::warn!(local_member_id = %local, error = %e, "leadership transfer failed")
            }
        }
    }

    /// Resolves once this member learns that it was removed from the cluster: its membership
    /// no longer lists it after having listed it, or (when it has no leader, or its leader has
    /// not reached it for three election timeouts: [`super::peer::LeaderContact`]) a peer with
    /// a newer membership does not list it. A joiner that has no membership yet asks the peers
    /// of its [`JoinView`] and compares with the index of the answer that listed it: etcd's
    /// joiner given the ID of a member removed meanwhile is told so by its peers and exits; so
    /// does this one instead of waiting for a leader forever.
    pub async fn wait_removed(&self) {
        let poll = Duration::from_millis(500);
        let leaderless_max = Duration::from_millis(3 * self.raft.config().election_timeout_max);
        let mut seen_self = false;
        let mut leaderless_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(poll).await;
            let m = self.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            let listed = membership.get_node(&self.member_id).is_some();
            if listed {
                seen_self = true;
            } else if seen_self && membership.nodes().count() > 0 {
                return;
            }
            // A leader counts while it still reaches this member: a joiner can hold one late
            // append from a deposed leader and show that leader forever.
            let heard = self
                .leader_contact
                .since()
                .is_some_and(|ago| ago < leaderless_max);
            let leading = m.current_leader == Some(self.member_id);
            if leading || (m.current_leader.is_some() && heard) {
                leaderless_since = None;
                continue;
            }
            let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() < leaderless_max {
                continue;
            }
            let (urls, mine) = if membership.nodes().count() == 0 {
                match &self.join_view {
                    Some(join) => (join.peer_urls.clone(), join.membership_index),
                    None => (Vec::new(), 0),
                }
            } else {
                let urls = membership
                    .nodes()
                    .filter(|(id, _)| **id != self.member_id)
                    .flat_map(|(_, node)| node.peer_urls.iter().cloned())
                    .collect();
                (urls, m.membership_config.log_id().map_or(0, |l| l.index))
            };
            if self.peers_dropped_me(&urls, mine).await {
                return;
            }
            leaderless_since = Some(tokio::time::Instant::now());
        }
    }

    /// Whether a member at one of `urls` has a membership newer than `my_index` that does not
    /// list this member.
    async fn peers_dropped_me(&self, urls: &[String], my_index: u64) -> bool {
        for url in urls {
            let Ok(view) = self
                .network
                .membership_at(url, Duration::from_secs(1))
                .await
            else {
                continue;
            };
            if view.cluster_id == self.cluster_id
                && view.membership_index > my_index
                && !view.members.iter().any(|m| m.id == self.member_id)
            {
                return true;
            }
        }
        false
    }
}

/// `--force-new-cluster`: appends a membership entry naming `me` the only member, after the
/// last entry of the recovered log, so that raft starts with a one-voter configuration and
/// keeps every entry and the state built from them. A log with nothing in it is left alone.
pub async fn force_new_cluster(
    log: &super::log_store::LogStore,
    member_id: NodeId,
    me: &MemberNode,
) -> Result<(), openraft::StorageError<NodeId>> {
    let Some(last) = log.last_log_id() else {
        return Ok(());
    };
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([member_id])],
        BTreeMap::from([(member_id, me.clone())]),
    );
    let entry = openraft::Entry::<super::TypeConfig> {
        log_id: openraft::LogId::new(last.leader_id, last.index + 1),
        payload: openraft::EntryPayload::Membership(membership),
    };
    log.append_before_start(entry).await?;
    tracing::warn!(
        index = last.index + 1,
        "force-new-cluster: this member is now the only member of its cluster"
    );
    Ok(())
}

/// Why a member started with `--initial-cluster-state existing` could not join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// No peer answered.
    Unreachable {
        peers: Vec<String>,
        last_error: String,
    },
    /// The cluster does not list a member with these peer URLs.
    NotAMember { peer_urls: Vec<String> },
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Unreachable { peers, last_error } => write!(
                f,
                "cannot fetch cluster info from peer urls {peers:?}: could not retrieve cluster information from the given URLs ({last_error})"
            ),
            JoinError::NotAMember { peer_urls } => write!(
                f,
                "member with peer URLs {peer_urls:?} is not in the cluster's member list; add it first (etcdctl member add)"
            ),
        }
    }
}

impl std::error::Error for JoinError {}

/// What a joining member learned from the existing cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinInfo {
    pub member_id: NodeId,
    pub cluster_id: u64,
    /// What the answer that listed this member said about the cluster.
    pub view: JoinView,
}

/// A joining member's first view of its cluster: the membership index of the peer's answer
/// that listed it and the other members' peer URLs in that answer. Until raft replicates a
/// membership to it, this is how it learns that it was removed in the meantime (its ID can
/// come from a peer that had not applied the removal yet): see `RaftNode::wait_removed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinView {
    pub membership_index: u64,
    pub peer_urls: Vec<String>,
}

/// Asks the members at `peer_urls` (from `--initial-cluster`, without this member's own URLs)
/// which member has `my_peer_urls`, preferring the answer of a member that knows a leader.
///
/// Each peer gets `attempt` to answer; when no round finds this member, the peers are asked
/// again until `deadline` has passed: a peer may be briefly unreachable, or may not have
/// applied the `member add` yet when the new member is started right after it (etcd asks each
/// peer once and exits; a retry within the deadline spares the operator the restart). The
/// last round's error is returned.
pub async fn discover(
    dialer: crate::net::Dialer,
    peer_urls: &[String],
    my_peer_urls: &[String],
    attempt: Duration,
    deadline: Duration,
) -> Result<JoinInfo, JoinError> {
    let until = tokio::time::Instant::now() + deadline;
    // Not a member yet: IDs 0 ("not known yet") and the peer URLs it was added with.
    let identity = super::network::PeerIdentity {
        member_id: 0,
        cluster_id: 0,
        peer_urls: my_peer_urls.to_vec(),
    };
    let network = PeerNetwork::new(dialer, attempt, identity);
    loop {
        let err = match discover_once(&network, peer_urls, my_peer_urls, attempt).await {
            Ok(info) => return Ok(info),
            Err(e) => e,
        };
        let next = tokio::time::Instant::now() + DISCOVERY_PAUSE;
        if peer_urls.is_empty() || next >= until {
            return Err(err);
        }
        tracing::info!(error = %err, "could not join yet; asking the peers again");
        tokio::time::sleep_until(next).await;
    }
}

/// The pause between two rounds of [`discover`].
const DISCOVERY_PAUSE: Duration = Duration::from_millis(250);

/// One round of [`discover`]: every peer asked once.
async fn discover_once(
    network: &PeerNetwork,
    peer_urls: &[String],
    my_peer_urls: &[String],
    attempt: Duration,
) -> Result<JoinInfo, JoinError> {
    let mut last_error = String::from("no peer URLs besides this member's own");
    let mut best: Option<MembershipResponse> = None;
    let mut refused_as_unknown = false;
    for url in peer_urls {
        match network.membership_at(url, attempt).await {
            // The member answers only peers it lists (see `peer::admit`).
            Err(e) if e.to_string().contains(super::peer::NOT_A_MEMBER) => {
                refused_as_unknown = true;
                last_error = format!("{url}: {e}");
            }
            Ok(view) => {
                let better = best.as_ref().is_none_or(|b| {
                    (view.leader_id != 0, view.membership_index)
                        > (b.leader_id != 0, b.membership_index)
                });
                if better {
                    best = Some(view);
                }
            }
            Err(e) => last_error = format!("{url}: {e}"),
        }
    }
    let Some(view) = best else {
        if refused_as_unknown {
            return Err(JoinError::NotAMember {
                peer_urls: my_peer_urls.to_vec(),
            });
        }
        return Err(JoinError::Unreachable {
            peers: peer_urls.to_vec(),
            last_error,
        });
    };
    let mut mine: Vec<&String> = my_peer_urls.iter().collect();
    mine.sort();
    let found = view.members.iter().find(|m| {
        let mut theirs: Vec<&String> = m.peer_urls.iter().collect();
        theirs.sort();
        theirs == mine
    });
    match found {
        Some(m) => Ok(JoinInfo {
            member_id: m.id,
            cluster_id: view.cluster_id,
            view: JoinView {
                membership_index: view.membership_index,
                peer_urls: view
                    .members
                    .iter()
                    .filter(|other| other.id != m.id)
                    .flat_map(|other| other.peer_urls.iter().cloned())
                    .collect(),
            },
        }),
        None => Err(JoinError::NotAMember {
            peer_urls: my_peer_urls.to_vec(),
        }),
    }
}

/// How long a leader keeps its heartbeats and elections paused while the transferee
/// campaigns: the transferee's vote requests are granted once the other voters' leases of the
/// old leader ran out (one `election_timeout_max`), so three of them leave room for a retried
/// campaign; raft aborts a transfer after about an election timeout for the same reason.
pub(crate) fn handover_ms_max(election_timeout_max_ms: u64) -> u64 {
    3 * election_timeout_max_ms.max(1)
}

/// One leadership transfer, owned by its own task (see [`RaftNode::move_leader`]).
struct Transfer {
    raft: super::Raft,
    network: PeerNetwork,
    member_id: NodeId,
    transferring: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    heartbeats_paused: Arc<AtomicBool>,
    request_timeout: Duration,
    handover_max: Duration,
}

impl Transfer {
    /// Runs the transfer to its end, bounded by `request_timeout`; whatever happens, proposals,
    /// heartbeats and elections are running again when it returns (or unwinds).
    async fn run(self, target: NodeId, node: MemberNode) -> Result<(), MembershipError> {
        // One transfer at a time: a second one waits until the first is over (it then finds
        // this member no longer leads, or transfers again).
        let claim = async {
            let mut gate = self.transferring.subscribe();
            loop {
                if let Some(paused) = TransferPause::claim(&self.transferring) {
                    return paused;
                }
                // An error means the node is gone; the steps below then fail on their own.
                let _ = gate.wait_for(|busy| !*busy).await;
            }
        };
        let Ok(_paused) = tokio::time::timeout(self.request_timeout, claim).await else {
            return Err(MembershipError::TransferTimeout);
        };
        let steps = async {
            let last_log_index = self.settled_last_log_index(target).await?;
            let _timers = PausedTimers::begin(&self.raft, &self.heartbeats_paused);
            let handover = self.hand_over(target, &node, last_log_index);
            match tokio::time::timeout(self.handover_max, handover).await {
                Ok(outcome) => outcome,
                Err(_) => Err(MembershipError::TransferTimeout),
            }
        };
        let outcome = match tokio::time::timeout(self.request_timeout, steps).await {
            Ok(outcome) => outcome,
            Err(_) => Err(MembershipError::TransferTimeout),
        };
        match &outcome {
            Ok(()) => {
                tracing::info!(from = %format!("{:x}", self.member_id), to = %format!("{target:x}"), "leadership transferred")
            }
            Err(e) => {
                tracing::warn!(to = %format!("{target:x}"), error = %e, "leadership transfer failed")
            }
        }
        outcome
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        if self.raft.metrics().borrow().current_leader == Some(self.member_id) {
            Ok(())
        } else {
            Err(MembershipError::NotLeader)
        }
    }

    /// With proposals held back, the leader's last log index once nothing more can arrive,
    /// after waiting until `target` has matched it.
    ///
    /// A proposal handed to raft just before the pause may still sit in raft's input queue;
    /// two round trips through that queue (`with_raft_state`, processed in order after it)
    /// make sure it was appended and that the metrics read next were published after it (the
    /// core publishes metrics at the top of each loop turn, and the second call is taken in a
    /// later turn than the first). Bug guarded against: an entry appended after the check left
    /// the transferee one entry behind; its vote requests were refused and its repeated
    /// campaigns kept anyone from leading until the call timed out.
    async fn settled_last_log_index(&self, target: NodeId) -> Result<u64, MembershipError> {
        for _ in 0..2 {
            self.raft
                .with_raft_state(|_| ())
                .await
                .map_err(|e| MembershipError::Raft(e.to_string()))?;
        }
        let has_whole_log = move |m: &openraft::RaftMetrics<NodeId, MemberNode>| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten())
                .map(|l| l.index)
                >= m.last_log_index
        };
        let caught_up = self
            .raft
            .wait(Some(self.request_timeout))
            .metrics(has_whole_log, "transferee caught up")
            .await
            .map_err(|_| MembershipError::TransferTimeout)?;
        self.require_leader()?;
        Ok(caught_up.last_log_index.unwrap_or(0))
    }

    /// Asks `target` to campaign and waits until it leads.
    async fn hand_over(
        &self,
        target: NodeId,
        node: &MemberNode,
        last_log_index: u64,
    ) -> Result<(), MembershipError> {
        let term = self.raft.metrics().borrow().current_term;
        let req = TimeoutNowRequest {
            leader_id: self.member_id,
            term,
            last_log_index,
        };
        let asked = self
            .network
            .timeout_now(target, node, req, Duration::from_secs(1))
            .await;
        match asked {
            Ok(true) => self
                .raft
                .wait(Some(self.handover_max))
                .metrics(|m| m.current_leader == Some(target), "leader moved")
                .await
                .map(|_| ())
                .map_err(|_| MembershipError::TransferTimeout),
            Ok(false) => Err(MembershipError::BadTransferee),
            Err(_) => Err(MembershipError::TransferTimeout),
        }
    }
}

/// Holds proposals back for the life of a leadership transfer; dropping it lets them go on
/// every return path.
struct TransferPause<'a>(&'a tokio::sync::watch::Sender<bool>);

impl<'a> TransferPause<'a> {
    /// Holds proposals back unless another transfer already does (`None` then).
    fn claim(transferring: &'a tokio::sync::watch::Sender<bool>) -> Option<Self> {
        let claimed = transferring.send_if_modified(|busy| !std::mem::replace(busy, true));
        claimed.then_some(TransferPause(transferring))
    }
}

impl Drop for TransferPause<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// Pauses the leader's heartbeats (`heartbeats_paused`, which `node::send_heartbeats` obeys:
/// openraft's own heartbeats stay off) and elections while the transferee campaigns; dropping
/// it resumes both on every path (return, timeout, unwinding).
struct PausedTimers<'a> {
    raft: &'a super::Raft,
    heartbeats_paused: &'a AtomicBool,
}

impl<'a> PausedTimers<'a> {
    fn begin(raft: &'a super::Raft, heartbeats_paused: &'a AtomicBool) -> Self {
        heartbeats_paused.store(true, Ordering::Relaxed);
        raft.runtime_config().elect(false);
        PausedTimers {
            raft,
            heartbeats_paused,
        }
    }
}

impl Drop for PausedTimers<'_> {
    fn drop(&mut self) {
        self.heartbeats_paused.store(false, Ordering::Relaxed);
        self.raft.runtime_config().elect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> MemberNode {
        MemberNode {
            name: name.into(),
            peer_urls: vec![format!("http://{name}:2380")],
            client_urls: Vec::new(),
        }
    }

    #[test]
    fn strict_reconfig_add_follows_etcd() {
        let (a, b, c, u) = (node("a"), node("b"), node("c"), node(""));
        // One member may always grow to two.
        assert!(ready_to_add_voter(&[&a]));
        // Three started: a fourth is fine.
        assert!(ready_to_add_voter(&[&a, &b, &c]));
        // One started of two: a third would need two started.
        assert!(!ready_to_add_voter(&[&a, &u]));
        // Two started of three, plus one: quorum of four is three.
        assert!(!ready_to_add_voter(&[&a, &b, &u]));
        assert!(ready_to_add_voter(&[&a, &b]));
    }

    #[test]
    fn strict_reconfig_remove_follows_etcd() {
        let (a, b, u) = (node("a"), node("b"), node(""));
        assert!(ready_to_remove_voter(&[&a, &b]));
        assert!(ready_to_remove_voter(&[&a]));
        assert!(!ready_to_remove_voter(&[&a, &u, &node("")]));
        assert!(ready_to_remove_voter(&[&a, &b, &u]));
    }

    /// Regression: `--strict-reconfig-check=false` was accepted and ignored; etcd then skips
    /// every reconfiguration pre-check.
    #[test]
    fn prechecks_are_skipped_without_strict_reconfig_check() {
        let (a, u) = (node("a"), node(""));
        let unreached = || false;
        // One started of two voters: adding a third voter needs two started.
        assert_eq!(
            prechecks::add(true, false, &[&a, &u], unreached),
            Err(MembershipError::NotEnoughStarted)
        );
        assert_eq!(prechecks::add(false, false, &[&a, &u], unreached), Ok(()));
        // An unreachable voter blocks even a learner, unless the checks are off.
        assert_eq!(
            prechecks::add(true, true, &[&a, &u], unreached),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(prechecks::add(false, true, &[&a, &u], unreached), Ok(()));
        assert_eq!(prechecks::add(true, false, &[&a], || true), Ok(()));
        // Removing a voter so that the remaining ones lack started quorum.
        let remaining = [&a, &u, &u];
        assert_eq!(
            prechecks::remove_voter(true, &remaining, || true),
            Err(MembershipError::NotEnoughStarted)
        );
        assert_eq!(
            prechecks::remove_voter(true, &[&a], unreached),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(
            prechecks::remove_voter(false, &remaining, unreached),
            Ok(())
        );
        assert_eq!(
            prechecks::promote(true, &[&a, &u]),
            Err(MembershipError::NotEnoughStarted)
        );
        assert_eq!(prechecks::promote(false, &[&a, &u]), Ok(()));
    }

    #[cfg(not(madsim))]
    #[test]
    fn discovery_without_an_answering_peer_says_so() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mine = vec!["http://127.0.0.1:2".to_string()];
        let err = rt
            .block_on(discover(
                crate::net::Dialer::plaintext(),
                &["http://127.0.0.1:1".to_string()],
                &mine,
                Duration::from_millis(300),
                Duration::from_millis(800),
            ))
            .unwrap_err();
        assert!(matches!(err, JoinError::Unreachable { .. }), "{err}");
        assert!(err
            .to_string()
            .contains("could not retrieve cluster information from the given URLs"));
        let none = rt
            .block_on(discover(
                crate::net::Dialer::plaintext(),
                &[],
                &mine,
                Duration::from_millis(300),
                Duration::from_secs(60),
            ))
            .unwrap_err();
        assert!(matches!(none, JoinError::Unreachable { .. }));
    }

    #[test]
    fn errors_carry_etcd_texts() {
        assert_eq!(
            MembershipError::MemberNotFound.to_string(),
            "etcdserver: member not found"
        );
        assert_eq!(
            MembershipError::LearnerNotReady.to_string(),
            "etcdserver: can only promote a learner member which is in sync with leader"
        );
    }
}
