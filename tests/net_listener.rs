//! The listeners as real clients meet them.
//!
//! Bug guarded against: etcdctl 3.4 with a scheme in `--endpoints` (`http://127.0.0.1:2379`,
//! the usual form) sends `:authority: http://127.0.0.1:2379`; the HTTP/2 layer reset every such
//! stream (`RST_STREAM with error code: PROTOCOL_ERROR`), so `endpoint status`, `endpoint
//! hashkv`, `alarm list` and `defrag` failed while etcd answered them.
//!
//! Also: listen URLs with port 0 bind a free port (etcd accepts them; test harnesses use them)
//! and the member logs the address it really bound.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlOutput, CtlVersion, Server, ServerKind};

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
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

/// Every per-endpoint call of both etcdctl versions, with the endpoint written with a scheme.
fn check_scheme_endpoints(client_url: &str) {
    for version in [CtlVersion::V34, CtlVersion::V35] {
        let label = version.label();
        let status = etcdctl(version, client_url, &args(&["endpoint", "status"]), b"");
        assert!(
            ok(&status, label).starts_with(client_url),
            "{label}: {status:?}"
        );
        let hash = etcdctl(version, client_url, &args(&["endpoint", "hashkv"]), b"");
        assert!(
            ok(&hash, label).starts_with(client_url),
            "{label}: {hash:?}"
        );
        let alarms = etcdctl(version, client_url, &args(&["alarm", "list"]), b"");
        assert_eq!(ok(&alarms, label), "", "{label}: no alarm is raised");
        let put = etcdctl(version, client_url, &args(&["put", "net-key", label]), b"");
        assert_eq!(ok(&put, label), "OK\n");
        let get = etcdctl(version, client_url, &args(&["get", "net-key"]), b"");
        assert_eq!(ok(&get, label), format!("net-key\n{label}\n"));
    }
    // etcd 3.5's client balances over several endpoints behind one synthetic authority.
    let two = format!("{client_url},{client_url}");
    let status = etcdctl(CtlVersion::V35, &two, &args(&["endpoint", "status"]), b"");
    assert_eq!(ok(&status, "etcdctl 3.5, two endpoints").lines().count(), 2);
    let get = etcdctl(CtlVersion::V35, &two, &args(&["get", "net-key"]), b"");
    assert!(ok(&get, "etcdctl 3.5, two endpoints").starts_with("net-key\n"));
}

#[test]
fn etcdctl_with_scheme_endpoints_reaches_every_rpc() {
    if require_etcd_tools("etcdctl_with_scheme_endpoints_reaches_every_rpc").is_none() {
        return;
    }
    let server = match Server::start(ServerKind::Oxetcd) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    check_scheme_endpoints(&server.client_url);
}

/// An oxetcd process started with port-0 listen URLs; killed on drop.
struct PortZeroMember {
    child: Child,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for PortZeroMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            eprintln!("--- oxetcd log ---\n{log}");
        }
    }
}

/// The `address` of the first log line with `msg`, once it appears.
fn logged_address(log_path: &Path, msg: &str) -> Option<String> {
    let log = std::fs::read_to_string(log_path).ok()?;
    let line = log.lines().find(|l| l.contains(msg))?;
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("address")?.as_str().map(str::to_string)
}

#[test]
fn port_zero_listen_urls_bind_free_ports() {
    if require_etcd_tools("port_zero_listen_urls_bind_free_ports").is_none() {
        return;
    }
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    };
    let log_path = dir.path().join("server.log");
    let log = File::create(&log_path).and_then(|f| Ok((f.try_clone()?, f)));
    let (log_out, log_err) = match log {
        Ok(pair) => pair,
        Err(e) => panic!("cannot create the log: {e}"),
    };
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
        .env_clear()
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", "http://127.0.0.1:0"])
        .args(["--advertise-client-urls", "http://127.0.0.1:2379"])
        .args(["--listen-peer-urls", "http://127.0.0.1:0"])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_out))
        .stderr(Stdio::from(log_err))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot start oxetcd: {e}"),
    };
    let mut member = PortZeroMember {
        child,
        log_path,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Some(address) = logged_address(&member.log_path, "serving client traffic") {
            break address;
        }
        if let Ok(Some(status)) = member.child.try_wait() {
            panic!("oxetcd exited with {status} before serving");
        }
        assert!(Instant::now() < deadline, "no client listener was logged");
        thread::sleep(Duration::from_millis(20));
    };
    let peer_bound = logged_address(&member.log_path, "serving peer traffic");
    for address in [Some(&client), peer_bound.as_ref()] {
        let port = address.and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok());
        assert!(matches!(port, Some(p) if p != 0), "logged {address:?}");
    }
    // The logged address is the one that serves.
    let url = format!("http://{client}");
    let put = etcdctl(CtlVersion::V35, &url, &args(&["put", "k", "v"]), b"");
    assert_eq!(ok(&put, "put on the logged port"), "OK\n");
}

/// Bug guarded against: the `--grpc-keepalive-*` flags were parsed but never applied, so a
/// client that vanished without closing its connection (host gone, cable pulled) kept the
/// connection and its tasks forever. With the keepalive on, a client that does not answer the
/// server's PING within the timeout is dropped.
#[test]
fn silent_client_is_dropped_by_the_keepalive() {
    use std::io::{Read, Write};
    let server = Server::start_with(
        ServerKind::Oxetcd,
        "default",
        &[
            "--grpc-keepalive-interval",
            "200ms",
            "--grpc-keepalive-timeout",
            "200ms",
        ],
    );
    let server = match server {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    let mut socket = match std::net::TcpStream::connect(&server.endpoint) {
        Ok(socket) => socket,
        Err(e) => panic!("cannot connect: {e}"),
    };
    // An HTTP/2 client that says hello (preface + empty SETTINGS) and then never reads.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert!(socket.write_all(&hello).is_ok());
    assert!(socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_ok());
    // Drain what the server sends (SETTINGS, PINGs, GOAWAY) without ever answering, until
    // it closes the connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server kept a client that never answers its pings"
        );
    }
}

/// `--grpc-keepalive-min-time` cannot be enforced by our HTTP/2 server; a non-default value
/// must be reported, never accepted silently.
#[test]
fn unenforced_keepalive_min_time_is_reported() {
    let server = Server::start_with(
        ServerKind::Oxetcd,
        "default",
        &["--grpc-keepalive-min-time", "10s"],
    );
    let server = match server {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    };
    // The warning is written before the client listener is bound, so it is in the log by now.
    let log = server.log_tail(usize::MAX);
    assert!(
        log.lines()
            .any(|l| l.contains("\"level\":\"warn\"") && l.contains("--grpc-keepalive-min-time")),
        "no startup warning in:\n{log}"
    );
}
