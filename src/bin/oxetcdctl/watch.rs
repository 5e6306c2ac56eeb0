//! `watch [KEY [RANGE_END]] [-- COMMAND ARGS...]`: etcdctl 3.5's watch. Each event prints as
//! etcdctl prints it (its type, the previous key-value with `--prev-kv`, the key-value); with a
//! command after `--`, the command also runs once per event with etcdctl's `ETCD_WATCH_*`
//! variables (type, key and value quoted as Go's `%q` quotes them, as etcdctl sets them). The
//! watch runs until the server cancels it (compaction, revoked permission) or the process is
//! stopped. A command that fails ends oxetcdctl with etcdctl's `command [...] error (...)` line.
//!
//! `watch -i` reads requests from standard input, one per line, as etcdctl 3.5 does: `watch
//! [flags] KEY [RANGE_END] [-- COMMAND...]` opens one more watch on the same stream (the line's
//! own flags only), `progress` asks the server for a progress notification (printed once per
//! open watch, as the Go client hands it to each); a line it cannot use is reported on stderr
//! and skipped, a flag it cannot parse ends the command (exit 128), and the end of the input
//! ends it with etcdctl's "error reading watch request line: EOF" (exit 3).
//!
//! `ETCDCTL_WATCH_KEY` (and `ETCDCTL_WATCH_RANGE_END`) name the key (and range end) in place
//! of the command line, in both forms: a key given as well is etcdctl's "bad number of
//! arguments (found conflicting environment key)" (exit 128; on a `watch -i` line only when
//! the line has no command, since etcdctl then appends the line's words after the variable's),
//! a range end without a key is refused before anything else (exit 128). As in etcdctl, a
//! watch takes a range end only from exactly two words; from three or more, the first key alone.
//!
//! Invariant: a canceled watch ends the (non-interactive) command with an error naming the
//! server's reason; it never hangs on a stream that will carry nothing more.
//! Invariant: `watch -i` holds one stdin line at a time in flight (a bounded channel), and one
//! exec command per watch it opened.

use clap::Args;

use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use oxetcd::proto::mvccpb::event::EventType;
use oxetcd::proto::mvccpb::Event;

use super::client::{Client, Global};
use super::environment;
use super::kv::{prefix_end, unsupported};
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv")]
    prev_kv: bool,
    /// get periodic watch progress notification from server
    #[arg(long = "progress-notify")]
    progress_notify: bool,
    /// the key or prefix, and an optional range end
    #[arg(value_name = "KEY [RANGE_END]")]
    args: Vec<String>,
    /// a command to run for every event, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `ETCDCTL_WATCH_KEY` and `ETCDCTL_WATCH_RANGE_END`, as etcdctl 3.5 reads them for `watch`
/// and for every line of `watch -i`: the key (and range end) stand before the command line's
/// own words, which then must not name a key (see the module header). An empty variable counts
/// as unset, as Go's `os.Getenv` has it.
#[derive(Debug, Default)]
struct EnvTarget {
    /// Nothing, the key, or the key and the range end.
    words: Vec<Vec<u8>>,
}

const WATCH_KEY: &str = "ETCDCTL_WATCH_KEY";
const WATCH_RANGE_END: &str = "ETCDCTL_WATCH_RANGE_END";

impl EnvTarget {
    /// The two variables; a range end without a key is etcdctl's bad-arguments error.
    fn read() -> Result<EnvTarget, CtlError> {
        use std::os::unix::ffi::OsStringExt;
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(OsStringExt::into_vec)
        };
        match (var(WATCH_KEY), var(WATCH_RANGE_END)) {
            (None, None) => Ok(EnvTarget::default()),
            (None, Some(end)) => Err(CtlError::bad_args(format!(
                "{WATCH_KEY} is empty but got {WATCH_RANGE_END}={}",
                print::go_quote(&String::from_utf8_lossy(&end))
            ))),
            (Some(key), end) => Ok(EnvTarget {
                words: std::iter::once(key).chain(end).collect(),
            }),
        }
    }

    fn is_set(&self) -> bool {
        !self.words.is_empty()
    }

    /// The variables' words, then the command line's.
    fn words_with(&self, args: &[String]) -> Vec<Vec<u8>> {
        let args = args.iter().map(|a| a.as_bytes().to_vec());
        self.words.iter().cloned().chain(args).collect()
    }
}

fn conflicting_env_key() -> CtlError {
    CtlError::bad_args("bad number of arguments (found conflicting environment key)")
}

/// The process's arguments after the first `watch` (etcdctl checks these, flags included,
/// before it builds a client).
fn words_after_watch() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .skip(1)
        .skip_while(|w| w != "watch")
        .skip(1)
        .collect()
}

