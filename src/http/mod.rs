//! http/ — the plain-HTTP endpoints of the client port, served beside gRPC on the same
//! listener as etcd serves them: `/health`, `/livez`, `/readyz`, `/version`, `/metrics`. HTTP/1.1 and
//! HTTP/2 (h2c, or h2 by ALPN) both reach them: the client listener's tonic server accepts
//! HTTP/1.1 (hyper tells the protocols apart by the HTTP/2 preface), and [`routes`] puts
//! [`Endpoints`] behind every path no gRPC service claims.
//!
//! Responses copy etcd 3.5's: bodies, status codes, content types, `--host-whitelist` and the
//! CORS headers of `--cors` (see [`access`]), `405 Method Not Allowed` with `Allow: GET` for
//! other methods than GET (`/metrics` takes any), and Go's
//! `404 page not found` for unknown paths (answered at once, never left hanging). A request with
//! a gRPC content type to an unknown path gets gRPC's Unimplemented, as tonic answers it.
//!
//! Invariant: nothing here changes state but through `api/`; the status handlers are reads.
//! With `--enable-v2`, paths under `/v2/` belong to the v2 API (`v2`).
//! `OPTIONS` on any path is a CORS preflight: `200`, empty, with the CORS headers.
//! Paths under `/v3/` and `/v3beta/` belong to the JSON gateway (`crate::gateway`).
//! Not in the simulated build (there is no HTTP server under madsim).

pub mod access;
pub mod health;
pub mod metrics;
pub mod observe;
pub mod v2;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use self::health::{Check, Health, HealthQuery};
use crate::raft::node::RaftNode;

/// The cluster version `/version` reports (etcd's `etcdcluster`: major.minor.0 of the
/// cluster's lowest member).
pub const CLUSTER_VERSION: &str = "3.5.0";

/// The routes of the client port around the gRPC services: every path the services do not
/// claim goes to [`Endpoints`].
pub fn routes(api: Arc<crate::api::Api>) -> tonic::service::Routes {
    let router = axum::Router::new().fallback_service(Endpoints {
        api,
        port: Port::Client,
    });
    tonic::service::Routes::from(router)
}

/// Serves a `--listen-metrics-urls` listener until `shutdown`: `/metrics` and `/health` only,
/// over HTTP/1.1 or h2c (h2 or http/1.1 by ALPN with TLS), without CORS headers (etcd serves
/// them from a plain mux there).
pub async fn serve_metrics(
    listener: crate::net::Listener,
    api: Arc<crate::api::Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let router = axum::Router::new().fallback_service(Endpoints {
        api,
        port: Port::Metrics,
    });
    let server = listener
        .settings()
        .server()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router));
    listener.serve(server, shutdown).await
}

/// Which listener an [`Endpoints`] answers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    /// The client port: every endpoint, CORS headers, the JSON gateway.
    Client,
    /// A metrics listener: `/metrics` and `/health`, nothing else.
    Metrics,
}

/// `routes` with the gRPC server metrics counted around every call (see [`observe`]).
pub fn observed(routes: tonic::service::Routes) -> tonic::service::Routes {
    let router = routes
        .into_axum_router()
        .layer(axum::middleware::from_fn(observe::observe));
    tonic::service::Routes::from(router)
}

/// The HTTP handlers of one client listener.
#[derive(Clone)]
pub struct Endpoints {
    /// The member's API: its raft node for the checks, the JSON gateway (`/v3/...`).
    api: Arc<crate::api::Api>,
    port: Port,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl tower_service::Service<Request<Body>> for Endpoints {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Answer {
        let (parts, body) = request.into_parts();
        if self.port == Port::Metrics {
            let api = self.api.clone();
            return Box::pin(async move { Ok(respond_metrics_port(&api, &parts).await) });
        }
        if is_grpc(&parts) {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http::<Body>()) });
        }
        // etcd's access controller: the Host check (plaintext only), then CORS, then the
        // preflight answer, before any handler (`access`).
        let access = &self.api.http_access;
        let secure = parts
            .extensions
            .get::<crate::net::transport::ConnInfo>()
            .is_some_and(|c| c.secure);
        let host = request_host(&parts);
        if !secure && !access::host_allowed(access, &host) {
            return Box::pin(async move { Ok(access::misdirected(&host)) });
        }
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let cors = access::allowed_origin(access, origin);
        if parts.method == Method::OPTIONS {
            let r = access::with_cors(Response::new(Body::empty()), cors.as_deref());
            return Box::pin(async { Ok(r) });
        }
        let api = self.api.clone();
        if api.v2.enabled && v2::claims(parts.uri.path()) {
            return Box::pin(async move {
                let r = v2::serve(api, parts, body).await;
                Ok(access::with_cors(r, cors.as_deref()))
            });
        }
        if !api.http_access.gateway_disabled && crate::gateway::claims(parts.uri.path()) {
            return Box::pin(async move {
                let r = crate::gateway::serve(api, parts, body).await;
                Ok(access::with_cors(r, cors.as_deref()))
            });
        }
        Box::pin(async move {
            let r = respond(&api, &parts).await;
            Ok(access::with_cors(r, cors.as_deref()))
        })
    }
}

