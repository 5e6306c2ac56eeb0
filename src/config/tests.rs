//! End-to-end tests of `Config::parse`, checked against the behaviour of the real etcd
//! 3.5.1 binary (texts and exit codes were observed on it).

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(list: &[&str], vars: &[(&str, &str)]) -> Config {
    match Config::parse(&args(list), &env(vars)) {
        Ok(Parsed::Run(c)) => *c,
        other => panic!("{list:?}: {other:?}"),
    }
}

fn fail(list: &[&str], vars: &[(&str, &str)]) -> ConfigError {
    match Config::parse(&args(list), &env(vars)) {
        Err(e) => e,
        Ok(other) => panic!("{list:?} parsed: {other:?}"),
    }
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// Defaults as `etcd --help` (3.5.1) prints them.
#[test]
fn defaults_match_etcd_help() {
    let c = Config::default();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.election_timeout_ms, 1000);
    assert_eq!(c.listen_peer_urls, vec![url("http://localhost:2380")]);
    assert_eq!(c.listen_client_urls, vec![url("http://localhost:2379")]);
    assert_eq!(c.max_snapshots, 5);
    assert_eq!(c.max_wals, 5);
    assert_eq!(c.quota_backend_bytes, 0);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.grpc_keepalive_min_time, Duration::from_secs(5));
    assert_eq!(c.grpc_keepalive_interval, Duration::from_secs(2 * 3600));
    assert_eq!(c.grpc_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(
        c.initial_advertise_peer_urls,
        vec![url("http://localhost:2380")]
    );
    assert_eq!(c.initial_cluster, "default=http://localhost:2380");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.advertise_client_urls, vec![url("http://localhost:2379")]);
    assert!(c.strict_reconfig_check);
    assert_eq!(c.auto_compaction, AutoCompaction::Off);
    assert!(!c.enable_v2);
    assert_eq!(c.client_tls, TlsFiles::default());
    assert_eq!(c.peer_tls, TlsFiles::default());
    assert_eq!(c.cors, Cors::Any);
    assert_eq!(c.auth_token, AuthTokenKind::Simple);
    assert_eq!(c.auth_token_ttl_s, 300);
    assert_eq!(c.bcrypt_cost, 10);
    assert_eq!(c.metrics, MetricsLevel::Basic);
    assert!(c.listen_metrics_urls.is_empty());
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(!c.experimental_enable_lease_checkpoint);
    assert_eq!(
        c.experimental_watch_progress_notify_interval,
        Duration::from_secs(600)
    );
    assert_eq!(
        c.experimental_warning_apply_duration,
        Duration::from_millis(100)
    );
    assert!(!c.force_new_cluster);
    assert!(c.flags_explicitly_set.is_empty());
    assert_eq!(
        c.warnings,
        vec![ConfigWarning::DataDirDefault {
            data_dir: "default.etcd".into()
        }]
    );
}

/// Every default in our table equals the one `etcd --help` (3.5.1) prints.
#[test]
fn table_defaults_match_etcd_help_text() {
    let etcd_help: &[(&str, &str)] = &[
        ("name", "default"),
        ("data-dir", "${name}.etcd"),
        ("wal-dir", ""),
        ("snapshot-count", "100000"),
        ("heartbeat-interval", "100"),
        ("election-timeout", "1000"),
        ("initial-election-tick-advance", "true"),
        ("listen-peer-urls", "http://localhost:2380"),
        ("listen-client-urls", "http://localhost:2379"),
        ("max-snapshots", "5"),
        ("max-wals", "5"),
        ("quota-backend-bytes", "0"),
        ("backend-bbolt-freelist-type", "map"),
        ("backend-batch-limit", "0"),
        ("max-txn-ops", "128"),
        ("max-request-bytes", "1572864"),
        ("grpc-keepalive-min-time", "5s"),
        ("grpc-keepalive-interval", "2h"),
        ("grpc-keepalive-timeout", "20s"),
        ("initial-advertise-peer-urls", "http://localhost:2380"),
        ("initial-cluster", "default=http://localhost:2380"),
        ("initial-cluster-state", "new"),
        ("initial-cluster-token", "etcd-cluster"),
        ("advertise-client-urls", "http://localhost:2379"),
        ("discovery-fallback", "proxy"),
        ("strict-reconfig-check", "true"),
        ("pre-vote", "true"),
        ("auto-compaction-retention", "0"),
        ("auto-compaction-mode", "periodic"),
        ("enable-v2", "false"),
        ("v2-deprecation", "not-yet"),
        ("client-cert-auth", "false"),
        ("self-signed-cert-validity", "1"),
        ("cors", "*"),
        ("host-whitelist", "*"),
        ("auth-token", "simple"),
        ("bcrypt-cost", "10"),
        ("auth-token-ttl", "300"),
        ("metrics", "basic"),
        ("listen-metrics-urls", ""),
        ("logger", "zap"),
        ("log-outputs", "default"),
        ("log-level", "info"),
        ("proxy", "off"),
        ("proxy-failure-wait", "5000"),
        ("proxy-refresh-interval", "30000"),
        ("proxy-dial-timeout", "1000"),
        ("proxy-write-timeout", "5000"),
        ("proxy-read-timeout", "0"),
        ("experimental-corrupt-check-time", "0s"),
        ("experimental-enable-lease-checkpoint", "false"),
        ("experimental-compaction-batch-limit", "1000"),
        ("experimental-watch-progress-notify-interval", "10m"),
        ("experimental-warning-apply-duration", "100ms"),
        ("experimental-txn-mode-write-with-shared-buffer", "true"),
        ("force-new-cluster", "false"),
        ("unsafe-no-fsync", "false"),
    ];
    for (name, default) in etcd_help {
        assert_eq!(flags::spec(name).default, *default, "{name}");
    }
}

