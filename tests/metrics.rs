//! `/metrics` counted where the events happen, `--listen-metrics-urls` and `--metrics
//! extensive`, compared with a real etcd 3.5 given the same flags and driven by the same
//! etcdctl script: the counters of the script's requests (mvcc puts, deletes, txns, gRPC calls
//! by method and code, messages) are equal, the gRPC label sets are etcd's, and the metrics
//! listener answers each path as etcd's does (plain and with TLS and client certificates);
//! `--cors` and `--host-whitelist` give the client port's HTTP endpoints etcd's headers and
//! refusals; `unix://` and `unixs://` client URLs serve etcdctl as etcd's do.

mod common;

use std::ffi::OsString;
use std::process::{Command, Stdio};

use common::certs::Certs;
use common::{etcdctl, free_port, require_etcd_tools, CtlVersion, Server, ServerKind};

/// One answer of curl: status code, content type, CORS headers and body.
#[derive(Debug, PartialEq, Eq)]
struct HttpAnswer {
    status: u16,
    content_type: String,
    /// `access-control-*` header lines, lower-cased names, sorted.
    cors: Vec<String>,
    body: String,
}

/// `curl -i` with `args`, parsed; no answer at all is status 0.
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
        return HttpAnswer {
            status: 0,
            content_type: String::new(),
            cors: Vec::new(),
            body: String::new(),
        };
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut cors: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    cors.sort();
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    HttpAnswer {
        status,
        content_type,
        cors,
        body: body.to_string(),
    }
}

/// A server with a metrics listener on its own port.
struct Metered {
    server: Server,
    metrics_url: String,
}

