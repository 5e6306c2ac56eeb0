//! Server configuration: etcd 3.5's flags and `ETCD_*` environment variables, parsed into a
//! typed `Config`, validated with etcd's rules and texts, plus `Limits` (every size, count
//! and timeout limit in one place).
//!
//! Stages: `flags::scan` (Go flag syntax, exit 2 on errors) → leftover arguments and
//! `--version` → `flags::merge_env` → unsupported flags (`flags::UNSUPPORTED_FLAGS`, refused
//! when not at etcd's default) and flags without effect (`flags::NO_EFFECT_FLAGS`, a warning)
//! → typed build → `validate` (exit 1 on errors).
//!
//! With `--config-file` (or `ETCD_CONFIG_FILE`) the file replaces the command line and the
//! environment entirely, as in etcd: `file::settings_from_yaml` produces the settings the
//! later stages check.
//!
//! Invariant: `Config::parse_with` is pure: no I/O, no clock; input is the argument list
//! (without the program name), the environment as key/value pairs and a reader for the
//! configuration file. `Config::parse` reads that file from disk.
//! Invariant: a returned `Config` has passed every check etcd makes before it starts
//! serving, except the bootstrap checks of `bootstrap_cluster` (etcd makes those only for a
//! member without data, and so must the caller).

mod cluster;
mod error;
mod file;
pub mod flags;
pub mod goparse;
mod help;
mod limits;
mod report;
mod table;
mod url;
mod validate;

pub use cluster::{BootstrapCluster, BootstrapMember, InitialMember};
pub use error::{ConfigError, ConfigWarning, ENV_CONFLICT_MSG};
pub use goparse::{format_duration, parse_duration, DurationError, GoDuration};
pub use help::{help_text, version_text, USAGE_SHORT};
pub use limits::{
    lease_ttl_min_s, Limits, APPLY_LAG_ENTRIES_MAX, GRPC_OVERHEAD_BYTES, PROPOSAL_QUEUE_BYTES_MAX,
    PROPOSAL_QUEUE_COMMANDS_MAX, WAL_QUEUE_BYTES_MAX,
};
pub use report::report_error;
pub use url::{join_urls, sort_urls, Scheme, Url, UrlError};

use std::path::PathBuf;
use std::time::Duration;

use flags::{Kind, Scan, Settings};

/// etcd refuses election timeouts above this many milliseconds.
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;
/// `--quota-backend-bytes 0` means this (2 GiB).
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// `--initial-cluster`'s default; replaced by `<name>=<peer urls>` when only `--name` is set.
pub const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";
/// Default `--name`.
pub const DEFAULT_NAME: &str = "default";
/// etcd API line this server speaks, shown by `--version`.
pub const ETCD_API_VERSION: &str = "3.5";

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Start the server.
    Run(Box<Config>),
    /// `-h`/`--help`: print the text on stdout, exit 0.
    Help(String),
    /// `--version`: print the text on stdout, exit 0.
    Version(String),
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// `--auto-compaction-mode` with `--auto-compaction-retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Retention 0.
    Off,
    /// Keep this much history (bare numbers are hours).
    Periodic { retention: Duration },
    /// Keep this many revisions.
    Revision { retention_revisions: u64 },
}

/// `--log-level`; `dpanic`, `panic` and `fatal` keep only error-level output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The `tracing` level with the same meaning.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsLevel {
    Basic,
    Extensive,
}

/// `--auth-token` type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthTokenKind {
    Simple,
    /// `jwt,<key>=<value>,...`: the options, checked and loaded when the member starts
    /// (`api::jwt`), as etcd loads them when its server starts.
    Jwt(std::collections::BTreeMap<String, String>),
}

/// `--cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*` (or empty): every origin.
    Any,
    Origins(Vec<Url>),
}

/// TLS files of one side (client or peer): the listeners' certificate and key, the CA bundle
/// client certificates are checked against (and, for peers, the other members' certificates),
/// and whether a client certificate is required. Loaded by `net::tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// `--auto-tls` / `--peer-auto-tls`: without a key pair, generate a self-signed one (and,
    /// for peers, do not verify the other members' certificates).
    pub auto_tls: bool,
    /// `--peer-cert-allowed-cn`: the only client certificate common name accepted.
    pub allowed_cn: Option<String>,
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: the host name (or IP)
    /// a client certificate's SANs must match (either this or the CN suffices).
    pub allowed_hostname: Option<String>,
    /// `--client-crl-file` / `--peer-crl-file`: revoked client certificates.
    pub crl_file: Option<PathBuf>,
    /// `--cipher-suites` (one list for both sides, Go's names): the TLS 1.2 suites allowed.
    pub cipher_suites: Vec<String>,
}