#[test]
fn flag_syntaxes_reach_the_config() {
    let c = run(
        &[
            "-name=n1",
            "--data-dir",
            "/var/lib/x",
            "--snapshot-count=0x10",
            "-force-new-cluster",
            "--strict-reconfig-check=F",
            "--heartbeat-interval",
            "50",
            "--election-timeout=250",
            "--log-level",
            "debug",
            "--experimental-watch-progress-notify-interval=1m30s",
            "--quota-backend-bytes=-1",
        ],
        &[],
    );
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
    assert_eq!(c.snapshot_count, 16);
    assert!(c.force_new_cluster);
    assert!(!c.strict_reconfig_check);
    assert_eq!((c.heartbeat_interval_ms, c.election_timeout_ms), (50, 250));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(
        c.experimental_watch_progress_notify_interval,
        Duration::from_secs(90)
    );
    assert_eq!(c.limits().quota_backend_bytes, None);
    assert!(c.is_explicit("force-new-cluster"));
    assert!(!c.is_explicit("max-wals"));
    assert!(c.warnings.is_empty());
}

#[test]
fn env_variables_set_flags() {
    let c = run(
        &[],
        &[
            ("ETCD_NAME", "envname"),
            ("ETCD_FORCE_NEW_CLUSTER", "true"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://127.0.0.1:12379"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "5m"),
            ("ETCD_UNKNOWN_THING", "x"),
        ],
    );
    assert_eq!(c.name, "envname");
    assert_eq!(c.data_dir, PathBuf::from("envname.etcd"));
    assert!(c.force_new_cluster);
    assert_eq!(c.listen_client_urls, vec![url("http://127.0.0.1:12379")]);
    assert_eq!(
        c.auto_compaction,
        AutoCompaction::Periodic {
            retention: Duration::from_secs(300)
        }
    );
    assert!(c.warnings.contains(&ConfigWarning::UnrecognizedEnv {
        entry: "ETCD_UNKNOWN_THING=x".into()
    }));
}

#[test]
fn env_conflict_is_fatal_with_etcd_text() {
    let e = fail(&["--name", "bar"], &[("ETCD_NAME", "foo")]);
    assert_eq!(
        e,
        ConfigError::EnvConflict {
            key: "ETCD_NAME".into()
        }
    );
    assert_eq!(Config::exit_code_for(&e), 1);
    assert_eq!(e.to_string(), ENV_CONFLICT_MSG);
}

#[test]
fn bad_env_value_exits_one() {
    let e = fail(&[], &[("ETCD_ENABLE_V2", "maybe")]);
    assert_eq!(
        e.to_string(),
        r#"invalid value "maybe" for ETCD_ENABLE_V2: parse error"#
    );
    assert_eq!(Config::exit_code_for(&e), 1);
}

#[test]
fn unknown_flag_exits_two() {
    let e = fail(&["--bogus"], &[]);
    assert_eq!(e.to_string(), "flag provided but not defined: -bogus");
    assert_eq!(Config::exit_code_for(&e), 2);
    assert_eq!(
        Config::exit_code_for(&fail(&["--snapshot-count", "abc"], &[])),
        2
    );
}

#[test]
fn positional_argument_is_not_a_flag() {
    let e = fail(&["--name", "a", "extra"], &[]);
    assert_eq!(e.to_string(), "'extra' is not a valid flag");
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        fail(&["--", "--name", "x"], &[]).to_string(),
        "'--name' is not a valid flag"
    );
}

#[test]
fn help_and_version_outcomes() {
    for h in ["-h", "--help"] {
        match Config::parse(&args(&[h]), &[]).unwrap() {
            Parsed::Help(text) => assert!(text.contains("--listen-client-urls")),
            other => panic!("{other:?}"),
        }
    }
    // --version wins over the environment, which etcd reads only afterwards.
    match Config::parse(&args(&["--version"]), &env(&[("ETCD_NAME", "x")])).unwrap() {
        Parsed::Version(text) => assert!(text.starts_with("oxetcd Version:")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Config::parse(&args(&["--version=false"]), &[]).unwrap(),
        Parsed::Run(_)
    ));
    assert_eq!(
        fail(&["--version", "--bogus"], &[]).to_string(),
        "flag provided but not defined: -bogus"
    );
}

/// `--enable-v2` switches the v2 API on (it was refused while the v2 API was not served).
#[test]
fn enable_v2_is_read_from_flags_and_env() {
    assert!(run(&["--enable-v2"], &[]).enable_v2);
    assert!(run(&["--enable-v2=true"], &[]).enable_v2);
    assert!(run(&[], &[("ETCD_ENABLE_V2", "true")]).enable_v2);
    assert!(!run(&["--enable-v2=false"], &[]).enable_v2);
}

#[test]
fn unsupported_flags_and_values_exit_one() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--discovery", "https://d.example/x"], &[], "oxetcd: flag --discovery is not supported yet (discovery bootstrap is not implemented; use --initial-cluster)"),
        (&["--experimental-enable-v2v3", "/v2/"], &[], "oxetcd: flag --experimental-enable-v2v3 is not supported yet (serving the v2 API from the v3 store is not implemented (--enable-v2 serves it from the v2 store))"),
        (&["--experimental-enable-lease-checkpoint"], &[], "oxetcd: flag --experimental-enable-lease-checkpoint is not supported yet (lease checkpoints are not implemented; a new leader gives every lease its full TTL)"),
        (
            &["--log-outputs", "stderr,systemd/journal"],
            &[],
            "oxetcd: --log-outputs=stderr,systemd/journal is not supported yet (writing to the systemd journal directly is not implemented; under systemd, stderr goes to the journal)",
        ),
        (&["gateway", "start"], &[], "oxetcd: command \"gateway\" is not supported yet"),
    ];
    for (list, vars, text) in cases {
        let e = fail(list, vars);
        assert_eq!(e.to_string(), *text, "{list:?}");
        assert_eq!(e.exit_code(), 1, "{list:?}");
    }
    // Defaults of unsupported flags change nothing and are accepted.
    run(
        &[
            "--pre-vote=true",
            "--wal-dir=",
            "--client-cert-auth=false",
            "--enable-v2=false",
            "--listen-metrics-urls=",
            "--experimental-enable-lease-checkpoint=false",
            "--cors=*",
        ],
        &[],
    );
    run(&["--log-outputs", "stderr"], &[]);
}

