//! State machine tests: revision rules across command kinds, lease bookkeeping, validation,
//! encodings, and determinism (same commands, same bytes; snapshot + replay = straight replay).

use proptest::prelude::*;

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{Compare, RequestOp};

fn put(key: &str, value: &str, lease: i64) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    })
}

fn del(key: &str, range_end: &str) -> Command {
    Command::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    })
}

fn compact(revision: i64) -> Command {
    Command::Compact(CompactionRequest {
        revision,
        physical: false,
    })
}

fn put_op(key: &str, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn del_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

/// A txn on `exists(key)`: success if the key exists.
fn txn_if_exists(key: &str, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Command {
    let compare = Compare {
        key: key.into(),
        target: CompareTarget::Create as i32,
        result: CompareResult::Greater as i32,
        target_union: Some(TargetUnion::CreateRevision(0)),
        ..Default::default()
    };
    Command::Txn(TxnRequest {
        compare: vec![compare],
        success,
        failure,
    })
}

fn lease_keys(state: &State, id: i64) -> Vec<String> {
    state
        .leases
        .keys(id)
        .unwrap_or_default()
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

#[test]
fn revision_rules_across_commands() {
    // (command, revision after it, succeeded, events)
    let steps: Vec<(Command, i64, bool, usize)> = vec![
        (Command::LeaseGrant { id: 1, ttl: 10 }, 1, true, 0),
        (put("a", "1", 0), 2, true, 1),
        (put("a", "1", 0), 3, true, 1),
        (del("missing", ""), 3, true, 0),
        (
            txn_if_exists("missing", vec![put_op("x", 0)], vec![]),
            3,
            true,
            0,
        ),
        (
            txn_if_exists("a", vec![put_op("x", 0), put_op("y", 0)], vec![]),
            4,
            true,
            2,
        ),
        (compact(3), 4, true, 0),
        (put("b", "1", 99), 4, false, 0),
        (Command::LeaseRevoke { id: 1 }, 4, true, 0),
        (Command::LeaseGrant { id: 2, ttl: 10 }, 4, true, 0),
        (put("l1", "1", 2), 5, true, 1),
        (put("l2", "1", 2), 6, true, 1),
        (Command::LeaseRevoke { id: 2 }, 7, true, 2),
        (Command::LeaseRevoke { id: 2 }, 7, false, 0),
        (del("\0", "\0"), 8, true, 3),
    ];
    let mut state = State::new();
    for (i, (cmd, revision, ok, events)) in steps.into_iter().enumerate() {
        let applied = state.apply(&cmd);
        assert_eq!(applied.revision, revision, "step {i}: {cmd:?}");
        assert_eq!(applied.result.is_ok(), ok, "step {i}: {:?}", applied.result);
        assert_eq!(applied.events.len(), events, "step {i}");
        state.check().unwrap();
    }
}

#[test]
fn lease_lifecycle() {
    let mut state = State::new();
    let granted = state.apply(&Command::LeaseGrant { id: 7, ttl: 30 });
    let Ok(Outcome::LeaseGrant(response)) = granted.result else {
        panic!("{granted:?}")
    };
    assert_eq!(
        (response.id, response.ttl, response.header.unwrap().revision),
        (7, 30, 1)
    );
    state
        .apply(&Command::LeaseGrant { id: 8, ttl: 30 })
        .result
        .unwrap();
    state.apply(&put("a", "1", 7)).result.unwrap();
    state.apply(&put("b", "1", 7)).result.unwrap();
    state.apply(&put("c", "1", 8)).result.unwrap();
    assert_eq!(lease_keys(&state, 7), ["a", "b"]);
    // Moving a key to another lease, dropping a lease by a plain put, deleting a leased key.
    state.apply(&put("b", "2", 8)).result.unwrap();
    assert_eq!(
        (lease_keys(&state, 7), lease_keys(&state, 8)),
        (vec!["a".to_string()], vec!["b".into(), "c".into()])
    );
    state.apply(&put("c", "2", 0)).result.unwrap();
    assert_eq!(lease_keys(&state, 8), ["b"]);
    state.apply(&del("a", "")).result.unwrap();
    assert!(lease_keys(&state, 7).is_empty());
    // ignore_lease keeps the attachment.
    let keep = PutRequest {
        key: b"b".to_vec(),
        value: b"3".to_vec(),
        ignore_lease: true,
        ..Default::default()
    };
    state.apply(&Command::Put(keep)).result.unwrap();
    assert_eq!(lease_keys(&state, 8), ["b"]);
    state.check().unwrap();
    // Revoke deletes the attached keys in one revision and forgets the lease.
    state.apply(&put("d", "1", 8)).result.unwrap();
    let before = state.kv.current_revision();
    let revoked = state.apply(&Command::LeaseRevoke { id: 8 });
    let Ok(Outcome::LeaseRevoke(response)) = &revoked.result else {
        panic!("{revoked:?}")
    };
    assert_eq!(response.header.unwrap().revision, before + 1);
    let deleted: Vec<&[u8]> = revoked
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().key.as_slice())
        .collect();
    assert_eq!(deleted, vec![&b"b"[..], &b"d"[..]]);
    assert!(revoked
        .events
        .iter()
        .all(|e| e.kv.as_ref().unwrap().mod_revision == before + 1));
    assert!(state.kv.get(b"b").is_none() && state.kv.get(b"c").is_some());
    assert!(!state.leases.contains(8));
    state.check().unwrap();
}

/// A leader's expiry applies only from an entry of the term it was decided in: an entry of a
/// later term (the expiry loop's list outlived the term; the new term restarted the deadlines
/// and may have renewed the lease) changes nothing, on every member alike.
#[test]
fn a_lease_expiry_applies_only_in_the_term_that_decided_it() {
    let mut state = State::new();
    let root = RequestHeader::default();
    state
        .apply(&Command::LeaseGrant { id: 8, ttl: 4 })
        .result
        .unwrap();
    state.apply(&put("held", "1", 8)).result.unwrap();
    let before = state.kv.current_revision();
    let stale = state.apply_entry(
        EntryId { index: 9, term: 44 },
        &root,
        &Command::LeaseExpire { id: 8, term: 34 },
    );
    assert_eq!(
        stale.result,
        Err(KvError::StaleLeaseExpiry {
            id: 8,
            decided: 34,
            entry: 44
        })
    );
    assert!(stale.events.is_empty());
    assert_eq!(state.kv.current_revision(), before);
    assert!(state.leases.contains(8) && state.kv.get(b"held").is_some());
    let expired = state.apply_entry(
        EntryId {
            index: 10,
            term: 44,
        },
        &root,
        &Command::LeaseExpire { id: 8, term: 44 },
    );
    assert!(
        matches!(expired.result, Ok(Outcome::LeaseRevoke(_))),
        "{expired:?}"
    );
    assert_eq!(expired.events.len(), 1);
    assert!(!state.leases.contains(8) && state.kv.get(b"held").is_none());
    state.check().unwrap();
}

/// The planted bug the test above catches: the stale expiry applies.
#[cfg(feature = "canary")]
#[test]
fn the_planted_stale_lease_expiry_is_caught() {
    crate::canary::set(Some(crate::canary::Canary::StaleLeaseExpiryApplied));
    let caught = std::panic::catch_unwind(a_lease_expiry_applies_only_in_the_term_that_decided_it);
    crate::canary::set(None);
    assert!(caught.is_err(), "the planted bug went unnoticed");
}

#[test]
fn lease_errors() {
    let mut state = State::new();
    state
        .apply(&Command::LeaseGrant { id: 7, ttl: 30 })
        .result
        .unwrap();
    let cases: Vec<(Command, KvError, &str)> = vec![
        (
            Command::LeaseGrant { id: 7, ttl: 5 },
            KvError::LeaseExists { id: 7 },
            "etcdserver: lease already exists",
        ),
        (
            Command::LeaseGrant {
                id: 9,
                ttl: 9_000_000_001,
            },
            KvError::LeaseTtlTooLarge {
                ttl_seconds: 9_000_000_001,
            },
            "etcdserver: too large lease TTL",
        ),
        (
            Command::LeaseGrant { id: 0, ttl: 5 },
            KvError::LeaseNotFound { id: 0 },
            "etcdserver: requested lease not found",
        ),
        (
            Command::LeaseRevoke { id: 3 },
            KvError::LeaseNotFound { id: 3 },
            "etcdserver: requested lease not found",
        ),
        (
            put("k", "v", 3),
            KvError::LeaseNotFound { id: 3 },
            "etcdserver: requested lease not found",
        ),
        (
            txn_if_exists("k", vec![], vec![put_op("x", 0), put_op("y", 3)]),
            KvError::LeaseNotFound { id: 3 },
            "etcdserver: requested lease not found",
        ),
    ];
    for (cmd, want, text) in cases {
        let before = state.clone();
        let applied = state.apply(&cmd);
        let err = applied.result.unwrap_err();
        assert_eq!((&err, err.etcd_message()), (&want, text), "{cmd:?}");
        assert!(applied.events.is_empty());
        assert_eq!(state, before, "{cmd:?} changed the state");
    }
}

/// A txn that puts a key with a lease and deletes it again in the same revision (sibling nested
/// txns, which etcd accepts) must leave no attachment behind.
#[test]
fn put_and_delete_in_one_txn_leaves_no_attachment() {
    let mut state = State::new();
    state
        .apply(&Command::LeaseGrant { id: 1, ttl: 10 })
        .result
        .unwrap();
    state
        .apply(&Command::LeaseGrant { id: 2, ttl: 10 })
        .result
        .unwrap();
    state.apply(&put("k", "v", 1)).result.unwrap();
    let nested = |ops| RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            compare: vec![],
            success: ops,
            failure: vec![],
        })),
    };
    let txn = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![nested(vec![put_op("k", 2)]), nested(vec![del_op("k")])],
        failure: vec![],
    });
    state.apply(&txn).result.unwrap();
    assert!(state.kv.get(b"k").is_none());
    assert!(lease_keys(&state, 1).is_empty() && lease_keys(&state, 2).is_empty());
    state.check().unwrap();
}

