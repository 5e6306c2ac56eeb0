//! The flag table (every flag etcd 3.5 defines, with its kind and default) and the two
//! input stages: scanning the command line with Go `flag` package rules, then filling the
//! rest from `ETCD_*` environment variables with etcd's conflict and warning rules.
//!
//! Invariant: a name in `UNSUPPORTED_FLAGS` or `NO_EFFECT_FLAGS` is a name in `FLAGS`, in
//! at most one of the two lists, and every refused flag has a reason (checked by a test).
//! Invariant: after `scan` + `merge_env`, every explicit value passed its kind's syntax
//! check, so the typed extraction in `config.rs` only fails on semantic rules.

use super::error::{ConfigError, ConfigWarning};
use super::goparse::parse_bool;
pub use super::table::{env_key, index_of, spec, FlagSpec, Group, Kind, FLAGS};

// ---------------------------------------------------------------------------------------
// What oxetcd does not implement yet. Edit here to enable a feature.
// ---------------------------------------------------------------------------------------

/// Flags etcd 3.5 accepts but oxetcd does not implement yet. Setting one of them (flag or
/// `ETCD_*` variable) to anything other than etcd's default stops startup with
/// "oxetcd: flag --X is not supported yet (<what is missing>)" (exit 1; the reason comes from
/// `unsupported_reason`).
pub const UNSUPPORTED_FLAGS: &[&str] = &[
    // TLS: the peer client certificate SAN check this flag skips is not done
    "experimental-peer-skip-client-san-verification",
    // bootstrap and proxies
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "v2-deprecation",
    "experimental-enable-v2v3",
    // raft and backend tuning without an equivalent here
    "initial-election-tick-advance",
    "pre-vote",
    "experimental-memory-mlock",
    "experimental-downgrade-check-time",
    "unsafe-no-fsync",
    // serving and observability extras
    "log-package-levels",
    "experimental-enable-lease-checkpoint",
    "socket-reuse-port",
    "socket-reuse-address",
    "enable-pprof",
    "experimental-enable-distributed-tracing",
    "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    // pre-v2 flags etcd still swallows with a warning
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
];

/// `https://` URLs are served with TLS (`net::tls`).
pub const TLS_SUPPORTED: bool = true;
/// Flags whose `unix://`/`unixs://` URLs are served (listeners) or dialed (peers): every URL
/// flag etcd accepts them in.
pub const UNIX_SOCKET_FLAGS: &[&str] = &[
    "listen-client-urls",
    "listen-metrics-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
];

/// What is missing for a flag of `UNSUPPORTED_FLAGS`, shown in its startup error.
pub fn unsupported_reason(name: &str) -> &'static str {
    match name {
        "experimental-peer-skip-client-san-verification" => {
            "peer client certificates are never checked against the peer's address, so \
             there is nothing to skip"
        }
        "discovery" | "discovery-fallback" | "discovery-proxy" | "discovery-srv"
        | "discovery-srv-name" => "discovery bootstrap is not implemented; use --initial-cluster",
        "proxy"
        | "proxy-failure-wait"
        | "proxy-refresh-interval"
        | "proxy-dial-timeout"
        | "proxy-write-timeout"
        | "proxy-read-timeout" => "the v2 proxy is not implemented",
        "v2-deprecation" => {
            "v2 deprecation stages are not implemented (--enable-v2 serves the v2 API as etcd 3.4)"
        }
        "experimental-enable-v2v3" => {
            "serving the v2 API from the v3 store is not implemented (--enable-v2 serves it from \
             the v2 store)"
        }
        "initial-election-tick-advance" => {
            "elections always start after a randomized election timeout; the boot-time tick \
             advance cannot be switched off"
        }
        "pre-vote" => "elections without a pre-vote phase are not implemented",
        "experimental-memory-mlock" => "locking the process memory is not implemented",
        "experimental-downgrade-check-time" => "cluster downgrades are not implemented",
        "unsafe-no-fsync" => "every write is fsynced; skipping fsync is not implemented",
        "socket-reuse-port" | "socket-reuse-address" => {
            "socket options on listeners are not implemented"
        }
        "enable-pprof" => "runtime profiles are not served",
        "experimental-enable-distributed-tracing"
        | "experimental-distributed-tracing-address"
        | "experimental-distributed-tracing-service-name"
        | "experimental-distributed-tracing-instance-id" => "trace export is not implemented",
        "experimental-enable-lease-checkpoint" => {
            "lease checkpoints are not implemented; a new leader gives every lease its full TTL"
        }
        "log-package-levels" => {
            "per-package log levels (capnslog) are gone since etcd 3.5; use --log-level"
        }
        "cluster-active-size"
        | "cluster-remove-delay"
        | "cluster-sync-interval"
        | "config"
        | "force"
        | "max-result-buffer"
        | "max-retry-attempts"
        | "peer-heartbeat-interval"
        | "peer-election-timeout"
        | "retry-interval"
        | "snapshot"
        | "v"
        | "vv" => "obsolete etcd 0.4 flag",
        _ => "not implemented",
    }
}

