//! Snapshots in etcd's format against the real etcd binaries.
//!
//! Bug guarded against: a bbolt reader that only understands files it wrote itself (etcd on
//! Linux stores no freelist, splits nodes its own way and keeps its buckets inline or not as it
//! likes), so a migration from a real etcd would fail or silently miss keys.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp};
use oxetcd::bbolt::{check, Db, Value};
use oxetcd::proto::mvccpb::KeyValue;
use prost::Message;

const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A key's live state as `get` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Live {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

/// Puts, overwrites, a delete, a multi-put txn and a key under a lease; returns the live keys
/// and the current revision as the server reports them.
async fn write_history(endpoint: &str) -> (BTreeMap<Vec<u8>, Live>, i64, i64) {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    for i in 0..300 {
        let key = format!("key-{i:04}");
        client
            .put(key, vec![b'v'; i % 97], None)
            .await
            .expect("put");
    }
    for i in 0..20 {
        client
            .put(format!("key-{i:04}"), "again", None)
            .await
            .expect("overwrite");
    }
    client.delete("key-0002", None).await.expect("delete");
    let txn = Txn::new().and_then([
        TxnOp::put("txn-a", "1", None),
        TxnOp::put("txn-b", "2", None),
    ]);
    client.txn(txn).await.expect("txn");
    let lease = client.lease_grant(600, None).await.expect("grant").id();
    let with_lease = PutOptions::new().with_lease(lease);
    client
        .put("leased", "x", Some(with_lease))
        .await
        .expect("put with lease");
    let all = GetOptions::new().with_from_key();
    let resp = client.get("\0", Some(all)).await.expect("get all");
    let revision = resp.header().expect("header").revision();
    let live = resp
        .kvs()
        .iter()
        .map(|kv| {
            let live = Live {
                value: kv.value().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                version: kv.version(),
                lease: kv.lease(),
            };
            (kv.key().to_vec(), live)
        })
        .collect();
    (live, revision, lease)
}

