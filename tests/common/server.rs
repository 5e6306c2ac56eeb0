//! A single-member server process (real etcd 3.4/3.5 or oxetcd) on free loopback ports with a
//! fresh temporary data dir, started with etcd's own flags.
//!
//! Invariant: `Server::start*` returns only once the server answered a linearizable read (so it
//! has a leader), and the returned value owns the process: dropping it SIGKILLs and reaps it,
//! printing the tail of the server's log when the drop happens during a panic.
//! Invariant: ports handed out by `free_port` are never handed out twice by one test binary.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::etcdctl::{etcdctl, CtlVersion};
use super::tools::etcd_tools;

/// How long a server may take to elect itself and answer a read.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of the server log printed when something goes wrong.
pub const LOG_TAIL_LINES: usize = 40;
/// Attempts with fresh ports when a port turned out to be taken after all.
const START_ATTEMPTS_MAX: usize = 3;

/// Which server binary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Etcd35,
    Etcd34,
    Oxetcd,
}

impl ServerKind {
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Etcd35 => "etcd 3.5",
            ServerKind::Etcd34 => "etcd 3.4",
            ServerKind::Oxetcd => "oxetcd",
        }
    }

    fn binary(self) -> Result<PathBuf, String> {
        match self {
            ServerKind::Oxetcd => Ok(PathBuf::from(env!("CARGO_BIN_EXE_oxetcd"))),
            ServerKind::Etcd35 => Ok(etcd_tools()?.etcd35.clone()),
            ServerKind::Etcd34 => Ok(etcd_tools()?.etcd34.clone()),
        }
    }
}

/// Identity learned from the first response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerIds {
    pub cluster_id: u64,
    pub member_id: u64,
    pub raft_term: u64,
}

/// A running single-member server. See the module invariants.
pub struct Server {
    pub kind: ServerKind,
    pub name: String,
    /// `127.0.0.1:<client port>`, the form etcdctl's `--endpoints` and its output use.
    pub endpoint: String,
    pub client_url: String,
    pub peer_url: String,
    /// Learned through etcdctl at startup; `None` only when the etcd tools are unavailable.
    pub ids: Option<ServerIds>,
    child: Child,
    log_path: PathBuf,
    log_on_panic: bool,
    // Held for its Drop: removes the data dir after the process is gone.
    dir: tempfile::TempDir,
}

/// Returns a loopback port that was free a moment ago and that this process never returned
/// before.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot bind a loopback port: {e}"),
        };
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

impl Server {
    /// Starts a member named `default` with no extra flags.
    pub fn start(kind: ServerKind) -> Result<Server, String> {
        Server::start_with(kind, "default", &[])
    }

    /// Starts a single-member cluster with etcd's flags plus `extra_args`, retrying with fresh
    /// ports when the first ones were taken meanwhile.
    pub fn start_with(kind: ServerKind, name: &str, extra_args: &[&str]) -> Result<Server, String> {
        Server::start_with_env(kind, name, extra_args, &[])
    }

    /// As [`Server::start_with`], with extra environment variables (the environment is
    /// otherwise empty).
    pub fn start_with_env(
        kind: ServerKind,
        name: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            match Server::start_once(kind, name, extra_args, env) {
                Ok(server) => return Ok(server),
                Err(e) if e.contains("address already in use") => last_error = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    fn start_once(
        kind: ServerKind,
        name: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let binary = kind.binary()?;
        let dir = tempfile::Builder::new()
            .prefix("oxetcd-test-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path).map_err(|e| format!("cannot create log file: {e}"))?;
        let log_dup = log
            .try_clone()
            .map_err(|e| format!("cannot dup log file: {e}"))?;
        let (client_port, peer_port) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data_dir = dir.path().join("data");
        let args = server_args(name, &data_dir, &client_url, &peer_url, extra_args);

        let mut command = Command::new(&binary);
        command
            .env_clear()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_dup))
            .stderr(Stdio::from(log));
        command.envs(env.iter().copied());
        for var in ["RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(var) {
                command.env(var, value);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", binary.display()))?;
        let mut server = Server {
            kind,
            name: name.to_string(),
            endpoint: format!("127.0.0.1:{client_port}"),
            client_url,
            peer_url,
            ids: None,
            child,
            log_path,
            log_on_panic: true,
            dir,
        };
        server.ids = server.wait_ready(client_port)?;
        Ok(server)
    }

    /// Waits until the server answers a linearizable read and returns the ids of its header.
    fn wait_ready(&mut self, client_port: u16) -> Result<Option<ServerIds>, String> {
        let started = Instant::now();
        let tools_available = etcd_tools().is_ok();
        let mut last_answer = String::from("(no TCP connection yet)");
        while started.elapsed() < STARTUP_DEADLINE {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("exited with {status} before answering")));
            }
            let connected = TcpStream::connect(("127.0.0.1", client_port)).is_ok();
            if connected && !tools_available {
                return Ok(None);
            }
            if connected {
                match probe_ids(&self.endpoint) {
                    Ok(ids) => return Ok(Some(ids)),
                    Err(answer) => last_answer = answer,
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        let what = format!(
            "did not answer a read within {STARTUP_DEADLINE:?}; last answer: {last_answer}"
        );
        Err(self.failure(&what))
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "{} server ({}) {what}\n--- last {LOG_TAIL_LINES} lines of its log ({}) ---\n{}",
            self.kind.label(),
            self.endpoint,
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// The last `lines` lines the server wrote to stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log_path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        if all.is_empty() {
            return "(the log is empty)".into();
        }
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether dropping the server during a panic prints its log tail (default: yes).
    pub fn set_log_on_panic(&mut self, enabled: bool) {
        self.log_on_panic = enabled;
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A description of how the process ended, if it did.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.log_on_panic && thread::panicking() {
            eprintln!(
                "--- {} server {}: last {LOG_TAIL_LINES} lines of its log ---\n{}",
                self.kind.label(),
                self.endpoint,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

fn server_args(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    extra_args: &[&str],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
        "--listen-client-urls".into(),
        client_url.into(),
        "--advertise-client-urls".into(),
        client_url.into(),
        "--listen-peer-urls".into(),
        peer_url.into(),
        "--initial-advertise-peer-urls".into(),
        peer_url.into(),
        "--initial-cluster".into(),
        format!("{name}={peer_url}").into(),
    ];
    args.extend(extra_args.iter().map(OsString::from));
    args
}

/// One linearizable read through etcdctl 3.5; its JSON header carries the ids.
fn probe_ids(endpoint: &str) -> Result<ServerIds, String> {
    let args: Vec<OsString> = ["--dial-timeout=1s", "--command-timeout=2s", "-w", "json"]
        .iter()
        .chain(&["get", "health"])
        .map(OsString::from)
        .collect();
    let out = etcdctl(CtlVersion::V35, endpoint, &args, b"");
    if out.code != 0 {
        return Err(format!("exit {}: {}", out.code, out.stderr_text().trim()));
    }
    parse_header_ids(&out.stdout)
        .ok_or_else(|| format!("unexpected answer: {}", out.stdout_text().trim()))
}

/// Reads `header.{cluster_id,member_id,raft_term}` from an etcdctl `-w json` answer.
pub fn parse_header_ids(json: &[u8]) -> Option<ServerIds> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let header = value.get("header")?;
    Some(ServerIds {
        cluster_id: header.get("cluster_id")?.as_u64()?,
        member_id: header.get("member_id")?.as_u64()?,
        raft_term: header
            .get("raft_term")
            .and_then(|t| t.as_u64())
            .unwrap_or(0),
    })
}
