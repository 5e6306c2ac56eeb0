//! etcd's Maintenance calls: Status, HashKV, Hash, Alarm and MoveLeader for a member.
//!
//! `Hash` and `HashKV` walk the whole history, so they run on a view of the state off the async
//! workers; `Status` reads only O(1) figures (mvcc keeps the size as a counter).
//!
//! `Snapshot` streams the state as an etcd backend file (`backend::stream`) built on a blocking
//! thread from a view, so writes go on meanwhile.
//!
//! `Defragment` rewrites the member's storage: a snapshot of everything applied, after which
//! the log, WAL segments and snapshot files it covers are dropped by the retention rules.
//!
//! Downgrade belongs to later work and answers `Unimplemented` rather than pretending to
//! succeed.

use super::forward::propose_or_forward;
use super::kv::{on_view, ReadCost};
use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Outcome};
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentResponse, HashKvResponse, HashResponse,
    MoveLeaderResponse, SnapshotResponse, StatusResponse,
};

/// The etcd version we report. Kubernetes parses it as semver to switch features on; see
/// docs/compatibility.md for why this one.
pub const ETCD_VERSION: &str = "3.5.17";

pub const DOWNGRADE_UNSUPPORTED: &str = "downgrade is not supported yet";

/// Snapshot chunks (32 KiB each) waiting for a slow client before the builder pauses.
const SNAPSHOT_CHUNKS_QUEUED_MAX: usize = 8;

/// The cluster version etcd stores in its `cluster` bucket for [`ETCD_VERSION`].
const CLUSTER_VERSION: &str = "3.5.0";

/// What an etcd-format snapshot records beside the state: the applied index and its term as
/// etcd's consistent index and term, the members, and the cluster version.
fn export_info(api: &Api, view: &crate::raft::state_machine::SmView) -> crate::backend::ExportInfo {
    let entries = {
        let sm = api.node.state().read();
        crate::raft::membership::entries(sm.membership.membership())
    };
    let members = entries
        .into_iter()
        .map(|e| crate::backend::Member {
            id: e.id,
            name: e.node.name,
            peer_urls: e.node.peer_urls,
            client_urls: e.node.client_urls,
            is_learner: e.is_learner,
        })
        .collect();
    crate::backend::ExportInfo {
        consistent_index: view.last_applied.map_or(0, |l| l.index),
        term: view.last_applied.map_or(0, |l| l.leader_id.term),
        members,
        cluster_version: CLUSTER_VERSION.to_string(),
    }
}

/// Maintenance.Snapshot: the state at one revision as an etcd backend file with its sha256
/// trailer, in 32 KiB chunks on a bounded channel (each item mapped by `map_err` on failure;
/// the stream ends when the receiver is dropped).
pub fn snapshot<E: Send + 'static>(
    api: &Api,
    map_err: fn(ApiError) -> E,
) -> tokio::sync::mpsc::Receiver<Result<SnapshotResponse, E>> {
    let view = api.node.state().view();
    let info = export_info(api, &view);
    let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_QUEUED_MAX);
    send_snapshot(view, info, tx, map_err);
    rx
}

type SnapshotSender<E> = tokio::sync::mpsc::Sender<Result<SnapshotResponse, E>>;

fn snapshot_message(chunk: crate::backend::Chunk) -> SnapshotResponse {
    SnapshotResponse {
        header: None,
        remaining_bytes: chunk.remaining_bytes,
        blob: chunk.blob,
    }
}

fn snapshot_failure(e: &crate::backend::StreamFailure) -> ApiError {
    ApiError::Internal(format!("etcdserver: snapshot failed: {e}"))
}

/// Builds and sends the snapshot: building walks the whole history, so it runs on a blocking
/// thread (never an async worker), paced by the bounded channel to the client.
#[cfg(not(madsim))]
fn send_snapshot<E: Send + 'static>(
    view: crate::raft::state_machine::SmView,
    info: crate::backend::ExportInfo,
    tx: SnapshotSender<E>,
    map_err: fn(ApiError) -> E,
) {
    tokio::task::spawn_blocking(move || {
        let sent = crate::backend::stream(&view.state, &info, |chunk| {
            tx.blocking_send(Ok(snapshot_message(chunk))).is_ok()
        });
        match sent {
            Ok(_) | Err(crate::backend::StreamFailure::Closed) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(map_err(snapshot_failure(&e))));
            }
        }
    });
}