/// The key and range end a watch asks for, from its words as etcdctl's `getWatchChan` reads
/// them: a range end only when there are exactly two words (a third and later are ignored).
fn target(words: &[Vec<u8>], prefix: bool) -> Result<(Vec<u8>, Vec<u8>), String> {
    match words {
        [] => Err("bad number of arguments".to_string()),
        [_, _] if prefix => Err("`range_end` and `--prefix` are mutually exclusive".to_string()),
        [key, end] => Ok((key.clone(), end.clone())),
        [key, ..] if prefix => Ok((key.clone(), prefix_or_all(key))),
        [key, ..] => Ok((key.clone(), Vec::new())),
    }
}

pub async fn watch(g: &Global, a: WatchArgs) -> Result<(), CtlError> {
    let env = EnvTarget::read()?;
    if a.interactive {
        return interactive(g, &env).await;
    }
    // etcdctl's checks before it builds a client, on the words after `watch`.
    let raw = words_after_watch();
    if raw.last().is_some_and(|w| w == "--") {
        return Err(CtlError::bad_args(
            "bad number of arguments (found separator --, but no commands)",
        ));
    }
    if raw.is_empty() && !env.is_set() {
        return Err(CtlError::bad_args("bad number of arguments"));
    }
    if env.is_set() && !a.args.is_empty() {
        return Err(conflicting_env_key());
    }
    environment::settle(g, true);
    let command = a.command.clone();
    let words = env.words_with(&a.args);
    let (key, range_end) = target(&words, a.prefix).map_err(CtlError::bad_args)?;
    if !matches!(g.write_out, Format::Simple | Format::Json | Format::Fields) {
        return Err(unsupported(g.write_out));
    }
    let create = WatchCreateRequest {
        key,
        range_end,
        start_revision: a.rev,
        progress_notify: a.progress_notify,
        prev_kv: a.prev_kv,
        ..WatchCreateRequest::default()
    };
    let client = Client::connect(g).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| CtlError::general("the watch stream closed"))?;
    let outbound = oxetcd::grpc::stream::ChannelStream::new(rx);
    let mut watch_client = WatchClient::new(client.channel.clone());
    let call = watch_client.watch(client.request(outbound));
    let opened = tokio::time::timeout(g.command_timeout, call)
        .await
        .map_err(|_| CtlError::general("context deadline exceeded"))?;
    let mut responses = match opened {
        Ok(stream) => stream.into_inner(),
        Err(status) => return Err(client.status_error(&status).await),
    };
    loop {
        let response = responses
            .message()
            .await
            .map_err(|s| CtlError::from_status(&s))?;
        let Some(r) = response else {
            return Err(CtlError::general("watch is canceled by the server"));
        };
        if r.canceled {
            let reason = if r.compact_revision != 0 {
                "etcdserver: mvcc: required revision has been compacted".to_string()
            } else {
                r.cancel_reason.clone()
            };
            if g.write_out == Format::Json {
                show(g, &r);
            }
            eprintln!("watch was canceled ({reason})");
            return Err(CtlError::general("watch is canceled by the server"));
        }
        if r.created && r.events.is_empty() {
            continue;
        }
        show(g, &r);
        if !command.is_empty() {
            for event in &r.events {
                run_command(&command, &r, event)?;
            }
        }
    }
}

/// A `watch -i` input line, read as etcdctl 3.5 reads it.
#[derive(Debug)]
enum Line {
    Watch {
        create: WatchCreateRequest,
        exec: Vec<String>,
    },
    Progress,
    /// Reported on stderr; the next line is read.
    Invalid(String),
    /// Ends the command.
    Fatal(CtlError),
}

/// The flags a `watch` line may carry.
#[derive(Debug, clap::Parser)]
#[command(name = "watch", disable_help_flag = true)]
struct LineArgs {
    #[command(flatten)]
    watch: WatchArgs,
}

