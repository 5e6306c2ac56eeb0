//! The flag table: every flag etcd 3.5 defines (plus `version`) and the flags of etcd 3.4 that
//! 3.5 dropped, with the Go type it is declared with, etcd's default as text, and its help
//! section.
//!
//! Invariant: names are unique and every non-ignored default passes its kind's `check`
//! (both checked by tests in `flags.rs`).

use super::goparse::{parse_bool, parse_duration, parse_int, parse_uint, NumError};
use super::url::Url;

/// How a flag's value is parsed (mirrors the Go type etcd declares it with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// Go `uint`/`uint64`.
    Uint,
    /// Go `int`/`int64`.
    Int,
    /// Go `time.Duration`.
    Duration,
    Str,
    /// Comma-separated URL list; an empty value keeps the default (etcd's exception).
    Urls,
    /// `*` or a URL list.
    Cors,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Obsolete flag etcd accepts and ignores; behaves like a bool flag on the command line.
    Ignored,
}

impl Kind {
    /// Go's flag package treats these as booleans: `--x` alone means true.
    pub fn is_boolean(self) -> bool {
        matches!(self, Kind::Bool | Kind::Ignored)
    }

    /// Syntax check of one value; the error text is what Go's flag package prints after
    /// `invalid value "v" for flag -name: `.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Kind::Bool => parse_bool(value)
                .map(|_| ())
                .ok_or_else(|| "parse error".into()),
            Kind::Uint => parse_uint(value).map(|_| ()).map_err(num_text),
            Kind::Int => parse_int(value).map(|_| ()).map_err(num_text),
            Kind::Duration => parse_duration(value)
                .map(|_| ())
                .map_err(|_| "parse error".into()),
            Kind::Str | Kind::Ignored => Ok(()),
            Kind::Urls if value.is_empty() => Ok(()),
            Kind::Cors if value.is_empty() || value == "*" => Ok(()),
            Kind::Urls | Kind::Cors => Url::parse_list(value)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Kind::Choice(words) if words.contains(&value) => Ok(()),
            Kind::Choice(_) => Err("invalid value".into()),
        }
    }
}

fn num_text(e: NumError) -> String {
    e.to_string()
}

/// Help-text section of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Member,
    Clustering,
    Security,
    Auth,
    Monitoring,
    Logging,
    Experimental,
    Unsafe,
    /// Not shown in help (obsolete flags).
    Hidden,
}

/// One flag: name without dashes, kind, etcd's default (as text), help section and text.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub group: Group,
    pub help: &'static str,
}

const fn f(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    group: Group,
    help: &'static str,
) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        default,
        group,
        help,
    }
}

use Group::*;
use Kind::*;

pub const CLUSTER_STATES: &[&str] = &["new", "existing"];
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];

