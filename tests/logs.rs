//! etcd's milestone log lines, checked against real etcd 3.5 on the same script.
//!
//! Operators, init scripts and test harnesses wait for etcd's lines ("ready to serve client
//! requests", raft's "elected leader ... at term ..."); oxetcd used to print openraft's
//! internals (whole `RaftState` structures) at info level instead. Each server here runs the
//! same script (start, ten puts, a compaction, enough writes for a `--snapshot-count 5`
//! snapshot); the milestone messages must appear in the log in etcd's order, and for
//! oxetcd no openraft internals at info level.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};

/// Start-up milestones, in the order etcd 3.5 prints them (`msg` values; the raft ones are
/// matched by their fixed part).
const STARTUP: &[&str] = &[
    "starting an etcd server",
    "starting local member",
    "became leader at term ",
    " elected leader ",
    "published local member to cluster through raft",
    "ready to serve client requests",
    "serving client traffic insecurely; this is strongly discouraged!",
];

/// Lines that must appear in any order: the cluster version is set asynchronously after the
/// first election (etcd prints it before or after "ready to serve client requests"), and the
/// script's compaction and snapshot are asynchronous in etcd too.
const LATER: &[&str] = &[
    "set initial cluster version",
    "enabled capabilities for version",
    "finished scheduled compaction",
    "triggering snapshot",
    "saved snapshot",
];

/// How long to wait for the asynchronous lines.
const LOG_DEADLINE: Duration = Duration::from_secs(20);

/// The `msg` of every JSON log line, with its level.
fn messages(server: &Server) -> Vec<(String, String)> {
    server
        .log_tail(usize::MAX)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["level"].as_str().unwrap_or_default().to_string(),
                v["msg"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn run_script(server: &Server) {
    let ctl = |args: &[&str]| {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let out = etcdctl(CtlVersion::V35, &server.endpoint, &args, b"");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr_text());
    };
    for i in 0..10 {
        ctl(&["put", &format!("k{i}"), "v"]);
    }
    ctl(&["compact", "5"]);
}

fn check(kind: ServerKind) {
    let server = Server::start_with(kind, "logs", &["--snapshot-count", "5"])
        .unwrap_or_else(|e| panic!("{e}"));
    run_script(&server);
    let started = Instant::now();
    loop {
        let msgs = messages(&server);
        let missing: Vec<&str> = LATER
            .iter()
            .copied()
            .filter(|want| !msgs.iter().any(|(_, m)| m.contains(want)))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < LOG_DEADLINE,
            "{}: no {missing:?} line within {LOG_DEADLINE:?}; log:\n{}",
            kind.label(),
            server.log_tail(80)
        );
        thread::sleep(Duration::from_millis(100));
    }
    let msgs = messages(&server);
    let mut at = 0;
    for want in STARTUP {
        match msgs[at..].iter().position(|(_, m)| m.contains(want)) {
            Some(i) => at += i + 1,
            None => panic!(
                "{}: {want:?} missing or out of etcd's order; log:\n{}",
                kind.label(),
                server.log_tail(80)
            ),
        }
    }
    if kind == ServerKind::Oxetcd {
        let internals: Vec<&String> = msgs
            .iter()
            .filter(|(level, m)| {
                level == "info" && (m.contains("RaftState") || m.contains("openraft::"))
            })
            .map(|(_, m)| m)
            .collect();
        assert!(
            internals.is_empty(),
            "openraft internals at info: {internals:?}"
        );
    }
}

#[test]
fn etcd_prints_these_milestones() {
    if require_etcd_tools("etcd_prints_these_milestones").is_none() {
        return;
    }
    check(ServerKind::Etcd35);
}

#[test]
fn oxetcd_prints_etcds_milestones() {
    if require_etcd_tools("oxetcd_prints_etcds_milestones").is_none() {
        return;
    }
    check(ServerKind::Oxetcd);
}

/// systemd's `Type=notify`: with `NOTIFY_SOCKET` set, the member sends `READY=1` once it
/// serves and logs etcd's two lines around it. Checked on etcd 3.5 and oxetcd alike.
fn notifies_systemd(kind: ServerKind) {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let path_text = path.to_str().expect("utf-8 temp path");
    let server = Server::start_with_env(kind, "notify", &[], &[("NOTIFY_SOCKET", path_text)])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "{}: no readiness notification: {e}; log:\n{}",
            kind.label(),
            server.log_tail(40)
        )
    });
    let sent = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        sent.lines().any(|l| l == "READY=1"),
        "{}: {sent:?}",
        kind.label()
    );
    // The second line is written after the datagram went out: poll for it.
    let started = Instant::now();
    loop {
        let msgs = messages(&server);
        let notifying = msgs.iter().position(|(_, m)| m == "notifying init daemon");
        let notified = msgs
            .iter()
            .position(|(_, m)| m == "successfully notified init daemon");
        if notifying.is_some() && notified > notifying {
            break;
        }
        assert!(
            started.elapsed() < LOG_DEADLINE,
            "{}: etcd's notification lines missing; log:\n{}",
            kind.label(),
            server.log_tail(40)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn etcd_notifies_systemd_when_ready() {
    if require_etcd_tools("etcd_notifies_systemd_when_ready").is_none() {
        return;
    }
    notifies_systemd(ServerKind::Etcd35);
}

#[test]
fn oxetcd_notifies_systemd_when_ready() {
    if require_etcd_tools("oxetcd_notifies_systemd_when_ready").is_none() {
        return;
    }
    notifies_systemd(ServerKind::Oxetcd);
}