#[test]
fn validation_errors_use_etcd_texts() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--heartbeat-interval", "100", "--election-timeout", "400"],
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (&["--heartbeat-interval", "0"], "--heartbeat-interval must be >0 (set to 0ms)"),
        (&["--election-timeout", "0"], "--election-timeout must be >0 (set to 0ms)"),
        (
            &["--election-timeout", "50001"],
            "--election-timeout[50001ms] is too long, and should be set less than 50000ms",
        ),
        (
            &["--listen-client-urls", "http://localhost:23792"],
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ),
        (
            &["--listen-peer-urls", "http://example.com:2380"],
            "expected IP in URL for binding (http://example.com:2380)",
        ),
        (
            &["--listen-client-urls", "http://:23796", "--advertise-client-urls", "http://127.0.0.1:2379"],
            "expected IP in URL for binding (http://:23796)",
        ),
        (
            &["--advertise-client-urls", "http://:2379"],
            r#"--advertise-client-urls "http://:2379" must be "host:port" (unexpected empty host (http://:2379))"#,
        ),
        (
            &["--initial-advertise-peer-urls", "http://:2380"],
            r#"--initial-advertise-peer-urls "http://:2380" must be "host:port" (unexpected empty host (http://:2380))"#,
        ),
        (&["--auto-compaction-mode", "bogus"], r#"unknown auto-compaction-mode "bogus""#),
        (
            &["--auto-compaction-retention", "-1"],
            r#"error parsing CompactionRetention: time: missing unit in duration "-1""#,
        ),
        (
            &["--auto-compaction-retention", "1.5"],
            r#"error parsing CompactionRetention: time: missing unit in duration "1.5""#,
        ),
        (&["--logger", "capnslog"], "--logger=capnslog is removed in v3.5"),
        (&["--logger", "abc"], r#"unknown logger option "abc""#),
        (&["--auth-token", "bogus"], "auth: invalid auth options"),
        (&["--auth-token", "jwt,sign-method=RS256,foo"], "auth: invalid auth options"),
        (&["--auth-token", "jwt,ttl=1m,ttl=2m"], "auth: invalid auth options"),
        (&["--auth-token", "simple,a=b=c"], "auth: invalid auth options"),
        (&["--grpc-keepalive-timeout", "-1s"], "--grpc-keepalive-timeout must not be negative (set to -1s)"),
    ];
    for (list, text) in cases {
        let e = fail(list, &[]);
        assert_eq!(e.to_string(), *text, "{list:?}");
        assert_eq!(e.exit_code(), 1, "{list:?}");
    }
}

#[test]
fn log_level_values() {
    for (raw, level) in [
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("panic", LogLevel::Error),
        ("fatal", LogLevel::Error),
    ] {
        assert_eq!(run(&["--log-level", raw], &[]).log_level, level);
    }
    let e = fail(&["--log-level", "bogus"], &[]);
    assert_eq!(e.exit_code(), 2);
    assert_eq!(LogLevel::Warn.to_tracing(), tracing::Level::WARN);
}

#[test]
fn auto_compaction_forms() {
    let ac = |mode: &str, retention: &str| {
        run(
            &[
                "--auto-compaction-mode",
                mode,
                "--auto-compaction-retention",
                retention,
            ],
            &[],
        )
        .auto_compaction
    };
    let hours = |h: u64| AutoCompaction::Periodic {
        retention: Duration::from_secs(h * 3600),
    };
    assert_eq!(ac("periodic", "1"), hours(1));
    assert_eq!(ac("periodic", "72"), hours(72));
    assert_eq!(
        ac("periodic", "90m"),
        AutoCompaction::Periodic {
            retention: Duration::from_secs(5400)
        }
    );
    assert_eq!(ac("periodic", "0"), AutoCompaction::Off);
    assert_eq!(ac("periodic", "0s"), AutoCompaction::Off);
    assert_eq!(
        ac("revision", "1000"),
        AutoCompaction::Revision {
            retention_revisions: 1000
        }
    );
    assert_eq!(ac("revision", "0"), AutoCompaction::Off);
    let e = fail(
        &[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "5m",
        ],
        &[],
    );
    assert!(matches!(e, ConfigError::CompactionRetention { .. }));
    assert!(matches!(
        fail(&["--auto-compaction-retention", "-5m"], &[]),
        ConfigError::CompactionRetention { .. }
    ));
}

#[test]
fn url_lists_are_sorted_and_empty_keeps_default() {
    let c = run(
        &[
            "--listen-client-urls",
            "http://[::1]:23796,http://127.0.0.1:23796",
            "--advertise-client-urls",
            "http://127.0.0.1:23796",
        ],
        &[],
    );
    let shown: Vec<String> = c.listen_client_urls.iter().map(Url::to_string).collect();
    assert_eq!(shown, ["http://127.0.0.1:23796", "http://[::1]:23796"]);
    assert_eq!(
        c.listen_client_urls[1].bind_addr(),
        Some("[::1]:23796".parse().unwrap())
    );
    let c = run(&["--listen-peer-urls", ""], &[]);
    assert_eq!(c.listen_peer_urls, vec![url("http://localhost:2380")]);
}

