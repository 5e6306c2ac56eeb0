//! Server flags that change behaviour, observed from outside on a real oxetcd process with the
//! real etcdctl: auto compaction (revision and periodic modes) and the startup warning of a
//! flag without effect.
//!
//! Invariant: every test starts its own server and waits by polling a condition with a
//! deadline, never by sleeping a fixed time.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};

/// Upper bound for a compaction to show up.
const COMPACTION_WAIT: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const COMPACTED: &str = "required revision has been compacted";

fn ctl(server: &Server, args: &[&str]) -> common::CtlOutput {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    etcdctl(CtlVersion::V35, &server.endpoint, &args, b"")
}

fn put(server: &Server, key: &str, value: &str) {
    let out = ctl(server, &["put", key, value]);
    assert_eq!(out.code, 0, "put: {}", out.stderr_text());
}

/// The store revision, from `etcdctl get -w json`'s header.
fn revision(server: &Server) -> i64 {
    let out = ctl(server, &["get", "-w", "json", "x"]);
    assert_eq!(out.code, 0, "get: {}", out.stderr_text());
    let text = out.stdout_text();
    let at = text.find("\"revision\":").expect("header revision") + "\"revision\":".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().expect("revision number")
}

/// Polls until a read at `rev` fails as compacted; panics with the server log otherwise.
fn wait_compacted(server: &Server, key: &str, rev: i64) {
    let started = Instant::now();
    let rev_arg = format!("--rev={rev}");
    loop {
        let out = ctl(server, &["get", key, &rev_arg]);
        if out.code != 0 && out.stderr_text().contains(COMPACTED) {
            return;
        }
        assert!(
            started.elapsed() < COMPACTION_WAIT,
            "revision {rev} still readable after {COMPACTION_WAIT:?}: {} {}\n{}",
            out.stdout_text(),
            out.stderr_text(),
            server.log_tail(60)
        );
        thread::sleep(POLL_INTERVAL);
    }
}

fn wait_log(server: &Server, text: &str) {
    let started = Instant::now();
    while !server.log_tail(400).contains(text) {
        assert!(
            started.elapsed() < COMPACTION_WAIT,
            "no {text:?} in the log:\n{}",
            server.log_tail(60)
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// Regression: `--auto-compaction-mode=revision` was accepted and ignored, so history grew
/// forever. With a retention of 3 revisions the leader compacts to `current - 3`.
#[test]
fn revision_auto_compaction_compacts_to_current_minus_retention() {
    if require_etcd_tools("revision_auto_compaction_compacts_to_current_minus_retention").is_none()
    {
        return;
    }
    let server = Server::start_with_env(
        ServerKind::Oxetcd,
        "default",
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=3",
        ],
        // etcd checks every 5 minutes; the test knob shortens that.
        &[("OXETCD_AUTO_COMPACTION_REVISION_INTERVAL_MS", "100")],
    )
    .unwrap_or_else(|e| panic!("start: {e}"));
    for i in 0..10 {
        put(&server, "k", &format!("v{i}"));
    }
    let current = revision(&server);
    assert!(current >= 11, "ten puts: revision {current}");
    // Once the writes stop, the compaction point settles at current - 3.
    wait_compacted(&server, "k", current - 4);
    let kept = ctl(&server, &["get", "k", &format!("--rev={}", current - 3)]);
    assert_eq!(kept.code, 0, "rev current-3 kept: {}", kept.stderr_text());
    assert!(kept.stdout_text().contains("v6"), "{}", kept.stdout_text());
    wait_log(&server, "\"msg\":\"starting auto revision compaction\"");
    wait_log(&server, "\"msg\":\"completed auto revision compaction\"");
    wait_log(&server, "\"msg\":\"finished scheduled compaction\"");
}

/// Regression: `--auto-compaction-retention=1s` (periodic) was accepted and ignored. After a
/// quiet second the leader compacts to the revision of one retention ago, i.e. the latest one.
/// Also checks that a backend tuning flag is accepted with its "no effect" warning.
#[test]
fn periodic_auto_compaction_keeps_one_retention_of_history() {
    if require_etcd_tools("periodic_auto_compaction_keeps_one_retention_of_history").is_none() {
        return;
    }
    let server = Server::start_with(
        ServerKind::Oxetcd,
        "default",
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1s",
            "--backend-batch-interval=10ms",
        ],
    )
    .unwrap_or_else(|e| panic!("start: {e}"));
    let log = server.log_tail(400);
    assert!(
        log.contains("\"msg\":\"flag has no effect in oxetcd; ignoring it\"")
            && log.contains("\"flag\":\"--backend-batch-interval\""),
        "{log}"
    );
    put(&server, "k", "a");
    put(&server, "k", "b");
    let current = revision(&server);
    wait_compacted(&server, "k", current - 1);
    wait_log(&server, "\"msg\":\"starting auto periodic compaction\"");
    wait_log(&server, "\"msg\":\"completed auto periodic compaction\"");
}

/// Regression: `--experimental-initial-corrupt-check` was refused, so deployment files written
/// for etcd did not start. A single member has no peer to compare with and passes, as in etcd.
#[test]
fn initial_corrupt_check_on_a_single_member_passes_and_serves() {
    if require_etcd_tools("initial_corrupt_check_on_a_single_member_passes_and_serves").is_none() {
        return;
    }
    let server = Server::start_with(
        ServerKind::Oxetcd,
        "default",
        &["--experimental-initial-corrupt-check=true"],
    )
    .unwrap_or_else(|e| panic!("start: {e}"));
    let log = server.log_tail(400);
    assert!(
        log.contains("\"msg\":\"starting initial corruption check\""),
        "{log}"
    );
    assert!(
        log.contains("\"msg\":\"initial corruption checking passed; no corruption\""),
        "{log}"
    );
    put(&server, "k", "v");
}
