//! Table tests of etcd's v2 semantics (answers as observed on etcd 3.4 with `--enable-v2`) and
//! a property test of the store's invariants under random requests.

use proptest::prelude::*;

use super::error::*;
use super::*;

const NOW: i64 = 1_700_000_000 * NANOS_PER_SECOND;

fn put(path: &str, value: &str) -> V2Request {
    V2Request::Put {
        path: path.into(),
        value: value.into(),
        dir: false,
        prev_value: String::new(),
        prev_index: 0,
        prev_exist: None,
        expire_ns: None,
        refresh: false,
        now_ns: NOW,
    }
}

fn with(req: V2Request, f: impl FnOnce(&mut V2Request)) -> V2Request {
    let mut r = req;
    f(&mut r);
    r
}

fn del(path: &str, dir: bool, recursive: bool) -> V2Request {
    V2Request::Delete {
        path: path.into(),
        dir,
        recursive,
        prev_value: String::new(),
        prev_index: 0,
        now_ns: NOW,
    }
}

fn event(o: V2Outcome) -> Event {
    match o {
        V2Outcome::Event { event, .. } => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn error(o: V2Outcome) -> V2Error {
    match o {
        V2Outcome::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn set_get_and_json_match_etcd() {
    let mut s = Store::new();
    let e = event(s.apply(&put("/foo", "bar")));
    assert_eq!(
        e.to_json(false),
        "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,\"createdIndex\":1}}\n"
    );
    let e = event(s.apply(&put("/foo", "<b&>")));
    assert_eq!(
        e.to_json(false),
        "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"\\u003cb\\u0026\\u003e\",\"modifiedIndex\":2,\"createdIndex\":2},\"prevNode\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":1,\"createdIndex\":1}}\n"
    );
    let got = s.get("/foo", false, NOW).unwrap();
    assert_eq!(got.etcd_index, 2);
    assert_eq!(got.node.value.as_deref(), Some("<b&>"));
}

#[test]
fn directories_list_sorted_and_hide_underscore_names() {
    let mut s = Store::new();
    for (k, v) in [
        ("/d/b", "2"),
        ("/d/a", "1"),
        ("/d/_h", "x"),
        ("/d/c/e", "3"),
        ("/d-x", "y"),
    ] {
        event(s.apply(&put(k, v)));
    }
    let flat = s.get("/d", false, NOW).unwrap();
    let keys: Vec<_> = flat
        .children
        .iter()
        .map(|(d, n)| (*d, n.key.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![(1, "/d/a".into()), (1, "/d/b".into()), (1, "/d/c".into())]
    );
    assert_eq!(
        flat.to_json(),
        "{\"action\":\"get\",\"node\":{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/a\",\"value\":\"1\",\"modifiedIndex\":2,\"createdIndex\":2},{\"key\":\"/d/b\",\"value\":\"2\",\"modifiedIndex\":1,\"createdIndex\":1},{\"key\":\"/d/c\",\"dir\":true,\"modifiedIndex\":4,\"createdIndex\":4}],\"modifiedIndex\":1,\"createdIndex\":1}}\n"
    );
    let deep = s.get("/", true, NOW).unwrap();
    assert_eq!(
        deep.to_json(),
        "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[{\"key\":\"/d\",\"dir\":true,\"nodes\":[{\"key\":\"/d/a\",\"value\":\"1\",\"modifiedIndex\":2,\"createdIndex\":2},{\"key\":\"/d/b\",\"value\":\"2\",\"modifiedIndex\":1,\"createdIndex\":1},{\"key\":\"/d/c\",\"dir\":true,\"nodes\":[{\"key\":\"/d/c/e\",\"value\":\"3\",\"modifiedIndex\":4,\"createdIndex\":4}],\"modifiedIndex\":4,\"createdIndex\":4}],\"modifiedIndex\":1,\"createdIndex\":1},{\"key\":\"/d-x\",\"value\":\"y\",\"modifiedIndex\":5,\"createdIndex\":5}]}}\n"
    );
    // A hidden key is still readable directly.
    assert_eq!(
        s.get("/d/_h", false, NOW).unwrap().node.value.as_deref(),
        Some("x")
    );
}

#[test]
fn errors_carry_etcd_codes_causes_and_index() {
    let mut s = Store::new();
    event(s.apply(&put("/f", "v")));
    let cases: Vec<(V2Request, u16, &str)> = vec![
        // etcd 3.4 answers "Not a directory" for a file on the way, whatever the write.
        (put("/f/x", "v"), NOT_DIR, "/f"),
        (
            with(put("/f/x", "v"), |r| {
                if let V2Request::Put { prev_exist, .. } = r {
                    *prev_exist = Some(false)
                }
            }),
            NOT_DIR,
            "/f",
        ),
        (put("/", "v"), ROOT_READ_ONLY, "/"),
        (
            with(put("/f", "v"), |r| {
                if let V2Request::Put { prev_exist, .. } = r {
                    *prev_exist = Some(false)
                }
            }),
            NODE_EXIST,
            "/f",
        ),
        (
            with(put("/g", "v"), |r| {
                if let V2Request::Put { prev_exist, .. } = r {
                    *prev_exist = Some(true)
                }
            }),
            KEY_NOT_FOUND,
            "/g",
        ),
        (
            with(put("/f", "n"), |r| {
                if let V2Request::Put { prev_value, .. } = r {
                    *prev_value = "zz".into()
                }
            }),
            TEST_FAILED,
            "[zz != v]",
        ),
        (
            with(put("/f", "n"), |r| {
                if let V2Request::Put { prev_index, .. } = r {
                    *prev_index = 9
                }
            }),
            TEST_FAILED,
            "[9 != 1]",
        ),
        (
            with(put("/f", "n"), |r| {
                if let V2Request::Put {
                    prev_index,
                    prev_value,
                    ..
                } = r
                {
                    *prev_index = 9;
                    *prev_value = "a".into()
                }
            }),
            TEST_FAILED,
            "[a != v] [9 != 1]",
        ),
        (del("/nope/x", false, false), KEY_NOT_FOUND, "/nope"),
        (del("/", true, true), ROOT_READ_ONLY, "/"),
    ];
    for (req, code, cause) in cases {
        let e = error(s.apply(&req));
        assert_eq!(
            (e.code, e.cause.as_str(), e.index),
            (code, cause, 1),
            "{req:?}"
        );
    }
    assert_eq!(s.current_index(), 1, "failed requests changed the index");
    let e = s.get("/f/x", false, NOW).unwrap_err();
    assert_eq!((e.code, e.cause.as_str()), (NOT_DIR, "/f"));
}

#[test]
fn dir_semantics() {
    let mut s = Store::new();
    event(s.apply(&with(put("/d", ""), |r| {
        if let V2Request::Put { dir, .. } = r {
            *dir = true
        }
    })));
    let e = error(s.apply(&with(put("/d", ""), |r| {
        if let V2Request::Put { dir, .. } = r {
            *dir = true
        }
    })));
    assert_eq!((e.code, e.cause.as_str()), (NOT_FILE, "/d"));
    event(s.apply(&put("/d/k", "v")));
    assert_eq!(error(s.apply(&del("/d", false, false))).code, NOT_FILE);
    assert_eq!(error(s.apply(&del("/d", true, false))).code, DIR_NOT_EMPTY);
    let e = event(s.apply(&del("/d", false, true)));
    assert_eq!(
        e.to_json(false),
        "{\"action\":\"delete\",\"node\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":3,\"createdIndex\":1},\"prevNode\":{\"key\":\"/d\",\"dir\":true,\"modifiedIndex\":1,\"createdIndex\":1}}\n"
    );
    assert_eq!(s.node_count(), 0);
}

#[test]
fn in_order_keys_are_zero_padded_indexes() {
    let mut s = Store::new();
    event(s.apply(&put("/x", "1")));
    let post = V2Request::Post {
        path: "/q".into(),
        value: "job".into(),
        dir: false,
        expire_ns: None,
        now_ns: NOW,
    };
    let e = event(s.apply(&post));
    assert_eq!(e.action, Action::Create);
    assert_eq!(e.node.key, "/q/00000000000000000002");
}

#[test]
fn ttl_expiry_refresh_and_reported_ttl() {
    let mut s = Store::new();
    let ttl = |r: V2Request, secs: i64| {
        with(r, |r| {
            if let V2Request::Put { expire_ns, .. } = r {
                *expire_ns = Some(NOW + secs * NANOS_PER_SECOND)
            }
        })
    };
    let e = event(s.apply(&ttl(put("/t", "v"), 10)));
    assert_eq!(e.node.ttl, 10);
    assert!(e
        .to_json(false)
        .contains("\"expiration\":\"2023-11-14T22:13:30Z\",\"ttl\":10"));
    let l = s.get("/t", false, NOW + NANOS_PER_SECOND / 2).unwrap();
    assert_eq!(l.node.ttl, 10, "9.5 s left rounds up");
    // Refresh: keeps the value, moves the expiration, is not delivered to watchers.
    let r = ttl(
        with(put("/t", ""), |r| {
            if let V2Request::Put { refresh, .. } = r {
                *refresh = true
            }
        }),
        20,
    );
    let e = event(s.apply(&r));
    assert_eq!(e.node.value.as_deref(), Some("v"));
    assert!(e.refresh);
    assert_eq!(s.scan("/t", false, 2).unwrap(), None);
    assert_eq!(
        s.apply(&V2Request::Expire {
            now_ns: NOW + 15 * NANOS_PER_SECOND
        }),
        V2Outcome::Expired { count: 0 }
    );
    assert_eq!(
        s.apply(&V2Request::Expire {
            now_ns: NOW + 20 * NANOS_PER_SECOND
        }),
        V2Outcome::Expired { count: 1 }
    );
    let e = s.scan("/t", false, 3).unwrap().unwrap().clone();
    assert_eq!(e.action, Action::Expire);
    assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("v"));
    assert!(!s.has_ttl_keys());
}

#[test]
fn history_is_bounded_and_old_indexes_are_cleared() {
    let mut s = Store::new();
    for i in 0..1005 {
        event(s.apply(&put("/k", &i.to_string())));
    }
    assert_eq!(s.history_start(), 6);
    let e = s.scan("/k", false, 5).unwrap_err();
    assert_eq!(e.code, EVENT_INDEX_CLEARED);
    assert_eq!(e.cause, "the requested history has been cleared [6/5]");
    assert_eq!(e.index, 1005);
    assert_eq!(s.scan("/k", false, 6).unwrap().unwrap().index(), 6);
    assert_eq!(s.scan("/k", false, 1006).unwrap(), None);
}

#[test]
fn watch_rules_follow_etcd() {
    let mut s = Store::new();
    event(s.apply(&put("/a/b", "1")));
    event(s.apply(&put("/a/_h", "2")));
    let e1 = s.scan("/a", true, 1).unwrap().unwrap().clone();
    assert_eq!(e1.node.key, "/a/b");
    assert!(s.scan("/a", false, 1).unwrap().is_none());
    let hidden = s.scan("/a", true, 2).unwrap().unwrap().clone();
    assert!(
        !hidden.concerns_live("/a", true),
        "hidden names are not sent to live watchers"
    );
    let e = event(s.apply(&del("/a", true, true)));
    assert!(
        e.concerns_live("/a/b", false),
        "a removed node's watcher hears its removal"
    );
    assert!(e.concerns_from_history("/a/b", false));
    assert!(!e.concerns_live("/ab", false));
}

#[test]
fn json_time_and_escapes() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(1_500_000_000_120_000_000),
        "2017-07-14T02:40:00.12Z"
    );
    let mut out = String::new();
    event::push_json_str(&mut out, "a\"\\\n\u{1}\u{2028}é");
    assert_eq!(out, "\"a\\\"\\\\\\n\\u0001\\u2028é\"");
}

fn rfc3339(ns: i64) -> String {
    event::rfc3339_nano(ns)
}

fn arb_auth_change() -> impl Strategy<Value = auth::AuthChange> {
    use auth::{AuthChange, Perms};
    let name = prop::sample::select(vec!["root", "guest", "u", "r"]).prop_map(String::from);
    let names = prop::collection::vec(name.clone(), 0..3);
    let hash = prop::option::of(prop::sample::select(vec!["h1", "h2"]).prop_map(String::from));
    let perms = prop::option::of(
        (
            prop::option::of(prop::collection::vec(
                prop::sample::select(vec!["/a", "/b*"]).prop_map(String::from),
                0..3,
            )),
            prop::option::of(Just(vec!["/*".to_string()])),
        )
            .prop_map(|(read, write)| Perms { read, write }),
    );
    prop_oneof![
        (name.clone(), hash.clone(), prop::option::of(names.clone())).prop_map(
            |(name, password_hash, roles)| AuthChange::CreateUser {
                name,
                password_hash,
                roles
            }
        ),
        (name.clone(), hash.clone()).prop_map(|(name, password_hash)| {
            AuthChange::CreateOrUpdateUser {
                name,
                password_hash,
                roles: None,
            }
        }),
        (name.clone(), hash, names.clone(), names).prop_map(
            |(name, password_hash, grant, revoke)| AuthChange::UpdateUser {
                name,
                password_hash,
                grant,
                revoke
            }
        ),
        name.clone()
            .prop_map(|name| AuthChange::DeleteUser { name }),
        (name.clone(), perms.clone()).prop_map(|(name, perms)| AuthChange::CreateRole {
            name,
            perms: perms.unwrap_or_default()
        }),
        (name.clone(), perms.clone(), perms).prop_map(|(name, grant, revoke)| {
            AuthChange::UpdateRole {
                name,
                grant,
                revoke,
            }
        }),
        name.prop_map(|name| AuthChange::DeleteRole { name }),
        Just(AuthChange::Enable),
        Just(AuthChange::Disable),
    ]
}

fn arb_request() -> impl Strategy<Value = V2Request> {
    let path = prop::collection::vec(prop::sample::select(vec!["a", "b", "_c"]), 0..4)
        .prop_map(|v| format!("/{}", v.join("/")));
    let opt_exist = prop::option::of(any::<bool>());
    prop_oneof![
        (
            path.clone(),
            any::<bool>(),
            opt_exist,
            0u64..5,
            prop::option::of(0i64..5),
            any::<bool>()
        )
            .prop_map(
                |(path, dir, prev_exist, prev_index, ttl, refresh)| V2Request::Put {
                    path,
                    value: "v".into(),
                    dir,
                    prev_value: String::new(),
                    prev_index,
                    prev_exist,
                    expire_ns: ttl.map(|t| NOW + t * NANOS_PER_SECOND),
                    refresh,
                    now_ns: NOW,
                }
            ),
        path.clone().prop_map(|path| V2Request::Post {
            path,
            value: "p".into(),
            dir: false,
            expire_ns: None,
            now_ns: NOW
        }),
        (path, any::<bool>(), any::<bool>(), 0u64..5).prop_map(
            |(path, dir, recursive, prev_index)| V2Request::Delete {
                path,
                dir,
                recursive,
                prev_value: String::new(),
                prev_index,
                now_ns: NOW,
            }
        ),
        (0i64..6).prop_map(|t| V2Request::Expire {
            now_ns: NOW + t * NANOS_PER_SECOND
        }),
        arb_auth_change().prop_map(V2Request::Auth),
    ]
}

proptest! {
    /// Whatever the requests, the invariants hold, a failed request changes nothing, a
    /// successful write moves the index by one, and the image round-trips.
    #[test]
    fn random_requests_keep_invariants(reqs in prop::collection::vec(arb_request(), 1..60)) {
        let mut s = Store::new();
        for req in &reqs {
            let before = s.clone();
            match s.apply(req) {
                V2Outcome::Error(_) => prop_assert_eq!(&s, &before),
                V2Outcome::Event { etcd_index, .. } => prop_assert_eq!(etcd_index, before.current_index() + 1),
                V2Outcome::Expired { count } => prop_assert_eq!(s.current_index(), before.current_index() + count),
                // An auth change takes one index per node write that succeeded; one that
                // wrote nothing changes nothing.
                V2Outcome::Auth { writes, etcd_index, .. } => {
                    let stored = writes.iter().filter(|(_, ok)| *ok).count() as u64;
                    prop_assert_eq!(etcd_index, before.current_index() + stored);
                    prop_assert_eq!(s.current_index(), etcd_index);
                    if writes.is_empty() {
                        prop_assert_eq!(&s, &before);
                    }
                }
            }
            prop_assert_eq!(s.check(), Ok(()));
        }
        // v2 auth is written beside the store by the state codec, not in its encoding.
        let bytes = bincode::serialize(&s).unwrap();
        let mut back: Store = bincode::deserialize(&bytes).unwrap();
        back.set_auth(s.auth().clone());
        prop_assert_eq!(back, s);
    }
}