fn parse_line(line: &str, env: &EnvTarget) -> Line {
    let words = match super::txn::argify(line) {
        Ok(words) => words,
        Err(e) => return Line::Fatal(e),
    };
    match words.first().map(String::as_str) {
        None => Line::Invalid(format!(
            "Invalid command: {line} (watch and progress supported)"
        )),
        Some("progress") => Line::Progress,
        Some("watch") if words.len() < 2 && !env.is_set() => Line::Invalid(format!(
            "Invalid command {line} (command type or key is not provided)"
        )),
        Some("watch") => {
            if words.last().is_some_and(|w| w == "--") {
                return Line::Fatal(CtlError::bad_args(
                    "bad number of arguments (found separator --, but no commands)",
                ));
            }
            let a = match <LineArgs as clap::Parser>::try_parse_from(&words) {
                Ok(parsed) => parsed.watch,
                Err(e) => return Line::Fatal(CtlError::bad_args(flag_error(&e))),
            };
            if a.command.is_empty() {
                if a.args.is_empty() && !env.is_set() {
                    return Line::Fatal(CtlError::bad_args("bad number of arguments"));
                }
                if !a.args.is_empty() && env.is_set() {
                    return Line::Fatal(conflicting_env_key());
                }
            }
            // With a command, etcdctl takes the line's words after the variables' (so
            // `watch k2 -- cmd` under ETCDCTL_WATCH_KEY=k1 watches [k1, k2)).
            let (key, range_end) = match target(&env.words_with(&a.args), a.prefix) {
                Ok(target) => target,
                Err(e) => return Line::Invalid(format!("Invalid command {line} ({e})")),
            };
            Line::Watch {
                create: WatchCreateRequest {
                    key,
                    range_end,
                    start_revision: a.rev,
                    progress_notify: a.progress_notify,
                    prev_kv: a.prev_kv,
                    ..WatchCreateRequest::default()
                },
                exec: a.command,
            }
        }
        Some(_) => Line::Invalid(format!("Invalid command {line} (only support watch)")),
    }
}

/// A flag error in pflag's words ("unknown flag: --x", "invalid argument ...").
fn flag_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let flag = context(ContextKind::InvalidArg);
            format!(
                "unknown flag: {}",
                flag.split('=').next().unwrap_or_default()
            )
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    }
}

/// The next response of the stream once it is open; never, before.
async fn next_response(
    stream: &mut Option<tonic::Streaming<WatchResponse>>,
) -> Result<Option<WatchResponse>, tonic::Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// `watch -i`: see the module header.
async fn interactive(g: &Global, env: &EnvTarget) -> Result<(), CtlError> {
    environment::settle(g, true);
    if !matches!(g.write_out, Format::Simple | Format::Json | Format::Fields) {
        return Err(unsupported(g.write_out));
    }
    let client = Client::connect(g).await?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = String::new();
            let read = match std::io::BufRead::read_line(&mut stdin, &mut line) {
                Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                Ok(_) => Ok(line),
                Err(e) => Err(e),
            };
            let end = read.is_err();
            if lines_tx.blocking_send(read).is_err() || end {
                return;
            }
        }
    });
    let (requests, rx) = tokio::sync::mpsc::channel::<WatchRequest>(16);
    let mut outbound = Some(oxetcd::grpc::stream::ChannelStream::new(rx));
    let mut stream: Option<tonic::Streaming<WatchResponse>> = None;
    // Commands of the watches asked for and not created yet (the server answers in order),
    // then by watch ID.
    let mut awaiting: std::collections::VecDeque<Vec<String>> = Default::default();
    let mut commands: std::collections::HashMap<i64, Vec<String>> = Default::default();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = match line {
                    Some(Ok(line)) => line,
                    Some(Err(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                        return Err(CtlError::invalid_input(format!(
                            "error reading watch request line: {e}"
                        )))
                    }
                    _ => {
                        return Err(CtlError::invalid_input(
                            "error reading watch request line: EOF",
                        ))
                    }
                };
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let request = match parse_line(line, env) {
                    Line::Invalid(message) => {
                        eprintln!("{message}");
                        continue;
                    }
                    Line::Fatal(e) => return Err(e),
                    Line::Progress => RequestUnion::ProgressRequest(Default::default()),
                    Line::Watch { create, exec } => {
                        awaiting.push_back(exec);
                        RequestUnion::CreateRequest(create)
                    }
                };
                requests
                    .send(WatchRequest { request_union: Some(request) })
                    .await
                    .map_err(|_| CtlError::general("the watch stream closed"))?;
                // Opened with its first request already queued.
                if let Some(outbound) = outbound.take() {
                    let mut watch_client = WatchClient::new(client.channel.clone());
                    let call = watch_client.watch(client.request(outbound));
                    let opened = tokio::time::timeout(g.command_timeout, call)
                        .await
                        .map_err(|_| CtlError::general("context deadline exceeded"))?
                        .map_err(|s| CtlError::from_status(&s))?;
                    stream = Some(opened.into_inner());
                }
            }
            response = next_response(&mut stream) => {
                let Some(r) = response.map_err(|s| CtlError::from_status(&s))? else {
                    // The server ended the stream: no watch is left; input is still read.
                    stream = None;
                    commands.clear();
                    continue;
                };
                if r.created {
                    let exec = awaiting.pop_front().unwrap_or_default();
                    if !r.canceled {
                        commands.insert(r.watch_id, exec);
                    }
                    if r.events.is_empty() && !r.canceled {
                        continue;
                    }
                }
                if r.canceled {
                    commands.remove(&r.watch_id);
                    let reason = if r.compact_revision != 0 {
                        "etcdserver: mvcc: required revision has been compacted".to_string()
                    } else {
                        r.cancel_reason.clone()
                    };
                    eprintln!("watch was canceled ({reason})");
                    if g.write_out == Format::Json {
                        show(g, &r);
                    }
                    continue;
                }
                // A progress answer for the whole stream reaches every watch of it.
                let copies = if r.watch_id == -1 { commands.len() } else { 1 };
                for _ in 0..copies {
                    show(g, &r);
                }
                if let Some(exec) = commands.get(&r.watch_id).filter(|c| !c.is_empty()) {
                    for event in &r.events {
                        run_command(exec, &r, event)?;
                    }
                }
            }
        }
    }
}

