//! A cluster of real member processes (`oxetcd`, or real etcd for calibration) on loopback,
//! each behind its own peer proxy ([`super::proxy`]), with the process and disk faults of the
//! nemesis: SIGKILL and restart on the same data dir, SIGSTOP and SIGCONT, and (when each
//! member's data dir is a small tmpfs of its own, [`ClusterSpec::disk_mb`]) a disk filled to
//! the last byte and freed again.
//!
//! Every member is started with exactly the flags one gives etcd; only its peer URL differs
//! from its peer listener (the advertised URL is the proxy's).
//!
//! Invariants: every process is owned by the [`Cluster`], whose `Drop` SIGKILLs and reaps it
//! (a stopped one too), unmounts the members' tmpfs disks and prints each member's log tail
//! when dropped during a panic; the peer proxies always know the pid of every running member.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::Instant;

use super::proxy::PeerNet;

/// How long a fresh cluster may take to answer on every member.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
/// A directory each member's whole log is copied to when the cluster is dropped.
pub const KEEP_LOGS_ENV: &str = "OXETCD_CHAOS_LOGS";
/// Lines of each member's log printed when a run fails.
const LOG_TAIL_LINES: usize = 30;

/// What to run.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Shown in reports: "oxetcd", "etcd 3.5.1".
    pub label: String,
    pub binary: PathBuf,
    pub members: usize,
    /// Extra environment of every member (the environment is otherwise empty).
    pub env: Vec<(String, String)>,
    /// Flags given to every member after the cluster's own.
    pub args: Vec<String>,
    /// Each member's data dir on a tmpfs of this many MiB (mounting needs the privilege to;
    /// see [`small_disks_available`]): the disk-full fault fills it.
    pub disk_mb: Option<u64>,
    /// libfaketime (`libfaketimeMT.so.1`), preloaded into every member with its wall clock
    /// read from a file of the member's own (the monotonic clock is left alone): the
    /// clock-jump fault moves one member's wall clock. Only for programs that read the clock
    /// through libc (not Go's).
    pub faketime: Option<PathBuf>,
}