/// The validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    // member
    pub name: String,
    pub data_dir: PathBuf,
    /// `--wal-dir`: the WAL segments' own directory (default `<data-dir>/member/wal`).
    pub wal_dir: Option<PathBuf>,
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub listen_peer_urls: Vec<Url>,
    pub listen_client_urls: Vec<Url>,
    /// Snapshot files kept (0 = unlimited).
    pub max_snapshots: u64,
    /// WAL segment files kept (0 = unlimited).
    pub max_wals: u64,
    /// Raw flag: 0 = 2 GiB, negative = no quota (see `Limits::quota_backend_bytes`).
    pub quota_backend_bytes: i64,
    pub max_txn_ops: u64,
    pub max_request_bytes: u64,
    pub grpc_keepalive_min_time: Duration,
    pub grpc_keepalive_interval: Duration,
    pub grpc_keepalive_timeout: Duration,
    /// HTTP/2 streams one client connection may have open (u32::MAX = unlimited).
    pub max_concurrent_streams: u32,
    // clustering
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `name=url,...` after etcd's defaulting (`<name>=<advertise peer urls>` when only
    /// `--name` was given); parsed by `initial_cluster_members`.
    pub initial_cluster: String,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub advertise_client_urls: Vec<Url>,
    pub strict_reconfig_check: bool,
    pub auto_compaction: AutoCompaction,
    pub enable_v2: bool,
    /// `--enable-grpc-gateway`: serve the JSON gateway (`/v3/...`) on the client port.
    pub enable_grpc_gateway: bool,
    // security
    pub client_tls: TlsFiles,
    pub peer_tls: TlsFiles,
    /// `--self-signed-cert-validity`: years the `--auto-tls` certificates are valid.
    pub self_signed_cert_validity_years: u64,
    pub cors: Cors,
    /// `--host-whitelist`: the Host names plain-HTTP requests may name; empty = any (`*`).
    pub host_whitelist: Vec<String>,
    // auth
    pub auth_token: AuthTokenKind,
    pub auth_token_ttl_s: u64,
    /// 4..=31 (out-of-range input falls back to 10 with a warning, as etcd does).
    pub bcrypt_cost: u32,
    // monitoring and logging
    pub metrics: MetricsLevel,
    pub listen_metrics_urls: Vec<Url>,
    pub log_level: LogLevel,
    /// `--log-outputs`, in order (duplicates are written once).
    pub log_outputs: Vec<crate::logging::LogOutput>,
    /// `--enable-log-rotation` with `--log-rotation-config-json`: the one file output rotates.
    pub log_rotation: Option<crate::logging::RotationConfig>,
    // experimental and unsafe
    /// Compare this member's HashKV with its peers' before serving.
    pub experimental_initial_corrupt_check: bool,
    pub experimental_enable_lease_checkpoint: bool,
    pub experimental_watch_progress_notify_interval: Duration,
    /// `--experimental-corrupt-check-time`: how often the leader compares the members' hashes
    /// (0: never).
    pub experimental_corrupt_check_time: Duration,
    pub experimental_warning_apply_duration: Duration,
    /// `--experimental-compaction-batch-limit`: work per compaction batch (0: etcd's 1000,
    /// negative: no limit).
    pub experimental_compaction_batch_limit: i64,
    pub force_new_cluster: bool,
    /// `--config-file` / `ETCD_CONFIG_FILE`: the file the settings came from (the command
    /// line and the environment were then ignored).
    pub config_file: Option<PathBuf>,
    /// Flags given on the command line, through `ETCD_*` or as keys of the configuration
    /// file, in flag-table order.
    pub flags_explicitly_set: Vec<&'static str>,
    /// Warnings for the caller to log once logging is up.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Parses `args` (without the program name) and `env` like etcd 3.5 does, reading the
    /// configuration file from disk when one is named.
    pub fn parse(args: &[String], env: &[(String, String)]) -> Result<Parsed, ConfigError> {
        Config::parse_with(args, env, &|path| std::fs::read_to_string(path))
    }

    /// `parse` with the configuration file read through `read_file`.
    pub fn parse_with(
        args: &[String],
        env: &[(String, String)],
        read_file: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
    ) -> Result<Parsed, ConfigError> {
        if let Some(first) = args.first() {
            if first == "gateway" || first == "grpc-proxy" {
                return Err(ConfigError::UnsupportedCommand {
                    name: first.clone(),
                });
            }
        }
        let (mut settings, rest) = match flags::scan(args)? {
            Scan::Help => return Ok(Parsed::Help(help_text())),
            Scan::Flags { settings, rest } => (settings, rest),
        };
        if let Some(arg) = rest.first() {
            return Err(ConfigError::NotAFlag { arg: arg.clone() });
        }
        if read_bool(&settings, "version")? {
            return Ok(Parsed::Version(version_text()));
        }
        let mut warnings = Vec::new();
        let config_file = config_file_path(&settings, env);
        match &config_file {
            Some(path) => {
                let text = read_file(path).map_err(|e| ConfigError::ConfigFile {
                    reason: go_open_error(path, &e),
                })?;
                settings = file::settings_from_yaml(&text)?;
            }
            None => flags::merge_env(&mut settings, env, &mut warnings)?,
        }
        if let Some(e) = flags::first_unsupported(&settings) {
            return Err(e);
        }
        warnings.extend(flags::no_effect_warnings(&settings));
        let mut config = build(&settings, warnings)?;
        config.config_file = config_file;
        validate::validate(&config)?;
        Ok(Parsed::Run(Box::new(config)))
    }

    /// Process exit status for a configuration error (1, or 2 for command-line syntax).
    pub fn exit_code_for(err: &ConfigError) -> i32 {
        err.exit_code()
    }

    /// Every limit, derived from this configuration.
    pub fn limits(&self) -> Limits {
        Limits::from_config(self)
    }

    /// Whether `name` (e.g. "listen-client-urls") was given explicitly.
    pub fn is_explicit(&self, name: &str) -> bool {
        self.flags_explicitly_set.contains(&name)
    }
}

