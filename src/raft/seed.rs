//! A member's data dir built from a backup instead of a bootstrap: the identity file and one
//! snapshot holding the restored state and the new cluster's membership, with no WAL. On its
//! first start the member loads that snapshot, openraft sees a log that ends where the snapshot
//! does, and the members elect a leader among themselves (`oxetcdctl snapshot restore`).
//!
//! The snapshot sits at index = number of members with term 0, so every member restored with
//! the same flags holds the same snapshot, and any entry a leader appends (term ≥ 1) sorts
//! after it.
//!
//! Invariant: seeding writes only into a data dir that holds no member yet, and every file is
//! durable (fsynced, directory entries synced) before it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::SnapshotMeta;
use openraft::{CommittedLeaderId, Membership};

use super::node::{write_identity, StartError};
use super::state_machine::image::SnapshotImage;
use super::{LogId, MemberNode, NodeId, StoredMembership};
use crate::apply::State;
use crate::io::Disk;
use crate::snap::SnapStore;

/// Writes a new member's data dir holding `state`, for the cluster `members` (all voters).
pub fn seed_data_dir(
    disk: Arc<dyn Disk>,
    data_dir: &Path,
    member_id: NodeId,
    cluster_id: u64,
    members: &[(NodeId, MemberNode)],
    state: State,
) -> Result<(), StartError> {
    let member_dir = data_dir.join("member");
    let io = |error| StartError::Io {
        path: member_dir.clone(),
        error,
    };
    if disk.exists(&member_dir.join("identity")).map_err(io)? {
        return Err(StartError::Raft(format!(
            "{} already holds a member",
            data_dir.display()
        )));
    }
    disk.create_dir_all(&member_dir).map_err(io)?;
    write_identity(disk.as_ref(), &member_dir, member_id, cluster_id)?;

    let voters: BTreeSet<NodeId> = members.iter().map(|(id, _)| *id).collect();
    let nodes: BTreeMap<NodeId, MemberNode> = members.iter().cloned().collect();
    let index = members.len() as u64;
    let last = LogId::new(CommittedLeaderId::new(0, 0), index);
    let membership = StoredMembership::new(Some(last), Membership::new(vec![voters], nodes));
    let image = SnapshotImage {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: membership,
            snapshot_id: format!("0-{index}-restored"),
        },
        state,
    };
    let bytes = bincode::serialize(&image).map_err(|e| StartError::Raft(e.to_string()))?;
    let snaps = SnapStore::open(
        disk,
        &member_dir.join("snap"),
        SnapStore::MAX_SNAPSHOTS_DEFAULT,
    )
    .map_err(StartError::Snap)?;
    snaps.save(0, index, &bytes).map_err(StartError::Snap)?;
    Ok(())
}
