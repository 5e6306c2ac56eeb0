//! `--config-file` (or `ETCD_CONFIG_FILE`): etcd 3.5's YAML configuration file, turned into
//! the same `Settings` the command line produces, so that every later stage (refused flags,
//! typed build, validation) treats a key exactly like the flag of the same name.
//!
//! etcd reads the file by converting YAML to JSON and decoding that into a Go struct, so the
//! rules here are Go's `encoding/json` rules over etcd's field types:
//! - keys etcd does not know are ignored silently; a `null` value keeps the default;
//! - a value of the wrong JSON type is an error naming the Go struct field and type
//!   (`json: cannot unmarshal string into Go struct field configYAML.snapshot-count of type
//!   uint64`); numbers must fit the integer type; `time.Duration` values are integers in
//!   nanoseconds; `log-outputs` and `cipher-suites` are YAML lists;
//! - URL lists are comma-separated strings; an empty string keeps the default;
//! - the TLS blocks `client-transport-security` / `peer-transport-security` map to the
//!   `--cert-file` ... / `--peer-cert-file` ... flags.
//!
//! Keys are decoded in document order, top-level fields before the proxy fields (etcd decodes
//! the file twice), and the first error wins, as in Go.
//!
//! Invariant: `settings_from_yaml` is pure (text in, settings out); every value it stores
//! passed its flag kind's syntax check.

use serde_yaml_ng::Value;

use super::error::ConfigError;
use super::flags::{self, Settings};
use super::goparse::{format_duration, GoDuration};
use super::table::Kind;

/// The Go type of a configuration field, as etcd declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    Str,
    Bool,
    Uint,
    Uint64,
    Int,
    Int64,
    Duration,
    StrList,
    V2Deprecation,
    Security,
}

impl GoType {
    fn name(self) -> &'static str {
        match self {
            GoType::Str => "string",
            GoType::Bool => "bool",
            GoType::Uint => "uint",
            GoType::Uint64 => "uint64",
            GoType::Int => "int",
            GoType::Int64 => "int64",
            GoType::Duration => "time.Duration",
            GoType::StrList => "[]string",
            GoType::V2Deprecation => "config.V2DeprecationEnum",
            GoType::Security => "embed.securityConfig",
        }
    }
}

use GoType::*;

/// Top-level keys of etcd 3.5.1's `configYAML` that oxetcd has a flag for, with their Go
/// types (checked against etcd 3.5.1's own error texts). The key is the flag's name.
const MAIN_KEYS: &[(&str, GoType)] = &[
    ("name", Str),
    ("data-dir", Str),
    ("wal-dir", Str),
    ("snapshot-count", Uint64),
    ("heartbeat-interval", Uint),
    ("election-timeout", Uint),
    ("initial-election-tick-advance", Bool),
    ("listen-peer-urls", Str),
    ("listen-client-urls", Str),
    ("max-snapshots", Uint),
    ("max-wals", Uint),
    ("quota-backend-bytes", Int64),
    ("backend-bbolt-freelist-type", Str),
    ("backend-batch-interval", Duration),
    ("backend-batch-limit", Int),
    ("max-txn-ops", Uint),
    ("max-request-bytes", Uint),
    ("grpc-keepalive-min-time", Duration),
    ("grpc-keepalive-interval", Duration),
    ("grpc-keepalive-timeout", Duration),
    ("initial-advertise-peer-urls", Str),
    ("initial-cluster", Str),
    ("initial-cluster-state", Str),
    ("initial-cluster-token", Str),
    ("advertise-client-urls", Str),
    ("discovery", Str),
    ("discovery-proxy", Str),
    ("discovery-srv", Str),
    ("discovery-srv-name", Str),
    ("strict-reconfig-check", Bool),
    ("pre-vote", Bool),
    ("auto-compaction-retention", Str),
    ("auto-compaction-mode", Str),
    ("enable-v2", Bool),
    ("v2-deprecation", V2Deprecation),
    ("self-signed-cert-validity", Uint),
    ("cipher-suites", StrList),
    ("cors", Str),
    ("host-whitelist", Str),
    ("auth-token", Str),
    ("bcrypt-cost", Uint),
    ("auth-token-ttl", Uint),
    ("enable-pprof", Bool),
    ("metrics", Str),
    ("listen-metrics-urls", Str),
    ("logger", Str),
    ("log-outputs", StrList),
    ("log-level", Str),
    ("enable-log-rotation", Bool),
    ("log-rotation-config-json", Str),
    ("experimental-enable-distributed-tracing", Bool),
    ("experimental-distributed-tracing-address", Str),
    ("experimental-distributed-tracing-service-name", Str),
    ("experimental-distributed-tracing-instance-id", Str),
    ("experimental-initial-corrupt-check", Bool),
    ("experimental-corrupt-check-time", Duration),
    ("experimental-enable-v2v3", Str),
    ("experimental-enable-lease-checkpoint", Bool),
    ("experimental-compaction-batch-limit", Int),
    ("experimental-watch-progress-notify-interval", Duration),
    ("experimental-warning-apply-duration", Duration),
    ("experimental-txn-mode-write-with-shared-buffer", Bool),
    ("experimental-bootstrap-defrag-threshold-megabytes", Uint),
    ("experimental-memory-mlock", Bool),
    ("experimental-downgrade-check-time", Duration),
    ("enable-grpc-gateway", Bool),
    ("force-new-cluster", Bool),
    ("unsafe-no-fsync", Bool),
    ("client-transport-security", Security),
    ("peer-transport-security", Security),
];

