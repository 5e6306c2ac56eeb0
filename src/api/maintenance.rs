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
//! `Downgrade` answers as etcd 3.5 does for every action and target version (the allowed
//! target is the minor version below the cluster version, 3.4), except that a valid ENABLE is
//! refused: no downgrade job can ever run here (oxetcd cannot become etcd 3.4), so none is
//! started and CANCEL always finds none in flight.

use super::forward::propose_or_forward;
use super::kv::{on_view, ReadCost};
use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Outcome};
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvResponse, HashResponse, MoveLeaderResponse, SnapshotResponse, StatusResponse,
};

/// The etcd version we report. Kubernetes parses it as semver to switch features on; see
/// docs/compatibility.md for why this one.
pub const ETCD_VERSION: &str = "3.5.17";

/// Why a Downgrade call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DowngradeError {
    /// The target is not `major.minor[.patch...]`.
    WrongFormat,
    /// The target is not the one minor version below the cluster version.
    InvalidTarget,
    /// CANCEL without a downgrade job.
    NoInflight,
    /// An action number etcd does not define.
    UnknownAction,
    /// ENABLE of a valid target: oxetcd never starts a downgrade job.
    NotSupported,
}

impl DowngradeError {
    /// etcd's text (ours for `NotSupported`).
    pub fn message(self) -> &'static str {
        match self {
            DowngradeError::WrongFormat => "etcdserver: wrong downgrade target version format",
            DowngradeError::InvalidTarget => "etcdserver: invalid downgrade target version",
            DowngradeError::NoInflight => "etcdserver: no inflight downgrade job",
            DowngradeError::UnknownAction => "etcdserver: unknown method",
            DowngradeError::NotSupported => {
                "oxetcd: downgrading the cluster is not supported (oxetcd cannot run as the \
                 target version; migrate through a snapshot instead)"
            }
        }
    }
}

/// `DowngradeRequest.action` values.
const DOWNGRADE_VALIDATE: i32 = 0;
const DOWNGRADE_ENABLE: i32 = 1;
const DOWNGRADE_CANCEL: i32 = 2;

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
/// Maintenance.Downgrade. Like etcd 3.5.1 it needs no permission, even with auth on (no
/// action changes any state here).
///
/// VALIDATE checks the target's format, reads linearizably (as etcd, to see the newest cluster
/// version), then checks the target against the cluster version and answers with the cluster
/// version. ENABLE validates the same way and, where etcd would start the job, is refused.
/// CANCEL reads linearizably and finds no job.
pub async fn downgrade(api: &Api, req: DowngradeRequest) -> Result<DowngradeResponse, ApiError> {
    api.refuse_learner()?;
    match req.action {
        DOWNGRADE_VALIDATE | DOWNGRADE_ENABLE => {
            let target = downgrade_target(&req.version).ok_or(DowngradeError::WrongFormat)?;
            api.node.read_index().await?;
            let (major, minor) = cluster_version_parts();
            let allowed = (major, minor.saturating_sub(1));
            if target != allowed {
                if req.action == DOWNGRADE_ENABLE {
                    tracing::warn!(
                        error = DowngradeError::InvalidTarget.message(),
                        "reject downgrade request"
                    );
                }
                return Err(DowngradeError::InvalidTarget.into());
            }
            if req.action == DOWNGRADE_ENABLE {
                tracing::warn!(
                    target_version = %req.version,
                    "reject downgrade request: oxetcd does not downgrade"
                );
                return Err(DowngradeError::NotSupported.into());
            }
            Ok(DowngradeResponse {
                header: Some(api.header(&None)),
                version: CLUSTER_VERSION.to_string(),
            })
        }
        DOWNGRADE_CANCEL => {
            api.node.read_index().await?;
            Err(DowngradeError::NoInflight.into())
        }
        _ => Err(DowngradeError::UnknownAction.into()),
    }
}

/// (major, minor) of [`CLUSTER_VERSION`].
fn cluster_version_parts() -> (i64, i64) {
    match downgrade_target(CLUSTER_VERSION) {
        Some(parts) => parts,
        None => panic!("CLUSTER_VERSION {CLUSTER_VERSION:?} is not a version"),
    }
}

/// etcd's reading of a downgrade target: a semantic version (`3.4.0`, `3.4.1-rc.0+build`) or
/// `major.minor`, of which only major and minor count.
fn downgrade_target(v: &str) -> Option<(i64, i64)> {
    semver_major_minor(v).or_else(|| semver_major_minor(&format!("{v}.0")))
}

/// go-semver's `NewVersion` rules: `MAJOR.MINOR.PATCH` with Go integers, optional
/// `-prerelease` and `+metadata` made of dot-separated `[0-9A-Za-z-]+` identifiers.
fn semver_major_minor(v: &str) -> Option<(i64, i64)> {
    let (rest, metadata) = match v.split_once('+') {
        Some((r, m)) => (r, Some(m)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let identifiers_ok = |s: &str| {
        s.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if pre.is_some_and(|p| !p.is_empty() && !identifiers_ok(p))
        || metadata.is_some_and(|m| !m.is_empty() && !identifiers_ok(m))
    {
        return None;
    }
    let mut parts = core.splitn(3, '.');
    let mut next = || go_parse_int(parts.next()?);
    let (major, minor, _patch) = (next()?, next()?, next()?);
    Some((major, minor))
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits.
fn go_parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

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

#[cfg(test)]
mod downgrade_tests {
    use super::*;

    #[test]
    fn targets_are_read_like_go_semver() {
        assert_eq!(downgrade_target("3.4"), Some((3, 4)));
        assert_eq!(downgrade_target("3.4.0"), Some((3, 4)));
        assert_eq!(downgrade_target("3.4.27"), Some((3, 4)));
        assert_eq!(downgrade_target("3.4.0-rc.1+build.5"), Some((3, 4)));
        // Metadata is split off first, so a leading '+' leaves no version (as in Go).
        assert_eq!(downgrade_target("+3.4.0"), None);
        assert_eq!(downgrade_target("3.5"), Some((3, 5)));
        // An empty pre-release passes go-semver's identifier check.
        assert_eq!(downgrade_target("3.4.0-"), Some((3, 4)));
        for bad in [
            "",
            "3",
            "v3.4",
            "3.4.x",
            "3.4.0.1",
            "abc",
            "3..4",
            "3.4.0-a..b",
        ] {
            assert_eq!(downgrade_target(bad), None, "{bad:?}");
        }
        assert_eq!(cluster_version_parts(), (3, 5));
    }
}