/// The simulator has no blocking threads: the (small) simulated state is built in memory and
/// sent from a task.
#[cfg(madsim)]
fn send_snapshot<E: Send + 'static>(
    view: crate::raft::state_machine::SmView,
    info: crate::backend::ExportInfo,
    tx: SnapshotSender<E>,
    map_err: fn(ApiError) -> E,
) {
    let mut messages = Vec::new();
    let built = crate::backend::stream(&view.state, &info, |chunk| {
        messages.push(Ok(snapshot_message(chunk)));
        true
    });
    if let Err(e) = built {
        messages.push(Err(map_err(snapshot_failure(&e))));
    }
    tokio::spawn(async move {
        for message in messages {
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
}

/// etcd's Alarm call: GET lists the raised alarms, ACTIVATE raises one, DEACTIVATE clears one
/// (`etcdctl alarm disarm` lists, then clears each). Every action goes through the log, so
/// alarms are the same on every member and survive restarts.
pub async fn alarm(api: &Api, ctx: &ReqCtx, req: AlarmRequest) -> Result<AlarmResponse, ApiError> {
    api.refuse_learner()?;
    let cmd = Command::Alarm {
        action: req.action,
        member_id: req.member_id,
        alarm: req.alarm,
    };
    match propose_or_forward(api, ctx, cmd).await? {
        Outcome::Alarm(mut resp) => {
            resp.header = Some(api.header(&resp.header));
            Ok(resp)
        }
        _ => Err(ApiError::Internal(
            "etcdserver: unexpected apply outcome for alarm".into(),
        )),
    }
}

pub async fn status(api: &Api) -> Result<StatusResponse, ApiError> {
    let m = api.node.metrics();
    let committed = api.node.committed_index().await;
    // Both O(1) (the size is a counter mvcc keeps), so the read lock is held only briefly.
    let (revision, db_size, alarms) = {
        let sm = api.node.state().read();
        (
            sm.state.kv.current_revision(),
            i64::try_from(sm.state.kv.logical_bytes()).unwrap_or(i64::MAX),
            sm.state.alarms.clone(),
        )
    };
    let mut header = api.header(&None);
    header.revision = revision;
    let mut errors = Vec::new();
    if m.current_leader.is_none() {
        errors.push(super::error::NO_LEADER.to_string());
    }
    // etcd lists every raised alarm in protobuf text form, trailing space included.
    for (member_id, alarm) in alarms {
        let name = crate::proto::etcdserverpb::AlarmType::try_from(alarm)
            .map_or_else(|_| alarm.to_string(), |t| t.as_str_name().to_string());
        errors.push(format!("memberID:{member_id} alarm:{name} "));
    }
    Ok(StatusResponse {
        header: Some(header),
        version: ETCD_VERSION.to_string(),
        db_size,
        leader: m.current_leader.unwrap_or(0),
        raft_index: committed.unwrap_or_else(|| m.last_log_index.unwrap_or(0)),
        raft_term: m.current_term,
        raft_applied_index: m.last_applied.map_or(0, |l| l.index),
        errors,
        db_size_in_use: db_size,
        is_learner: api.node.is_learner(),
    })
}

pub async fn hash(api: &Api) -> Result<HashResponse, ApiError> {
    api.refuse_learner()?;
    let (hash, revision) = on_view(api, ReadCost::Scan, |sm| {
        let rev = sm.state.kv.current_revision();
        sm.state.kv.hash_kv(0).map(|(h, _)| (h, rev))
    })
    .await??;
    let mut header = api.header(&None);
    header.revision = revision;
    Ok(HashResponse {
        header: Some(header),
        hash,
    })
}

pub async fn hash_kv(api: &Api, requested: i64) -> Result<HashKvResponse, ApiError> {
    api.refuse_learner()?;
    let (hash, compact_revision, revision) = on_view(api, ReadCost::Scan, move |sm| {
        let rev = sm.state.kv.current_revision();
        sm.state.kv.hash_kv(requested).map(|(h, c)| (h, c, rev))
    })
    .await??;
    let mut header = api.header(&None);
    header.revision = revision;
    let hash_revision = if requested == 0 { revision } else { requested };
    Ok(HashKvResponse {
        header: Some(header),
        hash,
        compact_revision,
        hash_revision,
    })
}

/// etcd's Defragment for this member: see the module header. etcd's answer carries no header.
pub async fn defragment(api: &Api) -> Result<DefragmentResponse, ApiError> {
    tracing::info!("starting defragment");
    let before = api.node.state().read().state.kv.logical_bytes();
    match api.node.rewrite_storage().await {
        Ok(()) => {
            tracing::info!(current_db_size_bytes = before, "finished defragment");
            Ok(DefragmentResponse { header: None })
        }
        Err(e) => {
            tracing::warn!(error = ?e, "failed to defragment");
            Err(e.into())
        }
    }
}

pub async fn move_leader(api: &Api, target: u64) -> Result<MoveLeaderResponse, ApiError> {
    api.refuse_learner()?;
    api.node.move_leader(target).await?;
    Ok(MoveLeaderResponse {
        header: Some(api.header(&None)),
    })
}
