//! `cargo test --features sim` (here, or at the workspace root, which includes this file):
//! builds the sim crate's test targets under `--cfg madsim` in their own target dir, runs them,
//! and fails when they fail. A Cargo feature cannot turn on `cfg(madsim)` in dependencies
//! (madsim, madsim-tokio and madsim-tonic choose simulated code by that cfg in their own
//! source), so a nested cargo with RUSTFLAGS is the honest way.
//!
//! Every seed of every simulated test (`#[madsim::test]`) runs in a process of its own, a few at
//! a time: a run is then a function of its seed alone, and the replay command printed for a
//! failure reproduces it exactly. Within one process it is not: `tokio::select!` and
//! `futures::select!` pick their first branch from a thread-local generator seeded from a
//! process-wide counter, so concurrent tests, and earlier seeds on other threads, change which
//! branch a later seed takes. (Found when a seed that failed in the suite passed on replay.)
//! The canary hunts (tests/canary.rs, plain tests that walk their own seeds) run once each, and
//! the library's unit tests (the checkers' own tests) in one process.
//!
//! Environment: MADSIM_TEST_SEED (default 1), MADSIM_TEST_NUM (default 128 seeds per test),
//! MADSIM_TEST_TIME_LIMIT (default 300 simulated seconds per seed: a hang fails instead of
//! spinning), OXETCD_SIM_TARGET_DIR (default `<workspace>/target/madsim`), OXETCD_SIM_JOBS
//! (processes at a time; default: the available cores). With the `canary` feature the nested
//! build also has the planted bugs and tests/canary.rs runs.
#![cfg(all(feature = "sim", not(madsim)))]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// Test binaries whose tests walk seeds themselves: each test runs once, not once per seed.
const SELF_SEEDED: &[&str] = &["canary"];

/// Lines of a failed run's output shown (its end: the panic and the seed's report).
const FAILURE_TAIL_LINES: usize = 60;

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

/// One test binary of the sim crate, built for the simulation.
struct Binary {
    /// The target name (`deep_faults` for tests/deep_faults.rs; `sim` for the library).
    name: String,
    /// The library's unit tests (`--lib`), rather than a `tests/` target.
    lib: bool,
    executable: PathBuf,
}

/// One process to run: a test of a binary (every test when `None`), with one seed (or the
/// first seed of the tests that walk their own).
struct Job {
    binary: usize,
    test: Option<String>,
    seed: u64,
    /// Seeds the process runs (1, except for the self-seeded hunts).
    num: u64,
}

/// Builds the sim crate's test targets under `--cfg madsim` and returns them.
fn build(root: &Path, target: &Path) -> Vec<Binary> {
    let mut cmd = Command::new(env_or("CARGO", "cargo"));
    cmd.current_dir(root)
        .args(["test", "-p", "sim", "--tests", "--no-run"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--target-dir",
        ])
        .arg(target);
    if cfg!(feature = "canary") {
        cmd.args(["--features", "canary"]);
    }
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTFLAGS", "--cfg madsim")
        .env("RUSTDOCFLAGS", "--cfg madsim")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd
        .output()
        .expect("cannot spawn cargo to build the madsim suite");
    assert!(
        out.status.success(),
        "building the madsim suite failed ({})",
        out.status
    );
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test_harness =
            msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true;
        if let (true, Some(exe), Some(name)) = (
            is_test_harness,
            msg["executable"].as_str(),
            msg["target"]["name"].as_str(),
        ) {
            let lib = msg["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "lib"));
            binaries.push(Binary {
                name: name.to_string(),
                lib,
                executable: PathBuf::from(exe),
            });
        }
    }
    assert!(
        !binaries.is_empty(),
        "the madsim build reported no test executables"
    );
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    binaries
}