/// Keys of etcd's second decoding pass (`configProxy`).
const PROXY_KEYS: &[(&str, GoType)] = &[
    ("proxy", Str),
    ("proxy-failure-wait", Uint),
    ("proxy-refresh-interval", Uint),
    ("proxy-dial-timeout", Uint),
    ("proxy-write-timeout", Uint),
    ("proxy-read-timeout", Uint),
    ("discovery-fallback", Str),
];

/// Keys of a TLS block (`securityConfig`): key, Go type, flag name without the `peer-`
/// prefix (`None`: a client certificate for outgoing connections, which oxetcd does not
/// take apart from `cert-file`).
const SECURITY_KEYS: &[(&str, GoType, Option<&str>)] = &[
    ("cert-file", Str, Some("cert-file")),
    ("key-file", Str, Some("key-file")),
    ("client-cert-file", Str, None),
    ("client-key-file", Str, None),
    ("client-cert-auth", Bool, Some("client-cert-auth")),
    ("trusted-ca-file", Str, Some("trusted-ca-file")),
    ("auto-tls", Bool, Some("auto-tls")),
];

/// Where a decoding error points: the Go struct and the field path.
struct FieldRef<'a> {
    go_struct: &'a str,
    path: String,
}

/// Parses the YAML text of a configuration file into explicit settings.
pub fn settings_from_yaml(text: &str) -> Result<Settings, ConfigError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::ConfigFile {
        reason: format!("error converting YAML to JSON: yaml: {e}"),
    })?;
    let mut settings = Settings::from_config_file();
    let map = match doc {
        Value::Null => return Ok(settings),
        Value::Mapping(map) => map,
        other => {
            return Err(decode_error(format!(
                "json: cannot unmarshal {} into Go value of type embed.configYAML",
                json_kind(&other)
            )))
        }
    };
    for (go_struct, table) in [("configYAML", MAIN_KEYS), ("configProxy", PROXY_KEYS)] {
        for (key, value) in &map {
            let Some(key) = key.as_str() else { continue };
            let Some((_, ty)) = table.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            let at = FieldRef {
                go_struct,
                path: key.to_string(),
            };
            if *ty == Security {
                read_security(&mut settings, key, value, &at)?;
            } else if let Some(text) = scalar_text(value, *ty, &at)? {
                store(&mut settings, key, key, text)?;
            }
        }
    }
    Ok(settings)
}

