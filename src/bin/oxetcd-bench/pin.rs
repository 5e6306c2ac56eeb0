//! CPU pinning: where the servers of `compare` and this process (the load generator) run.
//!
//! `compare` defaults to the pinned layout: every server process on CPU 0 (`taskset -c 0`, the
//! same for etcd and oxetcd) and the generator on CPU 1, so that the generator's own CPU use
//! does not decide the result. `--unpinned` (`--server-cpu none`) shares every CPU; with fewer
//! than two CPUs online the default falls back to that and says so.
//! Invariant: the generator pins itself before the async runtime starts, so every runtime
//! thread inherits the mask (a mask set later would hold only for the calling thread).

use crate::args::Opts;
use crate::error::BenchError;

/// The resolved layout and the sentence that reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub server_cpu: Option<usize>,
    pub bench_cpu: Option<usize>,
    pub note: String,
}

impl Layout {
    /// The CSV `layout` column: `server<N>-gen<M>`, or `shared`.
    pub fn label(server_cpu: Option<usize>, bench_cpu: Option<usize>) -> String {
        match (server_cpu, bench_cpu) {
            (None, None) => "shared".into(),
            (s, g) => format!(
                "server{}-gen{}",
                s.map_or("*".into(), |c| c.to_string()),
                g.map_or("*".into(), |c| c.to_string())
            ),
        }
    }
}

/// CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Where the servers and the generator run, for `opts` on a machine with `online` CPUs.
pub fn resolve(opts: &Opts, online: usize) -> Result<Layout, BenchError> {
    let check = |cpu: usize, flag: &str| {
        if cpu < online {
            Ok(cpu)
        } else {
            Err(BenchError::Usage(format!(
                "--{flag} {cpu}: only CPUs 0..{} are online",
                online - 1
            )))
        }
    };
    if let Some(cpu) = opts.server_cpu {
        check(cpu, "server-cpu")?;
    }
    if let Some(cpu) = opts.bench_cpu {
        check(cpu, "bench-cpu")?;
    }
    if !opts.compare || opts.unpinned {
        let note = match (opts.compare, opts.bench_cpu) {
            (true, _) => "layout: unpinned (servers and load generator share every CPU)".into(),
            (false, Some(cpu)) => format!("layout: load generator on CPU {cpu}"),
            (false, None) => String::new(),
        };
        return Ok(Layout {
            server_cpu: None,
            bench_cpu: opts.bench_cpu,
            note,
        });
    }
    if online < 2 && opts.server_cpu.is_none() && opts.bench_cpu.is_none() {
        return Ok(Layout {
            server_cpu: None,
            bench_cpu: None,
            note: "layout: unpinned, because only 1 CPU is online (servers and load generator share it)".into(),
        });
    }
    let server = opts.server_cpu.unwrap_or(0);
    let bench = match opts.bench_cpu {
        Some(cpu) => Some(cpu),
        None => (0..online).find(|c| *c != server),
    };
    let note = match bench {
        Some(b) => format!("layout: pinned, servers on CPU {server} (taskset -c {server}), load generator on CPU {b}"),
        None => format!("layout: servers on CPU {server} (taskset -c {server}), load generator unpinned (no other CPU online)"),
    };
    Ok(Layout {
        server_cpu: Some(server),
        bench_cpu: bench,
        note,
    })
}

/// Pins the calling thread (and every thread it starts afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<(), BenchError> {
    // SAFETY: `set` is a plain bitmask owned by this frame; CPU_ZERO/CPU_SET only write into
    // it (CPU_SET ignores indices beyond the mask), and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(BenchError::Io(format!(
            "cannot pin the load generator to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        )))
    }
}

/// The CPUs the calling thread may run on.
#[cfg(test)]
pub fn own_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_self`; sched_getaffinity writes into the zeroed mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Opts {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        crate::args::parse(&args).unwrap()
    }

    #[test]
    fn compare_pins_servers_to_cpu0_and_the_generator_to_cpu1_by_default() {
        let l = resolve(&opts("compare put"), 2).unwrap();
        assert_eq!((l.server_cpu, l.bench_cpu), (Some(0), Some(1)));
        assert_eq!(Layout::label(l.server_cpu, l.bench_cpu), "server0-gen1");
        let l = resolve(&opts("compare put --server-cpu 1"), 4).unwrap();
        assert_eq!((l.server_cpu, l.bench_cpu), (Some(1), Some(0)));
    }

    #[test]
    fn unpinned_and_one_cpu_machines_share_and_say_so() {
        for s in ["compare put --unpinned", "compare put --server-cpu none"] {
            let l = resolve(&opts(s), 2).unwrap();
            assert_eq!((l.server_cpu, l.bench_cpu), (None, None));
            assert!(l.note.contains("unpinned"));
            assert_eq!(Layout::label(None, None), "shared");
        }
        let l = resolve(&opts("compare put"), 1).unwrap();
        assert_eq!((l.server_cpu, l.bench_cpu), (None, None));
        assert!(l.note.contains("only 1 CPU"));
        assert!(resolve(&opts("compare put --server-cpu 3"), 2).is_err());
        let l = resolve(&opts("put"), 2).unwrap();
        assert_eq!((l.server_cpu, l.bench_cpu), (None, None));
    }

    #[test]
    fn pinning_this_thread_takes_effect() {
        // A thread of its own, so the test harness's other threads keep their mask.
        let target = *own_cpus().last().expect("this thread runs on some CPU");
        let cpus = std::thread::spawn(move || {
            pin_self(target).unwrap();
            own_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(cpus, vec![target]);
    }
}