/// The range end of `--prefix` (an empty key watches every key, as etcdctl's `WithPrefix`).
fn prefix_or_all(key: &[u8]) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        prefix_end(key)
    }
}

fn event_type(e: &Event) -> &'static str {
    if e.r#type == EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

fn show(g: &Global, r: &WatchResponse) {
    let progress = r.events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0;
    // etcdctl prints this line whatever the output format, before the response itself.
    if progress {
        println!("progress notify: {}", r.header.unwrap_or_default().revision);
    }
    match g.write_out {
        Format::Json => {
            let events: Vec<String> = r
                .events
                .iter()
                .map(|e| {
                    let mut obj = Obj::new().i64("type", i64::from(e.r#type));
                    if let Some(kv) = &e.kv {
                        obj = obj.raw("kv", &print::key_value(kv));
                    }
                    if let Some(kv) = &e.prev_kv {
                        obj = obj.raw("prev_kv", &print::key_value(kv));
                    }
                    obj.finish()
                })
                .collect();
            let header = r.header.unwrap_or_default();
            let header = print::header_fields(Obj::new(), &header).finish();
            let events = format!("[{}]", events.join(","));
            println!(
                "{{\"Header\":{header},\"Events\":{events},\"CompactRevision\":{},\
                 \"Canceled\":{},\"Created\":{}}}",
                r.compact_revision, r.canceled, r.created
            );
        }
        _ => {
            let mut out = String::new();
            for e in &r.events {
                out.push_str(event_type(e));
                out.push('\n');
                if let Some(kv) = &e.prev_kv {
                    out.push_str(&print::simple_kv(kv, g.hex, false));
                }
                if let Some(kv) = &e.kv {
                    out.push_str(&print::simple_kv(kv, g.hex, false));
                }
            }
            print!("{out}");
        }
    }
}

/// Runs the `--` command for one event, with etcdctl's environment variables, its output going
/// where oxetcdctl's goes.
fn run_command(command: &[String], r: &WatchResponse, e: &Event) -> Result<(), CtlError> {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let kv = e.kv.clone().unwrap_or_default();
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env(
            "ETCD_WATCH_REVISION",
            r.header.unwrap_or_default().revision.to_string(),
        )
        // etcdctl quotes these three with Go's %q.
        .env("ETCD_WATCH_EVENT_TYPE", print::go_quote(event_type(e)))
        .env(
            "ETCD_WATCH_KEY",
            print::go_quote(&String::from_utf8_lossy(&kv.key)),
        )
        .env(
            "ETCD_WATCH_VALUE",
            print::go_quote(&String::from_utf8_lossy(&kv.value)),
        )
        .status();
    let failure = match status {
        Ok(status) if status.success() => return Ok(()),
        Ok(status) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("signal: {}", signal_name(signal)),
            (None, None) => status.to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "exec: {}: executable file not found in $PATH",
            print::go_quote(&command[0])
        ),
        Err(e) => e.to_string(),
    };
    // etcdctl: `command %q error (%v)` on stderr, then exit 1 without its "Error:" line.
    let quoted: Vec<String> = command.iter().map(|c| print::go_quote(c)).collect();
    eprintln!("command [{}] error ({failure})", quoted.join(" "));
    Err(CtlError::general(""))
}

/// The name Go prints for a signal that ended a command.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "hangup".into(),
        2 => "interrupt".into(),
        6 => "aborted".into(),
        9 => "killed".into(),
        13 => "broken pipe".into(),
        15 => "terminated".into(),
        n => format!("signal {n}"),
    }
}
