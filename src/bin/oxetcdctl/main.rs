//! `oxetcdctl`: oxetcd's command-line tool. For now it holds the offline snapshot commands,
//! with etcdutl's flags and output:
//!
//! - `snapshot status FILE [-w table|json]`: hash, revision, total keys, total size of an
//!   etcd-format snapshot (from etcd 3.4, 3.5 or oxetcd) or a copied `member/snap/db`.
//! - `snapshot restore FILE --data-dir --name --initial-cluster --initial-advertise-peer-urls
//!   --initial-cluster-token [--skip-hash-check]`: a new oxetcd member data dir holding the
//!   snapshot's keys, history and leases, with a fresh membership from the flags.
//!
//! Modules: `args` (flag parsing), `snapshot` (the two commands).
//! Invariant: nothing here writes outside the `--data-dir` it was given, and a restore never
//! touches a data dir that already holds anything.

mod args;
mod snapshot;

use std::process::ExitCode;

const USAGE: &str = "usage:
  oxetcdctl snapshot status FILE [-w table|json]
  oxetcdctl snapshot restore FILE [--data-dir DIR] [--name NAME] [--initial-cluster CLUSTER]
      [--initial-advertise-peer-urls URLS] [--initial-cluster-token TOKEN] [--skip-hash-check]";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("snapshot") => snapshot::run(&argv[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
