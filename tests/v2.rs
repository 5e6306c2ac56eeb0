//! The v2 API (`/v2/keys` and friends) against real etcd 3.4 started with `--enable-v2`: the
//! same scripts of HTTP calls and `ETCDCTL_API=2` etcdctl commands run on both servers and must
//! give the same answers (status, headers but IDs/dates, JSON bodies), with store indexes taken
//! relative to each server's starting index (etcd 3.4 keeps its membership in the same v2
//! store, so its index starts a few writes later).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{require_etcd_tools, Server, ServerKind};

/// Bound on any single HTTP exchange (a wait that never fires fails the test instead of
/// hanging it).
const HTTP_DEADLINE: Duration = Duration::from_secs(30);

/// One HTTP answer, as a test compares it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// Lower-cased `name: value` lines, sorted.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn etcd_index(&self) -> u64 {
        self.header("x-etcd-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Etcd-Index in {self:?}"))
    }
}

/// Sends one HTTP/1.1 request and reads the whole answer. `on_headers` runs once the status
/// line and headers arrived (a wait's registration point).
fn http_with(
    endpoint: &str,
    method: &str,
    target: &str,
    body: Option<(&str, &[u8])>,
    on_headers: impl FnOnce(),
) -> Answer {
    http_headers(endpoint, method, target, body, &[], on_headers)
}

/// `http_with` with extra request headers.
fn http_headers(
    endpoint: &str,
    method: &str,
    target: &str,
    body: Option<(&str, &[u8])>,
    extra: &[(&str, &str)],
    on_headers: impl FnOnce(),
) -> Answer {
    let mut s = TcpStream::connect(endpoint).expect("connect");
    s.set_read_timeout(Some(HTTP_DEADLINE)).expect("timeout");
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((ctype, bytes)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    if let Some((_, bytes)) = body {
        raw.extend_from_slice(bytes);
    }
    s.write_all(&raw).expect("send");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "connection closed before the headers");
        data.extend_from_slice(&buf[..n]);
    };
    on_headers();
    loop {
        let n = s.read(&mut buf).expect("read body");
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let mut body = data[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// A GET to a member that may not be listening (yet, or any more): `None` when it refuses the
/// connection or drops it mid-answer.
fn try_get(endpoint: &str, target: &str) -> Option<Answer> {
    TcpStream::connect(endpoint).ok()?;
    std::panic::catch_unwind(|| http(endpoint, "GET", target, None)).ok()
}

fn http(endpoint: &str, method: &str, target: &str, form: Option<&str>) -> Answer {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f.as_bytes()));
    http_with(endpoint, method, target, body, || {})
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + size]);
        b = &b[p + 2 + size + 2..];
    }
    out
}

/// Rewrites what legitimately differs between the servers: indexes (relative to `base`),
/// in-order key names, expirations and remaining TTLs, raft positions, IDs, dates.
fn normalize(a: &Answer, base: u64) -> String {
    let rel = |n: u64| {
        if n >= base {
            (n - base).to_string()
        } else {
            n.to_string()
        }
    };
    let mut out = format!("{}\n", a.status);
    for (n, v) in &a.headers {
        let v = match n.as_str() {
            // Go switches large bodies to chunked encoding; either framing is the same answer.
            "transfer-encoding" | "content-length" => continue,
            "date" | "x-raft-index" | "x-raft-term" | "x-etcd-cluster-id" => "*".to_string(),
            "x-etcd-index" => rel(v.parse().unwrap_or(0)),
            _ => v.clone(),
        };
        out.push_str(&format!("{n}: {v}\n"));
    }
    out.push_str(&rewrite_numbers(&a.body, &rel));
    out
}

