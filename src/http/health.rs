//! The verdicts of `/health`, `/livez` and `/readyz`, as pure functions of what the member
//! reports (its alarms, whether it knows a leader, how a read went), so the rules are tested
//! without a server.
//!
//! `/health` is etcd 3.5's: `{"health":"true"|"false","reason":"..."}`, checked in this order:
//! an alarm not listed in `exclude` ("ALARM NOSPACE", "ALARM CORRUPT"), no leader unless
//! `serializable=true` ("RAFT NO LEADER"), then a one-key read, linearizable unless
//! `serializable=true` ("RANGE ERROR:<error>").
//! `/livez` and `/readyz` are etcd 3.6's (Kubernetes-style) checks: `ok`, or one `[+]`/`[-]`
//! line per check and a final "livez check failed"/"readyz check failed"; `?verbose` lists the
//! checks on success too. livez: `serializable_read`; readyz: `data_corruption`,
//! `serializable_read`, `linearizable_read`.
//!
//! Invariant: a healthy answer has an empty reason; an unhealthy one never does.

/// The query parameters `/health` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthQuery {
    /// `serializable=true`: skip the leader check and read locally.
    pub serializable: bool,
    /// `exclude=NOSPACE&exclude=CORRUPT`: alarms that do not make the member unhealthy.
    pub excluded_alarms: Vec<String>,
}

impl HealthQuery {
    /// Parses a URL query string (`a=b&c=d`, no percent-decoding needed for these values).
    pub fn parse(query: Option<&str>) -> HealthQuery {
        let mut out = HealthQuery::default();
        let mut serializable: Option<bool> = None;
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                // Go's `Query().Get` takes the first value.
                "serializable" => {
                    serializable.get_or_insert(value == "true");
                }
                "exclude" => out.excluded_alarms.push(value.to_string()),
                _ => {}
            }
        }
        out.serializable = serializable.unwrap_or(false);
        out
    }
}

/// The answer of `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    pub reason: String,
}

impl Health {
    fn ok() -> Health {
        Health {
            healthy: true,
            reason: String::new(),
        }
    }

    fn failed(reason: String) -> Health {
        debug_assert!(!reason.is_empty());
        Health {
            healthy: false,
            reason,
        }
    }

    /// The JSON body etcd 3.5 sends.
    pub fn json(&self) -> String {
        let body = serde_json::json!({
            "health": if self.healthy { "true" } else { "false" },
            "reason": self.reason,
        });
        body.to_string()
    }
}

/// The checks before the read: alarms (by etcd's alarm name) and the leader.
pub fn before_read(alarms: &[&str], leader_known: bool, query: &HealthQuery) -> Health {
    if let Some(alarm) = alarms
        .iter()
        .find(|a| !query.excluded_alarms.iter().any(|x| x == *a))
    {
        let reason = match *alarm {
            "NOSPACE" | "CORRUPT" => format!("ALARM {alarm}"),
            _ => "ALARM UNKNOWN".to_string(),
        };
        return Health::failed(reason);
    }
    if !query.serializable && !leader_known {
        return Health::failed("RAFT NO LEADER".into());
    }
    Health::ok()
}

/// The verdict after the read.
pub fn after_read(read: Result<(), String>) -> Health {
    match read {
        Ok(()) => Health::ok(),
        Err(e) => Health::failed(format!("RANGE ERROR:{e}")),
    }
}

/// One named check of `/livez` or `/readyz` and its outcome.
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
}

/// The body and whether all checks passed, in the Kubernetes health-check text format.
pub fn probe_report(kind: &str, checks: &[Check], verbose: bool) -> (bool, String) {
    let passed = checks.iter().all(|c| c.passed);
    if passed && !verbose {
        return (true, "ok".into());
    }
    let mut body = String::new();
    for c in checks {
        if c.passed {
            body.push_str(&format!("[+]{} ok\n", c.name));
        } else {
            body.push_str(&format!("[-]{} failed: reason withheld\n", c.name));
        }
    }
    if passed {
        body.push_str(&format!("{kind} check passed\n"));
    } else {
        body.push_str(&format!("{kind} check failed\n"));
    }
    (passed, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_serializable_and_every_exclude() {
        let q = HealthQuery::parse(Some("exclude=NOSPACE&serializable=true&exclude=CORRUPT"));
        assert!(q.serializable);
        assert_eq!(q.excluded_alarms, vec!["NOSPACE", "CORRUPT"]);
        assert_eq!(HealthQuery::parse(None), HealthQuery::default());
        assert!(!HealthQuery::parse(Some("serializable=1")).serializable);
    }

    #[test]
    fn health_checks_alarms_then_leader_then_the_read() {
        let linearizable = HealthQuery::default();
        let serializable = HealthQuery::parse(Some("serializable=true"));
        let cases: &[(&[&str], bool, &HealthQuery, Health)] = &[
            (&[], true, &linearizable, Health::ok()),
            (
                &["NOSPACE"],
                true,
                &linearizable,
                Health::failed("ALARM NOSPACE".into()),
            ),
            (
                &["CORRUPT"],
                false,
                &serializable,
                Health::failed("ALARM CORRUPT".into()),
            ),
            (
                &[],
                false,
                &linearizable,
                Health::failed("RAFT NO LEADER".into()),
            ),
            (&[], false, &serializable, Health::ok()),
        ];
        for (alarms, leader, query, want) in cases {
            assert_eq!(
                &before_read(alarms, *leader, query),
                want,
                "{alarms:?} {leader} {query:?}"
            );
        }
        let excluded = HealthQuery::parse(Some("exclude=NOSPACE"));
        assert_eq!(before_read(&["NOSPACE"], true, &excluded), Health::ok());
        assert_eq!(
            after_read(Err("etcdserver: request timed out".into())).json(),
            r#"{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}"#
        );
        assert_eq!(Health::ok().json(), r#"{"health":"true","reason":""}"#);
    }

    #[test]
    fn probes_say_ok_or_list_the_checks() {
        let good = [Check {
            name: "serializable_read",
            passed: true,
        }];
        assert_eq!(
            probe_report("livez", &good, false),
            (true, "ok".to_string())
        );
        assert_eq!(
            probe_report("livez", &good, true),
            (
                true,
                "[+]serializable_read ok\nlivez check passed\n".to_string()
            )
        );
        let bad = [
            Check {
                name: "serializable_read",
                passed: true,
            },
            Check {
                name: "linearizable_read",
                passed: false,
            },
        ];
        assert_eq!(
            probe_report("readyz", &bad, false),
            (
                false,
                "[+]serializable_read ok\n[-]linearizable_read failed: reason withheld\nreadyz check failed\n"
                    .to_string()
            )
        );
    }
}
