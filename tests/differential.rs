//! Differential tests: every case script in `tests/diff/` runs against real etcd 3.5 (the
//! reference) and the candidate server (oxetcd unless `OXETCD_DIFF_CANDIDATE` says otherwise),
//! driven by the real etcdctl 3.5 and 3.4, and every answer must match after normalisation.
//! `tests/diff/README.md` documents the case language; `common::diff` the harness.
//!
//! Invariant: every `*.txt` file in `tests/diff/` has exactly one test here, so a failure names
//! its file.
#![cfg(not(madsim))]

mod common;

use common::diff::run_script_file;

/// The case files; `every_script_has_a_test` keeps this list and the directory in step.
const SCRIPTS: [&str; 11] = [
    "put_get.txt",
    "range.txt",
    "delete.txt",
    "txn.txt",
    "compaction.txt",
    "errors.txt",
    "status.txt",
    "lease.txt",
    "watch.txt",
    "quota.txt",
    "auth.txt",
];

#[test]
fn diff_auth() {
    run_script_file("auth.txt");
}

#[test]
fn diff_put_get() {
    run_script_file("put_get.txt");
}

#[test]
fn diff_range() {
    run_script_file("range.txt");
}

#[test]
fn diff_delete() {
    run_script_file("delete.txt");
}

#[test]
fn diff_txn() {
    run_script_file("txn.txt");
}

#[test]
fn diff_compaction() {
    run_script_file("compaction.txt");
}

#[test]
fn diff_errors() {
    run_script_file("errors.txt");
}

#[test]
fn diff_status() {
    run_script_file("status.txt");
}

#[test]
fn diff_lease() {
    run_script_file("lease.txt");
}

#[test]
fn diff_quota() {
    run_script_file("quota.txt");
}

#[test]
fn diff_watch() {
    run_script_file("watch.txt");
}

#[test]
fn every_script_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(common::diff::runner::script_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".txt"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/diff/*.txt and SCRIPTS differ");
}

#[test]
fn every_script_parses() {
    for file in SCRIPTS {
        let path = common::diff::runner::script_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let script =
            common::diff::script::parse_script(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!script.steps.is_empty(), "{file} has no steps");
    }
}