fn rewrite_numbers(body: &str, rel: &dyn Fn(u64) -> String) -> String {
    let mut s = body.to_string();
    for field in ["\"modifiedIndex\":", "\"createdIndex\":", "\"index\":"] {
        s = replace_after(&s, field, |digits| rel(digits.parse().unwrap_or(0)));
    }
    s = replace_after(&s, "\"ttl\":", |_| "T".into());
    // "the requested history has been cleared [oldest/asked]"
    s = replace_after(&s, "cleared [", |d| rel(d.parse().unwrap_or(0)));
    let marker = "cleared [";
    if let Some(p) = s.find(marker) {
        if let Some(slash) = s[p..].find('/') {
            let at = p + slash + 1;
            let len = s[at..].bytes().take_while(u8::is_ascii_digit).count();
            let n = rel(s[at..at + len].parse().unwrap_or(0));
            s.replace_range(at..at + len, &n);
        }
    }
    s = replace_after(&s, "\"expiration\":\"", |_| "E".into());
    // In-order keys are the index, zero-padded to 20 digits.
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(p) = rest.find('/') {
        out.push_str(&rest[..=p]);
        rest = &rest[p + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 20 {
            out.push_str(&format!(
                "{:020}",
                rel(rest[..20].parse().unwrap_or(0))
                    .parse::<u64>()
                    .unwrap_or(0)
            ));
            rest = &rest[20..];
        }
    }
    out.push_str(rest);
    // Compare causes: "[a != b]" with indexes.
    let mut fixed = String::new();
    let mut rest = out.as_str();
    while let Some(p) = rest.find(" != ") {
        let (before, after) = rest.split_at(p);
        let lhs_start = before.rfind('[').map_or(before.len(), |i| i + 1);
        let lhs = &before[lhs_start..];
        let rhs_len = after[4..].find(']').unwrap_or(0);
        let rhs = &after[4..4 + rhs_len];
        fixed.push_str(&before[..lhs_start]);
        let num = |t: &str| t.parse::<u64>().map(rel).unwrap_or_else(|_| t.to_string());
        if lhs.parse::<u64>().is_ok() && rhs.parse::<u64>().is_ok() {
            fixed.push_str(&format!("{} != {}", num(lhs), num(rhs)));
        } else {
            fixed.push_str(&format!("{lhs} != {rhs}"));
        }
        rest = &after[4 + rhs_len..];
    }
    fixed.push_str(rest);
    fixed
}

fn replace_after(s: &str, marker: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find(marker) {
        out.push_str(&rest[..p + marker.len()]);
        rest = &rest[p + marker.len()..];
        let len = if marker.ends_with('"') {
            rest.find('"').unwrap_or(0)
        } else {
            rest.bytes()
                .take_while(|c| c.is_ascii_digit() || *c == b'-')
                .count()
        };
        out.push_str(&f(&rest[..len]));
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// Fails with the first place where etcd's transcript entry and oxetcd's differ.
fn assert_same(etcd: &str, ox: &str) {
    if etcd == ox {
        return;
    }
    let at = etcd
        .bytes()
        .zip(ox.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(etcd.len().min(ox.len()));
    let from = at.saturating_sub(200);
    let cut = |s: &str| {
        s.get(from..(at + 200).min(s.len()))
            .unwrap_or("")
            .to_string()
    };
    panic!(
        "etcd 3.4 and oxetcd differ at byte {at} of:\n{}\n--- etcd 3.4: ...{}\n--- oxetcd:   ...{}",
        etcd.lines().next().unwrap_or(""),
        cut(etcd),
        cut(ox)
    );
}

/// One server under test and its transcript.
struct Run<'a> {
    endpoint: &'a str,
    base: u64,
    log: Vec<String>,
}

impl Run<'_> {
    fn call(&mut self, method: &str, target: &str, form: Option<&str>) -> Answer {
        let a = http(self.endpoint, method, target, form);
        let base = self.base;
        let shown = replace_after(target, "Index=", |d| match d.parse::<u64>() {
            Ok(n) if n >= base => (n - base).to_string(),
            _ => d.to_string(),
        });
        self.log.push(format!(
            "{method} {shown} {}\n{}",
            form.unwrap_or(""),
            normalize(&a, self.base)
        ));
        a
    }

    /// The real index for a relative one (requests must name real indexes).
    fn idx(&self, relative: u64) -> u64 {
        self.base + relative
    }

    /// Starts a wait, runs `trigger` once the wait is registered, returns the wait's answer.
    fn wait_for(&mut self, target: &str, trigger: impl FnOnce(&mut Self)) -> Answer {
        let (tx, rx) = mpsc::channel();
        let endpoint = self.endpoint.to_string();
        let t = target.to_string();
        let handle = thread::spawn(move || {
            http_with(&endpoint, "GET", &t, None, move || {
                let _ = tx.send(());
            })
        });
        rx.recv_timeout(HTTP_DEADLINE)
            .expect("the wait answered its headers");
        trigger(self);
        let a = handle.join().expect("wait thread");
        let base = self.base;
        let shown = replace_after(target, "Index=", |d| match d.parse::<u64>() {
            Ok(n) if n >= base => (n - base).to_string(),
            _ => d.to_string(),
        });
        self.log
            .push(format!("WAIT {shown}\n{}", normalize(&a, self.base)));
        a
    }
}

fn start_pair(test: &str) -> Option<(Server, Server)> {
    start_pair_with(test, &[])
}

/// `start_pair` with more flags for oxetcd.
fn start_pair_with(test: &str, oxetcd_flags: &[&str]) -> Option<(Server, Server)> {
    require_etcd_tools(test)?;
    let etcd = Server::start_with(ServerKind::Etcd34, "default", &["--enable-v2=true"])
        .expect("start etcd 3.4");
    let mut flags = vec!["--enable-v2=true"];
    flags.extend_from_slice(oxetcd_flags);
    let ox = Server::start_with(ServerKind::Oxetcd, "default", &flags).expect("start oxetcd");
    Some((etcd, ox))
}

/// Opens a `stream=true` wait, runs `trigger` once it is registered, reads `events` events,
/// then hangs up (the server must let the watch go: `/v2/stats/store` counts it no more).
fn stream_for(run: &mut Run, target: &str, events: usize, trigger: impl FnOnce(&mut Run)) {
    let mut s = TcpStream::connect(run.endpoint).expect("connect");
    s.set_read_timeout(Some(HTTP_DEADLINE)).expect("timeout");
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !data.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "closed before the headers");
        data.extend_from_slice(&buf[..n]);
    }
    trigger(run);
    while String::from_utf8_lossy(&data).matches("\"action\"").count() < events {
        let n = s.read(&mut buf).expect("read events");
        assert!(n > 0, "stream ended early");
        data.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let text = String::from_utf8_lossy(&data).to_string();
    let body_at = text.find("\r\n\r\n").map_or(0, |p| p + 4);
    let events: Vec<String> = dechunk(&data[body_at..])
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            rewrite_numbers(&String::from_utf8_lossy(l), &|n| {
                if n >= run.base {
                    (n - run.base).to_string()
                } else {
                    n.to_string()
                }
            })
        })
        .collect();
    run.log
        .push(format!("STREAM {}\n{}", events.len(), events.join("\n")));
    let deadline = Instant::now() + HTTP_DEADLINE;
    loop {
        let stats = http(run.endpoint, "GET", "/v2/stats/store", None);
        if stats.body.contains("\"watchers\":0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hung-up stream is still watching: {}",
            stats.body
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The script of v2 calls; every parameter of the issue, errors, waits, TTL expiry, a wait
/// on a cleared index.
fn script(run: &mut Run) {
    run.call("GET", "/v2/keys", None);
    run.call("PUT", "/v2/keys/foo", Some("value=bar"));
    run.call("PUT", "/v2/keys/foo", Some("value=b%20z%3C%26%3E"));
    run.call("GET", "/v2/keys/foo", None);
    run.call("HEAD", "/v2/keys/foo", None);
    run.call("GET", "/v2/keys/foo?quorum=true", None);
    run.call("GET", "/v2/keys/foo?quorum=true&wait=true", None);
    run.call("HEAD", "/v2/keys/foo?wait=true", None);
    run.call("PUT", "/v2/keys/foo?prevExist=false", Some("value=x"));
    run.call("PUT", "/v2/keys/nokey?prevExist=true", Some("value=x"));
    run.call("PUT", "/v2/keys/foo?prevExist=true", Some("value=upd"));
    run.call("PUT", "/v2/keys/foo?prevValue=zz", Some("value=x"));
    run.call("PUT", "/v2/keys/foo?prevValue=upd", Some("value=cas1"));
    let prev = run.idx(4);
    run.call(
        "PUT",
        &format!("/v2/keys/foo?prevIndex={prev}"),
        Some("value=cas2"),
    );
    run.call(
        "PUT",
        &format!("/v2/keys/foo?prevIndex={}&prevValue=cas1", run.idx(99)),
        Some("value=x"),
    );
    run.call(
        "PUT",
        "/v2/keys/foo?prevExist=true&prevValue=cas2",
        Some("value=cas3"),
    );
    run.call("PUT", "/v2/keys/foo/bar", Some("value=x"));
    run.call("PUT", "/v2/keys/foo/bar?prevExist=false", Some("value=x"));
    run.call("PUT", "/v2/keys/nv", Some("value=1&noValueOnSuccess=true"));
    // Directories.
    run.call("PUT", "/v2/keys/dir?dir=true", None);
    run.call("PUT", "/v2/keys/dir?dir=true", None);
    run.call("PUT", "/v2/keys/dir", Some("value=x"));
    run.call("PUT", "/v2/keys/dir/a", Some("value=1"));
    run.call("PUT", "/v2/keys/dir/_hidden", Some("value=h"));
    run.call("PUT", "/v2/keys/dir/sub/b", Some("value=2"));
    run.call("PUT", "/v2/keys/dir-x", Some("value=3"));
    run.call("GET", "/v2/keys/dir?sorted=true", None);
    run.call("GET", "/v2/keys/dir?recursive=true&sorted=true", None);
    run.call("GET", "/v2/keys/?recursive=true&sorted=true", None);
    run.call("GET", "/v2/keys/dir/_hidden", None);
    run.call("GET", "/v2/keys/dir/a/b", None);
    run.call("GET", "/v2/keys/missing/deeper", None);
    run.call("PUT", "/v2/keys/dir?prevExist=true&dir=true", None);
    run.call("DELETE", "/v2/keys/dir", None);
    run.call("DELETE", "/v2/keys/dir?dir=true", None);
    run.call("DELETE", "/v2/keys/dir/sub?recursive=true", None);
    run.call("DELETE", "/v2/keys/dir?recursive=true", None);
    run.call("DELETE", "/v2/keys/foo?prevValue=nope", None);
    run.call("DELETE", "/v2/keys/foo?prevValue=cas3", None);
    run.call("DELETE", "/v2/keys/nv?prevIndex=1", None);
    run.call("DELETE", "/v2/keys/nokey", None);
    run.call("PUT", "/v2/keys", Some("value=x"));
    run.call("DELETE", "/v2/keys/?recursive=true", None);
    // In-order keys.
    run.call("POST", "/v2/keys/queue", Some("value=job1"));
    run.call("POST", "/v2/keys/queue", Some("value=job2"));
    run.call("GET", "/v2/keys/queue?sorted=true", None);
    // TTLs and refresh.
    run.call("PUT", "/v2/keys/ttl?ttl=100", Some("value=v"));
    run.call("PUT", "/v2/keys/ttl?ttl=200&refresh=true", None);
    run.call("PUT", "/v2/keys/ttl?refresh=true", None);
    run.call("PUT", "/v2/keys/ttl?refresh=true&ttl=5", Some("value=v"));
    run.call("PUT", "/v2/keys/ttl", Some("value=permanent&ttl="));
    run.call("GET", "/v2/keys/ttl", None);
    run.call("PUT", "/v2/keys/gone?refresh=true&ttl=5", None);
    // Bad input.
    run.call("PUT", "/v2/keys/bad?ttl=abc", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?ttl=-1", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?prevIndex=x", Some("value=1"));
    run.call("GET", "/v2/keys/bad?waitIndex=1.5&wait=true", None);
    run.call("PUT", "/v2/keys/bad?prevValue=", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?recursive=maybe", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?prevExist=maybe", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?wait=true", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?x=%zz", Some("value=1"));
    run.call("PUT", "/v2/keys/bad", Some("value=%G1"));
    run.call("PUT", "/v2/keys/bad?a=1;b=2", Some("value=1"));
    run.call("PUT", "/v2/keys/bad?unknown=1", Some("value=1&other=2"));
    run.call("PATCH", "/v2/keys/bad", None);
    run.call("GET", "/v2/keys//bad/../x", None);
    let deep = format!("/v2/keys{}", "/d".repeat(40));
    run.call("PUT", &deep, Some("value=deep"));
    run.call("GET", "/v2/keys/d?recursive=true", None);
    let huge = format!("value={}", "v".repeat(2 * 1024 * 1024));
    let a = http(run.endpoint, "PUT", "/v2/keys/huge", Some(&huge));
    run.log
        .push(format!("PUT huge\n{} {}", a.status, a.body.len()));
    let a = http(run.endpoint, "GET", "/v2/keys/huge", None);
    run.log
        .push(format!("GET huge\n{} {}", a.status, a.body.len()));
    // Waits: from the history, then one that fires on a later write, recursive.
    run.call(
        "GET",
        &format!(
            "/v2/keys/queue?wait=true&recursive=true&waitIndex={}",
            run.idx(1)
        ),
        None,
    );
    run.wait_for("/v2/keys/w?wait=true", |r| {
        r.call("PUT", "/v2/keys/w", Some("value=fired"));
    });
    run.wait_for("/v2/keys/wd?wait=true&recursive=true", |r| {
        r.call("PUT", "/v2/keys/wd/_hidden", Some("value=not seen"));
        r.call("PUT", "/v2/keys/wd/child", Some("value=seen"));
    });
    stream_for(
        run,
        "/v2/keys/st?wait=true&stream=true&recursive=true",
        3,
        |r| {
            for v in ["1", "2", "3"] {
                r.call(
                    "PUT",
                    &format!("/v2/keys/st/k{v}"),
                    Some(&format!("value={v}")),
                );
            }
        },
    );
    // TTL expiry, observed through a wait (no sleeping).
    let set = run.call("PUT", "/v2/keys/lease?ttl=1", Some("value=short"));
    let after = set.etcd_index() + 1;
    run.wait_for(
        &format!("/v2/keys/lease?wait=true&waitIndex={after}"),
        |_| {},
    );
    run.call("GET", "/v2/keys/lease", None);
}

/// More writes than the history holds, then a wait on an index that was cleared.
fn cleared_history(run: &mut Run) {
    for i in 0..1010 {
        let a = http(
            run.endpoint,
            "PUT",
            "/v2/keys/churn",
            Some(&format!("value={i}")),
        );
        assert!(a.status == 200 || a.status == 201, "{a:?}");
    }
    run.call(
        "GET",
        &format!("/v2/keys/churn?wait=true&waitIndex={}", run.idx(1)),
        None,
    );
}

#[test]
fn v2_http_script_matches_etcd_34() {
    let Some((etcd, ox)) = start_pair("v2_http_script_matches_etcd_34") else {
        return;
    };
    let mut logs = Vec::new();
    for server in [&etcd, &ox] {
        let base = http(&server.endpoint, "GET", "/v2/keys", None).etcd_index();
        let mut run = Run {
            endpoint: &server.endpoint,
            base,
            log: Vec::new(),
        };
        script(&mut run);
        cleared_history(&mut run);
        logs.push(run.log);
    }
    assert_eq!(logs[0].len(), logs[1].len());
    for (e, o) in logs[0].iter().zip(&logs[1]) {
        assert_same(e, o);
    }
}

/// Without `--enable-v2` the v2 paths answer as etcd 3.4's do without it.
#[test]
fn v2_is_off_by_default_as_in_etcd_34() {
    if require_etcd_tools("v2_is_off_by_default_as_in_etcd_34").is_none() {
        return;
    }
    let etcd = Server::start(ServerKind::Etcd34).expect("start etcd");
    let ox = Server::start(ServerKind::Oxetcd).expect("start oxetcd");
    for target in [
        "/v2/keys/foo",
        "/v2/members",
        "/v2/machines",
        "/v2/stats/self",
    ] {
        let e = http(&etcd.endpoint, "GET", target, None);
        let o = http(&ox.endpoint, "GET", target, None);
        assert_eq!(normalize(&e, 0), normalize(&o, 0), "{target}");
    }
}

/// Runs etcdctl 3.4 in v2 mode; killed after the deadline.
fn etcdctl_v2(endpoint: &str, args: &[&str]) -> String {
    let tools = common::etcd_tools().expect("tools");
    let mut child = Command::new(&tools.etcdctl34)
        .env_clear()
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints=http://{endpoint}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl");
    let deadline = Instant::now() + HTTP_DEADLINE;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("etcdctl output");
    format!(
        "{}\n{}\nexit {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    )
}

#[test]
fn etcdctl_v2_transcripts_match_etcd_34() {
    let Some((etcd, ox)) = start_pair("etcdctl_v2_transcripts_match_etcd_34") else {
        return;
    };
    let mut transcripts = Vec::new();
    for server in [&etcd, &ox] {
        let base = http(&server.endpoint, "GET", "/v2/keys", None).etcd_index();
        let ep = server.endpoint.as_str();
        let after = (base + 1).to_string();
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "set",
                "/coreos.com/network/config",
                "{\"Network\":\"10.1.0.0/16\"}",
            ],
            vec!["get", "/coreos.com/network/config"],
            vec![
                "mk",
                "/coreos.com/network/subnets/10.1.5.0-24",
                "lease",
                "--ttl",
                "100",
            ],
            vec!["mk", "/coreos.com/network/subnets/10.1.5.0-24", "again"],
            vec!["mkdir", "/emptydir"],
            vec!["mkdir", "/emptydir"],
            vec!["update", "/coreos.com/network/config", "new"],
            vec!["update", "/nokey", "x"],
            vec!["updatedir", "/emptydir", "--ttl", "100"],
            vec!["ls", "/coreos.com/network", "-r", "--sort"],
            vec!["ls", "/", "-p", "--sort"],
            vec!["get", "/nokey"],
            vec!["rm", "/coreos.com/network/config"],
            vec!["rm", "/coreos.com"],
            vec!["rmdir", "/emptydir"],
            vec!["rm", "/coreos.com", "--recursive"],
            vec![
                "watch",
                "/coreos.com/network/config",
                "--after-index",
                &after,
            ],
        ];
        let mut log = Vec::new();
        for step in steps {
            let out = etcdctl_v2(ep, &step);
            let step: Vec<&str> = step
                .iter()
                .map(|a| if *a == after.as_str() { "AFTER" } else { a })
                .collect();
            let out = out.replace(ep, "ENDPOINT");
            let rel = |n: u64| {
                if n >= base {
                    (n - base).to_string()
                } else {
                    n.to_string()
                }
            };
            // etcdctl prints an error's index as "[N]".
            let out = replace_after(&out, ") [", |d| rel(d.parse().unwrap_or(0)));
            log.push(format!("{step:?}\n{}", rewrite_numbers(&out, &rel)));
        }
        let members = etcdctl_v2(ep, &["member", "list"]);
        log.push(format!("member list lines {}", members.lines().count()));
        let health = etcdctl_v2(ep, &["cluster-health"]);
        log.push(format!(
            "cluster-health healthy {}",
            health.contains("cluster is healthy")
        ));
        transcripts.push(log);
    }
    for (e, o) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_same(e, o);
    }
}

