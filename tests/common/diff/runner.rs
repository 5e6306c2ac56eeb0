//! Executes a case script on a reference and a candidate server and reports the differences.
//!
//! Invariant: every etcdctl run of a step happens on both servers with identical arguments and
//! stdin (up to each server's own captured lease IDs), in the same order, so both key spaces
//! receive the same writes and their revisions stay comparable.
//! Invariant: a step passes only if every one of its variants produced the same exit code and
//! the same normalised stdout and stderr on both servers.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::etcdctl::{etcdctl_until, etcdctl_within, CtlOutput, ETCDCTL_DEADLINE};
use crate::common::server::{Server, ServerKind};
use crate::common::tools::require_etcd_tools;

use super::normalize::{escape_bytes, normalize, output_kind, positional_words, Identity};
use super::report::{render_mismatch, Mismatch, SideRun};
use super::script::{expand_variables, parse_script, Step, Variant};

/// Full mismatch reports printed per file; later failing steps are listed one line each.
const REPORTS_MAX: usize = 25;
/// A candidate run slower than this (while the reference answered) counts as unresponsive.
const SLOW_RUN: Duration = Duration::from_millis(4500);
/// Unresponsive candidate runs tolerated before the file is abandoned.
const SLOW_RUNS_MAX: usize = 3;
/// How long a `[stream]` step (e.g. `watch`) runs before it is stopped and its output compared.
const STREAM_WINDOW: Duration = Duration::from_millis(1500);
/// How long a `[background]` command runs at most (the steps up to its `@join` must fit).
const BACKGROUND_WINDOW: Duration = Duration::from_secs(10);
/// Time given to a `[background]` command to connect and register before the next step.
const BACKGROUND_SETTLE: Duration = Duration::from_millis(800);
/// Time given to a `[background]` command to print the last writes before it is stopped.
const JOIN_SETTLE: Duration = Duration::from_millis(500);

/// Directory of the case scripts.
pub fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("diff")
}

fn server_kind_from_env(var: &str, default: ServerKind) -> Result<ServerKind, String> {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("") => Ok(default),
        Ok("oxetcd") => Ok(ServerKind::Oxetcd),
        Ok("etcd") | Ok("etcd35") => Ok(ServerKind::Etcd35),
        Ok("etcd34") => Ok(ServerKind::Etcd34),
        Ok(other) => Err(format!(
            "{var}={other:?} is not one of oxetcd, etcd, etcd35, etcd34"
        )),
    }
}

struct Side {
    label: String,
    server: Server,
    ident: Identity,
    vars: Vec<(String, String)>,
}

impl Side {
    fn new(role: &str, server: Server) -> Side {
        let ids = server.ids.unwrap_or(crate::common::server::ServerIds {
            cluster_id: 0,
            member_id: 0,
            raft_term: 0,
        });
        let ident = Identity {
            cluster_id: ids.cluster_id,
            member_id: ids.member_id,
            endpoint: server.endpoint.clone(),
            client_url: server.client_url.clone(),
            peer_url: server.peer_url.clone(),
            leases: Vec::new(),
        };
        Side {
            label: format!("{role} ({})", server.kind.label()),
            server,
            ident,
            vars: Vec::new(),
        }
    }

    fn args_for(&self, step: &Step, variant: Variant) -> (Vec<OsString>, Vec<u8>) {
        let mut args: Vec<OsString> = Vec::new();
        if variant.json {
            args.push("-w".into());
            args.push("json".into());
        }
        for arg in &step.args {
            args.push(OsString::from_vec(expand_variables(arg, &self.vars)));
        }
        (args, expand_variables(&step.stdin, &self.vars))
    }

    /// Remembers the lease a `lease grant` run created, so its ID is normalised from now on.
    fn learn_lease(&mut self, output: &CtlOutput) -> Option<u64> {
        let id = parse_granted_lease(&output.stdout)?;
        if !self.ident.leases.contains(&id) {
            self.ident.leases.push(id);
        }
        Some(id)
    }
}

