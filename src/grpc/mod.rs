//! grpc/ — the tonic adapters of etcd's client API over `api/`.
//!
//! Each service translates a tonic request into a call of `api/` (with the [`ReqCtx`] built by
//! [`req_ctx`] from the connection and metadata) and the call's result back into a tonic
//! response; [`status`] is the one place an [`ApiError`] becomes a gRPC status. Streaming calls
//! (Watch, LeaseKeepAlive, health Watch) own their stream plumbing here; the rules they apply
//! are `api/`'s and `watch/`'s.
//!
//! Invariant: the only module that builds gRPC statuses for client requests.
//! Invariant: no handler holds the state machine lock across an `.await`.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod stream;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{Api, ApiError, Code, ReqCtx};
use crate::net::{Listener, ListenerSettings};
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::health::health_server::HealthServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;

/// THE mapping of an API error to a gRPC status: etcd's code and text.
pub fn status(e: ApiError) -> tonic::Status {
    let code = match e.code() {
        Code::Cancelled => tonic::Code::Cancelled,
        Code::Unknown => tonic::Code::Unknown,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DataLoss => tonic::Code::DataLoss,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
    };
    tonic::Status::new(code, e.message())
}

/// Whether a client asked to fail fast without a leader (Go clientv3's `WithRequireLeader`,
/// used by kube-apiserver and flannel watches): metadata `hasleader: true`.
pub fn requires_leader(meta: &tonic::metadata::MetadataMap) -> bool {
    meta.get("hasleader").and_then(|v| v.to_str().ok()) == Some("true")
}

/// The client's deadline from gRPC's `grpc-timeout` header (digits and a unit: H M S m u n);
/// `None` when absent or malformed (a bad header is not a reason to refuse the call here).
pub fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let text = meta.get("grpc-timeout")?.to_str().ok()?;
    if text.is_empty() || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The request context of a gRPC call: remote address and TLS certificate name (from the
/// connection, `net::transport::ConnInfo`), `hasleader`, the client's deadline.
pub fn req_ctx<T>(request: &tonic::Request<T>) -> ReqCtx {
    let meta = request.metadata();
    #[cfg(not(madsim))]
    let conn = request
        .extensions()
        .get::<crate::net::transport::ConnInfo>();
    #[cfg(not(madsim))]
    let (peer, cert_common_name) = (
        conn.and_then(|c| c.remote_addr).or(request.remote_addr()),
        conn.and_then(|c| c.common_name.clone()),
    );
    #[cfg(madsim)]
    let (peer, cert_common_name) = (request.remote_addr(), None);
    ReqCtx {
        peer,
        // etcd ignores the certificate of a request relayed by its gRPC gateway
        // (CVE-2018-16886): the gateway's certificate names no user.
        cert_common_name: cert_common_name.filter(|_| !meta.contains_key("grpcgateway-accept")),
        user: None,
        token: auth_token(meta),
        require_leader: requires_leader(meta),
        deadline: grpc_timeout(meta).map(|t| tokio::time::Instant::now() + t),
    }
}

/// The auth token a client sent: `token` metadata (Go, Python, Node clients) or
/// `authorization` (the Rust client, the gateway), raw as etcd takes it.
pub fn auth_token(meta: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = meta.get("token").or_else(|| meta.get("authorization"))?;
    value.to_str().ok().map(str::to_string)
}

/// Transport-level ceiling for one decoded message. Requests above the gRPC limit are rejected
/// by the handlers with grpc-go's exact text, so the transport must let them through first.
const TRANSPORT_DECODE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest watch response sent (grpc-go's and so etcd's send limit, 2^31 - 1 bytes). Catch-up
/// responses stay near `max-request-bytes` (see `watch::HubLimits`); only one revision's events
/// for a watcher that did not ask for fragments can come near it, and above it the stream ends
/// with an error, as etcd's does.
const WATCH_SEND_BYTES_MAX: usize = i32::MAX as usize;

fn router(builder: tonic::transport::Server, api: &Arc<Api>) -> tonic::transport::server::Router {
    let kv = KvServer::new(kv::KvService::new(api.clone()))
        .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(api.clone()))
        .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX);
    let watch = WatchServer::new(watch::WatchService::new(api.clone()))
        .max_decoding_message_size(TRANSPORT_DECODE_BYTES_MAX)
        .max_encoding_message_size(WATCH_SEND_BYTES_MAX);
    let lease = LeaseServer::new(lease::LeaseService::new(api.clone()));
    let health = HealthServer::new(health::HealthService::new(api.node.clone()));
    let cluster = ClusterServer::new(cluster::ClusterService::new(api.clone()));
    let auth = AuthServer::new(auth::AuthService::new(api.clone()));
    let election = ElectionServer::new(election::ElectionService::new(api.clone()));
    let lock = LockServer::new(lock::LockService::new(api.clone()));
    // HTTP/1.1 beside gRPC, the plain-HTTP endpoints on every path no service claims, and the
    // gRPC server metrics around every call (`http::observe`).
    #[cfg(not(madsim))]
    {
        let routes = crate::http::routes(api.clone())
            .add_service(health)
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(maintenance)
            .add_service(cluster)
            .add_service(auth)
            .add_service(election)
            .add_service(lock);
        builder
            .accept_http1(true)
            .add_routes(crate::http::observed(routes))
    }
    #[cfg(madsim)]
    {
        let mut builder = builder;
        builder
            .add_service(health)
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(maintenance)
            .add_service(cluster)
            .add_service(auth)
            .add_service(election)
            .add_service(lock)
    }
}