/// Where Debian's libfaketime puts its multi-threaded library.
pub const FAKETIME_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Mounts a tmpfs of `mb` MiB at `at`.
fn mount_tmpfs(at: &std::path::Path, mb: u64) -> Result<(), String> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(at)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount -t tmpfs at {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn unmount(at: &std::path::Path) {
    let _ = Command::new("umount").arg(at).output();
}

/// Whether this process may mount a tmpfs (the disk-full fault needs it): `Err` says why not.
pub fn small_disks_available() -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("oxetcd-chaos-mount-probe-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    mount_tmpfs(dir.path(), 1)?;
    unmount(dir.path());
    Ok(())
}

struct Member {
    name: String,
    client_port: u16,
    /// The member's own peer listener; only its proxy dials it.
    peer_port: u16,
    /// The proxy port: the peer URL everyone else knows.
    proxy_port: u16,
    child: Option<Child>,
    stopped: bool,
    /// The tmpfs mount point holding the data dir, with [`ClusterSpec::disk_mb`].
    disk: Option<PathBuf>,
    /// Joins an existing cluster (`--initial-cluster-state existing`): a member added back.
    joins: bool,
}

/// A running cluster. See the module invariants.
pub struct Cluster {
    pub spec: ClusterSpec,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    pub net: PeerNet,
}

/// A loopback port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts every member and waits until each answers a linearizable read. Must be called
    /// inside a multi-threaded Tokio runtime.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        let io = |e: std::io::Error| format!("cluster setup: {e}");
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-chaos-")
            .tempdir()
            .map_err(io)?;
        let mut proxies = Vec::new();
        let mut members = Vec::new();
        let mut targets: Vec<SocketAddr> = Vec::new();
        for i in 0..spec.members {
            let proxy = TcpListener::bind("127.0.0.1:0").map_err(io)?;
            let proxy_port = proxy.local_addr().map_err(io)?.port();
            proxies.push(proxy);
            let (client_port, peer_port) = (free_port().map_err(io)?, free_port().map_err(io)?);
            targets.push(SocketAddr::from(([127, 0, 0, 1], peer_port)));
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                proxy_port,
                child: None,
                stopped: false,
                disk: None,
                joins: false,
            });
        }
        let net = PeerNet::start(proxies, targets).map_err(io)?;
        let mut cluster = Cluster {
            spec,
            dir,
            members,
            net,
        };
        if let Some(mb) = cluster.spec.disk_mb {
            for i in 0..cluster.members.len() {
                let at = cluster
                    .dir
                    .path()
                    .join(format!("{}.disk", cluster.members[i].name));
                std::fs::create_dir(&at).map_err(io)?;
                mount_tmpfs(&at, mb)?;
                cluster.members[i].disk = Some(at);
            }
        }
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        let started = Instant::now();
        for i in 0..cluster.members.len() {
            loop {
                match cluster.probe_read(i).await {
                    Ok(()) => break,
                    Err(e) if started.elapsed() > READY_DEADLINE => {
                        return Err(format!(
                            "{} member {i} not ready within {READY_DEADLINE:?}: {e}\n{}",
                            cluster.spec.label,
                            cluster.log_tails()
                        ))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `http://127.0.0.1:<client port>` of member `i`.
    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.faketime", self.members[i].name))
    }

    /// Sets member `i`'s wall clock offset (libfaketime's syntax: `+10m`, `-10m`, `+0`); the
    /// member reads it within a second.
    pub fn set_clock_offset(&self, i: usize, offset: &str) -> Result<(), String> {
        if self.spec.faketime.is_none() {
            return Err(format!(
                "member {i}'s clock cannot be moved (no libfaketime)"
            ));
        }
        // Written aside and renamed: the member never reads a half-written offset.
        let file = self.clock_file(i);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, offset).map_err(|e| format!("clock file: {e}"))?;
        std::fs::rename(&tmp, &file).map_err(|e| format!("clock file: {e}"))
    }

    /// The offset of member `i`'s wall clock from this process's, in whole seconds, as the
    /// member's log shows it: a Defragment call (an operator action the member logs, with its
    /// own timestamp, as etcd does) and the `ts` of its "starting defragment" line. `None`: no
    /// answer or no such line.
    pub async fn observed_clock_offset(&self, i: usize) -> Option<i64> {
        let path = self.log_path(i);
        let before = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
        let ours = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        let mut client = self.client(i, Duration::from_secs(3)).await?;
        tokio::time::timeout(Duration::from_secs(3), client.defragment())
            .await
            .ok()?
            .ok()?;
        let log = std::fs::read(&path).ok()?;
        let text = String::from_utf8_lossy(log.get(before..)?);
        let line = text.lines().find(|l| l.contains("starting defragment"))?;
        let ts = line.split("\"ts\":\"").nth(1)?.split('"').next()?;
        Some(rfc3339_unix(ts)? - ours)
    }

    /// The peer URL everyone knows member `i` by (its proxy's).
    fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].proxy_port)
    }

    /// A client of some live member other than `not`.
    async fn client_of_another(&self, not: usize) -> Option<(usize, Client)> {
        for j in (0..self.members.len()).filter(|j| *j != not) {
            if self.members[j].child.is_none() || self.members[j].stopped {
                continue;
            }
            if let Some(c) = self.client(j, Duration::from_secs(3)).await {
                return Some((j, c));
            }
        }
        None
    }

    /// The cluster's member ID of member `i` (by its peer URL), asked of the leader: a
    /// follower's list can lag a removal or an add (it would name a removed member's ID, or
    /// none for one just added).
    async fn member_id(&self, i: usize) -> Result<Option<u64>, String> {
        let leader = self
            .leader()
            .await
            .ok_or("no leader to ask for the member list")?;
        let mut client = self
            .client(leader, Duration::from_secs(3))
            .await
            .ok_or("the leader does not answer")?;
        let list = tokio::time::timeout(Duration::from_secs(3), client.member_list())
            .await
            .map_err(|_| "member list: timed out".to_string())?
            .map_err(|e| format!("member list: {e}"))?;
        let url = self.peer_url(i);
        Ok(list
            .members()
            .iter()
            .find(|m| m.peer_urls().contains(&url))
            .map(|m| m.id()))
    }

    /// Asks the current leader to hand leadership to member `to`; `Ok(false)` when there was no
    /// leader to ask, `to` leads already, or the leader refused (a refusal is an answer, not a
    /// failure of the run).
    pub async fn move_leader(&self, to: usize) -> Result<bool, String> {
        let Some(leader) = self.leader().await else {
            return Ok(false);
        };
        if leader == to {
            return Ok(false);
        }
        let Ok(Some(target)) = self.member_id(to).await else {
            return Ok(false);
        };
        let Some(mut client) = self.client(leader, Duration::from_secs(5)).await else {
            return Ok(false);
        };
        let moved = tokio::time::timeout(Duration::from_secs(5), client.move_leader(target)).await;
        Ok(matches!(moved, Ok(Ok(_))))
    }

    /// Replaces member `i` by a fresh one with the same name and URLs, as an operator
    /// replaces a member: [`Cluster::remove_member`], then [`Cluster::add_back`]. Each call is
    /// retried until `deadline` (a leader change refuses it for a moment).
    pub async fn replace(&mut self, i: usize, deadline: Duration) -> Result<(), String> {
        let started = Instant::now();
        let removed = self.remove_member(i, started, deadline).await?;
        self.add_back(i, removed, started, deadline).await
    }

    /// The first half of a replacement: MemberRemove through another member (retried until
    /// `deadline` has passed since `started`, until the leader no longer lists the member),
    /// SIGKILL, the data dir removed. Answers the removed member's ID.
    pub async fn remove_member(
        &mut self,
        i: usize,
        started: Instant,
        deadline: Duration,
    ) -> Result<Option<u64>, String> {
        let retry = |what: &str, e: String| -> Result<(), String> {
            if started.elapsed() > deadline {
                Err(format!("replacing member {i}: {what}: {e}"))
            } else {
                Ok(())
            }
        };
        let mut removed = None;
        loop {
            let id = match self.member_id(i).await {
                Ok(Some(id)) => id,
                Ok(None) => break,
                Err(e) => {
                    retry("member list", e)?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            removed = Some(id);
            let outcome = match self.client_of_another(i).await {
                Some((_, mut c)) => {
                    tokio::time::timeout(Duration::from_secs(5), c.member_remove(id))
                        .await
                        .map_err(|_| "timed out".to_string())
                        .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
                }
                None => Err("no member to ask".to_string()),
            };
            match outcome {
                Ok(()) => break,
                Err(e) => retry("member remove", e)?,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.kill(i);
        let data = self.data_dir(i);
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .map_err(|e| format!("removing {}: {e}", data.display()))?;
        }
        Ok(removed)
    }

    /// The second half of a replacement: MemberAdd through another member (retried until
    /// `deadline` has passed since `started`; etcd and oxetcd refuse it until the member asked
    /// has been connected to every voting peer for a while), and a start that joins. `removed`
    /// is the ID the member had: the leader listing it means the removal is not through yet.
    pub async fn add_back(
        &mut self,
        i: usize,
        removed: Option<u64>,
        started: Instant,
        deadline: Duration,
    ) -> Result<(), String> {
        let retry = |what: &str, e: String| -> Result<(), String> {
            if started.elapsed() > deadline {
                Err(format!("replacing member {i}: {what}: {e}"))
            } else {
                Ok(())
            }
        };
        let url = self.peer_url(i);
        loop {
            let added = match self.client_of_another(i).await {
                Some((_, mut c)) => {
                    tokio::time::timeout(Duration::from_secs(5), c.member_add([url.as_str()], None))
                        .await
                        .map_err(|_| "timed out".to_string())
                        .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()))
                }
                None => Err("no member to ask".to_string()),
            };
            match added {
                Ok(()) => break,
                // A MemberAdd whose answer was lost may have been applied: the leader lists
                // the URL under a new ID.
                Err(e)
                    if self
                        .member_id(i)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|id| Some(id) != removed) =>
                {
                    let _ = e;
                    break;
                }
                Err(e) => retry("member add", e)?,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.members[i].joins = true;
        self.spawn(i)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        match &self.members[i].disk {
            Some(disk) => disk.join("data"),
            None => self
                .dir
                .path()
                .join(format!("{}.etcd", self.members[i].name)),
        }
    }

    /// Fills member `i`'s disk to the last byte with a filler file; answers the bytes written.
    pub fn fill_disk(&self, i: usize) -> Result<u64, String> {
        use std::io::Write;
        let Some(disk) = &self.members[i].disk else {
            return Err(format!("member {i} has no disk of its own to fill"));
        };
        let mut file = File::create(disk.join("filler")).map_err(|e| format!("filler: {e}"))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(format!("filler: {e}")),
            }
        }
        Ok(written)
    }

    /// Removes member `i`'s filler file.
    pub fn free_disk(&self, i: usize) -> Result<(), String> {
        if let Some(disk) = &self.members[i].disk {
            std::fs::remove_file(disk.join("filler")).map_err(|e| format!("filler: {e}"))?;
        }
        Ok(())
    }

    fn initial_cluster(&self) -> String {
        let items: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.proxy_port))
            .collect();
        items.join(",")
    }

    /// Starts member `i` (a restart reuses its data dir and flags).
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("member log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("member log: {e}"))?;
        let m = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let args: Vec<OsString> = vec![
            "--name".into(),
            m.name.clone().into(),
            "--data-dir".into(),
            self.data_dir(i).into(),
            "--listen-client-urls".into(),
            client_url.clone().into(),
            "--advertise-client-urls".into(),
            client_url.into(),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{}", m.peer_port).into(),
            "--initial-advertise-peer-urls".into(),
            format!("http://127.0.0.1:{}", m.proxy_port).into(),
            "--initial-cluster".into(),
            self.initial_cluster().into(),
            "--initial-cluster-token".into(),
            "chaos-cluster".into(),
            "--initial-cluster-state".into(),
            if m.joins { "existing" } else { "new" }.into(),
        ];
        let args: Vec<OsString> = args
            .into_iter()
            .chain(self.spec.args.iter().map(OsString::from))
            .collect();
        let mut clock_env: Vec<(String, String)> = Vec::new();
        if let Some(library) = &self.spec.faketime {
            let file = self.clock_file(i);
            if !file.exists() {
                std::fs::write(&file, "+0").map_err(|e| format!("clock file: {e}"))?;
            }
            clock_env = vec![
                ("LD_PRELOAD".into(), library.display().to_string()),
                ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
                ("FAKETIME_CACHE_DURATION".into(), "1".into()),
                ("DONT_FAKE_MONOTONIC".into(), "1".into()),
            ];
        }
        let child = Command::new(&self.spec.binary)
            .env_clear()
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(clock_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.spec.binary.display()))?;
        self.net.set_pid(i, Some(child.id()));
        let m = &mut self.members[i];
        m.child = Some(child);
        m.stopped = false;
        Ok(())
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].stopped = false;
        self.net.set_pid(i, None);
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) member `i`.
    pub fn pause(&mut self, i: usize, stop: bool) {
        let m = &mut self.members[i];
        if let Some(child) = &m.child {
            let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            let Ok(pid) = libc::pid_t::try_from(child.id()) else {
                return;
            };
            // SAFETY: kill(2) with a pid this cluster spawned and has not reaped.
            unsafe {
                libc::kill(pid, signal);
            }
            m.stopped = stop;
        }
    }

    /// Whether member `i`'s process has exited on its own (it should never).
    pub fn exited(&mut self, i: usize) -> Option<String> {
        let child = self.members[i].child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// A client of member `i` alone.
    pub async fn client(&self, i: usize, timeout: Duration) -> Option<Client> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(timeout);
        let connect = Client::connect([self.client_url(i)], Some(options));
        tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .ok()?
            .ok()
    }

    async fn probe_read(&self, i: usize) -> Result<(), String> {
        let mut client = self
            .client(i, Duration::from_secs(2))
            .await
            .ok_or("no connection")?;
        let get = client.get("health-probe", None);
        match tokio::time::timeout(Duration::from_secs(3), get).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// The member that says it leads, asking each live member once.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() || self.members[i].stopped {
                continue;
            }
            let Some(mut client) = self.client(i, Duration::from_secs(1)).await else {
                continue;
            };
            let status = tokio::time::timeout(Duration::from_secs(1), client.status()).await;
            if let Ok(Ok(status)) = status {
                let own = status.header().map(|h| h.member_id());
                if own.is_some() && own == Some(status.leader()) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The last lines of every member's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for i in 0..self.members.len() {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            out.push_str(&format!(
                "--- {} member {} log tail ---\n{tail}\n",
                self.spec.label, self.members[i].name
            ));
        }
        out
    }
}

