//! `oxetcdctl`: oxetcd's command line, with etcdctl 3.5's commands, flags, environment
//! variables, output formats and exit codes, plus etcdutl's offline snapshot commands.
//!
//! Modules: `client` (global flags, connecting, auth, timeouts), `diagnose` (why an endpoint
//! cannot be reached, and the fix), `environment` (the step before the first connection: flags
//! shadowing `ETCDCTL_*` variables, `--debug`), `print` (etcdctl's output formats), `kv`
//! (get/put/del/compaction), `txn`, `watch`, `lease`, `cluster` (member, endpoint, alarm,
//! defrag, move-leader), `auth` (auth, user, role), `mirror` (make-mirror), `elect` (lock and
//! elect, on the client-side recipes of `concurrency`), `examples` (the Examples block of
//! every command's `--help`), `snapshot` (save online; status and restore offline), `inspect`
//! (an offline look at a data dir's WAL and snapshot files).
//!
//! Invariant: nothing is printed on stdout but the command's result; errors go to stderr as
//! `Error: <text>` with etcdctl's exit codes ([`CtlError`]).
//! Invariant: offline commands never write outside the `--data-dir` they are given, and a
//! restore never touches a data dir that already holds anything.

#[cfg(not(madsim))]
mod auth;
#[cfg(not(madsim))]
mod check;
#[cfg(not(madsim))]
mod client;
#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod concurrency;
#[cfg(not(madsim))]
mod diagnose;
#[cfg(not(madsim))]
mod elect;
#[cfg(not(madsim))]
mod environment;
#[cfg(not(madsim))]
mod examples;
#[cfg(not(madsim))]
mod inspect;
#[cfg(not(madsim))]
mod kv;
#[cfg(not(madsim))]
mod lease;
#[cfg(not(madsim))]
mod mirror;
#[cfg(not(madsim))]
mod print;
#[cfg(not(madsim))]
mod snapshot;
#[cfg(not(madsim))]
mod txn;
#[cfg(not(madsim))]
mod v2;
#[cfg(not(madsim))]
mod watch;

use std::process::ExitCode;

/// Exit codes of etcdctl (its `ExitError`, `ExitBadConnection`, `ExitBadArgs`...).
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const BAD_CONNECTION: u8 = 2;
    pub const INVALID_INPUT: u8 = 3;
    pub const BAD_FEATURE: u8 = 4;
    pub const INTERRUPTED: u8 = 5;
    pub const IO: u8 = 6;
    pub const BAD_ARGS: u8 = 128;
}

/// A failed command: the text printed after `Error: ` and the exit code.
#[derive(Debug)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

impl CtlError {
    pub fn general(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::ERROR,
            message: message.into(),
        }
    }

    pub fn bad_args(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::BAD_ARGS,
            message: message.into(),
        }
    }

    pub fn bad_connection(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::BAD_CONNECTION,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::INVALID_INPUT,
            message: message.into(),
        }
    }

    pub fn bad_feature(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::BAD_FEATURE,
            message: message.into(),
        }
    }

    pub fn io(message: impl Into<String>) -> CtlError {
        CtlError {
            code: exit::IO,
            message: message.into(),
        }
    }

    /// A gRPC error as etcdctl reports it: etcd's own errors (`etcdserver: ...`) by their text
    /// alone, anything else as Go's gRPC prints a status.
    #[cfg(not(madsim))]
    pub fn from_status(status: &tonic::Status) -> CtlError {
        let message = match status.code() {
            tonic::Code::DeadlineExceeded => "context deadline exceeded".to_string(),
            tonic::Code::Unavailable if status.message().is_empty() => {
                "context deadline exceeded".to_string()
            }
            _ if status.message().starts_with("etcdserver: ") => status.message().to_string(),
            code => format!(
                "rpc error: code = {} desc = {}",
                go_code_name(code),
                status.message()
            ),
        };
        CtlError::general(message)
    }
}

/// The name Go's gRPC gives a status code.
#[cfg(not(madsim))]
fn go_code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(not(madsim))]
mod cli {
    use clap::{Parser, Subcommand};

    use super::{
        auth, check, client, cluster, elect, environment, examples, inspect, kv, lease, mirror,
        snapshot, txn, watch, CtlError,
    };