/// The lease ID in `lease <hex> granted with TTL(..)` or in lease grant's JSON `"ID"`.
fn parse_granted_lease(stdout: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(stdout);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim()) {
        return value.get("ID")?.as_u64();
    }
    let rest = text.trim().strip_prefix("lease ")?;
    let (hex, tail) = rest.split_once(' ')?;
    if !tail.starts_with("granted") {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The etcdctl processes of one `[background]` step, per variant: (reference, candidate).
struct Background {
    step: Step,
    runs: Vec<(Variant, BackgroundRun, BackgroundRun)>,
}

/// One background etcdctl: a flag that asks it to stop, and the thread collecting its output.
struct BackgroundRun {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<CtlOutput>,
}

fn spawn_background(side: &Side, step: &Step, variant: Variant) -> BackgroundRun {
    let (args, stdin) = side.args_for(step, variant);
    let endpoint = side.server.endpoint.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        etcdctl_until(
            variant.ctl,
            &endpoint,
            &args,
            &stdin,
            BACKGROUND_WINDOW,
            &flag,
        )
    });
    BackgroundRun { stop, thread }
}

fn join_background(run: BackgroundRun) -> CtlOutput {
    run.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    match run.thread.join() {
        Ok(out) => out,
        Err(_) => panic!("a background etcdctl run panicked"),
    }
}

/// Outcome counters and the accumulated report of one file.
struct Tally {
    file: String,
    passed: usize,
    failed: Vec<String>,
    runs: usize,
    reports: String,
    aborted: Option<String>,
    slow_runs: usize,
}

/// Runs `tests/diff/<file>` and panics with a report when the servers disagree.
pub fn run_script_file(file: &str) {
    let path = script_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let script = parse_script(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    if let Some(var) = &script.skip_unless {
        if std::env::var(var).as_deref() != Ok("1") {
            println!("SKIPPED {file}: set {var}=1 to run it");
            return;
        }
    }
    if require_etcd_tools(&format!("differential {file}")).is_none() {
        return;
    }
    let reference_kind = server_kind_from_env("OXETCD_DIFF_REFERENCE", ServerKind::Etcd35)
        .unwrap_or_else(|e| panic!("{e}"));
    let candidate_kind = server_kind_from_env("OXETCD_DIFF_CANDIDATE", ServerKind::Oxetcd)
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let (reference, candidate) =
        start_pair(file, reference_kind, candidate_kind, &script.server_flags);
    let mut reference = Side::new("reference", reference);
    let mut candidate = Side::new("candidate", candidate);
    let mut tally = Tally {
        file: file.to_string(),
        passed: 0,
        failed: Vec::new(),
        runs: 0,
        reports: String::new(),
        aborted: None,
        slow_runs: 0,
    };
    let mut background: Option<Background> = None;
    for step in &script.steps {
        if step.background {
            let runs = step
                .variants
                .iter()
                .map(|&v| {
                    let r = spawn_background(&reference, step, v);
                    let c = spawn_background(&candidate, step, v);
                    (v, r, c)
                })
                .collect();
            background = Some(Background {
                step: step.clone(),
                runs,
            });
            thread::sleep(BACKGROUND_SETTLE);
        } else if step.join {
            if let Some(bg) = background.take() {
                thread::sleep(JOIN_SETTLE);
                join_step(bg, &mut reference, &mut candidate, &mut tally);
            }
            tally.passed += 1;
        } else {
            run_step(step, &mut reference, &mut candidate, &mut tally);
        }
        if tally.aborted.is_none() && !candidate.server.is_running() {
            let status = candidate.server.exit_status().unwrap_or_default();
            tally.aborted = Some(format!(
                "the candidate server exited ({status}) during {file}:{}; last log lines:\n{}",
                step.line,
                candidate.server.log_tail(40)
            ));
        }
        if tally.aborted.is_some() {
            break;
        }
    }
    finish(
        &tally,
        &script.steps,
        &reference,
        &candidate,
        started.elapsed(),
    );
}

fn start_pair(
    file: &str,
    reference: ServerKind,
    candidate: ServerKind,
    flags: &[String],
) -> (Server, Server) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (r, c) = thread::scope(|s| {
        let flags = &flags;
        let r = s.spawn(move || Server::start_with(reference, "diff", flags));
        let c = Server::start_with(candidate, "diff", flags);
        (r.join(), c)
    });
    let r = match r {
        Ok(Ok(mut server)) => {
            // A failing comparison is about the candidate; etcd's own log would be noise.
            server.set_log_on_panic(false);
            server
        }
        Ok(Err(e)) => panic!("{file}: the reference server did not start:\n{e}"),
        Err(_) => panic!("{file}: starting the reference server panicked"),
    };
    match c {
        Ok(server) => (r, server),
        Err(e) => {
            panic!("{file}: the candidate server did not start, so no case could be compared:\n{e}")
        }
    }
}

