//! `--experimental-initial-corrupt-check` (etcd 3.5's initial corruption check): before the
//! member serves clients, it hashes its key space (`mvcc::Store::hash_kv`) at its current
//! revision and asks every other member, over the peer protocol's `HashKv` RPC, for its hash at
//! that same revision. A peer with the same compaction point but another hash means the two
//! copies of the data differ: the member refuses to start with etcd's error
//! "<member id> found data inconsistency with peers". Every other outcome (peer unreachable,
//! behind, already compacted past the revision, different compaction point) is logged with
//! etcd's message and does not stop the start, as in etcd. A member without peers has nothing to
//! compare with and passes.
//!
//! `--experimental-corrupt-check-time` runs [`leader_check`] periodically on the leader: the
//! same comparison against every other member, whose mismatching members the caller marks with
//! the CORRUPT alarm (after which the cluster refuses writes with "etcdserver: corrupt
//! cluster", as etcd does).
//!
//! Invariant: a mismatch is only reported between hashes taken at the same revision with the
//! same compaction point (the only case where equal data must give equal hashes).
//! Invariant: the leader's own hash is computed on a view off the async workers, never under
//! the state machine's lock.

use std::time::Duration;

use super::node::RaftNode;
use crate::proto::oxraftpb::hash_kv_response::Outcome;
use crate::proto::oxraftpb::HashKvResponse;

/// Why the check stopped the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptError {
    /// This member's hash could not be computed.
    LocalHash { member_id: u64, reason: String },
    /// At least one peer has other data at the same revision and compaction point.
    Inconsistent { member_id: u64 },
}

impl std::fmt::Display for CorruptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptError::LocalHash { member_id, reason } => {
                write!(f, "{member_id:x} failed to fetch hash ({reason})")
            }
            CorruptError::Inconsistent { member_id } => {
                write!(f, "{member_id:x} found data inconsistency with peers")
            }
        }
    }
}

impl std::error::Error for CorruptError {}

/// This member's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalHash {
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
}

/// What one peer's answer says about the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Same hash.
    Consistent,
    /// Same revision and compaction point, other hash: the data differ.
    Mismatch,
    /// Other hash, but the peer compacted to another point: nothing can be concluded.
    CompactionDiffers,
    /// The peer has not reached the revision yet.
    PeerBehind,
    /// The peer compacted past the revision: this member is behind.
    LocalBehind,
}

/// Compares one peer's answer with the local hash.
pub fn judge(local: &LocalHash, peer: &HashKvResponse) -> Finding {
    match peer.outcome() {
        Outcome::FutureRevision => Finding::PeerBehind,
        Outcome::Compacted => Finding::LocalBehind,
        Outcome::Ok if peer.hash == local.hash => Finding::Consistent,
        Outcome::Ok if peer.compact_revision == local.compact_revision => Finding::Mismatch,
        Outcome::Ok => Finding::CompactionDiffers,
    }
}

