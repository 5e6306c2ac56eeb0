//! The `oxetcd` binary: one etcd-compatible cluster member.
//!
//! Parses etcd's flags and `ETCD_*` variables, starts the member from its data dir (bootstrapping
//! a new cluster when the dir is empty), serves the client API on every `--listen-client-urls`
//! address, runs the leader's lease expiry, and shuts down cleanly on SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oxetcd::config::{BootstrapCluster, ClusterState, Config, Parsed};
use oxetcd::io::os::OsDisk;
use oxetcd::io::Disk;
use oxetcd::raft::membership;
use oxetcd::raft::node::{NodeOptions, RaftNode, StartMode};
use oxetcd::raft::peer::PeerListener;
use oxetcd::raft::MemberNode;
use oxetcd::server::lessor::Lessor;
use oxetcd::server::{ClientListener, Ctx, MemberObserver, ServerLimits, Services};
use oxetcd::watch::{Hub, HubLimits};

/// The allocator of the binary (not of the library: tests and the simulator keep the system
/// one). Under load most allocations are short-lived gRPC request and response buffers freed
/// on another worker thread, where glibc's arenas spent ~13 % of the server's CPU.
#[cfg(all(feature = "mimalloc", not(madsim)))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// WAL segment size (etcd preallocates 64,000,000-byte segments; we use 64 MiB).
const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Test knob, not an etcd flag: smaller WAL segments so retention can be observed on disk
/// without writing gigabytes. Read from `OXETCD_WAL_SEGMENT_BYTES`.
fn wal_segment_bytes() -> Result<u64, String> {
    match std::env::var("OXETCD_WAL_SEGMENT_BYTES") {
        Err(_) => Ok(WAL_SEGMENT_BYTES),
        Ok(v) => v
            .parse::<u64>()
            .map_err(|e| format!("OXETCD_WAL_SEGMENT_BYTES={v:?}: {e}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::parse(&args, &env) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help(text)) | Ok(Parsed::Version(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let code = oxetcd::config::report_error(&e);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
    };
    if let Err(e) = oxetcd::logging::init(config.log_level.to_tracing()) {
        eprintln!("oxetcd: cannot start logging: {e}");
        return ExitCode::from(1);
    }
    config.log_warnings();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(*config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            eprintln!("oxetcd: {msg}");
            ExitCode::from(1)
        }
    }
}

/// How long a joining member waits for each existing peer to describe the cluster.
const JOIN_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A joining member's IDs, learned from the members listed in `--initial-cluster`.
async fn discover_existing(
    config: &Config,
    own_peer_urls: &[String],
) -> Result<(u64, u64), String> {
    let members = config
        .initial_cluster_members()
        .map_err(|e| e.to_string())?;
    let peers: Vec<String> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(ToString::to_string))
        .filter(|u| !own_peer_urls.contains(u))
        .collect();
    let info = membership::discover(&peers, own_peer_urls, JOIN_DISCOVERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        member_id = %format!("{:x}", info.member_id),
        cluster_id = %format!("{:x}", info.cluster_id),
        "joining an existing cluster"
    );
    Ok((info.member_id, info.cluster_id))
}

/// Node options and start mode from the configuration; bootstrap IDs are derived (or, for
/// `--initial-cluster-state existing`, fetched from the peers) only for an empty data dir.
async fn node_options(
    config: &Config,
    disk: &dyn Disk,
) -> Result<(NodeOptions, StartMode), String> {
    let identity = config.data_dir.join("member").join("identity");
    let has_data = disk
        .exists(&identity)
        .map_err(|e| format!("{}: {e}", identity.display()))?;
    let peer_urls: Vec<String> = config
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    let joining = config.initial_cluster_state == ClusterState::Existing;
    let mode = if config.force_new_cluster && has_data {
        StartMode::ForceNewCluster
    } else if joining {
        StartMode::Join
    } else {
        StartMode::Bootstrap
    };
    let (member_id, cluster_id, members) = if has_data {
        (0, 0, Vec::new())
    } else if joining {
        let (member_id, cluster_id) = discover_existing(config, &peer_urls).await?;
        (member_id, cluster_id, Vec::new())
    } else {
        let boot = config.bootstrap_cluster().map_err(|e| e.to_string())?;
        (
            boot.local_member_id,
            boot.cluster_id,
            bootstrap_members(&boot),
        )
    };
    let limits = config.limits();
    let opts = NodeOptions {
        data_dir: config.data_dir.clone(),
        name: config.name.clone(),
        bootstrap_member_id: member_id,
        bootstrap_cluster_id: cluster_id,
        peer_urls,
        client_urls: config
            .advertise_client_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
        heartbeat_ms: config.heartbeat_interval_ms,
        election_timeout_ms: config.election_timeout_ms,
        snapshot_count: config.snapshot_count,
        max_snapshots: usize::try_from(limits.max_snapshots).unwrap_or(usize::MAX),
        max_wals: usize::try_from(limits.max_wals).unwrap_or(usize::MAX),
        wal_segment_bytes: wal_segment_bytes()?,
        bootstrap_members: members,
    };
    Ok((opts, mode))
}

