use super::*;
use crate::history::{Op, Outcome, Record, Seen};

fn rec(client: u32, op: Op, invoke_ns: u64, complete_ns: u64, outcome: Outcome) -> Record {
    Record {
        client,
        op,
        invoke_ns,
        complete_ns,
        outcome,
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> Op {
    Op::Get { key: key.into() }
}

fn seen(value: &str, rev: i64) -> Option<Seen> {
    Some(Seen {
        value: value.into(),
        mod_revision: rev,
    })
}

fn put_ok(rev: i64, prev: Option<Seen>) -> Outcome {
    Outcome::Put {
        revision: rev,
        prev,
    }
}

fn got(rev: i64, kv: Option<Seen>) -> Outcome {
    Outcome::Got { revision: rev, kv }
}

fn h(records: Vec<Record>) -> History {
    History { records }
}

#[test]
fn sequential_history_passes() {
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(1, get("a"), 20, 30, got(2, seen("1", 2))),
        rec(0, put("a", "2"), 40, 50, put_ok(3, seen("1", 2))),
        rec(
            1,
            Op::Delete { key: "a".into() },
            60,
            70,
            Outcome::Deleted {
                revision: 4,
                deleted: 1,
            },
        ),
        rec(1, get("a"), 80, 90, got(4, None)),
        rec(
            0,
            Op::Delete { key: "a".into() },
            95,
            99,
            Outcome::Deleted {
                revision: 4,
                deleted: 0,
            },
        ),
    ]);
    let s = check(&hist, 1).unwrap();
    assert_eq!(s.max_revision, 4);
    assert_eq!(s.acked_writes, 3);
}

#[test]
fn stale_read_is_flagged() {
    // The put completed before the get started, yet the get saw the old state.
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, seen("1", 2))),
        rec(1, get("a"), 40, 50, got(2, seen("1", 2))),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::RealTime {
            earlier: 1,
            later: 2,
            ..
        })
    ));
    // Same, but the server lies about the header revision: caught by the replay.
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, seen("1", 2))),
        rec(1, get("a"), 40, 50, got(3, seen("1", 2))),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::NoLinearization { revision: 3, .. })
    ));
}

#[test]
fn duplicated_revision_is_flagged() {
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(1, put("b", "2"), 0, 10, put_ok(2, None)),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::DuplicateRevision {
            revision: 2,
            first: 0,
            second: 1
        })
    ));
}

#[test]
fn lost_write_is_flagged() {
    // The put of "2" was acknowledged at 3 but a later read sees "1" at revision 3.
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, seen("1", 2))),
        rec(1, get("a"), 40, 50, got(3, seen("1", 2))),
        rec(1, put("a", "3"), 60, 70, put_ok(4, seen("1", 2))),
    ]);
    assert!(check(&hist, 1).is_err());
}

#[test]
fn value_never_written_is_flagged() {
    let hist = h(vec![rec(0, get("a"), 0, 10, got(1, seen("ghost", 1)))]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::UnknownValue { record: 0, .. })
    ));
}

#[test]
fn failed_write_must_not_be_visible() {
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, Outcome::Failed),
        rec(1, get("a"), 20, 30, got(2, seen("1", 2))),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::WrongObservation { record: 1, .. })
    ));
}

#[test]
fn unknown_write_may_have_happened_or_not() {
    // Observed: pinned at its revision.
    let seen_it = h(vec![
        rec(0, put("a", "1"), 0, 10, Outcome::Unknown),
        rec(1, get("a"), 20, 30, got(2, seen("1", 2))),
    ]);
    assert_eq!(check(&seen_it, 1).unwrap().unknown_applied, 1);
    // Not observed and no revision needs it: it had no effect.
    let no_effect = h(vec![
        rec(0, put("a", "1"), 0, 10, Outcome::Unknown),
        rec(1, get("a"), 20, 30, got(1, None)),
    ]);
    assert_eq!(check(&no_effect, 1).unwrap().unknown_applied, 0);
    // A hole at revision 2 explained only by the unobserved unknown put to "b".
    let hole = h(vec![
        rec(0, put("b", "x"), 0, 10, Outcome::Unknown),
        rec(1, put("a", "1"), 20, 30, put_ok(3, None)),
        rec(1, get("a"), 40, 50, got(3, seen("1", 3))),
    ]);
    assert_eq!(check(&hole, 1).unwrap().unknown_applied, 1);
}

#[test]
fn unexplained_revision_hole_is_flagged() {
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(1, put("a", "2"), 20, 30, put_ok(4, seen("1", 2))),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::NoLinearization { revision: 3, .. })
    ));
}