#[test]
fn validation_before_proposing() {
    let many = TxnRequest {
        success: (0..5).map(|i| put_op(&format!("k{i}"), 0)).collect(),
        ..Default::default()
    };
    let cases: Vec<(Command, Result<(), KvError>)> = vec![
        (put("", "v", 0), Err(KvError::EmptyKey)),
        (del("", ""), Err(KvError::EmptyKey)),
        (
            Command::Txn(many.clone()),
            Err(KvError::TooManyOps { ops: 5, ops_max: 4 }),
        ),
        (
            Command::LeaseGrant {
                id: 1,
                ttl: 9_000_000_001,
            },
            Err(KvError::LeaseTtlTooLarge {
                ttl_seconds: 9_000_000_001,
            }),
        ),
        (
            Command::LeaseGrant {
                id: 1,
                ttl: 9_000_000_000,
            },
            Ok(()),
        ),
        (compact(100), Ok(())),
        (put("k", "v", 0), Ok(())),
    ];
    for (cmd, want) in cases {
        assert_eq!(validate(&cmd, 4), want, "{cmd:?}");
    }
    assert_eq!(validate(&Command::Txn(many.clone()), 5), Ok(()));
    // Apply ignores the budget but not the rest.
    let mut state = State::new();
    assert!(state.apply(&Command::Txn(many)).result.is_ok());
    assert_eq!(
        state.apply(&put("", "v", 0)).result.unwrap_err(),
        KvError::EmptyKey
    );
    assert_eq!(
        validate_range(&RangeRequest::default()),
        Err(KvError::EmptyKey)
    );
}

