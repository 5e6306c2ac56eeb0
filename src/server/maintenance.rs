//! `etcdserverpb.Maintenance`: Status, HashKV, Hash and Alarm for a member.
//!
//! `Hash` and `HashKV` walk the whole history, so they run on a view of the state off the async
//! workers; `Status` reads only O(1) figures (mvcc keeps the size as a counter).
//!
//! `Snapshot` streams the state as an etcd backend file (`backend::stream`) built on a blocking
//! thread from a view, so writes go on meanwhile.
//!
//! Methods that belong to later work (Downgrade, Defragment) answer `Unimplemented` rather than
//! pretending to succeed.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::kv_status;
use super::kv::{on_view, ReadCost};
use super::Ctx;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::raft::state_machine::SmView;
use crate::server::stream::ChannelStream;

/// The etcd version we report. Kubernetes parses it as semver to switch features on; see
/// docs/compatibility.md for why this one.
pub const ETCD_VERSION: &str = "3.5.17";

/// Snapshot chunks (32 KiB each) waiting for a slow client before the builder pauses.
const SNAPSHOT_CHUNKS_QUEUED_MAX: usize = 8;

/// What an etcd-format snapshot records beside the state: the applied index and its term as
/// etcd's consistent index and term, the members, and the cluster version.
fn export_info(ctx: &Ctx, view: &SmView) -> crate::backend::ExportInfo {
    let entries = {
        let sm = ctx.node.state().read();
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

type SnapshotSender = tokio::sync::mpsc::Sender<Result<SnapshotResponse, Status>>;

fn snapshot_message(chunk: crate::backend::Chunk) -> SnapshotResponse {
    SnapshotResponse {
        header: None,
        remaining_bytes: chunk.remaining_bytes,
        blob: chunk.blob,
    }
}

fn snapshot_failure(e: &crate::backend::StreamFailure) -> Status {
    Status::internal(format!("etcdserver: snapshot failed: {e}"))
}

/// Builds and sends the snapshot: building walks the whole history, so it runs on a blocking
/// thread (never an async worker), paced by the bounded channel to the client.
#[cfg(not(madsim))]
fn send_snapshot(view: SmView, info: crate::backend::ExportInfo, tx: SnapshotSender) {
    tokio::task::spawn_blocking(move || {
        let sent = crate::backend::stream(&view.state, &info, |chunk| {
            tx.blocking_send(Ok(snapshot_message(chunk))).is_ok()
        });
        match sent {
            Ok(_) | Err(crate::backend::StreamFailure::Closed) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(snapshot_failure(&e)));
            }
        }
    });
}

/// The simulator has no blocking threads: the (small) simulated state is built in memory and
/// sent from a task.
#[cfg(madsim)]
fn send_snapshot(view: SmView, info: crate::backend::ExportInfo, tx: SnapshotSender) {
    let mut messages = Vec::new();
    let built = crate::backend::stream(&view.state, &info, |chunk| {
        messages.push(Ok(snapshot_message(chunk)));
        true
    });
    if let Err(e) = built {
        messages.push(Err(snapshot_failure(&e)));
    }
    tokio::spawn(async move {
        for message in messages {
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
}

/// The cluster version etcd stores in its `cluster` bucket for [`ETCD_VERSION`].
const CLUSTER_VERSION: &str = "3.5.0";

/// The Maintenance service.
pub struct MaintenanceService {
    ctx: Arc<Ctx>,
}

impl MaintenanceService {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        MaintenanceService { ctx }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        super::cluster::refuse_learner(&self.ctx)?;
        let req = request.into_inner();
        if req.action != 0 {
            return Err(Status::unimplemented(
                "alarm activation is not supported yet",
            ));
        }
        // No alarm can be raised yet (no space quota, no corruption check), so the list is empty.
        let header = self.ctx.header(&None);
        Ok(Response::new(AlarmResponse {
            header: Some(header),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let m = self.ctx.node.metrics();
        let committed = self.ctx.node.committed_index().await;
        // Both O(1) (the size is a counter mvcc keeps), so the read lock is held only briefly.
        let (revision, db_size) = {
            let sm = self.ctx.node.state().read();
            (
                sm.state.kv.current_revision(),
                i64::try_from(sm.state.kv.logical_bytes()).unwrap_or(i64::MAX),
            )
        };
        let mut header = self.ctx.header(&None);
        header.revision = revision;
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push(super::error::NO_LEADER.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(header),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: committed.unwrap_or_else(|| m.last_log_index.unwrap_or(0)),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map_or(0, |l| l.index),
            errors,
            db_size_in_use: db_size,
            is_learner: self.ctx.node.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(Status::unimplemented("defragment is not supported yet"))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        super::cluster::refuse_learner(&self.ctx)?;
        let (hash, revision) = on_view(&self.ctx, ReadCost::Scan, |sm| {
            let rev = sm.state.kv.current_revision();
            sm.state.kv.hash_kv(0).map(|(h, _)| (h, rev))
        })
        .await?
        .map_err(|e| kv_status(&e))?;
        let mut header = self.ctx.header(&None);
        header.revision = revision;
        Ok(Response::new(HashResponse {
            header: Some(header),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        super::cluster::refuse_learner(&self.ctx)?;
        let requested = request.into_inner().revision;
        let (hash, compact_revision, revision) = on_view(&self.ctx, ReadCost::Scan, move |sm| {
            let rev = sm.state.kv.current_revision();
            sm.state.kv.hash_kv(requested).map(|(h, c)| (h, c, rev))
        })
        .await?
        .map_err(|e| kv_status(&e))?;
        let mut header = self.ctx.header(&None);
        header.revision = revision;
        let hash_revision = if requested == 0 { revision } else { requested };
        Ok(Response::new(HashKvResponse {
            header: Some(header),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = ChannelStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let view = self.ctx.node.state().view();
        let info = export_info(&self.ctx, &view);
        let (tx, rx) = tokio::sync::mpsc::channel(SNAPSHOT_CHUNKS_QUEUED_MAX);
        send_snapshot(view, info, tx);
        Ok(Response::new(ChannelStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        super::cluster::refuse_learner(&self.ctx)?;
        let target = request.into_inner().target_id;
        self.ctx
            .node
            .move_leader(target)
            .await
            .map_err(|e| super::cluster::membership_status(&e))?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.ctx.header(&None)),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("downgrade is not supported yet"))
    }
}