#[test]
fn cors_values() {
    assert_eq!(run(&["--cors", "*"], &[]).cors, Cors::Any);
    assert_eq!(run(&["--cors="], &[]).cors, Cors::Any);
    assert_eq!(
        run(
            &["--cors", "http://a.example:80,https://b.example:8443"],
            &[]
        )
        .cors,
        Cors::Origins(vec![
            url("http://a.example:80"),
            url("https://b.example:8443")
        ])
    );
    // etcd accepts "*" only as the whole value.
    assert_eq!(
        fail(&["--cors", "http://a.example:80,*"], &[]).exit_code(),
        2
    );
}

#[test]
fn unix_socket_urls_are_accepted_for_clients_peers_and_metrics() {
    let c = run(
        &[
            "--listen-client-urls",
            "unix://sock.example:2379,http://127.0.0.1:2379",
            "--advertise-client-urls",
            "unix://sock.example:2379",
            "--listen-metrics-urls",
            "unixs://m.example:2381",
        ],
        &[],
    );
    // Sorted by their text, as etcd keeps URL lists.
    assert_eq!(
        c.listen_client_urls,
        vec![
            url("http://127.0.0.1:2379"),
            url("unix://sock.example:2379")
        ]
    );
    assert_eq!(c.listen_metrics_urls, vec![url("unixs://m.example:2381")]);
    let c = run(
        &[
            "--name",
            "u1",
            "--listen-peer-urls",
            "unix://u1.example:2380",
            "--initial-advertise-peer-urls",
            "unix://u1.example:2380",
            "--initial-cluster",
            "u1=unix://u1.example:2380",
        ],
        &[],
    );
    assert_eq!(c.listen_peer_urls, vec![url("unix://u1.example:2380")]);
}

#[test]
fn host_whitelist_and_metrics_values() {
    assert!(
        run(&[], &[]).host_whitelist.is_empty(),
        "default '*': any host"
    );
    assert_eq!(
        run(&["--host-whitelist", "a.example,127.0.0.1"], &[]).host_whitelist,
        vec!["a.example".to_string(), "127.0.0.1".to_string()]
    );
    assert!(run(&["--host-whitelist", "a.example,*"], &[])
        .host_whitelist
        .is_empty());
    let c = run(
        &[
            "--metrics",
            "extensive",
            "--listen-metrics-urls",
            "http://127.0.0.1:2381,https://127.0.0.1:2382",
        ],
        &[],
    );
    assert_eq!(c.metrics, MetricsLevel::Extensive);
    assert_eq!(
        c.listen_metrics_urls,
        vec![url("http://127.0.0.1:2381"), url("https://127.0.0.1:2382")]
    );
}

/// Regression: these were accepted and then ignored (nothing reads them yet).
#[test]
fn flags_without_a_consumer_yet_are_refused_unless_default() {
    let cases: &[(&str, &str)] = &[(
        "--log-package-levels=etcdserver=DEBUG",
        "per-package log levels (capnslog) are gone since etcd 3.5; use --log-level",
    )];
    for (arg, why) in cases {
        let e = fail(&[arg], &[]);
        assert!(
            e.to_string()
                .ends_with(&format!("is not supported yet ({why})")),
            "{arg}: {e}"
        );
        assert_eq!(e.exit_code(), 1, "{arg}");
    }
    let c = run(
        &["--bcrypt-cost=12", "--auth-token-ttl=60", "--metrics=basic"],
        &[],
    );
    assert_eq!((c.bcrypt_cost, c.auth_token_ttl_s), (12, 60));
}

/// Every refused flag, set to a value other than etcd's default, stops startup with exit code 1
/// and a message that names the flag and what is missing.
#[test]
fn every_refused_flag_names_its_reason_and_exits_one() {
    for name in flags::UNSUPPORTED_FLAGS {
        let spec = flags::spec(name);
        let value = match spec.kind {
            Kind::Bool if goparse::parse_bool(spec.default) == Some(true) => "false",
            Kind::Bool | Kind::Ignored => "true",
            Kind::Uint | Kind::Int => "12345",
            Kind::Duration => "7s",
            Kind::Urls | Kind::Cors => "http://127.0.0.1:1",
            Kind::Choice(words) => words
                .iter()
                .find(|w| **w != spec.default)
                .copied()
                .unwrap_or(""),
            Kind::Str => "x",
        };
        let arg = format!("--{name}={value}");
        let e = fail(&[&arg], &[]);
        assert_eq!(
            e.to_string(),
            format!(
                "oxetcd: flag --{name} is not supported yet ({})",
                flags::unsupported_reason(name)
            ),
            "{arg}"
        );
        assert_eq!(e.exit_code(), 1, "{arg}");
    }
}

/// etcd 3.4's `--debug` turns on debug-level logging.
#[test]
fn debug_flag_of_etcd_34_means_debug_logging() {
    assert_eq!(run(&["--debug"], &[]).log_level, LogLevel::Debug);
    assert_eq!(run(&["--debug=false"], &[]).log_level, LogLevel::Info);
    assert_eq!(
        run(&[], &[("ETCD_DEBUG", "true")]).log_level,
        LogLevel::Debug
    );
}

/// Every flag printed by `etcd --help` of etcd 3.4.23 and 3.5.1 (checked in under
/// `src/config/testdata/`, regenerated by `scripts/flag_table.py`) is in the flag table.
#[test]
fn table_has_every_flag_of_etcd_34_and_35_help() {
    for (version, text) in HELP_TEXTS {
        let names = help_flag_names(text);
        assert!(
            names.len() > 70,
            "{version}: only {} flags found",
            names.len()
        );
        for name in names {
            assert!(
                flags::index_of(&name).is_some(),
                "--{name} of etcd {version} is missing from config/table.rs"
            );
        }
    }
}

