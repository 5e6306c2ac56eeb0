//! `--help` and `--version` texts. The flag list is generated from `flags::FLAGS`, so a
//! new flag cannot be missing from the help.
//!
//! Invariant: every visible flag (group other than `Hidden`) appears exactly once, and
//! flags from `UNSUPPORTED_FLAGS` and `NO_EFFECT_FLAGS` are marked as such.

use super::flags::{Group, Kind, FLAGS, NO_EFFECT_FLAGS, UNSUPPORTED_FLAGS};
use super::ETCD_API_VERSION;

/// Printed (to stderr) after a command-line syntax error, like etcd's short usage.
pub const USAGE_SHORT: &str = "Usage:

  oxetcd [flags]
    Start an oxetcd member (an etcd-compatible server).

  oxetcd --version
    Print the version and exit.

  oxetcd -h | --help
    Print every flag with its default and exit.
";

const SECTIONS: &[(Group, &str)] = &[
    (Group::Member, "Member"),
    (Group::Clustering, "Clustering"),
    (Group::Security, "Security"),
    (Group::Auth, "Auth"),
    (Group::Monitoring, "Profiling and Monitoring"),
    (Group::Logging, "Logging"),
    (Group::Experimental, "Experimental and proxy"),
    (Group::Unsafe, "Unsafe"),
];

/// The full `--help` text.
pub fn help_text() -> String {
    let mut out = String::from(USAGE_SHORT);
    out.push_str(
        "\nEvery flag may be written -flag or --flag, with its value after '=' or as the next\n\
         argument, and may also be set with the environment variable ETCD_<FLAG> (upper case,\n\
         dashes as underscores). A flag and its variable together are an error.\n",
    );
    for (group, title) in SECTIONS {
        out.push_str(&format!("\n{title}:\n"));
        for spec in FLAGS.iter().filter(|s| s.group == *group) {
            let default = match spec.kind {
                Kind::Bool => spec.default.to_string(),
                _ => format!("'{}'", spec.default),
            };
            out.push_str(&format!("  --{} {default}\n    {}", spec.name, spec.help));
            if UNSUPPORTED_FLAGS.contains(&spec.name) {
                out.push_str(" (not supported yet: only the default is accepted)");
            }
            if NO_EFFECT_FLAGS.iter().any(|(name, _)| *name == spec.name) {
                out.push_str(" (accepted, no effect here)");
            }
            out.push('\n');
        }
    }
    out
}

/// The `--version` text.
pub fn version_text() -> String {
    format!(
        "oxetcd Version: {}\netcd API Version: {ETCD_API_VERSION}\nOS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_visible_flag_once() {
        let text = help_text();
        for spec in FLAGS {
            let line = format!("\n  --{} ", spec.name);
            let count = text.matches(&line).count();
            let expected = usize::from(spec.group != Group::Hidden);
            assert_eq!(count, expected, "{}", spec.name);
        }
        assert!(text.contains("  --discovery ''\n    Discovery service URL. (not supported yet"));
        assert!(text.contains("  --enable-v2 false\n"));
        assert!(text.contains("  --snapshot-count '100000'\n"));
    }

    #[test]
    fn version_names_the_api_line() {
        let v = version_text();
        assert!(v.starts_with("oxetcd Version: "));
        assert!(v.contains("etcd API Version: 3.5\n"));
    }
}
