//! `watch [KEY [RANGE_END]] [-- COMMAND ARGS...]`: etcdctl 3.5's watch. Each event prints as
//! etcdctl prints it (its type, the previous key-value with `--prev-kv`, the key-value); with a
//! command after `--`, the command also runs once per event with etcdctl's `ETCD_WATCH_*`
//! variables (type, key and value quoted as Go's `%q` quotes them, as etcdctl sets them). The watch runs until the server cancels it (compaction, revoked permission) or
//! the process is stopped.
//!
//! Invariant: a canceled watch ends the command with an error naming the server's reason; it
//! never hangs on a stream that will carry nothing more.

use clap::Args;

use oxetcd::proto::etcdserverpb::watch_client::WatchClient;
use oxetcd::proto::etcdserverpb::watch_request::RequestUnion;
use oxetcd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use oxetcd::proto::mvccpb::event::EventType;
use oxetcd::proto::mvccpb::Event;

use super::client::{Client, Global};
use super::kv::{prefix_end, unsupported};
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Interactive mode (not supported yet)
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

pub async fn watch(g: &Global, a: WatchArgs) -> Result<(), CtlError> {
    if a.interactive {
        return Err(CtlError::bad_feature(
            "interactive watch is not supported by oxetcdctl yet",
        ));
    }
    let command = a.command.clone();
    let (key, range_end) = match a.args.as_slice() {
        [] => return Err(CtlError::bad_args("bad number of arguments")),
        [key] if a.prefix => (key.clone(), prefix_or_all(key)),
        [key] => (key.clone(), Vec::new()),
        [_, _] if a.prefix => {
            return Err(CtlError::bad_args(
                "unexpected range_end with --prefix: too many arguments",
            ))
        }
        [key, end] => (key.clone(), end.as_bytes().to_vec()),
        _ => return Err(CtlError::bad_args("bad number of arguments")),
    };
    if !matches!(g.write_out, Format::Simple | Format::Json | Format::Fields) {
        return Err(unsupported(g.write_out));
    }
    let create = WatchCreateRequest {
        key: key.into_bytes(),
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
    let mut responses = tokio::time::timeout(g.command_timeout, call)
        .await
        .map_err(|_| CtlError::general("context deadline exceeded"))?
        .map_err(|s| CtlError::from_status(&s))?
        .into_inner();
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

/// The range end of `--prefix` (an empty key watches every key, as etcdctl's `WithPrefix`).
fn prefix_or_all(key: &str) -> Vec<u8> {
    if key.is_empty() {
        vec![0]
    } else {
        prefix_end(key.as_bytes())
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
    let progress = r.events.is_empty() && !r.created && !r.canceled;
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
            if progress {
                println!("progress notify: {}", r.header.unwrap_or_default().revision);
            }
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
        .status()
        .map_err(|err| CtlError::general(format!("running {:?}: {err}", command[0])))?;
    if !status.success() {
        eprintln!("command {:?} ended with {status}", command.join(" "));
    }
    Ok(())
}