fn start_metered(kind: ServerKind, scheme: &str, extra: &[&str]) -> Metered {
    let metrics_url = format!("{scheme}://127.0.0.1:{}", free_port());
    let mut args = vec![
        "--metrics=extensive".to_string(),
        format!("--listen-metrics-urls={metrics_url}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match Server::start_with(kind, "m1", &args) {
        Ok(server) => Metered {
            server,
            metrics_url,
        },
        Err(e) => panic!("cannot start {}: {e}", kind.label()),
    }
}

fn ctl(endpoint: &str, args: &[&str], stdin: &str) -> String {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let out = etcdctl(CtlVersion::V35, endpoint, &args, stdin.as_bytes());
    // Without the client library's JSON log lines (timestamps, addresses).
    format!("{}{}", out.stdout_text(), out.stderr_text())
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same requests against either server: puts, a delete, a txn with a compare, a put with a
/// lease that does not exist (NotFound) and a member list.
fn run_script(endpoint: &str) -> Vec<String> {
    vec![
        ctl(endpoint, &["put", "k1", "v1"], ""),
        ctl(endpoint, &["put", "k2", "v2"], ""),
        ctl(endpoint, &["put", "k3", "v3"], ""),
        ctl(endpoint, &["del", "k1"], ""),
        ctl(
            endpoint,
            &["txn"],
            "value(\"k2\") = \"v2\"\n\nput k4 v4\nput k5 v5\n\nput k6 v6\n\n",
        ),
        ctl(endpoint, &["put", "k7", "v7", "--lease=1234abcd"], ""),
        ctl(endpoint, &["member", "list"], ""),
    ]
}

/// The value of the sample `series` (name with labels, exactly as printed) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The series names (with labels) of the family `name`, sorted.
fn series_of(text: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect();
    out.sort();
    out
}

fn grpc(method: &str, service: &str) -> String {
    format!("grpc_method=\"{method}\",grpc_service=\"etcdserverpb.{service}\",grpc_type=\"unary\"")
}

#[test]
fn the_scripts_counters_and_grpc_label_sets_match_etcd_35() {
    if require_etcd_tools("the_scripts_counters_and_grpc_label_sets_match_etcd_35").is_none() {
        return;
    }
    let ours = start_metered(ServerKind::Oxetcd, "http", &[]);
    let etcd = start_metered(ServerKind::Etcd35, "http", &[]);
    let ours_out = run_script(&ours.server.endpoint);
    let etcd_out = run_script(&etcd.server.endpoint);
    // The member list names different IDs and ports; the rest must answer alike.
    assert_eq!(ours_out[..6], etcd_out[..6], "the script's answers");
    for m in [&ours, &etcd] {
        for _ in 0..2 {
            let health = curl(&[&format!("{}/health", m.server.client_url)]);
            assert_eq!(health.status, 200, "{}: {health:?}", m.server.kind.label());
        }
    }
    let scrape = |m: &Metered| {
        let a = curl(&[&format!("{}/metrics", m.metrics_url)]);
        assert_eq!(a.status, 200, "{} /metrics: {a:?}", m.server.kind.label());
        a.body
    };
    let (ours_text, etcd_text) = (scrape(&ours), scrape(&etcd));
    let put = grpc("Put", "KV");
    let txn = grpc("Txn", "KV");
    let del = grpc("DeleteRange", "KV");
    let members = grpc("MemberList", "Cluster");
    let compared = [
        "etcd_mvcc_put_total".to_string(),
        "etcd_mvcc_delete_total".into(),
        "etcd_mvcc_txn_total".into(),
        "etcd_debugging_mvcc_keys_total".into(),
        "etcd_server_leader_changes_seen_total".into(),
        "etcd_server_proposals_pending".into(),
        "etcd_server_health_success".into(),
        "etcd_server_health_failures".into(),
        "etcd_cluster_version{cluster_version=\"3.5\"}".into(),
        format!("grpc_server_started_total{{{put}}}"),
        format!("grpc_server_handled_total{{grpc_code=\"OK\",{put}}}"),
        format!("grpc_server_handled_total{{grpc_code=\"NotFound\",{put}}}"),
        format!("grpc_server_handled_total{{grpc_code=\"OK\",{txn}}}"),
        format!("grpc_server_handled_total{{grpc_code=\"OK\",{del}}}"),
        format!("grpc_server_handled_total{{grpc_code=\"OK\",{members}}}"),
        format!("grpc_server_msg_received_total{{{put}}}"),
        format!("grpc_server_msg_sent_total{{{put}}}"),
        format!("grpc_server_handling_seconds_count{{{put}}}"),
    ];
    for series in compared {
        let theirs = value(&etcd_text, &series);
        assert!(theirs.is_some(), "etcd 3.5 prints {series}");
        assert_eq!(value(&ours_text, &series), theirs, "{series}");
    }
    assert_eq!(value(&ours_text, "etcd_mvcc_put_total"), Some(5.0));
    assert_eq!(value(&ours_text, "etcd_server_health_success"), Some(2.0));
    // Every gRPC method etcd lists (with every code, every bucket) and no other.
    for family in [
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_bucket",
    ] {
        let theirs = series_of(&etcd_text, family);
        assert!(theirs.len() >= 40, "{family}: {theirs:?}");
        assert_eq!(
            series_of(&ours_text, family),
            theirs,
            "label sets of {family}"
        );
    }
    // Counted at the fsync itself: the writes above were synced, each at least once.
    let fsyncs = value(&ours_text, "etcd_disk_wal_fsync_duration_seconds_count");
    assert!(fsyncs.is_some_and(|n| n >= 5.0), "{fsyncs:?}");
    let buckets = series_of(&ours_text, "etcd_disk_wal_fsync_duration_seconds_bucket");
    assert_eq!(
        buckets,
        series_of(&etcd_text, "etcd_disk_wal_fsync_duration_seconds_bucket")
    );
    let received = value(&ours_text, "etcd_network_client_grpc_received_bytes_total");
    assert!(received.is_some_and(|n| n > 0.0), "{received:?}");
}

#[test]
fn the_metrics_listener_answers_like_etcd_35s() {
    if require_etcd_tools("the_metrics_listener_answers_like_etcd_35s").is_none() {
        return;
    }
    let ours = start_metered(ServerKind::Oxetcd, "http", &[]);
    let etcd = start_metered(ServerKind::Etcd35, "http", &[]);
    for path in [
        "/health",
        "/health?serializable=true",
        "/version",
        "/livez",
        "/v3/kv/range",
        "/no/such/path",
    ] {
        let a = curl(&[&format!("{}{path}", ours.metrics_url)]);
        let b = curl(&[&format!("{}{path}", etcd.metrics_url)]);
        assert_eq!(a, b, "{path}");
    }
    for (method, path) in [
        ("POST", "/health"),
        ("POST", "/metrics"),
        ("OPTIONS", "/health"),
    ] {
        let a = curl(&["-X", method, &format!("{}{path}", ours.metrics_url)]);
        let b = curl(&["-X", method, &format!("{}{path}", etcd.metrics_url)]);
        assert_eq!(
            (a.status, &a.content_type),
            (b.status, &b.content_type),
            "{method} {path}"
        );
    }
    let a = curl(&[&format!("{}/metrics", ours.metrics_url)]);
    let b = curl(&[&format!("{}/metrics", etcd.metrics_url)]);
    assert_eq!((a.status, &a.content_type), (b.status, &b.content_type));
    assert!(
        a.body.contains("\netcd_server_has_leader 1\n"),
        "{}",
        a.body
    );
}

#[test]
fn an_https_metrics_listener_uses_the_client_certificate_as_etcd_35s_does() {
    if require_etcd_tools("an_https_metrics_listener_uses_the_client_certificate_as_etcd_35s_does")
        .is_none()
    {
        return;
    }
    let certs = Certs::generate();
    let cert = format!("--cert-file={}", certs.server.cert.display());
    let key = format!("--key-file={}", certs.server.key.display());
    let ca = format!("--trusted-ca-file={}", certs.ca.display());
    let flags = [
        cert.as_str(),
        key.as_str(),
        ca.as_str(),
        "--client-cert-auth=true",
    ];
    let ours = start_metered(ServerKind::Oxetcd, "https", &flags);
    let etcd = start_metered(ServerKind::Etcd35, "https", &flags);
    let ca_path = certs.ca.display().to_string();
    let client_cert = certs.client.cert.display().to_string();
    let client_key = certs.client.key.display().to_string();
    for m in [&ours, &etcd] {
        let url = format!("{}/health", m.metrics_url);
        let with_cert = curl(&[
            "--cacert",
            &ca_path,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
            &url,
        ]);
        assert_eq!(
            (with_cert.status, with_cert.body.as_str()),
            (200, "{\"health\":\"true\",\"reason\":\"\"}"),
            "{} with a client certificate",
            m.server.kind.label()
        );
        let without = curl(&["--cacert", &ca_path, &url]);
        assert_eq!(
            without.status,
            0,
            "{} without one: {without:?}",
            m.server.kind.label()
        );
        let plain = curl(&[&url.replace("https://", "http://")]);
        assert_ne!(
            plain.status,
            200,
            "{} over plain HTTP",
            m.server.kind.label()
        );
    }
}

#[test]
fn an_https_metrics_url_without_a_key_pair_is_refused_with_etcds_text() {
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("temp dir: {e}"),
    };
    let (client, peer) = (free_port(), free_port());
    let log_path = dir.path().join("server.log");
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => panic!("log file: {e}"),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
        .env_clear()
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
        .arg(format!("--listen-metrics-urls={url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot run oxetcd: {e}"),
    };
    // Bounded: a member that started after all is killed and the test fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oxetcd kept running with an https metrics URL and no key pair");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    // etcd 3.5.1: "cannot listen on TLS for 127.0.0.1:<port>: KeyFile and CertFile are not
    // presented" (checked by hand; the text comes from its listener package).
    let want = format!(
        "cannot listen on TLS for 127.0.0.1:{port}: KeyFile and CertFile are not presented"
    );
    assert!(stderr.contains(&want), "{stderr}");
}

/// `--cors` with two origins and `--host-whitelist` with two names: the same requests (each
/// Origin, each Host, a preflight, a gateway path, the metrics listener) get the same status,
/// content type, CORS headers and body from both; gRPC is never checked against the whitelist.
#[test]
fn cors_and_host_whitelist_answer_like_etcd_35() {
    if require_etcd_tools("cors_and_host_whitelist_answer_like_etcd_35").is_none() {
        return;
    }
    let flags = [
        "--cors=http://a.example.com:80,http://b.example.com:8080",
        "--host-whitelist=good.example.com,127.0.0.1",
    ];
    let ours = start_metered(ServerKind::Oxetcd, "http", &flags);
    let etcd = start_metered(ServerKind::Etcd35, "http", &flags);
    let requests: Vec<Vec<String>> = vec![
        vec![],
        vec!["-H".into(), "Origin: http://a.example.com:80".into()],
        vec!["-H".into(), "Origin: http://b.example.com:8080".into()],
        vec!["-H".into(), "Origin: http://a.example.com".into()],
        vec!["-H".into(), "Origin: *".into()],
        vec!["-H".into(), "Host: good.example.com:1234".into()],
        vec!["-H".into(), "Host: good.example.com".into()],
        vec!["-H".into(), "Host: bad.example.com:1234".into()],
        vec!["-H".into(), "Host: bad.example.com".into()],
        vec![
            "-H".into(),
            "Host: bad.example.com".into(),
            "-H".into(),
            "Origin: http://a.example.com:80".into(),
        ],
        vec![
            "-X".into(),
            "OPTIONS".into(),
            "-H".into(),
            "Origin: http://a.example.com:80".into(),
        ],
        vec![
            "-X".into(),
            "OPTIONS".into(),
            "-H".into(),
            "Host: bad.example.com".into(),
        ],
    ];
    for path in ["/health", "/no/such/path", "/v3/kv/range"] {
        for extra in &requests {
            let ask = |m: &Metered| {
                let url = format!("{}{path}", m.server.client_url);
                let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
                args.push(&url);
                curl(&args)
            };
            assert_eq!(ask(&ours), ask(&etcd), "{path} with {extra:?}");
        }
    }
    // The metrics listener checks neither.
    for m in [&ours, &etcd] {
        let url = format!("{}/health", m.metrics_url);
        let a = curl(&[
            "-H",
            "Host: bad.example.com",
            "-H",
            "Origin: http://a.example.com:80",
            &url,
        ]);
        assert_eq!(
            (a.status, a.cors.len()),
            (200, 0),
            "{}: {a:?}",
            m.server.kind.label()
        );
    }
    // gRPC reaches the member under a name the whitelist does not list.
    for m in [&ours, &etcd] {
        let port = m.server.endpoint.rsplit(':').next().unwrap_or("");
        let out = ctl(&format!("localhost:{port}"), &["put", "g", "1"], "");
        assert_eq!(out, "OK", "{}", m.server.kind.label());
    }
}

/// A server listening on unix sockets, started in its own directory (etcd names the socket
/// file `host:port` relative to the working directory); SIGKILLed and reaped on drop.
struct UnixServer {
    child: std::process::Child,
    dir: tempfile::TempDir,
    plain: String,
    secure: String,
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl 3.5 run in `dir` (so a relative unix endpoint names the server's socket).
fn ctl_in(dir: &std::path::Path, endpoint: &str, extra: &[&str], args: &[&str]) -> String {
    let tools = match common::etcd_tools() {
        Ok(tools) => tools,
        Err(e) => panic!("etcd tools: {e}"),
    };
    let out = Command::new(&tools.etcdctl35)
        .current_dir(dir)
        .env_clear()
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run etcdctl: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn start_unix(kind: ServerKind, certs: &Certs) -> UnixServer {
    let dir = match tempfile::Builder::new().prefix("oxetcd-unix-").tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("temp dir: {e}"),
    };
    let (plain_port, secure_port, peer_port) = (free_port(), free_port(), free_port());
    let plain = format!("localhost:{plain_port}");
    let secure = format!("localhost:{secure_port}");
    // A regular file left where the socket goes: etcd replaces it.
    if let Err(e) = std::fs::write(dir.path().join(&plain), b"stale") {
        panic!("cannot write the stale file: {e}");
    }
    let peer = format!("http://127.0.0.1:{peer_port}");
    let binary = match kind {
        ServerKind::Oxetcd => std::path::PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
        _ => match common::etcd_tools() {
            Ok(tools) => tools.etcd35.clone(),
            Err(e) => panic!("etcd tools: {e}"),
        },
    };
    let log = match std::fs::File::create(dir.path().join("server.log")) {
        Ok(f) => f,
        Err(e) => panic!("log file: {e}"),
    };
    let child = Command::new(binary)
        .current_dir(dir.path())
        .env_clear()
        .args(["--name=u1", "--data-dir=data"])
        .arg(format!(
            "--listen-client-urls=unix://{plain},unixs://{secure}"
        ))
        .arg(format!("--advertise-client-urls=unix://{plain}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=u1={peer}"))
        .arg(format!("--cert-file={}", certs.server.cert.display()))
        .arg(format!("--key-file={}", certs.server.key.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot start {}: {e}", kind.label()),
    };
    let server = UnixServer {
        child,
        dir,
        plain,
        secure,
    };
    let deadline = std::time::Instant::now() + common::server::STARTUP_DEADLINE;
    let endpoint = format!("unix://{}", server.plain);
    loop {
        let out = ctl_in(server.dir.path(), &endpoint, &[], &["endpoint", "health"]);
        if out.contains("is healthy") {
            return server;
        }
        let log = std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "{} not ready over {endpoint}: {out}\n{log}",
            kind.label()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `unix://` and `unixs://` client URLs: etcdctl reaches the member through each socket and
/// gets etcd's answers; the socket replaces a stale file; SIGTERM removes both sockets.
#[test]
fn unix_socket_client_urls_serve_etcdctl_like_etcd_35() {
    use std::os::unix::fs::FileTypeExt;
    if require_etcd_tools("unix_socket_client_urls_serve_etcdctl_like_etcd_35").is_none() {
        return;
    }
    let certs = Certs::generate();
    let ca = format!("--cacert={}", certs.ca.display());
    let mut answers = Vec::new();
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let mut s = start_unix(kind, &certs);
        let dir = s.dir.path().to_path_buf();
        let plain = format!("unix://{}", s.plain);
        let secure = format!("unixs://{}", s.secure);
        let mut out = vec![
            ctl_in(&dir, &plain, &[], &["put", "k", "over unix"]),
            ctl_in(&dir, &secure, &[&ca], &["put", "k2", "over unixs"]),
            ctl_in(&dir, &secure, &[&ca], &["get", "k", "k3"]),
            ctl_in(&dir, &plain, &[], &["get", "k2", "--print-value-only"]),
            ctl_in(&dir, &plain, &[], &["del", "k"]),
        ];
        // The member advertises its unix URL.
        let members = ctl_in(&dir, &plain, &[], &["member", "list"]);
        let advertised = members.rsplit(", ").nth(1).unwrap_or("");
        out.push(advertised.replace(&s.plain, "localhost:<port>"));
        for name in [&s.plain, &s.secure] {
            let meta = std::fs::symlink_metadata(dir.join(name));
            assert!(
                meta.is_ok_and(|m| m.file_type().is_socket()),
                "{}: {name} is a socket",
                kind.label()
            );
        }
        // SIGTERM: a graceful stop removes the sockets.
        let pid = s.child.id() as libc::pid_t;
        // SAFETY: kill only sends a signal to the child this test started and still owns.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while s.child.try_wait().ok().flatten().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop",
                kind.label()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for name in [&s.plain, &s.secure] {
            assert!(
                !dir.join(name).exists(),
                "{}: {name} left behind after a graceful stop",
                kind.label()
            );
        }
        answers.push(out);
    }
    assert_eq!(answers[0][0], "OK");
    assert_eq!(answers[0], answers[1], "oxetcd, then etcd 3.5");
}

/// One member of a two-member cluster whose peers talk over unix sockets; SIGKILLed and reaped
/// on drop.
struct Member(std::process::Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The label names of the first series of `family` in `text` (empty when there is none).
fn label_names(text: &str, family: &str) -> Vec<String> {
    let Some(series) = series_of(text, family).into_iter().next() else {
        return Vec::new();
    };
    let inner = series
        .split_once('{')
        .map_or("", |(_, rest)| rest.trim_end_matches('}'));
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

/// `unix://` peer URLs: two members elect a leader and replicate over their sockets (a write on
/// one is read on the other), and the peer traffic families carry etcd's labels (`To`,
/// `From`) and the heartbeat round trips; the same cluster of etcd 3.5 agrees.
#[test]
fn unix_socket_peer_urls_replicate_like_etcd_35() {
    if require_etcd_tools("unix_socket_peer_urls_replicate_like_etcd_35").is_none() {
        return;
    }
    let mut seen = Vec::new();
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let dir = match tempfile::Builder::new()
            .prefix("oxetcd-unix-peers-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("temp dir: {e}"),
        };
        let binary = match kind {
            ServerKind::Oxetcd => std::path::PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
            _ => match common::etcd_tools() {
                Ok(tools) => tools.etcd35.clone(),
                Err(e) => panic!("etcd tools: {e}"),
            },
        };
        let names = ["a", "b"];
        let peers: Vec<String> = names
            .iter()
            .map(|_| format!("unix://localhost:{}", free_port()))
            .collect();
        let clients: Vec<String> = names
            .iter()
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let cluster = format!("a={},b={}", peers[0], peers[1]);
        let mut members = Vec::new();
        for i in 0..2 {
            let log = match std::fs::File::create(dir.path().join(format!("{}.log", names[i]))) {
                Ok(f) => f,
                Err(e) => panic!("log file: {e}"),
            };
            let child = Command::new(&binary)
                .current_dir(dir.path())
                .env_clear()
                .arg(format!("--name={}", names[i]))
                .arg(format!("--data-dir={}", names[i]))
                .arg(format!("--listen-client-urls=http://{}", clients[i]))
                .arg(format!("--advertise-client-urls=http://{}", clients[i]))
                .arg(format!("--listen-peer-urls={}", peers[i]))
                .arg(format!("--initial-advertise-peer-urls={}", peers[i]))
                .arg(format!("--initial-cluster={cluster}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn();
            match child {
                Ok(child) => members.push(Member(child)),
                Err(e) => panic!("cannot start {}: {e}", kind.label()),
            }
        }
        // Both answer a linearizable read once a leader is elected over the sockets.
        let deadline = std::time::Instant::now() + common::server::STARTUP_DEADLINE;
        for client in &clients {
            loop {
                let out = ctl(client, &["get", "none"], "");
                if out.is_empty() {
                    break;
                }
                let log = std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default();
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: {client} not ready: {out}\n{log}",
                    kind.label()
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let put = ctl(&clients[0], &["put", "k", "over unix peers"], "");
        let got = ctl(&clients[1], &["get", "k", "--print-value-only"], "");
        let members_out = ctl(&clients[1], &["member", "list"], "");
        let listed: Vec<bool> = peers
            .iter()
            .map(|p| members_out.contains(p.as_str()))
            .collect();
        // Peer families: on each member, one series per other member.
        let mut labels = Vec::new();
        let mut round_trips = 0.0;
        for client in &clients {
            let text = curl(&[&format!("http://{client}/metrics")]).body;
            labels.push((
                label_names(&text, "etcd_network_peer_sent_bytes_total"),
                label_names(&text, "etcd_network_peer_received_bytes_total"),
            ));
            for series in series_of(&text, "etcd_network_peer_round_trip_time_seconds_count") {
                round_trips += value(&text, &series).unwrap_or(0.0);
            }
        }
        drop(members);
        seen.push((put, got, listed, labels, round_trips));
    }
    let (ours, etcd) = (&seen[0], &seen[1]);
    assert_eq!(
        (&ours.0, &ours.1, &ours.2),
        (
            &"OK".to_string(),
            &"over unix peers".to_string(),
            &vec![true, true]
        )
    );
    assert_eq!((&ours.0, &ours.1, &ours.2), (&etcd.0, &etcd.1, &etcd.2));
    let want = (vec!["To".to_string()], vec!["From".to_string()]);
    assert_eq!(ours.3, vec![want.clone(), want], "oxetcd's peer labels");
    assert_eq!(ours.3, etcd.3, "the same labels as etcd 3.5");
    assert!(ours.4 > 0.0, "the leader timed heartbeats");
}