/// Storage-engine tuning of etcd's bbolt backend, which has no counterpart here (the state
/// lives in memory, made durable by the WAL and snapshot files). Setting one is accepted with
/// a startup warning that it has no effect; the text is the reason.
pub const NO_EFFECT_FLAGS: &[(&str, &str)] = &[
    (
        "backend-bbolt-freelist-type",
        "there is no bbolt backend file",
    ),
    (
        "experimental-backend-bbolt-freelist-type",
        "there is no bbolt backend file",
    ),
    (
        "backend-batch-interval",
        "there is no backend commit batching; every raft entry is fsynced in the WAL",
    ),
    (
        "backend-batch-limit",
        "there is no backend commit batching; every raft entry is fsynced in the WAL",
    ),
    (
        "experimental-txn-mode-write-with-shared-buffer",
        "there is no backend read buffer",
    ),
    (
        "experimental-bootstrap-defrag-threshold-megabytes",
        "there is no backend file to defragment",
    ),
];

// ---------------------------------------------------------------------------------------

/// Where an explicit value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    /// A key of the `--config-file` YAML file.
    ConfigFile,
    /// The environment variable's name.
    Env(String),
}

/// One explicitly set value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// Explicit values by flag index (last one wins, as in Go).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    explicit: Vec<Option<Setting>>,
    /// The values come from a configuration file (etcd's file rules differ in a few
    /// defaults, see `config::build`).
    from_config_file: bool,
}

impl Settings {
    fn new() -> Settings {
        Settings {
            explicit: vec![None; FLAGS.len()],
            from_config_file: false,
        }
    }

    /// Empty settings to be filled from a configuration file.
    pub fn from_config_file() -> Settings {
        Settings {
            from_config_file: true,
            ..Settings::new()
        }
    }

    /// Whether these settings were read from a configuration file.
    pub fn is_from_config_file(&self) -> bool {
        self.from_config_file
    }

    /// Sets `name` to a value read from the configuration file.
    pub fn set_from_file(&mut self, name: &str, value: String) {
        let i = self.slot(name);
        self.explicit[i] = Some(Setting {
            value,
            origin: Origin::ConfigFile,
        });
    }

    fn slot(&self, name: &str) -> usize {
        match index_of(name) {
            Some(i) => i,
            None => panic!("flag {name:?} is not in config::flags::FLAGS"),
        }
    }

    /// The explicit setting of `name`, if any.
    pub fn explicit(&self, name: &str) -> Option<&Setting> {
        self.explicit[self.slot(name)].as_ref()
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.explicit(name).is_some()
    }

    /// The explicit value, or etcd's default.
    pub fn raw(&self, name: &str) -> &str {
        let i = self.slot(name);
        match &self.explicit[i] {
            Some(s) => &s.value,
            None => FLAGS[i].default,
        }
    }

    /// Names of every explicitly set flag, in table order.
    pub fn explicit_names(&self) -> Vec<&'static str> {
        FLAGS
            .iter()
            .zip(&self.explicit)
            .filter(|(_, s)| s.is_some())
            .map(|(spec, _)| spec.name)
            .collect()
    }
}

/// Result of scanning the command line.
#[derive(Debug)]
pub enum Scan {
    /// `-h`/`--help`.
    Help,
    /// Flags parsed; `rest` holds the arguments after the first non-flag.
    Flags {
        settings: Settings,
        rest: Vec<String>,
    },
}

