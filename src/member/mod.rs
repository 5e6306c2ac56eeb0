//! member/ — the one assembly of a running member, used by the `oxetcd` binary and by the
//! simulator alike.
//!
//! [`MemberSpec`] says everything a member needs: the raft node's options, how it starts
//! (bootstrap, join, force-new-cluster), the addresses to listen on and every serving limit.
//! [`MemberSpec::from_config`] derives it from etcd's flags ([`Config`] and its [`Limits`]);
//! the simulator builds its specs the same way, from flags, so simulated members run with the
//! production limits. [`Member::start`] starts the raft node, serves the peer protocol, waits
//! (bounded) for a leader, runs the initial corruption check when asked, serves the client API
//! and runs the leader's lease expiry and auto compaction;
//! [`Member::serve_until`] runs it until a stop signal, removal from the cluster or a listener
//! failure, and then stops everything in order.
//!
//! Invariant: listeners are bound before anything is served, so a port conflict is a start-up
//!   error, never a half-started member.
//! Invariant: a stopped member has handed leadership on (when it led other voters, bounded),
//!   then stopped its client listeners, its lease expiry and its peer listeners, in that
//!   order, before raft shuts down.

pub mod compactor;
mod corruption;
mod options;

pub use options::node_options;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{Api, ServerLimits};
use crate::apply::{Applied, Command, Outcome};
use crate::config::{Config, Limits, Scheme, TlsFiles, Url};
use crate::grpc::ClientListener;
use crate::io::Disk;
use crate::lease::lessor::Lessor;
use crate::net::listener::BindAddr;
use crate::net::tls::{self, Side};
use crate::net::{ListenerSettings, ServerTls};
use crate::raft::node::{NodeOptions, RaftNode, StartMode};
use crate::raft::peer::PeerListener;
use crate::raft::state_machine::ApplyObserver;
use crate::watch::{Hub, HubLimits};

/// Everything a member needs to start.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub node: NodeOptions,
    pub mode: StartMode,
    pub listen_client: Vec<ListenAddr>,
    pub listen_peer: Vec<ListenAddr>,
    /// `--listen-metrics-urls`: extra listeners serving only `/metrics` and `/health` (https
    /// with the client certificate, as etcd does).
    pub listen_metrics: Vec<ListenAddr>,
    /// `--metrics extensive`: the gRPC handling-time histograms are printed too.
    pub metrics_extensive: bool,
    /// `--cors` and `--host-whitelist`.
    pub http_access: crate::api::HttpAccess,
    /// HTTP/2 and TCP settings of the client listeners (`--grpc-keepalive-*`,
    /// `--max-concurrent-streams`).
    pub client_listener: ListenerSettings,
    pub hub: HubLimits,
    pub server: ServerLimits,
    pub lease_ttl_min_s: i64,
    pub progress_notify_interval: Duration,
    /// Watch streams with `hasleader` are canceled after the member has had no leader this long.
    pub leader_lost_watch_cancel: Duration,
    /// `--strict-reconfig-check`.
    pub strict_reconfig_check: bool,
    /// `--experimental-compaction-batch-limit`, as units of work per batch.
    pub compaction_batch_limit: usize,
    /// `--experimental-initial-corrupt-check`: compare HashKV with the peers before serving.
    pub initial_corrupt_check: bool,
    /// The leader's periodic corruption check (`--experimental-corrupt-check-time`); `None`:
    /// off.
    pub corrupt_check_interval: Option<Duration>,
    /// etcd's request timeout (bounds the corruption check's peer calls).
    pub request_timeout: Duration,
    /// `--auto-compaction-mode` / `--auto-compaction-retention`.
    pub auto_compaction: crate::config::AutoCompaction,
    /// How often the revision-mode compactor looks (etcd: 5 minutes).
    pub auto_compaction_revision_check_interval: Duration,
    /// How long to wait for a leader before serving clients anyway (etcd serves at once; the
    /// wait only keeps the first requests from failing with "no leader").
    pub leader_wait: Duration,
    /// `--auth-token-ttl` (simple tokens).
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--client-cert-auth`: the certificate CN names the user of a request without a token.
    pub client_cert_auth: bool,
    /// `--enable-v2`: serve the v2 API (`/v2/...`) on the client port.
    pub enable_v2: bool,
    /// `--auth-token jwt,...`: the loaded keys (none: simple tokens).
    #[cfg(not(madsim))]
    pub jwt: Option<Arc<crate::api::jwt::JwtTokens>>,
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// One address to listen on, with TLS for an `https://` URL.
#[derive(Debug, Clone)]
pub struct ListenAddr {
    pub addr: BindAddr,
    pub tls: Option<ServerTls>,
}

