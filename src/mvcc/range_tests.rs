//! Range semantics, one table row per option or interplay (etcd 3.4 behaviour).

use super::*;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

pub(crate) fn put(store: &mut Store, key: &str, value: &str) -> i64 {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    store
        .put(&req, &|_| true)
        .unwrap()
        .response
        .header
        .unwrap()
        .revision
}

pub(crate) fn delete(store: &mut Store, key: &str, range_end: &str) -> i64 {
    let req = DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    };
    store.delete_range(&req).unwrap().response.deleted
}

/// rev 2 a=1 | 3 b=22 | 4 c=333 | 5 a=4444 | 6 del b | 7 d=5 | 8 b=66 | 9 e=""
///
/// At 9: a{create 2, mod 5, v2} b{8, 8, v1} c{4, 4, v1} d{7, 7, v1} e{9, 9, v1, empty value}.
pub(crate) fn fixture() -> Store {
    let mut store = Store::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "22");
    put(&mut store, "c", "333");
    put(&mut store, "a", "4444");
    assert_eq!(delete(&mut store, "b", ""), 1);
    put(&mut store, "d", "5");
    put(&mut store, "b", "66");
    put(&mut store, "e", "");
    assert_eq!(store.current_revision(), 9);
    store.check().unwrap();
    store
}

fn range(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn all() -> RangeRequest {
    range("\0", "\0")
}

fn sorted(target: SortTarget, order: SortOrder) -> RangeRequest {
    RangeRequest {
        sort_target: target as i32,
        sort_order: order as i32,
        ..all()
    }
}

struct Case {
    name: &'static str,
    req: RangeRequest,
    keys: &'static [&'static str],
    count: i64,
    more: bool,
}

