//! oxetcdctl against etcdctl 3.5: the same script of commands runs through the real etcdctl on
//! one fresh server and through oxetcdctl on another fresh server of the same kind (oxetcd, and
//! etcd 3.5 as well), and stdout, stderr (minus etcdctl's JSON log lines) and exit codes must
//! be identical once each server's own identity (member and cluster IDs, ports, the snapshot
//! directory) is replaced by a placeholder. Lines marked volatile (timings, raft indexes, sizes,
//! random lease IDs) are compared with their digits masked and their padding collapsed.
//!
//! Also here: the progress bar of `snapshot save` stays off when stdout is not a terminal.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use common::etcdctl::{etcdctl, CtlOutput, CtlVersion};
use common::server::{Server, ServerKind};
use common::tools::require_etcd_tools;

/// One script step: the arguments, whether its output is volatile, what goes to stdin.
struct Step {
    args: Vec<String>,
    volatile: bool,
    stdin: &'static [u8],
}

fn step(line: &str) -> Step {
    let (volatile, line) = match line.strip_prefix("~ ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    Step {
        args: line.split_whitespace().map(str::to_string).collect(),
        volatile,
        stdin: b"",
    }
}

/// The script. `{snap}` is replaced by a snapshot path inside the run's own directory.
fn script() -> Vec<Step> {
    let mut steps: Vec<Step> = [
        "put foo bar",
        "put foo2 baz",
        "put foo3 qux",
        "get foo",
        "get foo -w json",
        "get foo --prefix -w fields",
        "get foo --prefix --keys-only",
        "get foo --prefix --print-value-only",
        "get --hex foo2",
        "get foo --prefix --sort-by=VALUE --order=DESCEND",
        "get foo --prefix --sort-by=MODIFY --order=ASCEND -w json",
        "get foo --prefix --limit 1 -w json",
        "get foo --rev 2 -w json",
        "get foo --from-key --keys-only",
        "get foo foo3",
        "get foo --count-only",
        "get foo --prefix --count-only -w fields",
        "get foo -w table",
        "get foo --order=bad",
        "get foo --sort-by=bad",
        "get a b --prefix",
        "get a --prefix --from-key",
        "get foo --print-value-only -w json",
        "get foo --consistency=x",
        "get",
        "put",
        "put a b --lease=zz",
        "put a b --lease=1234",
        "put a c",
        "put a d --prev-kv",
        "put a e --prev-kv -w json",
        "put a f --prev-kv -w fields",
        "put a --ignore-value --prev-kv",
        "put a g h",
        "del a --prev-kv -w fields",
        "del foo2 --prev-kv -w json",
        "del fo --prefix",
        "del zz",
        "del",
        "compaction 3",
        "compaction 1",
        "compaction x",
        "compaction",
        "lease timetolive 1234",
        "lease timetolive 1234 -w json",
        "lease revoke 1234",
        "lease revoke zz",
        "lease keep-alive 1234",
        "lease grant",
        "lease grant abc",
        "~ lease grant 100",
        "~ lease grant 100 -w json",
        "~ lease list",
        "member list",
        "member list -w json",
        // Column widths follow the member ID's length, which differs between the two servers.
        "~ member list -w table",
        "member list -w fields",
        "member remove zz",
        "member remove 123",
        "member remove",
        "member add",
        "member add x",
        "member update 1",
        "~ endpoint status",
        "~ endpoint status -w json",
        "~ endpoint status -w table",
        "~ endpoint status -w fields",
        "~ endpoint health",
        "~ endpoint health -w json",
        "~ endpoint health -w table",
        "~ endpoint health --cluster",
        "~ endpoint hashkv",
        "~ endpoint hashkv -w json",
        "~ endpoint hashkv -w table",
        "alarm list",
        "alarm disarm",
        "defrag",
        "defrag --cluster",
        "move-leader zz",
        "move-leader",
        "snapshot save",
        "snapshot save {snap}",
        "~ snapshot status {snap} -w json",
        "~ snapshot status {snap} -w table",
    ]
    .iter()
    .map(|l| step(l))
    .collect();
    steps.insert(
        34,
        Step {
            args: vec!["put".into(), "piped".into()],
            volatile: false,
            stdin: b"from stdin\n",
        },
    );
    steps.push(step("get piped -w json"));
    let txns: [(&str, &'static [u8]); 14] = [
        (
            "txn -w json",
            b"mod(\"foo\") > \"0\"\nval(\"foo\") = \"bar\"\n\nput k1 v1\nget foo --prefix\ndel zz\n\nput k2 v2\n\n",
        ),
        ("txn", b"mod(\"foo\") > \"0\"\n\nput k1 \"v 1\"\nget foo\ndel k2 --prev-kv\n\n\n"),
        ("txn -i", b"ver(\"zz\") = \"0\"\n\nput k3 v3\n\nput k4 v4\n\n"),
        ("txn -w fields", b"c(\"foo\") > \"100\"\n\n\nget foo\n\n"),
        ("txn", b"\n\n\n"),
        // etcdctl 3.5 cuts a single-quoted argument to its first len(args)-2 characters (its
        // Argify indexes the string by the argument count); oxetcdctl keeps it whole, so only
        // a case where both agree is compared.
        ("txn", b"\nput a 'xy' --prev-kv\nget a\n\n\n"),
        ("txn", b"\nput k1 a\ndel k1\n\n\n"),
        ("txn", b"bad(\"foo\") > \"0\"\n\n"),
        ("txn", b"mod(foo) > \"0\"\n\n"),
        ("txn", b"mod(\"foo\") > \"x\"\n\n"),
        ("txn", b"\nget\n\n"),
        ("txn", b"\nbogus a b\n\n"),
        ("txn", b"mod(\"foo\") > \"0\"\n\nput k1 v1\n"),
        ("txn -w table", b"\n\n\n"),
    ];
    for (line, stdin) in txns {
        let mut s = step(line);
        s.stdin = stdin;
        steps.push(s);
    }
    steps.push(step("txn extra"));
    // Auth management last: it ends with auth disabled again.
    for line in [
        "user add root:rootpw",
        "user add bob --new-user-password=pw",
        "user add nopw --no-password",
        "user add bob --new-user-password=pw",
        "role add r1",
        "role grant-permission r1 read /a --prefix",
        "role grant-permission r1 readwrite /b /c",
        "role grant-permission r1 write /d --from-key",
        "role grant-permission r1 read /e",
        "role grant-permission r1 bogus /e",
        "role get r1",
        "role get r1 -w json",
        "user grant-role bob r1",
        "user grant-role bob nosuch",
        "user get bob",
        "user get bob --detail",
        "user list",
        "role list",
        "role list -w json",
        "user revoke-role bob r1",
        "role revoke-permission r1 /e",
        "role revoke-permission r1 /b /c",
        "role revoke-permission r1 /a --prefix",
        "role revoke-permission r1 /zz",
        "auth status",
        "role add",
        "user add",
        "user grant-role bob",
        "role grant-permission r1 read",
        "role get nosuch",
        "user get nosuch",
        "role delete r1",
        "user delete nopw",
        "auth enable",
        "role list",
        "get /a",
        "--user=root:rootpw auth status",
        "--user=root:wrong get /a",
        "--user=bob:pw get /a",
        "--user=root:rootpw role add r2",
        "--user=root:rootpw auth disable",
        "auth status",
    ] {
        steps.push(step(line));
    }
    let mut passwd = step("user passwd bob --interactive=false");
    passwd.stdin = b"pw2\n";
    steps.push(passwd);
    steps.push(step("--user=bob:pw2 get /a"));
    steps
}

/// Replaces a server's identity in `text` with placeholders.
fn neutral(text: &str, server: &Server, dir: &Path) -> String {
    let mut out = text.replace(&dir.display().to_string(), "<dir>");
    out = out.replace(&server.client_url, "<client-url>");
    out = out.replace(&server.peer_url, "<peer-url>");
    out = out.replace(&server.endpoint, "<endpoint>");
    if let Some(ids) = server.ids {
        for (id, name) in [(ids.member_id, "<member>"), (ids.cluster_id, "<cluster>")] {
            out = out.replace(&format!("{id:x}"), name);
            out = out.replace(&id.to_string(), name);
        }
    }
    out
}

/// Every word holding a digit (numbers, hex IDs, durations with their unit) becomes `N`, and runs of spaces
/// and dashes collapse to one (table padding follows the widths of the numbers).
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        // Unicode letters count: a duration's unit (`µs` or `ms`) belongs to its number, so
        // `1.5µs` and `1.5ms` mask alike.
        if c.is_alphanumeric() {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if (c == ' ' || c == '-') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out
}

/// etcdctl 3.5's own log lines and deprecation notes are not part of the comparison.
fn without_client_logs(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\"") && !l.starts_with("Deprecated: Use `etcdutl"))
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn oxetcdctl(endpoint: &str, args: &[OsString], stdin: &[u8]) -> CtlOutput {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxetcdctl"))
        .env_clear()
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oxetcdctl starts");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("stdin is written");
    }
    let out = child.wait_with_output().expect("oxetcdctl ends");
    CtlOutput {
        stdout: out.stdout,
        stderr: out.stderr,
        code: out.status.code().unwrap_or(-1),
        timed_out: false,
    }
}