/// The TLS files of one side after `--auto-tls`/`--peer-auto-tls`: without a key pair, the
/// self-signed one in `<data-dir>/fixtures/client` (or `peer`) for the listen URLs' hosts,
/// generated on first use, as etcd does. Given files win over auto TLS (with etcd's warning).
pub(crate) fn with_auto_tls(
    files: &TlsFiles,
    data_dir: &std::path::Path,
    listen_urls: &[Url],
    validity_years: u64,
    side: Side,
) -> Result<TlsFiles, String> {
    if !files.auto_tls {
        return Ok(files.clone());
    }
    let what = match side {
        Side::Client => "client",
        Side::Peer => "peer",
    };
    if tls::has_key_pair(files) {
        tracing::warn!("ignoring {what} auto TLS since certs given");
        return Ok(files.clone());
    }
    let hosts: Vec<String> = listen_urls.iter().map(|u| u.host.clone()).collect();
    let dir = data_dir.join("fixtures").join(what);
    let (cert, key) = tls::self_signed(&dir, &hosts, validity_years).map_err(|e| e.to_string())?;
    Ok(TlsFiles {
        cert_file: Some(cert),
        key_file: Some(key),
        ..files.clone()
    })
}

/// Resolves listen URLs to socket addresses, loading the side's certificate and key once when
/// any URL is `https://` (etcd's texts when they are missing). An `http://` URL beside TLS
/// files is served in plaintext with etcd's warning.
fn listen_addrs(urls: &[Url], files: &TlsFiles, side: Side) -> Result<Vec<ListenAddr>, String> {
    listen_addrs_for(urls, files, side, false)
}

/// [`listen_addrs`]; `metrics`: the URLs are `--listen-metrics-urls`, served with the client
/// TLS files, whose absence etcd reports with its listener's generic text.
fn listen_addrs_for(
    urls: &[Url],
    files: &TlsFiles,
    side: Side,
    metrics: bool,
) -> Result<Vec<ListenAddr>, String> {
    let what = match (side, metrics) {
        (_, true) => "metrics",
        (Side::Client, false) => "client",
        (Side::Peer, false) => "peer",
    };
    let mut tls: Option<ServerTls> = None;
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let addr =
            bind_addr_of(url).ok_or_else(|| format!("cannot resolve listen {what} URL {url}"))?;
        let secure = matches!(url.scheme, Scheme::Https | Scheme::Unixs);
        if !secure {
            if tls::has_key_pair(files) {
                tracing::warn!(
                    url = %url,
                    "scheme is HTTP while key and cert files are present; ignoring key and cert files"
                );
            }
            out.push(ListenAddr { addr, tls: None });
            continue;
        }
        if !tls::has_key_pair(files) {
            return Err(match side {
                Side::Client if !metrics => format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url \
                     {url} with HTTPS scheme"
                ),
                Side::Client | Side::Peer => format!(
                    "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                    url.host_port()
                ),
            });
        }
        let loaded = match &tls {
            Some(loaded) => loaded.clone(),
            None => ServerTls::load(files, side).map_err(|e| e.to_string())?,
        };
        tls = Some(loaded.clone());
        out.push(ListenAddr {
            addr,
            tls: Some(loaded),
        });
    }
    Ok(out)
}

/// The JWT provider `--auth-token` asks for, its keys loaded; etcd's errors otherwise.
#[cfg(not(madsim))]
fn jwt_tokens(
    kind: &crate::config::AuthTokenKind,
) -> Result<Option<Arc<crate::api::jwt::JwtTokens>>, String> {
    let crate::config::AuthTokenKind::Jwt(options) = kind else {
        return Ok(None);
    };
    match crate::api::jwt::JwtTokens::from_options(options) {
        Ok(t) => Ok(Some(Arc::new(t))),
        Err(e) => {
            if let Some(detail) = e.detail() {
                tracing::error!(error = %detail, "problem loading JWT options");
            }
            tracing::warn!(error = %e, "failed to create token provider");
            Err(e.to_string())
        }
    }
}

