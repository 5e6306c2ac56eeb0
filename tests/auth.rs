//! Authentication on oxetcd alone, for what the differential script (tests/diff/auth.txt) cannot
//! show: that no password reaches the data dir or the log, that a simple token issued through
//! one member is honored by the others and dies with a password change, and etcd's later fix of
//! LeaseTimeToLive leaking attached keys (etcd 3.5.1, the reference, still shows them).
//!
//! Invariant: every process a test starts is owned by a value whose `Drop` kills and reaps it.
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl, free_port, require_etcd_tools, CtlVersion, Server, ServerKind};
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::{AuthenticateRequest, PutRequest};

/// How long a member may take to serve, and a token to become known on another member.
const DEADLINE: Duration = Duration::from_secs(30);

fn ctl(endpoint: &str, args: &[&str]) -> String {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let out = etcdctl(CtlVersion::V35, endpoint, &args, b"");
    assert_eq!(
        out.code,
        0,
        "etcdctl {args:?}: {} {}",
        out.stdout_text(),
        out.stderr_text()
    );
    out.stdout_text()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Passwords are hashed before they are proposed: after users are added, a password changed,
/// logins made and a snapshot taken, no file of the data dir and no log line holds a password,
/// while the bcrypt hashes are there (so the search looked at the right bytes).
#[test]
fn no_password_reaches_the_data_dir_or_the_log() {
    if require_etcd_tools("no_password_reaches_the_data_dir_or_the_log").is_none() {
        return;
    }
    let server = match Server::start_with(ServerKind::Oxetcd, "default", &["--snapshot-count=5"]) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    let ep = server.endpoint.as_str();
    let passwords = ["Root-pw-7f3a9c", "User-pw-2b8e41", "Changed-pw-d06c5e"];
    ctl(ep, &["user", "add", &format!("root:{}", passwords[0])]);
    ctl(ep, &["user", "add", &format!("u:{}", passwords[1])]);
    ctl(ep, &["auth", "enable"]);
    let root = format!("root:{}", passwords[0]);
    let out = etcdctl(
        CtlVersion::V35,
        ep,
        &[
            "user",
            "passwd",
            "u",
            "--interactive=false",
            "--user",
            &root,
        ]
        .map(OsString::from),
        passwords[2].as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr_text());
    for i in 0..6 {
        ctl(ep, &["put", &format!("k{i}"), "v", "--user", &root]);
    }
    ctl(
        ep,
        &["user", "get", "u", "--user", &format!("u:{}", passwords[2])],
    );
    let mut hashes_seen = false;
    for path in files(&server.data_dir()) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for pw in passwords {
            assert!(
                !contains(&bytes, pw.as_bytes()),
                "{} holds the password {pw}",
                path.display()
            );
        }
        hashes_seen |= contains(&bytes, b"$2b$10$");
    }
    assert!(hashes_seen, "no bcrypt hash found in the data dir");
    let log = server.log_tail(100_000);
    for pw in passwords {
        assert!(!log.contains(pw), "the log holds the password {pw}");
    }
}

/// etcd's fix for CVE-2023-32082: LeaseTimeToLive with keys is refused unless the caller may
/// read every attached key; without keys it answers as before.
#[test]
fn lease_time_to_live_shows_keys_only_to_who_may_read_them() {
    if require_etcd_tools("lease_time_to_live_shows_keys_only_to_who_may_read_them").is_none() {
        return;
    }
    let server = match Server::start_with(ServerKind::Oxetcd, "default", &["--bcrypt-cost=4"]) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    let ep = server.endpoint.as_str();
    for args in [
        &["user", "add", "root:r"][..],
        &["user", "add", "rd:p"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "--prefix",
            "p/",
        ],
        &["user", "grant-role", "rd", "reader"],
        &["auth", "enable"],
    ] {
        ctl(ep, args);
    }
    let granted = ctl(ep, &["lease", "grant", "600", "--user", "root:r"]);
    let id = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    ctl(ep, &["put", "p/a", "1", "--lease", &id, "--user", "root:r"]);
    let keys = ctl(
        ep,
        &["lease", "timetolive", &id, "--keys", "--user", "rd:p"],
    );
    assert!(keys.contains("attached keys([p/a])"), "{keys}");
    ctl(
        ep,
        &["put", "secret", "1", "--lease", &id, "--user", "root:r"],
    );
    let args = ["lease", "timetolive", &id, "--keys", "--user", "rd:p"].map(OsString::from);
    let out = etcdctl(CtlVersion::V35, ep, &args, b"");
    assert_ne!(out.code, 0, "{}", out.stdout_text());
    assert!(
        out.stderr_text().contains("etcdserver: permission denied"),
        "{}",
        out.stderr_text()
    );
    let plain = ctl(ep, &["lease", "timetolive", &id, "--user", "rd:p"]);
    assert!(plain.contains("granted with TTL(600s)"), "{plain}");
}

