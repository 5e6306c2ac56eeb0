//! Multi-member clusters as real processes on loopback ports, started with exactly the flags one
//! gives etcd, driven by the real etcdctl 3.5: bootstrap, member list and endpoint tables (also
//! compared with a real etcd 3.5 cluster on the same ports), writes through every member, leader
//! failover (the time is printed), and a killed member restarting and catching up.
//!
//! Invariant: every process a test starts is owned by a `Cluster`, whose `Drop` SIGKILLs and
//! reaps it (printing each member's log tail when dropped during a panic).
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{etcdctl, free_port, require_etcd_tools, CtlOutput, CtlVersion};

/// How long a cluster may take to elect a leader and answer on every member.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const NAMES: [&str; 3] = ["infra0", "infra1", "infra2"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Oxetcd,
    Etcd35,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// For a member added at runtime: the `--initial-cluster` etcdctl printed; it starts with
    /// `--initial-cluster-state existing`.
    join: Option<String>,
    /// Environment of the process (test knobs); otherwise empty.
    env: Vec<(String, String)>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// A cluster of member processes sharing one temp dir (data dirs and logs).
struct Cluster {
    kind: Kind,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// Flags given to every member after the cluster flags.
    extra_args: Vec<String>,
}

impl Cluster {
    fn ports() -> Vec<(u16, u16)> {
        NAMES.iter().map(|_| (free_port(), free_port())).collect()
    }

    /// Starts every member on the given (client, peer) ports and waits until all answer.
    fn start(kind: Kind, ports: &[(u16, u16)]) -> Cluster {
        Cluster::start_with(kind, ports, &[])
    }

    fn start_with(kind: Kind, ports: &[(u16, u16)], extra_args: &[&str]) -> Cluster {
        Cluster::start_named(kind, &NAMES, ports, extra_args)
    }

