//! oxetcdctl's connection diagnostics against etcdctl 3.5. When a command cannot reach its
//! endpoint, etcdctl 3.5 says `Error: context deadline exceeded` (exit 1) after its client's
//! JSON log lines; oxetcdctl must print the same `Error:` line with the same exit code, and
//! before it one JSON line of the same shape (`{"level":"warn",...,"caller":"oxetcdctl",
//! "msg":...,"endpoint":...}`) that names the endpoint and the fix. Each kind of failure is
//! met for real: a closed port, a name that does not resolve, TLS servers (oxetcd's and etcd
//! 3.5's) refusing or refused in each way, and a wrong password.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::certs::{Certs, Pair};
use common::etcdctl::{etcdctl, CtlOutput, CtlVersion};
use common::server::{free_port, Server, ServerKind};
use common::tools::require_etcd_tools;

/// How long a TLS server may take to serve its first read.
const READY_DEADLINE: Duration = Duration::from_secs(30);

fn oxetcdctl(args: &[OsString]) -> CtlOutput {
    let out = Command::new(env!("CARGO_BIN_EXE_oxetcdctl"))
        .env_clear()
        .args(args)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run oxetcdctl: {e}"),
    };
    CtlOutput {
        stdout: out.stdout,
        stderr: out.stderr,
        code: out.status.code().unwrap_or(-1),
        timed_out: false,
    }
}

/// stderr without the JSON log lines (etcdctl's client log, oxetcdctl's diagnostics).
fn without_log_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// oxetcdctl's diagnostic lines, parsed.
fn diagnostics(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with("{\"level\""))
        .map(|l| match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => panic!("a log line that is not JSON ({e}): {l}"),
        })
        .collect()
}

/// One failing command through etcdctl 3.5 and oxetcdctl: the `Error:` line and exit code
/// must agree, and oxetcdctl's single diagnostic must name `endpoint` and contain `fix`.
fn check_case(what: &str, endpoint: &str, flags: &[String], command: &[&str], fix: &str) {
    let mut args: Vec<OsString> = vec!["--dial-timeout=1s".into(), "--command-timeout=2s".into()];
    args.extend(flags.iter().map(OsString::from));
    args.extend(command.iter().map(OsString::from));
    let theirs = etcdctl(CtlVersion::V35, endpoint, &args, b"");
    let mut ours_args: Vec<OsString> = vec![format!("--endpoints={endpoint}").into()];
    ours_args.extend(args.iter().cloned());
    let ours = oxetcdctl(&ours_args);
    let (their_err, our_err) = (theirs.stderr_text(), ours.stderr_text());
    assert_ne!(theirs.code, 0, "{what}: etcdctl succeeded: {their_err}");
    assert_eq!(
        without_log_lines(&our_err),
        without_log_lines(&their_err),
        "{what}: the error lines differ"
    );
    assert_eq!(
        ours.code, theirs.code,
        "{what}: exit codes differ: {our_err}"
    );
    assert_eq!(ours.stdout_text(), theirs.stdout_text(), "{what}: stdout");
    let lines = diagnostics(&our_err);
    assert_eq!(lines.len(), 1, "{what}: one diagnostic line: {our_err}");
    let line = &lines[0];
    assert_eq!(line["level"], "warn", "{what}: {our_err}");
    assert_eq!(line["caller"], "oxetcdctl", "{what}: {our_err}");
    assert!(line["ts"].is_string(), "{what}: {our_err}");
    assert_eq!(
        line["endpoint"], endpoint,
        "{what}: names the endpoint: {our_err}"
    );
    let msg = line["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(fix), "{what}: {msg:?} should contain {fix:?}");
}

fn path_flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

fn key_pair_flags(pair: &Pair) -> Vec<String> {
    vec![path_flag("cert", &pair.cert), path_flag("key", &pair.key)]
}

/// A single member serving clients over TLS on `https` (client certificates of `client_ca`
/// required when given) and in plaintext on `http`; killed on drop.
struct TlsServer {
    child: Child,
    https: String,
    http: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = std::fs::read(&self.log).unwrap_or_default();
            eprintln!("--- server log ---\n{}", String::from_utf8_lossy(&log));
        }
    }
}

fn server_binary(kind: ServerKind) -> PathBuf {
    match kind {
        ServerKind::Oxetcd => PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
        _ => match common::etcd_tools() {
            Ok(tools) => tools.etcd35.clone(),
            Err(e) => panic!("etcd 3.5 requested but missing: {e}"),
        },
    }
}

