//! `oxetcd-bench`: a load generator for etcd's v3 gRPC API, modelled on etcd's benchmark tool,
//! plus `compare`, which measures oxetcd against real etcd in the same run.
//!
//! Modules: `args` (flags), `load` (the workloads), `kube` (the Kubernetes API server's storage
//! calls), `readers` (clients ranging the whole key space in the background), `stats` (latency
//! percentiles, report, CSV), `compare` (server processes, interleaved rounds, ratios, RSS and
//! disk usage), `pin` (which CPU the servers and the generator run on).
//! Invariant: every run is bounded by `--total`; servers started here listen on loopback only.

#[cfg(not(madsim))]
mod args;
#[cfg(not(madsim))]
mod catchup;
#[cfg(not(madsim))]
mod compare;
#[cfg(not(madsim))]
mod error;
#[cfg(not(madsim))]
mod kube;
#[cfg(not(madsim))]
mod load;
#[cfg(not(madsim))]
mod pin;
#[cfg(not(madsim))]
mod readers;
#[cfg(not(madsim))]
mod stats;

/// The CSV `workload` column: the command plus what distinguishes its variants.
#[cfg(not(madsim))]
fn workload_label(opts: &args::Opts) -> String {
    let name = match opts.workload {
        args::Workload::Range if opts.serializable => "range-s".into(),
        args::Workload::Range => "range-l".into(),
        args::Workload::TxnPut => format!("txn-put-{}ops", opts.txn_ops),
        w => w.name().into(),
    };
    let name = if opts.background_readers > 0 {
        format!("{name}-{}readers", opts.background_readers)
    } else {
        name
    };
    // A cluster comparison is a different workload in the CSV (same columns).
    if opts.compare && opts.members > 1 {
        format!("{name}-{}members", opts.members)
    } else {
        name
    }
}

/// What one counted operation is.
#[cfg(not(madsim))]
fn unit(opts: &args::Opts) -> &'static str {
    match opts.workload {
        args::Workload::Watch => "events",
        args::Workload::WatchCatchup => "watches",
        args::Workload::Kube => "calls",
        _ => "requests",
    }
}

#[cfg(not(madsim))]
async fn run(opts: &args::Opts) -> Result<(), error::BenchError> {
    if opts.compare {
        return compare::run(opts).await;
    }
    let outcome = load::run(opts, &opts.endpoints).await?;
    let total = if opts.total == u64::MAX {
        "no limit".to_string()
    } else {
        opts.total.to_string()
    };
    println!(
        "{} against {} ({} conns, {} clients, {total} total):",
        workload_label(opts),
        opts.endpoints.join(","),
        opts.conns,
        opts.clients,
    );
    if opts.workload == args::Workload::Kube {
        println!("  {}", kube_setup(opts));
    }
    print!("{}", outcome.summary.render(unit(opts)));
    print!("{}", stats::render_parts(&outcome.parts));
    print!("{}", outcome.notes);
    if let Some(readers) = outcome.readers {
        println!("{}", readers.render());
    }
    if let Some(csv) = &opts.csv {
        let label = stats::RunLabel {
            server: opts.label.clone(),
            workload: workload_label(opts),
            round: 1,
            conns: opts.conns,
            clients: opts.clients,
            total: stats::csv_total(opts.total),
            key_size: opts.key_size,
            val_size: opts.val_size,
            server_cpu_s: None,
            layout: pin::Layout::label(None, opts.bench_cpu),
        };
        stats::append_csv(csv, &label, &outcome.summary)?;
        for (call, summary) in &outcome.parts {
            let part = stats::RunLabel {
                workload: format!("{}-{call}", label.workload),
                ..label.clone()
            };
            stats::append_csv(csv, &part, summary)?;
        }
    }
    // kube's watch check is part of its result: a mismatch fails the command.
    if opts.workload == args::Workload::Kube && outcome.summary.errors > 0 {
        return Err(error::BenchError::Server(format!(
            "{} errors in the run (first: {})",
            outcome.summary.errors,
            outcome.summary.first_error.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// The `kube` settings line of the report.
#[cfg(not(madsim))]
fn kube_setup(opts: &args::Opts) -> String {
    let k = &opts.kube;
    format!(
        "objects {} over {} in {} namespaces, values {} B, mix {}, page {}, compaction every {}, event TTL {} s{}",
        k.objects,
        k.resources.join(","),
        k.namespaces,
        opts.val_size,
        kube::mix_text(&k.mix),
        k.page_size,
        if k.compact_interval_s == 0 {
            "never".to_string()
        } else {
            format!("{} s", k.compact_interval_s)
        },
        k.event_ttl_s,
        k.duration_s.map_or(String::new(), |d| format!(", at most {d} s")),
    )
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv
        .first()
        .is_some_and(|a| a == "-h" || a == "--help" || a == "help")
    {
        println!("{}", args::USAGE);
        return std::process::ExitCode::SUCCESS;
    }
    let mut opts = match args::parse(&argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{}", args::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    let layout = match pin::resolve(&opts, pin::online_cpus()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}\n{}", args::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    opts.server_cpu = layout.server_cpu;
    opts.bench_cpu = layout.bench_cpu;
    if !layout.note.is_empty() {
        println!("{}", layout.note);
    }
    // Before the runtime exists, so that its threads inherit the mask.
    if let Some(cpu) = layout.bench_cpu {
        if let Err(e) = pin::pin_self(cpu) {
            eprintln!("oxetcd-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("oxetcd-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxetcd-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The load generator drives real sockets and processes; it has no simulated form.
#[cfg(madsim)]
fn main() {
    eprintln!("oxetcd-bench is not available in simulation builds");
}