#[test]
fn search_picks_the_candidate_that_fits() {
    // Two unknown writes could fill the hole at 3; only the cas (expected "1") explains the
    // read at 3 seeing key "a" unchanged... the delete of "b" does.
    let hist = h(vec![
        rec(0, put("b", "b1"), 0, 10, put_ok(2, None)),
        rec(
            1,
            Op::Cas {
                key: "b".into(),
                expected: "nope".into(),
                value: "b2".into(),
            },
            20,
            30,
            Outcome::Unknown,
        ),
        rec(2, Op::Delete { key: "b".into() }, 20, 30, Outcome::Unknown),
        rec(3, get("b"), 40, 50, got(3, None)),
    ]);
    let s = check(&hist, 1).unwrap();
    assert_eq!(s.unknown_applied, 1);
}

#[test]
fn cas_answers_are_checked() {
    let ok = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(
            1,
            Op::Cas {
                key: "a".into(),
                expected: "1".into(),
                value: "2".into(),
            },
            20,
            30,
            Outcome::Cas {
                revision: 3,
                succeeded: true,
                current: None,
            },
        ),
        rec(
            1,
            Op::Cas {
                key: "a".into(),
                expected: "1".into(),
                value: "3".into(),
            },
            40,
            50,
            Outcome::Cas {
                revision: 3,
                succeeded: false,
                current: seen("2", 3),
            },
        ),
    ]);
    assert!(check(&ok, 1).is_ok());
    // A cas that succeeded although the value did not match.
    let bad = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(
            1,
            Op::Cas {
                key: "a".into(),
                expected: "0".into(),
                value: "2".into(),
            },
            20,
            30,
            Outcome::Cas {
                revision: 3,
                succeeded: true,
                current: None,
            },
        ),
    ]);
    assert!(matches!(
        check(&bad, 1),
        Err(Violation::NoLinearization { revision: 3, .. })
    ));
}

#[test]
fn wrong_prev_kv_is_flagged() {
    let hist = h(vec![
        rec(0, put("a", "1"), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, None)),
    ]);
    assert!(check(&hist, 1).is_err());
}

fn lease_put(key: &str, value: &str, lease: i64) -> Op {
    Op::LeasePut {
        key: key.into(),
        value: value.into(),
        lease,
    }
}

/// The server's expiry of `lease` (holding `key`), possible from `invoke_ns` on.
fn expire(key: &str, lease: i64, invoke_ns: u64) -> Record {
    rec(
        9,
        Op::Expire {
            key: key.into(),
            lease,
        },
        invoke_ns,
        1_000,
        Outcome::Unknown,
    )
}

#[test]
fn a_lease_expiry_deletes_its_key_in_a_revision_of_its_own() {
    let hist = h(vec![
        rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
        rec(1, get("a"), 20, 30, got(2, seen("1", 2))),
        rec(1, get("a"), 60, 70, got(3, None)),
        rec(0, put("a", "2"), 80, 90, put_ok(4, None)),
        expire("a", 7, 40),
    ]);
    let summary = check(&hist, 1).expect("the expiry explains revision 3");
    assert_eq!((summary.unknown_applied, summary.expiries_applied), (1, 1));
}

#[test]
fn an_expiry_cannot_delete_a_key_a_plain_put_detached() {
    // The plain put at 3 detached "a" from lease 7; its expiry cannot delete "a" at 4.
    let hist = h(vec![
        rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, seen("1", 2))),
        rec(1, get("a"), 60, 70, got(4, None)),
        expire("a", 7, 40),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::NoLinearization { revision: 4, .. })
    ));
    // Re-attached by a later lease put, the key goes with the lease again.
    let hist = h(vec![
        rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
        rec(0, put("a", "2"), 20, 30, put_ok(3, seen("1", 2))),
        rec(0, lease_put("a", "3", 7), 32, 35, put_ok(4, seen("2", 3))),
        rec(1, get("a"), 60, 70, got(5, None)),
        expire("a", 7, 40),
    ]);
    assert_eq!(check(&hist, 1).map(|s| s.expiries_applied), Ok(1));
}

#[test]
fn a_key_gone_before_its_lease_could_expire_is_flagged() {
    // The lease lives until 100 at least; a read finished at 70 already missed the key.
    let hist = h(vec![
        rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
        rec(1, get("a"), 60, 70, got(3, None)),
        expire("a", 7, 100),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::NoLinearization { revision: 3, .. })
    ));
}

#[test]
fn no_put_attaches_a_key_to_an_expired_lease() {
    let hist = h(vec![
        rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
        rec(1, get("a"), 60, 70, got(3, None)),
        rec(0, lease_put("b", "2", 7), 80, 90, put_ok(4, None)),
        expire("a", 7, 40),
    ]);
    assert!(matches!(
        check(&hist, 1),
        Err(Violation::NoLinearization { .. })
    ));
}