#[test]
fn command_encoding_round_trips() {
    let commands = vec![
        put("k", "v", 5),
        del("a", "\0"),
        txn_if_exists("k", vec![put_op("x", 0)], vec![del_op("y")]),
        compact(12),
        Command::LeaseGrant {
            id: i64::MAX,
            ttl: 2,
        },
        Command::LeaseRevoke { id: -4 },
    ];
    for (i, cmd) in commands.into_iter().enumerate() {
        let header = RequestHeader {
            id: i as u64,
            user: "root".into(),
            auth_revision: 3,
        };
        let proposal = Proposal::One(Envelope::new(header, cmd));
        let bytes = proposal.encode().unwrap();
        assert_eq!(Proposal::decode(&bytes).unwrap(), proposal);
    }
    assert!(Proposal::decode(&[9, 9, 9, 9]).is_err());
    let mut truncated = Proposal::from(put("k", "v", 5)).encode().unwrap();
    truncated.pop();
    assert!(Proposal::decode(&truncated).is_err());
}

#[test]
fn state_encoding_round_trips_and_rejects_garbage() {
    let mut state = State::new();
    for cmd in [
        Command::LeaseGrant { id: 3, ttl: 60 },
        put("a", "1", 3),
        put("b", "2", 0),
        put("a", "3", 3),
        del("b", ""),
        compact(3),
        Command::LeaseGrant { id: 4, ttl: 5 },
    ] {
        state.apply(&cmd).result.unwrap();
    }
    let bytes = state.encode().unwrap();
    let decoded = State::decode(&bytes).unwrap();
    assert_eq!(decoded, state);
    assert_eq!(decoded.encode().unwrap(), bytes);
    assert_eq!(lease_keys(&decoded, 3), ["a"]);
    let mut streamed = Vec::new();
    state.encode_into(&mut streamed).unwrap();
    assert_eq!(streamed, bytes);
    assert!(State::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(State::decode(&[]).is_err());
    let mut wrong_format = bytes.clone();
    wrong_format[0] ^= 0xff;
    assert!(State::decode(&wrong_format).is_err());
}

pub(super) fn command_strategy() -> impl Strategy<Value = Command> {
    let key = || (0u8..5).prop_map(|k| ((b'a' + k) as char).to_string());
    let lease = || prop_oneof![3 => Just(0i64), 1 => 1i64..4];
    prop_oneof![
        5 => (key(), any::<u8>(), lease()).prop_map(|(k, v, l)| put(&k, &v.to_string(), l)),
        2 => (key(), proptest::option::of(key())).prop_map(|(k, end)| del(&k, &end.unwrap_or_default())),
        2 => (key(), key(), key(), lease()).prop_map(|(c, a, b, l)| {
            txn_if_exists(&c, vec![put_op(&a, l)], vec![del_op(&b)])
        }),
        1 => (1i64..4, 1i64..100).prop_map(|(id, ttl)| Command::LeaseGrant { id, ttl }),
        1 => (1i64..4).prop_map(|id| Command::LeaseRevoke { id }),
        // `State::apply` is term 0: term 1 is a stale expiry.
        1 => (1i64..4, 0u64..2).prop_map(|(id, term)| Command::LeaseExpire { id, term }),
        1 => (0i64..30).prop_map(compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two members applying the same log end byte-identical, and a member restored from a
    /// snapshot taken midway ends identical too.
    #[test]
    fn apply_is_deterministic(
        commands in proptest::collection::vec(command_strategy(), 1..60),
        snapshot_at in 0usize..60,
    ) {
        let mut first = State::new();
        let mut second = State::new();
        let mut restored = State::new();
        for (i, cmd) in commands.iter().enumerate() {
            let a = first.apply(cmd);
            let b = second.apply(cmd);
            prop_assert_eq!(&a, &b);
            if i == snapshot_at {
                restored = State::decode(&first.encode().unwrap()).unwrap();
            } else if i > snapshot_at {
                prop_assert_eq!(&restored.apply(cmd), &a);
            }
            first.check().map_err(TestCaseError::fail)?;
        }
        let bytes = first.encode().unwrap();
        prop_assert_eq!(&bytes, &second.encode().unwrap());
        prop_assert_eq!(first.kv.hash_kv(0), second.kv.hash_kv(0));
        if snapshot_at < commands.len() {
            prop_assert_eq!(&bytes, &restored.encode().unwrap());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A log whose commands are grouped into batches (arbitrary cut points) gives every command
    /// the same result, the same events and revision, and the same final bytes as the log with
    /// one command per entry; a batched entry round-trips through its encoding, and a snapshot
    /// taken between batches replays to the same state.
    #[test]
    fn batched_entries_apply_like_one_entry_per_command(
        commands in proptest::collection::vec(command_strategy(), 1..60),
        cuts in proptest::collection::vec(1usize..8, 1..30),
        snapshot_after_batch in 0usize..30,
    ) {
        let mut plain = State::new();
        let expected: Vec<Applied> = commands.iter().map(|c| plain.apply(c)).collect();

        let mut batches = Vec::new();
        let mut rest = commands.as_slice();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at((*cut).min(rest.len()));
            let envelopes = head.iter().map(|c| Envelope::new(RequestHeader::default(), c.clone()));
            batches.push(Proposal::Batch(envelopes.collect()));
            rest = tail;
        }
        let mut batched = State::new();
        let mut restored: Option<State> = None;
        let mut got = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let decoded = Proposal::decode(&batch.encode().unwrap()).unwrap();
            prop_assert_eq!(&decoded, batch);
            for envelope in decoded.envelopes() {
                got.push(batched.apply(&envelope.command));
                if let Some(r) = restored.as_mut() {
                    r.apply(&envelope.command);
                }
            }
            if i == snapshot_after_batch {
                restored = Some(State::decode(&batched.encode().unwrap()).unwrap());
            }
            batched.check().map_err(TestCaseError::fail)?;
        }
        prop_assert_eq!(&got, &expected);
        let bytes = batched.encode().unwrap();
        prop_assert_eq!(&bytes, &plain.encode().unwrap());
        if let Some(r) = restored {
            prop_assert_eq!(&bytes, &r.encode().unwrap());
        }
    }
}

fn alarm(action: AlarmAction, member_id: u64, alarm: AlarmType) -> Command {
    Command::Alarm {
        action: action as i32,
        member_id,
        alarm: alarm as i32,
    }
}

fn alarms_of(applied: &Applied) -> Vec<(u64, i32)> {
    match &applied.result {
        Ok(Outcome::Alarm(resp)) => resp.alarms.iter().map(|m| (m.member_id, m.alarm)).collect(),
        other => panic!("not an alarm answer: {other:?}"),
    }
}

/// etcd's alarm store and capped applier: NOSPACE refuses what may add data (put, any txn —
/// etcd 3.5 refuses read-only ones too —, a lease grant) with etcd's text, and lets deletes,
/// compaction and revokes through; disarming restores writes. Alarms are part of the snapshot image.
#[test]
fn nospace_alarm_caps_writes_until_disarmed() {
    let mut s = State::new();
    s.apply(&put("a", "1", 0));
    s.apply(&Command::LeaseGrant { id: 7, ttl: 60 });
    let raised = s.apply(&alarm(AlarmAction::Activate, 9, AlarmType::Nospace));
    assert_eq!(alarms_of(&raised), vec![(9, AlarmType::Nospace as i32)]);
    // NONE is never raised; GET lists by type or all.
    assert!(alarms_of(&s.apply(&alarm(AlarmAction::Activate, 9, AlarmType::None))).is_empty());
    s.apply(&alarm(AlarmAction::Activate, 3, AlarmType::Nospace));
    assert_eq!(
        alarms_of(&s.apply(&alarm(AlarmAction::Get, 0, AlarmType::None))),
        vec![
            (3, AlarmType::Nospace as i32),
            (9, AlarmType::Nospace as i32)
        ]
    );
    assert!(alarms_of(&s.apply(&alarm(AlarmAction::Get, 0, AlarmType::Corrupt))).is_empty());
    s.apply(&alarm(AlarmAction::Deactivate, 3, AlarmType::Nospace));
    let before = s.kv.current_revision();
    for refused in [
        put("b", "2", 0),
        txn_if_exists("a", vec![put_op("c", 0)], vec![]),
        Command::LeaseGrant { id: 8, ttl: 60 },
    ] {
        let applied = s.apply(&refused);
        assert_eq!(applied.result, Err(KvError::NoSpace), "{refused:?}");
        assert_eq!(
            KvError::NoSpace.etcd_message(),
            "etcdserver: mvcc: database space exceeded"
        );
    }
    assert_eq!(
        s.kv.current_revision(),
        before,
        "refused writes change nothing"
    );
    let read_only = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })),
    };
    assert_eq!(
        s.apply(&txn_if_exists("a", vec![read_only], vec![])).result,
        Err(KvError::NoSpace)
    );
    assert!(s.apply(&del("a", "")).result.is_ok());
    assert!(s.apply(&compact(2)).result.is_ok());
    assert!(s.apply(&Command::LeaseRevoke { id: 7 }).result.is_ok());
    // The image keeps the alarms.
    let back = State::decode(&s.encode().unwrap()).unwrap();
    assert_eq!(back.alarms, s.alarms);
    // Disarm: the cleared alarm is answered once; writes go through again.
    let cleared = s.apply(&alarm(AlarmAction::Deactivate, 9, AlarmType::Nospace));
    assert_eq!(alarms_of(&cleared), vec![(9, AlarmType::Nospace as i32)]);
    assert!(alarms_of(&s.apply(&alarm(AlarmAction::Deactivate, 9, AlarmType::Nospace))).is_empty());
    assert!(s.apply(&put("b", "2", 0)).result.is_ok());
}

/// etcd's corrupt applier: with CORRUPT raised every command but alarms is refused with
/// "etcdserver: corrupt cluster" (deletes and compaction too), until it is disarmed.
#[test]
fn corrupt_alarm_refuses_every_write_until_disarmed() {
    let mut s = State::new();
    s.apply(&put("a", "1", 0));
    s.apply(&alarm(AlarmAction::Activate, 2, AlarmType::Corrupt));
    for refused in [
        put("b", "2", 0),
        del("a", ""),
        compact(1),
        Command::LeaseRevoke { id: 1 },
    ] {
        assert_eq!(
            s.apply(&refused).result,
            Err(KvError::Corrupt),
            "{refused:?}"
        );
    }
    assert_eq!(
        KvError::Corrupt.etcd_message(),
        "etcdserver: corrupt cluster"
    );
    assert_eq!(
        alarms_of(&s.apply(&alarm(AlarmAction::Get, 0, AlarmType::None))),
        vec![(2, AlarmType::Corrupt as i32)]
    );
    s.apply(&alarm(AlarmAction::Deactivate, 2, AlarmType::Corrupt));
    assert!(s.apply(&put("b", "2", 0)).result.is_ok());
}
