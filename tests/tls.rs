//! TLS on the client port, driven by the real etcdctl 3.4 and 3.5 with `--cacert/--cert/--key`,
//! and compared with a real etcd 3.5 given the same certificates: what a client sees when its
//! handshake is refused (no client certificate, one from another CA, an expired one, a
//! plaintext client), that the server logs each refusal with the remote address and keeps
//! serving, and etcd's startup errors for missing certificate files.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::certs::{Certs, Pair};
use common::{etcdctl, free_port, require_etcd_tools, CtlOutput, CtlVersion, ServerKind};

/// How long a server may take to answer its first TLS request.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a process that must refuse to start may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

/// One server process started with explicit flags; killed and reaped on drop.
struct Proc {
    kind: ServerKind,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn binary(kind: ServerKind) -> PathBuf {
    match kind {
        ServerKind::Oxetcd => PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
        ServerKind::Etcd35 => match common::etcd_tools() {
            Ok(tools) => tools.etcd35.clone(),
            Err(e) => panic!("etcd 3.5 requested but missing: {e}"),
        },
        ServerKind::Etcd34 => match common::etcd_tools() {
            Ok(tools) => tools.etcd34.clone(),
            Err(e) => panic!("etcd 3.4 requested but missing: {e}"),
        },
    }
}

impl Proc {
    /// Starts `kind` with a fresh data dir and `args` (no data-dir among them).
    fn spawn(kind: ServerKind, args: &[String]) -> Proc {
        let dir = match tempfile::Builder::new().prefix("oxetcd-tls-").tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        let log = dir.path().join("server.log");
        let (out, err) = match File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
            Ok(files) => files,
            Err(e) => panic!("cannot create {}: {e}", log.display()),
        };
        let mut command = Command::new(binary(kind));
        command
            .env_clear()
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {}: {e}", kind.label()),
        };
        Proc {
            kind,
            child,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits for the process to exit on its own; its exit code (`None`: still running).
    fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.kind.label(), self.log_text());
        }
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// etcdctl against `endpoint` with the CA and, when given, a client key pair.
fn ctl(
    version: CtlVersion,
    endpoint: &str,
    ca: &Path,
    client: Option<&Pair>,
    args: &[&str],
) -> CtlOutput {
    let mut all = vec![
        OsString::from(format!("--cacert={}", ca.display())),
        OsString::from("--dial-timeout=2s"),
        OsString::from("--command-timeout=4s"),
    ];
    if let Some(pair) = client {
        all.push(format!("--cert={}", pair.cert.display()).into());
        all.push(format!("--key={}", pair.key.display()).into());
    }
    all.extend(os(args));
    etcdctl(version, endpoint, &all, b"")
}

fn ok(out: &CtlOutput, what: &str) -> String {
    assert_eq!(
        out.code,
        0,
        "{what} failed: stdout {:?} stderr {:?}",
        out.stdout_text(),
        out.stderr_text()
    );
    out.stdout_text()
}

/// A single member serving clients on `https://127.0.0.1:<tls>` (client certificates required)
/// and `http://127.0.0.1:<plain>`.
struct TlsServer {
    proc: Proc,
    https: String,
    http: String,
}

fn start_tls_server(kind: ServerKind, certs: &Certs) -> TlsServer {
    start_tls_server_with(kind, certs, &certs.server, &certs.ca, &[])
}

/// As [`start_tls_server`] with the server's key pair and trusted CA bundle at given paths
/// (`certs` still serves the readiness probe).
fn start_tls_server_with(
    kind: ServerKind,
    certs: &Certs,
    server: &Pair,
    trusted_ca: &Path,
    extra: &[String],
) -> TlsServer {
    start_probed(kind, certs, server, trusted_ca, extra, &certs.client)
}

