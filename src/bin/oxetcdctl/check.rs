//! `check perf` and `check datascale`: etcdctl 3.5's cluster checks, with its workload models,
//! key and value sizes, pass/fail thresholds and output lines.
//!
//! - `perf` writes 256-byte keys with 1 KiB values under `--prefix` at the model's rate for 60
//!   seconds over the model's number of client connections, then judges throughput (> 90 % of
//!   the rate), the slowest request (≤ 0.5 s) and the latency standard deviation (≤ 0.1 s).
//! - `datascale` writes the model's number of 512 + 512-byte pairs as fast as the clients go and
//!   reports how much the first endpoint's resident memory grew (its `/metrics`).
//!
//! Both refuse a prefix that holds keys and delete what they wrote afterwards. Progress is drawn
//! on stderr only when stdout is a terminal.
//!
//! Invariant: at most one request per client connection is in flight; the generator waits
//! for an idle client before it makes the next request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use rand::Rng as _;

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};

use super::client::{Client, Global};
use super::kv::prefix_end;
use super::print::go_quote;
use super::CtlError;

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(CheckArgs<PerfPrefix>),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    Datascale(CheckArgs<DatascalePrefix>),
}

/// The default `--prefix` of each check.
pub trait DefaultPrefix: Clone + Send + Sync + 'static {
    const PREFIX: &'static str;
}

#[derive(Debug, Clone)]
pub struct PerfPrefix;
impl DefaultPrefix for PerfPrefix {
    const PREFIX: &'static str = "/etcdctl-check-perf/";
}

#[derive(Debug, Clone)]
pub struct DatascalePrefix;
impl DefaultPrefix for DatascalePrefix {
    const PREFIX: &'static str = "/etcdctl-check-datascale/";
}

#[derive(Debug, Args)]
pub struct CheckArgs<P: DefaultPrefix> {
    /// The check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    load: String,
    /// The prefix for writing the check's keys.
    #[arg(long, default_value = P::PREFIX)]
    prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long = "auto-compact")]
    auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long = "auto-defrag")]
    auto_defrag: bool,
    #[arg(skip)]
    _default: std::marker::PhantomData<P>,
}

/// etcdctl's model names and aliases.
fn model(load: &str) -> Result<usize, CtlError> {
    match load {
        "s" | "small" => Ok(0),
        "m" | "medium" => Ok(1),
        "l" | "large" => Ok(2),
        "xl" | "xLarge" => Ok(3),
        other => Err(CtlError::bad_feature(format!(
            "unknown load option {other}"
        ))),
    }
}

/// `check perf` models: (writes per second, clients, seconds).
const PERF_MODELS: [(u32, usize, u64); 4] = [
    (150, 50, 60),
    (1000, 200, 60),
    (8000, 500, 60),
    (15000, 1000, 60),
];

/// `check datascale` models: (pairs, bytes per pair, clients).
const DATASCALE_MODELS: [(usize, usize, usize); 4] = [
    (10_000, 1024, 50),
    (100_000, 1024, 200),
    (1_000_000, 1024, 500),
    (3_000_000, 1024, 1000),
];

pub async fn run(g: &Global, command: CheckCommand) -> Result<(), CtlError> {
    match command {
        CheckCommand::Perf(a) => perf(g, a).await,
        CheckCommand::Datascale(a) => datascale(g, a).await,
    }
}

/// Latencies of the requests that succeeded and the count of each error, as etcd's `report`
/// package keeps them.
#[derive(Default)]
struct Results {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
}

struct Stats {
    rps: f64,
    slowest: f64,
    stddev: f64,
    errors: BTreeMap<String, u64>,
}

impl Results {
    fn stats(self, total: Duration) -> Stats {
        let n = self.latencies.len() as f64;
        let mean = self.latencies.iter().sum::<f64>() / n.max(1.0);
        let variance = self
            .latencies
            .iter()
            .map(|l| (l - mean) * (l - mean))
            .sum::<f64>()
            / n.max(1.0);
        Stats {
            rps: n / total.as_secs_f64().max(f64::MIN_POSITIVE),
            slowest: self.latencies.iter().copied().fold(0.0, f64::max),
            stddev: variance.sqrt(),
            errors: self.errors,
        }
    }
}

/// Puts of random keys: `prefix` + a 256- or 512-byte buffer into which a random varint is
/// written over what the previous key left (etcdctl's generator), with a zeroed value.
struct KeyGen {
    prefix: Vec<u8>,
    buf: Vec<u8>,
    value_len: usize,
}

impl KeyGen {
    fn next(&mut self) -> PutRequest {
        let n: i64 = rand::thread_rng().gen_range(0..i64::MAX);
        // Go's binary.PutVarint: zig-zag, then 7 bits per byte, low first.
        let mut z = (n << 1) as u64 ^ ((n >> 63) as u64);
        let mut i = 0;
        while z >= 0x80 {
            self.buf[i] = (z as u8) | 0x80;
            z >>= 7;
            i += 1;
        }
        self.buf[i] = z as u8;
        let mut key = self.prefix.clone();
        key.extend_from_slice(&self.buf);
        PutRequest {
            key,
            value: vec![0; self.value_len],
            ..PutRequest::default()
        }
    }
}

