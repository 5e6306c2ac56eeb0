//! `oxetcd-bench`: a load generator for etcd's v3 gRPC API, modelled on etcd's benchmark tool,
//! plus `compare`, which measures oxetcd against real etcd in the same run.
//!
//! Modules: `args` (flags), `load` (the workloads), `readers` (clients ranging the whole key
//! space in the background), `stats` (latency percentiles, report, CSV), `compare` (server
//! processes, interleaved rounds, ratios, RSS and disk usage).
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
mod load;
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
        _ => "requests",
    }
}

#[cfg(not(madsim))]
async fn run(opts: &args::Opts) -> Result<(), error::BenchError> {
    if opts.compare {
        return compare::run(opts).await;
    }
    let (summary, readers) = load::run(opts, &opts.endpoints).await?;
    println!(
        "{} against {} ({} conns, {} clients, {} total):",
        workload_label(opts),
        opts.endpoints.join(","),
        opts.conns,
        opts.clients,
        opts.total
    );
    print!("{}", summary.render(unit(opts)));
    if let Some(readers) = readers {
        println!("{}", readers.render());
    }
    if let Some(csv) = &opts.csv {
        let label = stats::RunLabel {
            server: opts.label.clone(),
            workload: workload_label(opts),
            round: 1,
            conns: opts.conns,
            clients: opts.clients,
            total: opts.total,
            key_size: opts.key_size,
            val_size: opts.val_size,
            server_cpu_s: None,
        };
        stats::append_csv(csv, &label, &summary)?;
    }
    Ok(())
}

#[cfg(not(madsim))]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv
        .first()
        .is_some_and(|a| a == "-h" || a == "--help" || a == "help")
    {
        println!("{}", args::USAGE);
        return std::process::ExitCode::SUCCESS;
    }
    let opts = match args::parse(&argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{}", args::USAGE);
            return std::process::ExitCode::from(2);
        }
    };
    match run(&opts).await {
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