impl Default for Config {
    /// The configuration etcd runs with when given no flags and no environment.
    fn default() -> Config {
        match Config::parse(&[], &[]) {
            Ok(Parsed::Run(config)) => *config,
            other => panic!("etcd's defaults must form a valid configuration: {other:?}"),
        }
    }
}

/// `--config-file`, else a non-empty `ETCD_CONFIG_FILE` (etcd looks at that one variable
/// before deciding whether the environment counts at all).
fn config_file_path(settings: &Settings, env: &[(String, String)]) -> Option<PathBuf> {
    let flag = settings.raw("config-file");
    if !flag.is_empty() {
        return Some(PathBuf::from(flag));
    }
    env.iter()
        .find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty())
        .map(|(_, v)| PathBuf::from(v))
}

/// Go's `*PathError` text for a failed read: `open <path>: no such file or directory`.
fn go_open_error(path: &std::path::Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let (op, what) = match e.kind() {
        ErrorKind::NotFound => ("open", "no such file or directory".to_string()),
        ErrorKind::PermissionDenied => ("open", "permission denied".to_string()),
        ErrorKind::IsADirectory => ("read", "is a directory".to_string()),
        _ => {
            let text = e.to_string();
            // Rust appends " (os error N)"; Go does not.
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            ("read", text.to_lowercase())
        }
    };
    format!("{op} {}: {what}", path.display())
}

