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
        format!("--cert-file={}", certs.server.cert.display()),
        format!("--key-file={}", certs.server.key.display()),
        format!("--trusted-ca-file={}", certs.ca.display()),
        "--client-cert-auth=true".to_string(),
    ];
    let mut proc = Proc::spawn(kind, &args);
    let started = Instant::now();
    loop {
        let out = ctl(
            CtlVersion::V35,
            &https,
            &certs.ca,
            Some(&certs.client),
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
