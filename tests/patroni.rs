//! Patroni (Debian's 3.0.2) + PostgreSQL 15 on oxetcd through the JSON gateway (`etcd3:` DCS),
//! and through the v2 API (`etcd:` DCS, python-etcd):
//! two nodes on loopback elect a leader and stream to a replica; the leader's Patroni and
//! PostgreSQL are killed; the replica takes the leader key once the old one's lease expires
//! (within Patroni's ttl) and `patronictl list` shows it as the leader. The same again on a
//! 3-member oxetcd cluster whose raft leader is killed first. The one-member scenarios run on
//! etcd (3.5.1 for the gateway, 3.4 for the v2 API) right after oxetcd, as a baseline. The
//! failover time is printed, not asserted beyond the deadline.
//!
//! Runs as root (Patroni and PostgreSQL run as the `postgres` user); outside CI a machine
//! without Patroni, PostgreSQL 15 or root skips it.
#![cfg(not(madsim))]

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, in_ci, Server, ServerKind};
use serde_json::Value;

const PATRONI: &str = "/usr/bin/patroni";
const PATRONICTL: &str = "/usr/bin/patronictl";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Patroni's leader-key TTL in this test (its minimum is 20 s).
const TTL_S: u64 = 20;
/// Bootstrap (initdb, base backup) and failover each get this long.
const DEADLINE: Duration = Duration::from_secs(90);

struct Node {
    name: String,
    config: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Kills this node's Patroni and its PostgreSQL (the postmaster named in its pid file).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid_file = self.data_dir.join("postmaster.pid");
        if let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            // SAFETY: a plain kill(2) of a process this test started (through Patroni).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn postgres_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
}

/// Patroni's configuration; `dcs` is `etcd3` (the JSON gateway) or `etcd` (the v2 API).
fn config(dir: &Path, name: &str, dcs: &str, etcd: &str, rest_port: u16, pg_port: u16) -> String {
    format!(
        "scope: demo\nnamespace: /service/\nname: {name}\n\
         restapi:\n  listen: 127.0.0.1:{rest_port}\n  connect_address: 127.0.0.1:{rest_port}\n\
         {dcs}:\n  hosts: {etcd}\n\
         bootstrap:\n  dcs:\n    ttl: {TTL_S}\n    loop_wait: 2\n    retry_timeout: 5\n\
         \x20   postgresql:\n      use_pg_rewind: false\n  initdb:\n  - encoding: UTF8\n\
         \x20 pg_hba:\n  - host replication replicator 127.0.0.1/32 trust\n\
         \x20 - host all all 127.0.0.1/32 trust\n  - local all all trust\n\
         postgresql:\n  listen: 127.0.0.1:{pg_port}\n  connect_address: 127.0.0.1:{pg_port}\n\
         \x20 data_dir: {data}\n  bin_dir: {PG_BIN}\n\
         \x20 authentication:\n    replication: {{username: replicator, password: rep}}\n\
         \x20   superuser: {{username: postgres, password: pg}}\n\
         \x20 parameters:\n    unix_socket_directories: {sock}\n",
        data = dir.join(format!("data-{name}")).display(),
        sock = dir.display(),
    )
}

/// `patronictl list` as JSON: (member, role, state).
fn members(config: &Path, uid: u32, gid: u32) -> Vec<(String, String, String)> {
    let out = Command::new(PATRONICTL)
        .arg("-c")
        .arg(config)
        .args(["list", "-f", "json"])
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    let Ok(Value::Array(rows)) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Vec::new();
    };
    rows.iter()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("Member"), s("Role"), s("State"))
        })
        .collect()
}