/// One TLS block: `client-transport-security` or `peer-transport-security`.
fn read_security(
    settings: &mut Settings,
    block: &str,
    value: &Value,
    at: &FieldRef<'_>,
) -> Result<(), ConfigError> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Mapping(map) => map,
        other => return Err(type_error(other, Security, at, false)),
    };
    let prefix = if block == "peer-transport-security" {
        "peer-"
    } else {
        ""
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else { continue };
        let Some((_, ty, flag)) = SECURITY_KEYS.iter().find(|(k, _, _)| *k == key) else {
            continue;
        };
        let inner = FieldRef {
            go_struct: "securityConfig",
            path: format!("{block}.{key}"),
        };
        let Some(text) = scalar_text(value, *ty, &inner)? else {
            continue;
        };
        match flag {
            Some(flag) => store(settings, &format!("{prefix}{flag}"), &inner.path, text)?,
            None if text.is_empty() => {}
            None => {
                return Err(ConfigError::UnsupportedValue {
                    flag: inner.path,
                    value: text,
                    why: "a separate client certificate for outgoing connections is not \
                          implemented; cert-file is used for both directions",
                })
            }
        }
    }
    Ok(())
}

/// Stores `text` as the explicit value of flag `name` after its kind's syntax check, with
/// etcd's texts for the file's errors. An empty URL list or cluster state keeps the default,
/// as etcd does.
fn store(settings: &mut Settings, name: &str, key: &str, text: String) -> Result<(), ConfigError> {
    let spec = flags::spec(name);
    match spec.kind {
        Kind::Urls if text.is_empty() => return Ok(()),
        Kind::Urls => {
            if let Err(reason) = spec.kind.check(&text) {
                return Err(ConfigError::ConfigFileUrl {
                    key: key.to_string(),
                    reason,
                });
            }
        }
        Kind::Choice(_) if name == "initial-cluster-state" && text.is_empty() => return Ok(()),
        Kind::Choice(_) if name == "initial-cluster-state" && spec.kind.check(&text).is_err() => {
            return Err(ConfigError::UnexpectedClusterState { state: text });
        }
        _ => {
            if let Err(reason) = spec.kind.check(&text) {
                return Err(ConfigError::ConfigFile {
                    reason: format!("invalid value {text:?} for {key}: {reason}"),
                });
            }
        }
    }
    settings.set_from_file(name, text);
    Ok(())
}

/// The flag text of a scalar value of Go type `ty`, `None` for `null`.
fn scalar_text(
    value: &Value,
    ty: GoType,
    at: &FieldRef<'_>,
) -> Result<Option<String>, ConfigError> {
    let value = match value {
        Value::Tagged(tagged) => &tagged.value,
        v => v,
    };
    if value.is_null() {
        return Ok(None);
    }
    let text = match ty {
        Str | V2Deprecation => match value {
            Value::String(s) => s.clone(),
            other => return Err(type_error(other, ty, at, false)),
        },
        Bool => match value {
            Value::Bool(b) => b.to_string(),
            other => return Err(type_error(other, ty, at, false)),
        },
        Uint | Uint64 => match value {
            Value::Number(n) => match n.as_u64() {
                // Go's `uint` is 64 bits wide on the platforms oxetcd runs on.
                Some(v) => v.to_string(),
                _ => integral(n, 0.0, u64::MAX as f64)
                    .ok_or_else(|| type_error(value, ty, at, true))?,
            },
            other => return Err(type_error(other, ty, at, false)),
        },
        Int | Int64 | Duration => match value {
            Value::Number(n) => {
                let nanos_or_int = match n.as_i64() {
                    Some(v) => v,
                    None => integral(n, i64::MIN as f64, i64::MAX as f64)
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(|| type_error(value, ty, at, true))?,
                };
                if ty == Duration {
                    format_duration(GoDuration {
                        nanos: nanos_or_int,
                    })
                } else {
                    nanos_or_int.to_string()
                }
            }
            other => return Err(type_error(other, ty, at, false)),
        },
        StrList => match value {
            Value::Sequence(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => parts.push(s.clone()),
                        // Go names the list field with the element's type.
                        other => return Err(type_error(other, Str, at, false)),
                    }
                }
                parts.join(",")
            }
            other => return Err(type_error(other, ty, at, false)),
        },
        Security => return Err(type_error(value, ty, at, false)),
    };
    Ok(Some(text))
}