const HELP_TEXTS: [(&str, &str); 2] = [
    ("3.4.23", include_str!("testdata/etcd-3.4.23-help.txt")),
    ("3.5.1", include_str!("testdata/etcd-3.5.1-help.txt")),
];

/// Flag names of a help text: lines of the form `  --name 'default'` or `  --name false`.
fn help_flag_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("  --"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// docs/compatibility.md has one row per flag of either help text, and each row's status
/// agrees with the code: "refused" rows are the refused flags, "accepted with warning" rows the
/// flags of `flags::NO_EFFECT_FLAGS`.
#[test]
fn compatibility_table_lists_every_flag_with_the_codes_status() {
    let doc = include_str!("../../docs/compatibility.md");
    let mut rows = std::collections::BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `--") else {
            continue;
        };
        let Some((name, cells)) = rest.split_once("` |") else {
            continue;
        };
        let status = cells.split('|').nth(2).unwrap_or("").trim().to_string();
        assert!(
            rows.insert(name.to_string(), status).is_none(),
            "--{name} twice"
        );
    }
    for (version, text) in HELP_TEXTS {
        for name in help_flag_names(text) {
            assert!(
                rows.contains_key(&name),
                "--{name} of etcd {version} not in the table"
            );
        }
    }
    for (name, status) in &rows {
        let refused = flags::UNSUPPORTED_FLAGS.contains(&name.as_str());
        let warned = flags::NO_EFFECT_FLAGS.iter().any(|(n, _)| n == name);
        assert_eq!(status.starts_with("refused"), refused, "--{name}: {status}");
        assert_eq!(
            status.starts_with("accepted with warning"),
            warned,
            "--{name}: {status}"
        );
    }
}

/// `--quota-backend-bytes`: 0 is etcd's default of 2 GiB, negative disables the quota, and a
/// positive value is the quota (enforced by the API layer and the NOSPACE alarm).
#[test]
fn quota_flag_values() {
    let c = run(&["--quota-backend-bytes", "9000000000"], &[]);
    assert_eq!(c.limits().quota_backend_bytes, Some(9_000_000_000));
    let c = run(&[], &[("ETCD_QUOTA_BACKEND_BYTES", "1024")]);
    assert_eq!(c.limits().quota_backend_bytes, Some(1024));
    let c = run(&["--quota-backend-bytes", "-1"], &[]);
    assert_eq!(c.limits().quota_backend_bytes, None);
    let c = run(&["--quota-backend-bytes", "0"], &[]);
    assert_eq!(c.limits().quota_backend_bytes, Some(2_147_483_648));
}

/// Storage-engine tuning of etcd's backend is accepted with a warning saying it has no effect.
#[test]
fn backend_tuning_flags_warn_that_they_have_no_effect() {
    let cases: &[(&str, &str)] = &[
        (
            "--backend-bbolt-freelist-type=array",
            "backend-bbolt-freelist-type",
        ),
        ("--backend-batch-interval=10ms", "backend-batch-interval"),
        ("--backend-batch-limit=100", "backend-batch-limit"),
        (
            "--experimental-txn-mode-write-with-shared-buffer=false",
            "experimental-txn-mode-write-with-shared-buffer",
        ),
        (
            "--experimental-bootstrap-defrag-threshold-megabytes=10",
            "experimental-bootstrap-defrag-threshold-megabytes",
        ),
    ];
    for (arg, name) in cases {
        let c = run(&[arg], &[]);
        let warned = c.warnings.iter().find_map(|w| match w {
            ConfigWarning::NoEffect { flag, .. } if flag == name => Some(w.to_string()),
            _ => None,
        });
        let Some(text) = warned else {
            panic!("{arg}: no warning in {:?}", c.warnings)
        };
        assert!(
            text.starts_with("flag has no effect in oxetcd; ignoring it flag=--"),
            "{text}"
        );
        assert!(text.contains(" reason="), "{text}");
    }
    let c = run(&[], &[("ETCD_BACKEND_BATCH_INTERVAL", "5ms")]);
    assert!(c.warnings.contains(&ConfigWarning::NoEffect {
        flag: "backend-batch-interval",
        value: "5ms".into(),
        why: "there is no backend commit batching; every raft entry is fsynced in the WAL",
    }));
    // Not set: no warning.
    assert!(!Config::default()
        .warnings
        .iter()
        .any(|w| matches!(w, ConfigWarning::NoEffect { .. })));
}

#[test]
fn limits_follow_flags() {
    let c = run(
        &[
            "--max-request-bytes",
            "1000",
            "--max-txn-ops",
            "7",
            "--election-timeout",
            "3000",
        ],
        &[],
    );
    let l = c.limits();
    assert_eq!(l.max_request_bytes, 1000);
    assert_eq!(l.grpc_max_recv_bytes, 1000 + 512 * 1024);
    assert_eq!(l.max_txn_ops, 7);
    assert_eq!(l.lease_ttl_min_s, 5);
    assert_eq!(l.request_timeout, Duration::from_secs(11));
}

// ---- initial cluster and bootstrap ----

fn peer_flags<'a>(name: &'a str, apurl: &'a str, cluster: &'a str) -> Vec<&'a str> {
    vec![
        "--name",
        name,
        "--initial-advertise-peer-urls",
        apurl,
        "--listen-peer-urls",
        apurl,
        "--initial-cluster",
        cluster,
    ]
}

