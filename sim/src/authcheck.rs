//! The auth checker: were the requests that got a permission verdict (allowed, or refused with
//! "etcdserver: permission denied") answered by an auth state that could have been in force
//! while they ran?
//!
//! The auth state is a small set of boolean facts (auth enabled, a role holds a permission, a
//! user holds a role, a user's password is the second of two), changed one at a time by one
//! administrator, so the changes are ordered. A change is in force from some instant inside its
//! window: from when it was asked for until its answer, or, when the answer was lost, until a
//! linearizable read of the fact showed whether it took effect. A change whose effect was never
//! learned leaves both values possible from its start on.
//!
//! A request is checked against every value each fact could have had at some instant of the
//! request's own window (facts independently: this can accept a combination that never existed
//! at one instant, never reject a correct answer). "Allowed" needs a possible state that
//! allows; "refused" needs one that refuses. A successful Authenticate needs auth possibly
//! enabled and the password possibly the one given.
//!
//! Invariant: only answers that decide on permissions are checked; timeouts, stale-token and
//! invalid-token answers (the client authenticates again) carry no verdict.

/// One change of one fact.
#[derive(Clone, Debug)]
pub struct Change {
    pub fact: usize,
    /// The value the change sets.
    pub to: bool,
    pub start_ns: u64,
    /// When the change was known to be in force or not (its answer, or the read-back).
    pub end_ns: u64,
    /// Whether it took effect; `None`: never learned (both values possible from `start_ns`).
    pub applied: Option<bool>,
}

/// What a request needs from the auth state to be allowed: auth disabled, or one of `grants`
/// (a role the user holds that holds a permission covering the request).
#[derive(Clone, Debug)]
pub struct Need {
    pub enabled: usize,
    /// (user-holds-role fact, role-holds-permission fact) pairs, any one of which allows.
    pub grants: Vec<(usize, usize)>,
}

/// A checked answer.
#[derive(Clone, Debug)]
pub enum Verdict {
    Allowed(Need),
    Refused(Need),
    /// Authenticate succeeded: auth was enabled and `password` (a fact) had `value`.
    LoggedIn {
        enabled: usize,
        password: usize,
        value: bool,
    },
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub what: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub verdict: Verdict,
}

/// Values fact `fact` could have at some instant in `[start, end]`: (can be true, can be false).
pub fn possible(
    initial: &[bool],
    changes: &[Change],
    fact: usize,
    start: u64,
    end: u64,
) -> (bool, bool) {
    let mut now = (initial[fact], !initial[fact]);
    let mut seen = (false, false);
    let with = |set: (bool, bool), v: bool| (set.0 || v, set.1 || !v);
    let after = |now: (bool, bool), c: &Change| match c.applied {
        Some(true) => with((false, false), c.to),
        Some(false) => now,
        None => with(now, c.to),
    };
    for c in changes.iter().filter(|c| c.fact == fact) {
        let end_of_change = if c.applied.is_none() {
            u64::MAX
        } else {
            c.end_ns
        };
        if end_of_change < start {
            now = after(now, c);
        } else if c.start_ns <= end {
            // In force at some instant of the request, or not yet: both possible.
            seen = (seen.0 || now.0, seen.1 || now.1);
            if c.applied != Some(false) {
                seen = with(seen, c.to);
            }
            now = after(now, c);
        } else {
            break;
        }
    }
    (seen.0 || now.0, seen.1 || now.1)
}