fn wait_until<T>(what: &str, logs: &Path, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            let mut tail = String::new();
            for name in ["pg1", "pg2"] {
                let text = fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                tail.push_str(&format!(
                    "--- {name}.log ---\n{}\n",
                    lines[lines.len().saturating_sub(20)..].join("\n")
                ));
            }
            panic!("{what} did not happen within {DEADLINE:?}\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Skips (outside CI) when the machine cannot run Patroni; otherwise the postgres uid/gid.
fn prerequisites(test: &str) -> Option<(u32, u32)> {
    let ready = Path::new(PATRONI).exists()
        && Path::new(PG_BIN).join("initdb").exists()
        // SAFETY: geteuid has no preconditions.
        && unsafe { libc::geteuid() } == 0;
    let ids = postgres_ids();
    if !ready || ids.is_none() {
        assert!(
            !in_ci(),
            "patroni, postgresql-15, root and the postgres user are needed"
        );
        eprintln!("skipping {test}: needs patroni, postgresql-15, root");
        return None;
    }
    ids
}

#[test]
fn patroni_fails_over_on_oxetcd() {
    let Some((uid, gid)) = prerequisites("patroni_fails_over_on_oxetcd") else {
        return;
    };
    let ox = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    failover(&ox.endpoint, "etcd3", uid, gid, "one oxetcd member", || {});
    drop(ox);
    // The same script on etcd 3.5.1, for the record beside oxetcd's figure.
    let etcd = Server::start(ServerKind::Etcd35).expect("etcd 3.5 starts");
    failover(
        &etcd.endpoint,
        "etcd3",
        uid,
        gid,
        "one etcd 3.5.1 member",
        || {},
    );
}

/// The same through Patroni's v2 DCS (`etcd:`, python-etcd over `/v2/keys`: TTL keys, CAS on
/// the leader key, waits) on a member serving the v2 API.
#[test]
fn patroni_fails_over_on_oxetcd_through_the_v2_api() {
    let Some((uid, gid)) = prerequisites("patroni_fails_over_on_oxetcd_through_the_v2_api") else {
        return;
    };
    let ox =
        Server::start_with(ServerKind::Oxetcd, "v2", &["--enable-v2=true"]).expect("oxetcd starts");
    failover(
        &ox.endpoint,
        "etcd",
        uid,
        gid,
        "one oxetcd member, v2 API",
        || {},
    );
    drop(ox);
    let etcd = Server::start_with(ServerKind::Etcd34, "v2", &["--enable-v2=true"])
        .expect("etcd 3.4 starts");
    failover(
        &etcd.endpoint,
        "etcd",
        uid,
        gid,
        "one etcd 3.4 member, v2 API",
        || {},
    );
}

/// The same on a 3-member oxetcd cluster, one of whose members (the raft leader) is killed
/// once Patroni runs: Patroni carries on with the other two, and still fails over.
#[test]
fn patroni_fails_over_on_a_three_member_oxetcd_cluster_missing_a_member() {
    let Some((uid, gid)) =
        prerequisites("patroni_fails_over_on_a_three_member_oxetcd_cluster_missing_a_member")
    else {
        return;
    };
    let mut cluster = OxCluster::start(3);
    let hosts = cluster.endpoints().join(",");
    failover(
        &hosts,
        "etcd3",
        uid,
        gid,
        "3 oxetcd members, the raft leader killed",
        || cluster.kill_leader(),
    );
}

/// A bootstrapped Patroni pair on `hosts`; `disturb` runs once leader and replica run; then the
/// Patroni leader is killed and the replica must take over.
fn failover(hosts: &str, dcs: &str, uid: u32, gid: u32, label: &str, disturb: impl FnOnce()) {
    let dir = tempfile::Builder::new()
        .prefix("oxetcd-patroni-")
        .tempdir()
        .expect("temp dir");
    chown(dir.path(), uid, gid);
    let mut nodes = Vec::new();
    for name in ["pg1", "pg2"] {
        let config_path = dir.path().join(format!("{name}.yml"));
        let text = config(dir.path(), name, dcs, hosts, free_port(), free_port());
        fs::write(&config_path, text).expect("write config");
        chown(&config_path, uid, gid);
        let log = fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
        let child = Command::new(PATRONI)
            .arg(&config_path)
            .current_dir(dir.path())
            .env_clear()
            .env("HOME", dir.path())
            .env("PATH", "/usr/bin:/bin")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("patroni runs");
        nodes.push(Node {
            name: name.to_string(),
            config: config_path,
            data_dir: dir.path().join(format!("data-{name}")),
            child: Some(child),
        });
        if name == "pg1" {
            // The first node bootstraps the cluster (initdb) before the second joins.
            let cfg = nodes[0].config.clone();
            wait_until("a leader", dir.path(), || {
                members(&cfg, uid, gid)
                    .iter()
                    .any(|(_, role, state)| role == "Leader" && state == "running")
                    .then_some(())
            });
        }
    }
    let cfg = nodes[0].config.clone();
    let leader = wait_until("a leader and a streaming replica", dir.path(), || {
        let m = members(&cfg, uid, gid);
        let leader = m.iter().find(|(_, r, s)| r == "Leader" && s == "running")?;
        m.iter()
            .any(|(_, r, s)| r == "Replica" && (s == "streaming" || s == "running"))
            .then(|| leader.0.clone())
    });
    disturb();
    let (dead, alive): (Vec<&mut Node>, Vec<&mut Node>) =
        nodes.iter_mut().partition(|n| n.name == leader);
    let survivor_config = alive[0].config.clone();
    let survivor = alive[0].name.clone();
    let killed_at = Instant::now();
    for n in dead {
        n.kill();
    }
    wait_until("the failover", dir.path(), || {
        members(&survivor_config, uid, gid)
            .iter()
            .any(|(name, role, state)| *name == survivor && role == "Leader" && state == "running")
            .then_some(())
    });
    eprintln!(
        "patroni on {label}: failover from {leader} to {survivor} in {:.1} s (ttl {TTL_S} s)",
        killed_at.elapsed().as_secs_f64()
    );
}

/// A 3-member oxetcd cluster on loopback (each member's process killed on drop).
struct OxCluster {
    _dir: tempfile::TempDir,
    members: Vec<(u16, Child)>,
}

impl OxCluster {
    fn start(n: usize) -> OxCluster {
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-patroni-cluster-")
            .tempdir()
            .expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let log = fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
            let child = Command::new(env!("CARGO_BIN_EXE_oxetcd"))
                .env_clear()
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{p}"
                ))
                .arg(format!("--initial-cluster={initial}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("oxetcd runs");
            members.push((*c, child));
        }
        let cluster = OxCluster { _dir: dir, members };
        for (port, _) in &cluster.members {
            wait_until("an oxetcd member to serve", cluster._dir.path(), || {
                status(*port)
                    .filter(|s| s.get("leader").is_some())
                    .map(|_| ())
            });
        }
        cluster
    }

    fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// Kills the member that leads raft now.
    fn kill_leader(&mut self) {
        let idx = self
            .members
            .iter()
            .position(|(p, _)| {
                status(*p).is_some_and(|s| {
                    s.get("leader") == s.get("header").and_then(|h| h.get("member_id"))
                })
            })
            .expect("one member leads");
        let (_, child) = &mut self.members[idx];
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for OxCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Maintenance.Status` of one member through the gateway.
fn status(port: u16) -> Option<Value> {
    let out = Command::new("/usr/bin/curl")
        .args(["-s", "-m", "5", "-X", "POST", "-d", "{}"])
        .arg(format!("http://127.0.0.1:{port}/v3/maintenance/status"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}
