//! `oxetcd-bench kube` end to end: the real bench binary drives the Kubernetes-shaped workload
//! against a real oxetcd and a real etcd 3.5.1, and each run must finish with zero errors and
//! every per-prefix watch count equal to the writes on that prefix (the tool's own check,
//! read from its output and CSV). Then the store is checked independently through
//! `etcd-client`: the objects are there, the compactor's key advanced, and history before the
//! compaction is gone. No timing is asserted.
//!
//! Invariant: each server and each bench process is killed when the test ends (the server's
//! Drop, `BenchProc`'s Drop), also on failure.
#![cfg(not(madsim))]

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_etcd_tools, Server, ServerKind};
use etcd_client::{Client, GetOptions};

/// Far above the run's own `--duration` plus fill and drain; only a hang reaches it.
const BENCH_DEADLINE: Duration = Duration::from_secs(45);
const OBJECTS: u64 = 600;

/// The bench process; dropping it kills it.
struct BenchProc(Child);

impl Drop for BenchProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `oxetcd-bench kube` against `endpoint`; returns (exit success, stdout, stderr).
fn run_bench(endpoint: &str, csv: &std::path::Path) -> (bool, String, String) {
    let objects = OBJECTS.to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_oxetcd-bench"))
        .args([
            "kube",
            "--endpoints",
            endpoint,
            "--objects",
            &objects,
            "--resources",
            "pods,configmaps",
            "--namespaces",
            "3",
            "--page-size",
            "50",
            "--mix",
            "create=10,update=40,get=30,list=5,event=15",
            "--duration",
            "3",
            "--compact-interval",
            "1",
            "--conns",
            "2",
            "--clients",
            "8",
            "--csv",
        ])
        .arg(csv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxetcd-bench");
    let mut bench = BenchProc(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = bench.0.try_wait().expect("wait for oxetcd-bench") {
            break Some(status);
        }
        if started.elapsed() > BENCH_DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = bench.0.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = bench.0.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let status = status.unwrap_or_else(|| {
        panic!("oxetcd-bench kube still running after {BENCH_DEADLINE:?}:\n{stdout}\n{stderr}")
    });
    (status.success(), stdout, stderr)
}

/// The CSV rows as (workload, ok, errors).
fn csv_rows(csv: &std::path::Path) -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(csv).expect("read the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("CSV header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (w, ok, errors) = (col("workload"), col("ok"), col("errors"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[w].to_string(),
                f[ok].parse().expect("ok column"),
                f[errors].parse().expect("errors column"),
            )
        })
        .collect()
}

async fn kube_run_is_clean(kind: ServerKind) {
    let test = "kube_run_is_clean";
    if kind != ServerKind::Oxetcd && require_etcd_tools(test).is_none() {
        return;
    }
    let server = Server::start(kind).unwrap_or_else(|e| panic!("{test}: server start: {e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("kube.csv");
    let (endpoint, csv_path) = (server.endpoint.clone(), csv.clone());
    let (success, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_bench(&endpoint, &csv_path))
            .await
            .expect("bench thread");
    let label = kind.label();
    assert!(
        success,
        "{label}: oxetcd-bench kube failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("MISMATCH"), "{label}: {stdout}");
    // One watch line per prefix: the two resources and the events.
    let watch_ok = stdout
        .lines()
        .filter(|l| l.contains("PUT events") && l.trim_end().ends_with(" ok"))
        .count();
    assert_eq!(watch_ok, 3, "{label}: watch lines:\n{stdout}");

    let rows = csv_rows(&csv);
    let row = |w: &str| rows.iter().find(|r| r.0 == w).cloned();
    let (_, ok, errors) = row("kube").unwrap_or_else(|| panic!("{label}: no kube row: {rows:?}"));
    assert_eq!(errors, 0, "{label}: {stdout}");
    assert!(ok > 0, "{label}: nothing done: {stdout}");
    for call in [
        "create",
        "update",
        "get",
        "list",
        "event",
        "compact-txn",
        "compact",
    ] {
        let (_, ok, errors) = row(&format!("kube-{call}"))
            .unwrap_or_else(|| panic!("{label}: no {call} row in {rows:?}\n{stdout}"));
        assert!(
            ok > 0 && errors == 0,
            "{label}: {call}: {ok} ok, {errors} errors\n{stdout}"
        );
    }
    let creates = row("kube-create").map_or(0, |r| r.1);

    // The store, seen through another client.
    let mut client = Client::connect([format!("http://{}", server.endpoint)], None)
        .await
        .expect("connect");
    let count = |prefix: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .get(
                    prefix,
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await
                .expect("count")
                .count()
        }
    };
    let objects = count("/registry/pods/").await + count("/registry/configmaps/").await;
    assert_eq!(
        u64::try_from(objects).unwrap(),
        OBJECTS + creates,
        "{label}: objects after the run"
    );
    assert!(count("/registry/events/").await > 0, "{label}: no events");
    let compact_key = client.get("compact_rev_key", None).await.expect("get");
    let kv = &compact_key.kvs()[0];
    assert!(kv.version() >= 2, "{label}: compactor stepped once only");
    // The first revisions (the fill) are compacted away.
    let old = client
        .get("/registry/pods/", Some(GetOptions::new().with_revision(2)))
        .await;
    let err = old.expect_err("revision 2 should be compacted");
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{label}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_run_on_oxetcd_is_clean() {
    kube_run_is_clean(ServerKind::Oxetcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_run_on_etcd35_is_clean() {
    kube_run_is_clean(ServerKind::Etcd35).await;
}