/// Scans `args` (program name excluded) with Go `flag` package rules: `-x` and `--x`,
/// `--x=v` or `--x v`; booleans only take `=v`; parsing stops at the first non-flag
/// argument or after `--`.
pub fn scan(args: &[String]) -> Result<Scan, ConfigError> {
    let mut settings = Settings::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        if arg == "--" {
            i += 1;
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::BadFlagSyntax { arg: arg.clone() });
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(idx) = index_of(name) else {
            if name == "help" || name == "h" {
                return Ok(Scan::Help);
            }
            return Err(ConfigError::UnknownFlag { name: name.into() });
        };
        let spec = &FLAGS[idx];
        i += 1;
        let value = match (inline, spec.kind.is_boolean()) {
            (Some(v), _) => v.to_string(),
            (None, true) => "true".to_string(),
            (None, false) => match args.get(i) {
                Some(next) => {
                    i += 1;
                    next.clone()
                }
                None => return Err(ConfigError::MissingValue { name: name.into() }),
            },
        };
        check_cli_value(spec, &value)?;
        settings.explicit[idx] = Some(Setting {
            value,
            origin: Origin::CommandLine,
        });
    }
    Ok(Scan::Flags {
        settings,
        rest: args[i..].to_vec(),
    })
}

fn check_cli_value(spec: &FlagSpec, value: &str) -> Result<(), ConfigError> {
    spec.kind.check(value).map_err(|reason| {
        if spec.kind == Kind::Bool {
            ConfigError::InvalidBool {
                name: spec.name.into(),
                value: value.into(),
            }
        } else {
            ConfigError::InvalidValue {
                name: spec.name.into(),
                value: value.into(),
                reason,
            }
        }
    })
}