/// The tests of a binary (`--list`), as libtest names them.
fn list_tests(binary: &Binary, dir: &Path) -> Vec<String> {
    let out = Command::new(&binary.executable)
        .current_dir(dir)
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap_or_else(|e| panic!("cannot list the tests of {}: {e}", binary.name));
    assert!(
        out.status.success(),
        "listing the tests of {} failed ({})",
        binary.name,
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// What the user runs to reproduce one job.
fn replay_command(binary: &Binary, job: &Job, limit: &str) -> String {
    let features = if cfg!(feature = "canary") {
        " --features canary"
    } else {
        ""
    };
    let target = if binary.lib {
        "--lib".to_string()
    } else {
        format!("--test {}", binary.name)
    };
    // The same arguments as the suite's run, so the process does the same.
    let filter = job
        .test
        .as_ref()
        .map_or(String::new(), |t| format!(" --exact {t}"));
    format!(
        "MADSIM_TEST_SEED={} MADSIM_TEST_NUM={} MADSIM_TEST_TIME_LIMIT={limit} \
         RUSTFLAGS=\"--cfg madsim\" RUSTDOCFLAGS=\"--cfg madsim\" cargo test -p sim{features} \
         --target-dir target/madsim {target} --{filter} --nocapture",
        job.seed, job.num
    )
}

/// A failed job: its replay command and the end of its output.
struct Failure {
    replay: String,
    tail: String,
}

#[test]
fn madsim_suite() {
    let root = workspace_root();
    let target = std::env::var_os("OXETCD_SIM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("madsim"));
    let seed: u64 = env_or("MADSIM_TEST_SEED", "1")
        .parse()
        .expect("MADSIM_TEST_SEED must be a number");
    let num: u64 = env_or("MADSIM_TEST_NUM", "128")
        .parse()
        .expect("MADSIM_TEST_NUM must be a number");
    let limit = env_or("MADSIM_TEST_TIME_LIMIT", "300");
    let jobs_max: usize = std::env::var("OXETCD_SIM_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    println!(
        "simulation: seeds {seed}..+{num}, time limit {limit} s, {jobs_max} processes at a time, \
         target {}",
        target.display()
    );

    let binaries = build(&root, &target);
    // libtest runs a test binary in its package's directory.
    let package_dir = root.join("sim");
    let mut queue = VecDeque::new();
    for (index, binary) in binaries.iter().enumerate() {
        let tests = list_tests(binary, &package_dir);
        println!("{}: {} tests", binary.name, tests.len());
        if tests.is_empty() {
            continue;
        }
        if binary.lib {
            queue.push_back(Job {
                binary: index,
                test: None,
                seed,
                num,
            });
            continue;
        }
        for test in tests {
            if SELF_SEEDED.contains(&binary.name.as_str()) {
                queue.push_back(Job {
                    binary: index,
                    test: Some(test),
                    seed,
                    num,
                });
            } else {
                for s in seed..seed.saturating_add(num) {
                    queue.push_back(Job {
                        binary: index,
                        test: Some(test.clone()),
                        seed: s,
                        num: 1,
                    });
                }
            }
        }
    }
    let total = queue.len();
    // Per test: runs not finished yet, and when its first run started (for a progress line).
    let mut progress =
        std::collections::BTreeMap::<(usize, Option<String>), (usize, Option<Instant>)>::new();
    for job in &queue {
        progress
            .entry((job.binary, job.test.clone()))
            .or_insert((0, None))
            .0 += 1;
    }
    let progress = Mutex::new(progress);
    let queue = Mutex::new(queue);
    let failures = Mutex::new(Vec::<Failure>::new());
    let started = Instant::now();

    std::thread::scope(|scope| {
        for _ in 0..jobs_max {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some(job) = next else { break };
                let binary = &binaries[job.binary];
                let key = (job.binary, job.test.clone());
                progress
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key.clone())
                    .and_modify(|(_, first)| {
                        first.get_or_insert_with(Instant::now);
                    });
                let mut cmd = Command::new(&binary.executable);
                if let Some(test) = &job.test {
                    cmd.args(["--exact", test]);
                }
                let out = cmd
                    .current_dir(&package_dir)
                    .arg("--nocapture")
                    .env("MADSIM_TEST_SEED", job.seed.to_string())
                    .env("MADSIM_TEST_NUM", job.num.to_string())
                    .env("MADSIM_TEST_TIME_LIMIT", &limit)
                    .output();
                let (ok, text) = match out {
                    Ok(out) => {
                        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                        text.push_str(&String::from_utf8_lossy(&out.stderr));
                        (out.status.success(), text)
                    }
                    Err(e) => (false, format!("cannot run {}: {e}", binary.name)),
                };
                {
                    let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((left, first)) = progress.get_mut(&key) {
                        *left -= 1;
                        if *left == 0 {
                            println!(
                                "{} {}: done in {:.0} s",
                                binary.name,
                                job.test.as_deref().unwrap_or("(unit tests)"),
                                first.map_or(0.0, |t| t.elapsed().as_secs_f64())
                            );
                        }
                    }
                }
                if !ok {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(FAILURE_TAIL_LINES)..].join("\n");
                    let replay = replay_command(binary, &job, &limit);
                    println!(
                        "FAILED {} {} seed {}: replay with\n  {replay}",
                        binary.name,
                        job.test.as_deref().unwrap_or("(all tests)"),
                        job.seed
                    );
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Failure { replay, tail });
                }
            });
        }
    });

    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    println!(
        "simulation: {total} runs in {:.0} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for failure in &failures {
        println!("\n---- {}\n{}", failure.replay, failure.tail);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} simulated runs failed; each one's output and exact replay command are \
         printed above",
        failures.len()
    );
}