/// A float that holds a whole number in `min..=max`, as decimal text.
fn integral(n: &serde_yaml_ng::Number, min: f64, max: f64) -> Option<String> {
    let f = n.as_f64()?;
    if f.fract() != 0.0 || f < min || f > max || !f.is_finite() {
        return None;
    }
    Some(format!("{f:.0}"))
}

/// Go's `UnmarshalTypeError` text, wrapped as etcd's YAML library wraps it. Numbers that do
/// not fit an integer field carry their literal (`number -1`); other mismatches only name
/// the JSON kind.
fn type_error(value: &Value, ty: GoType, at: &FieldRef<'_>, with_literal: bool) -> ConfigError {
    let kind = match (value, with_literal) {
        (Value::Number(n), true) => format!("number {}", go_number(n)),
        (v, _) => json_kind(v).to_string(),
    };
    decode_error(format!(
        "json: cannot unmarshal {kind} into Go struct field {}.{} of type {}",
        at.go_struct,
        at.path,
        ty.name()
    ))
}

fn decode_error(inner: String) -> ConfigError {
    ConfigError::ConfigFile {
        reason: format!("error unmarshaling JSON: while decoding JSON: {inner}"),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "array",
        Value::Mapping(_) => "object",
        Value::Tagged(t) => json_kind(&t.value),
    }
}