fn run_step(step: &Step, reference: &mut Side, candidate: &mut Side, tally: &mut Tally) {
    if step.sleep_ms > 0 {
        thread::sleep(Duration::from_millis(step.sleep_ms));
        tally.passed += 1;
        return;
    }
    let words = positional_words(&step.args);
    let grants_lease = words.len() >= 2 && words[0] == b"lease" && words[1] == b"grant";
    let mut step_ok = true;
    for (n, &variant) in step.variants.iter().enumerate() {
        let (r_out, c_out, times) = run_both(step, variant, reference, candidate);
        tally.runs += 1;
        if !step.stream && times.candidate > SLOW_RUN && times.reference < SLOW_RUN {
            tally.slow_runs += 1;
        }
        if grants_lease {
            let r_id = reference.learn_lease(&r_out);
            let c_id = candidate.learn_lease(&c_out);
            if let (Some(name), 0) = (&step.capture, n) {
                capture(name, r_id, reference);
                capture(name, c_id, candidate);
            }
        }
        compare_run(
            step,
            variant,
            (r_out, c_out),
            reference,
            candidate,
            tally,
            &mut step_ok,
        );
        if tally.slow_runs >= SLOW_RUNS_MAX {
            tally.aborted = Some(format!(
                "the candidate needed more than {SLOW_RUN:?} for {SLOW_RUNS_MAX} etcdctl runs; \
                 it looks unresponsive, so the rest of {} is skipped",
                tally.file
            ));
            break;
        }
    }
    finish_step(step, step_ok, tally);
}

/// Compares what a `[background]` step printed on both servers, variant by variant.
fn join_step(bg: Background, reference: &mut Side, candidate: &mut Side, tally: &mut Tally) {
    let mut step_ok = true;
    for (variant, r, c) in bg.runs {
        let outputs = (join_background(r), join_background(c));
        tally.runs += 1;
        compare_run(
            &bg.step,
            variant,
            outputs,
            reference,
            candidate,
            tally,
            &mut step_ok,
        );
    }
    finish_step(&bg.step, step_ok, tally);
}

fn finish_step(step: &Step, step_ok: bool, tally: &mut Tally) {
    if step_ok {
        tally.passed += 1;
    } else {
        tally
            .failed
            .push(format!("{}:{} `{}`", tally.file, step.line, step.source));
    }
}

/// Normalises and compares one variant's outputs, recording a mismatch.
fn compare_run(
    step: &Step,
    variant: Variant,
    (r_out, c_out): (CtlOutput, CtlOutput),
    reference: &Side,
    candidate: &Side,
    tally: &mut Tally,
    step_ok: &mut bool,
) {
    let kind = output_kind(&step.args);
    let r = side_run(reference, r_out, kind);
    let c = side_run(candidate, c_out, kind);
    if verbose() {
        println!(
            "{}:{} [{}] {}\n{}{}",
            tally.file,
            step.line,
            variant.label(),
            step.source,
            r.stdout,
            r.stderr
        );
    }
    if !r.same_as(&c) {
        if *step_ok {
            record_mismatch(step, variant, &r, &c, tally);
        } else if tally.failed.len() < REPORTS_MAX {
            let also = format!("    (also differs with {})\n", variant.label());
            tally.reports.push_str(&also);
        }
        *step_ok = false;
    }
}

fn capture(name: &str, id: Option<u64>, side: &mut Side) {
    // An ungranted lease leaves the variable unset on that side: later `${NAME}` stay literal
    // and the mismatch of the grant step itself explains why.
    if let Some(id) = id {
        side.vars.retain(|(n, _)| n != name);
        side.vars.push((name.to_string(), format!("{id:x}")));
    }
}

/// How long one etcdctl run took on each server.
struct RunTimes {
    reference: Duration,
    candidate: Duration,
}