/// Three oxetcd members on free ports, killed on drop.
struct Trio {
    dir: tempfile::TempDir,
    ports: Vec<(u16, u16)>,
    children: Vec<Option<std::process::Child>>,
}

const TRIO_NAMES: [&str; 3] = ["m0", "m1", "m2"];

impl Trio {
    fn start() -> Trio {
        let ports = TRIO_NAMES
            .iter()
            .map(|_| (common::free_port(), common::free_port()))
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-v2-trio-")
            .tempdir()
            .expect("temp dir");
        let mut trio = Trio {
            dir,
            ports,
            children: vec![None, None, None],
        };
        for i in 0..3 {
            trio.spawn(i);
        }
        for i in 0..3 {
            trio.wait_serving(i);
        }
        trio
    }

    fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].0)
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = TRIO_NAMES
            .iter()
            .zip(&self.ports)
            .map(|(n, (_, p))| format!("{n}=http://127.0.0.1:{p}"))
            .collect();
        let (c, p) = self.ports[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", TRIO_NAMES[i])))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
            .env_clear()
            .args(["--name", TRIO_NAMES[i]])
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(TRIO_NAMES[i]).display()
            ))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{p}"
            ))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .args(["--enable-v2=true", "--snapshot-count=20", "--bcrypt-cost=4"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn oxetcd");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Polls (with a deadline) until `probe` holds for member `i`'s answer to a GET.
    fn wait_for(&self, i: usize, target: &str, probe: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + HTTP_DEADLINE;
        loop {
            if let Some(a) = try_get(&self.endpoint(i), target) {
                if probe(&a) {
                    return a;
                }
            }
            assert!(
                Instant::now() < deadline,
                "member {i}: {target} never matched"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_serving(&self, i: usize) {
        self.wait_for(i, "/v2/keys?quorum=true", |a| a.status == 200);
    }

    /// The member that reports itself leader.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + HTTP_DEADLINE;
        loop {
            for i in (0..3).filter(|i| self.children[*i].is_some()) {
                if let Some(a) = try_get(&self.endpoint(i), "/v2/stats/self") {
                    if a.body.contains("\"state\":\"StateLeader\"") {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Trio {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

/// v2 writes through every member, TTL expiry decided by a new leader after the old one died,
/// and a restarted member that rebuilds its v2 tree from its snapshot and log.
#[test]
fn three_members_replicate_expire_and_restore_the_v2_tree() {
    let mut trio = Trio::start();
    for i in 0..3 {
        let a = http(
            &trio.endpoint(i),
            "PUT",
            &format!("/v2/keys/via/m{i}"),
            Some("value=v"),
        );
        assert!(a.status == 201, "write through member {i}: {a:?}");
    }
    for i in 0..3 {
        let a = http(
            &trio.endpoint(i),
            "GET",
            "/v2/keys/via?recursive=true&sorted=true&quorum=true",
            None,
        );
        for j in 0..3 {
            assert!(
                a.body.contains(&format!("\"key\":\"/via/m{j}\"")),
                "member {i}: {}",
                a.body
            );
        }
    }
    // v2 auth changes through each member in turn: a root user, a role reading `/via/*`, a
    // user with it, auth on (which makes the guest role: requests without credentials, as
    // the rest of this test makes, keep full access).
    let changes: [(&str, &str, &str, &str); 4] = [
        (
            "PUT",
            "/v2/auth/users/root",
            r#"{"user":"root","password":"rootpw"}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/ro",
            r#"{"role":"ro","permissions":{"kv":{"read":["/via/*"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/r",
            r#"{"user":"r","password":"rpw","roles":["ro"]}"#,
            "",
        ),
        ("PUT", "/v2/auth/enable", "", ""),
    ];
    for (i, (method, target, body, credentials)) in changes.into_iter().enumerate() {
        let a = v2_auth_call(&trio.endpoint(i % 3), method, target, body, credentials);
        assert!(
            a.status < 300,
            "{method} {target} through member {}: {a:?}",
            i % 3
        );
    }
    // Enough writes for every member to take a snapshot (--snapshot-count=20).
    for k in 0..40 {
        let a = http(
            &trio.endpoint(k % 3),
            "PUT",
            &format!("/v2/keys/bulk/{k}"),
            Some("value=x"),
        );
        assert!(a.status == 201, "{a:?}");
    }
    let leader = trio.leader();
    let survivor = (leader + 1) % 3;
    let set = http(
        &trio.endpoint(survivor),
        "PUT",
        "/v2/keys/lease?ttl=2",
        Some("value=short"),
    );
    assert_eq!(set.status, 201, "{set:?}");
    trio.kill(leader);
    // The new leader expires the key; a wait on the survivor sees the expiry.
    let after = set.etcd_index() + 1;
    let a = http(
        &trio.endpoint(survivor),
        "GET",
        &format!("/v2/keys/lease?wait=true&waitIndex={after}"),
        None,
    );
    assert!(a.body.starts_with("{\"action\":\"expire\""), "{a:?}");
    let a = http(
        &trio.endpoint(survivor),
        "PUT",
        "/v2/keys/after-failover",
        Some("value=1"),
    );
    assert_eq!(a.status, 201, "{a:?}");
    // The old leader comes back from its own snapshot and log, then catches up.
    trio.spawn(leader);
    let a = trio.wait_for(leader, "/v2/keys/after-failover", |a| a.status == 200);
    assert!(a.body.contains("\"value\":\"1\""), "{a:?}");
    let a = http(
        &trio.endpoint(leader),
        "GET",
        "/v2/keys/bulk?sorted=true",
        None,
    );
    assert_eq!(a.body.matches("\"key\":\"/bulk/").count(), 40, "{}", a.body);
    let a = http(&trio.endpoint(leader), "GET", "/v2/keys/lease", None);
    assert_eq!(
        a.status, 404,
        "the expiry reached the restarted member: {a:?}"
    );
    // The restarted member kept v2 auth (from its snapshot and log): auth is on, a wrong
    // password is refused, the reader reads but does not write, root sees both users.
    let ep = trio.endpoint(leader);
    let a = v2_auth_call(&ep, "GET", "/v2/auth/enable", "", "");
    assert_eq!(a.body, "{\"enabled\":true}\n", "{a:?}");
    assert_eq!(
        v2_auth_call(&ep, "GET", "/v2/keys/via/m0", "", "r:bad").status,
        401
    );
    let a = v2_auth_call(&ep, "GET", "/v2/keys/via/m0", "", "r:rpw");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        v2_auth_call(&ep, "PUT", "/v2/keys/via/m0", "", "r:rpw").status,
        401
    );
    let a = v2_auth_call(&ep, "GET", "/v2/auth/users", "", "root:rootpw");
    assert!(
        a.body
            .starts_with(r#"{"users":[{"user":"r","roles":[{"role":"ro""#)
            && a.body.contains(r#"{"user":"root","roles":[{"role":"root""#),
        "{a:?}"
    );
}

/// One v2 auth request: a JSON body when `body` is not empty, basic auth when `credentials`
/// is not empty.
fn v2_auth_call(
    endpoint: &str,
    method: &str,
    target: &str,
    body: &str,
    credentials: &str,
) -> Answer {
    let auth = basic(credentials);
    let mut extra = Vec::new();
    if !credentials.is_empty() {
        extra.push(("Authorization", auth.as_str()));
    }
    let body = (!body.is_empty()).then_some(("application/json", body.as_bytes()));
    http_headers(endpoint, method, target, body, &extra, || {})
}

/// flannel's v2 protocol (config, subnet leases created with prevExist=false and a TTL,
/// renewal, a watch from an index, resync after the history was cleared, an expired lease
/// lost) through PyPI python-etcd 0.4.5: the same lines from etcd 3.4 and oxetcd.
#[test]
fn flannel_protocol_through_python_etcd_matches_etcd_34() {
    let test = "flannel_protocol_through_python_etcd_matches_etcd_34";
    let probe = Command::new("python3")
        .args(["-c", "import etcd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        assert!(
            !common::in_ci(),
            "python-etcd missing (`pip install python-etcd==0.4.5`)"
        );
        eprintln!("skipping {test}: python package python-etcd missing");
        return;
    }
    let Some((etcd, ox)) = start_pair(test) else {
        return;
    };
    let script = format!("{}/tests/clients/flannel_v2.py", env!("CARGO_MANIFEST_DIR"));
    let run = |server: &Server| {
        let (host, port) = server.endpoint.rsplit_once(':').expect("host:port");
        let out = Command::new("python3")
            .args([script.as_str(), host, port])
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "flannel script against {}: {}\n{text}\n{}",
            server.endpoint,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let expected = run(&etcd);
    assert!(expected.contains("lease lost expire"), "{expected}");
    assert!(expected.contains("history cleared 401"), "{expected}");
    assert_same(&expected, &run(&ox));
}

/// `/v2/members`, `/v2/machines`, `/v2/members/leader` and the read side of `/v2/auth/*`
/// (v2 auth disabled) answer as etcd 3.4's do, IDs and URLs aside.
#[test]
fn members_machines_and_auth_paths_match_etcd_34() {
    let Some((etcd, ox)) = start_pair("members_machines_and_auth_paths_match_etcd_34") else {
        return;
    };
    let targets = [
        ("GET", "/v2/members"),
        ("GET", "/v2/members/leader"),
        ("GET", "/v2/members/nothex"),
        ("DELETE", "/v2/members/1234"),
        ("GET", "/v2/machines"),
        ("GET", "/v2/auth/enable"),
        ("DELETE", "/v2/auth/enable"),
        ("GET", "/v2/auth/users"),
        ("GET", "/v2/auth/users/root"),
        ("GET", "/v2/auth/roles"),
        ("GET", "/v2/auth/roles/root"),
        ("GET", "/v2/auth/roles/x"),
        ("GET", "/v2/nothing"),
    ];
    for (method, target) in targets {
        let mut answers = Vec::new();
        for server in [&etcd, &ox] {
            let a = http(&server.endpoint, method, target, None);
            let mut text = normalize(&a, 0);
            for (from, to) in [
                (server.client_url.as_str(), "CLIENT"),
                (server.peer_url.as_str(), "PEER"),
            ] {
                text = text.replace(from, to);
            }
            // Member IDs and names differ between the two servers.
            text = replace_after(&text, "\"id\":\"", |_| "ID".into());
            answers.push(text);
        }
        assert_same(&answers[0], &answers[1]);
    }
    // Member changes through /v2/members: refusals that leave the one-member cluster intact.
    let posts: [(&str, &str, &str); 4] = [
        ("POST", "application/x-www-form-urlencoded", "peerURLs=x"),
        ("POST", "application/json", r#"{"peerURLs":["PEER"]}"#),
        (
            "PUT",
            "application/json",
            r#"{"peerURLs":["http://127.0.0.1:1"]}"#,
        ),
        ("DELETE", "application/json", ""),
    ];
    for (method, ctype, body) in posts {
        let mut answers = Vec::new();
        for server in [&etcd, &ox] {
            let body = body.replace("PEER", &server.peer_url);
            let target = if method == "POST" {
                "/v2/members"
            } else {
                "/v2/members/abcdef"
            };
            let a = http_with(
                &server.endpoint,
                method,
                target,
                Some((ctype, body.as_bytes())),
                || {},
            );
            answers.push(normalize(&a, 0));
        }
        assert_same(&answers[0], &answers[1]);
    }
}

/// `Authorization: Basic` for `user:password`.
fn basic(credentials: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// v2 auth over HTTP: users, roles, enabling and disabling, and what each credential may do on
/// `/v2/keys` and `/v2/members`, step by step on both servers: statuses, headers (indexes
/// relative), bodies. The store indexes of keys written after the auth changes show that
/// every change took the indexes etcd's internal nodes take.
#[test]
fn v2_auth_matches_etcd_34() {
    // Cost 4 keeps the debug build's password checks quick; etcd 3.4 always hashes v2
    // passwords at bcrypt's default cost, which no answer shows.
    let Some((etcd, ox)) = start_pair_with("v2_auth_matches_etcd_34", &["--bcrypt-cost=4"]) else {
        return;
    };
    const JSON: &str = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded";
    // (method, target, body content type, body, credentials)
    let steps: Vec<(&str, &str, &str, &str, &str)> = vec![
        ("GET", "/v2/auth/enable", "", "", ""),
        ("PUT", "/v2/auth/enable", "", "", ""),
        ("GET", "/v2/auth/users", "", "", ""),
        ("POST", "/v2/auth/users", "", "", ""),
        ("PATCH", "/v2/auth/users/x", "", "", ""),
        ("GET", "/v2/auth/users/a/b", "", "", ""),
        (
            "PUT",
            "/v2/auth/users/root",
            JSON,
            r#"{"user":"root","password":"rootpw"}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/root",
            JSON,
            r#"{"user":"root","password":"rootpw"}"#,
            "",
        ),
        ("PUT", "/v2/auth/users/root", JSON, r#"{"user":"root"}"#, ""),
        (
            "PUT",
            "/v2/auth/users/alice",
            JSON,
            r#"{"user":"alice","password":"a","roles":["reader"]}"#,
            "",
        ),
        ("PUT", "/v2/auth/users/bob", JSON, r#"{"user":"bob"}"#, ""),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bobby","password":"x"}"#,
            "",
        ),
        ("PUT", "/v2/auth/users/bob", JSON, "not json", ""),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","password":7}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","grant":["x"]}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"User":"bob","Password":"b","roles":[]} trailing"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/carol",
            JSON,
            r#"{"user":"carol","password":"c","roles":["ghost"]}"#,
            "",
        ),
        ("GET", "/v2/auth/users/carol", "", "", ""),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader","permissions":{"kv":{"read":["/pub/*"],"write":[]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader"}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader","grant":{"kv":{"read":["/pub/*"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader","grant":{"kv":{"write":["/pub/w"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader","revoke":{"kv":{"read":["/nothing"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/reader",
            JSON,
            r#"{"role":"reader","permissions":{"kv":{"read":["/x"]}},"grant":{"kv":{"read":["/y"]}}}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/roles/nope",
            JSON,
            r#"{"role":"nope","revoke":{"kv":{"read":["/x"]}}}"#,
            "",
        ),
        ("PUT", "/v2/auth/roles/root", JSON, r#"{"role":"root"}"#, ""),
        (
            "PUT",
            "/v2/auth/roles/tmp",
            JSON,
            r#"{"role":"tmp","permissions":{"kv":{"read":["/b","/a"]}}}"#,
            "",
        ),
        ("GET", "/v2/auth/roles/tmp", "", "", ""),
        ("DELETE", "/v2/auth/roles/tmp", "", "", ""),
        ("DELETE", "/v2/auth/roles/tmp", "", "", ""),
        ("DELETE", "/v2/auth/roles/root", "", "", ""),
        ("GET", "/v2/auth/roles", "", "", ""),
        ("GET", "/v2/auth/roles/", "", "", ""),
        ("GET", "/v2/auth/users", "", "", ""),
        ("GET", "/v2/auth/users/alice", "", "", ""),
        ("GET", "/v2/auth/users/nobody", "", "", ""),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","grant":["reader"]}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","grant":["reader"]}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","revoke":["zzz"]}"#,
            "",
        ),
        (
            "PUT",
            "/v2/auth/users/bob",
            JSON,
            r#"{"user":"bob","roles":["a"],"grant":["b"]}"#,
            "",
        ),
        ("PUT", "/v2/keys/pub/x", FORM, "value=1", ""),
        ("PUT", "/v2/auth/enable", "", "", ""),
        ("GET", "/v2/auth/enable", "", "", ""),
        ("PUT", "/v2/auth/enable", "", "", "root:rootpw"),
        ("GET", "/v2/auth/users", "", "", ""),
        ("GET", "/v2/auth/users", "", "", "root:wrong"),
        ("GET", "/v2/auth/users", "", "", "alice:a"),
        ("GET", "/v2/auth/roles", "", "", "root:rootpw"),
        ("GET", "/v2/keys/pub/x", "", "", ""),
        ("PUT", "/v2/keys/pub/guest", FORM, "value=g", ""),
        ("DELETE", "/v2/auth/roles/guest", "", "", "root:rootpw"),
        ("GET", "/v2/keys/pub/x", "", "", ""),
        ("GET", "/v2/keys/pub/x", "", "", "alice:a"),
        ("GET", "/v2/keys/pub/x", "", "", "alice:wrong"),
        ("PUT", "/v2/keys/pub/x", FORM, "value=2", "alice:a"),
        ("PUT", "/v2/keys/pub/w", FORM, "value=3", "alice:a"),
        ("GET", "/v2/keys/pub?recursive=true", "", "", "alice:a"),
        (
            "GET",
            "/v2/keys/pub/?recursive=true&sorted=true",
            "",
            "",
            "alice:a",
        ),
        ("GET", "/v2/keys/other", "", "", "alice:a"),
        ("GET", "/v2/keys/pub/x", "", "", "carol:c"),
        ("GET", "/v2/keys/pub/x", "", "", "root:rootpw"),
        ("DELETE", "/v2/auth/users/root", "", "", "root:rootpw"),
        (
            "POST",
            "/v2/members",
            JSON,
            r#"{"peerURLs":["http://127.0.0.1:1"]}"#,
            "alice:a",
        ),
        ("GET", "/v2/members/leader", "", "", ""),
        ("DELETE", "/v2/auth/enable", "", "", "alice:a"),
        ("DELETE", "/v2/auth/enable", "", "", "root:rootpw"),
        ("DELETE", "/v2/auth/enable", "", "", ""),
        ("DELETE", "/v2/auth/users/alice", "", "", ""),
        ("DELETE", "/v2/auth/users/alice", "", "", ""),
        ("PUT", "/v2/keys/after", FORM, "value=1", ""),
        ("GET", "/v2/keys/?sorted=true", "", "", ""),
    ];
    let mut logs = Vec::new();
    for server in [&etcd, &ox] {
        let base = http(&server.endpoint, "GET", "/v2/keys", None).etcd_index();
        let mut log = Vec::new();
        for (method, target, ctype, body, credentials) in &steps {
            let a = if *ctype == FORM {
                // Form bodies only on keys writes, which take no credentials here.
                assert!(credentials.is_empty() || !target.starts_with("/v2/auth"));
                let auth = basic(credentials);
                let mut extra = Vec::new();
                if !credentials.is_empty() {
                    extra.push(("Authorization", auth.as_str()));
                }
                let body = Some((FORM, body.as_bytes()));
                http_headers(&server.endpoint, method, target, body, &extra, || {})
            } else {
                v2_auth_call(&server.endpoint, method, target, body, credentials)
            };
            let mut text = normalize(&a, base);
            // Member IDs and names differ between the two servers.
            text = replace_after(&text, "\"id\":\"", |_| "ID".into());
            text = replace_after(&text, "\"name\":\"", |_| "NAME".into());
            for (from, to) in [
                (server.client_url.as_str(), "CLIENT"),
                (server.peer_url.as_str(), "PEER"),
            ] {
                text = text.replace(from, to);
            }
            log.push(format!("{method} {target} {credentials}\n{text}"));
        }
        logs.push(log);
    }
    assert_eq!(logs[0].len(), logs[1].len());
    for (e, o) in logs[0].iter().zip(&logs[1]) {
        assert_same(e, o);
    }
}

/// etcdctl 3.4's v2 `user`, `role` and `auth` commands give the same transcripts on both
/// servers.
#[test]
fn etcdctl_v2_auth_commands_match_etcd_34() {
    let Some((etcd, ox)) = start_pair_with(
        "etcdctl_v2_auth_commands_match_etcd_34",
        &["--bcrypt-cost=4"],
    ) else {
        return;
    };
    let steps: Vec<Vec<&str>> = vec![
        vec!["auth", "enable"],
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "alice:a"],
        vec!["role", "add", "reader"],
        vec!["role", "add", "reader"],
        vec!["role", "grant", "reader", "--path", "/pub/*", "--read"],
        vec!["role", "grant", "reader", "--path", "/pub/w", "--readwrite"],
        vec!["role", "revoke", "reader", "--path", "/pub/w", "--write"],
        vec!["role", "get", "reader"],
        vec!["role", "list"],
        vec!["user", "grant", "alice", "--roles", "reader"],
        vec!["user", "grant", "alice", "--roles", "reader"],
        vec!["user", "get", "alice"],
        vec!["user", "list"],
        vec!["user", "revoke", "alice", "--roles", "reader"],
        vec!["auth", "enable"],
        vec!["user", "list"],
        vec!["--username", "root:rootpw", "user", "list"],
        vec!["--username", "alice:a", "role", "list"],
        vec!["--username", "root:rootpw", "set", "/pub/x", "1"],
        vec!["get", "/pub/x"],
        vec!["--username", "root:rootpw", "role", "remove", "guest"],
        vec!["get", "/pub/x"],
        vec!["--username", "alice:a", "get", "/pub/x"],
        vec!["--username", "root:rootpw", "user", "remove", "alice"],
        vec!["--username", "root:rootpw", "auth", "disable"],
        vec!["auth", "disable"],
        vec!["role", "remove", "reader"],
        vec!["user", "remove", "root"],
    ];
    let mut transcripts = Vec::new();
    for server in [&etcd, &ox] {
        let base = http(&server.endpoint, "GET", "/v2/keys", None).etcd_index();
        let ep = server.endpoint.as_str();
        let rel = |n: u64| {
            if n >= base {
                (n - base).to_string()
            } else {
                n.to_string()
            }
        };
        let mut log = Vec::new();
        for step in &steps {
            let out = etcdctl_v2(ep, step).replace(ep, "ENDPOINT");
            let out = replace_after(&out, ") [", |d| rel(d.parse().unwrap_or(0)));
            log.push(format!("{step:?}\n{}", rewrite_numbers(&out, &rel)));
        }
        transcripts.push(log);
    }
    for (e, o) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_same(e, o);
    }
    // The commands did their work (not the same failure twice).
    let all = transcripts[1].join("\n");
    for expected in [
        "User alice created",
        "Role reader created",
        "Authentication Enabled",
        "\t/pub/*",
        "Authentication Disabled",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
}

/// A single member serving the client port over TLS (client certificates required) and
/// plaintext (for the readiness probe), killed on drop.
struct TlsMember {
    child: std::process::Child,
    https: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_member(kind: ServerKind, certs: &common::certs::Certs) -> TlsMember {
    let binary = match kind {
        ServerKind::Oxetcd => std::path::PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
        _ => common::etcd_tools().expect("tools").etcd34.clone(),
    };
    let (tls, plain, peer) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let dir = tempfile::Builder::new()
        .prefix("oxetcd-v2-tls-")
        .tempdir()
        .expect("temp dir");
    let https = format!("https://127.0.0.1:{tls}");
    let child = Command::new(binary)
        .env_clear()
        .arg("--name=tls1")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!(
            "--listen-client-urls={https},http://127.0.0.1:{plain}"
        ))
        .arg(format!("--advertise-client-urls={https}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=tls1=http://127.0.0.1:{peer}"))
        .arg(format!("--cert-file={}", certs.server.cert.display()))
        .arg(format!("--key-file={}", certs.server.key.display()))
        .arg(format!("--trusted-ca-file={}", certs.ca.display()))
        .args(["--client-cert-auth=true", "--enable-v2=true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let member = TlsMember {
        child,
        https,
        _dir: dir,
    };
    let plain = format!("127.0.0.1:{plain}");
    let deadline = Instant::now() + HTTP_DEADLINE;
    while try_get(&plain, "/v2/keys?quorum=true").is_none_or(|a| a.status != 200) {
        assert!(Instant::now() < deadline, "{} never served", kind.label());
        thread::sleep(Duration::from_millis(100));
    }
    member
}

/// The operator's check of a flannel network on a TLS cluster: `ETCDCTL_API=2 etcdctl ls
/// /coreos.com/network -r` with `--ca-file/--cert-file/--key-file`, the same on both servers;
/// then v2 auth where the client certificate names the user.
#[test]
fn etcdctl_v2_over_tls_lists_flannel_config_and_subnets() {
    let test = "etcdctl_v2_over_tls_lists_flannel_config_and_subnets";
    let Some(tools) = require_etcd_tools(test) else {
        return;
    };
    let certs = common::certs::Certs::generate();
    let mut outputs = Vec::new();
    for kind in [ServerKind::Etcd34, ServerKind::Oxetcd] {
        let member = start_tls_member(kind, &certs);
        let ctl = |args: &[&str]| {
            let out = Command::new(&tools.etcdctl34)
                .env_clear()
                .env("ETCDCTL_API", "2")
                .arg(format!("--endpoints={}", member.https))
                .arg(format!("--ca-file={}", certs.ca.display()))
                .arg(format!("--cert-file={}", certs.client.cert.display()))
                .arg(format!("--key-file={}", certs.client.key.display()))
                .args(args)
                .output()
                .expect("etcdctl runs");
            format!(
                "{}{}exit {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                out.status.code()
            )
        };
        let mut log = vec![
            ctl(&[
                "set",
                "/coreos.com/network/config",
                "{\"Network\":\"10.5.0.0/16\"}",
            ]),
            ctl(&[
                "mk",
                "/coreos.com/network/subnets/10.5.1.0-24",
                "{\"PublicIP\":\"192.0.2.1\"}",
                "--ttl",
                "600",
            ]),
            ctl(&[
                "mk",
                "/coreos.com/network/subnets/10.5.2.0-24",
                "{\"PublicIP\":\"192.0.2.2\"}",
                "--ttl",
                "600",
            ]),
            ctl(&["ls", "/coreos.com/network", "-r", "--sort"]),
        ];
        log.push(ctl(&["get", "/coreos.com/network/subnets/10.5.2.0-24"]));
        // v2 auth with --client-cert-auth: without credentials, the certificate's common name
        // ("root") is the user. With the guest role gone, only that identity can list; a
        // wrong basic-auth password is refused although the certificate names root.
        log.push(ctl(&["user", "add", "root:rootpw"]));
        log.push(ctl(&["auth", "enable"]));
        log.push(ctl(&["role", "remove", "guest"]));
        let listed = ctl(&["ls", "/coreos.com/network", "-r", "--sort"]);
        assert!(
            listed.contains("/coreos.com/network/subnets/10.5.2.0-24"),
            "{} lists as the certificate's user: {listed}",
            kind.label()
        );
        log.push(listed);
        log.push(ctl(&[
            "--username",
            "root:wrong",
            "ls",
            "/coreos.com/network",
        ]));
        log.push(ctl(&["auth", "disable"]));
        outputs.push(log.join("\n"));
    }
    assert!(
        outputs[0].contains("/coreos.com/network/subnets/10.5.1.0-24"),
        "{}",
        outputs[0]
    );
    assert_same(&outputs[0], &outputs[1]);
}