/// As [`start_tls_server_with`], probing readiness with the key pair `probe`.
fn start_probed(
    kind: ServerKind,
    certs: &Certs,
    server: &Pair,
    trusted_ca: &Path,
    extra: &[String],
    probe: &Pair,
) -> TlsServer {
    let (tls_port, plain_port, peer_port) = (free_port(), free_port(), free_port());
    let https = format!("https://127.0.0.1:{tls_port}");
    let http = format!("http://127.0.0.1:{plain_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let args = vec![
        "--name=tls1".to_string(),
        format!("--listen-client-urls={https},{http}"),
        format!("--advertise-client-urls={https}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=tls1={peer}"),
        format!("--cert-file={}", server.cert.display()),
        format!("--key-file={}", server.key.display()),
        format!("--trusted-ca-file={}", trusted_ca.display()),
        "--client-cert-auth=true".to_string(),
    ];
    let args: Vec<String> = args.into_iter().chain(extra.iter().cloned()).collect();
    let mut proc = Proc::spawn(kind, &args);
    let started = Instant::now();
    loop {
        let out = ctl(
            CtlVersion::V35,
            &https,
            &certs.ca,
            Some(probe),
            &["get", "ready"],
        );
        if out.code == 0 {
            break;
        }
        if let Some(code) = proc.wait_exit(Duration::ZERO) {
            panic!(
                "{} exited with {code} before serving:\n{}",
                kind.label(),
                proc.log_text()
            );
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "{} did not serve TLS within {READY_DEADLINE:?}: {}",
            kind.label(),
            out.stderr_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    TlsServer { proc, https, http }
}

/// etcdctl 3.4 and 3.5 with the CA and a client certificate: writes, reads (JSON), endpoint
/// status and member list over TLS; the plaintext URL of the same member serves too.
#[test]
fn etcdctl_34_and_35_work_over_client_tls() {
    if require_etcd_tools("etcdctl_34_and_35_work_over_client_tls").is_none() {
        return;
    }
    let certs = Certs::generate();
    let server = start_tls_server(ServerKind::Oxetcd, &certs);
    for version in [CtlVersion::V34, CtlVersion::V35] {
        let key = format!("/registry/pods/{}", version.label().replace(' ', "-"));
        let put = ctl(
            version,
            &server.https,
            &certs.ca,
            Some(&certs.client),
            &["put", &key, "v1"],
        );
        assert_eq!(ok(&put, "put").trim(), "OK");
        let get = ctl(
            version,
            &server.https,
            &certs.ca,
            Some(&certs.client),
            &["get", "/registry", "--prefix", "--keys-only", "-w", "json"],
        );
        let json: serde_json::Value = match serde_json::from_str(&ok(&get, "get")) {
            Ok(v) => v,
            Err(e) => panic!("{}: get -w json is not JSON: {e}", version.label()),
        };
        assert!(
            json["kvs"].as_array().is_some_and(|kvs| !kvs.is_empty()),
            "{}: {json}",
            version.label()
        );
        let status = ctl(
            version,
            &server.https,
            &certs.ca,
            Some(&certs.client),
            &["endpoint", "status"],
        );
        assert!(ok(&status, "endpoint status").contains(&server.https));
        let members = ctl(
            version,
            &server.https,
            &certs.ca,
            Some(&certs.client),
            &["member", "list"],
        );
        let members = ok(&members, "member list");
        assert!(
            members.contains("tls1") && members.contains(&server.https),
            "{members}"
        );
    }
    // The plaintext URL beside the TLS one needs no certificate.
    let plain = etcdctl(
        CtlVersion::V35,
        &server.http,
        &os(&["get", "/registry", "--prefix", "--keys-only"]),
        b"",
    );
    assert!(ok(&plain, "plaintext get").contains("/registry/pods/"));
    assert!(server
        .proc
        .log_text()
        .contains("serving client traffic securely"));
}

/// The last `Error:` line of etcdctl's stderr (earlier lines carry timestamps and IDs).
fn error_line(out: &CtlOutput) -> String {
    out.stderr_text()
        .lines()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or("(no Error: line)")
        .to_string()
}

/// Refused handshakes look the same to etcdctl as on etcd 3.5, are logged with the remote
/// address, and do not stop the server from serving a good client right after.
#[test]
fn refused_handshakes_match_etcd_35_and_the_server_keeps_serving() {
    if require_etcd_tools("refused_handshakes_match_etcd_35_and_the_server_keeps_serving").is_none()
    {
        return;
    }
    let certs = Certs::generate();
    let ours = start_tls_server(ServerKind::Oxetcd, &certs);
    let etcd = start_tls_server(ServerKind::Etcd35, &certs);
    let plaintext = |s: &TlsServer| s.https.replace("https://", "http://");
    type Case<'a> = (&'a str, Option<&'a Pair>, &'a Path);
    let cases: [Case; 3] = [
        ("no client certificate", None, &certs.ca),
        ("certificate from another CA", Some(&certs.other), &certs.ca),
        ("expired certificate", Some(&certs.expired), &certs.ca),
    ];
    for (what, pair, ca) in cases {
        let mine = ctl(CtlVersion::V35, &ours.https, ca, pair, &["get", "k"]);
        let theirs = ctl(CtlVersion::V35, &etcd.https, ca, pair, &["get", "k"]);
        assert_ne!(
            mine.code,
            0,
            "{what}: oxetcd served it: {}",
            mine.stdout_text()
        );
        assert_ne!(theirs.code, 0, "{what}: etcd served it");
        assert_eq!(error_line(&mine), error_line(&theirs), "{what}");
    }
    let mine = etcdctl(
        CtlVersion::V35,
        &plaintext(&ours),
        &os(&["--dial-timeout=2s", "--command-timeout=4s", "get", "k"]),
        b"",
    );
    let theirs = etcdctl(
        CtlVersion::V35,
        &plaintext(&etcd),
        &os(&["--dial-timeout=2s", "--command-timeout=4s", "get", "k"]),
        b"",
    );
    assert_ne!(mine.code, 0, "plaintext client served on the TLS port");
    assert_ne!(theirs.code, 0);
    assert_eq!(error_line(&mine), error_line(&theirs), "plaintext client");

    let good = ctl(
        CtlVersion::V35,
        &ours.https,
        &certs.ca,
        Some(&certs.client),
        &["put", "after", "v"],
    );
    assert_eq!(ok(&good, "put after refusals").trim(), "OK");
    let log = ours.proc.log_text();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rejected connection"))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("\"remote-addr\":\"127.0.0.1:")),
        "no refusal names the remote address:\n{log}"
    );
    for reason in [
        "tls: client didn't provide a certificate",
        "x509: certificate signed by unknown authority",
        "x509: certificate has expired or is not yet valid",
        "tls: first record does not look like a TLS handshake",
    ] {
        assert!(
            refusals.iter().any(|l| l.contains(reason)),
            "no refusal says {reason:?}:\n{log}"
        );
    }
}