#[test]
fn initial_cluster_defaults_to_name_and_advertised_urls() {
    let c = run(
        &[
            "--name",
            "n3",
            "--initial-advertise-peer-urls",
            "http://127.0.0.2:23806,http://127.0.0.1:23805",
        ],
        &[],
    );
    assert_eq!(
        c.initial_cluster,
        "n3=http://127.0.0.1:23805,n3=http://127.0.0.2:23806"
    );
    let b = c.bootstrap_cluster().unwrap();
    assert_eq!(b.local_member_id, 0xb943f78e167dcc06);
    assert_eq!(b.cluster_id, 0xd73afae13fc748ff);
    // The default name keeps the default cluster (and then fails to match, as in etcd).
    let c = run(
        &["--initial-advertise-peer-urls", "http://127.0.0.1:23805"],
        &[],
    );
    assert_eq!(c.initial_cluster, DEFAULT_INITIAL_CLUSTER);
    assert_eq!(
        c.bootstrap_cluster().unwrap_err().to_string(),
        "--initial-cluster has default=http://localhost:2380 but missing from \
         --initial-advertise-peer-urls=http://127.0.0.1:23805 (\"http://127.0.0.1:23805\"\
         (resolved from \"http://127.0.0.1:23805\") != \"http://localhost:2380\"\
         (resolved from \"http://localhost:2380\"))"
    );
}

#[test]
fn default_bootstrap_matches_etcd() {
    let b = Config::default().bootstrap_cluster().unwrap();
    assert_eq!(b.members.len(), 1);
    assert_eq!(b.members[0].name, "default");
    assert_eq!(b.local_member_id, b.members[0].id);
}

#[test]
fn three_member_bootstrap_ids() {
    let cluster = "n3=http://127.0.0.1:23805,n4=http://127.0.0.1:23806,n5=http://127.0.0.1:23807";
    let c = run(&peer_flags("n3", "http://127.0.0.1:23805", cluster), &[]);
    let b = c.bootstrap_cluster().unwrap();
    assert_eq!(b.local_member_id, 0x7d07b6b9bfeb346a);
    assert_eq!(b.cluster_id, 0xe2fc15a10162105f);
    assert_eq!(b.members.len(), 3);
    assert!(b.members.windows(2).all(|w| w[0].id < w[1].id));
    let names: Vec<String> = c
        .initial_cluster_members()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["n3", "n4", "n5"]);
}

#[test]
fn bootstrap_token_changes_ids() {
    let mut flags = peer_flags("n3", "http://127.0.0.1:23805", "n3=http://127.0.0.1:23805");
    flags.extend(["--initial-cluster-token", "tok-A"]);
    let b = run(&flags, &[]).bootstrap_cluster().unwrap();
    assert_eq!(b.local_member_id, 0x501e8c99b110c84c);
    assert_eq!(b.cluster_id, 0x15bda362da8201d7);
}

#[test]
fn bootstrap_errors_use_etcd_texts() {
    let err = |name: &str, apurl: &str, cluster: &str| {
        run(&peer_flags(name, apurl, cluster), &[])
            .bootstrap_cluster()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("n3", "http://127.0.0.1:23805", "n4=http://127.0.0.1:23805"),
        r#"couldn't find local name "n3" in the initial cluster configuration"#
    );
    assert_eq!(
        err("n3", "http://127.0.0.1:23805", ""),
        r#"couldn't find local name "n3" in the initial cluster configuration"#
    );
    assert_eq!(
        err("n3", "http://127.0.0.1:23805", "n3=http://127.0.0.1:23806"),
        "--initial-cluster has n3=http://127.0.0.1:23806 but missing from \
         --initial-advertise-peer-urls=http://127.0.0.1:23805 (\"http://127.0.0.1:23805\"\
         (resolved from \"http://127.0.0.1:23805\") != \"http://127.0.0.1:23806\"\
         (resolved from \"http://127.0.0.1:23806\"))"
    );
    assert_eq!(
        err(
            "n3",
            "http://127.0.0.1:23805",
            "n3=http://127.0.0.1:23805,n3=http://127.0.0.1:23805"
        ),
        "failed to resolve http://127.0.0.1:23805 to match \
         --initial-cluster=n3=http://127.0.0.1:23805,n3=http://127.0.0.1:23805 \
         (len([\"http://127.0.0.1:23805\"]) != len([\"http://127.0.0.1:23805\" \
         \"http://127.0.0.1:23805\"]))"
    );
    assert_eq!(
        err(
            "a",
            "http://127.0.0.1:2380",
            "a=http://127.0.0.1:2380,b=http://127.0.0.1:2380"
        ),
        "initial cluster a=http://127.0.0.1:2380,b=http://127.0.0.1:2380 has duplicate url"
    );
    assert_eq!(
        err("a", "http://127.0.0.1:2380", "bad"),
        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "
    );
    assert_eq!(
        err(
            "a",
            "http://127.0.0.1:2380,http://127.0.0.1:2381",
            "a=http://127.0.0.1:2380"
        ),
        "--initial-advertise-peer-urls has http://127.0.0.1:2381 but missing from \
         --initial-cluster=a=http://127.0.0.1:2380"
    );
}

#[test]
fn report_error_returns_exit_codes() {
    assert_eq!(
        report_error(&ConfigError::UnknownFlag { name: "x".into() }),
        2
    );
    assert_eq!(report_error(&ConfigError::HeartbeatZero), 1);
    assert_eq!(
        report_error(&ConfigError::EnvConflict {
            key: "ETCD_NAME".into()
        }),
        1
    );
}