/// Where a listen URL listens: its IP and port, or for `unix://host:port` (and `unixs://`) the
/// socket file `host:port` in the working directory, as etcd names it.
fn bind_addr_of(url: &Url) -> Option<BindAddr> {
    match url.scheme {
        Scheme::Unix | Scheme::Unixs => Some(BindAddr::Unix(url.host_port().into())),
        Scheme::Http | Scheme::Https => url.bind_addr().map(BindAddr::Tcp),
    }
}

/// etcd's (Go's) text for a listener that could not bind.
fn listen_error(addr: &BindAddr, e: &std::io::Error) -> String {
    match addr {
        BindAddr::Tcp(addr) => format!("listen tcp {addr}: {e}"),
        BindAddr::Unix(path) => format!("listen unix {}: {e}", path.display()),
    }
}

impl MemberSpec {
    /// The spec etcd's flags describe, around node options already derived from them.
    pub fn from_config(
        config: &Config,
        node: NodeOptions,
        mode: StartMode,
    ) -> Result<MemberSpec, String> {
        let limits: Limits = config.limits();
        #[cfg(madsim)]
        if matches!(config.auth_token, crate::config::AuthTokenKind::Jwt(_)) {
            return Err("JWT tokens are not available in the simulated build".into());
        }
        let client_tls = with_auto_tls(
            &config.client_tls,
            &config.data_dir,
            &config.listen_client_urls,
            config.self_signed_cert_validity_years,
            Side::Client,
        )?;
        Ok(MemberSpec {
            node,
            mode,
            listen_client: listen_addrs(&config.listen_client_urls, &client_tls, Side::Client)?,
            listen_metrics: listen_addrs_for(
                &config.listen_metrics_urls,
                &client_tls,
                Side::Client,
                true,
            )?,
            metrics_extensive: config.metrics == crate::config::MetricsLevel::Extensive,
            http_access: crate::api::HttpAccess {
                cors_origins: match &config.cors {
                    crate::config::Cors::Any => None,
                    crate::config::Cors::Origins(urls) => {
                        Some(urls.iter().map(|u| u.to_string()).collect())
                    }
                },
                host_whitelist: config.host_whitelist.clone(),
                gateway_disabled: !config.enable_grpc_gateway,
            },
            listen_peer: listen_addrs(
                &config.listen_peer_urls,
                &with_auto_tls(
                    &config.peer_tls,
                    &config.data_dir,
                    &config.listen_peer_urls,
                    config.self_signed_cert_validity_years,
                    Side::Peer,
                )?,
                Side::Peer,
            )?,
            client_listener: ListenerSettings::grpc_client(
                config.grpc_keepalive_interval,
                config.grpc_keepalive_timeout,
                config.max_concurrent_streams,
            ),
            hub: HubLimits {
                // One queue per stream holds event and control replies (etcd: 128 + 16).
                queued_responses_max: usize_of(
                    limits.watch_event_queue_len + limits.watch_ctrl_queue_len,
                ),
                catch_up_revisions_max: i64::try_from(limits.watch_catchup_revisions_max)
                    .unwrap_or(i64::MAX),
                catch_up_bytes_max: usize_of(limits.watch_fragment_bytes),
                fragment_bytes: usize_of(limits.watch_fragment_bytes),
                ..HubLimits::default()
            },
            server: ServerLimits {
                max_request_bytes: usize_of(limits.max_request_bytes),
                grpc_max_recv_bytes: usize_of(limits.grpc_max_recv_bytes),
                max_txn_ops: usize_of(limits.max_txn_ops),
                quota_bytes: limits.quota_backend_bytes,
            },
            lease_ttl_min_s: limits.lease_ttl_min_s,
            progress_notify_interval: config.experimental_watch_progress_notify_interval,
            leader_lost_watch_cancel: limits.leader_lost_watch_cancel,
            leader_wait: Duration::from_millis(config.election_timeout_ms.saturating_mul(10)),
            strict_reconfig_check: config.strict_reconfig_check,
            compaction_batch_limit: crate::raft::compaction::batch_limit_from_flag(
                config.experimental_compaction_batch_limit,
            ),
            initial_corrupt_check: config.experimental_initial_corrupt_check,
            corrupt_check_interval: Some(config.experimental_corrupt_check_time)
                .filter(|d| !d.is_zero()),
            request_timeout: limits.request_timeout,
            auto_compaction: limits.auto_compaction,
            auto_compaction_revision_check_interval: limits.auto_compaction_revision_check_interval,
            auth_token_ttl: limits.auth_token_ttl,
            bcrypt_cost: limits.bcrypt_cost,
            client_cert_auth: config.client_tls.client_cert_auth,
            enable_v2: config.enable_v2,
            #[cfg(not(madsim))]
            jwt: jwt_tokens(&config.auth_token)?,
        })
    }
}