/// The Host a request names: the Host header (HTTP/1.1) or the URI's authority (HTTP/2).
fn request_host(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

fn is_grpc(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The answer of a client-port endpoint, before the CORS headers.
async fn respond(api: &crate::api::Api, parts: &http::request::Parts) -> Response<Body> {
    let node = &*api.node;
    let path = parts.uri.path();
    let known = matches!(
        path,
        "/health" | "/livez" | "/readyz" | "/version" | "/metrics"
    );
    if !known {
        return text(StatusCode::NOT_FOUND, "404 page not found\n", true);
    }
    // The Prometheus handler answers any method; the others are GET only.
    if parts.method != Method::GET && path != "/metrics" {
        return method_not_allowed();
    }
    let query = parts.uri.query();
    let response = match path {
        "/health" => health(node, &HealthQuery::parse(query)).await,
        "/version" => version(),
        "/livez" => livez(node, verbose(query)).await,
        "/metrics" => metrics(api).await,
        _ => readyz(node, verbose(query)).await,
    };
    response
}

/// A metrics listener's answer: etcd's plain mux there has `/metrics` (any method) and
/// `/health` (GET only), and Go's 404 for the rest, with no CORS headers.
async fn respond_metrics_port(
    api: &crate::api::Api,
    parts: &http::request::Parts,
) -> Response<Body> {
    match parts.uri.path() {
        "/metrics" => metrics(api).await,
        "/health" if parts.method != Method::GET => method_not_allowed(),
        "/health" => health(&api.node, &HealthQuery::parse(parts.uri.query())).await,
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n", true),
    }
}

fn method_not_allowed() -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n", true);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

fn verbose(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|p| p == "verbose" || p.starts_with("verbose="))
}

fn text(status: StatusCode, body: &str, nosniff: bool) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if nosniff {
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    r
}

/// etcd's alarm names active on this member (no space quota alarm exists yet; a snapshot that
/// failed its structural check counts as CORRUPT).
fn alarms(node: &RaftNode) -> Vec<&'static str> {
    if node.state().image_defect().is_some() {
        vec!["CORRUPT"]
    } else {
        Vec::new()
    }
}

/// A one-key read as `/health` does it: linearizable (the read barrier) or local.
async fn read(node: &RaftNode, serializable: bool) -> Result<(), String> {
    if !node.is_serving() {
        return Err(crate::api::error::SERVER_STOPPED.to_string());
    }
    if serializable {
        return Ok(());
    }
    node.read_index()
        .await
        .map_err(|e| crate::api::ApiError::from(e).message())
}

async fn health(node: &RaftNode, query: &HealthQuery) -> Response<Body> {
    let alarms = alarms(node);
    let mut verdict = health::before_read(&alarms, node.current_leader().is_some(), query);
    if verdict.healthy {
        verdict = health::after_read(read(node, query.serializable).await);
    }
    if verdict.healthy {
        crate::metrics::HEALTH_SUCCESS.inc();
    } else {
        crate::metrics::HEALTH_FAILURES.inc();
        tracing::warn!(reason = %verdict.reason, "serving /health false");
    }
    health_response(&verdict)
}

fn health_response(verdict: &Health) -> Response<Body> {
    let status = if verdict.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, &verdict.json(), false)
}

fn version() -> Response<Body> {
    // etcd's field order (a JSON map would sort the keys).
    let body = format!(
        r#"{{"etcdserver":{},"etcdcluster":{}}}"#,
        serde_json::Value::from(crate::api::maintenance::ETCD_VERSION),
        serde_json::Value::from(CLUSTER_VERSION)
    );
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn metrics(api: &crate::api::Api) -> Response<Body> {
    let node = &*api.node;
    let m = node.metrics();
    let committed = node.committed_index().await;
    // Counting keys walks the key index: on a view, off the async workers.
    let view = node.state().view();
    let counted = tokio::task::spawn_blocking(move || {
        let kv = &view.state.kv;
        (
            kv.current_revision(),
            kv.compact_revision(),
            kv.logical_bytes(),
            kv.live_key_count() as u64,
        )
    })
    .await;
    let Ok((current_revision, compact_revision, db_bytes, keys)) = counted else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics: the key count failed\n",
            false,
        );
    };
    let sample = metrics::Sample {
        has_leader: m.current_leader.is_some(),
        is_leader: m.current_leader == Some(node.member_id()),
        is_learner: node.is_learner(),
        member_id: node.member_id(),
        server_version: crate::api::maintenance::ETCD_VERSION.to_string(),
        committed_index: committed.unwrap_or_else(|| m.last_log_index.unwrap_or(0)),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        db_bytes,
        current_revision,
        compact_revision,
        keys,
        quota_bytes: api.limits.quota_bytes.unwrap_or(0),
        process: metrics::process(),
    };
    let mut r = Response::new(Body::from(metrics::render(&sample)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn probe_response(kind: &str, checks: &[Check], verbose: bool) -> Response<Body> {
    let (passed, body) = health::probe_report(kind, checks, verbose);
    let status = if passed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut r = text(status, &body, true);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

async fn livez(node: &RaftNode, verbose: bool) -> Response<Body> {
    let checks = [Check {
        name: "serializable_read",
        passed: read(node, true).await.is_ok(),
    }];
    probe_response("livez", &checks, verbose)
}

async fn readyz(node: &RaftNode, verbose: bool) -> Response<Body> {
    let checks = [
        Check {
            name: "data_corruption",
            passed: alarms(node).is_empty(),
        },
        Check {
            name: "serializable_read",
            passed: read(node, true).await.is_ok(),
        },
        Check {
            name: "linearizable_read",
            passed: read(node, false).await.is_ok(),
        },
    ];
    probe_response("readyz", &checks, verbose)
}