    const EXAMPLES: &str = "\
Examples:
  oxetcdctl put greeting hello
  oxetcdctl get greeting -w json
  oxetcdctl get /registry --prefix --keys-only
  oxetcdctl --endpoints https://10.0.0.1:2379 --cacert ca.pem member list -w table
  oxetcdctl endpoint status --cluster -w table
  oxetcdctl snapshot save backup.db
  oxetcdctl snapshot restore backup.db --data-dir /var/lib/oxetcd --name m1 \\
      --initial-cluster m1=https://10.0.0.1:2380 --initial-advertise-peer-urls https://10.0.0.1:2380";

    /// A simple command line client for etcd3 and oxetcd.
    #[derive(Debug, Parser)]
    #[command(name = "oxetcdctl", version, after_help = EXAMPLES)]
    pub struct Cli {
        #[command(flatten)]
        pub global: client::Global,
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(Debug, Subcommand)]
    pub enum Command {
        /// Gets the key or a range of keys
        Get(kv::GetArgs),
        /// Puts the given key into the store
        Put(kv::PutArgs),
        /// Removes the specified key or range of keys [key, range_end)
        Del(kv::DelArgs),
        /// Txn processes all the requests in one transaction
        Txn(txn::TxnArgs),
        /// Watches events stream on keys or prefixes
        Watch(watch::WatchArgs),
        /// Makes a mirror at the destination etcd cluster
        MakeMirror(mirror::MirrorArgs),
        /// Compacts the event history in etcd
        Compaction(kv::CompactionArgs),
        /// Acquires a named lock
        Lock(elect::LockArgs),
        /// Observes and participates in leader election
        Elect(elect::ElectArgs),
        /// commands for checking properties of the etcd cluster
        #[command(subcommand)]
        Check(check::CheckCommand),
        /// Lease related commands
        #[command(subcommand)]
        Lease(lease::LeaseCommand),
        /// Membership related commands
        #[command(subcommand)]
        Member(cluster::MemberCommand),
        /// Endpoint related commands
        #[command(subcommand)]
        Endpoint(cluster::EndpointCommand),
        /// Alarm related commands
        #[command(subcommand)]
        Alarm(cluster::AlarmCommand),
        /// Enable or disable authentication
        #[command(subcommand)]
        Auth(auth::AuthCommand),
        /// User related commands
        #[command(subcommand)]
        User(auth::UserCommand),
        /// Role related commands
        #[command(subcommand)]
        Role(auth::RoleCommand),
        /// Defragments the storage of the etcd members with given endpoints
        Defrag(cluster::DefragArgs),
        /// Transfers leadership to another etcd cluster member.
        MoveLeader(cluster::MoveLeaderArgs),
        /// Manages etcd node snapshots
        #[command(subcommand)]
        Snapshot(snapshot::SnapshotCommand),
        /// Prints the version of etcdctl
        Version,
        /// Prints an oxetcd data dir's WAL segments and snapshot files, naming any damage
        Inspect(inspect::InspectArgs),
        /// Prints a shell completion script (bash, zsh, fish, elvish, powershell)
        Completion {
            /// the shell to complete for
            shell: clap_complete::Shell,
        },
    }

