//! `--config-file`, on real processes: etcd's own sample configuration file (our written-out
//! copy in `src/config/testdata/etcd.conf.yml`, with ports and data dir changed) starts
//! oxetcd and etcd 3.5 alike, the command-line flags and `ETCD_*` variables given beside it
//! are ignored by both, and a file with a bad value fails on both with the same error text and
//! exit status.
//!
//! Invariant: every process is owned by a `Proc` whose drop kills and reaps it; waits poll
//! with a deadline.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, free_port, require_etcd_tools, CtlVersion, ServerKind};

const SAMPLE: &str = include_str!("../src/config/testdata/etcd.conf.yml");
/// How long a member may take to serve, or a refused configuration to exit.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A server process started from a configuration file; killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(kind: ServerKind, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let binary = match kind {
            ServerKind::Oxetcd => PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
            ServerKind::Etcd35 => common::etcd_tools().expect("etcd tools").etcd35.clone(),
            ServerKind::Etcd34 => common::etcd_tools().expect("etcd tools").etcd34.clone(),
        };
        let log = dir.join(format!("{}.log", kind.label().replace(' ', "-")));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("dup log file");
        let child = Command::new(&binary)
            .env_clear()
            .envs(env.iter().copied())
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary.display()));
        Proc { child, log }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < DEADLINE,
                "still running after {DEADLINE:?}:\n{}",
                self.log_text()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(endpoint: &str, args: &[&str]) -> common::CtlOutput {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    etcdctl(CtlVersion::V35, endpoint, &args, b"")
}

/// The sample file with its URLs moved to free ports, its data dir and initial cluster set,
/// plus a key etcd
/// does not know (ignored by both servers).
fn sample_for(data_dir: &Path, client_port: u16, peer_port: u16) -> String {
    let text = SAMPLE
        .replace("localhost:2379", &format!("127.0.0.1:{client_port}"))
        .replace("localhost:2380", &format!("127.0.0.1:{peer_port}"))
        .replace(
            "\ndata-dir:\n",
            &format!("\ndata-dir: {}\n", data_dir.display()),
        )
        // Left empty, etcd's default (`default=http://localhost:2380`) would not match the
        // moved peer URL, on etcd as on oxetcd.
        .replace(
            "\ninitial-cluster:\n",
            &format!("\ninitial-cluster: default=http://127.0.0.1:{peer_port}\n"),
        );
    assert!(text.contains(&format!("data-dir: {}", data_dir.display())));
    format!("{text}\nan-unknown-key: {{nested: [1, 2]}}\n")
}

/// What `member list` shows, with this run's ports replaced by names.
fn member_list(endpoint: &str, client_port: u16, peer_port: u16) -> String {
    let out = ctl(endpoint, &["member", "list", "-w", "simple"]);
    assert_eq!(out.code, 0, "member list: {}", out.stderr_text());
    let text = out.stdout_text();
    let line = text.lines().next().unwrap_or_default();
    // Drop the member ID (it is derived from the peer URL, so it differs per run).
    let rest = line.split_once(", ").map(|(_, r)| r).unwrap_or(line);
    rest.replace(&client_port.to_string(), "CLIENT")
        .replace(&peer_port.to_string(), "PEER")
}

/// Starts `kind` from the sample file (with conflicting flags and variables beside it),
/// writes and reads a key, and returns what `member list` shows.
fn run_sample(kind: ServerKind) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let (client_port, peer_port) = (free_port(), free_port());
    let file = dir.path().join("etcd.conf.yml");
    std::fs::write(
        &file,
        sample_for(&dir.path().join("data"), client_port, peer_port),
    )
    .expect("write config file");
    let file_arg = file.display().to_string();
    // Both would make the member unreachable if they were applied.
    let proc = Proc::spawn(
        kind,
        dir.path(),
        &[
            "--config-file",
            &file_arg,
            "--listen-client-urls",
            "http://127.0.0.1:1",
        ],
        &[("ETCD_NAME", "not-this-name"), ("ETCD_SNAPSHOT_COUNT", "x")],
    );
    let endpoint = format!("127.0.0.1:{client_port}");
    let started = Instant::now();
    loop {
        let out = ctl(&endpoint, &["put", "from-config-file", "yes"]);
        if out.code == 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} did not serve from its config file: {}\n{}",
            kind.label(),
            out.stderr_text(),
            proc.log_text()
        );
        thread::sleep(POLL);
    }
    let out = ctl(
        &endpoint,
        &["get", "from-config-file", "--print-value-only"],
    );
    assert_eq!(out.stdout_text().trim(), "yes", "{}", kind.label());
    assert!(
        proc.log_text().contains(
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        ),
        "{}: no 'loaded server configuration' line:\n{}",
        kind.label(),
        proc.log_text()
    );
    assert!(dir.path().join("data").join("member").is_dir());
    member_list(&endpoint, client_port, peer_port)
}

#[test]
fn sample_config_file_starts_oxetcd_like_etcd() {
    if require_etcd_tools("sample_config_file_starts_oxetcd_like_etcd").is_none() {
        return;
    }
    let ours = run_sample(ServerKind::Oxetcd);
    let theirs = run_sample(ServerKind::Etcd35);
    assert_eq!(ours, theirs);
    assert!(
        ours.starts_with("started, default, http://127.0.0.1:PEER, http://127.0.0.1:CLIENT"),
        "{ours}"
    );
}

/// The error a refused configuration file produces: the `error` field of etcd's "failed to
/// verify flags" line, or the plain line etcd prints before its logger exists.
fn startup_error(log: &str) -> String {
    for line in log.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["msg"] == "failed to verify flags" {
                return v["error"].as_str().unwrap_or_default().to_string();
            }
        } else if !line.trim().is_empty() {
            return line.to_string();
        }
    }
    format!("(no error line in: {log})")
}

fn refused(kind: ServerKind, yaml: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.yml");
    if let Some(yaml) = yaml {
        std::fs::write(&file, yaml).expect("write config file");
    }
    let file_arg = file.display().to_string();
    let mut proc = Proc::spawn(kind, dir.path(), &["--config-file", &file_arg], &[]);
    let code = proc.wait_exit();
    let error = startup_error(&proc.log_text()).replace(&file_arg, "FILE");
    (code, error)
}

/// Regression guard for the file's error texts: each bad file is given to both servers;
/// exit status and error text must be the same.
#[test]
fn bad_config_files_fail_like_etcd() {
    if require_etcd_tools("bad_config_files_fail_like_etcd").is_none() {
        return;
    }
    let cases: &[Option<&str>] = &[
        None, // the file does not exist
        Some("snapshot-count: abc\n"),
        Some("snapshot-count: -1\n"),
        Some("name: 123\n"),
        Some("log-outputs: stderr\n"),
        Some("grpc-keepalive-min-time: 5s\n"),
        Some("client-transport-security:\n  client-cert-auth: maybe\n"),
        Some("initial-cluster-state: bogus\n"),
        Some("listen-client-urls: http://127.0.0.1:2379/foo\n"),
        Some("heartbeat-interval: 1000\n"),
        Some("- a\n- b\n"),
    ];
    for yaml in cases {
        let ours = refused(ServerKind::Oxetcd, *yaml);
        let theirs = refused(ServerKind::Etcd35, *yaml);
        assert_eq!(ours, theirs, "file {yaml:?}");
        assert_eq!(ours.0, 1, "file {yaml:?}");
    }
}