#[test]
fn a_watched_change_decides_which_unknown_write_fills_a_hole() {
    let history = |expire_from: u64| {
        h(vec![
            rec(0, lease_put("a", "1", 7), 0, 10, put_ok(2, None)),
            rec(1, put("b", "x"), 20, 30, Outcome::Unknown),
            rec(2, get("c"), 60, 70, got(3, None)),
            expire("a", 7, expire_from),
        ])
    };
    let deleted_a: BTreeMap<i64, Change> = [(
        3,
        Change {
            key: "a".into(),
            value: None,
        },
    )]
    .into();
    // Unwatched, the unknown put of "b" explains revision 3 and the early expiry passes.
    assert!(check(&history(100), 1).is_ok());
    // Watched, revision 3 deleted "a": only the expiry can have, and not before 100.
    let early = check_with_changes(&history(100), 1, &deleted_a);
    assert!(
        matches!(&early, Err(Violation::NoLinearization { revision: 3, detail }) if detail.contains("a watcher saw")),
        "{early:?}"
    );
    let on_time = check_with_changes(&history(40), 1, &deleted_a);
    assert_eq!(on_time.map(|s| s.expiries_applied), Ok(1));
    // A watched put pins its writer just the same.
    let put_b: BTreeMap<i64, Change> = [(
        3,
        Change {
            key: "b".into(),
            value: Some("x".into()),
        },
    )]
    .into();
    assert_eq!(
        check_with_changes(&history(40), 1, &put_b).map(|s| s.expiries_applied),
        Ok(0)
    );
}

fn delete(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

fn unknown(client: u32, op: Op) -> Record {
    rec(client, op, 50, 1_000, Outcome::Unknown)
}

/// Three acknowledged puts, then `holes` revisions only unknown writes can fill: 30 unknown
/// puts of six other keys, one unknown deletion of each of the nine keys, and final reads at
/// the last revision that find all nine gone. The shape of a run whose watcher stopped before
/// its last writes: a search taking the candidates in order fills the early holes with puts
/// that no deletion is left to undo, and learns it only at the last revision.
fn unwatched_tail(holes: i64) -> History {
    let mut records = vec![
        rec(0, put("a", "a0"), 0, 10, put_ok(2, None)),
        rec(0, put("b", "b0"), 11, 20, put_ok(3, None)),
        rec(0, put("c", "c0"), 21, 30, put_ok(4, None)),
    ];
    let keys = ["a", "b", "c", "p0", "p1", "p2", "p3", "p4", "p5"];
    for n in 0..30 {
        records.push(unknown(1, put(keys[3 + n % 6], &format!("u{n}"))));
    }
    for key in keys {
        records.push(unknown(2, delete(key)));
    }
    for key in keys {
        records.push(rec(3, get(key), 2_000, 2_010, got(4 + holes, None)));
    }
    h(records)
}

#[test]
fn a_tail_of_unwatched_holes_is_searched_in_few_steps() {
    // Nine holes: three puts of distinct keys and the six deletions that leave every key
    // gone. Without the lookahead and the merging of interchangeable puts this exhausted the
    // search budget.
    let summary = check(&unwatched_tail(9), 1).expect("three puts and six deletions fit");
    assert_eq!(summary.unknown_applied, 9);
    assert!(summary.search_steps < 1_000, "{summary:?}");
}

#[test]
fn deletions_the_holes_left_cannot_hold_are_flagged() {
    // Two holes for three deletions the final reads need.
    let got = check(&unwatched_tail(2), 1);
    assert!(
        matches!(&got, Err(Violation::NoLinearization { detail, .. }) if detail.contains("must be deleted")),
        "{got:?}"
    );
}

#[test]
fn a_value_something_tells_apart_is_not_merged_with_its_twins() {
    // Two unknown puts of "k" fill revisions 3 and 4; "B" (recorded first) must take 4.
    let history = |then: Record| {
        h(vec![
            rec(0, put("x", "x0"), 0, 10, put_ok(2, None)),
            unknown(1, put("k", "B")),
            unknown(2, put("k", "A")),
            then,
        ])
    };
    // A watcher saw "B" put at 4.
    let watched: BTreeMap<i64, Change> = [(
        4,
        Change {
            key: "k".into(),
            value: Some("B".into()),
        },
    )]
    .into();
    let tail = rec(0, put("y", "y0"), 2_000, 2_010, put_ok(5, None));
    let got = check_with_changes(&history(tail), 1, &watched);
    assert_eq!(got.map(|s| s.unknown_applied), Ok(2));
    // A compare at 5 succeeded on "B".
    let cas = rec(
        3,
        Op::Cas {
            key: "k".into(),
            expected: "B".into(),
            value: "C".into(),
        },
        2_000,
        2_010,
        Outcome::Cas {
            revision: 5,
            succeeded: true,
            current: None,
        },
    );
    assert_eq!(check(&history(cas), 1).map(|s| s.unknown_applied), Ok(2));
}
