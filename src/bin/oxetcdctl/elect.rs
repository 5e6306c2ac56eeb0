//! `lock NAME [COMMAND ARGS...]` and `elect NAME [PROPOSAL]` / `elect -l NAME`: etcdctl 3.5's
//! concurrency commands, on the client-side recipes of [`super::concurrency`] (the keys
//! etcdctl itself uses, so both tools queue behind each other).
//!
//! - `lock` acquires the lock, prints its key as `get` prints it, holds it until SIGINT or
//!   SIGTERM, then deletes it; with a command it runs the command with `ETCD_LOCK_KEY` and
//!   `ETCD_LOCK_REV` set instead, releases the lock and exits with the command's status.
//! - `elect NAME PROPOSAL` campaigns, prints the leader key once elected, leads until SIGINT or
//!   SIGTERM, then resigns; `elect -l NAME` prints the leader and every change of it.
//!
//! Invariant: a key this process put is deleted before it exits on a signal (the session's
//! lease would only remove it after its TTL).

use clap::Args;

use oxetcd::proto::etcdserverpb::RangeRequest;

use super::client::{Client, Global};
use super::concurrency::{self, Election, Mutex, Session};
use super::kv::show_get;
use super::print::{self, Format};
use super::CtlError;

#[derive(Debug, Args)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// the lock name, then a command to run while holding the lock
    #[arg(
        value_name = "LOCKNAME [EXEC-COMMAND ARG...]",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long)]
    listen: bool,
    /// the election name and an optional proposal
    #[arg(value_name = "ELECTION-NAME [PROPOSAL]")]
    args: Vec<String>,
}

/// The session TTL clientv3 gives a session made without one (etcdctl's `elect`).
const DEFAULT_SESSION_TTL: i64 = 60;

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() -> Result<(), CtlError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| CtlError::general(format!("watching signals: {e}")))?;
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| CtlError::general(format!("watching signals: {e}")))?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// What a canceled Go context reports.
fn canceled() -> CtlError {
    CtlError::general("context canceled")
}

fn display(g: &Global, response: &oxetcd::proto::etcdserverpb::RangeResponse) {
    use std::io::Write as _;
    if g.write_out == Format::Protobuf {
        let _ = print::write_raw(&print::protobuf(response));
        return;
    }
    match show_get(g, response, false) {
        Ok(text) => print!("{text}"),
        Err(e) => eprintln!("Error: {}", e.message),
    }
    let _ = std::io::stdout().flush();
}

async fn get_key(
    client: &Client,
    key: &str,
) -> Result<oxetcd::proto::etcdserverpb::RangeResponse, CtlError> {
    concurrency::range(
        client,
        RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        },
    )
    .await
}

pub async fn lock(g: &Global, a: LockArgs) -> Result<(), CtlError> {
    let Some((name, command)) = a.args.split_first() else {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    // `lock NAME -- COMMAND -FLAGS`: the `--` that keeps etcdctl from reading the command's
    // flags as its own is not part of the command.
    let command = match command.split_first() {
        Some((dashes, rest)) if dashes == "--" => rest,
        _ => command,
    };
    // Signals are watched from the start: one arriving while the lock is awaited cancels it.
    let stop = stop_signal();
    tokio::pin!(stop);
    let client = Client::connect(g).await?;
    let session = Session::new(&client, a.ttl).await?;
    let mut mutex = Mutex::new(&session, name);
    tokio::select! {
        locked = mutex.lock(&client, &session) => locked?,
        stopped = &mut stop => {
            stopped?;
            let _ = mutex.unlock(&client).await;
            return Err(canceled());
        }
    }
    if let Some((program, args)) = command.split_first() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let status = std::process::Command::new(program)
            .args(args)
            .env("ETCD_LOCK_KEY", &mutex.key)
            .env("ETCD_LOCK_REV", mutex.header.revision.to_string())
            .status();
        let unlocked = mutex.unlock(&client).await;
        let status = status.map_err(|e| CtlError::general(go_exec_error(program, &e)))?;
        if !status.success() {
            return Err(exit_status_error(status));
        }
        return unlocked;
    }
    let held = get_key(&client, &mutex.key).await?;
    if held.kvs.is_empty() {
        return Err(CtlError::general("lock lost on init"));
    }
    display(g, &held);
    tokio::select! {
        stopped = &mut stop => {
            stopped?;
            mutex.unlock(&client).await
        }
        () = session.lost() => Err(CtlError::general("session expired")),
    }
}

