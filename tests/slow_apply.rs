//! `--experimental-warning-apply-duration`, on real processes: with a threshold every apply
//! exceeds (1ns), a put makes oxetcd log etcd 3.5's `apply request took too long` warning
//! with the same fields as etcd's, naming the key but never the value.
//!
//! Invariant: servers are owned by `Server` (killed on drop); waits poll with a deadline.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};

const DEADLINE: Duration = Duration::from_secs(20);
const SLOW: &str = "apply request took too long";

/// Puts `slow-key` and returns the field names and `expected-duration` of the first slow-apply
/// warning whose request names the key.
fn warning_after_put(kind: ServerKind) -> (Vec<String>, String) {
    let server = Server::start_with(
        kind,
        "slow",
        &["--experimental-warning-apply-duration", "1ns"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<OsString> = ["put", "slow-key", "secret-value"]
        .iter()
        .map(OsString::from)
        .collect();
    let out = etcdctl(CtlVersion::V35, &server.endpoint, &args, b"");
    assert_eq!(out.code, 0, "put: {}", out.stderr_text());
    let started = Instant::now();
    loop {
        let log = server.log_tail(usize::MAX);
        let found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["msg"] == SLOW
                    && v["request"]
                        .as_str()
                        .is_some_and(|r| r.contains("slow-key"))
            });
        if let Some(v) = found {
            assert_eq!(v["level"], "warn");
            let request = v["request"].as_str().unwrap_or_default();
            assert!(!request.contains("secret-value"), "value logged: {request}");
            assert!(request.contains("value_size:12"), "{request}");
            let mut keys: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            // Where the line was logged is not part of the comparison.
            keys.retain(|k| k != "caller");
            keys.sort();
            return (
                keys,
                v["expected-duration"].as_str().unwrap_or_default().into(),
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{}: no slow-apply warning for the put:\n{}",
            kind.label(),
            server.log_tail(30)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn slow_apply_warning_like_etcd() {
    if require_etcd_tools("slow_apply_warning_like_etcd").is_none() {
        return;
    }
    let ours = warning_after_put(ServerKind::Oxetcd);
    let theirs = warning_after_put(ServerKind::Etcd35);
    assert_eq!(ours, theirs);
    assert_eq!(ours.1, "1ns");
}
