//! etcd's Cluster calls: the member list from raft's membership, and membership changes
//! (MemberAdd/Remove/Update/Promote) made by the leader through `raft::membership`. A follower
//! forwards a change to the leader over the peer protocol (`raft::forward::MembershipChange`),
//! never through the leader's client URL (which may need client certificates and tokens).
//!
//! Invariant: a change is made only by the leader; a follower never changes anything itself.

use std::time::Duration;

use super::{Api, ApiError};
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListResponse, MemberPromoteResponse,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use crate::raft::forward::{ForwardError, MembershipChange, MembershipDone};
use crate::raft::membership::{MemberEntry, MembershipError};
use crate::raft::node::ProposeError;

fn to_member(e: &MemberEntry) -> Member {
    Member {
        id: e.id,
        name: e.node.name.clone(),
        peer_ur_ls: e.node.peer_urls.clone(),
        client_ur_ls: e.node.client_urls.clone(),
        is_learner: e.is_learner,
    }
}

fn to_members(entries: &[MemberEntry]) -> Vec<Member> {
    let mut out: Vec<Member> = entries.iter().map(to_member).collect();
    out.sort_by_key(|m| m.id);
    out
}

/// Peer URLs as etcd validates and stores them (parsed, sorted); "etcdserver: given member
/// URLs are invalid" otherwise.
fn check_urls(urls: &[String]) -> Result<Vec<String>, ApiError> {
    if urls.is_empty() {
        return Err(ApiError::InvalidPeerUrls);
    }
    let mut parsed = Vec::with_capacity(urls.len());
    for u in urls {
        parsed.push(crate::config::Url::parse(u).map_err(|_| ApiError::InvalidPeerUrls)?);
    }
    crate::config::sort_urls(&mut parsed);
    Ok(parsed.iter().map(ToString::to_string).collect())
}

/// etcd's cluster responses carry no revision.
fn header(api: &Api) -> ResponseHeader {
    api.header(&None)
}

/// Makes `change` here when this member leads, or has the leader make it (over the peer
/// protocol, `ForwardMembership`). While no leader is known, or the member asked answers that
/// it no longer leads (it changed nothing), it asks again until `LEADER_WAIT` has passed, then
/// fails with etcd's "no leader". The whole call ends within etcd's request timeout. Bug
/// guarded against: a call that found no leader for an instant failed at once.
async fn change(api: &Api, change: MembershipChange) -> Result<MembershipDone, ApiError> {
    let node = &api.node;
    let now = tokio::time::Instant::now();
    let leader_deadline = now + LEADER_WAIT;
    let deadline = now + node.request_timeout();
    loop {
        match node.change_membership(change.clone()).await {
            Ok(done) => return Ok(done),
            Err(MembershipError::NotLeader) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some((leader, leader_node)) = node.remote_leader() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match node
                .forward_membership(leader, &leader_node, &change, left)
                .await
            {
                Ok(answer) => return answer.map_err(ApiError::Membership),
                // It no longer leads and did nothing: look for the new leader.
                Err(ForwardError::Leader(ProposeError::NoLeader)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if tokio::time::Instant::now() >= leader_deadline {
            return Err(ApiError::NoLeader);
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
}

/// How long a membership call waits for some member to lead before failing.
const LEADER_WAIT: Duration = Duration::from_secs(3);
const LEADER_POLL: Duration = Duration::from_millis(50);

pub async fn member_add(api: &Api, req: MemberAddRequest) -> Result<MemberAddResponse, ApiError> {
    api.refuse_learner()?;
    let peer_urls = check_urls(&req.peer_ur_ls)?;
    let done = change(
        api,
        MembershipChange::Add {
            peer_urls,
            is_learner: req.is_learner,
        },
    )
    .await?;
    let members = to_members(&done.members);
    let member = members.iter().find(|m| Some(m.id) == done.added).cloned();
    Ok(MemberAddResponse {
        header: Some(header(api)),
        member,
        members,
    })
}

pub async fn member_remove(api: &Api, id: u64) -> Result<MemberRemoveResponse, ApiError> {
    api.refuse_learner()?;
    let done = change(api, MembershipChange::Remove { id }).await?;
    Ok(MemberRemoveResponse {
        header: Some(header(api)),
        members: to_members(&done.members),
    })
}

pub async fn member_update(
    api: &Api,
    req: MemberUpdateRequest,
) -> Result<MemberUpdateResponse, ApiError> {
    api.refuse_learner()?;
    let peer_urls = check_urls(&req.peer_ur_ls)?;
    let done = change(
        api,
        MembershipChange::Update {
            id: req.id,
            peer_urls,
        },
    )
    .await?;
    Ok(MemberUpdateResponse {
        header: Some(header(api)),
        members: to_members(&done.members),
    })
}

/// Every member raft has applied, voters and learners, ordered by ID; after a read barrier
/// when `linearizable`.
pub async fn member_list(api: &Api, linearizable: bool) -> Result<MemberListResponse, ApiError> {
    api.refuse_learner()?;
    if linearizable {
        api.node.read_index().await?;
    }
    let members = {
        let sm = api.node.state().read();
        let entries = crate::raft::membership::entries(sm.membership.membership());
        to_members(&entries)
    };
    Ok(MemberListResponse {
        header: Some(header(api)),
        members,
    })
}

pub async fn member_promote(api: &Api, id: u64) -> Result<MemberPromoteResponse, ApiError> {
    api.refuse_learner()?;
    let done = change(api, MembershipChange::Promote { id }).await?;
    Ok(MemberPromoteResponse {
        header: Some(header(api)),
        members: to_members(&done.members),
    })
}