/// Runs puts from `next` over `clients`, at most one in flight per client, until `next`
/// returns `None`; `done` is called after each.
async fn drive(
    clients: &[Client],
    mut next: impl FnMut() -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = PutRequest>>>>,
    done: impl Fn() + Clone + Send + 'static,
) -> Results {
    let results = Arc::new(std::sync::Mutex::new(Results::default()));
    // A client is either idle (in this queue) or carrying exactly one request.
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::channel::<Client>(clients.len().max(1));
    for client in clients {
        let _ = idle_tx.send(client.clone()).await;
    }
    let mut in_flight = Vec::new();
    while let Some(request) = next() {
        let request = request.await;
        let Some(client) = idle_rx.recv().await else {
            break;
        };
        let results = results.clone();
        let done = done.clone();
        let idle_tx = idle_tx.clone();
        in_flight.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = KvClient::new(client.channel.clone())
                .put(client.request(request))
                .await;
            let latency = started.elapsed().as_secs_f64();
            if let Ok(mut r) = results.lock() {
                match outcome {
                    Ok(_) => r.latencies.push(latency),
                    Err(status) => {
                        let text = CtlError::from_status(&status).message;
                        *r.errors.entry(text).or_default() += 1;
                    }
                }
            }
            done();
            let _ = idle_tx.send(client).await;
        }));
        // Finished tasks are dropped as we go so the list stays about `clients` long.
        in_flight.retain(|task| !task.is_finished());
    }
    for task in in_flight {
        let _ = task.await;
    }
    let mut guard = match results.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    std::mem::take(&mut *guard)
}

async fn connect_all(g: &Global, n: usize) -> Result<Vec<Client>, CtlError> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(g).await?);
    }
    Ok(clients)
}

/// Fails with etcdctl's message when `prefix` already holds a key.
async fn require_empty(client: &Client, prefix: &str, quote_del: bool) -> Result<(), CtlError> {
    let r = client
        .call(
            |c, r| async move { KvClient::new(c).range(r).await },
            RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                limit: 1,
                ..RangeRequest::default()
            },
        )
        .await?;
    if r.kvs.is_empty() {
        return Ok(());
    }
    let command = format!("etcdctl del --prefix {prefix}");
    let command = if quote_del {
        format!("'{command}'")
    } else {
        command
    };
    Err(CtlError::invalid_input(format!(
        "prefix {} has keys. Delete with {command} first",
        go_quote(prefix)
    )))
}

/// Deletes the check's keys; then compacts and defragments when asked.
async fn clean_up(
    g: &Global,
    client: &Client,
    prefix: &str,
    auto_compact: bool,
    auto_defrag: bool,
) -> Result<(), CtlError> {
    let deleted = client
        .call(
            |c, r| async move { KvClient::new(c).delete_range(r).await },
            DeleteRangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..DeleteRangeRequest::default()
            },
        )
        .await;
    let revision = match deleted {
        Ok(r) => r.header.unwrap_or_default().revision,
        Err(e) => {
            println!(
                "FAIL: Cleanup failed during key deletion: ERROR({})",
                e.message
            );
            return Ok(());
        }
    };
    if auto_compact {
        println!("Compacting with revision {revision}");
        client
            .call(
                |c, r| async move { KvClient::new(c).compact(r).await },
                CompactionRequest {
                    revision,
                    physical: true,
                },
            )
            .await?;
        println!("Compacted with revision {revision}");
    }
    if auto_defrag {
        for endpoint in &g.endpoints {
            println!("Defragmenting {}", go_quote(endpoint));
            Client::connect_to(g, endpoint)
                .await?
                .call(
                    |c, r| async move { MaintenanceClient::new(c).defragment(r).await },
                    DefragmentRequest::default(),
                )
                .await?;
            println!("Defragmented {}", go_quote(endpoint));
        }
    }
    Ok(())
}

fn bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("[{bar:40}] {pos}/{len} {percent}% {elapsed}")
            .map(|s| s.progress_chars("=> "))
    {
        bar.set_style(style);
    }
    bar
}

/// Resolves on SIGINT (etcdctl's checks stop early and clean up on an interrupt).
async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