fn build(settings: &Settings, mut warnings: Vec<ConfigWarning>) -> Result<Config, ConfigError> {
    let name = settings.raw("name").to_string();
    let data_dir = match settings.raw("data-dir") {
        "" | "${name}.etcd" => {
            let dir = format!("{name}.etcd");
            warnings.push(ConfigWarning::DataDirDefault {
                data_dir: dir.clone(),
            });
            PathBuf::from(dir)
        }
        dir => PathBuf::from(dir),
    };
    let initial_advertise_peer_urls = read_urls(settings, "initial-advertise-peer-urls")?;
    // Flags: an explicit --listen-client-urls needs an explicit --advertise-client-urls. A
    // configuration file starts from etcd's defaults instead, so the default stays.
    let advertise_client_urls = if settings.is_set("listen-client-urls")
        && !settings.is_set("advertise-client-urls")
        && !settings.is_from_config_file()
    {
        Vec::new()
    } else {
        read_urls(settings, "advertise-client-urls")?
    };
    let bcrypt_given = read_uint(settings, "bcrypt-cost")?;
    let bcrypt_cost = match u32::try_from(bcrypt_given) {
        Ok(c @ 4..=31) => c,
        _ => {
            warnings.push(ConfigWarning::BcryptCostDefault {
                given: bcrypt_given,
            });
            10
        }
    };
    let quota_backend_bytes = read_int(settings, "quota-backend-bytes")?;
    let (log_level, log_outputs, log_rotation) = read_logging(settings)?;
    Ok(Config {
        initial_cluster: initial_cluster_raw(settings, &name, &initial_advertise_peer_urls),
        name,
        data_dir,
        wal_dir: match settings.raw("wal-dir") {
            "" => None,
            dir => Some(PathBuf::from(dir)),
        },
        snapshot_count: read_uint(settings, "snapshot-count")?,
        heartbeat_interval_ms: read_uint(settings, "heartbeat-interval")?,
        election_timeout_ms: read_uint(settings, "election-timeout")?,
        listen_peer_urls: read_urls(settings, "listen-peer-urls")?,
        listen_client_urls: read_urls(settings, "listen-client-urls")?,
        max_snapshots: read_uint(settings, "max-snapshots")?,
        max_wals: read_uint(settings, "max-wals")?,
        quota_backend_bytes,
        max_txn_ops: read_uint(settings, "max-txn-ops")?,
        max_request_bytes: read_uint(settings, "max-request-bytes")?,
        grpc_keepalive_min_time: read_duration(settings, "grpc-keepalive-min-time")?,
        grpc_keepalive_interval: read_duration(settings, "grpc-keepalive-interval")?,
        grpc_keepalive_timeout: read_duration(settings, "grpc-keepalive-timeout")?,
        max_concurrent_streams: read_u32(settings, "max-concurrent-streams")?,
        initial_advertise_peer_urls,
        initial_cluster_state: match settings.raw("initial-cluster-state") {
            "existing" => ClusterState::Existing,
            _ => ClusterState::New,
        },
        initial_cluster_token: settings.raw("initial-cluster-token").to_string(),
        advertise_client_urls,
        strict_reconfig_check: read_bool(settings, "strict-reconfig-check")?,
        auto_compaction: read_auto_compaction(settings)?,
        enable_v2: read_bool(settings, "enable-v2")?,
        enable_grpc_gateway: read_bool(settings, "enable-grpc-gateway")?,
        client_tls: read_tls(settings, "")?,
        peer_tls: read_tls(settings, "peer-")?,
        // A configuration file's 0 means etcd's default of 1 year.
        self_signed_cert_validity_years: match read_uint(settings, "self-signed-cert-validity")? {
            0 if settings.is_from_config_file() => 1,
            years => years,
        },
        cors: read_cors(settings)?,
        host_whitelist: read_host_whitelist(settings),
        auth_token: read_auth_token(settings)?,
        auth_token_ttl_s: read_uint(settings, "auth-token-ttl")?,
        bcrypt_cost,
        metrics: match settings.raw("metrics") {
            "basic" => MetricsLevel::Basic,
            "extensive" => MetricsLevel::Extensive,
            other => {
                return Err(ConfigError::UnknownMetrics {
                    metrics: other.into(),
                })
            }
        },
        listen_metrics_urls: read_urls(settings, "listen-metrics-urls")?,
        log_level,
        log_outputs,
        log_rotation,
        experimental_initial_corrupt_check: read_bool(
            settings,
            "experimental-initial-corrupt-check",
        )?,
        experimental_enable_lease_checkpoint: read_bool(
            settings,
            "experimental-enable-lease-checkpoint",
        )?,
        experimental_watch_progress_notify_interval: read_duration(
            settings,
            "experimental-watch-progress-notify-interval",
        )?,
        experimental_corrupt_check_time: read_duration(
            settings,
            "experimental-corrupt-check-time",
        )?,
        experimental_warning_apply_duration: read_duration(
            settings,
            "experimental-warning-apply-duration",
        )?,
        experimental_compaction_batch_limit: read_int(
            settings,
            "experimental-compaction-batch-limit",
        )?,
        force_new_cluster: read_bool(settings, "force-new-cluster")?,
        config_file: None,
        flags_explicitly_set: settings.explicit_names(),
        warnings,
    })
}

