//! Running the real etcdctl (3.4 or 3.5) against one endpoint.
//!
//! Invariant: etcdctl runs with an empty environment plus `ETCDCTL_API=3`, so no `ETCDCTL_*`
//! variable of the developer's shell (endpoints, certificates, credentials) leaks into a test.
//! Invariant: a call never blocks a test forever: after `ETCDCTL_DEADLINE` the process is killed
//! and the output says so.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::tools::{etcd_tools, EtcdTools};

/// Wall-clock limit for one etcdctl run (its own --command-timeout is 5 s by default).
pub const ETCDCTL_DEADLINE: Duration = Duration::from_secs(30);

/// Which etcdctl binary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlVersion {
    V34,
    V35,
}

impl CtlVersion {
    pub fn label(self) -> &'static str {
        match self {
            CtlVersion::V34 => "etcdctl 3.4",
            CtlVersion::V35 => "etcdctl 3.5",
        }
    }

    pub fn path(self, tools: &EtcdTools) -> &Path {
        match self {
            CtlVersion::V34 => &tools.etcdctl34,
            CtlVersion::V35 => &tools.etcdctl35,
        }
    }
}

/// What one etcdctl run produced. `code` is the exit code, or 128 + signal number when the
/// process was killed by a signal (shell convention).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
    pub timed_out: bool,
}

impl CtlOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `etcdctl --endpoints=<endpoint> <args...>` with `stdin` fed to it and closed.
///
/// Panics when the etcd tools were not resolved: callers check `require_etcd_tools` first.
pub fn etcdctl(version: CtlVersion, endpoint: &str, args: &[OsString], stdin: &[u8]) -> CtlOutput {
    etcdctl_within(version, endpoint, args, stdin, ETCDCTL_DEADLINE)
}

/// As [`etcdctl`], but the process is killed after `deadline` (for commands that stream until
/// stopped, such as `watch`; the output says it was killed).
pub fn etcdctl_within(
    version: CtlVersion,
    endpoint: &str,
    args: &[OsString],
    stdin: &[u8],
    deadline: Duration,
) -> CtlOutput {
    let tools = match etcd_tools() {
        Ok(tools) => tools,
        Err(reason) => panic!("etcdctl requested but the etcd tools are missing: {reason}"),
    };
    let child = match ctl_command(version.path(tools), endpoint, args).spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot spawn {}: {e}", version.path(tools).display()),
    };
    run_to_end(child, stdin.to_vec(), deadline, None)
}

/// As [`etcdctl_within`], but also killed as soon as `stop` becomes true (for commands that run
/// in the background while other commands are issued). The output notes the kill either way.
pub fn etcdctl_until(
    version: CtlVersion,
    endpoint: &str,
    args: &[OsString],
    stdin: &[u8],
    deadline: Duration,
    stop: &AtomicBool,
) -> CtlOutput {
    let tools = match etcd_tools() {
        Ok(tools) => tools,
        Err(reason) => panic!("etcdctl requested but the etcd tools are missing: {reason}"),
    };
    let child = match ctl_command(version.path(tools), endpoint, args).spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot spawn {}: {e}", version.path(tools).display()),
    };
    let mut out = run_to_end(child, stdin.to_vec(), deadline, Some(stop));
    if out.timed_out {
        // Stopped on request or by the deadline: report it the same way on every server.
        out.stderr = strip_kill_note(out.stderr);
        out.stderr
            .extend_from_slice(b"\n[test harness: background etcdctl stopped]\n");
    }
    out
}

fn strip_kill_note(mut stderr: Vec<u8>) -> Vec<u8> {
    if let Some(at) = find(&stderr, b"\n[test harness: etcdctl killed after") {
        stderr.truncate(at);
    }
    stderr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn ctl_command(path: &Path, endpoint: &str, args: &[OsString]) -> Command {
    let mut command = Command::new(path);
    command
        .env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Feeds stdin, drains stdout/stderr on helper threads, and waits up to `deadline`.
fn run_to_end(
    mut child: Child,
    stdin: Vec<u8>,
    deadline: Duration,
    stop: Option<&AtomicBool>,
) -> CtlOutput {
    let stdin_pipe = child.stdin.take();
    let writer = thread::spawn(move || {
        if let Some(mut pipe) = stdin_pipe {
            // etcdctl may exit without reading its input; a broken pipe is not an error here.
            let _ = pipe.write_all(&stdin);
        }
    });
    let stdout_reader = drain(child.stdout.take());
    let stderr_reader = drain(child.stderr.take());

    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None)
                if started.elapsed() > deadline
                    || stop.is_some_and(|s| s.load(Ordering::SeqCst)) =>
            {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(1)),
            Err(_) => break None,
        }
    };
    let _ = writer.join();
    let stdout = stdout_reader.join().unwrap_or_default();
    let mut stderr = stderr_reader.join().unwrap_or_default();
    if timed_out {
        let note = format!("\n[test harness: etcdctl killed after {deadline:?}]\n");
        stderr.extend_from_slice(note.as_bytes());
    }
    CtlOutput {
        stdout,
        stderr,
        code: status.map_or(-1, exit_code),
        timed_out,
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}
