//! Configuration errors and warnings, with etcd 3.5's texts and exit codes.
//!
//! Invariant: `exit_code` is 2 exactly for the errors Go's flag package raises while
//! scanning the command line (etcd exits 2 there) and 1 for everything else.

use std::fmt;

/// Why the configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    // ---- command-line syntax (Go flag package, exit 2) ----
    /// `flag provided but not defined: -x`
    UnknownFlag {
        name: String,
    },
    /// `bad flag syntax: ---x`
    BadFlagSyntax {
        arg: String,
    },
    /// `flag needs an argument: -name`
    MissingValue {
        name: String,
    },
    /// `invalid boolean value "v" for -name: parse error`
    InvalidBool {
        name: String,
        value: String,
    },
    /// `invalid value "v" for flag -name: <reason>`
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },

    // ---- environment (exit 1) ----
    /// `invalid value "v" for ETCD_X: <reason>`
    InvalidEnvValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A variable for a flag that was also given on the command line.
    EnvConflict {
        key: String,
    },

    // ---- configuration file (exit 1) ----
    /// Reading or decoding `--config-file` failed; the text is etcd's (`open <path>: no such
    /// file or directory`, `error unmarshaling JSON: ...`).
    ConfigFile {
        reason: String,
    },
    /// A URL list key of the configuration file does not parse; etcd prints this plainly on
    /// stderr: `unexpected error setting up listen-client-urls: <reason>`.
    ConfigFileUrl {
        key: String,
        reason: String,
    },
    /// `unexpected clusterState "x"` (a configuration file's `initial-cluster-state`).
    UnexpectedClusterState {
        state: String,
    },

    // ---- not implemented (exit 1) ----
    /// A flag from `flags::UNSUPPORTED_FLAGS` set to a non-default value; `why` names what
    /// is missing.
    Unsupported {
        flag: String,
        why: &'static str,
    },
    /// A supported flag with a value we cannot honour yet (https without TLS, unix sockets,
    /// jwt tokens, file log outputs).
    UnsupportedValue {
        flag: String,
        value: String,
        why: &'static str,
    },
    /// `oxetcd gateway` / `oxetcd grpc-proxy`.
    UnsupportedCommand {
        name: String,
    },

    // ---- validation (exit 1) ----
    /// A leftover positional argument: `'x' is not a valid flag`.
    NotAFlag {
        arg: String,
    },
    HeartbeatZero,
    ElectionZero,
    ElectionTooShort {
        election_ms: u64,
        heartbeat_ms: u64,
    },
    ElectionTooLong {
        election_ms: u64,
    },
    /// `--advertise-client-urls is required when --listen-client-urls is set explicitly`
    AdvertiseClientUrlsRequired,
    /// `expected IP in URL for binding (<url>)`
    BindNotIp {
        url: String,
    },
    /// An advertised URL without host.
    AdvertiseEmptyHost {
        flag: &'static str,
        urls: String,
        url: String,
    },
    UnknownCompactionMode {
        mode: String,
    },
    /// `error parsing CompactionRetention: <reason>`
    CompactionRetention {
        reason: String,
    },
    LoggerRemoved,
    /// `--enable-log-rotation` without exactly one file output.
    LogRotationOutputs,
    /// `--log-rotation-config-json` does not decode; the text is etcd's
    /// (`invalid log rotation config: ...`, `improperly formatted log rotation config: ...`).
    LogRotationConfig {
        reason: String,
    },
    UnknownLogger {
        logger: String,
    },
    UnknownMetrics {
        metrics: String,
    },
    /// `auth: invalid auth options` (unknown token type).
    InvalidAuthOptions {
        token: String,
    },
    /// `error setting up initial cluster: <reason>`
    InitialCluster {
        reason: String,
    },
    /// `initial cluster <s> has duplicate url`
    InitialClusterDuplicateUrl {
        initial_cluster: String,
    },
    /// `couldn't find local name "<n>" in the initial cluster configuration`
    LocalNameNotInCluster {
        name: String,
    },
    /// The advertised peer URLs differ from this member's `--initial-cluster` entry.
    AdvertisePeerMismatch {
        detail: String,
    },
    /// Two bootstrap members hash to the same ID.
    DuplicateMemberId {
        id: u64,
    },
    /// A duration flag set to a negative value.
    NegativeDuration {
        flag: &'static str,
        value: String,
    },
}

impl ConfigError {
    /// Process exit status etcd 3.5 uses for this error.
    pub fn exit_code(&self) -> i32 {
        if self.is_usage_error() {
            2
        } else {
            1
        }
    }