    /// The command line, noting which global flags came from it (for `environment`).
    pub fn parse() -> Result<Cli, clap::Error> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let command = examples::attach(Cli::command(), examples::V3);
        let matches = environment::without_empty_variables(command.clone()).try_get_matches()?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.global.flags_given = environment::variables_given_as_flags(&command, &matches);
        Ok(cli)
    }

    pub async fn run(cli: Cli) -> Result<(), CtlError> {
        let g = &cli.global;
        g.refuse_discovery()?;
        match cli.command {
            Command::Get(args) => kv::get(g, args).await,
            Command::Put(args) => kv::put(g, args).await,
            Command::Del(args) => kv::del(g, args).await,
            Command::Txn(args) => txn::txn(g, args).await,
            Command::Watch(args) => watch::watch(g, args).await,
            Command::MakeMirror(args) => mirror::make_mirror(g, args).await,
            Command::Compaction(args) => kv::compaction(g, args).await,
            Command::Lock(args) => elect::lock(g, args).await,
            Command::Check(command) => check::run(g, command).await,
            Command::Elect(args) => elect::elect(g, args).await,
            Command::Lease(command) => lease::run(g, command).await,
            Command::Member(command) => cluster::member(g, command).await,
            Command::Endpoint(command) => cluster::endpoint(g, command).await,
            Command::Alarm(command) => cluster::alarm(g, command).await,
            Command::Auth(command) => auth::run_auth(g, command).await,
            Command::User(command) => auth::run_user(g, command).await,
            Command::Role(command) => auth::run_role(g, command).await,
            Command::Defrag(args) => cluster::defrag(g, args).await,
            Command::MoveLeader(args) => cluster::move_leader(g, args).await,
            Command::Snapshot(command) => snapshot::run(g, command).await,
            Command::Completion { shell } => {
                use clap::CommandFactory as _;
                let mut command = Cli::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "oxetcdctl", &mut script);
                super::print::write_raw(&script)
            }
            Command::Inspect(args) => inspect::inspect(&args),
            Command::Version => {
                println!(
                    "etcdctl version: {}\nAPI version: 3.5",
                    oxetcd::api::maintenance::ETCD_VERSION
                );
                Ok(())
            }
        }
    }
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    // Like any Unix filter (and etcdctl): a closed pipe on stdout ends the process quietly
    // instead of failing every later print; a socket the server closed does not (see
    // `on_sigpipe`).
    // SAFETY: installing a handler that only calls async-signal-safe functions, before any
    // thread starts.
    unsafe {
        libc::signal(
            libc::SIGPIPE,
            on_sigpipe as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    // etcdctl 3.4's v2 commands: with ETCDCTL_API=2, or after a leading `v2`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let v2_word = args.get(1).is_some_and(|a| a == "v2");
    if v2_word || std::env::var("ETCDCTL_API").is_ok_and(|v| v == "2") {
        if v2_word {
            args.remove(1);
        }
        return run_v2(args);
    }
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An empty message: the command has printed its own verdict (check's FAIL lines).
            if !e.message.is_empty() {
                eprintln!("Error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

/// SIGPIPE: when stdout is a pipe nobody reads any more, the signal's default action (the
/// process ends, as `head` expects of a filter); otherwise nothing, so a write to a socket the
/// server closed (a plaintext HTTP/2 preface sent to a TLS port) fails with EPIPE and is
/// reported like any other connection failure instead of killing the process.
#[cfg(not(madsim))]
extern "C" fn on_sigpipe(_signal: libc::c_int) {
    let mut stdout = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll, signal and raise are async-signal-safe; `stdout` outlives the call. The
    // raised signal stays pending until this handler returns, then takes its default action.
    unsafe {
        let broken = libc::poll(&mut stdout, 1, 0) == 1 && stdout.revents & libc::POLLERR != 0;
        if broken {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
}

/// Runs one v2 command (see `v2`), printing its output and etcdctl 3.4's error lines.
#[cfg(not(madsim))]
fn run_v2(args: Vec<std::ffi::OsString>) -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    use std::io::Write as _;
    let command = examples::attach(v2::V2Cli::command(), examples::V2);
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|matches| v2::V2Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(v2::run(cli)) {
        Ok(out) => {
            print!("{out}");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let _ = std::io::stdout().flush();
            eprint!("{}", failure.stderr);
            ExitCode::from(failure.code)
        }
    }
}

/// A command line clap refused, reported as etcdctl reports it: unknown commands and flags in
/// cobra's words with exit code 1, help and version on stdout with 0.
#[cfg(not(madsim))]
fn clap_failure(e: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(s)) => s.join(" "),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::UnknownArgument => {
            let flag = context(ContextKind::InvalidArg);
            let flag = flag.split('=').next().unwrap_or_default();
            eprintln!("Error: unknown flag: {flag}");
            ExitCode::from(exit::ERROR)
        }
        ErrorKind::InvalidSubcommand => {
            let command = context(ContextKind::InvalidSubcommand);
            eprintln!(
                "Error: unknown command {command:?} for \"oxetcdctl\"\n\
                 Run 'oxetcdctl --help' for usage."
            );
            ExitCode::from(exit::ERROR)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(exit::BAD_ARGS)
        }
    }
}

#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("oxetcdctl is not built for the simulator");
    ExitCode::FAILURE
}
