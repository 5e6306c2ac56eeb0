//! The "Examples:" block under each command's `--help` page, for the v3 command line and for
//! the v2 one, kept in two tables here (one row per command, named by its path of subcommand
//! names below the root: `"lease grant"`) and attached to clap's command tree by [`attach`].
//!
//! Invariant: every leaf command of both trees has a row, and every row names a command that
//! exists (the unit tests walk the trees); every example line parses with the command line it
//! documents (the unit tests parse each one).
//!
//! An example line is one shell command: optional `VAR=value` words, `oxetcdctl`, its
//! arguments (single or double quotes group words), then optionally a redirection (`<`, `>`)
//! or a pipe into another program, which the parse test leaves out.

/// One row: the command's path and its example lines.
pub type Row = (&'static str, &'static [&'static str]);

/// The v3 command line (etcdctl 3.5's commands).
pub const V3: &[Row] = &[
    (
        "get",
        &[
            "oxetcdctl get greeting",
            "oxetcdctl get /registry/ --prefix --keys-only",
            "oxetcdctl get a z --limit 10 --sort-by=MODIFY --order=DESCEND -w json",
            "oxetcdctl get greeting --rev 42 --print-value-only",
        ],
    ),
    (
        "put",
        &[
            "oxetcdctl put greeting hello",
            "oxetcdctl put session/alice active --lease 694d71ddacfda227",
            "oxetcdctl put greeting hola --prev-kv",
            "oxetcdctl put config/app.yaml < app.yaml",
        ],
    ),
    (
        "del",
        &[
            "oxetcdctl del greeting",
            "oxetcdctl del /jobs/ --prefix --prev-kv",
            "oxetcdctl del a z",
        ],
    ),
    (
        "txn",
        &[
            "oxetcdctl txn < ops.txt",
            "oxetcdctl txn -i",
            "printf 'mod(\"k\") > \"0\"\\n\\nput k v2\\n\\nput k v1\\n\\n' | oxetcdctl txn",
        ],
    ),
    (
        "watch",
        &[
            "oxetcdctl watch greeting",
            "oxetcdctl watch /jobs/ --prefix --prev-kv -w json",
            "oxetcdctl watch greeting --rev 1",
            "oxetcdctl watch config/ --prefix -- sh -c 'echo $ETCD_WATCH_KEY changed'",
        ],
    ),
    (
        "make-mirror",
        &[
            "oxetcdctl make-mirror 10.0.0.9:2379",
            "oxetcdctl make-mirror --prefix /app/ --dest-prefix /copy/ https://10.0.0.9:2379 \
             --dest-cacert ca.pem",
        ],
    ),
    (
        "compaction",
        &[
            "oxetcdctl compaction 1234",
            "oxetcdctl compaction 1234 --physical",
        ],
    ),
    (
        "lock",
        &[
            "oxetcdctl lock deploy",
            "oxetcdctl lock --ttl 30 deploy -- ./deploy.sh --all",
        ],
    ),
    (
        "elect",
        &[
            "oxetcdctl elect scheduler node-1",
            "oxetcdctl elect -l scheduler",
        ],
    ),
    (
        "check perf",
        &[
            "oxetcdctl check perf",
            "oxetcdctl check perf --load m --auto-compact --auto-defrag",
        ],
    ),
    (
        "check datascale",
        &[
            "oxetcdctl check datascale",
            "oxetcdctl check datascale --load l --prefix /datascale-check/",
        ],
    ),
    (
        "lease grant",
        &[
            "oxetcdctl lease grant 60",
            "oxetcdctl lease grant 3600 -w json",
        ],
    ),
    ("lease revoke", &["oxetcdctl lease revoke 694d71ddacfda227"]),
    (
        "lease timetolive",
        &[
            "oxetcdctl lease timetolive 694d71ddacfda227",
            "oxetcdctl lease timetolive 694d71ddacfda227 --keys -w json",
        ],
    ),
    (
        "lease list",
        &["oxetcdctl lease list", "oxetcdctl lease list -w json"],
    ),
    (
        "lease keep-alive",
        &[
            "oxetcdctl lease keep-alive 694d71ddacfda227",
            "oxetcdctl lease keep-alive 694d71ddacfda227 --once",
        ],
    ),
    (
        "member list",
        &[
            "oxetcdctl member list -w table",
            "oxetcdctl member list --consistency-linearizable -w json",
        ],
    ),
    (
        "member add",
        &[
            "oxetcdctl member add m4 --peer-urls https://10.0.0.4:2380",
            "oxetcdctl member add m5 --peer-urls https://10.0.0.5:2380 --learner",
        ],
    ),
    (
        "member remove",
        &["oxetcdctl member remove 8e9e05c52164694d"],
    ),
    (
        "member update",
        &["oxetcdctl member update 8e9e05c52164694d --peer-urls https://10.0.0.7:2380"],
    ),
    (
        "member promote",
        &["oxetcdctl member promote 8e9e05c52164694d"],
    ),
    (
        "endpoint health",
        &[
            "oxetcdctl endpoint health",
            "oxetcdctl endpoint health --cluster -w table",
        ],
    ),
    (
        "endpoint status",
        &[
            "oxetcdctl endpoint status -w table",
            "oxetcdctl --endpoints 10.0.0.1:2379,10.0.0.2:2379 endpoint status -w json",
        ],
    ),
    (
        "endpoint hashkv",
        &[
            "oxetcdctl endpoint hashkv --cluster",
            "oxetcdctl endpoint hashkv --rev 1234 -w table",
        ],
    ),
    ("alarm disarm", &["oxetcdctl alarm disarm"]),
    ("alarm list", &["oxetcdctl alarm list"]),
    (
        "auth enable",
        &["oxetcdctl user add root:secret", "oxetcdctl auth enable"],
    ),
    (
        "auth disable",
        &["oxetcdctl --user root:secret auth disable"],
    ),
    ("auth status", &["oxetcdctl auth status -w json"]),
    (
        "user add",
        &[
            "oxetcdctl user add alice:secret",
            "oxetcdctl user add alice --new-user-password secret",
            "oxetcdctl user add bob --no-password",
        ],
    ),
    (
        "user get",
        &[
            "oxetcdctl user get alice",
            "oxetcdctl user get alice --detail",
        ],
    ),
    ("user list", &["oxetcdctl user list"]),
    ("user delete", &["oxetcdctl user delete alice"]),
    (
        "user passwd",
        &[
            "oxetcdctl user passwd alice",
            "oxetcdctl user passwd alice --interactive=false < new-password.txt",
        ],
    ),
    (
        "user grant-role",
        &["oxetcdctl user grant-role alice readers"],
    ),
    (
        "user revoke-role",
        &["oxetcdctl user revoke-role alice readers"],
    ),
    ("role add", &["oxetcdctl role add readers"]),
    ("role delete", &["oxetcdctl role delete readers"]),
    ("role get", &["oxetcdctl role get readers"]),
    ("role list", &["oxetcdctl role list"]),
    (
        "role grant-permission",
        &[
            "oxetcdctl role grant-permission readers read /app/ --prefix",
            "oxetcdctl role grant-permission writers readwrite a z",
            "oxetcdctl role grant-permission admins write /config/ --from-key",
        ],
    ),
    (
        "role revoke-permission",
        &[
            "oxetcdctl role revoke-permission readers /app/ --prefix",
            "oxetcdctl role revoke-permission writers a z",
        ],
    ),
    (
        "defrag",
        &[
            "oxetcdctl defrag",
            "oxetcdctl defrag --cluster",
            "oxetcdctl --endpoints 10.0.0.1:2379 --command-timeout 60s defrag",
        ],
    ),
    ("move-leader", &["oxetcdctl move-leader 8e9e05c52164694d"]),
    (
        "snapshot save",
        &[
            "oxetcdctl snapshot save backup.db",
            "oxetcdctl --endpoints https://10.0.0.1:2379 --cacert ca.pem snapshot save backup.db",
        ],
    ),
    (
        "snapshot status",
        &[
            "oxetcdctl snapshot status backup.db",
            "oxetcdctl snapshot status backup.db -w table",
        ],
    ),
    (
        "snapshot restore",
        &[
            "oxetcdctl snapshot restore backup.db --data-dir /var/lib/oxetcd",
            "oxetcdctl snapshot restore backup.db --data-dir /var/lib/oxetcd --name m1 \
             --initial-cluster m1=https://10.0.0.1:2380 \
             --initial-advertise-peer-urls https://10.0.0.1:2380",
        ],
    ),
    ("version", &["oxetcdctl version"]),
    (
        "inspect",
        &[
            "oxetcdctl inspect /var/lib/oxetcd",
            "oxetcdctl inspect /var/lib/oxetcd --records",
            "oxetcdctl inspect /var/lib/oxetcd --wal-dir /ssd/oxetcd-wal",
        ],
    ),
    (
        "completion",
        &[
            "oxetcdctl completion bash > /etc/bash_completion.d/oxetcdctl",
            "oxetcdctl completion zsh > ~/.zfunc/_oxetcdctl",
        ],
    ),
];

/// The v2 command line (`ETCDCTL_API=2`, etcdctl 3.4's v2 commands).
pub const V2: &[Row] = &[
    (
        "cluster-health",
        &[
            "ETCDCTL_API=2 oxetcdctl cluster-health",
            "ETCDCTL_API=2 oxetcdctl --endpoints http://10.0.0.1:2379 cluster-health",
        ],
    ),
    (
        "mk",
        &[
            "ETCDCTL_API=2 oxetcdctl mk /config/name hello",
            "ETCDCTL_API=2 oxetcdctl mk /queue job-1 --in-order",
            "ETCDCTL_API=2 oxetcdctl mk /locks/a held --ttl 30",
        ],
    ),
    (
        "mkdir",
        &[
            "ETCDCTL_API=2 oxetcdctl mkdir /config",
            "ETCDCTL_API=2 oxetcdctl mkdir /tmp/session --ttl 60",
        ],
    ),
    (
        "rm",
        &[
            "ETCDCTL_API=2 oxetcdctl rm /config/name",
            "ETCDCTL_API=2 oxetcdctl rm /config --recursive",
            "ETCDCTL_API=2 oxetcdctl rm /config/name --with-value hello",
        ],
    ),
    ("rmdir", &["ETCDCTL_API=2 oxetcdctl rmdir /config"]),
    (
        "get",
        &[
            "ETCDCTL_API=2 oxetcdctl get /config/name",
            "ETCDCTL_API=2 oxetcdctl -o extended get /config/name --quorum",
            "ETCDCTL_API=2 oxetcdctl --debug get /config/name",
        ],
    ),
    (
        "ls",
        &[
            "ETCDCTL_API=2 oxetcdctl ls",
            "ETCDCTL_API=2 oxetcdctl ls /config --recursive -p --sort",
        ],
    ),
    (
        "set",
        &[
            "ETCDCTL_API=2 oxetcdctl set /config/name hello",
            "ETCDCTL_API=2 oxetcdctl set /config/name hola --swap-with-value hello",
            "ETCDCTL_API=2 oxetcdctl set /session/a up --ttl 30",
            "ETCDCTL_API=2 oxetcdctl set /config/motd < motd.txt",
        ],
    ),
    (
        "setdir",
        &["ETCDCTL_API=2 oxetcdctl setdir /config --ttl 3600"],
    ),
    (
        "update",
        &[
            "ETCDCTL_API=2 oxetcdctl update /config/name hola",
            "ETCDCTL_API=2 oxetcdctl update /session/a up --ttl 30",
        ],
    ),
    (
        "updatedir",
        &["ETCDCTL_API=2 oxetcdctl updatedir /tmp/session --ttl 120"],
    ),
    (
        "watch",
        &[
            "ETCDCTL_API=2 oxetcdctl watch /config/name",
            "ETCDCTL_API=2 oxetcdctl watch /config --recursive --forever",
            "ETCDCTL_API=2 oxetcdctl watch /config/name --after-index 12",
        ],
    ),
    (
        "exec-watch",
        &[
            "ETCDCTL_API=2 oxetcdctl exec-watch /config/name -- sh -c 'echo $ETCD_WATCH_VALUE'",
            "ETCDCTL_API=2 oxetcdctl exec-watch --recursive /config -- ./reload.sh",
        ],
    ),
    ("member list", &["ETCDCTL_API=2 oxetcdctl member list"]),
    (
        "member add",
        &["ETCDCTL_API=2 oxetcdctl member add m4 http://10.0.0.4:2380"],
    ),
    ("member remove", &["ETCDCTL_API=2 oxetcdctl member remove 8e9e05c52164694d"]),
    (
        "member update",
        &["ETCDCTL_API=2 oxetcdctl member update 8e9e05c52164694d http://10.0.0.7:2380"],
    ),
    (
        "user add",
        &[
            "ETCDCTL_API=2 oxetcdctl user add root:secret",
            "ETCDCTL_API=2 oxetcdctl --username root:secret user add alice",
        ],
    ),
    ("user get", &["ETCDCTL_API=2 oxetcdctl --username root:secret user get alice"]),
    ("user list", &["ETCDCTL_API=2 oxetcdctl --username root:secret user list"]),
    (
        "user remove",
        &["ETCDCTL_API=2 oxetcdctl --username root:secret user remove alice"],
    ),
    (
        "user grant",
        &["ETCDCTL_API=2 oxetcdctl -u root:secret user grant --roles readers --roles writers alice"],
    ),
    (
        "user revoke",
        &["ETCDCTL_API=2 oxetcdctl -u root:secret user revoke --roles writers alice"],
    ),
    (
        "user passwd",
        &["ETCDCTL_API=2 oxetcdctl --username alice:old-secret user passwd alice"],
    ),
    ("role add", &["ETCDCTL_API=2 oxetcdctl -u root:secret role add readers"]),
    ("role get", &["ETCDCTL_API=2 oxetcdctl -u root:secret role get readers"]),
    ("role list", &["ETCDCTL_API=2 oxetcdctl -u root:secret role list"]),
    ("role remove", &["ETCDCTL_API=2 oxetcdctl -u root:secret role remove readers"]),
    (
        "role grant",
        &[
            "ETCDCTL_API=2 oxetcdctl -u root:secret role grant readers --path '/app/*' --read",
            "ETCDCTL_API=2 oxetcdctl -u root:secret role grant writers --path /config --readwrite",
        ],
    ),
    (
        "role revoke",
        &["ETCDCTL_API=2 oxetcdctl -u root:secret role revoke writers --path /config --write"],
    ),
    (
        "auth enable",
        &[
            "ETCDCTL_API=2 oxetcdctl user add root:secret",
            "ETCDCTL_API=2 oxetcdctl -u root:secret auth enable",
        ],
    ),
    ("auth disable", &["ETCDCTL_API=2 oxetcdctl -u root:secret auth disable"]),
];

/// The text of one "Examples:" block.
fn block(lines: &[&str]) -> String {
    let mut text = String::from("Examples:");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

/// `command` with each subcommand's row of `rows` attached as its `after_help`.
pub fn attach(command: clap::Command, rows: &[Row]) -> clap::Command {
    attach_below(command, rows, "")
}

fn attach_below(command: clap::Command, rows: &[Row], path: &str) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    names.into_iter().fold(command, |command, name| {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        command.mut_subcommand(&name, |sub| {
            let sub = match rows.iter().find(|(p, _)| *p == sub_path) {
                Some((_, lines)) => sub.after_help(block(lines)),
                None => sub,
            };
            attach_below(sub, rows, &sub_path)
        })
    })
}

/// The words of an example's `oxetcdctl` invocation (program name first), without the
/// variable assignments before it and the redirection or pipe after it; quotes group words.
#[cfg(test)]
fn invocation(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let start = words.iter().position(|w| w == "oxetcdctl");
    let start = match start {
        Some(start) => start,
        None => panic!("example without oxetcdctl: {line}"),
    };
    words
        .into_iter()
        .skip(start)
        .take_while(|w| !matches!(w.as_str(), "<" | ">" | "|"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf command's path below the root ("lease grant"), clap's own `help` excepted.
    fn leaves(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            let sub_path = if path.is_empty() {
                sub.get_name().to_string()
            } else {
                format!("{path} {}", sub.get_name())
            };
            if sub.get_subcommands().next().is_none() {
                out.push(sub_path);
            } else {
                leaves(sub, &sub_path, out);
            }
        }
    }

    fn find<'a>(command: &'a clap::Command, path: &str) -> Option<&'a clap::Command> {
        path.split(' ')
            .try_fold(command, |command, name| command.find_subcommand(name))
    }

    fn check_tree(command: clap::Command, rows: &[Row]) {
        let command = attach(command, rows);
        let mut paths = Vec::new();
        leaves(&command, "", &mut paths);
        assert!(paths.len() > 20, "the walk found the commands: {paths:?}");
        let missing: Vec<&String> = paths
            .iter()
            .filter(|path| {
                let help = find(&command, path).and_then(|c| c.get_after_help());
                !help.is_some_and(|h| {
                    h.to_string().starts_with("Examples:\n  oxetcdctl")
                        || h.to_string()
                            .starts_with("Examples:\n  ETCDCTL_API=2 oxetcdctl")
                })
            })
            .collect();
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
        for (path, lines) in rows {
            assert!(
                find(&command, path).is_some(),
                "examples for no command: {path}"
            );
            assert!(!lines.is_empty(), "an empty row: {path}");
        }
    }

    #[test]
    fn every_v3_command_has_examples() {
        use clap::CommandFactory as _;
        check_tree(crate::cli::Cli::command(), V3);
    }

    #[test]
    fn every_v2_command_has_examples() {
        use clap::CommandFactory as _;
        check_tree(crate::v2::V2Cli::command(), V2);
    }

    #[test]
    fn the_help_page_shows_the_examples() {
        use clap::CommandFactory as _;
        let mut command = attach(crate::cli::Cli::command(), V3);
        let lease = command.find_subcommand_mut("lease");
        let grant = lease.and_then(|l| l.find_subcommand_mut("grant"));
        let help = match grant {
            Some(grant) => grant.render_long_help().to_string(),
            None => panic!("no lease grant command"),
        };
        assert!(
            help.contains("Examples:\n  oxetcdctl lease grant 60\n"),
            "{help}"
        );
    }

    #[test]
    fn example_words_leave_out_variables_and_redirections() {
        assert_eq!(
            invocation("ETCDCTL_API=2 oxetcdctl set /a 'b c' < file"),
            ["oxetcdctl", "set", "/a", "b c"]
        );
        assert_eq!(
            invocation("printf 'x y' | oxetcdctl txn -- \"a b\""),
            ["oxetcdctl", "txn", "--", "a b"]
        );
    }

    /// Each example, parsed by the command line it documents (the subcommand it is listed
    /// under must be the one it invokes).
    fn check_examples_parse(command: clap::Command, rows: &[Row], v2: bool) {
        let command = attach(command, rows);
        let mut parsed = 0;
        for (path, lines) in rows {
            for line in lines.iter() {
                let words = invocation(line);
                let matches = match command.clone().try_get_matches_from(&words) {
                    Ok(matches) => matches,
                    Err(e) => panic!("example {line:?} does not parse: {e}"),
                };
                let mut invoked = Vec::new();
                let mut at = &matches;
                while let Some((name, sub)) = at.subcommand() {
                    invoked.push(name);
                    at = sub;
                }
                // `auth enable` shows the `user add` that must come first.
                let shows_a_step_before = path.ends_with("auth enable") && invoked[0] == "user";
                if !shows_a_step_before {
                    assert_eq!(
                        invoked.join(" "),
                        *path,
                        "example {line:?} is listed under {path}"
                    );
                }
                if v2 {
                    use clap::FromArgMatches as _;
                    if let Err(e) = crate::v2::V2Cli::from_arg_matches(&matches) {
                        panic!("example {line:?}: {e}");
                    }
                } else {
                    use clap::FromArgMatches as _;
                    if let Err(e) = crate::cli::Cli::from_arg_matches(&matches) {
                        panic!("example {line:?}: {e}");
                    }
                }
                parsed += 1;
            }
        }
        assert!(parsed > rows.len(), "every row's examples were parsed");
    }

    #[test]
    fn v3_examples_parse() {
        use clap::CommandFactory as _;
        check_examples_parse(crate::cli::Cli::command(), V3, false);
    }

    #[test]
    fn v2_examples_parse() {
        use clap::CommandFactory as _;
        check_examples_parse(crate::v2::V2Cli::command(), V2, true);
    }

    #[test]
    fn a_bad_example_fails_to_parse() {
        use clap::CommandFactory as _;
        let words = invocation("oxetcdctl get greeting --no-such-flag");
        assert!(crate::cli::Cli::command()
            .try_get_matches_from(&words)
            .is_err());
    }
}
