//! The JSON gateway (`/v3/...`) and the Election/Lock services, driven by real programs.
//!
//! - A curl-level differential: the same list of requests (good and bad bodies, aliases,
//!   `/v3beta`, wrong methods, unknown routes, a huge body) is sent with `curl` to real etcd
//!   3.5 and to oxetcd; the status and the JSON must match after masking what differs
//!   legitimately (cluster/member IDs, raft term; decoder texts of bodies that do not parse;
//!   the shape only for member and status data). Streams (watch, keep-alive) are read chunk by
//!   chunk over a raw socket: each chunk must hold exactly one `{"result":..}` object.
//! - etcdctl 3.4 and 3.5 `lock` and `elect` against oxetcd, including a lock holder killed
//!   mid-hold: its lease expires and the next waiter gets the lock.
//! - The Rust `etcd-client` Election and Lock APIs against oxetcd.
#![cfg(not(madsim))]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_etcd_tools, CtlVersion, Server, ServerKind};
use serde_json::Value;

const CURL: &str = "/usr/bin/curl";
/// Upper bound for waiting on one expected message or process outcome.
const WAIT: Duration = Duration::from_secs(20);

/// How a response is compared between etcd and oxetcd.
#[derive(Clone, Copy, Debug)]
enum Cmp {
    /// Status and body, IDs and raft term masked.
    Exact,
    /// Status, and the JSON's `code` (the decoder's text is Go's on one side).
    Code,
    /// Status and the set of keys at every level (values differ legitimately).
    Shape,
}

struct Case {
    method: &'static str,
    path: &'static str,
    body: String,
    cmp: Cmp,
}

fn case(method: &'static str, path: &'static str, body: &str, cmp: Cmp) -> Case {
    Case {
        method,
        path,
        body: body.to_string(),
        cmp,
    }
}

fn post(path: &'static str, body: &str) -> Case {
    case("POST", path, body, Cmp::Exact)
}

