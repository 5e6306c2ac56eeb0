//! Txn semantics: compares (missing keys, range_end, mismatched targets), branch choice, nested
//! txns, ordering of ops inside one revision, headers, atomicity on failure.

use super::range_tests::{delete, put};
use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};

/// rev 2 a=1 | 3 b=2 | 4 a=11 | 5 c=3 with lease 7.
/// a{create 2, mod 4, v2, "11"}  b{3, 3, v1, "2"}  c{5, 5, v1, "3", lease 7}
fn fixture() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "2");
    put(&mut store, "a", "11");
    let leased = PutRequest {
        key: b"c".to_vec(),
        value: b"3".to_vec(),
        lease: 7,
        ..Default::default()
    };
    store.put(&leased, &|id| id == 7).unwrap();
    assert_eq!(store.current_revision(), 5);
    store
}

fn cmp(
    key: &str,
    range_end: &str,
    target: CompareTarget,
    result: CompareResult,
    union: TargetUnion,
) -> Compare {
    Compare {
        key: key.into(),
        range_end: range_end.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(union),
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })),
    }
}

fn del_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: true,
        })),
    }
}

fn get_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: key.into(),
            ..Default::default()
        })),
    }
}

fn txn_op(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            compare,
            success,
            failure,
        })),
    }
}

fn run(
    store: &mut Store,
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> Written<TxnResponse> {
    store
        .txn(
            &TxnRequest {
                compare,
                success,
                failure,
            },
            &|id| id == 7,
        )
        .unwrap()
}

#[test]
fn compare_table() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    use TargetUnion as U;
    let value = |v: &str| U::Value(v.into());
    let cases: Vec<(&str, Compare, bool)> = vec![
        (
            "version equal",
            cmp("a", "", Version, Equal, U::Version(2)),
            true,
        ),
        (
            "version greater",
            cmp("a", "", Version, Greater, U::Version(1)),
            true,
        ),
        (
            "version less",
            cmp("a", "", Version, Less, U::Version(2)),
            false,
        ),
        (
            "version not equal",
            cmp("a", "", Version, NotEqual, U::Version(2)),
            false,
        ),
        (
            "create equal",
            cmp("a", "", Create, Equal, U::CreateRevision(2)),
            true,
        ),
        (
            "mod equal",
            cmp("a", "", Mod, Equal, U::ModRevision(4)),
            true,
        ),
        (
            "mod greater",
            cmp("a", "", Mod, Greater, U::ModRevision(4)),
            false,
        ),
        ("value equal", cmp("a", "", Value, Equal, value("11")), true),
        (
            "value greater",
            cmp("a", "", Value, Greater, value("1")),
            true,
        ),
        (
            "value compares bytes",
            cmp("a", "", Value, Less, value("2")),
            true,
        ),
        ("lease equal", cmp("c", "", Lease, Equal, U::Lease(7)), true),
        (
            "no lease is 0",
            cmp("a", "", Lease, Equal, U::Lease(0)),
            true,
        ),
        (
            "missing key: version 0",
            cmp("zz", "", Version, Equal, U::Version(0)),
            true,
        ),
        (
            "missing key: create 0",
            cmp("zz", "", Create, Equal, U::CreateRevision(0)),
            true,
        ),
        (
            "missing key: mod 0",
            cmp("zz", "", Mod, Equal, U::ModRevision(0)),
            true,
        ),
        (
            "missing key: lease 0",
            cmp("zz", "", Lease, Equal, U::Lease(0)),
            true,
        ),
        (
            "missing key: version > 0",
            cmp("zz", "", Version, Greater, U::Version(0)),
            false,
        ),
        (
            "missing key: value never matches",
            cmp("zz", "", Value, Equal, value("")),
            false,
        ),
        (
            "missing key: value != fails too",
            cmp("zz", "", Value, NotEqual, value("x")),
            false,
        ),
        (
            "range: every key must hold",
            cmp("a", "c", Version, Greater, U::Version(0)),
            true,
        ),
        (
            "range: one key fails",
            cmp("a", "c", Version, Equal, U::Version(1)),
            false,
        ),
        (
            "from key",
            cmp("a", "\0", Mod, Greater, U::ModRevision(1)),
            true,
        ),
        (
            "range with no key compares 0",
            cmp("x", "y", Version, Equal, U::Version(0)),
            true,
        ),
        (
            "range with no key: value fails",
            cmp("x", "y", Value, NotEqual, value("q")),
            false,
        ),
        (
            "union of the wrong kind counts as 0",
            cmp("a", "", Version, Greater, U::ModRevision(9)),
            true,
        ),
        (
            "union of the wrong kind, equal",
            cmp("a", "", Version, Equal, U::ModRevision(2)),
            false,
        ),
        (
            "unknown result holds",
            Compare {
                result: 9,
                ..cmp("a", "", Version, Equal, U::Version(5))
            },
            true,
        ),
    ];
    for (name, compare, want) in cases {
        let mut store = fixture();
        let done = run(&mut store, vec![compare], vec![], vec![]);
        assert_eq!(done.response.succeeded, want, "{name}");
        assert_eq!(
            done.response.header.unwrap().revision,
            5,
            "{name}: a txn without writes keeps the revision"
        );
    }
    let mut store = fixture();
    let none = run(&mut store, vec![], vec![], vec![]);
    assert!(none.response.succeeded, "no compares succeed");
    let and = vec![
        cmp("a", "", Version, Equal, U::Version(2)),
        cmp("b", "", Version, Equal, U::Version(9)),
    ];
    assert!(
        !run(&mut store, and, vec![], vec![]).response.succeeded,
        "compares are ANDed"
    );
}