/// Why a member stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The caller's stop signal.
    Requested,
    /// This member was removed from the cluster.
    Removed,
    /// A client or peer listener failed.
    ListenerFailed(String),
    /// Raft stopped on its own (a storage failure such as a failed fsync): the member must not
    /// serve anything more; the caller exits, as etcd does, without a graceful shutdown.
    Fatal(String),
}

/// Feeds applied commands to the watch hub, the lease clock and the token table, in log order.
struct MemberObserver {
    hub: Arc<Hub>,
    lessor: Arc<Lessor>,
    auth: Arc<crate::api::auth::AuthContext>,
    v2: Arc<crate::api::v2::V2Context>,
}

impl ApplyObserver for MemberObserver {
    fn applied(&self, _index: u64, cmd: &Command, applied: &Applied) {
        if let (
            Command::V2(_),
            Ok(Outcome::V2(crate::v2store::V2Outcome::Auth {
                writes, etcd_index, ..
            })),
        ) = (cmd, &applied.result)
        {
            // Counted as etcd counts them: each write of its internal auth nodes.
            for (action, ok) in writes {
                self.v2.count_write(*action, *ok, 0);
            }
            self.v2.applied(*etcd_index);
        } else if let (Command::V2(req), Ok(Outcome::V2(outcome))) = (cmd, &applied.result) {
            let expired = match outcome {
                crate::v2store::V2Outcome::Expired { count } => *count,
                _ => 0,
            };
            let ok = !matches!(outcome, crate::v2store::V2Outcome::Error(_));
            self.v2.count_write(req.kind(), ok, expired);
            let store_index = match outcome {
                crate::v2store::V2Outcome::Event { etcd_index, .. } => Some(*etcd_index),
                crate::v2store::V2Outcome::Expired { count } if *count > 0 => Some(u64::MAX),
                _ => None,
            };
            if let Some(index) = store_index {
                self.v2.applied(index);
            }
        }
        if !applied.events.is_empty() {
            self.hub.publish(applied.revision, &applied.events);
        }
        match cmd {
            Command::LeaseGrant { id, ttl } if applied.result.is_ok() => {
                self.lessor.granted(*id, *ttl, self.lessor.now());
            }
            Command::LeaseRevoke { id } => self.lessor.revoked(*id),
            Command::LeaseExpire { id, .. } if applied.result.is_ok() => self.lessor.revoked(*id),
            Command::Auth(change) if applied.result.is_ok() => self.auth_applied(change, applied),
            // In force for reads now; `raft::compaction` drops what it frees and logs
            // "finished scheduled compaction" when done, as etcd's mvcc does.
            Command::Compact(req) if applied.result.is_ok() => {
                tracing::info!(revision = req.revision, "compact tree index")
            }
            _ => {}
        }
    }

    fn restored(&self) {
        self.hub.restored();
        self.v2.applied(u64::MAX);
        // The received state may hold password changes and deletions this member never applied
        // one by one: forget every token rather than honor one of those (clients log in again).
        self.auth.tokens.clear();
    }
}