/// Missing or unusable certificate files stop the start with etcd's messages and exit code 1.
#[test]
fn bad_certificate_files_stop_the_start_with_etcds_messages() {
    let port = free_port();
    let https = format!("https://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let base = |extra: &[&str]| {
        let mut args = vec![
            format!("--listen-client-urls={https}"),
            format!("--advertise-client-urls={https}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("temp dir: {e}"),
    };
    let garbage = dir.path().join("garbage.pem");
    if let Err(e) = std::fs::write(&garbage, "not PEM\n") {
        panic!("write: {e}");
    }
    let garbage = garbage.display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            base(&[
                "--cert-file=/nonexistent/server.pem",
                "--key-file=/nonexistent/server-key.pem",
            ]),
            "open /nonexistent/server.pem: no such file or directory".to_string(),
        ),
        (
            base(&[
                &format!("--cert-file={garbage}"),
                &format!("--key-file={garbage}"),
            ]),
            "tls: failed to find any PEM data in certificate input".to_string(),
        ),
        (
            base(&[]),
            format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {https} \
                 with HTTPS scheme"
            ),
        ),
    ];
    for (args, message) in cases {
        let mut proc = Proc::spawn(ServerKind::Oxetcd, &args);
        let code = proc.wait_exit(EXIT_DEADLINE);
        assert_eq!(code, Some(1), "{args:?}: {}", proc.log_text());
        assert!(
            proc.log_text().contains(&message),
            "{args:?}: wanted {message:?} in\n{}",
            proc.log_text()
        );
    }
}

/// The deployment of the TLS issue: three members, clients and peers on TLS with certificates
/// from one CA, client and peer certificate auth on, started with exactly its flags (ports and
/// paths changed).
struct TlsCluster {
    dir: tempfile::TempDir,
    certs: Certs,
    /// (name, client port, peer port, process; `None` while stopped, joining flag)
    members: Vec<ClusterMember>,
}

struct ClusterMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// `--initial-cluster` for a member added at runtime (it starts with `existing`).
    join: Option<String>,
}

impl ClusterMember {
    fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }
}