/// The error for a value that passed the scan-time syntax check but not the typed parse;
/// only reachable if a kind's `check` and its reader disagree.
fn value_error(settings: &Settings, name: &str, reason: String) -> ConfigError {
    let value = settings.raw(name).to_string();
    match settings.explicit(name).map(|s| &s.origin) {
        Some(flags::Origin::Env(key)) => ConfigError::InvalidEnvValue {
            key: key.clone(),
            value,
            reason,
        },
        _ => ConfigError::InvalidValue {
            name: name.into(),
            value,
            reason,
        },
    }
}

fn read_bool(settings: &Settings, name: &str) -> Result<bool, ConfigError> {
    goparse::parse_bool(settings.raw(name))
        .ok_or_else(|| value_error(settings, name, "parse error".into()))
}

fn read_uint(settings: &Settings, name: &str) -> Result<u64, ConfigError> {
    goparse::parse_uint(settings.raw(name)).map_err(|e| value_error(settings, name, e.to_string()))
}

fn read_u32(settings: &Settings, name: &str) -> Result<u32, ConfigError> {
    goparse::parse_uint_bounded(settings.raw(name), u64::from(u32::MAX))
        .map(|v| v as u32)
        .map_err(|e| value_error(settings, name, e.to_string()))
}

fn read_int(settings: &Settings, name: &str) -> Result<i64, ConfigError> {
    goparse::parse_int(settings.raw(name)).map_err(|e| value_error(settings, name, e.to_string()))
}

fn read_duration(settings: &Settings, name: &'static str) -> Result<Duration, ConfigError> {
    let raw = settings.raw(name);
    let d = parse_duration(raw).map_err(|_| value_error(settings, name, "parse error".into()))?;
    d.to_std().ok_or_else(|| ConfigError::NegativeDuration {
        flag: name,
        value: raw.into(),
    })
}

/// A URL list flag; an empty value keeps etcd's default. https and unix URLs are
/// rejected until TLS / unix listeners exist.
fn read_urls(settings: &Settings, name: &str) -> Result<Vec<Url>, ConfigError> {
    let spec = flags::spec(name);
    debug_assert_eq!(spec.kind, Kind::Urls, "{name} is not a URL list flag");
    let mut raw = settings.raw(name);
    if raw.is_empty() {
        raw = spec.default;
    }
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let urls = Url::parse_list(raw).map_err(|e| value_error(settings, name, e.to_string()))?;
    check_url_support(name, &urls)?;
    Ok(urls)
}

/// Rejects URL schemes we cannot serve yet.
pub(crate) fn check_url_support(flag: &str, urls: &[Url]) -> Result<(), ConfigError> {
    for url in urls {
        let why = match url.scheme {
            Scheme::Unix | Scheme::Unixs if !flags::UNIX_SOCKET_FLAGS.contains(&flag) => {
                "unix socket URLs are not served for this flag"
            }
            Scheme::Https | Scheme::Unixs if !flags::TLS_SUPPORTED => "TLS is not implemented",
            _ => continue,
        };
        return Err(ConfigError::UnsupportedValue {
            flag: flag.into(),
            value: url.to_string(),
            why,
        });
    }
    Ok(())
}