impl MemberObserver {
    /// Tokens follow the auth store: issued by Authenticate, dropped with their user's password
    /// or the user, all dropped when auth is disabled.
    fn auth_applied(&self, change: &crate::auth::AuthCommand, applied: &Applied) {
        use crate::auth::AuthCommand;
        let tokens = &self.auth.tokens;
        match (change, &applied.result) {
            (AuthCommand::Authenticate { name, .. }, Ok(Outcome::Auth { token, .. }))
                if !self.auth.uses_jwt() =>
            {
                tokens.issue(token.clone(), name.clone(), tokio::time::Instant::now());
            }
            (AuthCommand::UserDelete { name }, _)
            | (AuthCommand::UserChangePassword { name, .. }, _) => tokens.invalidate_user(name),
            (AuthCommand::Disable, _) => tokens.clear(),
            _ => {}
        }
    }
}

/// A running member.
pub struct Member {
    name: String,
    data_dir: std::path::PathBuf,
    node: Arc<RaftNode>,
    api: Arc<Api>,
    client_addrs: Vec<SocketAddr>,
    peer_addrs: Vec<SocketAddr>,
    metrics_addrs: Vec<SocketAddr>,
    stop_tx: watch::Sender<bool>,
    client_servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    peer_servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    expiry: JoinHandle<()>,
    /// The leader's v2 TTL expiry (`api::v2::run_expiry`).
    v2_expiry: JoinHandle<()>,
    compactor: JoinHandle<()>,
    corruption_check: Option<JoinHandle<()>>,
}

/// A future that resolves when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