/// Three member processes on loopback ports, killed and reaped on drop.
struct Trio {
    children: Vec<Child>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Trio {
    fn start() -> Trio {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-auth-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let names = ["a1", "a2", "a3"];
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> = names
            .iter()
            .zip(&ports)
            .map(|(n, (_, p))| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let log = dir.path().join(format!("{name}.log"));
            let log = File::create(&log).unwrap_or_else(|e| panic!("log: {e}"));
            let err = log.try_clone().unwrap_or_else(|e| panic!("log: {e}"));
            let child = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
                .env_clear()
                .args([
                    format!("--name={name}"),
                    format!("--data-dir={}", dir.path().join(name).display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={}", cluster.join(",")),
                    "--bcrypt-cost=4".to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn oxetcd: {e}"));
            children.push(child);
        }
        let endpoints = ports
            .iter()
            .map(|(c, _)| format!("127.0.0.1:{c}"))
            .collect();
        Trio {
            children,
            endpoints,
            _dir: dir,
        }
    }
}

impl Drop for Trio {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn kv(endpoint: &str) -> Result<KvClient<tonic::transport::Channel>, String> {
    KvClient::connect(format!("http://{endpoint}"))
        .await
        .map_err(|e| e.to_string())
}

/// A put through `endpoint` carrying `token` in the `token` metadata: the status code and
/// message on failure.
async fn put_with(endpoint: &str, token: &str) -> Result<(), (tonic::Code, String)> {
    put_with_header(endpoint, "token", token).await
}

/// As [`put_with`], with the token in metadata `header` (`token` or `authorization`).
async fn put_with_header(
    endpoint: &str,
    header: &'static str,
    token: &str,
) -> Result<(), (tonic::Code, String)> {
    let mut client = kv(endpoint)
        .await
        .map_err(|e| (tonic::Code::Unavailable, e))?;
    let mut request = tonic::Request::new(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..PutRequest::default()
    });
    let value = token
        .parse()
        .map_err(|_| (tonic::Code::Internal, "token is not ASCII".to_string()))?;
    request.metadata_mut().insert(header, value);
    client
        .put(request)
        .await
        .map(|_| ())
        .map_err(|s| (s.code(), s.message().to_string()))
}

/// A simple token is issued through the log, so every member knows it once it applied the
/// Authenticate entry (in the `token` or the `authorization` metadata); changing the user's
/// password (through yet another member) invalidates it everywhere, with etcd's "invalid auth
/// token". The Rust client's login flow works against it.
#[test]
fn a_simple_token_works_on_every_member_until_the_password_changes() {
    if require_etcd_tools("a_simple_token_works_on_every_member_until_the_password_changes")
        .is_none()
    {
        return;
    }
    let trio = Trio::start();
    let started = Instant::now();
    // Ready: every member answers etcdctl (which retries while no leader is known).
    for ep in &trio.endpoints {
        loop {
            let out = etcdctl(
                CtlVersion::V35,
                ep,
                &[OsString::from("get"), "x".into()],
                b"",
            );
            if out.code == 0 {
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{ep} not ready: {}",
                out.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (first, second, third) = (&trio.endpoints[0], &trio.endpoints[1], &trio.endpoints[2]);
    ctl(first, &["user", "add", "root:pw1"]);
    ctl(first, &["auth", "enable"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let mut auth = AuthClient::connect(format!("http://{first}"))
            .await
            .unwrap_or_else(|e| panic!("connect {first}: {e}"));
        let token = auth
            .authenticate(AuthenticateRequest {
                name: "root".into(),
                password: "pw1".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("authenticate: {e}"))
            .into_inner()
            .token;
        let (prefix, index) = token.split_once('.').unwrap_or_default();
        assert_eq!(prefix.len(), 16, "{token}");
        assert!(index.parse::<u64>().is_ok(), "{token}");
        // The third member learns the token when it applies the Authenticate entry.
        loop {
            match put_with(third, &token).await {
                Ok(()) => break,
                Err(e) => assert!(
                    started.elapsed() < DEADLINE,
                    "token refused on {third}: {e:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            put_with_header(second, "authorization", &token).await,
            Ok(())
        );
        // The Rust client's own login flow.
        let options = etcd_client::ConnectOptions::new().with_user("root", "pw1");
        let mut client = etcd_client::Client::connect([third.as_str()], Some(options))
            .await
            .unwrap_or_else(|e| panic!("etcd-client login: {e}"));
        client
            .put("rust", "client", None)
            .await
            .unwrap_or_else(|e| panic!("etcd-client put: {e}"));
        let wrong = etcd_client::ConnectOptions::new().with_user("root", "nope");
        let refused = etcd_client::Client::connect([third.as_str()], Some(wrong)).await;
        let refused = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            refused.contains("etcdserver: authentication failed, invalid user ID or password"),
            "{refused}"
        );
        assert_eq!(
            put_with(third, "garbage.1").await,
            Err((
                tonic::Code::Unauthenticated,
                "etcdserver: invalid auth token".into()
            ))
        );
        let passwd = [
            "user",
            "passwd",
            "root",
            "--interactive=false",
            "--user",
            "root:pw1",
        ];
        let out = etcdctl(CtlVersion::V35, second, &passwd.map(OsString::from), b"pw2");
        assert_eq!(out.code, 0, "{}", out.stderr_text());
        // Refused on every member once each applied the change.
        for ep in [first, second, third] {
            loop {
                match put_with(ep, &token).await {
                    Err((tonic::Code::Unauthenticated, text)) => {
                        assert_eq!(text, "etcdserver: invalid auth token");
                        break;
                    }
                    other => assert!(
                        started.elapsed() < DEADLINE,
                        "old token still answered on {ep}: {other:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}

/// A simple token unused for longer than `--auth-token-ttl` is refused with etcd's "invalid auth
/// token". (The wait is the idle time under test, not synchronization: any idle period longer
/// than the TTL must end the token. The sliding deadline itself is unit-tested in `api::auth`.)
#[test]
fn an_idle_simple_token_expires_after_the_ttl() {
    if require_etcd_tools("an_idle_simple_token_expires_after_the_ttl").is_none() {
        return;
    }
    let flags = ["--auth-token-ttl=1", "--bcrypt-cost=4"];
    let server = match Server::start_with(ServerKind::Oxetcd, "default", &flags) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    let ep = server.endpoint.as_str();
    ctl(ep, &["user", "add", "root:pw"]);
    ctl(ep, &["auth", "enable"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let mut auth = AuthClient::connect(format!("http://{ep}"))
            .await
            .unwrap_or_else(|e| panic!("connect {ep}: {e}"));
        let token = auth
            .authenticate(AuthenticateRequest {
                name: "root".into(),
                password: "pw".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("authenticate: {e}"))
            .into_inner()
            .token;
        assert_eq!(put_with(ep, &token).await, Ok(()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            put_with(ep, &token).await,
            Err((
                tonic::Code::Unauthenticated,
                "etcdserver: invalid auth token".into()
            ))
        );
    });
}
