//! `cargo test --features sim` (here, or at the workspace root, which includes this file):
//! re-runs the sim crate's test targets under `--cfg madsim` in their own target dir and fails
//! when they fail. A Cargo feature cannot turn on `cfg(madsim)` in dependencies (madsim,
//! madsim-tokio and madsim-tonic choose simulated code by that cfg in their own source), so a
//! nested cargo with RUSTFLAGS is the honest way.
//!
//! Environment: MADSIM_TEST_SEED (default 1), MADSIM_TEST_NUM (default 128 seeds per test),
//! MADSIM_TEST_TIME_LIMIT (default 300 simulated seconds per seed: a hang fails instead of
//! spinning), OXETCD_SIM_TARGET_DIR (default `<workspace>/target/madsim`). With the `canary`
//! feature the nested run also builds the planted bugs and runs tests/canary.rs.
#![cfg(all(feature = "sim", not(madsim)))]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root: the directory holding `sim/Cargo.toml`.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("sim").join("Cargo.toml").is_file())
        .unwrap_or(manifest)
        .to_path_buf()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[test]
fn madsim_suite() {
    let root = workspace_root();
    let target = std::env::var_os("OXETCD_SIM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("madsim"));
    let seed = env_or("MADSIM_TEST_SEED", "1");
    let num = env_or("MADSIM_TEST_NUM", "128");
    let limit = env_or("MADSIM_TEST_TIME_LIMIT", "300");
    let mut cmd = Command::new(env_or("CARGO", "cargo"));
    cmd.current_dir(&root)
        .args([
            "test",
            "-p",
            "sim",
            "--tests",
            "--no-fail-fast",
            "--target-dir",
        ])
        .arg(&target);
    if cfg!(feature = "canary") {
        cmd.args(["--features", "canary"]);
    }
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTFLAGS", "--cfg madsim")
        .env("RUSTDOCFLAGS", "--cfg madsim")
        .env("MADSIM_TEST_SEED", &seed)
        .env("MADSIM_TEST_NUM", &num)
        .env("MADSIM_TEST_TIME_LIMIT", &limit);
    println!(
        "simulation: seeds {seed}..+{num}, time limit {limit} s, target {}",
        target.display()
    );
    let status = cmd
        .status()
        .expect("cannot spawn cargo for the madsim suite");
    assert!(
        status.success(),
        "madsim suite failed ({status}); the failing seed and its replay command are printed above"
    );
}