/// The request list of the differential, in order (later cases see earlier writes).
fn cases() -> Vec<Case> {
    let huge = format!(
        r#"{{"key":"aHVnZQ==","value":"{}"}}"#,
        "eHh4".repeat(1_000_000)
    );
    vec![
        post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        post("/v3/kv/range", r#"{"key":"Zm9v"}"#),
        post("/v3beta/kv/range", r#"{"key":"Zm9v","bogus":1}"#),
        post(
            "/v3/kv/range",
            r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":5,"sort_order":"DESCEND","sort_target":1}"#,
        ),
        post("/v3/kv/range", r#"{"key":"Zm9v","count_only":true}"#),
        post(
            "/v3/kv/range",
            r#"{"key":"Zm9v","keys_only":true,"revision":"2"}"#,
        ),
        post("/v3/kv/range", r#"{"key":"#),
        case("POST", "/v3/kv/range", r#"{"key":5}"#, Cmp::Code),
        post("/v3/kv/range", r#"{"key":"!!!"}"#),
        post("/v3/kv/range", r#"{"key":"Zm9v=="}"#),
        // Go's decoder reads the first value and ignores what follows.
        post("/v3/kv/range", r#"{"key":"Zm9v"} trailing"#),
        post("/v3/watch", r#"{"create_request":"#),
        post("/v3/lease/keepalive", r#"{"ID":"#),
        case("OPTIONS", "/v3/kv/range", "", Cmp::Exact),
        case("OPTIONS", "/v3/kv/nothing", "", Cmp::Exact),
        case("POST", "/v3/kv/range", "[1]", Cmp::Code),
        post("/v3/kv/range", r#"{"key":""}"#),
        post("/v3/kv/range", "null"),
        case("GET", "/v3/kv/range", "", Cmp::Exact),
        case("GET", "/v3/kv/put", r#"{"key":"Zm9v"}"#, Cmp::Exact),
        post("/v3/kv/nothing", "{}"),
        post("/v3alpha/kv/range", "{}"),
        post("/v3/kv/put", &huge),
        // Beyond what the gateway reads at all (twice the gRPC limit): the same status and
        // code, though the size in the text is the body's, not the encoded request's.
        case(
            "POST",
            "/v3/kv/put",
            &huge.replace("eHh4", "eHh4eHh4"),
            Cmp::Code,
        ),
        // Patroni's create-if-absent on an existing key: only the header, no `succeeded`.
        post(
            "/v3/kv/txn",
            r#"{"compare":[{"target":"CREATE","create_revision":0,"key":"Zm9v"}],"success":[{"request_put":{"key":"Zm9v"}}]}"#,
        ),
        post(
            "/v3/kv/txn",
            r#"{"compare":[{"target":"MOD","mod_revision":"2","key":"Zm9v"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6","prev_kv":true}}],"failure":[{"request_range":{"key":"Zm9v"}}]}"#,
        ),
        post(
            "/v3/kv/txn",
            r#"{"compare":[{"target":"VALUE","result":"NOT_EQUAL","value":"YmF6","key":"Zm9v"}],"success":[],"failure":[{"request_range":{"key":"Zm9v"}},{"request_delete_range":{"key":"bm9uZQ=="}}]}"#,
        ),
        post("/v3/kv/put", r#"{"key":"ZGVs","value":""}"#),
        post("/v3/kv/deleterange", r#"{"key":"ZGVs","prev_kv":true}"#),
        post("/v3/kv/deleterange", r#"{"key":"ZGVs"}"#),
        post("/v3/lease/grant", r#"{"TTL":30,"ID":1000}"#),
        post("/v3/lease/grant", r#"{"TTL":"30","ID":"1000"}"#),
        post(
            "/v3/kv/put",
            r#"{"key":"bGs=","value":"dg==","lease":"1000"}"#,
        ),
        case(
            "POST",
            "/v3/kv/lease/timetolive",
            r#"{"ID":1000,"keys":true}"#,
            Cmp::Shape,
        ),
        post("/v3/lease/timetolive", r#"{"ID":"123"}"#),
        post("/v3/lease/revoke", r#"{"ID":"123"}"#),
        post("/v3/kv/lease/leases", ""),
        post("/v3/lease/leases", "{}"),
        post("/v3/kv/lease/revoke", r#"{"ID":"1000"}"#),
        post("/v3/kv/range", r#"{"key":"bGs="}"#),
        post("/v3/kv/compaction", r#"{"revision":"3"}"#),
        post("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
        post("/v3/kv/range", r#"{"key":"Zm9v","revision":"99"}"#),
        post("/v3/maintenance/alarm", "{}"),
        case("POST", "/v3/maintenance/status", "{}", Cmp::Shape),
        case("POST", "/v3/cluster/member/list", "{}", Cmp::Shape),
        case("POST", "/v3/maintenance/hash", "{}", Cmp::Shape),
        case("POST", "/v3/maintenance/hashkv", "{}", Cmp::Shape),
        // Election and Lock: same keys, same revisions, same errors (code 2, HTTP 500).
        post("/v3/election/leader", r#"{"name":"ZWw="}"#),
        post("/v3/election/proclaim", "{}"),
        post("/v3/election/resign", "{}"),
        post("/v3/lock/unlock", "{}"),
        post("/v3/lease/grant", r#"{"TTL":60,"ID":2000}"#),
        post(
            "/v3/election/campaign",
            r#"{"name":"ZWw=","lease":"2000","value":"djE="}"#,
        ),
        post("/v3/election/leader", r#"{"name":"ZWw="}"#),
        post(
            "/v3/election/proclaim",
            r#"{"leader":{"name":"ZWw=","key":"ZWwvN2Qw","rev":"15","lease":"2000"},"value":"djI="}"#,
        ),
        post(
            "/v3/election/proclaim",
            r#"{"leader":{"name":"ZWw=","key":"ZWwvN2Qw","rev":"3","lease":"2000"},"value":"djI="}"#,
        ),
        post(
            "/v3/election/campaign",
            r#"{"name":"ZWw=","lease":"2000","value":"djE="}"#,
        ),
        post("/v3/election/leader", r#"{"name":"ZWw="}"#),
        post(
            "/v3/election/resign",
            r#"{"leader":{"name":"ZWw=","key":"ZWwvN2Qw","rev":"15","lease":"2000"}}"#,
        ),
        post("/v3/election/leader", r#"{"name":"ZWw="}"#),
        post("/v3/lock/lock", r#"{"name":"bGs=","lease":"2000"}"#),
        post("/v3/lock/lock", r#"{"name":"bGs=","lease":2000}"#),
        post("/v3/kv/range", r#"{"key":"bGsv","range_end":"bGsw"}"#),
        post("/v3/lock/unlock", r#"{"key":"bGsvN2Qw"}"#),
        post("/v3/lock/lock", r#"{"name":"bGs=","lease":"999"}"#),
    ]
}

/// Status and body of one request sent with curl.
fn curl(endpoint: &str, c: &Case) -> (u16, String) {
    let mut child = Command::new(CURL)
        .args([
            "-s",
            "-X",
            c.method,
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", "Content-Type: application/json", "-H", "Expect:"])
        .arg(format!("http://{endpoint}{}", c.path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = c.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    let out = child.wait_with_output().expect("curl output");
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').expect("curl wrote a status");
    (
        status.trim().parse().expect("numeric status"),
        body.to_string(),
    )
}

/// Masks what differs between two members legitimately.
fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if matches!(k.as_str(), "cluster_id" | "member_id" | "raft_term") {
                    *val = Value::String("*".into());
                } else {
                    mask(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// The keys at every level, values dropped.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, val)| (k.clone(), shape(val))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        _ => Value::Null,
    }
}

fn comparable(cmp: Cmp, status: u16, body: &str) -> (u16, String) {
    let Ok(mut json) = serde_json::from_str::<Value>(body) else {
        return (status, body.to_string());
    };
    let v = match cmp {
        Cmp::Exact => {
            mask(&mut json);
            json
        }
        Cmp::Code => json.get("code").cloned().unwrap_or(Value::Null),
        Cmp::Shape => shape(&json),
    };
    (status, v.to_string())
}

#[test]
fn gateway_answers_as_etcd_35_does() {
    if require_etcd_tools("gateway_answers_as_etcd_35_does").is_none() {
        return;
    }
    let etcd = Server::start(ServerKind::Etcd35).expect("etcd 3.5 starts");
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let mut mismatches = Vec::new();
    for c in cases() {
        let (es, eb) = curl(&etcd.endpoint, &c);
        let (os, ob) = curl(&ox.endpoint, &c);
        let e = comparable(c.cmp, es, &eb);
        let o = comparable(c.cmp, os, &ob);
        if e != o {
            let shown: String = c.body.chars().take(160).collect();
            mismatches.push(format!(
                "{} {} {shown}\n  etcd:   {} {}\n  oxetcd: {} {}",
                c.method, c.path, e.0, e.1, o.0, o.1
            ));
        }
    }
    // Streams: the same watch and keep-alive, chunk by chunk.
    let ew = watch_then_put(&etcd.endpoint);
    let ow = watch_then_put(&ox.endpoint);
    if ew != ow {
        mismatches.push(format!("watch stream\n  etcd:   {ew:?}\n  oxetcd: {ow:?}"));
    }
    let ek = keep_alive_twice(&etcd.endpoint);
    let ok = keep_alive_twice(&ox.endpoint);
    if ek != ok {
        mismatches.push(format!(
            "keepalive stream\n  etcd:   {ek:?}\n  oxetcd: {ok:?}"
        ));
    }
    let eo = observe_then_proclaim(&etcd.endpoint);
    let oo = observe_then_proclaim(&ox.endpoint);
    if eo != oo {
        mismatches.push(format!(
            "observe stream\n  etcd:   {eo:?}\n  oxetcd: {oo:?}"
        ));
    }
    let el = lock_waits_for_unlock(&etcd.endpoint);
    let ol = lock_waits_for_unlock(&ox.endpoint);
    if el != ol {
        mismatches.push(format!("waiting lock\n  etcd:   {el:?}\n  oxetcd: {ol:?}"));
    }
    assert!(
        mismatches.is_empty(),
        "{} gateway differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// A raw HTTP/1.1 POST whose response is read chunk by chunk.
struct ChunkedResponse {
    reader: BufReader<TcpStream>,
    status: u16,
    chunked: bool,
}

fn open_stream(endpoint: &str, path: &str, body: &str) -> ChunkedResponse {
    let mut stream = TcpStream::connect(endpoint).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut status = 0;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
            status = rest[..3].parse().expect("status");
        }
        if line.eq_ignore_ascii_case("transfer-encoding: chunked") {
            chunked = true;
        }
    }
    ChunkedResponse {
        reader,
        status,
        chunked,
    }
}

impl ChunkedResponse {
    /// The next chunk's bytes; `None` at the terminating zero-length chunk.
    fn next_chunk(&mut self) -> Option<String> {
        let mut size_line = String::new();
        self.reader.read_line(&mut size_line).expect("chunk size");
        let size = usize::from_str_radix(size_line.trim(), 16).expect("hex size");
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).expect("chunk data");
        data.truncate(size);
        (size > 0).then(|| String::from_utf8(data).expect("utf-8"))
    }
}

/// Each chunk must be one JSON object and a newline; returns it masked.
fn one_object(chunk: &str) -> String {
    assert!(
        chunk.ends_with('\n'),
        "chunk without its newline: {chunk:?}"
    );
    let mut v: Value = serde_json::from_str(chunk).expect("one JSON object per chunk");
    mask(&mut v);
    v.to_string()
}

fn watch_then_put(endpoint: &str) -> Vec<String> {
    let mut w = open_stream(
        endpoint,
        "/v3/watch",
        r#"{"create_request":{"key":"d2F0Y2g=","prev_kv":true}}"#,
    );
    let mut seen = vec![format!("{} chunked={}", w.status, w.chunked)];
    seen.push(one_object(&w.next_chunk().expect("created")));
    let put = post("/v3/kv/put", r#"{"key":"d2F0Y2g=","value":"MQ=="}"#);
    assert_eq!(curl(endpoint, &put).0, 200);
    seen.push(one_object(&w.next_chunk().expect("event")));
    seen
}

fn keep_alive_twice(endpoint: &str) -> Vec<String> {
    let grant = post("/v3/lease/grant", r#"{"TTL":30,"ID":"3000"}"#);
    assert_eq!(curl(endpoint, &grant).0, 200);
    let mut k = open_stream(
        endpoint,
        "/v3/lease/keepalive",
        r#"{"ID":"3000"}{"ID":"123"}"#,
    );
    let mut seen = vec![format!("{} chunked={}", k.status, k.chunked)];
    while let Some(chunk) = k.next_chunk() {
        seen.push(one_object(&chunk));
    }
    seen
}

/// A running etcdctl whose stdout is collected as it comes.
struct Ctl {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Ctl {
    fn spawn(version: CtlVersion, endpoint: &str, args: &[&str]) -> Ctl {
        let tools = common::etcd_tools().expect("etcd tools");
        let mut child = Command::new(version.path(tools))
            .env_clear()
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl runs");
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = out.clone();
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        Ctl { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls until the output contains `text`; panics with what was seen at the deadline.
    fn wait_for(&self, text: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{what}: no {text:?} in {:?}",
                self.output()
            );
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls a gateway range until the prefix holds `n` keys.
fn wait_for_keys(endpoint: &str, prefix_b64: &str, end_b64: &str, n: usize) {
    let body = format!(r#"{{"key":"{prefix_b64}","range_end":"{end_b64}","count_only":true}}"#);
    let c = Case {
        method: "POST",
        path: "/v3/kv/range",
        body,
        cmp: Cmp::Exact,
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = curl(endpoint, &c);
        let count = serde_json::from_str::<Value>(&body)
            .ok()
            // A zero count is left out, as etcd's gateway does.
            .map(|v| {
                v.get("count")
                    .and_then(|c| c.as_str())
                    .unwrap_or("0")
                    .to_string()
            })
            .unwrap_or_default();
        if count == n.to_string() {
            return;
        }
        assert!(Instant::now() < deadline, "{n} keys never appeared: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A lock holder killed mid-hold: its lease expires and the waiter (the other etcdctl
/// version) gets the lock. Then an election: a leader interrupted hands over to the next
/// candidate, as an observer sees.
#[test]
fn etcdctl_lock_and_elect_hand_over_when_the_holder_dies() {
    if require_etcd_tools("etcdctl_lock_and_elect_hand_over_when_the_holder_dies").is_none() {
        return;
    }
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let ep = ox.endpoint.clone();
    for (holder_v, waiter_v) in [
        (CtlVersion::V34, CtlVersion::V35),
        (CtlVersion::V35, CtlVersion::V34),
    ] {
        let label = format!("{} holds, {} waits", holder_v.label(), waiter_v.label());
        let mut holder = Ctl::spawn(holder_v, &ep, &["lock", "--ttl=2", "mx"]);
        holder.wait_for("mx/", &label);
        let mut waiter = Ctl::spawn(
            waiter_v,
            &ep,
            &["lock", "--ttl=2", "mx", "/bin/echo", "got-it"],
        );
        // "mx/" and "mx0": both sessions' keys exist, the waiter's is the younger.
        wait_for_keys(&ep, "bXgv", "bXgw", 2);
        assert!(!waiter.has_exited(), "{label}: the waiter got a held lock");
        let _ = holder.child.kill();
        waiter.wait_for("got-it", &label);
        wait_for_keys(&ep, "bXgv", "bXgw", 0);
    }
    let first = Ctl::spawn(CtlVersion::V34, &ep, &["elect", "ev", "one"]);
    first.wait_for("one", "first candidate");
    let observer = Ctl::spawn(CtlVersion::V35, &ep, &["elect", "-l", "ev"]);
    observer.wait_for("one", "observer sees the first leader");
    let _second = Ctl::spawn(CtlVersion::V35, &ep, &["elect", "ev", "two"]);
    wait_for_keys(&ep, "ZXYv", "ZXYw", 2);
    // etcdctl elect has no --ttl (60 s sessions): the first leader is interrupted, resigns
    // by revoking its session, and the second candidate takes over.
    let pid = first.child.id().to_string();
    let status = Command::new("/bin/kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "SIGINT to etcdctl elect");
    observer.wait_for("two", "observer sees the second leader");
    wait_for_keys(&ep, "ZXYv", "ZXYw", 1);
}

/// The Rust etcd-client's Lock and Election calls, answered by our server-side services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_lock_and_election() {
    if require_etcd_tools("etcd_client_lock_and_election").is_none() {
        return;
    }
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let mut c = etcd_client::Client::connect([format!("http://{}", ox.endpoint)], None)
        .await
        .expect("connect");
    let lease = c.lease_grant(30, None).await.expect("grant").id();
    let lock = c
        .lock(
            "lk",
            Some(etcd_client::LockOptions::new().with_lease(lease)),
        )
        .await
        .expect("lock");
    assert_eq!(lock.key(), format!("lk/{lease:x}").as_bytes());
    // A second session waits until the first unlocks.
    let lease2 = c.lease_grant(30, None).await.expect("grant").id();
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.lock(
            "lk",
            Some(etcd_client::LockOptions::new().with_lease(lease2)),
        )
        .await
        .map(|r| r.key().to_vec())
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let n = c
            .get(
                "lk/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .expect("count")
            .count();
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter's key never appeared");
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "the second lock did not wait");
    c.unlock(lock.key()).await.expect("unlock");
    let got = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("the waiter got the lock in time")
        .expect("join")
        .expect("lock");
    assert_eq!(got, format!("lk/{lease2:x}").as_bytes());

    let mut campaign = c.campaign("el", "v1", lease).await.expect("campaign");
    let leader = campaign.take_leader().expect("leader key");
    assert_eq!(leader.key(), format!("el/{lease:x}").as_bytes());
    let now = c.leader("el").await.expect("leader");
    assert_eq!(now.kv().map(|kv| kv.value()), Some(&b"v1"[..]));
    let mut observe = c.observe("el").await.expect("observe");
    let first = observe.message().await.expect("observe").expect("a leader");
    assert_eq!(first.kv().map(|kv| kv.value()), Some(&b"v1"[..]));
    c.proclaim(
        "v2",
        Some(etcd_client::ProclaimOptions::new().with_leader(leader.clone())),
    )
    .await
    .expect("proclaim");
    let update = observe
        .message()
        .await
        .expect("observe")
        .expect("an update");
    assert_eq!(update.kv().map(|kv| kv.value()), Some(&b"v2"[..]));
    c.resign(Some(
        etcd_client::ResignOptions::new().with_leader(leader.clone()),
    ))
    .await
    .expect("resign");
    let err = c.leader("el").await.expect_err("no leader after resign");
    assert!(err.to_string().contains("election: no leader"), "{err}");
    let err = c
        .proclaim(
            "v3",
            Some(etcd_client::ProclaimOptions::new().with_leader(leader)),
        )
        .await
        .expect_err("proclaim after resign");
    assert!(err.to_string().contains("election: not leader"), "{err}");
}

fn observe_then_proclaim(endpoint: &str) -> Vec<String> {
    let grant = post("/v3/lease/grant", r#"{"TTL":30,"ID":"4000"}"#);
    assert_eq!(curl(endpoint, &grant).0, 200);
    let campaign = post(
        "/v3/election/campaign",
        r#"{"name":"b2I=","lease":"4000","value":"eA=="}"#,
    );
    let (status, body) = curl(endpoint, &campaign);
    assert_eq!(status, 200, "{body}");
    let leader = serde_json::from_str::<Value>(&body).expect("campaign JSON")["leader"].clone();
    let mut o = open_stream(endpoint, "/v3/election/observe", r#"{"name":"b2I="}"#);
    let mut seen = vec![format!("{} chunked={}", o.status, o.chunked)];
    seen.push(one_object(&o.next_chunk().expect("the leader")));
    let proclaim = Case {
        method: "POST",
        path: "/v3/election/proclaim",
        body: serde_json::json!({"leader": leader, "value": "eQ=="}).to_string(),
        cmp: Cmp::Exact,
    };
    assert_eq!(curl(endpoint, &proclaim).0, 200);
    seen.push(one_object(&o.next_chunk().expect("the proclaimed value")));
    seen
}

/// Runs a Python client script against etcd 3.5 and oxetcd and returns both outputs; `None`
/// when the package is missing outside CI (in CI a missing package fails the test).
fn python_client_outputs(
    test: &str,
    module: &str,
    pip: &str,
    script: &str,
) -> Option<(String, String)> {
    require_etcd_tools(test)?;
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        assert!(
            !common::in_ci(),
            "python package {module} missing (`pip install {pip}`)"
        );
        eprintln!("skipping {test}: python package {module} missing");
        return None;
    }
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = |server: &Server| {
        let (host, port) = server.endpoint.rsplit_once(':').expect("host:port");
        let out = Command::new("python3")
            .args([script.as_str(), host, port])
            // etcd3 0.12's generated modules predate protoc 3.19 (clients.md §4).
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{module} against {}: {}\n{text}\n{}",
            server.endpoint,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let etcd = Server::start(ServerKind::Etcd35).expect("etcd 3.5 starts");
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    Some((run(&etcd), run(&ox)))
}

/// PyPI `etcd3gw` (the OpenStack gateway client): put/get, prefixes, compare-and-swap,
/// leases with keep-alive, watches and locks give the same lines from etcd 3.5 and oxetcd.
#[test]
fn etcd3gw_sees_the_same_as_on_etcd() {
    let Some((expected, got)) = python_client_outputs(
        "etcd3gw_sees_the_same_as_on_etcd",
        "etcd3gw",
        "etcd3gw==2.7.0",
        "etcd3gw_smoke.py",
    ) else {
        return;
    };
    assert!(expected.contains("lock release True"), "{expected}");
    assert_eq!(got, expected);
}

/// PyPI `etcd3` (gRPC): put/get, prefixes, transactions, leases with keep-alive, watches and
/// locks give the same lines from etcd 3.5 and oxetcd.
#[test]
fn python_etcd3_sees_the_same_as_on_etcd() {
    let Some((expected, got)) = python_client_outputs(
        "python_etcd3_sees_the_same_as_on_etcd",
        "etcd3",
        "etcd3==0.12.0",
        "etcd3_smoke.py",
    ) else {
        return;
    };
    assert!(expected.contains("lock acquire True"), "{expected}");
    assert_eq!(got, expected);
}

/// A second Lock blocks until the first is unlocked; its answer (key, header revision) and
/// the unlock's are compared.
fn lock_waits_for_unlock(endpoint: &str) -> Vec<String> {
    for id in ["5000", "6000"] {
        let grant = Case {
            method: "POST",
            path: "/v3/lease/grant",
            body: format!(r#"{{"TTL":30,"ID":"{id}"}}"#),
            cmp: Cmp::Exact,
        };
        assert_eq!(curl(endpoint, &grant).0, 200);
    }
    let first = post("/v3/lock/lock", r#"{"name":"d2w=","lease":"5000"}"#);
    let (status, held) = curl(endpoint, &first);
    assert_eq!(status, 200, "{held}");
    let ep = endpoint.to_string();
    let second = std::thread::spawn(move || {
        let c = post("/v3/lock/lock", r#"{"name":"d2w=","lease":"6000"}"#);
        curl(&ep, &c)
    });
    // Both owner keys exist ("wl/" to "wl0"): the second Lock is waiting.
    wait_for_keys(endpoint, "d2wv", "d2ww", 2);
    assert!(!second.is_finished(), "the second lock did not wait");
    let key = serde_json::from_str::<Value>(&held).expect("lock JSON")["key"].clone();
    let unlock = Case {
        method: "POST",
        path: "/v3/lock/unlock",
        body: serde_json::json!({ "key": key }).to_string(),
        cmp: Cmp::Exact,
    };
    let (us, ub) = curl(endpoint, &unlock);
    let (ls, lb) = second.join().expect("the waiting curl");
    vec![
        format!("{:?}", comparable(Cmp::Exact, status, &held)),
        format!("{:?}", comparable(Cmp::Exact, us, &ub)),
        format!("{:?}", comparable(Cmp::Exact, ls, &lb)),
    ]
}

/// npm `etcd3` 1.1.2 (gRPC; its lock and election are client-side recipes): put/get, prefix,
/// txn, leases, watch, lock, election campaign/proclaim/resign give the same lines from etcd
/// 3.5 and oxetcd. `.ci/run` installs it with `npm install --prefix tests/clients/node`.
#[test]
fn node_etcd3_sees_the_same_as_on_etcd() {
    let test = "node_etcd3_sees_the_same_as_on_etcd";
    if require_etcd_tools(test).is_none() {
        return;
    }
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/node/node_modules"
    );
    let node = Path::new("/usr/bin/node");
    if !node.exists() || !Path::new(modules).join("etcd3").exists() {
        assert!(
            !common::in_ci(),
            "node or the etcd3 npm package missing (`npm install --prefix tests/clients/node`)"
        );
        eprintln!("skipping {test}: node or the etcd3 npm package missing");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/etcd3_node_smoke.js"
    );
    let run = |server: &Server| {
        let out = Command::new(node)
            .args([script, server.endpoint.as_str()])
            .env_clear()
            .env("NODE_PATH", modules)
            .stdin(Stdio::null())
            .output()
            .expect("node runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "npm etcd3 against {}: {}\n{text}\n{}",
            server.endpoint,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let etcd = Server::start(ServerKind::Etcd35).expect("etcd 3.5 starts");
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let expected = run(&etcd);
    assert!(
        expected.contains("\"leader after proclaim\" \"candidate-1b\""),
        "{expected}"
    );
    assert_eq!(run(&ox), expected);
}

/// `--enable-grpc-gateway=false`: `/v3/...` gets Go's 404 like any unknown path (what etcd's
/// HTTP mux answers without the gateway), while gRPC and `/health` still serve; with the
/// default the same request is served.
#[test]
fn the_gateway_can_be_switched_off() {
    let range = post("/v3/kv/range", r#"{"key":"Zm9v"}"#);
    let off = Server::start_with(ServerKind::Oxetcd, "nogw", &["--enable-grpc-gateway=false"])
        .expect("oxetcd starts");
    assert_eq!(
        curl(&off.endpoint, &range),
        (404, "404 page not found\n".to_string())
    );
    let health = case("GET", "/health", "", Cmp::Exact);
    assert_eq!(curl(&off.endpoint, &health).0, 200);
    let on = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let (status, body) = curl(&on.endpoint, &range);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"header\""), "{body}");
}
