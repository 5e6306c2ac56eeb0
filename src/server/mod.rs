//! server/ — everything that knows tonic (and later HTTP and TLS).
//!
//! It binds the client URLs, registers the gRPC services (KV, Maintenance, health), enforces
//! request-size limits and maps internal errors to etcd's codes and texts (`error`). Handlers
//! are thin: validate, then either propose through [`RaftNode::propose`] or read the applied
//! state after [`RaftNode::read_index`].
//!
//! Invariant: this is the only module that turns an internal error into a gRPC status.
//! Invariant: no handler holds the state machine lock across an `.await`.

pub mod cluster;
pub mod compactor;
pub mod error;
pub mod forward;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lessor;
pub mod maintenance;
pub mod stream;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use crate::apply::{Applied, Command, RequestHeader};
use crate::net::{Listener, ListenerSettings};
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::health::health_server::HealthServer;
use crate::raft::node::RaftNode;
use crate::raft::state_machine::ApplyObserver;
use crate::watch::Hub;

/// Request limits enforced by the server (etcd's defaults come from `config`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_request_bytes: usize,
    pub grpc_max_recv_bytes: usize,
    pub max_txn_ops: usize,
}

/// What every handler needs.
pub struct Ctx {
    pub node: Arc<RaftNode>,
    pub limits: ServerLimits,
}

/// Member-wide services that live beside the node: the watch hub and the lease clock.
pub struct Services {
    pub hub: Arc<Hub>,
    pub lessor: Arc<lessor::Lessor>,
    pub lease_ttl_min_s: i64,
    pub progress_notify_interval: Duration,
    /// A watch stream opened with `hasleader` metadata is canceled with "etcdserver: no leader"
    /// after the member has had no leader this long (etcd: 3 election timeouts).
    pub leader_lost_watch_cancel: Duration,
}

/// Whether a client asked to fail fast without a leader (Go clientv3's `WithRequireLeader`,
/// used by kube-apiserver and flannel watches): metadata `hasleader: true`.
pub fn requires_leader(meta: &tonic::metadata::MetadataMap) -> bool {
    meta.get("hasleader").and_then(|v| v.to_str().ok()) == Some("true")
}

/// Feeds applied commands to the watch hub and the lease clock, in log order.
pub struct MemberObserver {
    pub hub: Arc<Hub>,
    pub lessor: Arc<lessor::Lessor>,
}

impl ApplyObserver for MemberObserver {
    fn applied(&self, _index: u64, cmd: &Command, applied: &Applied) {
        if !applied.events.is_empty() {
            self.hub.publish(applied.revision, &applied.events);
        }
        match cmd {
            Command::LeaseGrant { id, ttl } if applied.result.is_ok() => {
                self.lessor.granted(*id, *ttl, tokio::time::Instant::now());
            }
            Command::LeaseRevoke { id } => self.lessor.revoked(*id),
            // etcd's mvcc logs this once the compaction is done; ours is done when applied.
            Command::Compact(req) if applied.result.is_ok() => tracing::info!(
                compact_revision = req.revision,
                "finished scheduled compaction"
            ),
            _ => {}
        }
    }
}

impl Ctx {
    /// Fails with Unavailable "etcdserver: no leader" when the request carries `hasleader`
    /// metadata and this member knows no leader, and with DataLoss "etcdserver: corrupt
    /// cluster" when the snapshot this member started from failed its background structural
    /// check (its apply path already refuses every entry; reads must not be served from it
    /// either). Nothing has been proposed at this point.
    pub fn check_leader(&self, meta: &tonic::metadata::MetadataMap) -> Result<(), tonic::Status> {
        if self.node.state().image_defect().is_some() {
            return Err(tonic::Status::data_loss(error::CORRUPT));
        }
        if requires_leader(meta) && self.node.current_leader().is_none() {
            return Err(tonic::Status::unavailable(error::NO_LEADER));
        }
        Ok(())
    }

    /// The request header of a new proposal: a fresh request ID; no user and auth revision 0
    /// (there is no auth store yet).
    pub fn request_header(&self) -> RequestHeader {
        RequestHeader {
            id: self.node.next_request_id(),
            user: String::new(),
            auth_revision: 0,
        }
    }

    /// A full response header around the revision the state machine reported.
    pub fn header(&self, partial: &Option<ResponseHeader>) -> ResponseHeader {
        kv::full_header(self, partial)
    }
}

/// Transport-level ceiling for one decoded message. Requests above the gRPC limit are rejected
/// by the handlers with grpc-go's exact text, so the transport must let them through first.
const TRANSPORT_DECODE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest watch response sent (grpc-go's and so etcd's send limit, 2^31 - 1 bytes). Catch-up
/// responses stay near `max-request-bytes` (see `watch::HubLimits`); only one revision's events
/// for a watcher that did not ask for fragments can come near it, and above it the stream ends
/// with an error, as etcd's does.
const WATCH_SEND_BYTES_MAX: usize = i32::MAX as usize;

fn router(
    builder: tonic::transport::Server,
    ctx: &Arc<Ctx>,
    services: &Services,
) -> tonic::transport::server::Router {
    let kv = KvServer::new(kv::KvService::new(ctx.clone()))
        .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(ctx.clone()))
        .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX);
    let watch = WatchServer::new(watch::WatchService::new(
        ctx.clone(),
        services.hub.clone(),
        services.progress_notify_interval,
        services.leader_lost_watch_cancel,
    ))
    .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX)
    .max_encoding_message_size(WATCH_SEND_BYTES_MAX);
    let lease = LeaseServer::new(lease::LeaseService::new(
        ctx.clone(),
        services.lessor.clone(),
        services.lease_ttl_min_s,
    ));
    let health = HealthServer::new(health::HealthService::new(ctx.node.clone()));
    // HTTP/1.1 beside gRPC, and the plain-HTTP endpoints on every path no service claims.
    #[cfg(not(madsim))]
    let router = builder
        .accept_http1(true)
        .add_routes(crate::http::routes(ctx.node.clone()))
        .add_service(health);
    #[cfg(madsim)]
    let router = {
        let mut builder = builder;
        builder.add_service(health)
    };
    router
        .add_service(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(maintenance)
        .add_service(ClusterServer::new(cluster::ClusterService::new(
            ctx.clone(),
        )))
}

/// A bound client listener, ready to serve.
pub struct ClientListener {
    listener: Listener,
}

impl ClientListener {
    /// Binds `addr` now, so that a port conflict is reported at startup (port 0: any free port).
    pub fn bind(addr: SocketAddr, settings: ListenerSettings) -> std::io::Result<Self> {
        Ok(ClientListener {
            listener: Listener::bind(addr, settings)?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves the client API on this listener until `shutdown` resolves.
    pub async fn serve(
        self,
        ctx: Arc<Ctx>,
        services: Arc<Services>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let router = router(self.listener.settings().server(), &ctx, &services);
        self.listener.serve(router, shutdown).await
    }
}