/// Go's `exec` error for a program that could not start.
fn go_exec_error(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {e}")
    }
}

/// A command that failed: etcdctl exits with its status (`exit status N`), or 255 with the
/// signal's name when it was killed.
fn exit_status_error(status: std::process::ExitStatus) -> CtlError {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => CtlError {
            code: u8::try_from(code).unwrap_or(u8::MAX),
            message: format!("exit status {code}"),
        },
        (None, Some(signal)) => CtlError {
            code: u8::MAX,
            message: format!("signal: {}", signal_name(signal)),
        },
        (None, None) => CtlError::general(format!("{status}")),
    }
}

/// Go's names of the signals a command is commonly stopped by.
fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGHUP => "hangup".to_string(),
        libc::SIGINT => "interrupt".to_string(),
        libc::SIGQUIT => "quit".to_string(),
        libc::SIGABRT => "aborted".to_string(),
        libc::SIGKILL => "killed".to_string(),
        libc::SIGSEGV => "segmentation fault".to_string(),
        libc::SIGPIPE => "broken pipe".to_string(),
        libc::SIGTERM => "terminated".to_string(),
        other => format!("signal {other}"),
    }
}

pub async fn elect(g: &Global, a: ElectArgs) -> Result<(), CtlError> {
    let (name, proposal) = match a.args.as_slice() {
        [name] => (name, None),
        [name, proposal] => (name, Some(proposal)),
        _ => {
            return Err(CtlError::bad_args(
                "elect takes one election name argument and an optional proposal argument",
            ))
        }
    };
    match (proposal, a.listen) {
        (None, false) => Err(CtlError::bad_args("no proposal argument but -l not set")),
        (Some(_), true) => Err(CtlError::bad_args("proposal given but -l is set")),
        (None, true) => observe(g, name).await,
        (Some(proposal), false) => campaign(g, name, proposal).await,
    }
}

async fn observe(g: &Global, name: &str) -> Result<(), CtlError> {
    let stop = stop_signal();
    tokio::pin!(stop);
    let client = Client::connect(g).await?;
    // etcdctl opens a session here too (unused by the observation itself).
    let _session = Session::new(&client, DEFAULT_SESSION_TTL).await?;
    let prefix = format!("{name}/");
    tokio::select! {
        stopped = &mut stop => stopped,
        // The observation only ends on an error, which etcdctl reports as a lost observer.
        _ = concurrency::observe(&client, &prefix, |r| display(g, r)) => {
            Err(CtlError::general("elect: observer lost"))
        }
    }
}

async fn campaign(g: &Global, name: &str, proposal: &str) -> Result<(), CtlError> {
    let stop = stop_signal();
    tokio::pin!(stop);
    let client = Client::connect(g).await?;
    let session = Session::new(&client, DEFAULT_SESSION_TTL).await?;
    let mut election = Election::new(&session, name);
    tokio::select! {
        elected = election.campaign(&client, proposal) => elected?,
        stopped = &mut stop => {
            stopped?;
            let _ = election.resign(&client).await;
            return Err(canceled());
        }
    }
    let leader = get_key(&client, &election.key).await?;
    display(g, &leader);
    tokio::select! {
        stopped = &mut stop => {
            stopped?;
            election.resign(&client).await
        }
        () = session.lost() => Err(CtlError::general("elect: session expired")),
    }
}