/// A JSON number as Go prints its literal: integers as they are, floats in the shortest
/// form with Go's exponent style past 1e21 (`1e+23`).
fn go_number(n: &serde_yaml_ng::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.abs() >= 1e21 {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match settings_from_yaml(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_key_is_a_flag() {
        for (key, _) in MAIN_KEYS.iter().chain(PROXY_KEYS) {
            if !key.ends_with("-transport-security") {
                assert!(flags::index_of(key).is_some(), "{key}");
            }
        }
        for (_, _, flag) in SECURITY_KEYS {
            if let Some(flag) = flag {
                assert!(flags::index_of(flag).is_some(), "{flag}");
                assert!(flags::index_of(&format!("peer-{flag}")).is_some(), "{flag}");
            }
        }
    }

    #[test]
    fn values_become_flag_texts() {
        let s = settings_from_yaml(
            "name: m1\nsnapshot-count: 5000\nheartbeat-interval: 1e2\nenable-v2: false\n\
             grpc-keepalive-min-time: 5000000000\nlog-outputs: [stderr, /tmp/x.log]\n\
             listen-client-urls: http://127.0.0.1:1,http://127.0.0.1:2\nwal-dir:\n\
             initial-cluster-state: ''\nunknown-key: {a: 1}\n\
             client-transport-security:\n  cert-file: /c.pem\n  client-cert-auth: true\n\
             peer-transport-security:\n  trusted-ca-file: /ca.pem\n  auto-tls: true\n",
        )
        .unwrap();
        assert_eq!(s.raw("name"), "m1");
        assert_eq!(s.raw("snapshot-count"), "5000");
        assert_eq!(s.raw("heartbeat-interval"), "100");
        assert_eq!(s.raw("enable-v2"), "false");
        assert_eq!(s.raw("grpc-keepalive-min-time"), "5s");
        assert_eq!(s.raw("log-outputs"), "stderr,/tmp/x.log");
        assert_eq!(
            s.raw("listen-client-urls"),
            "http://127.0.0.1:1,http://127.0.0.1:2"
        );
        assert!(!s.is_set("wal-dir"));
        assert!(!s.is_set("initial-cluster-state"));
        assert_eq!(s.raw("cert-file"), "/c.pem");
        assert_eq!(s.raw("client-cert-auth"), "true");
        assert_eq!(s.raw("peer-trusted-ca-file"), "/ca.pem");
        assert_eq!(s.raw("peer-auto-tls"), "true");
        assert!(!s.is_set("peer-cert-file"));
        assert!(s.is_from_config_file());
    }

    #[test]
    fn empty_file_keeps_defaults() {
        let s = settings_from_yaml("").unwrap();
        assert!(s.explicit_names().is_empty());
        let s = settings_from_yaml("# only a comment\n").unwrap();
        assert!(s.explicit_names().is_empty());
    }

    /// Texts taken from etcd 3.5.1 given the same files.
    #[test]
    fn type_errors_match_etcd() {
        let p = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal";
        assert_eq!(
            err("snapshot-count: abc\n"),
            format!("{p} string into Go struct field configYAML.snapshot-count of type uint64")
        );
        assert_eq!(
            err("snapshot-count: -1\n"),
            format!("{p} number -1 into Go struct field configYAML.snapshot-count of type uint64")
        );
        assert_eq!(
            err("snapshot-count: 1.5\n"),
            format!("{p} number 1.5 into Go struct field configYAML.snapshot-count of type uint64")
        );
        assert_eq!(
            err("name: 123\n"),
            format!("{p} number into Go struct field configYAML.name of type string")
        );
        assert_eq!(
            err("name: [a]\n"),
            format!("{p} array into Go struct field configYAML.name of type string")
        );
        assert_eq!(
            err("enable-v2: \"true\"\n"),
            format!("{p} string into Go struct field configYAML.enable-v2 of type bool")
        );
        assert_eq!(
            err("grpc-keepalive-min-time: 5s\n"),
            format!(
                "{p} string into Go struct field configYAML.grpc-keepalive-min-time of type \
                 time.Duration"
            )
        );
        assert_eq!(
            err("log-outputs: stderr\n"),
            format!("{p} string into Go struct field configYAML.log-outputs of type []string")
        );
        assert_eq!(
            err("client-transport-security:\n  client-cert-auth: maybe\n"),
            format!(
                "{p} string into Go struct field \
                 securityConfig.client-transport-security.client-cert-auth of type bool"
            )
        );
        assert_eq!(
            err("client-transport-security: 5\n"),
            format!(
                "{p} number into Go struct field configYAML.client-transport-security of type \
                 embed.securityConfig"
            )
        );
        assert_eq!(
            err("- a\n- b\n"),
            format!("{p} array into Go value of type embed.configYAML")
        );
        assert_eq!(
            err("proxy-dial-timeout: {a: 1}\n"),
            format!("{p} object into Go struct field configProxy.proxy-dial-timeout of type uint")
        );
    }

    /// The documented difference: YAML 1.2 reads `yes` as a string, where etcd's YAML 1.1
    /// reader takes it as `true`; the file is refused rather than misread.
    #[test]
    fn yaml_1_1_booleans_are_strings() {
        assert_eq!(
            err("enable-v2: yes\n"),
            "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into \
             Go struct field configYAML.enable-v2 of type bool"
        );
    }

    #[test]
    fn proxy_fields_are_decoded_after_the_main_ones() {
        let p = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal";
        assert_eq!(
            err("proxy-dial-timeout: x\nname: 1\n"),
            format!("{p} number into Go struct field configYAML.name of type string")
        );
    }

    #[test]
    fn semantic_errors_match_etcd() {
        assert_eq!(
            err("initial-cluster-state: bogus\n"),
            r#"unexpected clusterState "bogus""#
        );
        assert_eq!(
            err("listen-client-urls: http://127.0.0.1:2379/foo\n"),
            "unexpected error setting up listen-client-urls: URL must not contain a path: \
             http://127.0.0.1:2379/foo"
        );
        assert!(err("name: [x\n").starts_with("error converting YAML to JSON: yaml: "));
    }

    #[test]
    fn outgoing_client_certificate_is_refused() {
        assert!(settings_from_yaml("peer-transport-security:\n  client-cert-file: ''\n").is_ok());
        let e = settings_from_yaml("peer-transport-security:\n  client-cert-file: /c.pem\n")
            .unwrap_err();
        assert!(matches!(e, ConfigError::UnsupportedValue { .. }), "{e}");
    }
}