/// One run's transcript: a block per step.
fn transcript(kind: ServerKind, ours: bool) -> String {
    let server = Server::start(kind).unwrap_or_else(|e| panic!("{}: {e}", kind.label()));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = String::new();
    for step in script() {
        let args: Vec<OsString> = step
            .args
            .iter()
            .map(|a| {
                OsString::from(a.replace("{snap}", &dir.path().join("s.db").display().to_string()))
            })
            .collect();
        let result = if ours {
            oxetcdctl(&server.endpoint, &args, step.stdin)
        } else {
            etcdctl(CtlVersion::V35, &server.endpoint, &args, step.stdin)
        };
        assert!(!result.timed_out, "{:?} hung", step.args);
        let text = format!(
            "$ {}\n{}{}exit {}\n",
            step.args.join(" "),
            result.stdout_text(),
            without_client_logs(&result.stderr_text()),
            result.code
        );
        let text = neutral(&text, &server, dir.path());
        out.push_str(&if step.volatile { masked(&text) } else { text });
    }
    out
}

fn compare_on(kind: ServerKind) {
    let theirs = transcript(kind, false);
    let ours = transcript(kind, true);
    if theirs != ours {
        let mut report = String::new();
        for (t, o) in theirs.split("$ ").zip(ours.split("$ ")) {
            if t != o {
                report.push_str(&format!("--- etcdctl 3.5\n$ {t}+++ oxetcdctl\n$ {o}\n"));
            }
        }
        panic!("on {}, the transcripts differ:\n{report}", kind.label());
    }
}

#[test]
fn oxetcdctl_prints_what_etcdctl_prints_against_oxetcd() {
    if require_etcd_tools("oxetcdctl_prints_what_etcdctl_prints_against_oxetcd").is_none() {
        return;
    }
    compare_on(ServerKind::Oxetcd);
}

#[test]
fn oxetcdctl_prints_what_etcdctl_prints_against_etcd() {
    if require_etcd_tools("oxetcdctl_prints_what_etcdctl_prints_against_etcd").is_none() {
        return;
    }
    compare_on(ServerKind::Etcd35);
}

/// The masking keeps what it must: a change outside digits still shows.
#[test]
fn masking_hides_digits_and_padding_only() {
    assert_eq!(masked("| 12 |  3 |"), masked("|  4 | 567 |"));
    assert_ne!(masked("true, 12"), masked("false, 12"));
    assert_eq!(
        masked("lease 694d7b2f3d0c4b0a granted"),
        masked("lease 3f1c2b4a5d6e7f80 granted")
    );
    // A duration keeps no trace of its unit (a fast server answers in µs, a slow one in ms).
    assert_eq!(masked("took = 1.52µs"), masked("took = 3.1ms"));
    assert_ne!(masked("took = 1.52µs"), masked("took = µs"));
}

/// Without a terminal, `snapshot save` prints its one result line and nothing else: no
/// progress bar, no control characters.
#[test]
fn snapshot_save_is_quiet_without_a_terminal() {
    let server = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("quiet.db");
    let args = [
        OsString::from("snapshot"),
        "save".into(),
        file.clone().into(),
    ];
    let out = oxetcdctl(&server.endpoint, &args, b"");
    assert_eq!(out.code, 0, "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        format!("Snapshot saved at {}\n", file.display())
    );
    assert_eq!(out.stderr_text(), "");
    assert!(file.exists() && !dir.path().join("quiet.db.part").exists());
}

/// On a terminal (a pty made by util-linux's `script`), `snapshot save` draws its progress bar
/// on stderr, clears it when done, and then prints the result line.
#[test]
fn snapshot_save_draws_and_clears_a_progress_bar_on_a_terminal() {
    let server = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tty.db");
    let command = format!(
        "{} --endpoints={} snapshot save {}",
        env!("CARGO_BIN_EXE_oxetcdctl"),
        server.endpoint,
        file.display()
    );
    let out = match Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if !common::tools::in_ci() => {
            eprintln!("skipped: util-linux `script` is not available ({e})");
            return;
        }
        Err(e) => panic!("util-linux `script` is needed: {e}"),
    };
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let bar = text
        .find("saving [")
        .unwrap_or_else(|| panic!("no progress bar in {text:?}"));
    let cleared = text
        .rfind("\u{1b}[2K")
        .unwrap_or_else(|| panic!("bar not cleared in {text:?}"));
    let result = text
        .find("Snapshot saved at")
        .unwrap_or_else(|| panic!("no result line in {text:?}"));
    assert!(bar < cleared && cleared < result, "{text:?}");
    assert!(
        text.ends_with(&format!("Snapshot saved at {}\r\n", file.display())),
        "{text:?}"
    );
    assert!(file.exists());
}

/// Runs a streaming command until it has printed `lines` lines on stdout (or 30 s passed),
/// then stops it; returns those lines and whatever it printed on stderr.
fn stream_lines(
    binary: &Path,
    endpoint: &str,
    args: &[&str],
    lines: usize,
) -> (Vec<String>, String) {
    let mut command = Background::start(binary, endpoint, args);
    let got = command.read_up_to(lines);
    let _ = command.child.kill();
    let (_, _, stderr) = command.finish();
    (got, stderr)
}

/// `watch` (from a past revision, with `--prev-kv`, with a command after `--`, canceled by a
/// compaction) prints what etcdctl 3.5 prints, on oxetcd and on etcd.
#[test]
fn watch_prints_what_etcdctl_prints() {
    let Some(tools) = require_etcd_tools("watch_prints_what_etcdctl_prints") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let hook = "echo $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION";
    let cases: [(&[&str], usize); 3] = [
        (&["watch", "k", "--prefix", "--rev", "2", "--prev-kv"], 11),
        (&["watch", "k1", "--rev", "2", "--", "sh", "-c", hook], 8),
        (&["watch", "k", "k2", "--rev", "3"], 3),
    ];
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let mut outputs = Vec::new();
        for binary in [tools.etcdctl35.as_path(), ours] {
            let server = Server::start(kind).expect("server starts");
            for args in [["put", "k1", "v1"], ["put", "k2", "v 2"], ["del", "k1", ""]] {
                let args: Vec<OsString> = args
                    .iter()
                    .filter(|a| !a.is_empty())
                    .map(|a| a.into())
                    .collect();
                assert_eq!(oxetcdctl(&server.endpoint, &args, b"").code, 0);
            }
            let mut transcript = Vec::new();
            for (args, lines) in cases {
                let (out, err) = stream_lines(binary, &server.endpoint, args, lines);
                transcript.push(format!("$ {}\n{}\n{err}", args.join(" "), out.join("\n")));
            }
            let compact: Vec<OsString> = ["compaction", "3"].iter().map(|a| a.into()).collect();
            assert_eq!(oxetcdctl(&server.endpoint, &compact, b"").code, 0);
            let (out, err) =
                stream_lines(binary, &server.endpoint, &["watch", "k", "--rev", "1"], 1);
            transcript.push(format!(
                "$ watch after compaction\n{}\n{err}",
                out.join("\n")
            ));
            outputs.push(neutral(
                &transcript.join(""),
                &server,
                Path::new("/nonexistent"),
            ));
        }
        assert_eq!(
            outputs[0],
            outputs[1],
            "etcdctl 3.5 vs oxetcdctl on {}",
            kind.label()
        );
        // The comparison is about something: events, hook runs and the cancel all showed up.
        for expected in [
            "DELETE\nk1\n",
            "\"PUT\" \"k1\" \"v1\" 4",
            "watch was canceled (",
        ] {
            assert!(
                outputs[0].contains(expected),
                "{expected:?} missing in {}",
                outputs[0]
            );
        }
    }
}

/// `watch -i`: watches and progress requests read from stdin on one stream, bad lines, a
/// command per event, the end of input; etcdctl 3.5 and oxetcdctl on oxetcd and on etcd.
#[test]
fn interactive_watch_answers_as_etcdctl_does() {
    let Some(tools) = require_etcd_tools("interactive_watch_answers_as_etcdctl_does") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let put = |endpoint: &str, k: &str, v: &str| {
        let args: Vec<OsString> = ["put", k, v].iter().map(OsString::from).collect();
        assert_eq!(oxetcdctl(endpoint, &args, b"").code, 0);
    };
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let mut transcripts = Vec::new();
        for binary in [tools.etcdctl35.as_path(), ours] {
            let server = Server::start(kind).expect("server starts");
            put(&server.endpoint, "k1", "v1");
            let mut w = Background::start_reading(binary, &server.endpoint, &["watch", "-i"]);
            let mut t = Vec::new();
            w.say("watch k --prefix --rev 2 --prev-kv");
            t.extend(w.read(3));
            w.say("");
            w.say("bogus");
            w.say("watch k1 k2 --prefix");
            w.say(r#"watch k2 --rev 3 -- sh -c "echo hook $ETCD_WATCH_KEY $ETCD_WATCH_REVISION""#);
            // Revision 3: both watches see it, however late the second one was created.
            put(&server.endpoint, "k2", "v2");
            // Two watches answer in either order: compare the lines as a set.
            let mut both = w.read(7);
            both.sort();
            t.extend(both);
            w.say("progress");
            t.extend(w.read(2));
            w.hang_up();
            let (code, rest, err) = w.finish();
            t.push(format!("exit {code}, rest {rest:?}\n{err}"));
            transcripts.push(t.join("\n"));
        }
        assert_eq!(
            transcripts[0],
            transcripts[1],
            "etcdctl 3.5 vs oxetcdctl on {}",
            kind.label()
        );
        for expected in [
            "hook \"k2\" 3",
            "progress notify: 3\nprogress notify: 3",
            "Invalid command:  (watch and progress supported)",
            "Invalid command bogus (only support watch)",
            "mutually exclusive",
            "exit 3",
            "error reading watch request line: EOF",
        ] {
            assert!(
                transcripts[0].contains(expected),
                "{expected:?} missing in {}",
                transcripts[0]
            );
        }
    }
}