/// Every flag of etcd 3.5 (plus `version`) and of etcd 3.4; order = help order. A unit test
/// checks this against both versions' `--help` texts (`src/config/testdata/`).
#[rustfmt::skip]
pub const FLAGS: &[FlagSpec] = &[
    f("name", Str, "default", Member, "Human-readable name of this member."),
    f("data-dir", Str, "${name}.etcd", Member, "Directory holding the member's data."),
    f("wal-dir", Str, "", Member, "Separate directory for the write-ahead log."),
    f("snapshot-count", Uint, "100000", Member, "Applied entries between two snapshots."),
    f("heartbeat-interval", Uint, "100", Member, "Leader heartbeat period, in milliseconds."),
    f("election-timeout", Uint, "1000", Member, "Election timeout, in milliseconds (at least 5 heartbeats)."),
    f("initial-election-tick-advance", Bool, "true", Member, "Fast-forward election ticks on boot."),
    f("listen-peer-urls", Urls, "http://localhost:2380", Member, "URLs to listen on for peer traffic."),
    f("listen-client-urls", Urls, "http://localhost:2379", Member, "URLs to listen on for client traffic."),
    f("max-snapshots", Uint, "5", Member, "Snapshot files to keep (0 = unlimited)."),
    f("max-wals", Uint, "5", Member, "WAL segment files to keep (0 = unlimited)."),
    f("quota-backend-bytes", Int, "0", Member, "Space quota raising the NOSPACE alarm (0 = 2 GiB, negative = off)."),
    f("backend-bbolt-freelist-type", Str, "map", Member, "Backend freelist type."),
    f("backend-batch-interval", Duration, "0s", Member, "Longest time before a backend commit."),
    f("backend-batch-limit", Int, "0", Member, "Most operations before a backend commit."),
    f("max-txn-ops", Uint, "128", Member, "Most operations in one transaction."),
    f("max-request-bytes", Uint, "1572864", Member, "Largest client request accepted, in bytes."),
    f("grpc-keepalive-min-time", Duration, "5s", Member, "Shortest ping interval a client may use."),
    f("grpc-keepalive-interval", Duration, "2h", Member, "Server-to-client ping period (0 = off)."),
    f("grpc-keepalive-timeout", Duration, "20s", Member, "Wait for a ping answer before closing (0 = off)."),
    f("max-concurrent-streams", Uint, "4294967295", Member, "Most concurrent streams per client connection (4294967295 = unlimited)."),
    f("socket-reuse-port", Bool, "false", Member, "Set SO_REUSEPORT on listeners."),
    f("socket-reuse-address", Bool, "false", Member, "Set SO_REUSEADDR on listeners."),
    f("initial-advertise-peer-urls", Urls, "http://localhost:2380", Clustering, "This member's peer URLs as told to the cluster."),
    f("initial-cluster", Str, "default=http://localhost:2380", Clustering, "Bootstrap members as name=url pairs, comma-separated."),
    f("initial-cluster-state", Choice(CLUSTER_STATES), "new", Clustering, "'new' to bootstrap a cluster, 'existing' to join one."),
    f("initial-cluster-token", Str, "etcd-cluster", Clustering, "Token that keeps member and cluster IDs of separate clusters apart."),
    f("advertise-client-urls", Urls, "http://localhost:2379", Clustering, "This member's client URLs as told to clients."),
    f("discovery", Str, "", Clustering, "Discovery service URL."),
    f("discovery-fallback", Choice(&["exit", "proxy"]), "proxy", Clustering, "What to do when discovery fails."),
    f("discovery-proxy", Str, "", Clustering, "HTTP proxy for the discovery service."),
    f("discovery-srv", Str, "", Clustering, "DNS SRV domain for bootstrapping."),
    f("discovery-srv-name", Str, "", Clustering, "Suffix of the DNS SRV name."),
    f("strict-reconfig-check", Bool, "true", Clustering, "Refuse membership changes that would lose quorum."),
    f("pre-vote", Bool, "true", Clustering, "Run a pre-vote phase before elections."),
    f("auto-compaction-retention", Str, "0", Clustering, "History to keep: a duration or hours (periodic), or revisions (revision); 0 = off."),
    f("auto-compaction-mode", Str, "periodic", Clustering, "'periodic' or 'revision'."),
    f("enable-v2", Bool, "false", Clustering, "Serve the v2 API."),
    f("v2-deprecation", Choice(&["not-yet", "write-only", "write-only-drop-data", "gone"]), "not-yet", Clustering, "v2 store deprecation phase."),
    f("cert-file", Str, "", Security, "Client TLS certificate file."),
    f("key-file", Str, "", Security, "Client TLS key file."),
    f("client-cert-auth", Bool, "false", Security, "Require client certificates."),
    f("client-crl-file", Str, "", Security, "Client certificate revocation list."),
    f("client-cert-allowed-hostname", Str, "", Security, "Allowed TLS host name of client certificates."),
    f("trusted-ca-file", Str, "", Security, "CA bundle for client certificates."),
    f("auto-tls", Bool, "false", Security, "Client TLS with generated certificates."),
    f("peer-cert-file", Str, "", Security, "Peer TLS certificate file."),
    f("peer-key-file", Str, "", Security, "Peer TLS key file."),
    f("peer-client-cert-auth", Bool, "false", Security, "Require peer certificates."),
    f("peer-trusted-ca-file", Str, "", Security, "CA bundle for peer certificates."),
    f("peer-cert-allowed-cn", Str, "", Security, "Required CN of peer certificates."),
    f("peer-cert-allowed-hostname", Str, "", Security, "Allowed TLS host name of peer certificates."),
    f("peer-auto-tls", Bool, "false", Security, "Peer TLS with generated certificates."),
    f("self-signed-cert-validity", Uint, "1", Security, "Validity of generated certificates, in years."),
    f("peer-crl-file", Str, "", Security, "Peer certificate revocation list."),
    f("cipher-suites", Str, "", Security, "TLS cipher suites, comma-separated."),
    f("cors", Cors, "*", Security, "Allowed CORS origins, comma-separated ('*' = all)."),
    f("host-whitelist", Str, "*", Security, "Accepted HTTP Host names on insecure listeners."),
    f("auth-token", Str, "simple", Auth, "Auth token type ('simple')."),
    f("bcrypt-cost", Uint, "10", Auth, "bcrypt cost for password hashes (4..31)."),
    f("auth-token-ttl", Uint, "300", Auth, "Lifetime of a simple token, in seconds."),
    f("enable-pprof", Bool, "false", Monitoring, "Serve runtime profiles."),
    f("metrics", Str, "basic", Monitoring, "Metrics detail: 'basic' or 'extensive'."),
    f("listen-metrics-urls", Urls, "", Monitoring, "Extra URLs serving /metrics and /health."),
    f("logger", Str, "zap", Logging, "Structured JSON logger ('zap')."),
    f("log-outputs", Str, "default", Logging, "Log destinations: 'default', 'stderr', 'stdout' or file paths."),
    f("log-level", Choice(LOG_LEVELS), "info", Logging, "debug, info, warn, error, dpanic, panic or fatal."),
    f("enable-log-rotation", Bool, "false", Logging, "Rotate a file log output."),
    f("log-rotation-config-json", Str, r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#, Logging, "Log rotation settings."),
    f("experimental-enable-distributed-tracing", Bool, "false", Experimental, "Export traces."),
    f("experimental-distributed-tracing-address", Str, "localhost:4317", Experimental, "Trace collector address."),
    f("experimental-distributed-tracing-service-name", Str, "etcd", Experimental, "Trace service name."),
    f("experimental-distributed-tracing-instance-id", Str, "", Experimental, "Trace instance ID."),
    f("proxy", Choice(&["off", "readonly", "on"]), "off", Experimental, "v2 proxy mode."),
    f("proxy-failure-wait", Uint, "5000", Experimental, "v2 proxy failure wait, in milliseconds."),
    f("proxy-refresh-interval", Uint, "30000", Experimental, "v2 proxy refresh interval, in milliseconds."),
    f("proxy-dial-timeout", Uint, "1000", Experimental, "v2 proxy dial timeout, in milliseconds."),
    f("proxy-write-timeout", Uint, "5000", Experimental, "v2 proxy write timeout, in milliseconds."),
    f("proxy-read-timeout", Uint, "0", Experimental, "v2 proxy read timeout, in milliseconds."),
    f("experimental-initial-corrupt-check", Bool, "false", Experimental, "Check data integrity before serving."),
    f("experimental-corrupt-check-time", Duration, "0s", Experimental, "Period of cluster integrity checks."),
    f("experimental-enable-v2v3", Str, "", Experimental, "Serve v2 from the v3 store under a prefix."),
    f("experimental-enable-lease-checkpoint", Bool, "false", Experimental, "Persist remaining lease TTLs so leader changes do not reset them."),
    f("experimental-compaction-batch-limit", Int, "1000", Experimental, "Revisions deleted per compaction batch."),
    f("experimental-peer-skip-client-san-verification", Bool, "false", Experimental, "Skip SAN checks of peer client certificates."),
    f("experimental-watch-progress-notify-interval", Duration, "10m", Experimental, "Period of watch progress notifications."),
    f("experimental-warning-apply-duration", Duration, "100ms", Experimental, "Warn when applying one entry takes longer."),
    f("experimental-txn-mode-write-with-shared-buffer", Bool, "true", Experimental, "Share the read buffer in write transactions."),
    f("experimental-bootstrap-defrag-threshold-megabytes", Uint, "0", Experimental, "Defragment on boot when this much would be freed."),
    f("experimental-memory-mlock", Bool, "false", Experimental, "Lock the process memory."),
    f("experimental-downgrade-check-time", Duration, "5s", Experimental, "Period of downgrade checks."),
    f("enable-grpc-gateway", Bool, "true", Experimental, "Serve the JSON gateway on the client port."),
    f("experimental-backend-bbolt-freelist-type", Str, "array", Experimental, "Backend freelist type (etcd 3.4 name)."),
    f("debug", Bool, "false", Logging, "Debug-level logging (etcd 3.4; same as --log-level=debug)."),
    f("log-package-levels", Str, "", Logging, "Per-package capnslog levels (etcd 3.4)."),
    f("force-new-cluster", Bool, "false", Unsafe, "Restart from existing data as a one-member cluster."),
    f("unsafe-no-fsync", Bool, "false", Unsafe, "Skip fsync (loses data on power failure)."),
    f("config-file", Str, "", Hidden, "Configuration file."),
    f("version", Bool, "false", Hidden, "Print the version and exit."),
    f("cluster-active-size", Ignored, "", Hidden, ""),
    f("cluster-remove-delay", Ignored, "", Hidden, ""),
    f("cluster-sync-interval", Ignored, "", Hidden, ""),
    f("config", Ignored, "", Hidden, ""),
    f("force", Ignored, "", Hidden, ""),
    f("max-result-buffer", Ignored, "", Hidden, ""),
    f("max-retry-attempts", Ignored, "", Hidden, ""),
    f("peer-heartbeat-interval", Ignored, "", Hidden, ""),
    f("peer-election-timeout", Ignored, "", Hidden, ""),
    f("retry-interval", Ignored, "", Hidden, ""),
    f("snapshot", Ignored, "", Hidden, ""),
    f("v", Ignored, "", Hidden, ""),
    f("vv", Ignored, "", Hidden, ""),
];

/// Index of a flag in `FLAGS`.
pub fn index_of(name: &str) -> Option<usize> {
    FLAGS.iter().position(|s| s.name == name)
}

/// The table entry of `name`; `name` must be a flag of the table (a programmer error
/// otherwise).
pub fn spec(name: &str) -> &'static FlagSpec {
    match index_of(name) {
        Some(i) => &FLAGS[i],
        None => panic!("flag {name:?} is not in config::flags::FLAGS"),
    }
}

/// `ETCD_FOO_BAR` for `foo-bar`.
pub fn env_key(name: &str) -> String {
    format!("ETCD_{}", name.to_ascii_uppercase().replace('-', "_"))
}