/// etcd 3.5: when `--initial-cluster` still holds its default and `--name` does not,
/// the cluster is this member alone under its name and advertised peer URLs.
fn initial_cluster_raw(settings: &Settings, name: &str, apurls: &[Url]) -> String {
    let raw = settings.raw("initial-cluster");
    if name == DEFAULT_NAME || raw != DEFAULT_INITIAL_CLUSTER {
        return raw.to_string();
    }
    apurls
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// etcd's rule: a non-negative base-10 integer is hours (periodic) or revisions
/// (revision); anything else must be a Go duration (periodic only).
fn read_auto_compaction(settings: &Settings) -> Result<AutoCompaction, ConfigError> {
    let mode = settings.raw("auto-compaction-mode");
    let retention = settings.raw("auto-compaction-retention");
    let whole = retention.parse::<i64>().ok().filter(|n| *n >= 0);
    let periodic = match mode {
        "periodic" | "" => true,
        "revision" => false,
        other => {
            return Err(ConfigError::UnknownCompactionMode { mode: other.into() });
        }
    };
    let compaction = match (periodic, whole) {
        (_, Some(0)) => AutoCompaction::Off,
        (false, Some(n)) => AutoCompaction::Revision {
            retention_revisions: n.unsigned_abs(),
        },
        (true, Some(hours)) => AutoCompaction::Periodic {
            retention: Duration::from_secs(hours.unsigned_abs().saturating_mul(3600)),
        },
        (periodic, None) => {
            let d = parse_duration(retention).map_err(|e| ConfigError::CompactionRetention {
                reason: e.to_string(),
            })?;
            let Some(retention) = d.to_std() else {
                return Err(ConfigError::CompactionRetention {
                    reason: format!("negative retention {retention:?}"),
                });
            };
            if !periodic {
                return Err(ConfigError::CompactionRetention {
                    reason: format!("revision retention must be a revision count: {retention:?}"),
                });
            }
            if retention.is_zero() {
                AutoCompaction::Off
            } else {
                AutoCompaction::Periodic { retention }
            }
        }
    };
    Ok(compaction)
}

fn read_tls(settings: &Settings, prefix: &str) -> Result<TlsFiles, ConfigError> {
    let path = |flag: &str| {
        let v = settings.raw(&format!("{prefix}{flag}"));
        (!v.is_empty()).then(|| PathBuf::from(v))
    };
    Ok(TlsFiles {
        cert_file: path("cert-file"),
        key_file: path("key-file"),
        trusted_ca_file: path("trusted-ca-file"),
        client_cert_auth: read_bool(settings, &format!("{prefix}client-cert-auth"))?,
        auto_tls: read_bool(settings, &format!("{prefix}auto-tls"))?,
        crl_file: settings_crl(settings, prefix),
        cipher_suites: settings
            .raw("cipher-suites")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        allowed_hostname: {
            let name = if prefix.is_empty() {
                "client-cert-allowed-hostname"
            } else {
                "peer-cert-allowed-hostname"
            };
            let v = settings.raw(name);
            (!v.is_empty()).then(|| v.to_string())
        },
        // etcd has the flag for peers only.
        allowed_cn: match prefix {
            "peer-" => path("cert-allowed-cn").map(|p| p.to_string_lossy().into_owned()),
            _ => None,
        },
    })
}

/// `--client-crl-file` or `--peer-crl-file`.
fn settings_crl(settings: &Settings, prefix: &str) -> Option<PathBuf> {
    let name = if prefix.is_empty() {
        "client-crl-file"
    } else {
        "peer-crl-file"
    };
    let v = settings.raw(name);
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn read_cors(settings: &Settings) -> Result<Cors, ConfigError> {
    match settings.raw("cors") {
        "" | "*" => Ok(Cors::Any),
        raw => Url::parse_list(raw)
            .map(Cors::Origins)
            .map_err(|e| value_error(settings, "cors", e.to_string())),
    }
}

/// etcd's unique-strings flag: comma-separated names; `*` (the default) allows any.
fn read_host_whitelist(settings: &Settings) -> Vec<String> {
    let names: Vec<String> = match settings.raw("host-whitelist") {
        "" => Vec::new(),
        raw => raw.split(',').map(str::to_string).collect(),
    };
    if names.iter().any(|n| n == "*") {
        return Vec::new();
    }
    names
}

/// etcd's reading of `--auth-token`: `<type>[,<key>=<value>...]`; an option that is not exactly
/// one `key=value`, a key given twice or an unknown type is "auth: invalid auth options".
fn read_auth_token(settings: &Settings) -> Result<AuthTokenKind, ConfigError> {
    let raw = settings.raw("auth-token");
    let invalid = || ConfigError::InvalidAuthOptions { token: raw.into() };
    let mut parts = raw.split(',');
    let kind = parts.next().unwrap_or("");
    let mut options = std::collections::BTreeMap::new();
    for option in parts {
        let mut kv = option.split('=');
        let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
            return Err(invalid());
        };
        if options.insert(k.to_string(), v.to_string()).is_some() {
            return Err(invalid());
        }
    }
    match kind {
        "simple" => Ok(AuthTokenKind::Simple),
        "jwt" => Ok(AuthTokenKind::Jwt(options)),
        _ => Err(invalid()),
    }
}

type Logging = (
    LogLevel,
    Vec<crate::logging::LogOutput>,
    Option<crate::logging::RotationConfig>,
);

/// `--logger`, `--log-outputs`, `--enable-log-rotation`, `--log-rotation-config-json`,
/// `--log-level` and etcd 3.4's `--debug` (etcd checks them first in Validate).
fn read_logging(settings: &Settings) -> Result<Logging, ConfigError> {
    use crate::logging::LogOutput;
    match settings.raw("logger") {
        "zap" => {}
        "capnslog" => return Err(ConfigError::LoggerRemoved),
        other => {
            return Err(ConfigError::UnknownLogger {
                logger: other.into(),
            })
        }
    }
    let raw_outputs = settings.raw("log-outputs");
    let mut outputs = Vec::new();
    for output in raw_outputs.split(',') {
        outputs.push(match output {
            "default" | "stderr" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            "systemd/journal" => {
                return Err(ConfigError::UnsupportedValue {
                    flag: "log-outputs".into(),
                    value: raw_outputs.into(),
                    why: "writing to the systemd journal directly is not implemented; \
                          under systemd, stderr goes to the journal",
                })
            }
            path => LogOutput::File(PathBuf::from(path)),
        });
    }
    let rotation = if read_bool(settings, "enable-log-rotation")? {
        let files = outputs
            .iter()
            .filter(|o| matches!(o, LogOutput::File(_)))
            .count();
        // etcd's rule: one output that is not a file, or several files, cannot rotate.
        if (outputs.len() == 1 && files == 0) || files > 1 {
            return Err(ConfigError::LogRotationOutputs);
        }
        Some(read_rotation(settings.raw("log-rotation-config-json"))?)
    } else {
        None
    };
    // etcd 3.4's --debug: debug-level logging.
    let level = if read_bool(settings, "debug")? {
        LogLevel::Debug
    } else {
        match settings.raw("log-level") {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    };
    Ok((level, outputs, rotation))
}

/// `--log-rotation-config-json`, decoded with Go's JSON rules into lumberjack's fields
/// (unknown fields ignored; `filename` is replaced by the output path, as in etcd).
fn read_rotation(json: &str) -> Result<crate::logging::RotationConfig, ConfigError> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::LogRotationConfig {
        reason: format!("improperly formatted log rotation config: {e}"),
    })?;
    let type_error = |what: String, field: Option<(&str, &str)>| {
        let target = match field {
            Some((name, ty)) => format!("Go struct field logRotationConfig.{name} of type {ty}"),
            None => "Go value of type embed.logRotationConfig".to_string(),
        };
        ConfigError::LogRotationConfig {
            reason: format!(
                "invalid log rotation config: json: cannot unmarshal {what} into {target}"
            ),
        }
    };
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let map = match &value {
        Value::Object(map) => map,
        Value::Null => &serde_json::Map::new(),
        other => return Err(type_error(kind(other).to_string(), None)),
    };
    let mut config = crate::logging::RotationConfig {
        max_size_mb: crate::logging::RotationConfig::MAX_SIZE_MB_DEFAULT,
        max_age_days: 0,
        max_backups: 0,
        local_time: false,
    };
    for (name, v) in map {
        match name.as_str() {
            "maxsize" | "maxage" | "maxbackups" => {
                let n = match v {
                    Value::Null => continue,
                    Value::Number(n) => n
                        .as_i64()
                        .ok_or_else(|| type_error(format!("number {n}"), Some((name, "int"))))?,
                    other => return Err(type_error(kind(other).into(), Some((name, "int")))),
                };
                let n = u64::try_from(n).map_err(|_| ConfigError::UnsupportedValue {
                    flag: "log-rotation-config-json".into(),
                    value: json.into(),
                    why: "negative sizes, ages and counts are not supported",
                })?;
                match name.as_str() {
                    "maxsize" => config.max_size_mb = n,
                    "maxage" => config.max_age_days = n,
                    _ => config.max_backups = n,
                }
            }
            "localtime" | "compress" => {
                let b = match v {
                    Value::Null => continue,
                    Value::Bool(b) => *b,
                    other => return Err(type_error(kind(other).into(), Some((name, "bool")))),
                };
                if name == "localtime" {
                    config.local_time = b;
                } else if b {
                    return Err(ConfigError::UnsupportedValue {
                        flag: "log-rotation-config-json".into(),
                        value: json.into(),
                        why: "compressing rotated log files is not implemented",
                    });
                }
            }
            "filename" if !matches!(v, Value::String(_) | Value::Null) => {
                return Err(type_error(kind(v).into(), Some((name, "string"))));
            }
            _ => {}
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