/// Variables for one run, in the child's environment besides `PATH`.
type Vars<'a> = Vec<(&'a str, &'a str)>;
/// One run: its variables and its arguments.
type EnvCase<'a> = (Vars<'a>, Vec<&'a str>);

/// Runs one command to its end (bounded by [`Background::finish`]) with exactly these
/// arguments and variables; returns `$ <vars> <args>`, stdout, stderr as `clean` leaves it, and
/// the exit code, as one transcript block.
fn env_run(
    binary: &Path,
    vars: &[(&str, &str)],
    args: &[&str],
    clean: fn(&str) -> String,
) -> String {
    let command = Background::start_env(binary, vars, args, false);
    let (code, out, err) = command.finish_raw();
    let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let out = if out.is_empty() { out } else { out + "\n" };
    format!(
        "$ {} {}\n{out}{}exit {code}\n",
        vars.join(" "),
        args.join(" "),
        clean(&err)
    )
}

/// etcdctl's stderr without the client's own log lines: zap's JSON lines and, with `--debug`,
/// the lines of Go gRPC's logger (`INFO: 2026/01/02 03:04:05 [core] ...`), which oxetcdctl has
/// no counterpart for.
fn without_client_and_grpc_logs(stderr: &str) -> String {
    let grpc = |l: &str| {
        ["INFO: ", "WARNING: ", "ERROR: "].iter().any(|level| {
            l.strip_prefix(level)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
    };
    without_client_logs(stderr)
        .lines()
        .filter(|l| !grpc(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `--debug` (and `ETCDCTL_DEBUG`): every global flag printed on stderr as
/// `ETCDCTL_<FLAG>=<value>` in flag-name order, values as Go prints them (`[a,b]` endpoints,
/// `1m30s` durations), after the command's own argument checks and before its first request;
/// `watch` adds its two variables to the list. etcdctl 3.5 and oxetcdctl on one oxetcd server.
#[test]
fn debug_prints_the_global_flags_as_etcdctl_does() {
    let Some(tools) = require_etcd_tools("debug_prints_the_global_flags_as_etcdctl_does") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let server = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let put: Vec<OsString> = ["put", "foo", "bar"].iter().map(OsString::from).collect();
    assert_eq!(oxetcdctl(&server.endpoint, &put, b"").code, 0);
    let endpoints = format!("--endpoints={}", server.endpoint);
    let ep = endpoints.as_str();
    let env_ep = server.endpoint.as_str();
    let cases: [EnvCase; 8] = [
        (vec![], vec![ep, "--debug", "get", "foo"]),
        (
            vec![("ETCDCTL_DEBUG", "1")],
            vec![ep, "get", "foo", "-w", "json"],
        ),
        (
            vec![("ETCDCTL_ENDPOINTS", env_ep), ("ETCDCTL_HEX", "true")],
            vec![
                "get",
                "foo",
                "--debug",
                "--dial-timeout=1500ms",
                "--command-timeout=90s",
                "--keepalive-time=250ms",
                "--insecure-skip-tls-verify",
                "--user=u:p",
            ],
        ),
        (vec![], vec![ep, "--debug=false", "get", "foo"]),
        // An argument error comes first: no listing.
        (vec![], vec![ep, "--debug", "get"]),
        // watch lists ETCDCTL_WATCH_KEY and ETCDCTL_WATCH_RANGE_END (always empty).
        (vec![], vec![ep, "--debug", "watch", "a", "b", "--prefix"]),
        (
            vec![("ETCDCTL_WATCH_KEY", "a")],
            vec![ep, "--debug", "watch", "b"],
        ),
        (vec![], vec![ep, "--debug", "member", "list"]),
    ];
    let mut transcripts = Vec::new();
    for binary in [tools.etcdctl35.as_path(), ours] {
        let mut t = String::new();
        for (vars, args) in &cases {
            let vars: Vars = [("ETCDCTL_API", "3")]
                .into_iter()
                .chain(vars.iter().copied())
                .collect();
            t.push_str(&env_run(binary, &vars, args, without_client_and_grpc_logs));
        }
        transcripts.push(neutral(&t, &server, Path::new("/nonexistent")));
    }
    assert_eq!(transcripts[0], transcripts[1], "etcdctl 3.5 vs oxetcdctl");
    let t = &transcripts[0];
    for expected in [
        "ETCDCTL_CACERT=\nETCDCTL_CERT=\nETCDCTL_COMMAND_TIMEOUT=5s\nETCDCTL_DEBUG=true\n",
        "ETCDCTL_ENDPOINTS=[<endpoint>]\n",
        "ETCDCTL_COMMAND_TIMEOUT=1m30s\n",
        "ETCDCTL_DIAL_TIMEOUT=1.5s\n",
        "ETCDCTL_KEEPALIVE_TIME=250ms\n",
        "ETCDCTL_HEX=true\n",
        "ETCDCTL_INSECURE_SKIP_TLS_VERIFY=true\n",
        "ETCDCTL_USER=u:p\nETCDCTL_WRITE_OUT=simple\n",
        "ETCDCTL_USER=\nETCDCTL_WATCH_KEY=\nETCDCTL_WATCH_RANGE_END=\nETCDCTL_WRITE_OUT=simple\n\
         Error: `range_end` and `--prefix` are mutually exclusive\n",
        "--debug=false get foo\nfoo\nbar\nexit 0\n",
        "--debug get\nError: get command needs one argument",
        "found conflicting environment key)\nexit 128\n",
    ] {
        assert!(t.contains(expected), "{expected:?} missing in {t}");
    }
    // Offline commands build no client: no listing, in either tool.
    for binary in [tools.etcdctl35.as_path(), ours] {
        let block = env_run(
            binary,
            &[("ETCDCTL_API", "3")],
            &["--debug", "version"],
            without_client_and_grpc_logs,
        );
        assert!(
            !block.contains("ETCDCTL_DEBUG="),
            "{}: {block}",
            binary.display()
        );
    }
}

/// Reduces etcdctl's fatal log line (zap JSON) to what oxetcdctl must match: the level, the
/// message and the variable; the time, the Go caller and the Go stack trace are left out.
fn fatal_essentials(stderr: &str) -> String {
    stderr
        .lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if v["level"] == "fatal" => {
                    assert!(v["ts"].is_f64(), "no numeric ts in {line}");
                    format!(
                        "fatal: {} [{}]\n",
                        v["msg"].as_str().unwrap_or("(no msg)"),
                        v["environment-variable"].as_str().unwrap_or("(none)")
                    )
                }
                Ok(v) if v["level"].is_string() => String::new(),
                _ => format!("{line}\n"),
            },
        )
        .collect()
}

/// A global flag given on the command line while its `ETCDCTL_*` variable is set (even set
/// to nothing) is etcdctl 3.5's fatal "conflicting environment variable is shadowed..." (exit
/// 1), for every global flag that has a variable; only after the command's argument checks,
/// and never for offline commands.
#[test]
fn a_flag_shadowing_its_variable_is_fatal_as_in_etcdctl() {
    let Some(tools) = require_etcd_tools("a_flag_shadowing_its_variable_is_fatal_as_in_etcdctl")
    else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let server = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    let endpoints = format!("--endpoints={}", server.endpoint);
    let ep = endpoints.as_str();
    // (variable, value, the flag as given): one per global flag with a variable.
    let shadowed: [(&str, &str, &str); 15] = [
        ("ETCDCTL_ENDPOINTS", &server.endpoint, ep),
        ("ETCDCTL_DIAL_TIMEOUT", "3s", "--dial-timeout=3s"),
        ("ETCDCTL_COMMAND_TIMEOUT", "3s", "--command-timeout=3s"),
        (
            "ETCDCTL_CACERT",
            "/nonexistent/ca.pem",
            "--cacert=/nonexistent/ca.pem",
        ),
        (
            "ETCDCTL_CERT",
            "/nonexistent/c.pem",
            "--cert=/nonexistent/c.pem",
        ),
        (
            "ETCDCTL_KEY",
            "/nonexistent/k.pem",
            "--key=/nonexistent/k.pem",
        ),
        ("ETCDCTL_INSECURE_TRANSPORT", "true", "--insecure-transport"),
        (
            "ETCDCTL_INSECURE_SKIP_TLS_VERIFY",
            "false",
            "--insecure-skip-tls-verify=false",
        ),
        ("ETCDCTL_KEEPALIVE_TIME", "3s", "--keepalive-time=3s"),
        ("ETCDCTL_KEEPALIVE_TIMEOUT", "3s", "--keepalive-timeout=3s"),
        ("ETCDCTL_USER", "root:x", "--user=root:x"),
        ("ETCDCTL_PASSWORD", "x", "--password=x"),
        ("ETCDCTL_WRITE_OUT", "json", "-w=json"),
        ("ETCDCTL_HEX", "true", "--hex"),
        ("ETCDCTL_DEBUG", "false", "--debug=false"),
    ];
    // Every variable oxetcdctl's help names is covered above.
    let help = Command::new(ours)
        .arg("--help")
        .output()
        .expect("help runs");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let named: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(!named.is_empty(), "no variables in the help: {help}");
    for var in &named {
        assert!(
            shadowed.iter().any(|(v, _, _)| v == var),
            "{var} is not covered"
        );
    }
    let mut cases: Vec<EnvCase> = Vec::new();
    for (var, value, flag) in shadowed {
        let mut args = vec![flag, "get", "foo"];
        if var != "ETCDCTL_ENDPOINTS" {
            args.insert(0, ep);
        }
        cases.push((vec![(var, value)], args));
    }
    // Set to nothing still counts; a flag after the command too; the first variable of the
    // environment (ordered by name here) is the one named.
    cases.push((vec![("ETCDCTL_HEX", "")], vec![ep, "get", "foo", "--hex"]));
    cases.push((
        vec![
            ("ETCDCTL_WRITE_OUT", "json"),
            ("ETCDCTL_DIAL_TIMEOUT", "3s"),
        ],
        vec![ep, "member", "list", "--dial-timeout=3s", "-w", "json"],
    ));
    cases.push((
        vec![("ETCDCTL_DIAL_TIMEOUT", "3s")],
        vec![ep, "endpoint", "health", "--dial-timeout=3s"],
    ));
    // The argument check comes first.
    cases.push((vec![("ETCDCTL_HEX", "true")], vec![ep, "--hex", "get"]));
    // A variable alone, or set to nothing without its flag: no conflict.
    cases.push((
        vec![("ETCDCTL_ENDPOINTS", &server.endpoint)],
        vec!["get", "foo"],
    ));
    cases.push((vec![("ETCDCTL_HEX", "")], vec![ep, "get", "foo"]));
    let put: Vec<OsString> = ["put", "foo", "bar"].iter().map(OsString::from).collect();
    assert_eq!(oxetcdctl(&server.endpoint, &put, b"").code, 0);
    let mut transcripts = Vec::new();
    for binary in [tools.etcdctl35.as_path(), ours] {
        let mut t = String::new();
        for (vars, args) in &cases {
            let vars: Vec<(&str, &str)> = [("ETCDCTL_API", "3")]
                .into_iter()
                .chain(vars.iter().copied())
                .collect();
            t.push_str(&env_run(binary, &vars, args, fatal_essentials));
        }
        // An offline command never looks: compared without its stdout (the version differs).
        let vars = [("ETCDCTL_API", "3"), ("ETCDCTL_WRITE_OUT", "json")];
        let (code, _, err) =
            Background::start_env(binary, &vars, &["-w=json", "version"], false).finish_raw();
        t.push_str(&format!("$ version\n{err}exit {code}\n"));
        transcripts.push(neutral(&t, &server, Path::new("/nonexistent")));
    }
    assert_eq!(transcripts[0], transcripts[1], "etcdctl 3.5 vs oxetcdctl");
    let t = &transcripts[0];
    let fatal = "fatal: conflicting environment variable is shadowed by corresponding \
                 command-line flag (either unset environment variable or disable flag)) ";
    for expected in [
        format!("{fatal}[ETCDCTL_ENDPOINTS]\nexit 1\n"),
        format!("{fatal}[ETCDCTL_PASSWORD]\nexit 1\n"),
        format!("--hex\n{fatal}[ETCDCTL_HEX]\nexit 1\n"),
        format!("{fatal}[ETCDCTL_DIAL_TIMEOUT]\nexit 1\n"),
        "--hex get\nError: get command needs one argument".to_string(),
        " get foo\nfoo\nbar\nexit 0\n".to_string(),
        "$ version\nexit 0\n".to_string(),
    ] {
        assert!(t.contains(&expected), "{expected:?} missing in {t}");
    }
    assert_eq!(t.matches(fatal).count(), 18, "{t}");
}

/// `ETCDCTL_WATCH_KEY` and `ETCDCTL_WATCH_RANGE_END` for `watch` and `watch -i`: the key
/// (and range end) from the environment, a key given twice (exit 128), a range end without a
/// key (exit 128, even with `-i`), a range end with `--prefix`; etcdctl 3.5 and oxetcdctl on
/// oxetcd and on etcd.
#[test]
fn watch_takes_its_key_from_the_environment_as_etcdctl_does() {
    let Some(tools) =
        require_etcd_tools("watch_takes_its_key_from_the_environment_as_etcdctl_does")
    else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let key = |k: &'static str| ("ETCDCTL_WATCH_KEY", k);
    let end = |e: &'static str| ("ETCDCTL_WATCH_RANGE_END", e);
    let hook = "echo hook $ETCD_WATCH_KEY";
    // Streams, read until their lines arrived.
    let streams: [(Vars, Vec<&str>, usize); 4] = [
        (vec![key("k1")], vec!["watch", "--rev", "1"], 3),
        (vec![key("k1"), end("k3")], vec!["watch", "--rev", "1"], 6),
        (vec![key("k")], vec!["watch", "--rev", "1", "--prefix"], 9),
        (
            vec![key("k2")],
            vec!["watch", "--rev", "1", "--", "sh", "-c", hook],
            4,
        ),
    ];
    // Commands that end on their own.
    let ending: [EnvCase; 7] = [
        (vec![key("k1")], vec!["watch", "k1", "--rev", "1"]),
        (vec![key("k1")], vec!["watch", "k1", "--", "echo", "hi"]),
        (vec![end("k3")], vec!["watch", "k1"]),
        (vec![end("k3")], vec!["watch", "-i"]),
        (vec![key(""), end("k3")], vec!["watch", "k1"]),
        (vec![key("k1"), end("k3")], vec!["watch", "--prefix"]),
        (vec![], vec!["watch", "k1", "k3", "--prefix"]),
    ];
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let server = Server::start(kind).expect("server starts");
        for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
            let args: Vec<OsString> = ["put", k, v].iter().map(OsString::from).collect();
            assert_eq!(oxetcdctl(&server.endpoint, &args, b"").code, 0);
        }
        let endpoints = format!("--endpoints={}", server.endpoint);
        let mut transcripts = Vec::new();
        for binary in [tools.etcdctl35.as_path(), ours] {
            let mut t = String::new();
            let with =
                |vars: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
                    [("ETCDCTL_API", "3")]
                        .into_iter()
                        .chain(vars.iter().copied())
                        .collect()
                };
            for (vars, args, lines) in &streams {
                let args: Vec<&str> = std::iter::once(endpoints.as_str())
                    .chain(args.iter().copied())
                    .collect();
                let mut w = Background::start_env(binary, &with(vars), &args, false);
                let got = w.read_up_to(*lines);
                let _ = w.child.kill();
                let (_, _, err) = w.finish();
                t.push_str(&format!(
                    "$ {vars:?} {}\n{}\n{err}",
                    args[1..].join(" "),
                    got.join("\n")
                ));
            }
            for (vars, args) in &ending {
                let args: Vec<&str> = std::iter::once(endpoints.as_str())
                    .chain(args.iter().copied())
                    .collect();
                t.push_str(&env_run(binary, &with(vars), &args, without_client_logs));
            }
            // watch -i: a line without a key takes the variable's; with a command, the line's
            // key becomes the range end; a range end with --prefix is a bad line; a key
            // without a command ends the command.
            let args = [endpoints.as_str(), "watch", "-i"];
            let mut w = Background::start_env(binary, &with(&[key("k1")]), &args, true);
            w.say("watch --rev 1");
            t.push_str(&format!("{}\n", w.read(3).join("\n")));
            w.say(&format!(r#"watch k3 --rev 1 -- sh -c "{hook}""#));
            t.push_str(&format!("{}\n", w.read(8).join("\n")));
            w.hang_up();
            let (code, rest, err) = w.finish();
            t.push_str(&format!("exit {code}, rest {rest:?}\n{err}"));
            let vars = with(&[key("k1"), end("k3")]);
            let mut w = Background::start_env(binary, &vars, &args, true);
            w.say("watch --prefix");
            w.say("watch k2");
            let (code, rest, err) = w.finish();
            t.push_str(&format!("exit {code}, rest {rest:?}\n{err}"));
            transcripts.push(neutral(&t, &server, Path::new("/nonexistent")));
        }
        assert_eq!(
            transcripts[0],
            transcripts[1],
            "etcdctl 3.5 vs oxetcdctl on {}",
            kind.label()
        );
        let t = &transcripts[0];
        for expected in [
            "PUT\nk1\nv1\nPUT\nk2\nv2\n$",
            "PUT\nk2\nv2\nhook \"k2\"\n",
            // One response with both past events, then the command once per event.
            "PUT\nk1\nv1\nPUT\nk2\nv2\nhook \"k1\"\nhook \"k2\"\nexit 3",
            "Error: bad number of arguments (found conflicting environment key)\nexit 128\n",
            "Error: ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END=\"k3\"\nexit 128\n",
            "Error: `range_end` and `--prefix` are mutually exclusive\nexit 128\n",
            "Invalid command watch --prefix (`range_end` and `--prefix` are mutually exclusive)\n\
             Error: bad number of arguments (found conflicting environment key)\n",
        ] {
            assert!(t.contains(expected), "{expected:?} missing in {t}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn inspect(dir: &Path) -> CtlOutput {
    let args = [OsString::from("inspect"), dir.into(), "--records".into()];
    oxetcdctl("127.0.0.1:1", &args, b"")
}

/// Offsets of the record lines of an `inspect --records` report, and where the log ends.
fn record_offsets(report: &str) -> (Vec<u64>, u64) {
    let offsets = report
        .lines()
        .filter_map(|l| l.trim_start().split_once("  "))
        .filter_map(|(offset, _)| offset.parse().ok())
        .collect();
    let end = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("ends cleanly at offset "))
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("no clean end in {report}"));
    (offsets, end)
}

/// `inspect` reads a live member's data dir, names a damaged record by file and offset (exit
/// 1), and reports a torn tail in the last segment as the repairable kind (exit 0).
#[test]
fn inspect_names_damage_by_file_and_offset() {
    let server = Server::start(ServerKind::Oxetcd).expect("oxetcd starts");
    for i in 0..5 {
        let args = [OsString::from("put"), format!("k{i}").into(), "v".into()];
        assert_eq!(oxetcdctl(&server.endpoint, &args, b"").code, 0);
    }
    // Acknowledged writes are on disk: a copy of the data dir holds them.
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &server.data_dir().join("member"),
        &copy.path().join("member"),
    );
    drop(server);

    let clean = inspect(copy.path());
    let report = clean.stdout_text();
    assert_eq!(clean.code, 0, "{report}{}", clean.stderr_text());
    assert!(report.contains("entries (index 0..="), "{report}");
    let (offsets, end) = record_offsets(&report);
    assert!(offsets.len() >= 6, "{report}");
    let segment = std::fs::read_dir(copy.path().join("member/wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a segment");
    let original = std::fs::read(&segment).expect("segment bytes");

    // A flipped bit in the body of the second record: damage at that record's offset.
    let mut bytes = original.clone();
    let at = offsets[1] as usize + 10;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("write damaged segment");
    let damaged = inspect(copy.path());
    let text = damaged.stdout_text();
    assert_eq!(damaged.code, 1, "{text}");
    assert!(
        text.contains(&format!("{}: segment", segment.display()))
            && text.contains(&format!("CORRUPT at offset {}", offsets[1])),
        "{text}"
    );
    assert!(
        damaged.stderr_text().contains("damaged"),
        "{}",
        damaged.stderr_text()
    );

    // The last frame's tail never reached the disk: a torn tail at that frame.
    let mut bytes = original;
    let last = *offsets.last().expect("a record");
    bytes[end as usize - 8..end as usize].fill(0);
    std::fs::write(&segment, &bytes).expect("write torn segment");
    let torn = inspect(copy.path());
    let text = torn.stdout_text();
    assert_eq!(torn.code, 0, "{text}");
    assert!(
        text.contains(&format!("torn tail at offset {last}")),
        "{text}"
    );
}

/// `key=value` lines of every key under `prefix` on `endpoint`.
fn dump(endpoint: &str, prefix: &str) -> String {
    let args: Vec<OsString> = ["get", prefix, "--prefix"]
        .iter()
        .map(|a| a.into())
        .collect();
    let out = oxetcdctl(endpoint, &args, b"");
    assert_eq!(out.code, 0, "{}", out.stderr_text());
    out.stdout_text()
        .lines()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|kv| kv.join("="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `endpoint` until the dump of `prefix` equals `expected` (30 s at most).
fn wait_for_dump(endpoint: &str, prefix: &str, expected: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = dump(endpoint, prefix);
        if got == expected || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::yield_now();
    }
}

/// `make-mirror` copies the existing keys and then follows puts and deletes, renaming with
/// `--dest-prefix`; etcdctl 3.5's make-mirror on the same scenario ends with the same
/// destination contents.
#[test]
fn make_mirror_copies_and_follows_as_etcdctl_does() {
    let Some(tools) = require_etcd_tools("make_mirror_copies_and_follows_as_etcdctl_does") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let mut finals = Vec::new();
    for binary in [tools.etcdctl35.as_path(), ours] {
        let source = Server::start(ServerKind::Oxetcd).expect("source starts");
        let dest = Server::start(ServerKind::Oxetcd).expect("destination starts");
        let put = |k: &str, v: &str| {
            let args: Vec<OsString> = ["put", k, v].iter().map(|a| a.into()).collect();
            assert_eq!(oxetcdctl(&source.endpoint, &args, b"").code, 0);
        };
        // The base in one transaction (one process, one fsync).
        let ops: String = (0..120).map(|i| format!("put /a/k{i:03} v{i}\n")).collect();
        let txn = oxetcdctl(
            &source.endpoint,
            &["txn".into()],
            format!("\n{ops}\n\n").as_bytes(),
        );
        assert_eq!(txn.code, 0, "{}", txn.stderr_text());
        put("/other", "not mirrored");
        let mut child = Command::new(binary)
            .env_clear()
            .env("ETCDCTL_API", "3")
            .args([
                format!("--endpoints={}", source.endpoint),
                "make-mirror".into(),
                "--prefix=/a/".into(),
                "--dest-prefix=/b/".into(),
                dest.endpoint.clone(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("make-mirror starts");
        let base: Vec<String> = (0..120).map(|i| format!("/b/k{i:03}=v{i}")).collect();
        let got = wait_for_dump(&dest.endpoint, "/", &base.join("\n"));
        assert_eq!(got, base.join("\n"), "{} copied the base", binary.display());
        put("/a/k000", "changed");
        let args: Vec<OsString> = ["del", "/a/k1", "--prefix"]
            .iter()
            .map(|a| a.into())
            .collect();
        assert_eq!(oxetcdctl(&source.endpoint, &args, b"").code, 0);
        put("/a/new", "added");
        let mut expected: Vec<String> = base
            .iter()
            .filter(|l| !l.starts_with("/b/k1"))
            .cloned()
            .collect();
        expected[0] = "/b/k000=changed".into();
        expected.push("/b/new=added".into());
        let got = wait_for_dump(&dest.endpoint, "/", &expected.join("\n"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            got,
            expected.join("\n"),
            "{} followed the updates",
            binary.display()
        );
        finals.push(got);
    }
    assert_eq!(finals[0], finals[1]);
}

/// A background `lock`/`elect` process whose stdout is read line by line.
struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::process::ChildStderr,
    /// The command's stdin, when it reads one (`watch -i`).
    stdin: Option<std::process::ChildStdin>,
}

impl Background {
    fn start(binary: &Path, endpoint: &str, args: &[&str]) -> Background {
        Background::start_api(binary, "3", endpoint, args)
    }

    /// As [`Background::start`], with `ETCDCTL_API` set to `api`.
    fn start_api(binary: &Path, api: &str, endpoint: &str, args: &[&str]) -> Background {
        Background::spawn(binary, api, endpoint, args, false)
    }

    /// As [`Background::start`], with a stdin to [`Background::say`] lines on.
    fn start_reading(binary: &Path, endpoint: &str, args: &[&str]) -> Background {
        Background::spawn(binary, "3", endpoint, args, true)
    }

    fn spawn(binary: &Path, api: &str, endpoint: &str, args: &[&str], stdin: bool) -> Background {
        let endpoints = format!("--endpoints={endpoint}");
        let args: Vec<&str> = std::iter::once(endpoints.as_str())
            .chain(args.iter().copied())
            .collect();
        Background::start_env(binary, &[("ETCDCTL_API", api)], &args, stdin)
    }

    /// The command with exactly these arguments (no `--endpoints` added) and these variables
    /// besides `PATH` (the child's environment is ordered by name).
    fn start_env(binary: &Path, vars: &[(&str, &str)], args: &[&str], stdin: bool) -> Background {
        use std::io::{BufRead as _, BufReader};
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines,
            stderr,
            stdin,
        }
    }

    /// Writes `line` and a newline on the command's stdin.
    fn say(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().expect("started with a stdin");
        writeln!(stdin, "{line}").expect("the command reads its stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes the command's stdin (end of input).
    fn hang_up(&mut self) {
        self.stdin = None;
    }

    /// The next `n` lines of stdout (panics after 30 s without them).
    fn read(&self, n: usize) -> Vec<String> {
        let got = self.read_up_to(n);
        assert_eq!(got.len(), n, "the command printed only {got:?}");
        got
    }

    /// At most `n` lines of stdout, whatever arrived within 30 s.
    fn read_up_to(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(_) => break,
            }
        }
        got
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// Sends SIGINT and returns the exit code, what is left on stdout, and stderr (minus the
    /// client's log lines).
    fn interrupt(self) -> (i32, String, String) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: signalling our own child process, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        self.finish()
    }

    /// Waits (at most 30 s, then kills it) for the command to end.
    fn finish(self) -> (i32, String, String) {
        let (code, rest, err) = self.finish_raw();
        (code, rest, without_client_logs(&err))
    }

    /// As [`Background::finish`], with stderr as it was printed.
    fn finish_raw(mut self) -> (i32, String, String) {
        use std::io::Read as _;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("the killed command is reaped");
            }
            // Polling a process for its exit; the deadline above bounds the loop.
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let mut err = String::new();
        let _ = self.stderr.read_to_string(&mut err);
        (status.code().unwrap_or(-1), rest.join("\n"), err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `count` keys exist under `prefix` (a waiter has queued its own key).
fn wait_for_keys(endpoint: &str, prefix: &str, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let args: Vec<OsString> = ["get", prefix, "--prefix", "--keys-only"]
            .iter()
            .map(|a| a.into())
            .collect();
        let out = oxetcdctl(endpoint, &args, b"");
        let keys = out.stdout_text().lines().filter(|l| !l.is_empty()).count();
        if keys == count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} keys under {prefix} never showed up: {:?}",
            out.stdout_text()
        );
        std::thread::yield_now();
    }
}

/// Replaces each session's lease ID in `name/<hex>` keys by `<lease>`.
fn without_lease_ids(text: &str, names: &[&str]) -> String {
    let mut out = text.to_string();
    for name in names {
        let marker = format!("{name}/");
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&marker) {
            result.push_str(&rest[..at + marker.len()]);
            rest = &rest[at + marker.len()..];
            let hex = rest.chars().take_while(char::is_ascii_hexdigit).count();
            result.push_str("<lease>");
            rest = &rest[hex..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// One run of the lock and election scenario with one tool against one server.
fn lock_and_elect_transcript(binary: &Path, server: &Server) -> String {
    let ep = server.endpoint.as_str();
    let mut out = String::new();
    // A holder, and a waiter that runs a command once it gets the lock.
    let holder = Background::start(binary, ep, &["lock", "L"]);
    out.push_str(&format!("holder: {:?}\n", holder.read(2)));
    let hook = "echo got $ETCD_LOCK_KEY; exit 0";
    let mut waiter = Background::start(binary, ep, &["lock", "L", "--", "sh", "-c", hook]);
    wait_for_keys(ep, "L/", 2);
    assert!(waiter.still_running(), "the waiter took a held lock");
    out.push_str(&format!("holder stopped: {:?}\n", holder.interrupt()));
    out.push_str(&format!("waiter: {:?}\n", waiter.finish()));
    wait_for_keys(ep, "L/", 0);
    // A command's failure becomes the exit status.
    let failing = Background::start(binary, ep, &["lock", "L", "--", "sh", "-c", "exit 3"]);
    out.push_str(&format!("failing command: {:?}\n", failing.finish()));
    // An observer, a leader, and a candidate that takes over when the leader resigns.
    let observer = Background::start(binary, ep, &["elect", "-l", "E"]);
    let first = Background::start(binary, ep, &["elect", "E", "one"]);
    out.push_str(&format!("first: {:?}\n", first.read(2)));
    out.push_str(&format!("observer: {:?}\n", observer.read(2)));
    let mut second = Background::start(binary, ep, &["elect", "E", "two"]);
    wait_for_keys(ep, "E/", 2);
    assert!(second.still_running(), "the second candidate led too early");
    out.push_str(&format!("first resigned: {:?}\n", first.interrupt()));
    out.push_str(&format!("second: {:?}\n", second.read(2)));
    out.push_str(&format!("observer: {:?}\n", observer.read(2)));
    out.push_str(&format!("second resigned: {:?}\n", second.interrupt()));
    out.push_str(&format!("observer stopped: {:?}\n", observer.interrupt()));
    for args in [
        &["lock"][..],
        &["elect", "E"],
        &["elect", "-l", "E", "x"],
        &["elect", "a", "b", "c"],
    ] {
        let bad = Background::start(binary, ep, args);
        out.push_str(&format!("{args:?}: {:?}\n", bad.finish()));
    }
    without_lease_ids(&out, &["L", "E"])
}

/// `lock` and `elect` behave and print as etcdctl 3.5's (holders, waiters, a command run under
/// the lock, its exit status, an observer following two leaders, argument errors), on oxetcd
/// and on etcd; and the two tools queue behind each other on the same lock.
#[test]
fn lock_and_elect_behave_as_etcdctl_does() {
    let Some(tools) = require_etcd_tools("lock_and_elect_behave_as_etcdctl_does") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    for kind in [ServerKind::Oxetcd, ServerKind::Etcd35] {
        let theirs = {
            let server = Server::start(kind).expect("server starts");
            lock_and_elect_transcript(&tools.etcdctl35, &server)
        };
        let server = Server::start(kind).expect("server starts");
        let mine = lock_and_elect_transcript(ours, &server);
        assert_eq!(theirs, mine, "etcdctl 3.5 vs oxetcdctl on {}", kind.label());
        for expected in ["got L/<lease>", "E/<lease>\", \"two\"", "exit status 3"] {
            assert!(
                theirs.contains(expected),
                "{expected:?} missing in {theirs}"
            );
        }
    }
    // Mixed: an etcdctl holder blocks an oxetcdctl waiter and the other way round.
    let server = Server::start(ServerKind::Oxetcd).expect("server starts");
    let ep = server.endpoint.as_str();
    for (first, second) in [(tools.etcdctl35.as_path(), ours), (ours, &tools.etcdctl35)] {
        let holder = Background::start(first, ep, &["lock", "M"]);
        let held = holder.read(2);
        let mut waiter = Background::start(second, ep, &["lock", "M", "true"]);
        wait_for_keys(ep, "M/", 2);
        assert!(
            waiter.still_running(),
            "{held:?}: a second tool took a held lock"
        );
        assert_eq!(holder.interrupt().0, 0);
        assert_eq!(waiter.finish().0, 0);
        wait_for_keys(ep, "M/", 0);
    }
}

/// The current revision of a server, through oxetcdctl.
fn current_revision(endpoint: &str) -> i64 {
    let args: Vec<OsString> = ["get", "x", "-w", "json"]
        .iter()
        .map(|a| a.into())
        .collect();
    let out = oxetcdctl(endpoint, &args, b"");
    let text = out.stdout_text();
    let at = text.find("\"revision\":").expect("a header revision") + "\"revision\":".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a number")
}

/// Lines of a check's output that carry its verdict (etcdctl also draws its progress bar on
/// stdout), with numbers masked.
fn verdict_lines(stdout: &str) -> Vec<String> {
    stdout
        .split(['\n', '\r'])
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL") || l.starts_with("Start"))
        .map(masked)
        .collect()
}

/// `check perf` and `check datascale`: argument and prefix errors exactly as etcdctl 3.5's;
/// datascale's report lines as etcdctl's; perf writes at its model's rate for its minute, prints
/// a verdict consistent with its exit code and the writes the server saw, and cleans up.
#[test]
fn check_perf_and_datascale_report_as_etcdctl_does() {
    if require_etcd_tools("check_perf_and_datascale_report_as_etcdctl_does").is_none() {
        return;
    }
    let args = |line: &str| -> Vec<OsString> { line.split(' ').map(OsString::from).collect() };
    // perf runs for a minute on its own server while the rest goes on.
    let perf_server = Server::start(ServerKind::Oxetcd).expect("server starts");
    let perf_endpoint = perf_server.endpoint.clone();
    let perf = std::thread::spawn(move || {
        let before = current_revision(&perf_endpoint);
        let out = oxetcdctl(&perf_endpoint, &args("check perf"), b"");
        let after = current_revision(&perf_endpoint);
        (out, after - before)
    });

    let server = Server::start(ServerKind::Oxetcd).expect("server starts");
    let ep = server.endpoint.as_str();
    let script = [
        "check perf --load x",
        "check datascale --load huge",
        "put /etcdctl-check-perf/k v",
        "check perf",
        "del /etcdctl-check-perf/k",
        "put /etcdctl-check-datascale/k v",
        "check datascale",
        "del /etcdctl-check-datascale/k",
    ];
    let mut transcripts = Vec::new();
    for ours in [false, true] {
        let mut transcript = String::new();
        for line in script {
            let out = if ours {
                oxetcdctl(ep, &args(line), b"")
            } else {
                etcdctl(CtlVersion::V35, ep, &args(line), b"")
            };
            transcript.push_str(&format!(
                "$ {line}\n{}{}exit {}\n",
                out.stdout_text(),
                without_client_logs(&out.stderr_text()),
                out.code
            ));
        }
        transcripts.push(transcript);
    }
    let (theirs, ours) = (&transcripts[0], &transcripts[1]);
    assert_eq!(theirs, ours, "etcdctl 3.5 vs oxetcdctl");
    assert!(theirs.contains("has keys. Delete with"), "{theirs}");

    // Each tool on a fresh server: the memory the check reports is the server's resident
    // growth, which a run after another one's clean-up can see negative.
    let mut reports = Vec::new();
    for ours in [false, true] {
        let fresh = Server::start(ServerKind::Oxetcd).expect("server starts");
        let out = if ours {
            oxetcdctl(&fresh.endpoint, &args("check datascale"), b"")
        } else {
            etcdctl(
                CtlVersion::V35,
                &fresh.endpoint,
                &args("check datascale"),
                b"",
            )
        };
        let left: Vec<OsString> = args("get /etcdctl-check-datascale/ --prefix --keys-only");
        assert_eq!(
            oxetcdctl(&fresh.endpoint, &left, b"").stdout_text(),
            "",
            "datascale cleaned up"
        );
        // The figure's sign depends on the allocator's timing, not on the tool.
        let lines = verdict_lines(&out.stdout_text().replace(": -", ": "));
        reports.push((lines, out.code));
    }
    assert_eq!(
        reports[0], reports[1],
        "datascale: etcdctl 3.5 vs oxetcdctl"
    );
    assert_eq!(reports[1].0.len(), 2, "{:?}", reports[1]);

    let (out, writes_seen) = perf.join().expect("perf thread");
    let stdout = out.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    let allowed = [
        "PASS: Throughput is ",
        "FAIL: Throughput too low: ",
        "PASS: Slowest request took ",
        "Slowest request took too long: ",
        "PASS: Stddev is ",
        "Stddev too high: ",
        "FAIL: too many errors",
        "FAIL: ERROR(",
    ];
    let last = lines.last().copied().unwrap_or_default();
    assert_eq!(
        (last, out.code),
        if out.code == 0 {
            ("PASS", 0)
        } else {
            ("FAIL", 1)
        },
        "{stdout}"
    );
    for line in &lines[..lines.len() - 1] {
        assert!(
            allowed.iter().any(|a| line.starts_with(a)),
            "{line:?} in {stdout}"
        );
    }
    // The throughput it reports is the rate the server saw over the minute (every put a
    // revision, plus one for the clean-up delete).
    let throughput: f64 = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("PASS: Throughput is ")
                .or_else(|| l.strip_prefix("FAIL: Throughput too low: "))
        })
        .and_then(|rest| rest.strip_suffix(" writes/s"))
        .and_then(|n| n.parse().ok())
        .expect("a throughput line");
    let per_minute = writes_seen as f64 / 60.0;
    assert!(
        (per_minute - throughput).abs() <= throughput * 0.05 + 2.0,
        "reported {throughput} writes/s, the server saw {writes_seen} writes in the minute"
    );
    let left: Vec<OsString> = args("get /etcdctl-check-perf/ --prefix --keys-only");
    assert_eq!(
        oxetcdctl(&perf_server.endpoint, &left, b"").stdout_text(),
        ""
    );
}

/// `--keepalive-time` and `--keepalive-timeout`: with pings every second, a watch on a member
/// that stopped answering (SIGSTOP) fails instead of waiting forever; a watch with an hour
/// between pings is still waiting then, and gets the next event once the member resumes.
#[test]
fn keepalive_pings_detect_a_silent_member() {
    let server = Server::start(ServerKind::Oxetcd).expect("server starts");
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let pinging = Background::start(
        ours,
        &server.endpoint,
        &[
            "--keepalive-time=1s",
            "--keepalive-timeout=1s",
            "watch",
            "k",
            "--rev",
            "2",
        ],
    );
    let mut patient = Background::start(
        ours,
        &server.endpoint,
        &["--keepalive-time=1h", "watch", "k", "--rev", "2"],
    );
    // The put below is revision 2: each watch sees it whether it was created before or after
    // it (a live watch could miss it otherwise); once both printed it, both are streaming.
    let put: Vec<OsString> = ["put", "k", "v1"].iter().map(|a| a.into()).collect();
    assert_eq!(oxetcdctl(&server.endpoint, &put, b"").code, 0);
    assert_eq!(pinging.read(3), ["PUT", "k", "v1"]);
    assert_eq!(patient.read(3), ["PUT", "k", "v1"]);
    let pid = i32::try_from(server.pid()).expect("pid fits");
    // SAFETY: stopping and resuming the test's own server process.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let (code, _, stderr) = pinging.finish();
    let still_waiting = patient.still_running();
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(still_waiting, "the watch without pings gave up");
    let put: Vec<OsString> = ["put", "k", "v2"].iter().map(|a| a.into()).collect();
    assert_eq!(oxetcdctl(&server.endpoint, &put, b"").code, 0);
    assert_eq!(patient.read(3), ["PUT", "k", "v2"]);
}

/// The v2 script: `~` marks a step whose output holds a TTL's expiration time. `{stdin}` steps
/// get their value on standard input (`{stdin=TEXT}` steps the line `TEXT`); `{username=U}`
/// steps run with `ETCDCTL_USERNAME=U`.
const V2_SCRIPT: &[&str] = &[
    "set /a/b hello",
    "get /a/b",
    "-o extended get /a/b",
    "-o json get /a/b",
    "mk /a/b x",
    "-o json mk /a/c x",
    "mk --in-order /q first",
    "-o json mk --in-order /q second",
    // Listings come in etcd's map order unless sorted, so every listing here is sorted.
    "ls --sort",
    "ls --sort /",
    "ls --sort -r -p /",
    "ls --sort -r /a",
    "-o json ls --sort /a",
    "-o extended ls --sort /q",
    "update /a/b world",
    "update /nope x",
    "set --swap-with-value wrong /a/b z",
    "set --swap-with-value world /a/b z",
    "set --swap-with-index 1 /a/b z",
    "-o extended set /a/b again",
    "watch --after-index 1 /a/b",
    "watch -r --after-index 1 /a",
    "-o json watch -r --after-index 1 /a/c",
    "mkdir /d",
    "mkdir /d",
    "-o extended setdir /d",
    "updatedir /nope",
    "-o json updatedir /d",
    "rmdir /a",
    "rm /a",
    "rm --with-value nope /a/c",
    "rm --with-index 1 /a/c",
    "rm /a/c",
    "-o extended rm /a/b",
    "-o json rm --dir /d",
    "rm -r /a",
    "rm -r /q",
    "get /q",
    "get /nope",
    "get",
    "set /k",
    "{stdin} set /k",
    "-o json get /k",
    "member list",
    "cluster-health",
    "member add onlyname",
    "member remove ffff",
    "member update ffff http://127.0.0.1:1",
    "member update ffff",
    "~ -o json mkdir /t --ttl 100",
    "~ -o extended set /tk v --ttl 100",
];

fn v2_transcript(binary: &Path, kind: ServerKind) -> String {
    v2_script_transcript(binary, kind, V2_SCRIPT, &[])
}

/// `{prefix=VALUE} ` at the start of a script line: the value and the rest of the line.
fn v2_step_option<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = line.strip_prefix(prefix)?;
    let (value, rest) = rest.split_once("} ")?;
    Some((value, rest))
}

/// Runs a v2 script (see [`V2_SCRIPT`]) with `binary` on a fresh server of `kind` started with
/// `--enable-v2=true` and `flags`: each step's command, stdout, stderr and exit code.
fn v2_script_transcript(
    binary: &Path,
    kind: ServerKind,
    script: &[&str],
    flags: &[&str],
) -> String {
    let mut server_flags = vec!["--enable-v2=true"];
    if kind == ServerKind::Oxetcd {
        server_flags.extend_from_slice(flags);
    }
    let server = Server::start_with(kind, "v2", &server_flags).expect("server starts");
    let url = format!("http://{}", server.endpoint);
    let mut out = String::new();
    for line in script {
        let (volatile, line) = match line.strip_prefix("~ ") {
            Some(rest) => (true, rest),
            None => (false, *line),
        };
        let (username, line) = match v2_step_option(line, "{username=") {
            Some((value, rest)) => (Some(value), rest),
            None => (None, line),
        };
        let (stdin, line): (Vec<u8>, &str) = match line.strip_prefix("{stdin} ") {
            Some(rest) => (b"from stdin".to_vec(), rest),
            None => match v2_step_option(line, "{stdin=") {
                Some((text, rest)) => (format!("{text}\n").into_bytes(), rest),
                None => (Vec::new(), line),
            },
        };
        let output = {
            use std::io::Write as _;
            let mut command = Command::new(binary);
            command.env_clear().env("ETCDCTL_API", "2");
            if let Some(username) = username {
                command.env("ETCDCTL_USERNAME", username);
            }
            let mut child = command
                .arg(format!("--endpoints={url}"))
                .args(line.split(' '))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the v2 command starts");
            if let Some(mut input) = child.stdin.take() {
                // A command that exits without reading (a bad argument) closes the pipe first.
                match input.write_all(&stdin) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        panic!("stdin of {line:?} is not written: {e}")
                    }
                    _ => {}
                }
            }
            // Bounded: a command that waits forever (a watch that never fires) fails the test.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while child.try_wait().expect("wait works").is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{line:?} did not end within 20 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            child.wait_with_output().expect("the v2 command ends")
        };
        let text = format!(
            "$ {line}\n{}{}exit {}\n",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            output.status.code().unwrap_or(-1)
        );
        let text = neutral(&text, &server, Path::new("/nonexistent"));
        out.push_str(&if volatile { masked(&text) } else { text });
    }
    out
}

/// `ETCDCTL_API=2` commands (set/get/mk/mkdir/setdir/update/updatedir/rm/rmdir/ls/watch,
/// member list, cluster-health) in the three output formats, with their error lines and exit
/// codes: oxetcdctl prints what etcdctl 3.4 prints, each on a fresh server with the v2 API (etcd
/// 3.4, then oxetcd).
#[test]
fn v2_commands_print_what_etcdctl_34_prints() {
    let Some(tools) = require_etcd_tools("v2_commands_print_what_etcdctl_34_prints") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    for kind in [ServerKind::Etcd34, ServerKind::Oxetcd] {
        let theirs = v2_transcript(&tools.etcdctl34, kind);
        let mine = v2_transcript(ours, kind);
        if theirs != mine {
            let mut report = String::new();
            for (t, o) in theirs.split("$ ").zip(mine.split("$ ")) {
                if t != o {
                    report.push_str(&format!("--- etcdctl 3.4\n$ {t}+++ oxetcdctl\n$ {o}\n"));
                }
            }
            panic!("on {}, the v2 transcripts differ:\n{report}", kind.label());
        }
        for expected in [
            "Key already exists",
            "PrevNode.Value: again",
            "] /a/",
            "isLeader=true",
        ] {
            assert!(
                theirs.contains(expected),
                "{expected:?} missing in {theirs}"
            );
        }
    }
}

/// The v2 auth script: users, roles, enabling and disabling auth, and `--username` (given,
/// prompted for, from `ETCDCTL_USERNAME`) on the keys, members and auth commands, with the
/// error paths: bad arguments, unknown users and roles, duplicate grants, wrong passwords,
/// auth already on or off, no root user, insufficient credentials. `{stdin=...}` steps answer
/// the password prompts (standard input is a pipe, so stty's complaint shows on stderr).
const V2_AUTH_SCRIPT: &[&str] = &[
    "user list",
    "user add",
    "user add a b",
    "user add root:rootpw",
    // etcdctl 3.4 does not look first: adding an existing user sets its password.
    "user add root:rootpw",
    "{stdin=} user add bob",
    "{stdin=  bobpw  } user add bob",
    "user add carol:",
    "user get root",
    "user get bob",
    "user get nobody",
    "user get",
    "user list x",
    "user list",
    "user remove nobody",
    "user remove",
    "{stdin=newpw} user passwd bob",
    "{stdin=} user passwd bob",
    "{stdin=x} user passwd ghost",
    "user remove ghost",
    "user passwd",
    "role list",
    "role add",
    "role add r1",
    "role add r1",
    "role get r1",
    "role get nope",
    "role get",
    "role remove nope",
    "role list x",
    "role grant r1",
    "role grant --path /a --read",
    "role grant r1 --path /a",
    "role grant r1 --path /a/../b --read",
    "role grant r1 --path a --read",
    "role grant r1 --path /a --read --write",
    "role grant r1 --path /a --read",
    "role grant r1 --path /a --read",
    "role grant r1 --path /b/* --rw",
    "role grant r1 --path /c/ --write",
    "role get r1",
    "role revoke r1 --path /a --write",
    "role revoke r1 --path /a --read",
    "role revoke r1 --path /b/* --readwrite",
    "role revoke r1 --path /b/* --read",
    "role get r1",
    "role grant nope --path /a --read",
    "role revoke nope --path /a --read",
    "role add r2",
    "role list",
    "user grant bob",
    "user grant --roles r1",
    "user grant bob --roles r1",
    "user grant bob --roles r1",
    "user grant bob --roles r2 --roles root",
    "user get bob",
    "user grant nobody --roles r1",
    "user revoke bob --roles nope",
    "user revoke bob --roles r2 --roles root",
    "user get bob",
    "role grant r1 --path /x --read",
    "user revoke nobody --roles r1",
    "user revoke bob",
    "user list",
    "auth enable x",
    "auth disable x",
    "auth disable",
    "user remove root",
    "auth enable",
    "user add root:rootpw",
    "auth enable",
    "auth enable",
    "user list",
    "-u root:wrong user list",
    "--username root:rootpw user list",
    "-u root:rootpw auth enable",
    "-u bob:newpw user list",
    "-u root:rootpw set /x 1",
    "get /x",
    "-u root:rootpw role remove guest",
    "get /x",
    "-u root:wrong get /x",
    "-u nobody:x get /x",
    "{stdin=rootpw} -u root get /x",
    "{stdin=} -u root get /x",
    "{username=root:rootpw} get /x",
    "{username=root:wrong} get /x",
    "{username=root:wrong} -u root:rootpw get /x",
    "-u :rootpw get /x",
    "-u bob:newpw get /x",
    "-u root:rootpw member list",
    "-u root:wrong member list",
    "-u root:wrong cluster-health",
    "-u root:wrong role list",
    "-u root:wrong role get r1",
    "-u root:wrong role add q",
    "-u root:wrong role grant r1 --path /q --read",
    "-u root:wrong user grant bob --roles r1",
    "{stdin=x} -u root:wrong user passwd bob",
    "{stdin=rootpw\nbob2} -u root user passwd bob",
    "-u bob:newpw auth disable",
    "-u root:wrong auth disable",
    "-u root:rootpw user remove bob",
    "-u root:rootpw role remove r1",
    "{stdin=rootpw} -u root auth disable",
    "auth disable",
    "user list",
    "role list",
];

/// `ETCDCTL_API=2 user ...`, `role ...`, `auth ...` and `--username`: oxetcdctl prints what
/// etcdctl 3.4 prints (stdout, stderr, exit code) through [`V2_AUTH_SCRIPT`], each on a fresh
/// server with the v2 API (etcd 3.4, then oxetcd with `--bcrypt-cost=4` to keep debug builds
/// quick).
#[test]
fn v2_auth_commands_print_what_etcdctl_34_prints() {
    let Some(tools) = require_etcd_tools("v2_auth_commands_print_what_etcdctl_34_prints") else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let flags = ["--bcrypt-cost=4"];
    for kind in [ServerKind::Etcd34, ServerKind::Oxetcd] {
        let theirs = v2_script_transcript(&tools.etcdctl34, kind, V2_AUTH_SCRIPT, &flags);
        let mine = v2_script_transcript(ours, kind, V2_AUTH_SCRIPT, &flags);
        if theirs != mine {
            let mut report = String::new();
            for (t, o) in theirs.split("\n$ ").zip(mine.split("\n$ ")) {
                if t != o {
                    report.push_str(&format!("--- etcdctl 3.4\n$ {t}\n+++ oxetcdctl\n$ {o}\n"));
                }
            }
            panic!(
                "on {}, the v2 auth transcripts differ:\n{report}",
                kind.label()
            );
        }
        // The steps did their work: not the same failure throughout.
        for expected in [
            "User bob created",
            "Roles:  r1",
            "Role r1 updated",
            "\t/b/*",
            "Role r1 already exists",
            "Authentication Enabled",
            "Password: \n1\n",
            "New password: \nPassword updated",
            "unexpected status code 401",
            "Authentication Disabled",
        ] {
            assert!(
                theirs.contains(expected),
                "{expected:?} missing in {theirs}"
            );
        }
    }
}

/// The v2 script of `--debug` steps: each request's cURL line (method, URL with the Go
/// client's query, Go-quoted form or JSON body) and the sync lines around it, for every kind
/// of request the v2 commands make (keys get/set/create/update/delete/watch, members, auth,
/// cluster-health, `--no-sync`).
const V2_DEBUG_SCRIPT: &[&str] = &[
    "--debug set /a b",
    "--debug set /a c --swap-with-value b --ttl 100",
    "--debug set /q \"x&y=z\"",
    "--debug mk /m v",
    "--debug mk /queue job --in-order",
    "--debug mkdir /d",
    "--debug setdir /d --ttl 100",
    "--debug update /m w",
    "--debug updatedir /d --ttl 50",
    "--debug get /a",
    "--debug get /a --quorum",
    "--debug ls / --sort -r -p",
    "--debug --no-sync get /m",
    "--debug get /nope",
    "--debug watch /a --after-index 1",
    "--debug watch -r --after-index 1 /queue",
    "--debug rm /m --with-value w",
    "--debug rm /d --dir",
    "--debug rmdir /queue",
    "--debug rm /queue -r",
    "--debug member list",
    "--debug member remove ffff",
    "--debug cluster-health",
    "--debug user list",
    "--debug role list",
    "--debug auth disable",
];

/// `ETCDCTL_API=2 --debug`: the same stderr lines as etcdctl 3.4 (`start to sync cluster
/// using endpoints(...)`, `cURL Command: curl -X ...`, `got endpoints(...) after sync`,
/// `Cluster-Endpoints: ...`), on etcd 3.4 and on oxetcd.
#[test]
fn v2_debug_prints_the_curl_commands_etcdctl_34_prints() {
    let Some(tools) = require_etcd_tools("v2_debug_prints_the_curl_commands_etcdctl_34_prints")
    else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    for kind in [ServerKind::Etcd34, ServerKind::Oxetcd] {
        let theirs = v2_script_transcript(&tools.etcdctl34, kind, V2_DEBUG_SCRIPT, &[]);
        let mine = v2_script_transcript(ours, kind, V2_DEBUG_SCRIPT, &[]);
        if theirs != mine {
            let mut report = String::new();
            for (t, o) in theirs.split("\n$ ").zip(mine.split("\n$ ")) {
                if t != o {
                    report.push_str(&format!("--- etcdctl 3.4\n$ {t}\n+++ oxetcdctl\n$ {o}\n"));
                }
            }
            panic!(
                "on {}, the v2 --debug transcripts differ:\n{report}",
                kind.label()
            );
        }
        for expected in [
            "start to sync cluster using endpoints(",
            "?prevExist=false -d \"value=v\"",
            "-d \"ttl=100&value=c\"",
            "?recursive=false&wait=true&waitIndex=2",
            "?recursive=true&wait=true&waitIndex=2",
            "/v2/members/leader\n",
            "Cluster-Endpoints: ",
        ] {
            assert!(
                theirs.contains(expected),
                "{expected:?} missing in {theirs}"
            );
        }
    }
}

/// `ETCDCTL_API=2 exec-watch KEY -- COMMAND`: the command runs for a change with etcdctl 3.4's
/// `ETCD_WATCH_*` variables, on etcd 3.4 and on oxetcd, as with etcdctl 3.4.
#[test]
fn v2_exec_watch_runs_the_command_as_etcdctl_34_does() {
    let Some(tools) = require_etcd_tools("v2_exec_watch_runs_the_command_as_etcdctl_34_does")
    else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_oxetcdctl"));
    let hook = "echo $ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE";
    for kind in [ServerKind::Etcd34, ServerKind::Oxetcd] {
        let mut seen = Vec::new();
        for binary in [tools.etcdctl34.as_path(), ours] {
            let server =
                Server::start_with(kind, "v2", &["--enable-v2=true"]).expect("server starts");
            let url = format!("http://{}", server.endpoint);
            // Two writes, so the watched one is past index 1 on either server (oxetcd's v2
            // index starts at 0, etcd's after its membership entries).
            for (key, value) in [("/other", "x"), ("/e/k", "v 1")] {
                let set = Background::start_api(binary, "2", &url, &["set", key, value]);
                assert_eq!(set.finish().0, 0);
            }
            let watching = Background::start_api(
                binary,
                "2",
                &url,
                &[
                    "exec-watch",
                    // etcdctl 3.4 (urfave/cli) loses `--after-index` when it follows `-r`.
                    "--after-index",
                    "1",
                    "-r",
                    "/e",
                    "--",
                    "sh",
                    "-c",
                    hook,
                ],
            );
            let got = watching.read_up_to(1);
            if got.is_empty() {
                panic!(
                    "{}: exec-watch printed nothing: {:?}",
                    binary.display(),
                    watching.interrupt()
                );
            }
            seen.push(got);
        }
        assert_eq!(
            seen[0],
            seen[1],
            "etcdctl 3.4 vs oxetcdctl on {}",
            kind.label()
        );
        assert_eq!(seen[0], ["set /e/k v 1"], "on {}", kind.label());
    }
}