/// The whole seconds of an RFC 3339 UTC time (`2026-12-06T03:39:57.661Z`) as Unix seconds.
fn rfc3339_unix(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let ymd: Vec<i64> = date.split('-').filter_map(|p| p.parse().ok()).collect();
    let [year, month, day] = ymd.as_slice() else {
        return None;
    };
    let hms: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .filter_map(|p| p.split('.').next()?.parse().ok())
        .collect();
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (proleptic Gregorian), then seconds.
    let (y, mo) = if *month <= 2 {
        (year - 1, month + 9)
    } else {
        (*year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        // Whole logs kept for a look after the run (the run's directory goes with it).
        if let Ok(keep) = std::env::var(KEEP_LOGS_ENV) {
            for i in 0..self.members.len() {
                let to = PathBuf::from(&keep).join(format!(
                    "{}-{}.log",
                    self.spec
                        .label
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
                    self.members[i].name
                ));
                if let Err(e) = std::fs::copy(self.log_path(i), &to) {
                    eprintln!("{KEEP_LOGS_ENV}: cannot copy to {}: {e}", to.display());
                }
            }
        }
        for m in &self.members {
            if let Some(disk) = &m.disk {
                unmount(disk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_times_read_as_unix_seconds() {
        assert_eq!(super::rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::rfc3339_unix("2026-12-06T03:34:05.661Z"),
            Some(1_796_528_045)
        );
        assert_eq!(
            super::rfc3339_unix("2000-02-29T12:00:01Z"),
            Some(951_825_601)
        );
        assert_eq!(super::rfc3339_unix("garbage"), None);
    }
}