/// Stops a server with SIGTERM (etcd then commits and closes its backend) and waits for it.
fn stop(server: &mut Server) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM failed");
    let deadline = Instant::now() + STOP_DEADLINE;
    while server.is_running() {
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Revision bytes of the `key` bucket: 8-byte main, '_', 8-byte sub, optional 't'.
fn parse_revision(bytes: &[u8]) -> (i64, i64, bool) {
    assert!(
        bytes.len() == 17 || bytes.len() == 18,
        "revision key {bytes:?}"
    );
    assert_eq!(bytes[8], b'_');
    let main = i64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let sub = i64::from_be_bytes(bytes[9..17].try_into().expect("8 bytes"));
    (main, sub, bytes.len() == 18 && bytes[17] == b't')
}

/// Replays the `key` bucket of a backend file into the live keys and the last revision.
fn replay_backend(path: &Path) -> (BTreeMap<Vec<u8>, Live>, i64, Vec<i64>) {
    let bytes = std::fs::read(path).expect("read backend file");
    let db = Db::open(&bytes).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    check(&db).unwrap_or_else(|e| panic!("check {}: {e}", path.display()));
    let root = db.root();
    for name in ["key", "meta", "lease"] {
        assert!(
            root.bucket(name.as_bytes()).expect("read root").is_some(),
            "{name}"
        );
    }
    let key_bucket = root.bucket(b"key").expect("read").expect("key bucket");
    let mut live = BTreeMap::new();
    let mut last = 0;
    for entry in key_bucket.entries() {
        let entry = entry.expect("key bucket entry");
        let Value::Data(value) = entry.value else {
            panic!("bucket inside the key bucket");
        };
        let (main, _sub, tombstone) = parse_revision(entry.key);
        assert!(main >= last, "revisions in order");
        last = main;
        let kv = KeyValue::decode(value).expect("mvccpb.KeyValue");
        if tombstone {
            live.remove(&kv.key);
        } else {
            let state = Live {
                value: kv.value.to_vec(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease: kv.lease,
            };
            live.insert(kv.key, state);
        }
    }
    let lease_bucket = root.bucket(b"lease").expect("read").expect("lease bucket");
    let leases = lease_bucket
        .entries()
        .map(|e| {
            let e = e.expect("lease entry");
            i64::from_be_bytes(e.key.try_into().expect("8-byte lease id"))
        })
        .collect();
    (live, last, leases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_reads_real_etcd_backends() {
    if require_etcd_tools("the_reader_reads_real_etcd_backends").is_none() {
        return;
    }
    for kind in [ServerKind::Etcd35, ServerKind::Etcd34] {
        let mut server = Server::start(kind).expect("start etcd");
        let (expected, revision, lease) = write_history(&server.endpoint).await;
        stop(&mut server);
        let db_path = server.data_dir().join("member/snap/db");
        let (live, last, leases) = replay_backend(&db_path);
        assert_eq!(live, expected, "{}: live keys", kind.label());
        assert_eq!(last, revision, "{}: last revision", kind.label());
        assert_eq!(leases, vec![lease], "{}: leases", kind.label());
    }
}

/// The keys, values, revisions and versions a server serves, and its current revision.
async fn served(endpoint: &str) -> (BTreeMap<Vec<u8>, Live>, i64) {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let resp = client
        .get("\0", Some(GetOptions::new().with_from_key()))
        .await
        .expect("get all");
    let live = resp
        .kvs()
        .iter()
        .map(|kv| {
            let live = Live {
                value: kv.value().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                version: kv.version(),
                lease: kv.lease(),
            };
            (kv.key().to_vec(), live)
        })
        .collect();
    (live, resp.header().expect("header").revision())
}

fn etcdutl(tools: &common::EtcdTools) -> std::path::PathBuf {
    tools
        .etcd35
        .parent()
        .expect("etcd 3.5 lives in a directory")
        .join("etcdutl")
}

/// Runs a tool with an empty environment; panics with its output unless it succeeds.
fn run_ok(program: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(program)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{stdout}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `snapshot status -w json` as (revision, totalKey, totalSize).
fn status(program: &Path, file: &Path) -> (i64, i64, i64) {
    let args = [
        "snapshot".as_ref(),
        "status".as_ref(),
        file.as_os_str(),
        "-w".as_ref(),
        "json".as_ref(),
    ];
    let out = run_ok(program, &args);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("status JSON");
    let field = |name: &str| {
        json[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    (field("revision"), field("totalKey"), field("totalSize"))
}

/// Entries in every top-level bucket: what etcd 3.4/3.5 `snapshot status` calls total keys.
fn total_entries(file: &Path) -> i64 {
    let bytes = std::fs::read(file).expect("read snapshot");
    let db = Db::open(&bytes).expect("open snapshot");
    check(&db).expect("snapshot passes the check");
    let mut total = 0;
    for bucket in db.root().entries() {
        let Value::Bucket(bucket) = bucket.expect("root entry").value else {
            panic!("a value in the root bucket");
        };
        total += bucket.entries().count() as i64;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxetcd_snapshots_are_saved_checked_and_restored_by_etcd_tools() {
    let Some(tools) = require_etcd_tools("oxetcd_snapshots_are_saved_checked_and_restored") else {
        return;
    };
    let server = Server::start(ServerKind::Oxetcd).expect("start oxetcd");
    let (expected, revision, _) = write_history(&server.endpoint).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for ctl in [CtlVersion::V34, CtlVersion::V35] {
        let file = dir
            .path()
            .join(format!("{}.db", ctl.label().replace(' ', "-")));
        let args = vec![
            "snapshot".into(),
            "save".into(),
            file.clone().into_os_string(),
        ];
        let out = etcdctl(ctl, &server.endpoint, &args, b"");
        assert_eq!(out.code, 0, "{} save: {}", ctl.label(), out.stderr_text());
        assert!(
            out.stdout_text().contains("Snapshot saved at"),
            "{}",
            out.stdout_text()
        );

        let from_34 = status(&tools.etcdctl34, &file);
        let from_35 = status(&etcdutl(tools), &file);
        assert_eq!(from_34, from_35, "etcdctl 3.4 and etcdutl 3.5 agree");
        assert_eq!(from_34.0, revision, "status revision");
        assert_eq!(from_34.1, total_entries(&file), "status total keys");

        let restored = dir
            .path()
            .join(format!("restored-{}", ctl.label().replace(' ', "-")));
        let peer = format!("http://127.0.0.1:{}", common::free_port());
        let cluster = format!("default={peer}");
        let args: Vec<&std::ffi::OsStr> = vec![
            "snapshot".as_ref(),
            "restore".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            restored.as_os_str(),
            "--name".as_ref(),
            "default".as_ref(),
            "--initial-cluster".as_ref(),
            cluster.as_ref(),
            "--initial-advertise-peer-urls".as_ref(),
            peer.as_ref(),
        ];
        run_ok(&etcdutl(tools), &args);
        let restored_arg = restored.to_str().expect("utf-8 temp path");
        let etcd = Server::start_with(ServerKind::Etcd35, "default", &["--data-dir", restored_arg])
            .expect("etcd 3.5 starts on the restored data dir");
        let (live, current) = served(&etcd.endpoint).await;
        assert_eq!(live, expected, "etcd 3.5 serves the same keys");
        assert_eq!(current, revision, "etcd 3.5 is at the same revision");

        // And back into oxetcd: a file oxetcd served restores with oxetcdctl too.
        let members = restore_three_members(
            &file,
            &dir.path()
                .join(format!("ox-{}", ctl.label().replace(' ', "-"))),
        );
        for endpoint in &members.endpoints {
            let (live, current) = served_when_ready(endpoint).await;
            assert_eq!(
                live, expected,
                "oxetcd restored from its own snapshot: {endpoint}"
            );
            assert_eq!(current, revision, "revision of {endpoint}");
        }
    }
}

/// Member processes started on restored data dirs; `Drop` kills and reaps them.
struct Members {
    children: Vec<std::process::Child>,
    endpoints: Vec<String>,
    logs: Vec<std::path::PathBuf>,
}

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!("--- {} ---\n{tail}", log.display());
            }
        }
    }
}

const NAMES: [&str; 3] = ["infra0", "infra1", "infra2"];
/// How far behind the current revision the source is compacted.
const COMPACT_BEHIND: i64 = 10;
/// How long a watch may take to deliver its first response.
const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// The first response of a watch on `key` from `start_revision` that is more than the
/// creation acknowledgement.
async fn first_watch_response(
    endpoint: &str,
    key: &str,
    start_revision: i64,
) -> etcd_client::WatchResponse {
    let mut client = Client::connect([endpoint], None).await.expect("connect");
    let options = etcd_client::WatchOptions::new().with_start_revision(start_revision);
    let mut stream = client.watch(key, Some(options)).await.expect("watch");
    loop {
        let next = tokio::time::timeout(WATCH_DEADLINE, stream.message())
            .await
            .expect("a watch response within the deadline")
            .expect("watch stream")
            .expect("watch stream open");
        if next.canceled() || !next.events().is_empty() {
            return next;
        }
    }
}

/// A watcher that last saw the source at the compaction revision resumes on the restored
/// cluster and gets the later change; one from before the compaction is told it was compacted.
async fn watch_resumes_after_migration(
    endpoint: &str,
    compacted: i64,
    expected: &BTreeMap<Vec<u8>, Live>,
) {
    let resumed = first_watch_response(endpoint, "key-0005", compacted + 1).await;
    let event = resumed
        .events()
        .first()
        .expect("the put after the compaction");
    let kv = event.kv().expect("event kv");
    let live = &expected[&b"key-0005".to_vec()];
    assert_eq!(kv.value(), live.value.as_slice());
    assert_eq!(kv.mod_revision(), live.mod_revision);
    let stale = first_watch_response(endpoint, "key-0005", compacted - 1).await;
    assert!(
        stale.canceled(),
        "a watch below the compaction is canceled: {stale:?}"
    );
    assert_eq!(stale.compact_revision(), compacted);
}
const READY_DEADLINE: Duration = Duration::from_secs(30);

fn oxetcdctl(args: &[&std::ffi::OsStr]) -> String {
    run_ok(Path::new(env!("CARGO_BIN_EXE_oxetcdctl")), args)
}

/// `oxetcdctl snapshot restore` for three members, then the three oxetcd processes.
fn restore_three_members(file: &Path, dir: &Path) -> Members {
    std::fs::create_dir_all(dir).expect("create restore dir");
    let ports: Vec<(u16, u16)> = NAMES
        .iter()
        .map(|_| (common::free_port(), common::free_port()))
        .collect();
    let cluster: Vec<String> = NAMES
        .iter()
        .zip(&ports)
        .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
        .collect();
    let cluster = cluster.join(",");
    let mut members = Members {
        children: Vec::new(),
        endpoints: Vec::new(),
        logs: Vec::new(),
    };
    for (name, (client, peer)) in NAMES.iter().zip(&ports) {
        let data_dir = dir.join(name);
        let peer_url = format!("http://127.0.0.1:{peer}");
        let client_url = format!("http://127.0.0.1:{client}");
        let args: Vec<&std::ffi::OsStr> = vec![
            "snapshot".as_ref(),
            "restore".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
            "--initial-cluster".as_ref(),
            cluster.as_ref(),
            "--initial-advertise-peer-urls".as_ref(),
            peer_url.as_ref(),
            "--initial-cluster-token".as_ref(),
            "restored".as_ref(),
        ];
        oxetcdctl(&args);
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("create log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_oxetcd"))
            .env_clear()
            .args(["--name", name, "--data-dir"])
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-token", "restored"])
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn oxetcd");
        members.children.push(child);
        members.endpoints.push(format!("127.0.0.1:{client}"));
        members.logs.push(log);
    }
    members
}

/// Polls a member until a linearizable read of everything succeeds.
async fn served_when_ready(endpoint: &str) -> (BTreeMap<Vec<u8>, Live>, i64) {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let attempt = async {
            let mut client = Client::connect([endpoint], None).await.ok()?;
            client.get("probe", None).await.ok()
        };
        if attempt.await.is_some() {
            return served(endpoint).await;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} did not serve in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshots_restore_into_a_three_member_oxetcd_cluster() {
    let Some(tools) = require_etcd_tools("etcd_snapshots_restore_into_oxetcd") else {
        return;
    };
    for (kind, ctl) in [
        (ServerKind::Etcd35, CtlVersion::V35),
        (ServerKind::Etcd34, CtlVersion::V34),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("etcd.db");
        let (expected, revision, lease, compacted) = {
            let server = Server::start(kind).expect("start etcd");
            let (_, revision, lease) = write_history(&server.endpoint).await;
            let compacted = revision - COMPACT_BEHIND;
            let mut client = Client::connect([server.endpoint.as_str()], None)
                .await
                .expect("connect");
            let physical = etcd_client::CompactionOptions::new().with_physical();
            client
                .compact(compacted, Some(physical))
                .await
                .expect("compact");
            client
                .put("key-0005", "after compaction", None)
                .await
                .expect("put");
            client.delete("key-0006", None).await.expect("delete");
            let (expected, revision) = served(&server.endpoint).await;
            let args = vec![
                "snapshot".into(),
                "save".into(),
                file.clone().into_os_string(),
            ];
            let out = etcdctl(ctl, &server.endpoint, &args, b"");
            assert_eq!(out.code, 0, "{} save: {}", ctl.label(), out.stderr_text());
            (expected, revision, lease, compacted)
        };

        for format in ["json", "table"] {
            let args: Vec<&std::ffi::OsStr> = vec![
                "snapshot".as_ref(),
                "status".as_ref(),
                file.as_os_str(),
                "-w".as_ref(),
                format.as_ref(),
            ];
            assert_eq!(
                oxetcdctl(&args),
                run_ok(&etcdutl(tools), &args),
                "{}: status -w {format}",
                kind.label()
            );
        }

        let members = restore_three_members(&file, dir.path());
        for endpoint in &members.endpoints {
            let (live, current) = served_when_ready(endpoint).await;
            assert_eq!(
                live,
                expected,
                "{}: keys served by {endpoint}",
                kind.label()
            );
            assert_eq!(
                current,
                revision,
                "{}: revision of {endpoint}",
                kind.label()
            );
        }
        let mut client = Client::connect([members.endpoints[0].as_str()], None)
            .await
            .expect("connect");
        let leases: Vec<i64> = client
            .leases()
            .await
            .expect("lease list")
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        assert_eq!(leases, vec![lease], "{}: leases", kind.label());
        let with_keys = etcd_client::LeaseTimeToLiveOptions::new().with_keys();
        let ttl = client
            .lease_time_to_live(lease, Some(with_keys))
            .await
            .expect("ttl");
        assert_eq!(ttl.granted_ttl(), 600, "{}: granted TTL", kind.label());
        assert_eq!(
            ttl.keys(),
            &[b"leased".to_vec()],
            "{}: lease keys",
            kind.label()
        );
        watch_resumes_after_migration(&members.endpoints[1], compacted, &expected).await;
    }
}

/// Users (with their bcrypt hashes) and roles travel in the snapshot's auth buckets: etcd 3.5
/// restored from an oxetcd snapshot lists the same users and roles, and the password set on
/// oxetcd logs in on etcd once auth is enabled there.
#[test]
fn users_and_roles_survive_a_snapshot_restored_by_etcd() {
    let Some(tools) = require_etcd_tools("users_and_roles_survive_a_snapshot_restored_by_etcd")
    else {
        return;
    };
    let ctl = |endpoint: &str, args: &[&str]| {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let out = etcdctl(CtlVersion::V35, endpoint, &args, b"");
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr_text());
        out.stdout_text()
    };
    let server = Server::start_with(ServerKind::Oxetcd, "default", &["--bcrypt-cost=4"])
        .expect("start oxetcd");
    for args in [
        &["user", "add", "root:Snap-pw-1"][..],
        &["user", "add", "cn", "--no-password"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "--prefix",
            "p/",
        ],
        &["user", "grant-role", "cn", "reader"],
        &["put", "p/x", "1"],
    ] {
        ctl(&server.endpoint, args);
    }
    let queries: [&[&str]; 4] = [
        &["user", "list"],
        &["role", "list"],
        &["user", "get", "cn"],
        &["role", "get", "reader"],
    ];
    let ours: Vec<String> = queries.iter().map(|q| ctl(&server.endpoint, q)).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("auth.db");
    ctl(
        &server.endpoint,
        &["snapshot", "save", file.to_str().expect("utf-8 temp path")],
    );
    let restored = dir.path().join("restored");
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let cluster = format!("default={peer}");
    let args: Vec<&std::ffi::OsStr> = vec![
        "snapshot".as_ref(),
        "restore".as_ref(),
        file.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
        "--name".as_ref(),
        "default".as_ref(),
        "--initial-cluster".as_ref(),
        cluster.as_ref(),
        "--initial-advertise-peer-urls".as_ref(),
        peer.as_ref(),
    ];
    run_ok(&etcdutl(tools), &args);
    let restored_arg = restored.to_str().expect("utf-8 temp path");
    let etcd = Server::start_with(ServerKind::Etcd35, "default", &["--data-dir", restored_arg])
        .expect("etcd 3.5 starts on the restored data dir");
    let theirs: Vec<String> = queries.iter().map(|q| ctl(&etcd.endpoint, q)).collect();
    assert_eq!(theirs, ours, "etcd 3.5 restored other users or roles");
    ctl(&etcd.endpoint, &["auth", "enable"]);
    let read = ctl(&etcd.endpoint, &["get", "p/x", "--user", "root:Snap-pw-1"]);
    assert_eq!(read, "p/x\n1\n");
}