/// `--max-concurrent-streams` (etcd 3.5.2+, a uint32; 3.5.1 lacks it) was missing: etcd's default is
/// math.MaxUint32 (unlimited); values beyond u32 are refused.
#[test]
fn max_concurrent_streams_is_a_u32() {
    assert_eq!(run(&[], &[]).max_concurrent_streams, u32::MAX);
    assert_eq!(
        run(&["--max-concurrent-streams", "100"], &[]).max_concurrent_streams,
        100
    );
    let e = fail(&["--max-concurrent-streams", "4294967296"], &[]);
    assert_eq!(
        e.to_string(),
        r#"invalid value "4294967296" for flag -max-concurrent-streams: value out of range"#
    );
    assert_eq!(e.exit_code(), 2);
}

/// The TLS file flags (and their `ETCD_*` variables) reach `Config`; https URLs are accepted.
#[test]
fn tls_flags_are_parsed_for_both_sides() {
    let c = run(
        &[
            "--listen-client-urls=https://127.0.0.1:2379,http://127.0.0.1:22379",
            "--advertise-client-urls=https://127.0.0.1:2379",
            "--listen-peer-urls=https://127.0.0.1:2380",
            "--initial-advertise-peer-urls=https://127.0.0.1:2380",
            "--initial-cluster=default=https://127.0.0.1:2380",
            "--cert-file=/s.pem",
            "--key-file=/s-key.pem",
            "--trusted-ca-file=/ca.pem",
            "--client-cert-auth",
            "--peer-cert-file=/p.pem",
        ],
        &[
            ("ETCD_PEER_KEY_FILE", "/p-key.pem"),
            ("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
        ],
    );
    assert_eq!(
        c.client_tls,
        TlsFiles {
            cert_file: Some("/s.pem".into()),
            key_file: Some("/s-key.pem".into()),
            trusted_ca_file: Some("/ca.pem".into()),
            client_cert_auth: true,
            auto_tls: false,
            allowed_cn: None,
            allowed_hostname: None,
            crl_file: None,
            cipher_suites: Vec::new(),
        }
    );
    assert_eq!(
        c.peer_tls,
        TlsFiles {
            cert_file: Some("/p.pem".into()),
            key_file: Some("/p-key.pem".into()),
            trusted_ca_file: None,
            client_cert_auth: true,
            auto_tls: false,
            allowed_cn: None,
            allowed_hostname: None,
            crl_file: None,
            cipher_suites: Vec::new(),
        }
    );
    assert!(c
        .listen_client_urls
        .contains(&url("https://127.0.0.1:2379")));
    assert!(c
        .listen_client_urls
        .contains(&url("http://127.0.0.1:22379")));
}

/// Parses with a configuration file served from memory.
fn parse_file(
    list: &[&str],
    env_list: &[(&str, &str)],
    path: &str,
    yaml: &str,
) -> Result<Parsed, ConfigError> {
    let env: Vec<(String, String)> = env_list
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let expected = std::path::PathBuf::from(path);
    let text = yaml.to_string();
    Config::parse_with(&args(list), &env, &move |p: &std::path::Path| {
        if p == expected {
            Ok(text.clone())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    })
}

fn run_file(list: &[&str], env_list: &[(&str, &str)], path: &str, yaml: &str) -> Config {
    match parse_file(list, env_list, path, yaml) {
        Ok(Parsed::Run(c)) => *c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_file_replaces_flags_and_environment() {
    let yaml = "name: infile\ndata-dir: /var/lib/infile\nsnapshot-count: 777\n\
                listen-client-urls: http://127.0.0.1:4001\n";
    let c = run_file(
        &[
            "--config-file",
            "/etc/e.yml",
            "--name",
            "ignored",
            "--snapshot-count",
            "5",
        ],
        &[("ETCD_NAME", "alsoignored"), ("ETCD_FOOBAR", "1")],
        "/etc/e.yml",
        yaml,
    );
    assert_eq!(c.name, "infile");
    assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/infile"));
    assert_eq!(c.snapshot_count, 777);
    assert_eq!(c.config_file, Some(std::path::PathBuf::from("/etc/e.yml")));
    // No "unrecognized environment variable" warning: the environment is not looked at.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A file keeps the default advertise URL where the flags would demand one.
    assert_eq!(
        c.advertise_client_urls[0].to_string(),
        "http://localhost:2379"
    );
    assert_eq!(c.listen_client_urls[0].to_string(), "http://127.0.0.1:4001");
    assert_eq!(c.initial_cluster, "infile=http://localhost:2380");
}

#[test]
fn config_file_from_environment() {
    let c = run_file(
        &[],
        &[("ETCD_CONFIG_FILE", "/e.yml"), ("ETCD_NAME", "x")],
        "/e.yml",
        "name: y\n",
    );
    assert_eq!(c.name, "y");
    // The flag wins over the variable, without a conflict error.
    let c = run_file(
        &["--config-file", "/f.yml"],
        &[("ETCD_CONFIG_FILE", "/e.yml")],
        "/f.yml",
        "name: z\n",
    );
    assert_eq!(c.name, "z");
}

#[test]
fn config_file_errors() {
    let e = parse_file(&["--config-file", "/nonexist.yml"], &[], "/other.yml", "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "open /nonexist.yml: no such file or directory"
    );
    assert_eq!(e.exit_code(), 1);
    // Refused exactly like the flag of the same name.
    let e = parse_file(
        &["--config-file", "/c.yml"],
        &[],
        "/c.yml",
        "unsafe-no-fsync: true\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "oxetcd: flag --unsafe-no-fsync is not supported yet (every write is fsynced; skipping fsync is not implemented)"
    );
    // The same validation as the flags.
    let e = parse_file(
        &["--config-file", "/c.yml"],
        &[],
        "/c.yml",
        "heartbeat-interval: 1000\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[1000ms]"
    );
    let e = parse_file(
        &["--config-file", "/c.yml"],
        &[],
        "/c.yml",
        "logger: capnslog\n",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "--logger=capnslog is removed in v3.5");
    // Command-line syntax is still checked first.
    let e = parse_file(&["--config-file", "/c.yml", "--bogus"], &[], "/c.yml", "").unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn config_file_tls_blocks() {
    let yaml = "client-transport-security:\n  cert-file: /s.pem\n  key-file: /s.key\n\
                \x20 client-cert-auth: true\n  trusted-ca-file: /ca.pem\n\
                peer-transport-security:\n  auto-tls: true\n";
    let c = run_file(&["--config-file", "/c.yml"], &[], "/c.yml", yaml);
    assert_eq!(c.client_tls.cert_file, Some("/s.pem".into()));
    assert_eq!(c.client_tls.key_file, Some("/s.key".into()));
    assert!(c.client_tls.client_cert_auth);
    assert_eq!(c.client_tls.trusted_ca_file, Some("/ca.pem".into()));
    assert!(c.peer_tls.auto_tls);
    assert_eq!(c.self_signed_cert_validity_years, 1);
}

/// `src/config/testdata/etcd.conf.yml` (etcd's sample configuration file, with oxetcd's
/// paths and ports) parses into the configuration it describes.
#[test]
fn sample_config_file_parses() {
    let yaml = include_str!("testdata/etcd.conf.yml");
    let c = run_file(&["--config-file", "/s.yml"], &[], "/s.yml", yaml);
    assert_eq!(c.name, "default");
    assert_eq!(c.snapshot_count, 10000);
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.election_timeout_ms, 1000);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert!(!c.strict_reconfig_check);
    assert_eq!(c.self_signed_cert_validity_years, 1);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.data_dir, std::path::PathBuf::from("default.etcd"));
    assert_eq!(c.initial_cluster, "default=http://localhost:2380");
    assert_eq!(
        c.auto_compaction,
        AutoCompaction::Periodic {
            retention: std::time::Duration::from_secs(3600)
        }
    );
}

#[test]
fn log_outputs_and_rotation() {
    use crate::logging::{LogOutput, RotationConfig};
    let c = run(&["--log-outputs", "stdout,default,/var/log/e.log"], &[]);
    assert_eq!(
        c.log_outputs,
        vec![
            LogOutput::Stdout,
            LogOutput::Stderr,
            LogOutput::File("/var/log/e.log".into())
        ]
    );
    assert_eq!(c.log_rotation, None);
    assert_eq!(run(&[], &[]).log_outputs, vec![LogOutput::Stderr]);
    // Without rotation the JSON is not even read, as in etcd.
    run(&["--log-rotation-config-json", "notjson"], &[]);
    let c = run(
        &[
            "--enable-log-rotation",
            "--log-outputs",
            "stderr,/var/log/e.log",
            "--log-rotation-config-json",
            r#"{"maxsize": 5, "maxbackups": 3, "maxage": 7, "localtime": true, "filename": "x", "other": 1}"#,
        ],
        &[],
    );
    assert_eq!(
        c.log_rotation,
        Some(RotationConfig {
            max_size_mb: 5,
            max_age_days: 7,
            max_backups: 3,
            local_time: true
        })
    );
    let c = run(&["--enable-log-rotation", "--log-outputs", "/l.log"], &[]);
    assert_eq!(
        c.log_rotation,
        Some(RotationConfig {
            max_size_mb: 100,
            max_age_days: 0,
            max_backups: 0,
            local_time: false
        })
    );
    // Two outputs, neither a file: etcd accepts it (there is nothing to rotate).
    run(
        &["--enable-log-rotation", "--log-outputs", "stderr,stdout"],
        &[],
    );
}

/// Texts observed on etcd 3.5.1 with the same flags.
#[test]
fn log_rotation_errors_match_etcd() {
    let single =
        "--log-outputs requires a single file path when --log-rotate-config-json is defined";
    for outputs in ["default", "stderr", "/a.log,/b.log"] {
        let e = fail(&["--enable-log-rotation", "--log-outputs", outputs], &[]);
        assert_eq!(e.to_string(), single, "{outputs}");
        assert_eq!(e.exit_code(), 1);
    }
    let with_json = |json: &str| {
        fail(
            &[
                "--enable-log-rotation",
                "--log-outputs",
                "/a.log",
                "--log-rotation-config-json",
                json,
            ],
            &[],
        )
        .to_string()
    };
    assert_eq!(
        with_json(r#"{"maxsize": "x"}"#),
        "invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.maxsize of type int"
    );
    assert_eq!(
        with_json(r#"{"localtime": 1}"#),
        "invalid log rotation config: json: cannot unmarshal number into Go struct field logRotationConfig.localtime of type bool"
    );
    assert!(with_json("notjson").starts_with("improperly formatted log rotation config: "));
    assert_eq!(
        with_json(r#"{"compress": true}"#),
        r#"oxetcd: --log-rotation-config-json={"compress": true} is not supported yet (compressing rotated log files is not implemented)"#
    );
}

#[test]
fn warning_apply_duration_is_read() {
    let c = run(&["--experimental-warning-apply-duration=1s"], &[]);
    assert_eq!(
        c.experimental_warning_apply_duration,
        std::time::Duration::from_secs(1)
    );
    assert_eq!(
        run(&[], &[]).experimental_warning_apply_duration,
        std::time::Duration::from_millis(100)
    );
}

#[test]
fn compaction_batch_limit_is_read() {
    let c = run(&["--experimental-compaction-batch-limit=500"], &[]);
    assert_eq!(c.experimental_compaction_batch_limit, 500);
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.to_string().contains("compaction-batch-limit")),
        "{:?}",
        c.warnings
    );
    assert_eq!(run(&[], &[]).experimental_compaction_batch_limit, 1000);
}