    fn start_named(
        kind: Kind,
        names: &[&str],
        ports: &[(u16, u16)],
        extra_args: &[&str],
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-cluster-")
            .tempdir()
            .unwrap();
        let members = names
            .iter()
            .zip(ports)
            .map(|(name, (c, p))| Member {
                name: name.to_string(),
                client_port: *c,
                peer_port: *p,
                child: None,
                join: None,
                env: Vec::new(),
            })
            .collect();
        let extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        let mut cluster = Cluster {
            kind,
            dir,
            members,
            extra_args,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        let items: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join.is_none())
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        items.join(",")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Starts member `i` with etcd's flags (a restart reuses its data dir).
    fn spawn(&mut self, i: usize) {
        let binary = match self.kind {
            Kind::Oxetcd => PathBuf::from(env!("CARGO_BIN_EXE_oxetcd")),
            Kind::Etcd35 => common::etcd_tools().unwrap().etcd35.clone(),
        };
        let (initial_cluster, state) = match &self.members[i].join {
            Some(joined) => (joined.clone(), "existing"),
            None => (self.initial_cluster(), "new"),
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let m = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let data_dir = self.dir.path().join(format!("{}.etcd", m.name));
        let args: Vec<OsString> = vec![
            "--name".into(),
            m.name.clone().into(),
            "--data-dir".into(),
            data_dir.into(),
            "--listen-client-urls".into(),
            client_url.clone().into(),
            "--advertise-client-urls".into(),
            client_url.into(),
            "--listen-peer-urls".into(),
            peer_url.clone().into(),
            "--initial-advertise-peer-urls".into(),
            peer_url.into(),
            "--initial-cluster".into(),
            initial_cluster.into(),
            "--initial-cluster-token".into(),
            "etcd-cluster-1".into(),
            "--initial-cluster-state".into(),
            state.into(),
        ];
        let child = Command::new(binary)
            .env_clear()
            .envs(m.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(&args)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ctl(&self, i: usize, args: &[&str]) -> CtlOutput {
        let mut all: Vec<OsString> =
            vec!["--dial-timeout=1s".into(), "--command-timeout=3s".into()];
        all.extend(args.iter().map(OsString::from));
        etcdctl(CtlVersion::V35, &self.members[i].endpoint(), &all, b"")
    }

    fn ctl_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.ctl(i, args);
        assert_eq!(
            out.code,
            0,
            "etcdctl {args:?} on {}: {}",
            self.members[i].name,
            out.stderr_text()
        );
        out.stdout_text()
    }

    fn wait_healthy(&self, i: usize) {
        let started = Instant::now();
        loop {
            let out = self.ctl(i, &["endpoint", "health"]);
            if out.code == 0 {
                return;
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "{} not healthy within {READY_DEADLINE:?}: {}",
                self.members[i].name,
                out.stderr_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the member that reports itself leader, asking only live members.
    fn leader(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].child.is_some())
            .find(|i| {
                let out = self.ctl(*i, &["endpoint", "status", "-w", "json"]);
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                    return false;
                };
                let status = &v[0]["Status"];
                status["leader"].as_u64().is_some()
                    && status["leader"] == status["header"]["member_id"]
            })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if thread::panicking() {
            for i in 0..self.members.len() {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!(
                    "--- {:?} member {} log tail ---\n{tail}",
                    self.kind, self.members[i].name
                );
            }
        }
    }
}

impl Cluster {
    /// `etcdctl member add` through member `via`; on success the new member is recorded (not
    /// started) with the `--initial-cluster` etcdctl printed. Returns etcdctl's output.
    fn member_add(&mut self, via: usize, name: &str, learner: bool) -> (CtlOutput, usize) {
        let (client_port, peer_port) = (free_port(), free_port());
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec!["member", "add", name, "--peer-urls", &peer_url];
        if learner {
            args.push("--learner");
        }
        let out = self.ctl(via, &args);
        let text = out.stdout_text();
        let joined = text
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
            .map(|v| v.trim_end_matches('"').to_string());
        self.members.push(Member {
            name: name.to_string(),
            client_port,
            peer_port,
            child: None,
            join: joined,
            env: Vec::new(),
        });
        (out, self.members.len() - 1)
    }

    /// The member ID of member `i` as hex, from `member list`.
    fn member_id(&self, via: usize, i: usize) -> String {
        let list = self.ctl_ok(via, &["member", "list"]);
        let peer = format!("http://127.0.0.1:{}", self.members[i].peer_port);
        list.lines()
            .find(|l| l.contains(&peer))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("{peer} not in {list}"))
            .to_string()
    }

    /// Every member's client URL, for clients that pick among them.
    fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://{}", m.endpoint()))
            .collect()
    }

    fn endpoints(&self) -> String {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(Member::endpoint)
            .collect();
        live.join(",")
    }

    /// Waits until member `i` has applied `count` keys under `prefix` (serializable reads).
    fn wait_count(&self, i: usize, prefix: &str, count: usize, deadline: Duration) -> Duration {
        let started = Instant::now();
        let want = format!("\"Count\" : {count}");
        loop {
            let out = self.ctl(
                i,
                &[
                    "get",
                    prefix,
                    "--prefix",
                    "--count-only",
                    "--consistency=s",
                    "-w",
                    "fields",
                ],
            );
            if out.stdout_text().lines().any(|l| l.trim() == want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < deadline,
                "member {} did not reach {count} keys: {}",
                self.members[i].name,
                out.stdout_text()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Blanks the columns whose values differ between implementations (version, db size, raft
/// indexes and term; and which member won the election).
fn normalize_status_table(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            if cells.len() < 11 || line.contains("ENDPOINT") {
                return line.to_string();
            }
            let keep = [0, 1, 2, 6];
            let kept: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if keep.contains(&i) {
                        c.trim().to_string()
                    } else {
                        "_".to_string()
                    }
                })
                .collect();
            kept.join("|")
        })
        .collect()
}

#[test]
fn three_members_list_and_status_like_etcd() {
    if require_etcd_tools("three_members_list_and_status_like_etcd").is_none() {
        return;
    }
    let ports = Cluster::ports();
    let (etcd_list, etcd_status, etcd_health_lines) = {
        let etcd = Cluster::start(Kind::Etcd35, &ports);
        let list = etcd.ctl_ok(0, &["member", "list", "-w", "table"]);
        let status = etcd.ctl_ok(0, &["endpoint", "status", "--cluster", "-w", "table"]);
        let health = etcd.ctl_ok(0, &["endpoint", "health", "--cluster"]);
        (list, status, health.lines().count())
    };
    // The same flags on the same ports: etcd's member IDs, names and URLs, in etcd's order.
    let ox = Cluster::start(Kind::Oxetcd, &ports);
    let started = Instant::now();
    let list = loop {
        // Client URLs are published by the leader shortly after the election.
        let list = ox.ctl_ok(1, &["member", "list", "-w", "table"]);
        if list == etcd_list || started.elapsed() > Duration::from_secs(10) {
            break list;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(list, etcd_list);
    let status = ox.ctl_ok(2, &["endpoint", "status", "--cluster", "-w", "table"]);
    let (mine, theirs) = (
        normalize_status_table(&status),
        normalize_status_table(&etcd_status),
    );
    assert_eq!(mine, theirs, "oxetcd:\n{status}\netcd:\n{etcd_status}");
    assert_eq!(
        status.matches("|      true |").count(),
        1,
        "exactly one leader:\n{status}"
    );
    let health = ox.ctl_ok(0, &["endpoint", "health", "--cluster"]);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    assert_eq!(health.lines().count(), etcd_health_lines);
}

#[test]
fn writes_through_every_member_are_visible_on_every_member() {
    if require_etcd_tools("writes_through_every_member_are_visible_on_every_member").is_none() {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    for i in 0..3 {
        assert_eq!(
            c.ctl_ok(i, &["put", &format!("k{i}"), &format!("v{i}")])
                .trim(),
            "OK"
        );
    }
    for i in 0..3 {
        // Linearizable on followers goes through the leader's read index.
        let values = c.ctl_ok(i, &["get", "k", "--prefix", "--print-value-only"]);
        assert_eq!(
            values.split_whitespace().collect::<Vec<_>>(),
            ["v0", "v1", "v2"],
            "on member {i}"
        );
    }
    // Deletes and a lease grant + keep-alive through a follower.
    let leader = c.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    assert_eq!(c.ctl_ok(follower, &["del", "k0"]).trim(), "1");
    let grant = c.ctl_ok(follower, &["lease", "grant", "30"]);
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let kept = c.ctl_ok(follower, &["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    c.ctl_ok(follower, &["put", "leased", "x", "--lease", &id]);
    let other = (leader + 2) % 3;
    let ttl = c.ctl_ok(other, &["lease", "timetolive", &id]);
    assert!(ttl.contains("granted with TTL(30s), remaining(2"), "{ttl}");
    for i in 0..3 {
        let keys = c.ctl_ok(i, &["get", "", "--prefix", "--keys-only"]);
        assert_eq!(
            keys.split_whitespace().collect::<Vec<_>>(),
            ["k1", "k2", "leased"],
            "on member {i}"
        );
    }
}

#[test]
fn leader_failover_and_restarted_member_catches_up() {
    if require_etcd_tools("leader_failover_and_restarted_member_catches_up").is_none() {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    c.ctl_ok(0, &["put", "before", "1"]);
    let old = c.leader().expect("a leader");
    c.kill(old);
    let survivor = (old + 1) % 3;
    let killed_at = Instant::now();
    loop {
        let out = c.ctl(survivor, &["--command-timeout=500ms", "put", "after", "2"]);
        if out.code == 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no write accepted after failover: {}",
            out.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let failover = killed_at.elapsed();
    println!("failover: first write accepted {failover:?} after SIGKILL of the leader");
    let new = c.leader().expect("a new leader");
    assert_ne!(new, old);
    for n in 0..20 {
        c.ctl_ok(survivor, &["put", &format!("w{n:02}"), "x"]);
    }
    c.spawn(old);
    c.wait_healthy(old);
    let started = Instant::now();
    loop {
        // Serializable: what the restarted member itself has applied.
        let keys = c.ctl_ok(
            old,
            &["get", "w", "--prefix", "--keys-only", "--consistency=s"],
        );
        if keys.split_whitespace().count() == 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "restarted member did not catch up: {keys}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        c.ctl_ok(old, &["get", "after", "--print-value-only"])
            .trim(),
        "2"
    );
    let status = c.ctl_ok(old, &["endpoint", "status", "--cluster", "-w", "table"]);
    assert_eq!(status.matches("|      true |").count(), 1, "{status}");
}

/// A runtime for the tests that drive members with the Rust etcd client.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `total` small keys under `prefix` through `endpoint`, 16 at a time.
fn write_many(endpoint: &str, prefix: &str, total: usize) {
    let rt = client_runtime();
    rt.block_on(async {
        let client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        let tasks = 16;
        let mut handles = Vec::new();
        for t in 0..tasks {
            let mut kv = client.kv_client();
            let prefix = prefix.to_string();
            handles.push(tokio::spawn(async move {
                for i in (t..total).step_by(tasks) {
                    kv.put(format!("{prefix}{i:06}"), vec![b'x'; 100], None)
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}

#[test]
fn lagging_member_catches_up_through_a_snapshot() {
    if require_etcd_tools("lagging_member_catches_up_through_a_snapshot").is_none() {
        return;
    }
    // A snapshot every 1000 entries; the leader keeps 5000 entries behind it, so 7000 writes
    // purge the entries the stopped member lacks and it must install a snapshot.
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        &Cluster::ports(),
        &["--snapshot-count", "1000"],
    );
    let leader = c.leader().expect("a leader");
    let lagging = (leader + 1) % 3;
    c.kill(lagging);
    let started = Instant::now();
    write_many(&c.members[leader].endpoint(), "snap/", 7000);
    println!(
        "7000 writes with one member down took {:?}",
        started.elapsed()
    );
    c.spawn(lagging);
    c.wait_healthy(lagging);
    let started = Instant::now();
    loop {
        let out = c.ctl_ok(
            lagging,
            &[
                "get",
                "snap/",
                "--prefix",
                "--count-only",
                "--consistency=s",
                "-w",
                "fields",
            ],
        );
        if out.lines().any(|l| l.trim() == "\"Count\" : 7000") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "lagging member did not catch up: {out}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "lagging member caught up {:?} after restart",
        started.elapsed()
    );
    let log = std::fs::read_to_string(c.log_path(lagging)).unwrap();
    assert!(
        log.contains("\"msg\":\"applied snapshot\""),
        "no snapshot was installed"
    );
}

#[test]
fn joining_fails_clearly_when_no_peer_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
        .env_clear()
        .args(["--name", "infra3", "--data-dir"])
        .arg(dir.path().join("infra3.etcd"))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!(
            "--initial-cluster=infra0=http://127.0.0.1:1,infra3=http://127.0.0.1:{peer}"
        ))
        .arg("--initial-cluster-state=existing")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not retrieve cluster information from the given URLs"),
        "{stderr}"
    );
    assert!(!dir
        .path()
        .join("infra3.etcd")
        .join("member")
        .join("identity")
        .exists());
}

/// A member started just before its `member add` went through keeps asking its peers (for up
/// to 10 s) and joins once the add is applied, instead of exiting at the first answer that it
/// is not a member.
#[test]
fn a_joiner_started_before_its_member_add_joins_once_added() {
    if require_etcd_tools("a_joiner_started_before_its_member_add_joins_once_added").is_none() {
        return;
    }
    let mut c = Cluster::start_with(Kind::Oxetcd, &Cluster::ports(), &[]);
    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let joined = format!("{},infra3={peer}", c.initial_cluster());
    c.members.push(Member {
        name: "infra3".to_string(),
        client_port,
        peer_port,
        child: None,
        join: Some(joined),
        env: Vec::new(),
    });
    let new = c.members.len() - 1;
    c.spawn(new);
    // Refused at least once before the add (the peers answer only members they list).
    let asked = Instant::now();
    loop {
        let log = std::fs::read_to_string(c.log_path(new)).unwrap_or_default();
        if log.contains("asking the peers again") {
            assert!(log.contains("is not in the cluster's member list"), "{log}");
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "the joiner never asked again:\n{log}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    c.ctl_ok(0, &["member", "add", "infra3", "--peer-urls", &peer]);
    c.wait_healthy(new);
    let list = c.ctl_ok(new, &["member", "list"]);
    assert_eq!(list.matches(", started, ").count(), 4, "{list}");
    assert_eq!(c.ctl_ok(new, &["put", "from-new", "1"]).trim(), "OK");
}

/// The flow etcd documents: `member add`, then start the new member with the flags etcdctl
/// prints. The leader purged the log the newcomer needs, so it must install a snapshot; then
/// `member remove` takes it out again and the removed process stops by itself.
#[test]
fn added_member_joins_catches_up_by_snapshot_and_leaves_when_removed() {
    if require_etcd_tools("added_member_joins_catches_up_by_snapshot_and_leaves_when_removed")
        .is_none()
    {
        return;
    }
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        &Cluster::ports(),
        &["--snapshot-count", "1000"],
    );
    let leader = c.leader().expect("a leader");
    write_many(&c.members[leader].endpoint(), "snap/", 7000);
    let follower = (leader + 1) % 3;
    let (out, new) = c.member_add(follower, "infra3", false);
    assert_eq!(out.code, 0, "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(
        text.starts_with("Member ") && text.contains(" added to cluster "),
        "{text}"
    );
    assert!(
        text.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{text}"
    );
    // Not started yet: etcd prints it as unstarted, with no name and no client URLs.
    let list = c.ctl_ok(0, &["member", "list"]);
    let peer = format!("http://127.0.0.1:{}", c.members[new].peer_port);
    assert!(
        list.contains(&format!(", unstarted, , {peer}, , false")),
        "{list}"
    );
    // While a voter cannot be reached, no other member may be added (etcd's check).
    let other = c.ctl(
        0,
        &[
            "member",
            "add",
            "other",
            "--peer-urls",
            "http://127.0.0.1:1",
        ],
    );
    assert!(
        other
            .stderr_text()
            .contains("etcdserver: unhealthy cluster"),
        "{}",
        other.stderr_text()
    );

    c.spawn(new);
    let started = Instant::now();
    c.wait_healthy(new);
    let took = c.wait_count(new, "snap/", 7000, Duration::from_secs(60));
    println!(
        "new member served all 7000 keys {:?} after start",
        started.elapsed().max(took)
    );
    let log = std::fs::read_to_string(c.log_path(new)).unwrap();
    assert!(
        log.contains("\"msg\":\"applied snapshot\""),
        "the new member did not install a snapshot"
    );
    // It published its name and client URL through raft.
    let list = c.ctl_ok(new, &["member", "list"]);
    assert_eq!(list.matches(", started, ").count(), 4, "{list}");
    assert!(list.contains(&format!(
        ", started, infra3, {peer}, http://127.0.0.1:{}, false",
        c.members[new].client_port
    )));
    assert_eq!(c.ctl_ok(new, &["put", "from-new", "1"]).trim(), "OK");
    // A peer URL already in use is refused with etcd's text (the very same set within the same
    // second would hash to the same ID: "member ID already exist", as in etcd).
    let overlapping = format!("http://127.0.0.1:1,{peer}");
    let again = c.ctl(0, &["member", "add", "dup", "--peer-urls", &overlapping]);
    assert_ne!(again.code, 0);
    assert!(
        again
            .stderr_text()
            .contains("etcdserver: Peer URLs already exists"),
        "{}",
        again.stderr_text()
    );

    // Remove it: the cluster goes on with three, the removed process stops by itself. (etcdctl
    // pads the ID to 16 columns: an ID with a leading zero nibble gets a space.)
    let id = c.member_id(0, new);
    let removed = c.ctl_ok(0, &["member", "remove", &id]);
    assert!(
        removed.starts_with(&format!("Member {id:>16} removed from cluster ")),
        "{removed}"
    );
    let again = c.ctl(0, &["member", "remove", &id]);
    assert!(again.stderr_text().contains("etcdserver: member not found"));
    let started = Instant::now();
    while c.members[new]
        .child
        .as_mut()
        .unwrap()
        .try_wait()
        .unwrap()
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the removed member is still running"
        );
        thread::sleep(Duration::from_millis(100));
    }
    c.members[new].child = None;
    assert_eq!(c.ctl_ok(0, &["put", "after-remove", "1"]).trim(), "OK");
    let list = c.ctl_ok(1, &["member", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
}

/// A learner: refuses writes and linearizable reads with etcd's text, serves serializable
/// reads and Status (is learner = true), and is promoted once caught up.
#[test]
fn learner_serves_serializable_reads_only_and_is_promoted() {
    if require_etcd_tools("learner_serves_serializable_reads_only_and_is_promoted").is_none() {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    c.ctl_ok(0, &["put", "k", "v"]);
    let (out, learner) = c.member_add(0, "learner", true);
    assert_eq!(out.code, 0, "{}", out.stderr_text());
    let (second, _) = c.member_add(0, "learner2", true);
    assert!(second
        .stderr_text()
        .contains("etcdserver: too many learner members in cluster"));
    c.members.pop();
    let id = c.member_id(0, learner);
    // Not started, hence not in sync: promotion is refused.
    let early = c.ctl(0, &["member", "promote", &id]);
    assert!(
        early
            .stderr_text()
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{}",
        early.stderr_text()
    );
    c.spawn(learner);
    let started = Instant::now();
    loop {
        let out = c.ctl(
            learner,
            &["get", "k", "--print-value-only", "--consistency=s"],
        );
        if out.code == 0 && out.stdout_text().trim() == "v" {
            break;
        }
        assert!(started.elapsed() < READY_DEADLINE, "learner never served k");
        thread::sleep(Duration::from_millis(100));
    }
    for args in [
        vec!["put", "x", "y"],
        vec!["get", "k"],
        vec!["member", "list"],
    ] {
        let out = c.ctl(learner, &args);
        assert_ne!(out.code, 0, "{args:?} succeeded on a learner");
        assert!(
            out.stderr_text()
                .contains("etcdserver: rpc not supported for learner"),
            "{args:?}: {}",
            out.stderr_text()
        );
    }
    let status = c.ctl_ok(learner, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v[0]["Status"]["isLearner"], true, "{status}");
    let promoted = c.ctl_ok(0, &["member", "promote", &id]);
    // etcdctl pads both IDs to 16 characters here.
    assert!(
        promoted.starts_with(&format!("Member {id:>16} promoted in cluster ")),
        "{promoted}"
    );
    let again = c.ctl(0, &["member", "promote", &id]);
    assert!(again
        .stderr_text()
        .contains("etcdserver: can only promote a learner member"));
    c.wait_healthy(learner);
    assert_eq!(c.ctl_ok(learner, &["put", "x", "y"]).trim(), "OK");
    let list = c.ctl_ok(learner, &["member", "list"]);
    assert!(!list.contains(", true"), "{list}");
}

/// Bug guarded against (failed in 2 of 4 CI runs): right after start, the leader published the
/// members' attributes in an entry appended after it judged the transferee caught up; the
/// transferee campaigned one entry behind, was refused, and its repeated campaigns kept anyone
/// from leading until etcdctl's deadline.
#[test]
fn move_leader_hands_leadership_to_the_named_member() {
    if require_etcd_tools("move_leader_hands_leadership_to_the_named_member").is_none() {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let leader = c.leader().expect("a leader");
    let target = (leader + 1) % 3;
    let (from, to) = (c.member_id(0, leader), c.member_id(0, target));
    let endpoints = format!("--endpoints={}", c.endpoints());
    let started = Instant::now();
    let out = c.ctl_ok(0, &[&endpoints, "move-leader", &to]);
    println!("move-leader took {:?}", started.elapsed());
    assert_eq!(
        out.trim(),
        format!("Leadership transferred from {from} to {to}")
    );
    assert_eq!(c.leader(), Some(target));
    assert_eq!(c.ctl_ok(leader, &["put", "after-move", "1"]).trim(), "OK");
    // A member that is not in the cluster is a bad transferee.
    let bad = c.ctl(0, &[&endpoints, "move-leader", "1234"]);
    assert!(
        bad.stderr_text()
            .contains("etcdserver: bad leader transferee"),
        "{}",
        bad.stderr_text()
    );
}

/// Leadership moves around the cluster three times while four clients keep writing: every
/// transfer completes, and every write that was acknowledged is there afterwards. Bug guarded
/// against: a write appended while the transfer was being decided left the transferee behind
/// (see the test above), which concurrent writers made likely.
#[test]
fn move_leader_under_concurrent_writes_keeps_every_acknowledged_write() {
    if require_etcd_tools("move_leader_under_concurrent_writes_keeps_every_acknowledged_write")
        .is_none()
    {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let urls = c.client_urls();
    let rt = client_runtime();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (urls, stop) = (urls.clone(), stop.clone());
            rt.spawn(async move {
                let mut client = etcd_client::Client::connect(&urls, None).await.unwrap();
                let mut acked = Vec::new();
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("w/{w}/{n:06}");
                    let put = client.put(key.as_str(), "v", None);
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), put).await {
                        acked.push(key);
                    }
                    n += 1;
                }
                acked
            })
        })
        .collect();
    let endpoints = format!("--endpoints={}", c.endpoints());
    for round in 0..3 {
        let leader = c.leader().expect("a leader");
        let target = (leader + 1) % 3;
        let (from, to) = (c.member_id(0, leader), c.member_id(0, target));
        let started = Instant::now();
        let out = c.ctl_ok(0, &[&endpoints, "move-leader", &to]);
        println!("round {round}: move-leader took {:?}", started.elapsed());
        assert_eq!(
            out.trim(),
            format!("Leadership transferred from {from} to {to}")
        );
        thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = rt.block_on(async {
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    println!("{} writes acknowledged", acked.len());
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    let listed = c.ctl_ok(0, &["get", "w/", "--prefix", "--keys-only"]);
    let present: std::collections::HashSet<&str> =
        listed.lines().filter(|l| !l.is_empty()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|k| !present.contains(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
}

/// Membership changes sent at the same moment all succeed, one after the other, as etcd
/// applies them. Bug guarded against: a change reached openraft while the previous one (a
/// voter added as learner, then made voter in the background) was still in its joint
/// configuration, and failed with "etcdserver: unhealthy cluster".
#[test]
fn concurrent_membership_changes_are_applied_in_turn() {
    if require_etcd_tools("concurrent_membership_changes_are_applied_in_turn").is_none() {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let urls = c.client_urls();
    let rt = client_runtime();
    let ids: Vec<u64> = (0..3)
        .map(|i| u64::from_str_radix(&c.member_id(0, i), 16).unwrap())
        .collect();
    // Each member also gets its `localhost` alias: a change that keeps it reachable.
    let aliased = |i: usize| {
        let port = c.members[i].peer_port;
        vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ]
    };
    rt.block_on(async {
        let client = etcd_client::Client::connect(&urls, None).await.unwrap();
        let (mut a, mut b, mut d) = (client.clone(), client.clone(), client.clone());
        let voter = format!("http://127.0.0.1:{}", free_port());
        let (added, updated1, updated2) = tokio::join!(
            a.member_add([voter.as_str()], None),
            b.member_update(ids[1], aliased(1)),
            d.member_update(ids[2], aliased(2)),
        );
        added.expect("voter added");
        updated1.expect("peer URLs of member 1 updated");
        updated2.expect("peer URLs of member 2 updated");
        // The list is served by whichever member the client picked, from what it has applied
        // (not linearizable, as in etcd): a follower may show the last change a moment later.
        let expected: Vec<(u64, Vec<String>)> = vec![(ids[1], aliased(1)), (ids[2], aliased(2))];
        let started = Instant::now();
        loop {
            let list = a.member_list().await.unwrap();
            let urls_of = |id: u64| {
                list.members()
                    .iter()
                    .find(|m| m.id() == id)
                    .map(|m| m.peer_urls().to_vec())
            };
            let done = list.members().len() == 4
                && expected
                    .iter()
                    .all(|(id, urls)| urls_of(*id).as_ref() == Some(urls));
            if done {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "changes missing from the member list: {:?}",
                list.members()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// etcd's strict reconfiguration check on reachability: with one of three voters down, adding
/// a member or removing a live voter is refused with "etcdserver: unhealthy cluster" (either
/// would leave no margin), while removing the member that is down is allowed. The same script
/// runs on etcd 3.5 first.
#[test]
fn membership_changes_need_the_voters_reachable() {
    if require_etcd_tools("membership_changes_need_the_voters_reachable").is_none() {
        return;
    }
    for kind in [Kind::Etcd35, Kind::Oxetcd] {
        changes_need_the_voters_reachable(kind);
    }
}

fn changes_need_the_voters_reachable(kind: Kind) {
    let mut c = Cluster::start(kind, &Cluster::ports());
    let leader = c.leader().expect("a leader");
    let (down, live) = ((leader + 1) % 3, (leader + 2) % 3);
    let (down_id, live_id) = (c.member_id(leader, down), c.member_id(leader, live));
    c.kill(down);
    // The leader learns it at its next heartbeat (100 ms).
    thread::sleep(Duration::from_millis(1000));
    let url = format!("http://127.0.0.1:{}", free_port());
    let add = c.ctl(
        leader,
        &["member", "add", "l1", "--learner", "--peer-urls", &url],
    );
    assert_ne!(add.code, 0, "{kind:?}: {}", add.stdout_text());
    assert!(
        add.stderr_text().contains("etcdserver: unhealthy cluster"),
        "{}",
        add.stderr_text()
    );
    let remove_live = c.ctl(leader, &["member", "remove", &live_id]);
    assert!(
        remove_live
            .stderr_text()
            .contains("etcdserver: unhealthy cluster"),
        "{}",
        remove_live.stderr_text()
    );
    let removed = c.ctl_ok(leader, &["member", "remove", &down_id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    let list = c.ctl_ok(leader, &["member", "list"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert_eq!(c.ctl_ok(leader, &["put", "k", "v"]).trim(), "OK");
}

/// `endpoint status` reports etcd's raftIndex, the commit index: an entry the leader appended
/// but could not commit (its followers are down) does not count. Bug guarded against: it was
/// the last log index.
#[test]
fn status_raft_index_is_the_commit_index() {
    if require_etcd_tools("status_raft_index_is_the_commit_index").is_none() {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    c.ctl_ok(0, &["put", "k", "v"]);
    let leader = c.leader().expect("a leader");
    let status = |c: &Cluster| {
        let out = c.ctl_ok(leader, &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let s = &v[0]["Status"];
        (s["raftIndex"].as_u64(), s["raftAppliedIndex"].as_u64())
    };
    let (index, applied) = status(&c);
    assert_eq!(
        index, applied,
        "a quiet cluster has applied what it committed"
    );
    for i in 0..3 {
        if i != leader {
            c.kill(i);
        }
    }
    let put = c.ctl(leader, &["put", "k", "uncommitted"]);
    assert_ne!(
        put.code, 0,
        "a leader without followers acknowledged a write"
    );
    assert_eq!(status(&c), (index, applied));
}

/// Bug guarded against: a member that lost quorum kept answering `hasleader` clients (as
/// kube-apiserver's watches are) with silence instead of failing fast, and a minority could
/// seem to accept a write.
#[test]
fn minority_refuses_writes_and_hasleader_clients_fail_fast() {
    if require_etcd_tools("minority_refuses_writes_and_hasleader_clients_fail_fast").is_none() {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    c.ctl_ok(0, &["put", "k", "before"]);
    let leader = c.leader().expect("a leader");
    let survivor = (leader + 1) % 3;
    let endpoint = format!("http://{}", c.members[survivor].endpoint());
    let rt = client_runtime();
    rt.block_on(async {
        let opts = etcd_client::ConnectOptions::new().with_require_leader(true);
        let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(opts))
            .await
            .unwrap();
        let mut stream = client.watch("k", None).await.unwrap();
        for i in 0..3 {
            if i != survivor {
                c.kill(i);
            }
        }
        // The minority never acknowledges a write.
        let put =
            tokio::time::timeout(Duration::from_secs(3), client.put("k", "minority", None)).await;
        assert!(
            !matches!(put, Ok(Ok(_))),
            "a one-member minority acknowledged a write"
        );
        // Once the survivor has no leader, hasleader requests fail fast with etcd's text.
        let started = Instant::now();
        loop {
            match client
                .get(
                    "k",
                    Some(etcd_client::GetOptions::new().with_serializable()),
                )
                .await
            {
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.code() == tonic::Code::Unavailable
                        && s.message() == "etcdserver: no leader" =>
                {
                    break
                }
                other => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "hasleader read still answered without a leader: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And the watch stream is ended with the same status (3 election timeouts later).
        let end = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("the hasleader watch was not canceled");
        match end {
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert_eq!(s.code(), tonic::Code::Unavailable);
                assert_eq!(s.message(), "etcdserver: no leader");
            }
            other => panic!("watch ended with {other:?}, expected Unavailable no leader"),
        }
    });
}

/// `--force-new-cluster` on one member's data after the cluster is lost: the member comes back
/// alone with every key and revision and takes writes.
#[test]
fn force_new_cluster_recovers_a_members_data_as_a_one_member_cluster() {
    if require_etcd_tools("force_new_cluster_recovers_a_members_data_as_a_one_member_cluster")
        .is_none()
    {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    for n in 0..20 {
        c.ctl_ok(n % 3, &["put", &format!("k{n:02}"), "v"]);
    }
    let rev = |c: &Cluster, i: usize| -> u64 {
        let out = c.ctl_ok(
            i,
            &["get", "k", "--prefix", "--consistency=s", "-w", "json"],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_u64().unwrap()
    };
    // Every member has applied everything before the cluster is lost.
    c.wait_count(0, "k", 20, Duration::from_secs(10));
    let before = rev(&c, 0);
    for i in 0..3 {
        c.kill(i);
    }
    c.extra_args.push("--force-new-cluster".into());
    c.spawn(0);
    c.wait_healthy(0);
    let list = c.ctl_ok(0, &["member", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(", started, infra0, "), "{list}");
    assert_eq!(rev(&c, 0), before);
    c.wait_count(0, "k", 20, Duration::from_secs(1));
    assert_eq!(c.ctl_ok(0, &["put", "after", "1"]).trim(), "OK");
    assert_eq!(rev(&c, 0), before + 1);
    // Restarting without the flag keeps the one-member cluster.
    c.kill(0);
    c.extra_args.pop();
    c.spawn(0);
    c.wait_healthy(0);
    assert_eq!(
        c.ctl_ok(0, &["get", "after", "--print-value-only"]).trim(),
        "1"
    );
}

/// Five members survive two SIGKILLed members; with three down, the remaining minority never
/// acknowledges a write.
#[test]
fn five_members_survive_two_crashes_and_a_minority_never_acks() {
    if require_etcd_tools("five_members_survive_two_crashes_and_a_minority_never_acks").is_none() {
        return;
    }
    let names = ["infra0", "infra1", "infra2", "infra3", "infra4"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let mut c = Cluster::start_named(Kind::Oxetcd, &names, &ports, &[]);
    c.ctl_ok(0, &["put", "before", "1"]);
    let leader = c.leader().expect("a leader");
    // Kill the leader and one follower.
    let second = (leader + 1) % 5;
    c.kill(leader);
    c.kill(second);
    let survivor = (leader + 2) % 5;
    let killed_at = Instant::now();
    loop {
        let out = c.ctl(survivor, &["--command-timeout=500ms", "put", "after", "2"]);
        if out.code == 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no write accepted with 3 of 5 up: {}",
            out.stderr_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
    println!(
        "5 members, 2 killed: first write accepted {:?} after SIGKILL",
        killed_at.elapsed()
    );
    for i in [(leader + 3) % 5, (leader + 4) % 5] {
        assert_eq!(
            c.ctl_ok(i, &["get", "after", "--print-value-only"]).trim(),
            "2"
        );
    }
    // A third crash leaves two: they must never acknowledge a write.
    c.kill((leader + 3) % 5);
    for attempt in 0..5 {
        let out = c.ctl(
            survivor,
            &[
                "--command-timeout=1s",
                "put",
                "minority",
                &attempt.to_string(),
            ],
        );
        assert_ne!(out.code, 0, "a two-member minority acknowledged a write");
    }
    // Back to three: writes resume. (A timed-out minority write may still commit now, as in
    // etcd: it was never acknowledged, which is all a client was promised.)
    c.spawn((leader + 3) % 5);
    c.wait_healthy((leader + 3) % 5);
    assert_eq!(c.ctl_ok(survivor, &["put", "back", "3"]).trim(), "OK");
}

/// Replaces member and cluster IDs (hex words of 8+ digits) so outputs compare across runs, and
/// squashes runs of spaces: etcdctl pads an ID to 16 columns (`Member %16x`, table cells), so
/// an ID with a leading zero nibble moves the text by one space. Bug guarded against: the
/// comparison with etcd failed whenever one side's random member ID had 15 hex digits.
fn mask_ids(text: &str) -> String {
    let masked = mask_id_words(text);
    let mut out = String::with_capacity(masked.len());
    let mut previous_space = false;
    for ch in masked.chars() {
        if ch == ' ' && previous_space {
            continue;
        }
        previous_space = ch == ' ';
        out.push(ch);
    }
    out
}

fn mask_id_words(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Membership commands on a one-member cluster, etcd 3.5 and oxetcd on the same ports: the
/// same output and error texts, modulo IDs.
#[test]
fn membership_commands_print_what_etcd_prints() {
    if require_etcd_tools("membership_commands_print_what_etcd_prints").is_none() {
        return;
    }
    let ports = [(free_port(), free_port())];
    let learner_peer = format!("http://127.0.0.1:{}", free_port());
    let run = |kind: Kind| -> Vec<String> {
        let c = Cluster::start_named(kind, &["n1"], &ports, &[]);
        let mut outs = Vec::new();
        // Not the same set (so not the same ID), but one URL is taken.
        let overlapping = format!("http://127.0.0.1:1,{learner_peer}");
        let add = c.ctl(
            0,
            &[
                "member",
                "add",
                "l1",
                "--learner",
                "--peer-urls",
                &learner_peer,
            ],
        );
        // Both orders follow the (time-derived) IDs: compare them sorted.
        let add_text: Vec<String> = mask_ids(&add.stdout_text())
            .lines()
            .map(|l| match l.strip_prefix("ETCD_INITIAL_CLUSTER=") {
                Some(v) => {
                    let mut items: Vec<&str> = v.trim_matches('"').split(',').collect();
                    items.sort();
                    format!("ETCD_INITIAL_CLUSTER={}", items.join(","))
                }
                None => l.to_string(),
            })
            .collect();
        outs.push(add_text.join("\n"));
        let mut table: Vec<String> = mask_ids(&c.ctl_ok(0, &["member", "list", "-w", "table"]))
            .lines()
            .map(str::to_string)
            .collect();
        table.sort();
        outs.push(table.join("\n"));
        for args in [
            vec!["member", "promote", "1234"],
            vec!["member", "remove", "1234"],
            vec![
                "member",
                "update",
                "1234",
                "--peer-urls",
                "http://127.0.0.1:1",
            ],
            vec![
                "member",
                "add",
                "l2",
                "--learner",
                "--peer-urls",
                "http://127.0.0.1:2",
            ],
            vec!["member", "add", "l3", "--peer-urls", &overlapping],
            vec!["move-leader", "1234"],
        ] {
            let out = c.ctl(0, &args);
            let last = out.stderr_text().lines().last().unwrap_or("").to_string();
            outs.push(format!("{args:?} -> {} {last}", out.code));
        }
        outs
    };
    let etcd = run(Kind::Etcd35);
    let ours = run(Kind::Oxetcd);
    assert_eq!(ours, etcd);
}

/// Regression: `--strict-reconfig-check=false` was accepted and ignored. etcd then skips its
/// reconfiguration pre-checks, so a learner can be added while a voter is down (with the checks
/// on, `membership_changes_need_the_voters_reachable` shows the refusal).
#[test]
fn without_strict_reconfig_check_a_member_is_added_with_a_voter_down() {
    if require_etcd_tools("without_strict_reconfig_check_a_member_is_added_with_a_voter_down")
        .is_none()
    {
        return;
    }
    for kind in [Kind::Etcd35, Kind::Oxetcd] {
        let mut c =
            Cluster::start_with(kind, &Cluster::ports(), &["--strict-reconfig-check=false"]);
        let leader = c.leader().expect("a leader");
        let down = (leader + 1) % 3;
        c.kill(down);
        // A committed write makes the leader send to the dead member, so its failure is known.
        c.ctl_ok(leader, &["put", "k", "v"]);
        let url = format!("http://127.0.0.1:{}", free_port());
        let add = c.ctl(
            leader,
            &["member", "add", "l1", "--learner", "--peer-urls", &url],
        );
        assert_eq!(add.code, 0, "{kind:?}: {}", add.stderr_text());
        assert!(add.stdout_text().contains("added to cluster"), "{kind:?}");
        let list = c.ctl_ok(leader, &["member", "list"]);
        assert_eq!(list.lines().count(), 4, "{kind:?}: {list}");
    }
}

/// `--experimental-initial-corrupt-check`: a restarted member compares its HashKV with the
/// live peers' before serving; equal data passes and the member serves.
#[test]
fn initial_corrupt_check_compares_with_peers_and_passes_on_equal_data() {
    if require_etcd_tools("initial_corrupt_check_compares_with_peers_and_passes_on_equal_data")
        .is_none()
    {
        return;
    }
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        &Cluster::ports(),
        &["--experimental-initial-corrupt-check"],
    );
    for n in 0..10 {
        c.ctl_ok(0, &["put", &format!("k{n}"), "v"]);
    }
    let restarted = 1;
    c.kill(restarted);
    let log_before = std::fs::read_to_string(c.log_path(restarted)).unwrap_or_default();
    c.spawn(restarted);
    c.wait_healthy(restarted);
    let log = std::fs::read_to_string(c.log_path(restarted)).unwrap_or_default();
    let after = &log[log_before.len().min(log.len())..];
    assert!(
        after.contains("\"msg\":\"starting initial corruption check\""),
        "{after}"
    );
    assert!(
        after.contains("\"msg\":\"initial corruption checking passed; no corruption\""),
        "{after}"
    );
    // Both peers were up, so both answered.
    assert!(!after.contains("failed hash kv request"), "{after}");
    assert!(!after.contains("different hash values"), "{after}");
}

impl Cluster {
    /// Sends `signal` (e.g. "STOP", "CONT") to member `i`'s process.
    fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i].child.as_ref().expect("member running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// `(leader ID, raft term, header revision)` as member `i` reports them.
    fn status_of(&self, i: usize) -> Option<(u64, u64, i64)> {
        let out = self.ctl(i, &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let s = &v[0]["Status"];
        Some((
            s["leader"].as_u64()?,
            s["raftTerm"].as_u64()?,
            s["header"]["revision"].as_i64()?,
        ))
    }

    /// The header revision of a serializable read on member `i` (no leader needed).
    fn serializable_revision(&self, i: usize) -> Option<i64> {
        let out = self.ctl(i, &["get", "probe", "--consistency=s", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["header"]["revision"].as_i64()
    }
}

/// A MoveLeader whose client gives up while the leader has paused its heartbeats and elections
/// (the transferee is stopped, so the leader waits on it) leaves the leader a full member:
/// once leadership is back on it, it keeps leading a quiet cluster at the same term. Bug
/// guarded against: the transfer ran inside the request, so a client deadline dropped it
/// before heartbeats and elections were resumed; the leader then never heartbeated again and
/// its followers kept unseating it.
#[test]
fn move_leader_dropped_by_its_client_leaves_the_leader_heartbeating() {
    if require_etcd_tools("move_leader_dropped_by_its_client_leaves_the_leader_heartbeating")
        .is_none()
    {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    c.ctl_ok(0, &["put", "k", "v"]);
    let leader = c.leader().expect("a leader");
    let target = (leader + 1) % 3;
    let target_id = c.member_id(leader, target);
    // The transferee holds the whole log, then stops answering.
    c.wait_count(target, "k", 1, READY_DEADLINE);
    c.signal(target, "STOP");
    let endpoint = format!("--endpoints={}", c.members[leader].endpoint());
    let dropped = c.ctl(
        leader,
        &[
            &endpoint,
            "--command-timeout=300ms",
            "move-leader",
            &target_id,
        ],
    );
    assert_ne!(dropped.code, 0, "a transfer to a stopped member succeeded");
    c.signal(target, "CONT");
    // The cluster serves writes again, and leadership can be put back on the old leader.
    let started = Instant::now();
    while c.ctl(leader, &["put", "k", "after"]).code != 0 {
        assert!(started.elapsed() < READY_DEADLINE, "no write accepted");
        thread::sleep(Duration::from_millis(100));
    }
    let leader_id = c.member_id(leader, leader);
    let all = format!("--endpoints={}", c.endpoints());
    let started = Instant::now();
    loop {
        let moved = c.ctl(leader, &[&all, "move-leader", &leader_id]);
        if moved.code == 0 && c.leader() == Some(leader) {
            break;
        }
        assert!(
            started.elapsed() < READY_DEADLINE,
            "leadership did not return: {}",
            moved.stderr_text()
        );
        thread::sleep(Duration::from_millis(200));
    }
    // A quiet cluster keeps its leader: three election timeouts without a write, the leader
    // and the term stay what they were (heartbeats hold the followers' leases).
    let (lead, term, _) = c.status_of(leader).expect("status");
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        for i in 0..3 {
            let (l, t, _) = c.status_of(i).expect("status");
            assert_eq!(
                (l, t),
                (lead, term),
                "member {i}: the leader lost office in a quiet cluster"
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A member restarted while its peers are down (so nothing can be committed) serves
/// serializable reads at a revision at least as high as the one it served before. Bug guarded
/// against: the commit index lived in memory only, so a restarted member served its snapshot
/// state (revision 1) until a leader committed again.
#[test]
fn restarted_member_without_a_leader_never_serves_an_older_revision() {
    if require_etcd_tools("restarted_member_without_a_leader_never_serves_an_older_revision")
        .is_none()
    {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    for i in 0..5 {
        c.ctl_ok(0, &["put", &format!("k{i}"), "v"]);
    }
    let leader = c.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    c.wait_count(follower, "k", 5, READY_DEADLINE);
    let served = c.serializable_revision(follower).expect("a revision");
    assert!(served >= 6, "revision {served} after five writes");
    for i in 0..3 {
        c.kill(i);
    }
    c.spawn(follower);
    let started = Instant::now();
    let after = loop {
        if let Some(rev) = c.serializable_revision(follower) {
            break rev;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "restarted member never answered"
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        after >= served,
        "served revision {served} before the restart, {after} after"
    );
}

/// A peer of another cluster (or one that does not say who it is) is refused on the peer port
/// with etcd's "cluster ID mismatch", and a member of this cluster is heard. Bug guarded
/// against: raft messages carried no cluster ID, so any process could append entries to or
/// win votes from a member.
#[test]
fn a_peer_of_another_cluster_is_refused() {
    use oxetcd::proto::oxraftpb::raft_peer_client::RaftPeerClient;
    use oxetcd::proto::oxraftpb::MemberInfoRequest;
    use oxetcd::raft::network::{stamp, PeerIdentity};
    if require_etcd_tools("a_peer_of_another_cluster_is_refused").is_none() {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let out = c.ctl_ok(0, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cluster_id = v[0]["Status"]["header"]["cluster_id"].as_u64().unwrap();
    let member_id = v[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let peer_url = format!("http://127.0.0.1:{}", c.members[1].peer_port);
    let rt = client_runtime();
    rt.block_on(async {
        let mut client = RaftPeerClient::connect(peer_url).await.unwrap();
        let foreign = PeerIdentity {
            member_id,
            cluster_id: cluster_id ^ 1,
            peer_urls: Vec::new(),
        };
        let err = client
            .member_info(stamp(&foreign, MemberInfoRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(err.message(), "cluster ID mismatch");
        let anonymous = client.member_info(MemberInfoRequest {}).await.unwrap_err();
        assert_eq!(anonymous.code(), tonic::Code::FailedPrecondition);
        let ours = PeerIdentity {
            cluster_id,
            ..foreign
        };
        let info = client
            .member_info(stamp(&ours, MemberInfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, c.members[1].name);
    });
}

/// Bug guarded against: a follower forwarded writes and lease calls to the leader's CLIENT URL
/// (the one it advertises), so a leader whose advertised client URL does not lead back to it
/// (behind a proxy, or a port only clients with certificates may use) could not take any
/// follower's writes. Forwarding now travels on the peer protocol: here every member advertises
/// a client URL on which nothing listens, and writes, lease grants, keep-alives, time-to-live
/// questions and membership changes through a follower still work.
#[test]
fn follower_requests_reach_the_leader_over_the_peer_protocol() {
    if require_etcd_tools("follower_requests_reach_the_leader_over_the_peer_protocol").is_none() {
        return;
    }
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = Cluster::start_with(
        Kind::Oxetcd,
        &Cluster::ports(),
        &["--advertise-client-urls", &dead],
    );
    let leader = c.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    let list = c.ctl_ok(follower, &["member", "list"]);
    assert!(
        list.contains(&dead),
        "the dead client URL is advertised: {list}"
    );
    assert_eq!(c.ctl_ok(follower, &["put", "k", "v"]).trim(), "OK");
    assert_eq!(c.ctl_ok(follower, &["del", "k"]).trim(), "1");
    let grant = c.ctl_ok(follower, &["lease", "grant", "30"]);
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let kept = c.ctl_ok(follower, &["lease", "keep-alive", "--once", &id]);
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    let ttl = c.ctl_ok(follower, &["lease", "timetolive", &id]);
    assert!(ttl.contains("granted with TTL(30s), remaining(2"), "{ttl}");
    c.ctl_ok(follower, &["lease", "revoke", &id]);
    let on_leader = c.ctl_ok(leader, &["lease", "list"]);
    assert!(!on_leader.contains(&id), "{on_leader}");

    // Membership changes made on a follower are made by the leader, over the peer protocol too.
    let learner_url = format!("http://127.0.0.1:{}", free_port());
    let added = c.ctl_ok(
        follower,
        &[
            "member",
            "add",
            "spare",
            "--learner",
            "--peer-urls",
            &learner_url,
        ],
    );
    let learner_id = added
        .split_whitespace()
        .nth(1)
        .expect("new member id")
        .to_string();
    assert!(added.contains("added to cluster"), "{added}");
    let moved_url = format!("http://127.0.0.1:{}", free_port());
    let updated = c.ctl_ok(
        follower,
        &["member", "update", &learner_id, "--peer-urls", &moved_url],
    );
    assert!(updated.contains("updated in cluster"), "{updated}");
    let list = c.ctl_ok(leader, &["member", "list"]);
    assert!(list.contains(&moved_url), "{list}");
    let removed = c.ctl_ok(follower, &["member", "remove", &learner_id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    let list = c.ctl_ok(leader, &["member", "list"]);
    assert!(!list.contains(&learner_id), "{list}");
}

/// Bug guarded against: a write forwarded to a leader that stopped answering (paused, or cut
/// off without the connection closing) waited forever. Now it ends with etcd's "request timed
/// out" within etcd's request timeout (5 s + 2 x election timeout = 7 s here); and once the
/// others elected a new leader, the follower's writes go there.
#[test]
fn a_write_forwarded_to_a_paused_leader_times_out_with_etcds_text() {
    if require_etcd_tools("a_write_forwarded_to_a_paused_leader_times_out_with_etcds_text")
        .is_none()
    {
        return;
    }
    let c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let leader = c.leader().expect("a leader");
    let follower = (leader + 1) % 3;
    let endpoint = format!("http://{}", c.members[follower].endpoint());
    let pid = c.members[leader].child.as_ref().expect("running").id();
    let signal = |sig: &str| {
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    let request_timeout = Duration::from_secs(7);
    let rt = client_runtime();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        client.put("before", "1", None).await.unwrap();
        signal("-STOP");
        let started = Instant::now();
        let put = tokio::time::timeout(request_timeout * 3, client.put("during", "1", None))
            .await
            .expect("the forwarded write must end by itself");
        let took = started.elapsed();
        match put {
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                assert_eq!(s.message(), "etcdserver: request timed out", "{s:?}");
            }
            other => panic!("a write to a paused leader answered {other:?}"),
        }
        assert!(
            took < request_timeout + Duration::from_secs(2),
            "answered after {took:?}"
        );
        // The remaining two elect a leader; the follower's writes then succeed there.
        let started = Instant::now();
        loop {
            match client.put("after", "1", None).await {
                Ok(_) => break,
                Err(e) => assert!(
                    started.elapsed() < READY_DEADLINE,
                    "no write succeeded after the leader paused: {e:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    signal("-CONT");
}

/// Bug guarded against: right after the leader was killed, a follower failed a linearizable
/// read with "etcdserver: no leader" at once (the leader it knew did not answer), and a write
/// forwarded there was sent again to the dead member until the request timed out. Now both
/// wait for the election, as etcd's reads and proposals do, and then succeed.
#[test]
fn requests_on_a_follower_wait_for_the_election_after_the_leader_is_killed() {
    if require_etcd_tools("requests_on_a_follower_wait_for_the_election_after_the_leader_is_killed")
        .is_none()
    {
        return;
    }
    let mut c = Cluster::start(Kind::Oxetcd, &Cluster::ports());
    let leader = c.leader().expect("a leader");
    let reader = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    let rt = client_runtime();
    let connect = |i: usize| {
        let endpoint = format!("http://{}", c.members[i].endpoint());
        rt.block_on(async move {
            etcd_client::Client::connect([endpoint.as_str()], None)
                .await
                .unwrap()
        })
    };
    let mut read_client = connect(reader);
    let mut write_client = connect(writer);
    rt.block_on(async {
        read_client.put("before", "1", None).await.unwrap();
        // Both followers have applied it: their next reads must see it.
        write_client.get("before", None).await.unwrap();
    });
    c.kill(leader);
    let killed_at = Instant::now();
    let limit = Duration::from_secs(15);
    rt.block_on(async {
        let read = tokio::time::timeout(limit, read_client.get("before", None));
        let write = tokio::time::timeout(limit, write_client.put("during", "2", None));
        let (read, write) = tokio::join!(read, write);
        let read = read.expect("the read must end within the request timeout");
        let write = write.expect("the write must end within the request timeout");
        let kvs = read
            .unwrap_or_else(|e| panic!("a read issued during the election failed: {e:?}"))
            .kvs()
            .iter()
            .map(|kv| kv.value().to_vec())
            .collect::<Vec<_>>();
        assert_eq!(kvs, vec![b"1".to_vec()]);
        match write {
            Ok(_) => {}
            // The one honest failure: the forward left before the follower saw the leader's
            // connection close, so it may have been applied.
            Err(etcd_client::Error::GRpcStatus(s))
                if s.message()
                    == "etcdserver: request timed out, possibly due to connection lost" => {}
            Err(e) => panic!("a write issued during the election failed: {e:?}"),
        }
    });
    println!(
        "requests issued right after SIGKILL of the leader answered after {:?}",
        killed_at.elapsed()
    );
}

/// A stop signal to the leader of several voters hands leadership to another member before the
/// process exits (etcd's TransferLeadership on stop), so a rolling restart costs no election
/// timeout. etcd 3.5 and oxetcd on the same script: the leader logs etcd's two transfer lines
/// and exits cleanly; the others have a leader at once.
fn sigterm_on_the_leader_transfers_leadership(kind: Kind) {
    let mut c = Cluster::start(kind, &Cluster::ports());
    let leader = c.leader().expect("a leader");
    let pid = c.members[leader].child.as_ref().expect("running").id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let mut child = c.members[leader].child.take().expect("running");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the leader did not stop");
        thread::sleep(Duration::from_millis(50));
    };
    // etcd re-raises the signal after its graceful stop; oxetcd exits 0.
    use std::os::unix::process::ExitStatusExt;
    assert!(exit.success() || exit.signal() == Some(15), "{exit:?}");
    let log = std::fs::read_to_string(c.log_path(leader)).unwrap_or_default();
    let msgs: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["msg"].as_str().unwrap_or_default().to_string())
        .collect();
    let starting = msgs
        .iter()
        .position(|m| m == "leadership transfer starting");
    let finished = msgs
        .iter()
        .position(|m| m == "leadership transfer finished");
    assert!(
        starting.is_some() && finished > starting,
        "{kind:?}: no transfer lines in the stopped leader's log:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.leader().is_none() {
        assert!(
            Instant::now() < deadline,
            "{kind:?}: no leader after the stop"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_on_the_leader_transfers_leadership_like_etcd() {
    if require_etcd_tools("sigterm_on_the_leader_transfers_leadership_like_etcd").is_none() {
        return;
    }
    sigterm_on_the_leader_transfers_leadership(Kind::Etcd35);
    sigterm_on_the_leader_transfers_leadership(Kind::Oxetcd);
}

/// `--experimental-corrupt-check-time`: the leader compares every member's hash with its own
/// at its revision; a member whose data differs (planted: a test knob makes one member answer
/// with a wrong hash) gets the CORRUPT alarm, and the whole cluster then refuses writes with
/// etcd's "etcdserver: corrupt cluster" while reads go on. The members with equal data are never
/// alarmed, over the same check periods.
#[test]
fn the_periodic_corruption_check_raises_corrupt_and_writes_stop() {
    if require_etcd_tools("the_periodic_corruption_check_raises_corrupt_and_writes_stop").is_none()
    {
        return;
    }
    let mut c = Cluster::start_with(
        Kind::Oxetcd,
        &Cluster::ports(),
        &["--experimental-corrupt-check-time", "300ms"],
    );
    let leader = c.leader().expect("a leader");
    assert_eq!(c.ctl_ok(leader, &["put", "k", "v"]).trim(), "OK");
    // Plant the fault on a follower and restart it.
    let follower = (leader + 1) % 3;
    let status = c.ctl_ok(follower, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let follower_id = v[0]["Status"]["header"]["member_id"].as_u64().expect("id");
    c.kill(follower);
    c.members[follower]
        .env
        .push(("OXETCD_TEST_SKEW_HASH_KV".into(), "1".into()));
    c.spawn(follower);
    let want = format!("memberID:{follower_id} alarm:CORRUPT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader_now = c.leader().unwrap_or(leader);
        let alarms = c.ctl(leader_now, &["alarm", "list"]).stdout_text();
        if alarms.contains(&want) {
            assert_eq!(alarms.trim(), want, "only the planted member is alarmed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm for the planted member; alarms: {alarms:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        let out = c.ctl(i, &["put", "k", "w"]);
        assert!(
            out.stderr_text().contains("etcdserver: corrupt cluster"),
            "member {i}: {}",
            out.stderr_text()
        );
    }
    assert_eq!(
        c.ctl_ok(leader, &["get", "k", "--print-value-only"]).trim(),
        "v"
    );
    // etcdctl's health check reports the alarm, as on etcd.
    let health = c.ctl(leader, &["endpoint", "health"]);
    assert!(
        health.stderr_text().contains("Active Alarm(s): CORRUPT")
            || health.stdout_text().contains("Active Alarm(s): CORRUPT"),
        "{} {}",
        health.stdout_text(),
        health.stderr_text()
    );
}