/// The raft membership a new cluster starts with: every `--initial-cluster` member with its name
/// and peer URLs (client URLs are published by the leader once each member runs). A one-member
/// cluster is left empty so the node registers itself with its client URLs right away.
fn bootstrap_members(boot: &BootstrapCluster) -> Vec<(u64, MemberNode)> {
    if boot.members.len() <= 1 {
        return Vec::new();
    }
    boot.members
        .iter()
        .map(|m| {
            let node = MemberNode {
                name: m.name.clone(),
                peer_urls: m.peer_urls.iter().map(ToString::to_string).collect(),
                client_urls: Vec::new(),
            };
            (m.id, node)
        })
        .collect()
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(config: Config) -> Result<(), String> {
    let disk: Arc<dyn Disk> = Arc::new(OsDisk::new());
    let (opts, mode) = node_options(&config, disk.as_ref()).await?;
    let limits = config.limits();

    let hub = Arc::new(Hub::new(HubLimits {
        queued_responses_max: usize::try_from(limits.watch_event_queue_len).unwrap_or(1024),
        catch_up_revisions_max: i64::try_from(limits.watch_catchup_revisions_max).unwrap_or(1000),
        fragment_bytes: usize::try_from(limits.watch_fragment_bytes).unwrap_or(usize::MAX),
    }));
    let lessor = Arc::new(Lessor::default());
    let observer = Arc::new(MemberObserver {
        hub: hub.clone(),
        lessor: lessor.clone(),
    });
    let node = RaftNode::start_with(disk, opts, observer, mode)
        .await
        .map_err(|e| e.to_string())?;
    let node = Arc::new(node);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut peer_servers = Vec::new();
    for url in &config.listen_peer_urls {
        let addr = url
            .bind_addr()
            .ok_or_else(|| format!("cannot resolve listen peer URL {url}"))?;
        let listener = PeerListener::bind(addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
        tracing::info!(address = %listener.local_addr(), "serving peer traffic insecurely; this is strongly discouraged!");
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        peer_servers.push(tokio::spawn(listener.serve(node.peer_service(), shutdown)));
    }
    if !node
        .wait_for_leader(Duration::from_millis(config.election_timeout_ms * 10))
        .await
    {
        tracing::warn!("no leader elected yet; serving anyway");
    }

    let ctx = Arc::new(Ctx {
        node: node.clone(),
        limits: ServerLimits {
            max_request_bytes: usize::try_from(limits.max_request_bytes).unwrap_or(usize::MAX),
            grpc_max_recv_bytes: usize::try_from(limits.grpc_max_recv_bytes).unwrap_or(usize::MAX),
            max_txn_ops: usize::try_from(limits.max_txn_ops).unwrap_or(usize::MAX),
        },
    });
    let services = Arc::new(Services {
        hub,
        lessor: lessor.clone(),
        lease_ttl_min_s: limits.lease_ttl_min_s,
        progress_notify_interval: config.experimental_watch_progress_notify_interval,
        leader_lost_watch_cancel: limits.leader_lost_watch_cancel,
    });

    let mut servers = Vec::new();
    for url in &config.listen_client_urls {
        let addr = url
            .bind_addr()
            .ok_or_else(|| format!("cannot resolve listen client URL {url}"))?;
        let listener = ClientListener::bind(addr).map_err(|e| format!("listen tcp {addr}: {e}"))?;
        tracing::info!(address = %listener.local_addr(), "serving client traffic insecurely; this is strongly discouraged!");
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        servers.push(tokio::spawn(listener.serve(
            ctx.clone(),
            services.clone(),
            shutdown,
        )));
    }
    let expiry = tokio::spawn(oxetcd::server::lease::run_expiry(
        ctx.clone(),
        lessor,
        stop_rx.clone(),
    ));
    tracing::info!(
        name = %config.name,
        data_dir = %Path::new(&config.data_dir).display(),
        member_id = %format!("{:x}", node.member_id()),
        cluster_id = %format!("{:x}", node.cluster_id()),
        "ready to serve client requests"
    );

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("received a stop signal; shutting down"),
        _ = node.wait_removed() => {
            tracing::warn!("the member has been permanently removed from the cluster; shutting down");
        }
    }
    let _ = stop_tx.send(true);
    for s in servers {
        match s.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "client server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "client server task failed"),
            Ok(Ok(())) => {}
        }
    }
    let _ = expiry.await;
    for s in peer_servers {
        if let Ok(Err(e)) = s.await {
            tracing::warn!(error = %e, "peer server stopped with an error");
        }
    }
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
