//! The step etcdctl 3.5 takes once, when a command first builds its client configuration
//! (after the command's own argument checks, before any connection): a global flag given on the
//! command line while its `ETCDCTL_*` variable is also set is a fatal error, and with `--debug`
//! (`ETCDCTL_DEBUG`) every global flag is printed on stderr as `ETCDCTL_<NAME>=<value>`.
//!
//! Offline commands (`version`, `snapshot status`, `snapshot restore`, `inspect`,
//! `completion`) never take this step, as in etcdctl: neither check applies to them.
//!
//! Invariant: the step runs at most once per process, however many clients a command makes
//! (`endpoint health` visits every endpoint, `make-mirror` dials two clusters).
//! Invariant: a shadowed variable ends the process before anything is sent to a server.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;

use super::client::Global;
use super::print::{self, Obj};

/// The environment variable of a global flag: `ETCDCTL_` and the flag's name in capitals with
/// `_` for `-` (pflag's `FlagToEnv`).
pub fn variable_of(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// The variables of the global flags that `matches` took from the command line (not from
/// their variable or their default), read off the clap definition so that every global flag
/// with a variable is covered.
pub fn variables_given_as_flags(
    command: &clap::Command,
    matches: &clap::ArgMatches,
) -> Vec<OsString> {
    command
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|arg| arg.get_env().map(OsString::from))
        .collect()
}

/// `command` with the variables that are set but empty left out: etcdctl takes a variable
/// only when it holds something (an empty one still shadows its flag, see [`settle`]), where
/// clap would parse the empty value.
pub fn without_empty_variables(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| {
        let empty = arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|value| value.is_empty());
        if empty {
            arg.env(None::<&'static str>)
        } else {
            arg
        }
    })
}

/// The client-configuration step (see the module header). `watch` adds etcdctl's two watch
/// variables to the `--debug` listing, as etcdctl registers them for its watch command.
pub fn settle(global: &Global, watch: bool) {
    static SETTLED: Once = Once::new();
    SETTLED.call_once(|| {
        if let Some(name) = shadowed_variable(global) {
            fatal_shadowed(&name.to_string_lossy());
        }
        if global.debug {
            eprint!("{}", debug_listing(global, watch));
        }
    });
}

/// The first variable of the environment (in its own order, as etcdctl walks it) whose flag
/// was also given on the command line. Set counts, even set to nothing.
fn shadowed_variable(global: &Global) -> Option<OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .find(|name| global.flags_given.contains(name))
}

/// etcdctl's fatal log line for a shadowed variable (zap's JSON, without the Go caller and
/// stack trace), then exit 1, as its `log.Fatal` does.
fn fatal_shadowed(name: &str) -> ! {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let line = Obj::new()
        .str("level", "fatal")
        .raw("ts", &ts.to_string())
        .str(
            "msg",
            "conflicting environment variable is shadowed by corresponding command-line flag \
             (either unset environment variable or disable flag))",
        )
        .str("environment-variable", name)
        .finish();
    let _ = std::io::stdout().flush();
    eprintln!("{line}");
    std::process::exit(i32::from(super::exit::ERROR))
}

/// `--debug`'s listing: one `ETCDCTL_<NAME>=<value>` line per global flag, sorted by flag name
/// (pflag's `VisitAll`), each value as pflag's `Value.String()` writes it.
pub fn debug_listing(global: &Global, watch: bool) -> String {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let mut flags: Vec<(&str, String)> = vec![
        ("cacert", path(&global.cacert)),
        ("cert", path(&global.cert)),
        (
            "command-timeout",
            print::go_duration(global.command_timeout),
        ),
        ("debug", global.debug.to_string()),
        ("dial-timeout", print::go_duration(global.dial_timeout)),
        // oxetcdctl has no DNS discovery: these print the defaults it works with.
        ("discovery-srv", String::new()),
        ("discovery-srv-name", String::new()),
        ("endpoints", string_slice(&global.endpoints)),
        ("hex", global.hex.to_string()),
        ("insecure-discovery", "true".to_string()),
        (
            "insecure-skip-tls-verify",
            global.insecure_skip_tls_verify.to_string(),
        ),
        ("insecure-transport", global.insecure_transport.to_string()),
        ("keepalive-time", print::go_duration(global.keepalive_time)),
        (
            "keepalive-timeout",
            print::go_duration(global.keepalive_timeout),
        ),
        ("key", path(&global.key)),
        ("password", global.password.clone().unwrap_or_default()),
        ("user", global.user.clone().unwrap_or_default()),
        ("write-out", global.write_out.name().to_string()),
    ];
    if watch {
        // etcdctl registers them only to accept the variables; they print empty whatever the
        // variables hold.
        flags.push(("watch-key", String::new()));
        flags.push(("watch-range-end", String::new()));
    }
    flags.sort_by(|a, b| a.0.cmp(b.0));
    flags
        .iter()
        .map(|(name, value)| format!("{}={value}\n", variable_of(name)))
        .collect()
}

/// pflag's `StringSlice.String()`: the items as one CSV record (Go's `encoding/csv`) in
/// brackets.
fn string_slice(items: &[String]) -> String {
    let fields: Vec<String> = items
        .iter()
        .map(|item| {
            let quoted = item.contains([',', '"', '\r', '\n'])
                || item.starts_with(|c: char| c.is_whitespace());
            if quoted {
                format!("\"{}\"", item.replace('"', "\"\""))
            } else {
                item.clone()
            }
        })
        .collect();
    format!("[{}]", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_named_as_pflag_names_them() {
        assert_eq!(variable_of("endpoints"), "ETCDCTL_ENDPOINTS");
        assert_eq!(
            variable_of("insecure-skip-tls-verify"),
            "ETCDCTL_INSECURE_SKIP_TLS_VERIFY"
        );
    }

    #[test]
    fn string_slices_print_as_one_csv_record() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            string_slice(&items(&["127.0.0.1:2379"])),
            "[127.0.0.1:2379]"
        );
        assert_eq!(string_slice(&items(&["a:1", "b:2"])), "[a:1,b:2]");
        assert_eq!(string_slice(&items(&["a\"b", " c"])), "[\"a\"\"b\",\" c\"]");
        assert_eq!(string_slice(&[]), "[]");
    }
}