impl TlsCluster {
    fn start(names: &[&str]) -> TlsCluster {
        let dir = match tempfile::Builder::new()
            .prefix("oxetcd-tls-cluster-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("temp dir: {e}"),
        };
        let members = names
            .iter()
            .map(|name| ClusterMember {
                name: name.to_string(),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                join: None,
            })
            .collect();
        let mut cluster = TlsCluster {
            dir,
            certs: Certs::generate(),
            members,
        };
        for i in 0..names.len() {
            cluster.spawn(i);
        }
        for i in 0..names.len() {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join.is_none())
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let m = &self.members[i];
        let (initial_cluster, state) = match &m.join {
            Some(joined) => (joined.clone(), "existing"),
            None => (initial.join(","), "new"),
        };
        let c = &self.certs;
        let args = vec![
            format!("--name={}", m.name),
            format!(
                "--data-dir={}",
                self.dir.path().join(format!("{}.etcd", m.name)).display()
            ),
            format!("--listen-client-urls={}", m.client_url()),
            format!("--advertise-client-urls={}", m.client_url()),
            format!("--listen-peer-urls={}", m.peer_url()),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
            format!("--cert-file={}", c.server.cert.display()),
            format!("--key-file={}", c.server.key.display()),
            format!("--trusted-ca-file={}", c.ca.display()),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", c.server.cert.display()),
            format!("--peer-key-file={}", c.server.key.display()),
            format!("--peer-trusted-ca-file={}", c.ca.display()),
            "--peer-client-cert-auth=true".into(),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            "--initial-cluster-token=tls-cluster-token".into(),
            "--auto-compaction-retention=168".into(),
            "--snapshot-count=10000".into(),
            "--heartbeat-interval=100".into(),
            "--election-timeout=1000".into(),
            "--max-snapshots=5".into(),
            "--max-wals=5".into(),
        ];
        let log = match File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
        {
            Ok(f) => f,
            Err(e) => panic!("log file: {e}"),
        };
        let log_dup = match log.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("log file: {e}"),
        };
        let child = Command::new(binary(ServerKind::Oxetcd))
            .env_clear()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_dup))
            .stderr(Stdio::from(log))
            .spawn();
        match child {
            Ok(child) => self.members[i].child = Some(child),
            Err(e) => panic!("cannot start {}: {e}", self.members[i].name),
        }
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ctl(&self, version: CtlVersion, i: usize, args: &[&str]) -> CtlOutput {
        let c = &self.certs;
        ctl(
            version,
            &self.members[i].client_url(),
            &c.ca,
            Some(&c.client),
            args,
        )
    }

    fn ctl_ok(&self, version: CtlVersion, i: usize, args: &[&str]) -> String {
        let out = self.ctl(version, i, args);
        ok(
            &out,
            &format!("{} {args:?} on {}", version.label(), self.members[i].name),
        )
    }

    fn wait_healthy(&self, i: usize) {
        let started = Instant::now();
        loop {
            let out = self.ctl(CtlVersion::V35, i, &["endpoint", "health"]);
            if out.code == 0 {
                return;
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "{} not healthy over TLS within {READY_DEADLINE:?}: {}",
                self.members[i].name,
                out.stderr_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if thread::panicking() {
            for i in 0..self.members.len() {
                let text = std::fs::read(self.log_path(i)).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- {} ---", self.members[i].name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Three members on TLS everywhere: member list, health and status of the whole cluster from
/// etcdctl 3.4 and 3.5, a write on one member read on another, a member killed with SIGKILL and
/// restarted over TLS, and a fourth member added with `--initial-cluster-state existing`.
#[test]
fn three_member_cluster_runs_on_client_and_peer_tls() {
    if require_etcd_tools("three_member_cluster_runs_on_client_and_peer_tls").is_none() {
        return;
    }
    let mut c = TlsCluster::start(&["n1", "n2", "n3"]);
    for version in [CtlVersion::V34, CtlVersion::V35] {
        let list = c.ctl_ok(version, 0, &["member", "list"]);
        for m in &c.members {
            let row = format!(
                "started, {}, {}, {}, false",
                m.name,
                m.peer_url(),
                m.client_url()
            );
            assert!(
                list.contains(&row),
                "{}: {row:?} not in\n{list}",
                version.label()
            );
        }
        let health = c.ctl(version, 0, &["endpoint", "health", "--cluster"]);
        let text = format!("{}{}", health.stdout_text(), health.stderr_text());
        assert_eq!(health.code, 0, "{}: {text}", version.label());
        for m in &c.members {
            assert!(
                text.contains(&format!("{} is healthy", m.client_url())),
                "{text}"
            );
        }
        let status = c.ctl_ok(
            version,
            1,
            &["endpoint", "status", "--cluster", "-w", "json"],
        );
        let status: serde_json::Value = match serde_json::from_str(&status) {
            Ok(v) => v,
            Err(e) => panic!("status is not JSON ({e}): {status}"),
        };
        assert_eq!(status.as_array().map(Vec::len), Some(3), "{status}");
    }
    assert_eq!(
        c.ctl_ok(CtlVersion::V35, 0, &["put", "/registry/a", "1"])
            .trim(),
        "OK"
    );
    let got = c.ctl_ok(
        CtlVersion::V34,
        2,
        &["get", "/registry/a", "--print-value-only"],
    );
    assert_eq!(got.trim(), "1");

    c.kill(1);
    // If n2 led, the others elect a new leader first; a put caught by the change fails with
    // "request timed out" (etcdctl does not retry), so it is retried until a deadline.
    let started = Instant::now();
    loop {
        let put = c.ctl(CtlVersion::V35, 0, &["put", "/registry/b", "2"]);
        if put.code == 0 {
            break;
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "no put succeeded within {READY_DEADLINE:?} of the kill: {}",
            put.stderr_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    c.spawn(1);
    c.wait_healthy(1);
    let keys = c.ctl_ok(
        CtlVersion::V35,
        1,
        &["get", "/registry/", "--prefix", "--keys-only"],
    );
    assert!(
        keys.contains("/registry/a") && keys.contains("/registry/b"),
        "{keys}"
    );

    // A fourth member, added through a follower (the call goes on to the leader's https
    // client URL), joins over peer TLS.
    let follower = (0..3)
        .find(|i| {
            let out = c.ctl_ok(CtlVersion::V35, *i, &["endpoint", "status", "-w", "json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let status = &v[0]["Status"];
            status["leader"].as_u64().is_some() && status["leader"] != status["header"]["member_id"]
        })
        .unwrap_or_else(|| panic!("no member reports another member as leader"));
    let (client_port, peer_port) = (free_port(), free_port());
    let peer_url = format!("https://127.0.0.1:{peer_port}");
    let added = c.ctl_ok(
        CtlVersion::V35,
        follower,
        &["member", "add", "n4", "--peer-urls", &peer_url],
    );
    let joined = added
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|v| v.trim_end_matches('"').to_string());
    assert!(joined.is_some(), "{added}");
    c.members.push(ClusterMember {
        name: "n4".into(),
        client_port,
        peer_port,
        child: None,
        join: joined,
    });
    c.spawn(3);
    c.wait_healthy(3);
    let keys = c.ctl_ok(
        CtlVersion::V35,
        3,
        &["get", "/registry/", "--prefix", "--keys-only"],
    );
    assert!(keys.contains("/registry/b"), "{keys}");
    let log = std::fs::read_to_string(c.log_path(0)).unwrap_or_default();
    assert!(log.contains("serving peer traffic securely"), "{log}");
}

/// curl's arguments for one server.
type ArgsOf<'a> = dyn Fn(&TlsServer) -> Vec<String> + 'a;

/// One answer of curl: status code, content type and body.
#[derive(Debug, PartialEq, Eq)]
struct HttpAnswer {
    status: u16,
    content_type: String,
    body: String,
}

/// `curl -i` with `args`, parsed. The protocol line may be HTTP/1.1 or HTTP/2; no answer is
/// status 0.
fn curl(args: &[&str]) -> HttpAnswer {
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run curl: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let Some(status) = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
    else {
        // No answer at all (connection refused or reset): status 0, curl's error as the body.
        return HttpAnswer {
            status: 0,
            content_type: String::new(),
            body: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
    };
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    HttpAnswer {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// `/health`, `/version`, unknown paths and other methods over plain HTTP/1.1 and TLS with ALPN
/// h2 and http/1.1 (and h2c, which etcd does not serve them on), on the same client ports that serve gRPC, compared with etcd 3.5
/// (whose version number is masked); `/livez` and `/readyz` (etcd 3.6's) answer `ok`.
#[test]
fn http_endpoints_answer_like_etcd_35_beside_grpc() {
    if require_etcd_tools("http_endpoints_answer_like_etcd_35_beside_grpc").is_none() {
        return;
    }
    let certs = Certs::generate();
    let ours = start_tls_server(ServerKind::Oxetcd, &certs);
    let etcd = start_tls_server(ServerKind::Etcd35, &certs);
    let tls_args = |s: &TlsServer, proto: &'static str, path: &str| -> Vec<String> {
        vec![
            proto.to_string(),
            "--cacert".into(),
            certs.ca.display().to_string(),
            "--cert".into(),
            certs.client.cert.display().to_string(),
            "--key".into(),
            certs.client.key.display().to_string(),
            format!("{}{path}", s.https),
        ]
    };
    let mask = |mut a: HttpAnswer| {
        if let Some(at) = a.body.find(r#""etcdserver":""#) {
            let start = at + r#""etcdserver":""#.len();
            if let Some(len) = a.body[start..].find('"') {
                a.body.replace_range(start..start + len, "X");
            }
        }
        a
    };
    for path in [
        "/health",
        "/health?serializable=true",
        "/health?exclude=NOSPACE",
        "/version",
        "/no/such/path",
    ] {
        let variants: Vec<(&str, Box<ArgsOf>)> = vec![
            (
                "http/1.1",
                Box::new(move |s: &TlsServer| vec![format!("{}{path}", s.http)]),
            ),
            (
                "https h2",
                Box::new(move |s: &TlsServer| tls_args(s, "--http2", path)),
            ),
            (
                "https http/1.1",
                Box::new(move |s: &TlsServer| tls_args(s, "--http1.1", path)),
            ),
        ];
        for (label, args) in &variants {
            let a = args(&ours);
            let b = args(&etcd);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let b: Vec<&str> = b.iter().map(String::as_str).collect();
            assert_eq!(mask(curl(&a)), mask(curl(&b)), "{path} over {label}");
        }
    }
    // etcd 3.5 hands every plaintext HTTP/2 connection to its gRPC server; here h2c reaches the
    // same endpoints as HTTP/1.1.
    for path in ["/health", "/version", "/no/such/path"] {
        let url = format!("{}{path}", ours.http);
        assert_eq!(
            curl(&["--http2-prior-knowledge", &url]),
            curl(&[&url]),
            "{path} over h2c"
        );
    }
    let post = |s: &TlsServer| curl(&["-X", "POST", &format!("{}/health", s.http)]);
    assert_eq!(post(&ours), post(&etcd), "POST /health");
    for path in ["/livez", "/readyz"] {
        let a = curl(&[&format!("{}{path}", ours.http)]);
        assert_eq!((a.status, a.body.as_str()), (200, "ok"), "{path}");
    }
    let verbose = curl(&[&format!("{}/readyz?verbose", ours.http)]);
    assert!(
        verbose.body.contains("[+]linearizable_read ok"),
        "{verbose:?}"
    );
    // /metrics: every family written here exists in etcd 3.5's with the same type and label
    // names (values differ), and the content type is the same.
    let ours_metrics = curl(&[&format!("{}/metrics", ours.http)]);
    let etcd_metrics = curl(&[&format!("{}/metrics", etcd.http)]);
    assert_eq!(ours_metrics.status, 200);
    assert_eq!(ours_metrics.content_type, etcd_metrics.content_type);
    let label_names = |line: &str| -> Vec<String> {
        let Some((_, rest)) = line.split_once('{') else {
            return Vec::new();
        };
        let labels = rest.split('}').next().unwrap_or("");
        labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    let mut families = 0;
    for line in ours_metrics.body.lines() {
        if line.starts_with("# TYPE ") {
            families += 1;
            assert!(
                etcd_metrics.body.contains(&format!("{line}\n")),
                "etcd 3.5 has no {line:?}"
            );
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let theirs = etcd_metrics.body.lines().find(|l| {
                l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
            });
            let theirs = theirs.unwrap_or_else(|| panic!("etcd 3.5 has no sample of {name}"));
            assert_eq!(label_names(line), label_names(theirs), "labels of {name}");
        }
    }
    assert!(families >= 10, "{}", ours_metrics.body);
    let has_leader = ours_metrics
        .body
        .lines()
        .any(|l| l == "etcd_server_has_leader 1");
    assert!(has_leader, "{}", ours_metrics.body);

    // gRPC still works on the same ports.
    let put = ctl(
        CtlVersion::V35,
        &ours.https,
        &certs.ca,
        Some(&certs.client),
        &["put", "k", "v"],
    );
    assert_eq!(ok(&put, "put beside HTTP").trim(), "OK");
}

/// Lines an etcdctl watch prints, collected while it runs; the process dies with the value.
struct Watching {
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watching {
    fn start(endpoint: &str, ca: &Path, client: &Pair, key: &str) -> Watching {
        let tools = match common::etcd_tools() {
            Ok(tools) => tools,
            Err(e) => panic!("etcd tools: {e}"),
        };
        let child = Command::new(&tools.etcdctl35)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", ca.display()))
            .arg(format!("--cert={}", client.cert.display()))
            .arg(format!("--key={}", client.key.display()))
            .args(["watch", key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => panic!("cannot start etcdctl watch: {e}"),
        };
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut stdout) = child.stdout.take() {
            let sink = output.clone();
            thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Watching { child, output }
    }

    /// Waits until the watch printed `needle`.
    fn wait_for(&self, needle: &str, deadline: Duration) {
        let started = Instant::now();
        loop {
            let text = self
                .output
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if text.contains(needle) {
                return;
            }
            assert!(
                started.elapsed() < deadline,
                "the watch did not print {needle:?} within {deadline:?}: {text:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rotation in place: the server's certificate and key are replaced (renamed over, as rotation
/// tools and Kubernetes secrets do) by ones from a new CA while a watch stream is open. New
/// connections get the new certificate at once (clients trusting only the old CA are refused),
/// and the open stream keeps receiving events.
#[test]
fn a_rotated_certificate_is_used_without_a_restart() {
    if require_etcd_tools("a_rotated_certificate_is_used_without_a_restart").is_none() {
        return;
    }
    let old = Certs::generate();
    let new = Certs::generate();
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("temp dir: {e}"),
    };
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        if let Err(e) = std::fs::copy(from, &to) {
            panic!("copy {}: {e}", from.display());
        }
        to
    };
    let live = Pair {
        cert: copy(&old.server.cert, "server.pem"),
        key: copy(&old.server.key, "server-key.pem"),
    };
    // Clients of both CAs are trusted throughout; only the server certificate changes.
    let bundle = dir.path().join("clients-ca.pem");
    let both = [&old.ca, &new.ca]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    if let Err(e) = std::fs::write(&bundle, both) {
        panic!("write bundle: {e}");
    }
    let server = start_tls_server_with(ServerKind::Oxetcd, &old, &live, &bundle, &[]);
    let watch = Watching::start(&server.https, &old.ca, &old.client, "rot");
    let started = Instant::now();
    loop {
        let put = ctl(
            CtlVersion::V35,
            &server.https,
            &old.ca,
            Some(&old.client),
            &["put", "rot", "before"],
        );
        assert_eq!(ok(&put, "put before").trim(), "OK");
        let seen = watch
            .output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains("before");
        if seen {
            break;
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "the watch never saw a put"
        );
        thread::sleep(Duration::from_millis(100));
    }

    for (from, to) in [(&new.server.key, &live.key), (&new.server.cert, &live.cert)] {
        let staged = copy(from, "staged.pem");
        if let Err(e) = std::fs::rename(&staged, to) {
            panic!("rename over {}: {e}", to.display());
        }
    }
    let put = ctl(
        CtlVersion::V35,
        &server.https,
        &new.ca,
        Some(&new.client),
        &["put", "rot", "after"],
    );
    assert_eq!(ok(&put, "put trusting only the new CA").trim(), "OK");
    let stale = ctl(
        CtlVersion::V35,
        &server.https,
        &old.ca,
        Some(&old.client),
        &["get", "rot"],
    );
    assert_ne!(
        stale.code, 0,
        "a client trusting only the old CA still connected"
    );
    watch.wait_for("after", Duration::from_secs(20));
    assert!(server
        .proc
        .log_text()
        .contains("reloaded TLS certificate files"));
}

/// `--auto-tls` and `--peer-auto-tls`: three members on https client and peer URLs with
/// certificates they generate themselves; etcdctl connects skipping verification, writes on one
/// member are read on another, and the certificates are kept in the data dir.
#[test]
fn auto_tls_members_generate_their_certificates_and_form_a_cluster() {
    if require_etcd_tools("auto_tls_members_generate_their_certificates_and_form_a_cluster")
        .is_none()
    {
        return;
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("a{i}=https://127.0.0.1:{p}"))
        .collect();
    let initial = initial.join(",");
    let members: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let args = vec![
                format!("--name=a{i}"),
                format!("--listen-client-urls=https://127.0.0.1:{c}"),
                format!("--advertise-client-urls=https://127.0.0.1:{c}"),
                format!("--listen-peer-urls=https://127.0.0.1:{p}"),
                format!("--initial-advertise-peer-urls=https://127.0.0.1:{p}"),
                format!("--initial-cluster={initial}"),
                "--auto-tls".to_string(),
                "--peer-auto-tls".to_string(),
            ];
            Proc::spawn(ServerKind::Oxetcd, &args)
        })
        .collect();
    let insecure = |i: usize, args: &[&str]| {
        let mut all = os(&[
            "--insecure-skip-tls-verify",
            "--insecure-transport=false",
            "--dial-timeout=2s",
            "--command-timeout=4s",
        ]);
        all.extend(os(args));
        etcdctl(
            CtlVersion::V35,
            &format!("https://127.0.0.1:{}", ports[i].0),
            &all,
            b"",
        )
    };
    let started = Instant::now();
    for (i, member) in members.iter().enumerate() {
        loop {
            if insecure(i, &["endpoint", "health"]).code == 0 {
                break;
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "a{i} not healthy: {}",
                member.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    let list = insecure(0, &["member", "list"]);
    let list = ok(&list, "member list");
    assert_eq!(list.matches(", started, ").count(), 3, "{list}");
    assert_eq!(
        ok(&insecure(0, &["put", "auto", "tls"]), "put").trim(),
        "OK"
    );
    let got = ok(&insecure(2, &["get", "auto", "--print-value-only"]), "get");
    assert_eq!(got.trim(), "tls");
    let fixtures = members[1]._dir.path().join("data").join("fixtures");
    for side in ["client", "peer"] {
        for file in ["cert.pem", "key.pem"] {
            assert!(
                fixtures.join(side).join(file).exists(),
                "{side}/{file} missing"
            );
        }
    }
    // Verifying against the system's roots fails: the certificate is self-signed.
    let strict = etcdctl(
        CtlVersion::V35,
        &format!("https://127.0.0.1:{}", ports[0].0),
        &os(&["--dial-timeout=2s", "--command-timeout=3s", "get", "auto"]),
        b"",
    );
    assert_ne!(strict.code, 0);
}

/// `--peer-cert-allowed-cn`: on the peer port, a client certificate from the right CA but with
/// another common name is refused after the handshake and logged; the allowed name connects.
#[test]
fn peer_cert_allowed_cn_refuses_other_names() {
    let certs = Certs::generate();
    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("https://127.0.0.1:{peer_port}");
    let args = vec![
        format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        format!("--peer-cert-file={}", certs.server.cert.display()),
        format!("--peer-key-file={}", certs.server.key.display()),
        format!("--peer-trusted-ca-file={}", certs.ca.display()),
        "--peer-client-cert-auth".to_string(),
        // The server certificate's CN; the client certificate's is "root".
        "--peer-cert-allowed-cn=127.0.0.1".to_string(),
    ];
    let mut proc = Proc::spawn(ServerKind::Oxetcd, &args);
    let health = format!("http://127.0.0.1:{client_port}/health");
    let started = Instant::now();
    while curl(&[&health]).status != 200 {
        assert!(
            proc.wait_exit(Duration::ZERO).is_none(),
            "exited: {}",
            proc.log_text()
        );
        assert!(
            started.elapsed() < READY_DEADLINE,
            "not healthy: {}",
            proc.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let dial = |pair: &Pair| {
        let out = Command::new("/usr/bin/curl")
            .args([
                "-sS",
                "--http2",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(&pair.cert)
            .arg("--key")
            .arg(&pair.key)
            .arg(format!("{peer}/"))
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => panic!("cannot run curl: {e}"),
        }
    };
    assert_eq!(dial(&certs.client), "000", "CN root was let in");
    assert_ne!(dial(&certs.server), "000", "the allowed CN was refused");
    let log = proc.log_text();
    assert!(
        log.lines().any(|l| l.contains("rejected connection")
            && l.contains("client certificate authentication failed")),
        "{log}"
    );
}

/// `--client-crl-file`: a client certificate the CA revoked is refused at the handshake (and
/// logged), as by etcd 3.5 with the same CRL; other clients are served.
#[test]
fn revoked_client_certificates_are_refused_like_etcd_35() {
    if require_etcd_tools("revoked_client_certificates_are_refused_like_etcd_35").is_none() {
        return;
    }
    let certs = Certs::generate();
    let crl = vec![format!("--client-crl-file={}", certs.crl.display())];
    let ours = start_tls_server_with(ServerKind::Oxetcd, &certs, &certs.server, &certs.ca, &crl);
    let etcd = start_tls_server_with(ServerKind::Etcd35, &certs, &certs.server, &certs.ca, &crl);
    let mine = ctl(
        CtlVersion::V35,
        &ours.https,
        &certs.ca,
        Some(&certs.revoked),
        &["get", "k"],
    );
    let theirs = ctl(
        CtlVersion::V35,
        &etcd.https,
        &certs.ca,
        Some(&certs.revoked),
        &["get", "k"],
    );
    assert_ne!(mine.code, 0, "a revoked certificate was served");
    assert_ne!(theirs.code, 0, "etcd served a revoked certificate");
    assert_eq!(error_line(&mine), error_line(&theirs));
    let good = ctl(
        CtlVersion::V35,
        &ours.https,
        &certs.ca,
        Some(&certs.client),
        &["put", "k", "v"],
    );
    assert_eq!(ok(&good, "put with a valid certificate").trim(), "OK");
    let log = ours.proc.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("rejected connection") && l.contains("certificate is revoked")),
        "{log}"
    );
}

/// `--client-cert-allowed-hostname`: on the client port only certificates whose SANs match the
/// name are admitted (the server certificate carries IP 127.0.0.1; the client one no SAN).
#[test]
fn client_cert_allowed_hostname_admits_matching_certificates_only() {
    if require_etcd_tools("client_cert_allowed_hostname_admits_matching_certificates_only")
        .is_none()
    {
        return;
    }
    let certs = Certs::generate();
    let host = vec!["--client-cert-allowed-hostname=127.0.0.1".to_string()];
    let server = start_probed(
        ServerKind::Oxetcd,
        &certs,
        &certs.server,
        &certs.ca,
        &host,
        &certs.server,
    );
    let refused = ctl(
        CtlVersion::V35,
        &server.https,
        &certs.ca,
        Some(&certs.client),
        &["get", "k"],
    );
    assert_ne!(
        refused.code, 0,
        "a certificate without the host name was admitted"
    );
    let admitted = ctl(
        CtlVersion::V35,
        &server.https,
        &certs.ca,
        Some(&certs.server),
        &["put", "k", "v"],
    );
    assert_eq!(
        ok(&admitted, "put with a matching certificate").trim(),
        "OK"
    );
    assert!(server
        .proc
        .log_text()
        .contains("client certificate authentication failed"));
}

/// With `--client-cert-auth` and auth enabled, a request without a token is made as the user
/// the client certificate's CN names (here `root`); a request with neither names nobody. The
/// answers (code and output) are compared with etcd 3.5's.
#[test]
fn the_certificate_cn_is_the_user_when_no_token_is_given() {
    if require_etcd_tools("the_certificate_cn_is_the_user_when_no_token_is_given").is_none() {
        return;
    }
    let certs = Certs::generate();
    let mut transcripts = Vec::new();
    for kind in [ServerKind::Etcd35, ServerKind::Oxetcd] {
        let server = start_tls_server(kind, &certs);
        let tls = |args: &[&str]| {
            ctl(
                CtlVersion::V35,
                &server.https,
                &certs.ca,
                Some(&certs.client),
                args,
            )
        };
        ok(&tls(&["user", "add", "root:cn-test-pw"]), "user add");
        ok(&tls(&["auth", "enable"]), "auth enable");
        let plain = |args: &[&str]| etcdctl(CtlVersion::V35, &server.http, &os(args), b"");
        let answers = [
            tls(&["put", "k", "v"]),
            tls(&["get", "k"]),
            tls(&["user", "list"]),
            plain(&["get", "k"]),
            plain(&["get", "k", "--user", "root:cn-test-pw"]),
        ];
        let transcript: Vec<(i32, String, String)> = answers
            .iter()
            .map(|out| {
                // etcdctl's retry log line carries a timestamp and a client address.
                let error_line = out
                    .stderr_text()
                    .lines()
                    .filter(|l| l.starts_with("Error:"))
                    .collect::<Vec<_>>()
                    .join("\n");
                (out.code, out.stdout_text(), error_line)
            })
            .collect();
        transcripts.push((kind, transcript));
    }
    let (reference, candidate) = (&transcripts[0].1, &transcripts[1].1);
    assert_eq!(candidate, reference, "oxetcd differs from etcd 3.5");
    assert_eq!(reference[1].0, 0, "the CN root reads: {reference:?}");
    assert_eq!(
        reference[3].2, "Error: etcdserver: user name is empty",
        "{reference:?}"
    );
}

/// `--insecure-skip-tls-verify`: etcdctl 3.5 and oxetcdctl both reach a TLS member without the
/// CA bundle when told to skip the server's certificate check (still presenting the client
/// certificate the member requires), and both fail without the flag.
#[test]
fn insecure_skip_tls_verify_reaches_a_member_without_its_ca() {
    if require_etcd_tools("insecure_skip_tls_verify_reaches_a_member_without_its_ca").is_none() {
        return;
    }
    let certs = Certs::generate();
    let server = start_tls_server(ServerKind::Oxetcd, &certs);
    let client = [
        format!("--cert={}", certs.client.cert.display()),
        format!("--key={}", certs.client.key.display()),
    ];
    let run = |ours: bool, skip: bool| -> CtlOutput {
        let mut args: Vec<OsString> = client.iter().map(OsString::from).collect();
        args.push("--dial-timeout=2s".into());
        args.push("--command-timeout=4s".into());
        if skip {
            args.push("--insecure-skip-tls-verify".into());
        }
        args.extend(os(&["get", "ready", "-w", "json"]));
        if ours {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxetcdctl"))
                .env_clear()
                .arg(format!("--endpoints={}", server.https))
                .args(&args)
                .output()
                .expect("oxetcdctl runs");
            CtlOutput {
                stdout: out.stdout,
                stderr: out.stderr,
                code: out.status.code().unwrap_or(-1),
                timed_out: false,
            }
        } else {
            etcdctl(CtlVersion::V35, &server.https, &args, b"")
        }
    };
    for ours in [false, true] {
        let tool = if ours { "oxetcdctl" } else { "etcdctl 3.5" };
        let skipped = run(ours, true);
        assert!(
            ok(&skipped, tool).contains("\"header\""),
            "{tool}: {}",
            skipped.stdout_text()
        );
        let checked = run(ours, false);
        assert_ne!(checked.code, 0, "{tool} trusted an unknown CA");
    }
}