#[test]
fn range_table() {
    use SortOrder::{Ascend, Descend};
    use SortTarget::{Create, Mod, Value, Version};
    let store = fixture();
    let cases = vec![
        Case {
            name: "single key",
            req: range("a", ""),
            keys: &["a"],
            count: 1,
            more: false,
        },
        Case {
            name: "missing key",
            req: range("zz", ""),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "half-open range",
            req: range("a", "c"),
            keys: &["a", "b"],
            count: 2,
            more: false,
        },
        Case {
            name: "prefix",
            req: range("a", "b"),
            keys: &["a"],
            count: 1,
            more: false,
        },
        Case {
            name: "from key",
            req: range("b", "\0"),
            keys: &["b", "c", "d", "e"],
            count: 4,
            more: false,
        },
        Case {
            name: "everything",
            req: all(),
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "range_end before key",
            req: range("c", "a"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "range_end equals key",
            req: range("c", "c"),
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "limit below count",
            req: RangeRequest { limit: 2, ..all() },
            keys: &["a", "b"],
            count: 5,
            more: true,
        },
        Case {
            name: "limit equal to count",
            req: RangeRequest { limit: 5, ..all() },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "negative limit is no limit",
            req: RangeRequest { limit: -1, ..all() },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "past revision",
            req: RangeRequest {
                revision: 4,
                ..all()
            },
            keys: &["a", "b", "c"],
            count: 3,
            more: false,
        },
        Case {
            name: "at the delete",
            req: RangeRequest {
                revision: 6,
                ..all()
            },
            keys: &["a", "c"],
            count: 2,
            more: false,
        },
        Case {
            name: "before the first write",
            req: RangeRequest {
                revision: 1,
                ..all()
            },
            keys: &[],
            count: 0,
            more: false,
        },
        Case {
            name: "negative revision is current",
            req: RangeRequest {
                revision: -3,
                ..all()
            },
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "key descending",
            req: sorted(SortTarget::Key, Descend),
            keys: &["e", "d", "c", "b", "a"],
            count: 5,
            more: false,
        },
        Case {
            name: "version with order NONE sorts ascending, ties in key order",
            req: sorted(Version, SortOrder::None),
            keys: &["b", "c", "d", "e", "a"],
            count: 5,
            more: false,
        },
        Case {
            name: "version descending, ties in key order",
            req: sorted(Version, Descend),
            keys: &["a", "b", "c", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "create ascending",
            req: sorted(Create, Ascend),
            keys: &["a", "c", "d", "b", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "mod descending",
            req: sorted(Mod, Descend),
            keys: &["e", "b", "d", "a", "c"],
            count: 5,
            more: false,
        },
        Case {
            name: "value ascending",
            req: sorted(Value, Ascend),
            keys: &["e", "c", "a", "d", "b"],
            count: 5,
            more: false,
        },
        Case {
            name: "sort happens before the limit",
            req: RangeRequest {
                limit: 2,
                ..sorted(Value, Ascend)
            },
            keys: &["e", "c"],
            count: 5,
            more: true,
        },
        Case {
            // etcd reads limit+1 pairs in key order when the order is NONE, then sorts those.
            name: "target without order sorts only the pairs read",
            req: RangeRequest {
                limit: 2,
                ..sorted(Value, SortOrder::None)
            },
            keys: &["c", "a"],
            count: 5,
            more: true,
        },
        Case {
            name: "min mod revision; count ignores the filter",
            req: RangeRequest {
                min_mod_revision: 6,
                ..all()
            },
            keys: &["b", "d", "e"],
            count: 5,
            more: false,
        },
        Case {
            name: "max mod revision",
            req: RangeRequest {
                max_mod_revision: 5,
                ..all()
            },
            keys: &["a", "c"],
            count: 5,
            more: false,
        },
        Case {
            name: "create revision window, inclusive",
            req: RangeRequest {
                min_create_revision: 4,
                max_create_revision: 8,
                ..all()
            },
            keys: &["b", "c", "d"],
            count: 5,
            more: false,
        },
        Case {
            name: "filter then limit",
            req: RangeRequest {
                min_mod_revision: 6,
                limit: 1,
                ..all()
            },
            keys: &["b"],
            count: 5,
            more: true,
        },
        Case {
            name: "count only",
            req: RangeRequest {
                count_only: true,
                limit: 1,
                ..all()
            },
            keys: &[],
            count: 5,
            more: false,
        },
        Case {
            name: "count only at a past revision",
            req: RangeRequest {
                count_only: true,
                revision: 4,
                ..all()
            },
            keys: &[],
            count: 3,
            more: false,
        },
    ];
    for case in cases {
        let response = store
            .range(&case.req)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let keys: Vec<String> = response
            .kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
            .collect();
        assert_eq!(keys, case.keys, "{}", case.name);
        assert_eq!(response.count, case.count, "{}: count", case.name);
        assert_eq!(response.more, case.more, "{}: more", case.name);
        assert_eq!(
            response.header.unwrap().revision,
            9,
            "{}: header is the current revision",
            case.name
        );
    }
}

#[test]
fn pairs_carry_every_field() {
    let store = fixture();
    let at_4 = store
        .range(&RangeRequest {
            revision: 4,
            ..range("a", "")
        })
        .unwrap();
    let a = KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: b"1".to_vec().into(),
        lease: 0,
    };
    assert_eq!(at_4.kvs, vec![a]);
    let now = store.range(&range("a", "")).unwrap();
    assert_eq!(
        (
            now.kvs[0].create_revision,
            now.kvs[0].mod_revision,
            now.kvs[0].version
        ),
        (2, 5, 2)
    );
    assert_eq!(now.kvs[0].value, &b"4444"[..]);
    let recreated = store.get(b"b").unwrap();
    assert_eq!(
        (recreated.create_revision, recreated.version),
        (8, 1),
        "a delete resets the version"
    );
    let keys_only = store
        .range(&RangeRequest {
            keys_only: true,
            ..all()
        })
        .unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(
        keys_only.kvs[0].mod_revision, 5,
        "keys_only keeps the revisions"
    );
}

#[test]
fn revision_errors() {
    let mut store = fixture();
    let future = store
        .range(&RangeRequest {
            revision: 10,
            ..all()
        })
        .unwrap_err();
    assert_eq!(
        future,
        KvError::FutureRev {
            requested: 10,
            current_revision: 9
        }
    );
    assert_eq!(
        future.etcd_message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert!(store
        .range(&RangeRequest {
            revision: 9,
            ..all()
        })
        .is_ok());
    store.compact(5).unwrap();
    let compacted = store
        .range(&RangeRequest {
            revision: 4,
            ..all()
        })
        .unwrap_err();
    assert_eq!(
        compacted,
        KvError::Compacted {
            requested: 4,
            compact_revision: 5
        }
    );
    assert_eq!(
        compacted.etcd_message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let at_compaction = store
        .range(&RangeRequest {
            revision: 5,
            ..all()
        })
        .unwrap();
    assert_eq!(
        at_compaction.count, 3,
        "a read at exactly the compaction point works (a, b, c)"
    );
    assert_eq!(store.range(&range("", "")).unwrap_err(), KvError::EmptyKey);
    let bad_sort = RangeRequest {
        sort_order: 7,
        ..all()
    };
    assert_eq!(
        store.range(&bad_sort).unwrap_err(),
        KvError::InvalidSortOption
    );
}

#[test]
fn key_spans() {
    assert_eq!(KeySpan::new(b"a", b""), KeySpan::One(b"a"));
    assert_eq!(KeySpan::new(b"a", b"\0"), KeySpan::From(b"a"));
    assert_eq!(KeySpan::new(b"a", b"b"), KeySpan::Between(b"a", b"b"));
    assert_eq!(KeySpan::new(b"b", b"a"), KeySpan::Nothing);
    assert_eq!(KeySpan::new(b"b", b"b"), KeySpan::Nothing);
    assert!(KeySpan::new(b"\0", b"\0").contains(b"\xff\xff"));
    assert!(KeySpan::new(b"a", b"b").contains(b"a\xff"));
    assert!(!KeySpan::new(b"a", b"b").contains(b"b"));
    // A prefix whose last byte is 0xff: etcd clients send range_end = prefix with that byte
    // dropped and the previous one incremented.
    let mut store = Store::new();
    put(&mut store, "a\u{7f}", "x");
    let high = RangeRequest {
        key: b"a\xff".to_vec(),
        range_end: b"b".to_vec(),
        ..Default::default()
    };
    assert_eq!(store.range(&high).unwrap().count, 0);
    let from_a = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        ..Default::default()
    };
    assert_eq!(store.range(&from_a).unwrap().count, 1);
}