/// Starts the server and waits (polling, bounded) until a read with `ready_flags` succeeds.
fn start_tls(
    kind: ServerKind,
    server: &Pair,
    client_ca: Option<&Path>,
    ready_flags: &[String],
) -> TlsServer {
    let dir = match tempfile::Builder::new()
        .prefix("oxetcdctl-errors-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    };
    let (tls_port, plain_port, peer_port) = (free_port(), free_port(), free_port());
    let https = format!("https://127.0.0.1:{tls_port}");
    let http = format!("http://127.0.0.1:{plain_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = dir.path().join("server.log");
    let (out, err) = match File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(files) => files,
        Err(e) => panic!("cannot create {}: {e}", log.display()),
    };
    let client_auth = match client_ca {
        Some(ca) => vec![
            path_flag("trusted-ca-file", ca),
            "--client-cert-auth=true".to_string(),
        ],
        None => Vec::new(),
    };
    let child = Command::new(server_binary(kind))
        .env_clear()
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg("--name=tls1")
        .arg(format!("--listen-client-urls={https},{http}"))
        .arg(format!("--advertise-client-urls={https}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=tls1={peer}"))
        .arg(path_flag("cert-file", &server.cert))
        .arg(path_flag("key-file", &server.key))
        .args(&client_auth)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot start {}: {e}", kind.label()),
    };
    let mut server = TlsServer {
        child,
        https,
        http,
        log,
        _dir: dir,
    };
    let started = Instant::now();
    loop {
        let mut args: Vec<OsString> = vec![format!("--endpoints={}", server.https).into()];
        args.extend(ready_flags.iter().map(OsString::from));
        args.extend(["get".into(), "ready".into()]);
        let out = oxetcdctl(&args);
        if out.code == 0 {
            return server;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{} exited with {status} before serving", kind.label());
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "{} did not serve TLS within {READY_DEADLINE:?}: {}",
            kind.label(),
            out.stderr_text()
        );
        // Polling the server's readiness; the deadline above bounds the loop.
        thread::sleep(Duration::from_millis(100));
    }
}

/// A CA of its own and a server certificate for `elsewhere.test` alone, in `dir`.
fn elsewhere_certs(dir: &Path) -> (PathBuf, Pair) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let fail = |what: &str, e: rcgen::Error| -> ! { panic!("{what}: {e}") };
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail("CA key", e));
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail("CA", e));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap_or_else(|e| fail("CA", e));
    let key = KeyPair::generate().unwrap_or_else(|e| fail("server key", e));
    let mut leaf = CertificateParams::new(vec!["elsewhere.test".to_string()])
        .unwrap_or_else(|e| fail("server", e));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf
        .signed_by(&key, &ca, &ca_key)
        .unwrap_or_else(|e| fail("server", e));
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    };
    let ca_path = write("elsewhere-ca.pem", ca.pem());
    let pair = Pair {
        cert: write("elsewhere.pem", leaf.pem()),
        key: write("elsewhere-key.pem", key.serialize_pem()),
    };
    (ca_path, pair)
}

/// Nothing listening (for the commands that use one endpoint and for those that visit each),
/// and a host name that does not resolve.
#[test]
fn unreachable_endpoints_fail_as_etcdctl_does_and_say_why() {
    if require_etcd_tools("unreachable_endpoints_fail_as_etcdctl_does_and_say_why").is_none() {
        return;
    }
    let closed = format!("127.0.0.1:{}", free_port());
    check_case(
        "connection refused",
        &closed,
        &[],
        &["get", "k"],
        "is the server running? check --endpoints",
    );
    // The commands that visit each endpoint on their own report it in their own words.
    for command in [
        &["endpoint", "health"][..],
        &["endpoint", "status"],
        &["endpoint", "hashkv"],
        &["defrag"],
        &["move-leader", "1"],
    ] {
        check_case(
            &format!("connection refused, {command:?}"),
            &closed,
            &[],
            command,
            "is the server running? check --endpoints",
        );
    }
    // A snapshot that cannot start is "interrupted" (exit 5) for etcdctl.
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    };
    let db = dir.path().join("backup.db").display().to_string();
    check_case(
        "connection refused, snapshot save",
        &closed,
        &[],
        &["snapshot", "save", &db],
        "is the server running? check --endpoints",
    );
    check_case(
        "unresolved host",
        "no-such-host.invalid:2379",
        &[],
        &["put", "k", "v"],
        "cannot resolve host \"no-such-host.invalid\"",
    );
}