/// Runs the check on a started member; see the module comment. `timeout` bounds each peer call.
pub async fn initial_check(node: &RaftNode, timeout: Duration) -> Result<(), CorruptError> {
    let member_id = node.member_id();
    let id = format!("{member_id:x}");
    tracing::info!(
        local_member_id = %id,
        timeout = %format!("{timeout:?}"),
        "starting initial corruption check"
    );
    let local = {
        let sm = node.state().read();
        let kv = &sm.state.kv;
        let revision = kv.current_revision();
        let (hash, compact_revision) =
            kv.hash_kv(revision).map_err(|e| CorruptError::LocalHash {
                member_id,
                reason: e.etcd_message().to_string(),
            })?;
        LocalHash {
            hash,
            revision,
            compact_revision,
        }
    };
    let network = node.network.clone();
    let mut mismatches = 0usize;
    for entry in node.member_entries() {
        if entry.id == member_id {
            continue;
        }
        let urls = &entry.node.peer_urls;
        let endpoints = urls.join(",");
        let peer_id = format!("{:x}", entry.id);
        let mut answer = None;
        let mut last_error = String::from("no peer URL");
        for url in urls {
            match network.hash_kv_at(url, local.revision, timeout).await {
                Ok(resp) => {
                    answer = Some(resp);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let Some(peer) = answer else {
            tracing::warn!(
                local_member_id = %id,
                remote_peer_id = %peer_id,
                remote_peer_endpoints = %endpoints,
                error = %last_error,
                "failed hash kv request"
            );
            continue;
        };
        let finding = judge(&local, &peer);
        let log = |msg: &str| {
            tracing::warn!(
                local_member_id = %id,
                local_member_revision = local.revision,
                local_member_compact_revision = local.compact_revision,
                local_member_hash = local.hash,
                remote_peer_id = %peer_id,
                remote_peer_endpoints = %endpoints,
                remote_peer_revision = peer.revision,
                remote_peer_compact_revision = peer.compact_revision,
                remote_peer_hash = peer.hash,
                "{msg}"
            );
        };
        match finding {
            Finding::Consistent => {}
            Finding::Mismatch => {
                log("found different hash values from remote peer");
                mismatches += 1;
            }
            Finding::CompactionDiffers => {
                log("found different compact revision values from remote peer")
            }
            Finding::PeerBehind => log("cannot fetch hash from slow remote peer"),
            Finding::LocalBehind => {
                log("cannot fetch hash from remote peer; local member is behind")
            }
        }
    }
    if mismatches > 0 {
        return Err(CorruptError::Inconsistent { member_id });
    }
    tracing::info!(
        local_member_id = %id,
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// One periodic check by the leader (nothing when this member does not lead): the members
/// whose hash at the leader's revision differs from the leader's with the same compaction
/// point. Unreachable or lagging members are logged and skipped.
pub async fn leader_check(node: &RaftNode, timeout: Duration) -> Vec<u64> {
    let member_id = node.member_id();
    if node.current_leader() != Some(member_id) {
        return Vec::new();
    }
    let view = node.state().view();
    let hashed = crate::raft::runtime::spawn_blocking(move || {
        let kv = &view.state.kv;
        let revision = kv.current_revision();
        kv.hash_kv(revision)
            .map(|(hash, compact_revision)| LocalHash {
                hash,
                revision,
                compact_revision,
            })
    })
    .await;
    let local = match hashed {
        Ok(Ok(local)) => local,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "failed to hash the local key space");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(error = %e, "failed to hash the local key space");
            return Vec::new();
        }
    };
    let network = node.network.clone();
    let mut mismatched = Vec::new();
    for entry in node.member_entries() {
        if entry.id == member_id {
            continue;
        }
        let mut answer = None;
        for url in &entry.node.peer_urls {
            if let Ok(resp) = network.hash_kv_at(url, local.revision, timeout).await {
                answer = Some(resp);
                break;
            }
        }
        let Some(peer) = answer else {
            tracing::warn!(
                remote_peer_id = %format!("{:x}", entry.id),
                "failed to get hashKV from peer"
            );
            continue;
        };
        if judge(&local, &peer) == Finding::Mismatch {
            tracing::warn!(
                revision_1 = local.revision,
                compact_revision_1 = local.compact_revision,
                hash_1 = local.hash,
                revision_2 = peer.revision,
                compact_revision_2 = peer.compact_revision,
                hash_2 = peer.hash,
                remote_peer_id = %format!("{:x}", entry.id),
                "found hash mismatch"
            );
            mismatched.push(entry.id);
        }
    }
    mismatched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalHash {
        LocalHash {
            hash: 7,
            revision: 20,
            compact_revision: 5,
        }
    }

    fn answer(outcome: Outcome, hash: u32, compact_revision: i64) -> HashKvResponse {
        let mut r = HashKvResponse {
            hash,
            compact_revision,
            revision: 25,
            member_id: 2,
            ..Default::default()
        };
        r.set_outcome(outcome);
        r
    }

    #[test]
    fn only_same_compaction_point_with_another_hash_is_a_mismatch() {
        let l = local();
        assert_eq!(judge(&l, &answer(Outcome::Ok, 7, 5)), Finding::Consistent);
        assert_eq!(judge(&l, &answer(Outcome::Ok, 8, 5)), Finding::Mismatch);
        assert_eq!(
            judge(&l, &answer(Outcome::Ok, 8, 9)),
            Finding::CompactionDiffers
        );
        assert_eq!(
            judge(&l, &answer(Outcome::FutureRevision, 0, 5)),
            Finding::PeerBehind
        );
        assert_eq!(
            judge(&l, &answer(Outcome::Compacted, 0, 30)),
            Finding::LocalBehind
        );
    }

    #[test]
    fn errors_carry_etcd_texts() {
        assert_eq!(
            CorruptError::Inconsistent {
                member_id: 0x8e9e05c52164694d
            }
            .to_string(),
            "8e9e05c52164694d found data inconsistency with peers"
        );
    }
}