    /// True for command-line syntax errors; etcd prints these plainly followed by the
    /// short usage text, while other errors go to the structured log.
    pub fn is_usage_error(&self) -> bool {
        matches!(
            self,
            ConfigError::UnknownFlag { .. }
                | ConfigError::BadFlagSyntax { .. }
                | ConfigError::MissingValue { .. }
                | ConfigError::InvalidBool { .. }
                | ConfigError::InvalidValue { .. }
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigError::*;
        match self {
            UnknownFlag { name } => write!(f, "flag provided but not defined: -{name}"),
            BadFlagSyntax { arg } => write!(f, "bad flag syntax: {arg}"),
            MissingValue { name } => write!(f, "flag needs an argument: -{name}"),
            InvalidBool { name, value } => {
                write!(
                    f,
                    "invalid boolean value {value:?} for -{name}: parse error"
                )
            }
            InvalidValue {
                name,
                value,
                reason,
            } => write!(f, "invalid value {value:?} for flag -{name}: {reason}"),
            InvalidEnvValue { key, value, reason } => {
                write!(f, "invalid value {value:?} for {key}: {reason}")
            }
            EnvConflict { .. } => f.write_str(ENV_CONFLICT_MSG),
            ConfigFile { reason } => f.write_str(reason),
            ConfigFileUrl { key, reason } => {
                write!(f, "unexpected error setting up {key}: {reason}")
            }
            UnexpectedClusterState { state } => write!(f, "unexpected clusterState {state:?}"),
            Unsupported { flag, why } => {
                write!(f, "oxetcd: flag --{flag} is not supported yet ({why})")
            }
            UnsupportedValue { flag, value, why } => {
                write!(f, "oxetcd: --{flag}={value} is not supported yet ({why})")
            }
            UnsupportedCommand { name } => {
                write!(f, "oxetcd: command {name:?} is not supported yet")
            }
            NotAFlag { arg } => write!(f, "'{arg}' is not a valid flag"),
            HeartbeatZero => f.write_str("--heartbeat-interval must be >0 (set to 0ms)"),
            ElectionZero => f.write_str("--election-timeout must be >0 (set to 0ms)"),
            ElectionTooShort {
                election_ms,
                heartbeat_ms,
            } => write!(
                f,
                "--election-timeout[{election_ms}ms] should be at least as 5 times as \
                 --heartbeat-interval[{heartbeat_ms}ms]"
            ),
            ElectionTooLong { election_ms } => write!(
                f,
                "--election-timeout[{election_ms}ms] is too long, and should be set less than \
                 {}ms",
                super::ELECTION_TIMEOUT_MS_MAX
            ),
            AdvertiseClientUrlsRequired => f.write_str(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly",
            ),
            BindNotIp { url } => write!(f, "expected IP in URL for binding ({url})"),
            AdvertiseEmptyHost { flag, urls, url } => write!(
                f,
                "--{flag} {urls:?} must be \"host:port\" (unexpected empty host ({url}))"
            ),
            UnknownCompactionMode { mode } => write!(f, "unknown auto-compaction-mode {mode:?}"),
            CompactionRetention { reason } => {
                write!(f, "error parsing CompactionRetention: {reason}")
            }
            LoggerRemoved => f.write_str("--logger=capnslog is removed in v3.5"),
            LogRotationOutputs => f.write_str(
                "--log-outputs requires a single file path when --log-rotate-config-json is \
                 defined",
            ),
            LogRotationConfig { reason } => f.write_str(reason),
            UnknownLogger { logger } => write!(f, "unknown logger option {logger:?}"),
            UnknownMetrics { metrics } => write!(
                f,
                "unknown metrics option {metrics:?} (expected 'basic' or 'extensive')"
            ),
            InvalidAuthOptions { .. } => f.write_str("auth: invalid auth options"),
            InitialCluster { reason } => write!(f, "error setting up initial cluster: {reason}"),
            InitialClusterDuplicateUrl { initial_cluster } => {
                write!(f, "initial cluster {initial_cluster} has duplicate url")
            }
            LocalNameNotInCluster { name } => write!(
                f,
                "couldn't find local name {name:?} in the initial cluster configuration"
            ),
            AdvertisePeerMismatch { detail } => f.write_str(detail),
            DuplicateMemberId { id } => write!(f, "member exists with identical ID {id:x}"),
            NegativeDuration { flag, value } => {
                write!(f, "--{flag} must not be negative (set to {value})")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// etcd 3.5's fatal message for an environment variable shadowed by a flag (the doubled
/// parenthesis is etcd's).
pub const ENV_CONFLICT_MSG: &str = "conflicting environment variable is shadowed by \
    corresponding command-line flag (either unset environment variable or disable flag))";

/// Something worth a warning line at startup; the caller logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// An `ETCD_*` variable that no flag uses; `entry` is `KEY=VALUE` as etcd logs it.
    UnrecognizedEnv { entry: String },
    /// `ETCD_VERSION` is never applied.
    SpecialEnv { key: String, value: String },
    /// No `--data-dir`: `${name}.etcd` is used.
    DataDirDefault { data_dir: String },
    /// `--bcrypt-cost` outside 4..=31; 10 is used.
    BcryptCostDefault { given: u64 },
    /// A storage-engine tuning flag (`flags::NO_EFFECT_FLAGS`) was set; `why` says why it
    /// means nothing here.
    NoEffect {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
}

impl ConfigWarning {
    /// The log message etcd prints for this warning.
    pub fn message(&self) -> &'static str {
        match self {
            ConfigWarning::UnrecognizedEnv { .. } => "unrecognized environment variable",
            ConfigWarning::SpecialEnv { .. } => "cannot set special environment variable",
            ConfigWarning::DataDirDefault { .. } => "'data-dir' was empty; using default",
            ConfigWarning::BcryptCostDefault { .. } => {
                "use default bcrypt cost instead of the invalid given cost"
            }
            ConfigWarning::NoEffect { .. } => "flag has no effect in oxetcd; ignoring it",
        }
    }

    /// Structured fields of the log line, in etcd's key names and order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            ConfigWarning::UnrecognizedEnv { entry } => {
                vec![("environment-variable", entry.clone())]
            }
            ConfigWarning::SpecialEnv { key, value } => {
                vec![("key", key.clone()), ("value", value.clone())]
            }
            ConfigWarning::DataDirDefault { data_dir } => vec![("data-dir", data_dir.clone())],
            ConfigWarning::BcryptCostDefault { given } => vec![
                ("min-cost", "4".into()),
                ("max-cost", "31".into()),
                ("default-cost", "10".into()),
                ("given-cost", given.to_string()),
            ],
            ConfigWarning::NoEffect { flag, value, why } => vec![
                ("flag", format!("--{flag}")),
                ("value", value.clone()),
                ("reason", (*why).to_string()),
            ],
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())?;
        for (k, v) in self.fields() {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_etcd() {
        let usage = ConfigError::UnknownFlag { name: "x".into() };
        assert_eq!(usage.exit_code(), 2);
        assert!(usage.is_usage_error());
        for e in [
            ConfigError::EnvConflict {
                key: "ETCD_NAME".into(),
            },
            ConfigError::Unsupported {
                flag: "wal-dir".into(),
                why: "x",
            },
            ConfigError::NotAFlag { arg: "x".into() },
            ConfigError::HeartbeatZero,
        ] {
            assert_eq!(e.exit_code(), 1, "{e}");
        }
    }

    #[test]
    fn texts_match_etcd() {
        assert_eq!(
            ConfigError::EnvConflict {
                key: "ETCD_NAME".into()
            }
            .to_string(),
            "conflicting environment variable is shadowed by corresponding command-line flag \
             (either unset environment variable or disable flag))"
        );
        assert_eq!(
            ConfigError::NotAFlag {
                arg: "extra".into()
            }
            .to_string(),
            "'extra' is not a valid flag"
        );
        assert_eq!(
            ConfigError::ElectionTooShort {
                election_ms: 400,
                heartbeat_ms: 100
            }
            .to_string(),
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"
        );
        assert_eq!(
            ConfigError::ElectionTooLong { election_ms: 50001 }.to_string(),
            "--election-timeout[50001ms] is too long, and should be set less than 50000ms"
        );
        assert_eq!(
            ConfigError::AdvertiseEmptyHost {
                flag: "advertise-client-urls",
                urls: "http://:2379".into(),
                url: "http://:2379".into()
            }
            .to_string(),
            r#"--advertise-client-urls "http://:2379" must be "host:port" (unexpected empty host (http://:2379))"#
        );
    }

    #[test]
    fn warnings_render_fields() {
        let w = ConfigWarning::UnrecognizedEnv {
            entry: "ETCD_FOOBAR=1".into(),
        };
        assert_eq!(
            w.to_string(),
            "unrecognized environment variable environment-variable=ETCD_FOOBAR=1"
        );
    }
}