/// Every way a TLS connection fails, against oxetcd's and etcd 3.5's TLS listeners.
#[test]
fn tls_failures_fail_as_etcdctl_does_and_name_the_fix() {
    if require_etcd_tools("tls_failures_fail_as_etcdctl_does_and_name_the_fix").is_none() {
        return;
    }
    let certs = Certs::generate();
    let (elsewhere_ca, elsewhere) = elsewhere_certs(certs.dir.path());
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let mut ready = vec![path_flag("cacert", &certs.ca)];
        ready.extend(key_pair_flags(&certs.client));
        let server = start_tls(kind, &certs.server, Some(&certs.ca), &ready);
        let https = server.https.clone();
        let https_address = https.trim_start_matches("https://").to_string();
        let http_address = server.http.trim_start_matches("http://").to_string();
        let label = kind.label();

        let mut flags = vec![path_flag("cacert", &certs.other_ca)];
        flags.extend(key_pair_flags(&certs.client));
        check_case(
            &format!("{label}: unknown CA"),
            &https,
            &flags,
            &["get", "k"],
            &format!(
                "server certificate not signed by --cacert {}",
                certs.other_ca.display()
            ),
        );
        let db = certs.dir.path().join("backup.db").display().to_string();
        check_case(
            &format!("{label}: unknown CA, snapshot save"),
            &https,
            &flags,
            &["snapshot", "save", &db],
            "server certificate not signed by --cacert",
        );
        check_case(
            &format!("{label}: no client certificate"),
            &https,
            &[path_flag("cacert", &certs.ca)],
            &["get", "k"],
            "pass --cert and --key",
        );
        let mut flags = vec![path_flag("cacert", &certs.ca)];
        flags.extend(key_pair_flags(&certs.other));
        check_case(
            &format!("{label}: client certificate of another CA"),
            &https,
            &flags,
            &["get", "k"],
            &format!(
                "the server refused client certificate --cert {}",
                certs.other.cert.display()
            ),
        );
        check_case(
            &format!("{label}: plaintext to a TLS port"),
            &format!("http://{https_address}"),
            &[],
            &["get", "k"],
            &format!("use https://{https_address} in --endpoints and pass --cacert"),
        );
        let mut flags = vec![path_flag("cacert", &certs.ca)];
        flags.extend(key_pair_flags(&certs.client));
        check_case(
            &format!("{label}: TLS to a plaintext port"),
            &format!("https://{http_address}"),
            &flags,
            &["get", "k"],
            &format!("use http://{http_address} in --endpoints and drop --cacert"),
        );
        drop(server);

        let ready = vec![
            path_flag("cacert", &elsewhere_ca),
            "--insecure-skip-tls-verify".to_string(),
        ];
        let server = start_tls(kind, &elsewhere, None, &ready);
        check_case(
            &format!("{label}: a certificate for another name"),
            &server.https,
            &[path_flag("cacert", &elsewhere_ca)],
            &["get", "k"],
            "is not valid for \"127.0.0.1\", only for elsewhere.test",
        );
    }
}

/// A wrong password keeps etcdctl's error line and exit code (2) and adds a hint.
#[test]
fn a_wrong_password_keeps_etcdctls_error_and_adds_a_hint() {
    if require_etcd_tools("a_wrong_password_keeps_etcdctls_error_and_adds_a_hint").is_none() {
        return;
    }
    let server = match Server::start(ServerKind::Oxetcd) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    for step in [&["user", "add", "root:right"][..], &["auth", "enable"]] {
        let args: Vec<OsString> = step.iter().map(OsString::from).collect();
        let out = etcdctl(CtlVersion::V35, &server.endpoint, &args, b"");
        assert_eq!(out.code, 0, "{step:?}: {}", out.stderr_text());
    }
    check_case(
        "wrong password",
        &server.endpoint,
        &["--user=root:wrong".to_string()],
        &["get", "k"],
        "authentication failed for user \"root\": check the name and password",
    );
}

/// `--discovery-srv` and `--discovery-srv-name` are refused with a clear message (exit 1,
/// etcdctl's code for a bad flag), never ignored.
#[test]
fn dns_discovery_is_refused_clearly() {
    for flags in [
        &["--discovery-srv=example.com", "get", "k"][..],
        &["get", "k", "-d", "example.com"],
        &["--discovery-srv-name=etcd", "put", "k", "v"],
    ] {
        let args: Vec<OsString> = flags.iter().map(OsString::from).collect();
        let out = oxetcdctl(&args);
        assert_eq!(out.code, 1, "{flags:?}");
        assert_eq!(
            out.stderr_text(),
            "Error: oxetcdctl does not do DNS SRV discovery; list the members with --endpoints\n",
            "{flags:?}"
        );
        assert_eq!(out.stdout_text(), "", "{flags:?}");
    }
}