/// Checks every answer; the first impossible one is the error.
pub fn check(initial: &[bool], changes: &[Change], answers: &[Answer]) -> Result<(), String> {
    for c in changes {
        if c.fact >= initial.len() {
            return Err(format!("change of unknown fact {}", c.fact));
        }
    }
    let can = |fact: usize, a: &Answer| possible(initial, changes, fact, a.start_ns, a.end_ns);
    for a in answers {
        let ok = match &a.verdict {
            Verdict::Allowed(need) => {
                can(need.enabled, a).1
                    || need
                        .grants
                        .iter()
                        .any(|&(role, perm)| can(role, a).0 && can(perm, a).0)
            }
            Verdict::Refused(need) => {
                can(need.enabled, a).0
                    && need
                        .grants
                        .iter()
                        .all(|&(role, perm)| can(role, a).1 || can(perm, a).1)
            }
            Verdict::LoggedIn {
                enabled,
                password,
                value,
            } => {
                let p = can(*password, a);
                can(*enabled, a).0 && if *value { p.0 } else { p.1 }
            }
        };
        if !ok {
            return Err(format!(
                "{} during [{} ms, {} ms] was {:?}, which no auth state in force then gives; changes overlapping or before it: {:?}",
                a.what,
                a.start_ns / 1_000_000,
                a.end_ns / 1_000_000,
                a.verdict,
                changes
                    .iter()
                    .filter(|c| c.start_ns <= a.end_ns)
                    .map(|c| (c.fact, c.to, c.start_ns / 1_000_000, c.end_ns / 1_000_000, c.applied))
                    .collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENABLED: usize = 0;
    const ROLE: usize = 1;
    const PERM: usize = 2;

    fn need() -> Need {
        Need {
            enabled: ENABLED,
            grants: vec![(ROLE, PERM)],
        }
    }

    fn answer(start_ms: u64, end_ms: u64, verdict: Verdict) -> Answer {
        Answer {
            what: "get /a/x".into(),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            verdict,
        }
    }

    fn revoke(start_ms: u64, end_ms: u64, applied: Option<bool>) -> Change {
        Change {
            fact: PERM,
            to: false,
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            applied,
        }
    }

    #[test]
    fn a_read_allowed_after_a_revocation_answered_is_caught() {
        let initial = [true, true, true];
        let changes = [revoke(100, 110, Some(true))];
        let before = answer(50, 90, Verdict::Allowed(need()));
        let during = answer(105, 120, Verdict::Allowed(need()));
        let after = answer(111, 130, Verdict::Allowed(need()));
        assert!(check(&initial, &changes, &[before.clone(), during]).is_ok());
        let err = check(&initial, &changes, &[before, after]).unwrap_err();
        assert!(err.contains("get /a/x"), "{err}");
    }

    #[test]
    fn a_refusal_needs_a_state_that_refuses() {
        let initial = [true, true, true];
        assert!(check(&initial, &[], &[answer(0, 10, Verdict::Refused(need()))]).is_err());
        let changes = [revoke(100, 110, Some(true))];
        assert!(check(
            &initial,
            &changes,
            &[answer(0, 100, Verdict::Refused(need()))]
        )
        .is_ok());
        assert!(check(
            &initial,
            &changes,
            &[answer(0, 99, Verdict::Refused(need()))]
        )
        .is_err());
        // A revocation that did not take effect refuses nothing.
        let failed = [revoke(100, 110, Some(false))];
        assert!(check(
            &initial,
            &failed,
            &[answer(105, 200, Verdict::Refused(need()))]
        )
        .is_err());
        // Auth disabled allows everything.
        let off = [false, false, false];
        assert!(check(&off, &[], &[answer(0, 10, Verdict::Refused(need()))]).is_err());
        assert!(check(&off, &[], &[answer(0, 10, Verdict::Allowed(need()))]).is_ok());
    }

    #[test]
    fn a_change_never_learned_leaves_both_values_possible() {
        let initial = [true, true, true];
        let lost = [revoke(100, 110, None)];
        assert!(check(
            &initial,
            &lost,
            &[answer(500, 600, Verdict::Allowed(need()))]
        )
        .is_ok());
        assert!(check(
            &initial,
            &lost,
            &[answer(500, 600, Verdict::Refused(need()))]
        )
        .is_ok());
        assert!(check(&initial, &lost, &[answer(0, 90, Verdict::Refused(need()))]).is_err());
    }

    #[test]
    fn a_login_needs_the_password_possibly_in_force() {
        let initial = [true, false];
        let change = |s: u64, e: u64| Change {
            fact: 1,
            to: true,
            start_ns: s * 1_000_000,
            end_ns: e * 1_000_000,
            applied: Some(true),
        };
        let login = |s: u64, e: u64, value: bool| {
            answer(
                s,
                e,
                Verdict::LoggedIn {
                    enabled: 0,
                    password: 1,
                    value,
                },
            )
        };
        let changes = [change(100, 110)];
        assert!(check(&initial, &changes, &[login(0, 50, false)]).is_ok());
        assert!(check(&initial, &changes, &[login(0, 50, true)]).is_err());
        assert!(check(&initial, &changes, &[login(120, 130, false)]).is_err());
        assert!(check(&initial, &changes, &[login(105, 130, false)]).is_ok());
        assert!(check(&[false, false], &[], &[login(0, 10, false)]).is_err());
    }
}