#[test]
fn branch_runs_in_order_under_one_revision() {
    let mut store = fixture();
    let done = run(
        &mut store,
        vec![cmp(
            "a",
            "",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(2),
        )],
        vec![
            get_op("x"),
            put_op("x", "1"),
            get_op("x"),
            del_op("b", ""),
            put_op("y", "2"),
        ],
        vec![put_op("never", "1")],
    );
    assert!(done.response.succeeded);
    assert_eq!(store.current_revision(), 6);
    assert_eq!(done.response.header.unwrap().revision, 6);
    let responses: Vec<&Response> = done
        .response
        .responses
        .iter()
        .map(|r| r.response.as_ref().unwrap())
        .collect();
    let Response::ResponseRange(before) = responses[0] else {
        panic!()
    };
    assert_eq!(
        (before.count, before.header.unwrap().revision),
        (0, 5),
        "a read before any write sees 5"
    );
    let Response::ResponsePut(put) = responses[1] else {
        panic!()
    };
    assert_eq!(
        put.header.unwrap(),
        crate::proto::etcdserverpb::ResponseHeader {
            revision: 6,
            ..Default::default()
        }
    );
    let Response::ResponseRange(after) = responses[2] else {
        panic!()
    };
    assert_eq!(
        (after.count, after.header.unwrap().revision),
        (1, 6),
        "later ops see earlier writes"
    );
    assert_eq!(after.kvs[0].mod_revision, 6);
    let Response::ResponseDeleteRange(deleted) = responses[3] else {
        panic!()
    };
    assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (1, 1));
    assert!(store.get(b"never").is_none());
    // Events: one per change, in change order, all at revision 6.
    let kinds: Vec<(i32, &[u8])> = done
        .events
        .iter()
        .map(|e| (e.r#type, e.kv.as_ref().unwrap().key.as_slice()))
        .collect();
    assert_eq!(kinds, vec![(0, &b"x"[..]), (1, &b"b"[..]), (0, &b"y"[..])]);
    assert!(done
        .events
        .iter()
        .all(|e| e.kv.as_ref().unwrap().mod_revision == 6));
    assert_eq!(
        done.events[1].prev_kv.as_ref().unwrap().value,
        &b"2"[..],
        "delete event carries prev_kv"
    );
    store.check().unwrap();
}

#[test]
fn failed_branch_without_writes_keeps_the_revision() {
    let mut store = fixture();
    let done = run(
        &mut store,
        vec![cmp(
            "a",
            "",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"nope".to_vec()),
        )],
        vec![put_op("x", "1")],
        vec![get_op("a")],
    );
    assert!(!done.response.succeeded);
    assert!(done.events.is_empty());
    assert_eq!(store.current_revision(), 5);
    let Some(Response::ResponseRange(read)) = &done.response.responses[0].response else {
        panic!()
    };
    assert_eq!(read.kvs[0].value, &b"11"[..]);
}

#[test]
fn nested_txns() {
    let mut store = fixture();
    // The nested compare sees the store before the txn: "n" is absent although the outer txn
    // has just put it.
    let nested = txn_op(
        vec![cmp(
            "n",
            "",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(0),
        )],
        vec![put_op("then", "1"), get_op("n")],
        vec![put_op("else", "1")],
    );
    let done = run(&mut store, vec![], vec![put_op("n", "1"), nested], vec![]);
    assert_eq!(store.current_revision(), 6);
    assert!(store.get(b"then").is_some() && store.get(b"else").is_none());
    let Some(Response::ResponseTxn(inner)) = &done.response.responses[1].response else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(
        inner.header,
        Some(Default::default()),
        "a nested txn's header is empty"
    );
    let Some(Response::ResponseRange(read)) = &inner.responses[1].response else {
        panic!()
    };
    assert_eq!(read.count, 1, "nested ops still see earlier writes");
    assert_eq!(done.events.len(), 2);
}