/// Runs one variant on both servers at the same time.
fn run_both(
    step: &Step,
    variant: Variant,
    reference: &Side,
    candidate: &Side,
) -> (CtlOutput, CtlOutput, RunTimes) {
    let (r_args, r_stdin) = reference.args_for(step, variant);
    let (c_args, c_stdin) = candidate.args_for(step, variant);
    let r_endpoint = reference.server.endpoint.as_str();
    let c_endpoint = candidate.server.endpoint.as_str();
    let deadline = if step.stream {
        STREAM_WINDOW
    } else {
        ETCDCTL_DEADLINE
    };
    thread::scope(|s| {
        let r = s.spawn(|| {
            let started = Instant::now();
            let out = etcdctl_within(variant.ctl, r_endpoint, &r_args, &r_stdin, deadline);
            (out, started.elapsed())
        });
        let started = Instant::now();
        let c = etcdctl_within(variant.ctl, c_endpoint, &c_args, &c_stdin, deadline);
        let candidate = started.elapsed();
        let (r, reference) = match r.join() {
            Ok(out) => out,
            Err(_) => panic!("running etcdctl against the reference panicked"),
        };
        (
            r,
            c,
            RunTimes {
                reference,
                candidate,
            },
        )
    })
}

fn side_run(side: &Side, output: CtlOutput, kind: super::normalize::OutputKind) -> SideRun {
    SideRun {
        label: side.label.clone(),
        stdout: normalize(&output.stdout, &side.ident, kind),
        stderr: normalize(&output.stderr, &side.ident, kind),
        output,
    }
}

fn record_mismatch(step: &Step, variant: Variant, r: &SideRun, c: &SideRun, tally: &mut Tally) {
    let mismatches = tally.failed.len() + 1;
    if mismatches > REPORTS_MAX {
        return;
    }
    let report = render_mismatch(&Mismatch {
        file: &tally.file,
        line: step.line,
        variant: variant.label(),
        command: command_line(step, variant),
        stdin: &step.stdin,
        reference: r,
        candidate: c,
    });
    tally.reports.push_str(&report);
    tally.reports.push('\n');
}

/// The step as a shell command line (with `${NAME}` left symbolic).
fn command_line(step: &Step, variant: Variant) -> String {
    let mut parts = vec![format!(
        "ETCDCTL_API=3 {} --endpoints=<endpoint>",
        match variant.ctl {
            crate::common::etcdctl::CtlVersion::V34 => "etcdctl-3.4",
            crate::common::etcdctl::CtlVersion::V35 => "etcdctl-3.5",
        }
    )];
    if variant.json {
        parts.push("-w json".into());
    }
    parts.extend(step.args.iter().map(|a| shell_quote(&escape_bytes(a))));
    parts.join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
    if plain {
        arg.to_string()
    } else if arg.contains("\\x") {
        format!("$'{}'", arg.replace('\'', "\\'"))
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn verbose() -> bool {
    std::env::var("OXETCD_DIFF_VERBOSE").as_deref() == Ok("1")
}

fn finish(tally: &Tally, steps: &[Step], reference: &Side, candidate: &Side, took: Duration) {
    let failed = tally.failed.len();
    let not_run = steps.len() - tally.passed - failed;
    let not_run_note = if not_run > 0 {
        format!(", {not_run} not run")
    } else {
        String::new()
    };
    let summary = format!(
        "{}: {} passed, {} failed{not_run_note} ({} etcdctl runs per server; {} vs {}; {:.1} s)",
        tally.file,
        tally.passed,
        failed,
        tally.runs,
        reference.label,
        candidate.label,
        took.as_secs_f64()
    );
    if failed == 0 && tally.aborted.is_none() {
        println!("{summary}");
        return;
    }
    print!("{}", tally.reports);
    if failed > REPORTS_MAX {
        println!("(full reports shown for the first {REPORTS_MAX} failing steps only)");
    }
    println!("failing steps:");
    for f in &tally.failed {
        println!("  {f}");
    }
    if let Some(why) = &tally.aborted {
        println!("ABORTED: {why}");
    }
    println!("{summary}");
    panic!("{summary}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_lease_is_parsed_from_text_and_json() {
        let text = b"lease 694d7a5b8c2e0a0b granted with TTL(100s)\n";
        assert_eq!(parse_granted_lease(text), Some(0x694d7a5b8c2e0a0b));
        let json = br#"{"cluster_id":1,"member_id":2,"revision":3,"raft_term":2,"ID":7587862346,"TTL":100}"#;
        assert_eq!(parse_granted_lease(json), Some(7587862346));
        assert_eq!(
            parse_granted_lease(b"Error: etcdserver: too large lease TTL"),
            None
        );
    }

    #[test]
    fn shell_quoting_is_readable() {
        assert_eq!(shell_quote("--prefix"), "--prefix");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("\\xff"), "$'\\xff'");
    }
}