impl Member {
    /// Starts the member from its data dir and serves it.
    pub async fn start(disk: Arc<dyn Disk>, spec: MemberSpec) -> Result<Member, String> {
        let hub = Arc::new(Hub::new(spec.hub));
        let lessor = Arc::new(Lessor::with_clock_rate(spec.node.clock_rate_ppm));
        #[cfg_attr(madsim, allow(unused_mut))]
        let mut auth_context = crate::api::auth::AuthContext::new(
            spec.auth_token_ttl,
            spec.bcrypt_cost,
            spec.client_cert_auth,
        );
        #[cfg(not(madsim))]
        {
            auth_context.jwt = spec.jwt.clone();
        }
        let auth = Arc::new(auth_context);
        let v2 = Arc::new(crate::api::v2::V2Context::new(spec.enable_v2));
        let observer = Arc::new(MemberObserver {
            hub: hub.clone(),
            lessor: lessor.clone(),
            auth: auth.clone(),
            v2: v2.clone(),
        });
        let name = spec.node.name.clone();
        let data_dir = spec.node.data_dir.clone();
        let node = RaftNode::start_with(disk, spec.node, observer, spec.mode)
            .await
            .map_err(|e| e.to_string())?;
        node.set_strict_reconfig_check(spec.strict_reconfig_check);
        node.state()
            .set_compaction_batch_limit(spec.compaction_batch_limit);
        let node = Arc::new(node);
        let (stop_tx, stop_rx) = watch::channel(false);

        let mut peer_listeners = Vec::new();
        for ListenAddr { addr, tls } in &spec.listen_peer {
            let listener =
                PeerListener::bind_to(addr, tls.clone()).map_err(|e| listen_error(addr, &e))?;
            peer_listeners.push((listener, addr.clone(), tls.is_some()));
        }
        let mut peer_addrs = Vec::new();
        let mut peer_servers = Vec::new();
        for (listener, bound, secure) in peer_listeners {
            // The real port for TCP (port 0 asks for any); a unix socket by its path.
            let address = match bound {
                BindAddr::Tcp(_) => {
                    peer_addrs.push(listener.local_addr());
                    listener.local_addr().to_string()
                }
                BindAddr::Unix(path) => path.display().to_string(),
            };
            if secure {
                tracing::info!(%address, "serving peer traffic securely");
            } else {
                tracing::info!(%address, "serving peer traffic");
            }
            let shutdown = stopped(stop_rx.clone());
            peer_servers.push(tokio::spawn(listener.serve(node.peer_service(), shutdown)));
        }
        if !node.wait_for_leader(spec.leader_wait).await {
            tracing::warn!("no leader elected yet; serving anyway");
        } else if !node.wait_announced(spec.leader_wait).await {
            tracing::warn!("this member is not published through raft yet; serving anyway");
        }
        if spec.initial_corrupt_check {
            crate::raft::corrupt::initial_check(&node, spec.request_timeout)
                .await
                .map_err(|e| e.to_string())?;
        }

        let api = Arc::new(Api {
            node: node.clone(),
            limits: spec.server,
            http_access: spec.http_access.clone(),
            hub,
            lessor,
            lease_ttl_min_s: spec.lease_ttl_min_s,
            progress_notify_interval: spec.progress_notify_interval,
            leader_lost_watch_cancel: spec.leader_lost_watch_cancel,
            auth,
            v2,
        });
        let mut client_listeners = Vec::new();
        let mut client_secure = Vec::new();
        for ListenAddr { addr, tls } in &spec.listen_client {
            let settings = ListenerSettings {
                tls: tls.clone(),
                ..spec.client_listener.clone()
            };
            let listener =
                ClientListener::bind(addr, settings).map_err(|e| listen_error(addr, &e))?;
            client_listeners.push(listener);
            client_secure.push(tls.is_some());
        }
        // The real ports (port 0 asks for any); unix sockets are logged by path.
        let client_served: Vec<String> = client_listeners
            .iter()
            .zip(&spec.listen_client)
            .map(|(l, spec)| match &spec.addr {
                BindAddr::Tcp(_) => l.local_addr().to_string(),
                BindAddr::Unix(path) => path.display().to_string(),
            })
            .collect();
        let client_addrs: Vec<SocketAddr> = client_listeners
            .iter()
            .zip(&spec.listen_client)
            .filter(|(_, spec)| matches!(spec.addr, BindAddr::Tcp(_)))
            .map(|(l, _)| l.local_addr())
            .collect();
        let mut client_servers = Vec::new();
        for listener in client_listeners {
            let shutdown = stopped(stop_rx.clone());
            client_servers.push(tokio::spawn(listener.serve(api.clone(), shutdown)));
        }
        crate::metrics::set_extensive(spec.metrics_extensive);
        #[cfg_attr(madsim, allow(unused_mut))]
        let mut metrics_addrs = Vec::new();
        // No HTTP server under madsim: the simulator passes no metrics URLs.
        #[cfg(not(madsim))]
        for ListenAddr { addr, tls } in &spec.listen_metrics {
            let settings = ListenerSettings {
                tls: tls.clone(),
                ..ListenerSettings::default()
            };
            let listener = crate::net::Listener::bind_to(addr, settings)
                .map_err(|e| listen_error(addr, &e))?;
            if let BindAddr::Tcp(_) = addr {
                let address = listener.local_addr();
                tracing::info!(%address, "serving metrics");
                metrics_addrs.push(address);
            } else {
                tracing::info!(address = %addr, "serving metrics");
            }
            let shutdown = stopped(stop_rx.clone());
            client_servers.push(tokio::spawn(crate::http::serve_metrics(
                listener,
                api.clone(),
                shutdown,
            )));
        }
        let expiry = tokio::spawn(crate::api::lease::run_expiry(api.clone(), stop_rx.clone()));
        let v2_expiry = tokio::spawn(crate::api::v2::run_expiry(api.clone(), stop_rx.clone()));
        let corruption_check = spec.corrupt_check_interval.map(|interval| {
            tokio::spawn(corruption::run(
                node.clone(),
                interval,
                spec.request_timeout,
                stop_rx.clone(),
            ))
        });
        let compactor = tokio::spawn(compactor::run(
            node.clone(),
            spec.auto_compaction,
            spec.auto_compaction_revision_check_interval,
            stop_rx,
        ));
        tracing::info!(
            name = %name,
            data_dir = %data_dir.display(),
            member_id = %format!("{:x}", node.member_id()),
            cluster_id = %format!("{:x}", node.cluster_id()),
            "ready to serve client requests"
        );
        for (address, secure) in client_served.iter().zip(client_secure) {
            if secure {
                tracing::info!(%address, "serving client traffic securely");
            } else {
                tracing::info!(%address, "serving client traffic insecurely; this is strongly discouraged!");
            }
        }
        Ok(Member {
            name,
            data_dir,
            node,
            api,
            client_addrs,
            peer_addrs,
            metrics_addrs,
            stop_tx,
            client_servers,
            peer_servers,
            expiry,
            v2_expiry,
            compactor,
            corruption_check,
        })
    }

