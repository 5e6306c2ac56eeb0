//! `--log-outputs` with files and `--enable-log-rotation`, on real processes.
//!
//! - Several outputs at once (stdout, a file, stderr): oxetcd and etcd 3.5 both write the
//!   same milestone lines to each; every line of the file is one JSON object.
//! - Rotation with `{"maxsize": 1, "maxbackups": 2}` at debug level: past 1 MiB the file is
//!   rotated to `<stem>-<timestamp>.log` beside it, at most two backups stay, no file grows
//!   past the limit by more than a line, and no line is cut in two.
//! - Misconfigured outputs fail on oxetcd with etcd 3.5's error text and exit status.
//!
//! Invariant: servers are owned by `Server` (killed on drop); waits poll with a deadline.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};

const DEADLINE: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

fn ctl(server: &Server, args: &[&str]) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let out = etcdctl(CtlVersion::V35, &server.endpoint, &args, b"");
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr_text());
}

/// Every line is one JSON object with etcd's leading keys; returns the `msg` values.
fn json_messages(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(v["level"].is_string() && v["ts"].is_string(), "{line}");
            v["msg"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn count(messages: &[String], msg: &str) -> usize {
    messages.iter().filter(|m| m.as_str() == msg).count()
}

const READY: &str = "ready to serve client requests";

/// What one server writes with three outputs: (ready lines in the file, ready lines on
/// stdout+stderr together).
fn three_outputs(kind: ServerKind) -> (usize, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("member.log");
    let outputs = format!("stdout,{},stderr", file.display());
    let server =
        Server::start_with(kind, "outputs", &["--log-outputs", &outputs]).unwrap_or_else(|e| {
            panic!("{e}");
        });
    ctl(&server, &["put", "k", "v"]);
    let started = Instant::now();
    loop {
        let in_file = std::fs::read_to_string(&file).unwrap_or_default();
        let file_msgs = json_messages(&in_file);
        let console = server.log_tail(usize::MAX);
        let console_ready = console.matches(READY).count();
        if count(&file_msgs, READY) >= 1 && console_ready >= 2 {
            // The console lines are the file's lines, twice.
            let console_msgs = json_messages(&console);
            for msg in &file_msgs {
                assert!(console_msgs.contains(msg), "{msg} not on the console");
            }
            return (count(&file_msgs, READY), console_ready);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{}: no ready line in every output:\nfile:\n{in_file}\nconsole:\n{console}",
            kind.label()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn several_outputs_receive_every_line_like_etcd() {
    if require_etcd_tools("several_outputs_receive_every_line_like_etcd").is_none() {
        return;
    }
    let ours = three_outputs(ServerKind::Oxetcd);
    let theirs = three_outputs(ServerKind::Etcd35);
    assert_eq!(ours, theirs);
    assert_eq!(ours, (1, 2));
}

/// Rotated files of `log` in `dir`: (name, size).
fn backups(dir: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("member-") && name.ends_with(".log"))
                .then(|| (name, e.metadata().map(|m| m.len()).unwrap_or(0)))
        })
        .collect();
    found.sort();
    found
}

/// Regression guard for rotation: the file is rotated by size, old backups are removed,
/// and every line survives whole.
#[test]
fn rotation_by_size_keeps_max_backups() {
    if require_etcd_tools("rotation_by_size_keeps_max_backups").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("member.log");
    let file_arg = file.display().to_string();
    let server = Server::start_with(
        ServerKind::Oxetcd,
        "rotation",
        &[
            "--log-level",
            "debug",
            "--log-outputs",
            &file_arg,
            "--enable-log-rotation",
            "--log-rotation-config-json",
            r#"{"maxsize": 1, "maxbackups": 2}"#,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Debug logging writes tens of kilobytes per put; write until three rotations happened
    // (so one backup had to be removed), bounded by a deadline.
    let started = Instant::now();
    let mut rotations_seen = 0;
    let mut names_seen = std::collections::BTreeSet::new();
    let mut i = 0;
    while rotations_seen < 3 {
        ctl(&server, &["put", &format!("key-{i}"), &"v".repeat(1000)]);
        i += 1;
        for (name, _) in backups(dir.path()) {
            names_seen.insert(name);
        }
        rotations_seen = names_seen.len();
        assert!(
            started.elapsed() < DEADLINE,
            "only {rotations_seen} rotations after {i} puts; files: {:?}",
            backups(dir.path())
        );
    }
    let kept = backups(dir.path());
    assert_eq!(kept.len(), 2, "maxbackups 2: {kept:?}");
    for (name, size) in &kept {
        // `member-2006-01-02T15-04-05.000.log`
        let stamp = &name["member-".len()..name.len() - ".log".len()];
        assert_eq!(stamp.len(), 23, "{name}");
        assert_eq!(&stamp[10..11], "T", "{name}");
        assert!(*size <= MIB, "{name} is {size} bytes");
        assert!(*size > MIB / 2, "{name} is only {size} bytes");
        let text = std::fs::read_to_string(dir.path().join(name)).expect("read backup");
        assert!(text.ends_with('\n'), "{name} ends inside a line");
        json_messages(&text);
    }
    let current = std::fs::read_to_string(&file).expect("read log");
    json_messages(&current);
    assert!(current.len() as u64 <= MIB);
    drop(server);
}

fn etcd_binary(kind: ServerKind) -> std::path::PathBuf {
    match kind {
        ServerKind::Oxetcd => env!("CARGO_BIN_EXE_oxetcd").into(),
        _ => common::etcd_tools().expect("etcd tools").etcd35.clone(),
    }
}

/// The error field of the "failed to verify flags" line and the exit code.
fn refused(kind: ServerKind, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(etcd_binary(kind))
        .env_clear()
        .current_dir(dir.path())
        .args(args)
        .output()
        .expect("run server");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let error = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == "failed to verify flags")
        .map(|v| v["error"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| format!("(no error line: {stderr})"));
    (out.status.code(), error)
}

#[test]
fn bad_outputs_fail_like_etcd() {
    if require_etcd_tools("bad_outputs_fail_like_etcd").is_none() {
        return;
    }
    let cases: &[&[&str]] = &[
        &["--log-outputs", "/nonexistent/dir/x.log"],
        &["--enable-log-rotation"],
        &["--enable-log-rotation", "--log-outputs", "stderr"],
        &[
            "--enable-log-rotation",
            "--log-outputs",
            "/tmp/a.log,/tmp/b.log",
        ],
        &[
            "--enable-log-rotation",
            "--log-outputs",
            "/tmp/oxetcd-never-written.log",
            "--log-rotation-config-json",
            r#"{"maxsize": "x"}"#,
        ],
    ];
    for args in cases {
        let ours = refused(ServerKind::Oxetcd, args);
        let theirs = refused(ServerKind::Etcd35, args);
        assert_eq!(ours, theirs, "{args:?}");
        assert_eq!(ours.0, Some(1), "{args:?}");
    }
}