/// Fills flags not given on the command line from `ETCD_*` variables (non-empty values
/// only), then applies etcd's checks: a variable for a flag that was given on the command
/// line is fatal; any other unused `ETCD_*` variable is a warning.
pub fn merge_env(
    settings: &mut Settings,
    env: &[(String, String)],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut used: Vec<String> = Vec::new();
    let mut shadowed: Vec<String> = Vec::new();
    let mut first_error: Option<ConfigError> = None;
    if let Some(v) = lookup("ETCD_VERSION").filter(|v| !v.is_empty()) {
        warnings.push(ConfigWarning::SpecialEnv {
            key: "ETCD_VERSION".into(),
            value: v.into(),
        });
        used.push("ETCD_VERSION".into());
    }
    for (idx, spec) in FLAGS.iter().enumerate() {
        let key = env_key(spec.name);
        if settings.explicit[idx].is_some() {
            shadowed.push(key);
            continue;
        }
        if spec.name == "version" {
            continue;
        }
        let Some(value) = lookup(&key).filter(|v| !v.is_empty()) else {
            continue;
        };
        if let Err(reason) = spec.kind.check(value) {
            first_error.get_or_insert(ConfigError::InvalidEnvValue {
                key: key.clone(),
                value: value.into(),
                reason,
            });
        }
        settings.explicit[idx] = Some(Setting {
            value: value.into(),
            origin: Origin::Env(key.clone()),
        });
        used.push(key);
    }
    for (key, value) in env {
        if used.contains(key) {
            continue;
        }
        if shadowed.contains(key) {
            return Err(ConfigError::EnvConflict { key: key.clone() });
        }
        if key.starts_with("ETCD_") {
            warnings.push(ConfigWarning::UnrecognizedEnv {
                entry: format!("{key}={value}"),
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// First explicitly set flag from `UNSUPPORTED_FLAGS` whose value differs from etcd's
/// default (a default value changes nothing, so it is accepted).
pub fn first_unsupported(settings: &Settings) -> Option<ConfigError> {
    for name in UNSUPPORTED_FLAGS {
        let Some(setting) = settings.explicit(name) else {
            continue;
        };
        let spec = spec(name);
        if !is_default(spec, &setting.value) {
            return Some(ConfigError::Unsupported {
                flag: (*name).into(),
                why: unsupported_reason(name),
            });
        }
    }
    None
}

/// Whether `value` means the same as etcd's default of `spec` (an empty URL list or CORS
/// list keeps the default, as in etcd).
fn is_default(spec: &FlagSpec, value: &str) -> bool {
    match spec.kind {
        Kind::Ignored => false,
        Kind::Bool => parse_bool(value) == parse_bool(spec.default),
        Kind::Urls | Kind::Cors if value.is_empty() => true,
        _ => value == spec.default,
    }
}

/// One warning for each explicitly set flag of `NO_EFFECT_FLAGS`.
pub fn no_effect_warnings(settings: &Settings) -> Vec<ConfigWarning> {
    NO_EFFECT_FLAGS
        .iter()
        .filter_map(|(name, why)| {
            settings.explicit(name).map(|s| ConfigWarning::NoEffect {
                flag: name,
                value: s.value.clone(),
                why,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn scanned(list: &[&str]) -> (Settings, Vec<String>) {
        match scan(&args(list)).unwrap() {
            Scan::Flags { settings, rest } => (settings, rest),
            Scan::Help => panic!("unexpected help"),
        }
    }

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table_is_consistent() {
        for (i, spec) in FLAGS.iter().enumerate() {
            assert_eq!(index_of(spec.name), Some(i), "duplicate {}", spec.name);
            if spec.kind != Kind::Ignored {
                assert_eq!(spec.kind.check(spec.default), Ok(()), "{}", spec.name);
            }
        }
        for name in UNSUPPORTED_FLAGS {
            assert!(index_of(name).is_some(), "{name} is not a flag");
            assert_ne!(
                unsupported_reason(name),
                "not implemented",
                "{name} has no reason"
            );
        }
        for (name, _) in NO_EFFECT_FLAGS {
            assert!(index_of(name).is_some(), "{name} is not a flag");
            assert!(
                !UNSUPPORTED_FLAGS.contains(name),
                "{name} is refused and warned"
            );
        }
    }

    #[test]
    fn go_flag_syntaxes() {
        let (s, rest) = scanned(&[
            "--name=a",
            "-data-dir",
            "/x",
            "--snapshot-count",
            "7",
            "-enable-v2",
            "--strict-reconfig-check=false",
        ]);
        assert!(rest.is_empty());
        assert_eq!(s.raw("name"), "a");
        assert_eq!(s.raw("data-dir"), "/x");
        assert_eq!(s.raw("snapshot-count"), "7");
        assert_eq!(s.raw("enable-v2"), "true");
        assert_eq!(s.raw("strict-reconfig-check"), "false");
        assert_eq!(s.explicit("name").unwrap().origin, Origin::CommandLine);
        assert_eq!(s.raw("max-wals"), "5");
        assert!(!s.is_set("max-wals"));
    }

    #[test]
    fn empty_value_with_equals_is_checked() {
        let e = scan(&args(&["--heartbeat-interval="])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid value "" for flag -heartbeat-interval: parse error"#
        );
    }

    #[test]
    fn value_flag_takes_next_arg_even_if_dashed() {
        let (s, _) = scanned(&["--name", "--data-dir"]);
        assert_eq!(s.raw("name"), "--data-dir");
    }

    #[test]
    fn bool_flag_does_not_take_next_arg() {
        let (s, rest) = scanned(&["--enable-v2", "false"]);
        assert_eq!(s.raw("enable-v2"), "true");
        assert_eq!(rest, args(&["false"]));
    }

    #[test]
    fn scanning_stops_at_first_positional_and_after_double_dash() {
        let (_, rest) = scanned(&["--name", "a", "extra", "--name", "b"]);
        assert_eq!(rest, args(&["extra", "--name", "b"]));
        let (s, rest) = scanned(&["--", "--name", "x"]);
        assert_eq!(rest, args(&["--name", "x"]));
        assert!(!s.is_set("name"));
        let (_, rest) = scanned(&["-"]);
        assert_eq!(rest, args(&["-"]));
    }

    #[test]
    fn last_value_wins() {
        let (s, _) = scanned(&["--name", "a", "--name=b"]);
        assert_eq!(s.raw("name"), "b");
    }

    #[test]
    fn help_spellings() {
        for h in ["-h", "--h", "-help", "--help", "--help=1"] {
            assert!(matches!(scan(&args(&[h])).unwrap(), Scan::Help), "{h}");
        }
    }

    #[test]
    fn go_flag_error_texts() {
        let text = |list: &[&str]| scan(&args(list)).unwrap_err().to_string();
        assert_eq!(text(&["--bogus"]), "flag provided but not defined: -bogus");
        assert_eq!(text(&["-x=1"]), "flag provided but not defined: -x");
        assert_eq!(text(&["---name", "x"]), "bad flag syntax: ---name");
        assert_eq!(text(&["-=x"]), "bad flag syntax: -=x");
        assert_eq!(text(&["--name"]), "flag needs an argument: -name");
        assert_eq!(
            text(&["--heartbeat-interval", "abc"]),
            r#"invalid value "abc" for flag -heartbeat-interval: parse error"#
        );
        assert_eq!(
            text(&["--snapshot-count=99999999999999999999"]),
            r#"invalid value "99999999999999999999" for flag -snapshot-count: value out of range"#
        );
        assert_eq!(
            text(&["--client-cert-auth=maybe"]),
            r#"invalid boolean value "maybe" for -client-cert-auth: parse error"#
        );
        assert_eq!(
            text(&["--initial-cluster-state", "bogus"]),
            r#"invalid value "bogus" for flag -initial-cluster-state: invalid value"#
        );
        assert_eq!(
            text(&["--listen-client-urls", "http://127.0.0.1:2379/foo"]),
            r#"invalid value "http://127.0.0.1:2379/foo" for flag -listen-client-urls: URL must not contain a path: http://127.0.0.1:2379/foo"#
        );
        assert_eq!(
            text(&["--cors", "http://example.com"]),
            r#"invalid value "http://example.com" for flag -cors: URL address does not have the form "host:port": http://example.com"#
        );
    }

    #[test]
    fn env_fills_unset_flags_only() {
        let (mut s, _) = scanned(&["--name", "a"]);
        let mut warnings = Vec::new();
        let e = env(&[("ETCD_SNAPSHOT_COUNT", "9"), ("ETCD_ENABLE_V2", "")]);
        merge_env(&mut s, &e, &mut warnings).unwrap();
        assert_eq!(s.raw("snapshot-count"), "9");
        assert_eq!(
            s.explicit("snapshot-count").unwrap().origin,
            Origin::Env("ETCD_SNAPSHOT_COUNT".into())
        );
        // Empty values are not used, and then count as unrecognized (etcd does the same).
        assert!(!s.is_set("enable-v2"));
        assert_eq!(
            warnings,
            vec![ConfigWarning::UnrecognizedEnv {
                entry: "ETCD_ENABLE_V2=".into()
            }]
        );
    }

    #[test]
    fn env_conflict_even_when_empty() {
        for value in ["foo", ""] {
            let (mut s, _) = scanned(&["--name", "a"]);
            let e = env(&[("ETCD_NAME", value)]);
            let err = merge_env(&mut s, &e, &mut Vec::new()).unwrap_err();
            assert_eq!(
                err,
                ConfigError::EnvConflict {
                    key: "ETCD_NAME".into()
                }
            );
        }
    }

    #[test]
    fn env_conflict_wins_over_bad_env_value() {
        let (mut s, _) = scanned(&["--name", "a"]);
        let e = env(&[("ETCD_SNAPSHOT_COUNT", "abc"), ("ETCD_NAME", "b")]);
        let err = merge_env(&mut s, &e, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigError::EnvConflict { .. }));
    }

    #[test]
    fn bad_env_value_text() {
        let (mut s, _) = scanned(&[]);
        let e = env(&[("ETCD_SNAPSHOT_COUNT", "abc")]);
        let err = merge_env(&mut s, &e, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error"#
        );
    }

    #[test]
    fn unknown_and_special_env() {
        let (mut s, _) = scanned(&[]);
        let mut warnings = Vec::new();
        let e = env(&[
            ("ETCD_FOOBAR", "1"),
            ("ETCDCTL_API", "3"),
            ("HOME", "/root"),
            ("ETCD_VERSION", "3.5"),
        ]);
        merge_env(&mut s, &e, &mut warnings).unwrap();
        assert_eq!(
            warnings,
            vec![
                ConfigWarning::SpecialEnv {
                    key: "ETCD_VERSION".into(),
                    value: "3.5".into()
                },
                ConfigWarning::UnrecognizedEnv {
                    entry: "ETCD_FOOBAR=1".into()
                },
            ]
        );
        assert!(!s.is_set("version"));
    }

    #[test]
    fn unsupported_flags_are_reported_unless_default() {
        let check = |list: &[&str]| {
            let (s, _) = scanned(list);
            first_unsupported(&s)
        };
        assert_eq!(check(&["--wal-dir", "/w"]), None);
        assert_eq!(check(&["--cert-file", "/c.pem"]), None);
        assert_eq!(check(&["--client-crl-file", "/crl.pem"]), None);
        assert_eq!(
            check(&["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]),
            None
        );
        assert_eq!(
            check(&["--experimental-peer-skip-client-san-verification"]),
            Some(ConfigError::Unsupported {
                flag: "experimental-peer-skip-client-san-verification".into(),
                why: "peer client certificates are never checked against the peer's address, \
                      so there is nothing to skip",
            })
        );
        assert!(check(&["--pre-vote=false"]).is_some());
        assert_eq!(check(&["--pre-vote=True"]), None);
        assert_eq!(check(&["--client-cert-auth=false"]), None);
        assert!(check(&["--v"]).is_some());
        assert_eq!(
            ConfigError::Unsupported {
                flag: "discovery".into(),
                why: "discovery bootstrap is not implemented; use --initial-cluster",
            }
            .to_string(),
            "oxetcd: flag --discovery is not supported yet (discovery bootstrap is not \
             implemented; use --initial-cluster)"
        );
    }
}