/// A bound client listener, ready to serve.
pub struct ClientListener {
    listener: Listener,
}

impl ClientListener {
    /// Binds `addr` now, so that a port conflict is reported at startup (port 0: any free
    /// port; a unix socket path for a `unix://` URL).
    pub fn bind(
        addr: &crate::net::listener::BindAddr,
        settings: ListenerSettings,
    ) -> std::io::Result<Self> {
        Ok(ClientListener {
            listener: Listener::bind_to(addr, settings)?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves the client API on this listener until `shutdown` resolves.
    pub async fn serve(
        self,
        api: Arc<Api>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let router = router(self.listener.settings().server(), &api);
        self.listener.serve(router, shutdown).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn with_timeout(value: &str) -> MetadataMap {
        let mut meta = MetadataMap::new();
        meta.insert("grpc-timeout", value.parse().unwrap());
        meta
    }

    #[test]
    fn grpc_timeout_units_parse_and_garbage_is_ignored() {
        assert_eq!(
            grpc_timeout(&with_timeout("5S")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("1500m")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("2H")),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "5", "5x", "-5S", "1234567890S"] {
            let meta = if bad.is_empty() {
                MetadataMap::new()
            } else {
                with_timeout(bad)
            };
            assert_eq!(grpc_timeout(&meta), None, "{bad:?}");
        }
    }

    /// The `token` metadata wins over `authorization`; either is taken raw.
    #[test]
    fn the_auth_token_comes_from_token_or_authorization_metadata() {
        let mut meta = MetadataMap::new();
        assert_eq!(auth_token(&meta), None);
        meta.insert("authorization", "abc.7".parse().unwrap());
        assert_eq!(auth_token(&meta).as_deref(), Some("abc.7"));
        meta.insert("token", "xyz.9".parse().unwrap());
        assert_eq!(auth_token(&meta).as_deref(), Some("xyz.9"));
    }

    #[test]
    fn api_errors_keep_etcds_code_and_text() {
        let s = status(ApiError::Kv(crate::mvcc::KvError::Compacted {
            requested: 1,
            compact_revision: 3,
        }));
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = status(ApiError::NoLeader);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unavailable, "etcdserver: no leader")
        );
        // Every code maps to the gRPC code of the same number.
        let samples = [
            ApiError::RequestTooLarge,
            ApiError::Corrupt,
            ApiError::Unimplemented("x"),
            ApiError::Internal("x".into()),
            ApiError::MessageTooLarge { size: 2, max: 1 },
        ];
        for e in samples {
            assert_eq!(status(e.clone()).code() as i32, e.code() as i32, "{e:?}");
        }
    }
}