async fn perf(g: &Global, a: CheckArgs<PerfPrefix>) -> Result<(), CtlError> {
    let (rate, n_clients, seconds) = PERF_MODELS[model(&a.load)?];
    let clients = connect_all(g, n_clients).await?;
    require_empty(&clients[0], &a.prefix, true).await?;
    let bar = bar(seconds);
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..seconds {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            interrupted().await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut keys = KeyGen {
        prefix: a.prefix.as_bytes().to_vec(),
        buf: vec![0; 256],
        value_len: 1024,
    };
    let interval = Duration::from_secs(1) / rate;
    let mut slot = tokio::time::Instant::now();
    let results = drive(
        &clients,
        || {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            // One token per interval, no burst beyond one (etcdctl's rate limiter).
            slot = slot.max(tokio::time::Instant::now());
            let at = slot;
            slot += interval;
            if at >= deadline {
                return None;
            }
            let request = keys.next();
            Some(Box::pin(async move {
                tokio::time::sleep_until(at).await;
                request
            }))
        },
        || {},
    )
    .await;
    let total = started.elapsed();
    watcher.abort();
    ticker.abort();
    bar.finish_and_clear();
    let s = results.stats(total);
    clean_up(g, &clients[0], &a.prefix, a.auto_compact, a.auto_defrag).await?;
    let mut ok = true;
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (error, count) in &s.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
        ok = false;
    }
    let writes = s.rps as i64 + 1;
    if s.rps / f64::from(rate) <= 0.9 {
        println!("FAIL: Throughput too low: {writes} writes/s");
        ok = false;
    } else {
        println!("PASS: Throughput is {writes} writes/s");
    }
    if s.slowest > 0.5 {
        println!("Slowest request took too long: {:.6}s", s.slowest);
        ok = false;
    } else {
        println!("PASS: Slowest request took {:.6}s", s.slowest);
    }
    if s.stddev > 0.1 {
        println!("Stddev too high: {:.6}s", s.stddev);
        ok = false;
    } else {
        println!("PASS: Stddev is {:.6}s", s.stddev);
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(CtlError {
            code: super::exit::ERROR,
            message: String::new(),
        })
    }
}

async fn datascale(g: &Global, a: CheckArgs<DatascalePrefix>) -> Result<(), CtlError> {
    let (pairs, pair_bytes, n_clients) = DATASCALE_MODELS[model(&a.load)?];
    let clients = connect_all(g, n_clients).await?;
    let endpoint = g
        .endpoints
        .first()
        .ok_or_else(|| CtlError::bad_args("no endpoints"))?
        .clone();
    require_empty(&clients[0], &a.prefix, false).await?;
    let Some(before) = resident_bytes(g, &endpoint).await else {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(silent_failure());
    };
    println!(
        "Start data scale check for work load [{pairs} key-value pairs, {pair_bytes} bytes per \
         key-value, {n_clients} concurrent clients]."
    );
    let bar = bar(pairs as u64);
    let mut keys = KeyGen {
        prefix: a.prefix.as_bytes().to_vec(),
        buf: vec![0; 512],
        value_len: 512,
    };
    let mut issued = 0usize;
    let started = Instant::now();
    let progress = bar.clone();
    let results = drive(
        &clients,
        || {
            if issued == pairs {
                return None;
            }
            issued += 1;
            let request = keys.next();
            Some(Box::pin(async move { request }))
        },
        move || progress.inc(1),
    )
    .await;
    bar.finish_and_clear();
    let s = results.stats(started.elapsed());
    let after = resident_bytes(g, &endpoint).await;
    clean_up(g, &clients[0], &a.prefix, a.auto_compact, a.auto_defrag).await?;
    let Some(after) = after else {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(silent_failure());
    };
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (error, count) in &s.errors {
            println!("FAIL: ERROR({error}) -> {count}");
        }
        return Err(silent_failure());
    }
    let used_mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {used_mb:.2} MB.");
    Ok(())
}

/// Exit 1 with nothing more printed (the FAIL lines said it).
fn silent_failure() -> CtlError {
    CtlError {
        code: super::exit::ERROR,
        message: String::new(),
    }
}

/// `process_resident_memory_bytes` from the endpoint's `/metrics`, or `None` after printing
/// why not (etcdctl's messages).
async fn resident_bytes(g: &Global, endpoint: &str) -> Option<f64> {
    let url = g.url(endpoint);
    let text = match fetch_metrics(&url).await {
        Ok(text) => text,
        Err(e) => {
            println!("fetch error: {e}");
            return None;
        }
    };
    const KEY: &str = "process_resident_memory_bytes";
    let Some(line) = text.lines().find(|l| l.starts_with(KEY)) else {
        println!("could not find: {KEY}");
        return None;
    };
    match line[KEY.len()..].trim().parse::<f64>() {
        Ok(v) => Some(v),
        Err(e) => {
            println!("parse error: {e}");
            None
        }
    }
}

/// GET `<url>/metrics` over HTTP/1.1 (plain http; an https endpoint is refused with a reason).
async fn fetch_metrics(url: &str) -> Result<String, String> {
    use http_body_util::BodyExt as _;
    let Some(authority) = url.strip_prefix("http://") else {
        return Err(format!(
            "Get {url}/metrics: oxetcdctl reads /metrics over plain http only"
        ));
    };
    let authority = authority.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("Get \"{url}/metrics\": dial tcp {authority}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("Get \"{url}/metrics\": {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get("/metrics")
        .header(http::header::HOST, authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("Get \"{url}/metrics\": {e}"))?;
    // /metrics is a few tens of KiB; a larger answer is not a metrics page.
    const METRICS_BYTES_MAX: usize = 16 << 20;
    let body = http_body_util::Limited::new(response.into_body(), METRICS_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| format!("reading {url}/metrics: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
