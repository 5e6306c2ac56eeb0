//! The `oxetcd` binary: one etcd-compatible cluster member.
//!
//! Parses etcd's flags and `ETCD_*` variables, sets up logging and the runtime, and runs one
//! member (`oxetcd::member`, the assembly the simulator uses too: initial corruption check when
//! asked, client API, lease expiry, auto compaction) from its data dir until SIGINT/SIGTERM or
//! its removal from the cluster.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oxetcd::config::{Config, Parsed};
use oxetcd::io::failing::FailingSyncs;
use oxetcd::io::os::OsDisk;
use oxetcd::io::Disk;
use oxetcd::member::{self, Member, MemberSpec, Stopped};
use oxetcd::net::listener::GRPC_KEEPALIVE_MIN_TIME_DEFAULT;

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

/// Test knob, not an etcd flag: the revision-mode auto-compaction check interval (etcd's
/// 5 minutes) in milliseconds, so a test can watch it work. Read from
/// `OXETCD_AUTO_COMPACTION_REVISION_INTERVAL_MS`.
fn revision_check_interval(default: Duration) -> Result<Duration, String> {
    match std::env::var("OXETCD_AUTO_COMPACTION_REVISION_INTERVAL_MS") {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("OXETCD_AUTO_COMPACTION_REVISION_INTERVAL_MS={v:?}: {e}")),
    }
}

/// Test knob, not an etcd flag: `OXETCD_TEST_FAIL_FSYNC_AFTER=N` makes every file fdatasync
/// after the first N fail with EIO, so tests can watch the member stop on a failed fsync.
const FAIL_FSYNC_AFTER_ENV: &str = "OXETCD_TEST_FAIL_FSYNC_AFTER";

/// The real disk, or (with the test knob) one whose file syncs start failing.
fn disk_from_env() -> Result<Arc<dyn Disk>, String> {
    match std::env::var(FAIL_FSYNC_AFTER_ENV) {
        Err(_) => Ok(Arc::new(OsDisk::new())),
        Ok(v) => {
            let after = v
                .parse::<u64>()
                .map_err(|e| format!("{FAIL_FSYNC_AFTER_ENV}={v:?}: {e}"))?;
            tracing::warn!(after, "test knob: file fsyncs will fail");
            Ok(Arc::new(FailingSyncs::new(after)))
        }
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
    if let Err(e) = oxetcd::logging::init(
        config.log_level.to_tracing(),
        &config.log_outputs,
        config.log_rotation,
    ) {
        // As etcd: an output that cannot be opened fails the flag check.
        oxetcd::logging::emit(
            tracing::Level::WARN,
            "failed to verify flags",
            &[("error", e.to_string().as_str())],
        );
        return ExitCode::from(1);
    }
    if let Some(path) = &config.config_file {
        tracing::info!(
            path = %path.display(),
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        );
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

/// etcd's first line of a starting member, with the settings operators look for.
fn log_starting(config: &Config, member_initialized: bool) {
    let urls = |list: &[oxetcd::config::Url]| {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        etcd_version = oxetcd::api::maintenance::ETCD_VERSION,
        oxetcd_version = env!("CARGO_PKG_VERSION"),
        member_initialized = member_initialized,
        name = %config.name,
        data_dir = %config.data_dir.display(),
        member_dir = %config.data_dir.join("member").display(),
        force_new_cluster = config.force_new_cluster,
        heartbeat_interval = %format!("{}ms", config.heartbeat_interval_ms),
        election_timeout = %format!("{}ms", config.election_timeout_ms),
        snapshot_count = config.snapshot_count,
        initial_advertise_peer_urls = %urls(&config.initial_advertise_peer_urls),
        listen_peer_urls = %urls(&config.listen_peer_urls),
        advertise_client_urls = %urls(&config.advertise_client_urls),
        listen_client_urls = %urls(&config.listen_client_urls),
        "starting an etcd server"
    );
}

/// Tells systemd the member serves (`READY=1` on `$NOTIFY_SOCKET`), as etcd does for its
/// `Type=notify` unit. Nothing happens without the variable; a failure is logged, never fatal.
fn notify_systemd() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    tracing::info!("notifying init daemon");
    match send_ready(&path) {
        Ok(()) => tracing::info!("successfully notified init daemon"),
        Err(e) => tracing::error!(error = %e, "failed to notify systemd for readiness"),
    }
}

#[cfg(unix)]
fn send_ready(path: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // "@name" is a socket in Linux's abstract namespace.
    #[cfg(target_os = "linux")]
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(b"READY=1", &addr)?;
        return Ok(());
    }
    socket.send_to(b"READY=1", std::path::Path::new(path))?;
    Ok(())
}

#[cfg(not(unix))]
fn send_ready(_path: &std::ffi::OsStr) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "NOTIFY_SOCKET is supported on unix only",
    ))
}

/// Test knob, not an etcd flag: `OXETCD_TEST_SKEW_HASH_KV=1` makes this member answer peers'
/// HashKv requests with a wrong hash, as a member whose data silently diverged would, so that
/// tests can watch the corruption checks catch it.
const SKEW_HASH_KV_ENV: &str = "OXETCD_TEST_SKEW_HASH_KV";

async fn run(config: Config) -> Result<(), String> {
    if std::env::var(SKEW_HASH_KV_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!("test knob: this member answers HashKv with a wrong hash");
        oxetcd::raft::peer::SKEW_HASH_KV.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let disk = disk_from_env()?;
    let member_initialized = disk
        .exists(&config.data_dir.join("member").join("identity"))
        .unwrap_or(false);
    log_starting(&config, member_initialized);
    let (opts, mode) = member::node_options(&config, disk.as_ref(), wal_segment_bytes()?).await?;
    let mut spec = MemberSpec::from_config(&config, opts, mode)?;
    spec.auto_compaction_revision_check_interval =
        revision_check_interval(spec.auto_compaction_revision_check_interval)?;
    if config.grpc_keepalive_min_time != GRPC_KEEPALIVE_MIN_TIME_DEFAULT {
        tracing::warn!(
            value = ?config.grpc_keepalive_min_time,
            "--grpc-keepalive-min-time is not enforced: clients that ping more often are not sent GOAWAY ENHANCE_YOUR_CALM"
        );
    }
    let member = Member::start(disk, spec).await?;
    notify_systemd();
    let stop = async {
        shutdown_signal().await;
        tracing::info!("received a stop signal; shutting down");
    };
    match member.serve_until(stop).await {
        Stopped::ListenerFailed(e) => Err(e),
        Stopped::Requested | Stopped::Removed => Ok(()),
        Stopped::Fatal(fatal) => {
            // As etcd on a failed fsync: log and exit at once, serving nothing more (a failed
            // fsync is never retried; the data on disk is recovered by the next start).
            tracing::error!(error = %fatal, "raft stopped on a fatal error; exiting");
            eprintln!("oxetcd: raft stopped on a fatal error: {fatal}");
            std::process::exit(1);
        }
    }
}