    pub fn node(&self) -> &Arc<RaftNode> {
        &self.node
    }

    /// The member's API, for in-process callers (the simulation's v2 clients).
    pub fn api(&self) -> &Arc<Api> {
        &self.api
    }

    /// The bound client addresses (the real ports when a listen URL asked for port 0).
    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.client_addrs
    }

    /// The bound peer addresses.
    pub fn peer_addrs(&self) -> &[SocketAddr] {
        &self.peer_addrs
    }

    /// The bound `--listen-metrics-urls` addresses.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        &self.metrics_addrs
    }

    /// Serves until `stop` resolves, the member is removed from the cluster or a listener
    /// fails; then stops the member and says why it stopped.
    pub async fn serve_until(mut self, stop: impl Future<Output = ()>) -> Stopped {
        let node = self.node.clone();
        let mut listeners = std::mem::take(&mut self.client_servers);
        let mut clients = listeners.len();
        listeners.append(&mut self.peer_servers);
        let why = {
            // A listener task ends only on shutdown or on an error; before shutdown, any end is
            // a failure of the member.
            let failed = first_finished(&mut listeners);
            tokio::select! {
                _ = stop => Ok(Stopped::Requested),
                _ = node.wait_removed() => {
                    tracing::warn!("the member has been permanently removed from the cluster; shutting down");
                    Ok(Stopped::Removed)
                }
                (i, result) = failed => Err((i, result)),
                fatal = node.fatal_stop() => Ok(Stopped::Fatal(fatal)),
            }
        };
        let why = match why {
            Ok(why) => why,
            Err((i, result)) => {
                // That task has finished: it must not be awaited again.
                drop(listeners.remove(i));
                if i < clients {
                    clients -= 1;
                }
                let e = match result {
                    Ok(Ok(())) => "a listener stopped".to_string(),
                    Ok(Err(e)) => format!("a listener failed: {e}"),
                    Err(e) => format!("a listener task failed: {e}"),
                };
                tracing::error!(error = %e, "serving failed; shutting down");
                Stopped::ListenerFailed(e)
            }
        };
        let peers = listeners.split_off(clients);
        self.client_servers = listeners;
        self.peer_servers = peers;
        if matches!(why, Stopped::Fatal(_)) {
            // Health answers NOT_SERVING from now on; nothing else is stopped in order.
            self.node.begin_shutdown();
            return why;
        }
        self.shutdown().await;
        why
    }

    /// Hands leadership to another voter (when this member leads one of several), then stops
    /// serving clients, then the lease expiry and the peers, then raft.
    pub async fn shutdown(self) {
        self.node.transfer_leadership_on_stop().await;
        tracing::info!(
            name = %self.name,
            data_dir = %self.data_dir.display(),
            "closing etcd server"
        );
        self.node.begin_shutdown();
        let _ = self.stop_tx.send(true);
        for s in self.client_servers {
            match s.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "client server stopped with an error"),
                Err(e) if !e.is_cancelled() => {
                    tracing::warn!(error = %e, "client server task failed")
                }
                _ => {}
            }
        }
        let _ = self.expiry.await;
        let _ = self.v2_expiry.await;
        let _ = self.compactor.await;
        if let Some(check) = self.corruption_check {
            let _ = check.await;
        }
        for s in self.peer_servers {
            if let Ok(Err(e)) = s.await {
                tracing::warn!(error = %e, "peer server stopped with an error");
            }
        }
        self.node.shutdown().await;
        tracing::info!(
            name = %self.name,
            data_dir = %self.data_dir.display(),
            "closed etcd server"
        );
    }
}

type ListenerResult = Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>;

/// The index and result of the first of `handles` to finish; pending forever when there are
/// none.
async fn first_finished(
    handles: &mut [JoinHandle<Result<(), tonic::transport::Error>>],
) -> (usize, ListenerResult) {
    std::future::poll_fn(|cx| {
        for (i, h) in handles.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(h).poll(cx) {
                return std::task::Poll::Ready((i, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