#[test]
fn failures_change_nothing() {
    let missing = PutRequest {
        key: b"zz".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    let unknown_lease = PutRequest {
        key: b"q".to_vec(),
        lease: 99,
        ..Default::default()
    };
    let future_read = RangeRequest {
        key: b"a".to_vec(),
        revision: 6,
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<RequestOp>, KvError)> = vec![
        (
            "ignore_value on a missing key",
            vec![
                put_op("x", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(missing)),
                },
            ],
            KvError::KeyNotFound,
        ),
        (
            "unknown lease",
            vec![
                put_op("x", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(unknown_lease)),
                },
            ],
            KvError::LeaseNotFound { id: 99 },
        ),
        (
            "range in the future of the pre-txn store",
            vec![
                put_op("x", "1"),
                RequestOp {
                    request: Some(Request::RequestRange(future_read)),
                },
            ],
            KvError::FutureRev {
                requested: 6,
                current_revision: 5,
            },
        ),
        (
            "duplicate key",
            vec![put_op("x", "1"), put_op("x", "2")],
            KvError::DuplicateKey,
        ),
        (
            "empty op",
            vec![put_op("x", "1"), RequestOp { request: None }],
            KvError::KeyNotFound,
        ),
    ];
    for (name, success, want) in cases {
        let mut store = fixture();
        let before = store.clone();
        let err = store
            .txn(
                &TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                },
                &|id| id == 7,
            )
            .unwrap_err();
        assert_eq!(err, want, "{name}");
        assert_eq!(store, before, "{name}: store unchanged");
    }
}

/// etcd accepts a from-key delete followed by an ignore_value put of a key it covers (its
/// duplicate check takes "\0" literally) and then crashes applying it. Here the txn fails as a
/// whole with "key not found" and nothing changes.
#[test]
fn ignore_value_after_from_key_delete_rolls_back() {
    let mut store = fixture();
    let before = store.clone();
    let keep_value = PutRequest {
        key: b"b".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    let success = vec![
        del_op("a", "\0"),
        RequestOp {
            request: Some(Request::RequestPut(keep_value)),
        },
    ];
    let err = store
        .txn(
            &TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            },
            &|_| true,
        )
        .unwrap_err();
    assert_eq!(err, KvError::KeyNotFound);
    assert_eq!(store, before);
}

/// Two sibling nested txns may put and then delete the same key (etcd lets it pass): both
/// changes land in one revision and the key ends up absent.
#[test]
fn put_then_delete_in_one_revision() {
    let mut store = fixture();
    let done = run(
        &mut store,
        vec![],
        vec![
            txn_op(vec![], vec![put_op("a", "new")], vec![]),
            txn_op(vec![], vec![del_op("a", "")], vec![]),
        ],
        vec![],
    );
    assert_eq!(store.current_revision(), 6);
    assert!(store.get(b"a").is_none());
    assert_eq!(done.events.len(), 2);
    // Both events report the key as it was before the txn.
    for event in &done.events {
        assert_eq!(event.prev_kv.as_ref().unwrap().value, &b"11"[..]);
    }
    store.check().unwrap();
    let at_5 = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            revision: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(at_5.kvs[0].value, &b"11"[..]);
    // And the reverse through a from-key delete: delete then re-create in one revision.
    let done = run(
        &mut store,
        vec![],
        vec![del_op("b", "\0"), put_op("b", "again")],
        vec![],
    );
    let created = store.get(b"b").unwrap();
    assert_eq!(
        (
            created.create_revision,
            created.version,
            created.mod_revision
        ),
        (7, 1, 7)
    );
    assert!(
        done.events.last().unwrap().prev_kv.is_none(),
        "a creation has no prev_kv"
    );
    store.check().unwrap();
    delete(&mut store, "b", "");
    store.check().unwrap();
}

#[test]
fn ranges_inside_a_txn_check_revisions_first() {
    let mut store = fixture();
    store.compact(3).unwrap();
    let at = |revision: i64| RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: b"a".to_vec(),
            revision,
            ..Default::default()
        })),
    };
    let read = |store: &mut Store, revision| {
        store.txn(
            &TxnRequest {
                compare: vec![],
                success: vec![at(revision)],
                failure: vec![],
            },
            &|_| true,
        )
    };
    assert!(
        read(&mut store, 5).is_ok(),
        "the current revision is readable"
    );
    assert!(
        read(&mut store, 3).is_ok(),
        "the compaction point is readable"
    );
    assert_eq!(
        read(&mut store, 2).unwrap_err(),
        KvError::Compacted {
            requested: 2,
            compact_revision: 3
        }
    );
    assert_eq!(
        read(&mut store, 6).unwrap_err(),
        KvError::FutureRev {
            requested: 6,
            current_revision: 5
        }
    );
    let Response::ResponseRange(old) = read(&mut store, 3).unwrap().response.responses[0]
        .response
        .clone()
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (&old.kvs[0].value[..], old.header.unwrap().revision),
        (&b"1"[..], 5)
    );
}
