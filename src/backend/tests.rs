//! Export → import round trips on states built by applying commands, the layout of the stream,
//! and imports that must fail.

use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};

use super::*;
use crate::apply::{Command, State};
use crate::bbolt::{check, Db, Value, WriterOptions};
use crate::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};

fn put(key: &[u8], value: &[u8], lease: i64) -> Command {
    Command::Put(PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease,
        ..PutRequest::default()
    })
}

fn delete(key: &[u8]) -> Command {
    Command::DeleteRange(DeleteRangeRequest {
        key: key.to_vec(),
        ..DeleteRangeRequest::default()
    })
}

fn apply_all(commands: &[Command]) -> State {
    let mut state = State::new();
    for cmd in commands {
        let applied = state.apply(cmd);
        assert!(applied.result.is_ok(), "{cmd:?}: {:?}", applied.result);
    }
    state
}

/// Puts, overwrites, deletes, a two-put txn, a lease with a key, a compaction.
fn history() -> State {
    let mut commands = vec![Command::LeaseGrant { id: 0x77, ttl: 60 }];
    for i in 0..200u32 {
        commands.push(put(format!("k{i:03}").as_bytes(), &[b'v'; 40], 0));
    }
    commands.push(put(b"k001", b"again", 0));
    commands.push(delete(b"k002"));
    commands.push(put(b"k002", b"reborn", 0));
    commands.push(delete(b"k003"));
    commands.push(Command::Txn(TxnRequest {
        success: vec![
            RequestOp {
                request: Some(crate::proto::etcdserverpb::request_op::Request::RequestPut(
                    PutRequest {
                        key: b"t1".to_vec(),
                        value: b"1".to_vec(),
                        ..PutRequest::default()
                    },
                )),
            },
            RequestOp {
                request: Some(crate::proto::etcdserverpb::request_op::Request::RequestPut(
                    PutRequest {
                        key: b"t2".to_vec(),
                        value: b"2".to_vec(),
                        ..PutRequest::default()
                    },
                )),
            },
        ],
        ..TxnRequest::default()
    }));
    commands.push(Command::Compact(CompactionRequest {
        revision: 150,
        ..CompactionRequest::default()
    }));
    commands.push(put(b"leased", b"x", 0x77));
    commands.push(put(b"k004", b"after compaction", 0));
    apply_all(&commands)
}

fn info() -> ExportInfo {
    ExportInfo {
        consistent_index: 42,
        term: 3,
        members: vec![Member {
            id: 0x8e9e05c52164694d,
            name: "default".into(),
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
            is_learner: false,
        }],
        cluster_version: "3.5.0".into(),
    }
}

fn export_bytes(state: &State) -> Vec<u8> {
    let (bytes, summary) =
        export(state, &info(), WriterOptions::default(), Vec::new()).expect("export");
    assert_eq!(bytes.len() as u64, summary.size_bytes);
    bytes
}

#[test]
fn export_then_import_gives_back_the_same_state() {
    let state = history();
    let bytes = export_bytes(&state);
    let db = Db::open(&bytes).expect("open");
    check(&db).expect("check");
    let imported = import(&db).expect("import");
    assert_eq!(imported.consistent_index, 42);
    assert_eq!(imported.term, 3);
    assert_eq!(imported.state, state);
}

#[test]
fn every_etcd_bucket_is_present_and_meta_and_members_read_as_etcd_writes_them() {
    let bytes = export_bytes(&history());
    let db = Db::open(&bytes).expect("open");
    let names: Vec<Vec<u8>> = db
        .root()
        .entries()
        .map(|e| e.expect("entry").key.to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = BUCKETS.iter().map(|b| b.to_vec()).collect();
    assert_eq!(names, expected);
    let meta = db.root().bucket(b"meta").expect("read").expect("meta");
    let Some(Value::Data(rev)) = meta.get(b"finishedCompactRev").expect("read") else {
        panic!("no finishedCompactRev");
    };
    assert_eq!(decode_revision(rev), Some((150, 0, false)));
    let Some(Value::Data(conf)) = meta.get(b"confState").expect("read") else {
        panic!("no confState");
    };
    assert_eq!(
        conf,
        br#"{"voters":[10276657743932975437],"auto_leave":false}"#
    );
    let members = db
        .root()
        .bucket(b"members")
        .expect("read")
        .expect("members");
    let Some(Value::Data(json)) = members.get(b"8e9e05c52164694d").expect("read") else {
        panic!("member missing");
    };
    assert_eq!(
        json,
        br#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#
    );
}

#[test]
fn the_stream_is_the_file_in_32_kib_chunks_then_its_sha256() {
    let state = history();
    let file = export_bytes(&state);
    let mut chunks = Vec::new();
    let total = stream(&state, &info(), |c| {
        chunks.push(c);
        true
    })
    .expect("stream");
    assert_eq!(total, file.len() as u64);
    let (hash, data) = chunks.split_last().expect("at least the hash");
    assert_eq!(hash.remaining_bytes, 0);
    assert_eq!(hash.blob, Sha256::digest(&file).to_vec());
    let mut sent = 0u64;
    for (i, chunk) in data.iter().enumerate() {
        if i + 1 < data.len() {
            assert_eq!(chunk.blob.len(), CHUNK_BYTES);
        }
        sent += chunk.blob.len() as u64;
        assert_eq!(chunk.remaining_bytes, total - sent);
    }
    let joined: Vec<u8> = data.iter().flat_map(|c| c.blob.clone()).collect();
    assert_eq!(joined, file);
    // What etcdctl snapshot save checks: the db part is whole 512-byte blocks.
    assert_eq!((joined.len() + hash.blob.len()) % 512, 32);
}

#[test]
fn a_receiver_that_goes_away_stops_the_stream() {
    let state = history();
    let mut calls = 0;
    let result = stream(&state, &info(), |_| {
        calls += 1;
        false
    });
    assert!(matches!(result, Err(StreamFailure::Closed)), "{result:?}");
    assert_eq!(calls, 1);
}

#[test]
fn import_refuses_malformed_entries() {
    use crate::bbolt::Writer;
    let write = |key_entries: &[(&[u8], Vec<u8>)]| {
        let mut w = Writer::new(Vec::new(), WriterOptions::default()).expect("writer");
        w.begin_bucket(b"key").expect("bucket");
        for (k, v) in key_entries {
            w.put(k, v).expect("put");
        }
        w.end_bucket().expect("end");
        w.begin_bucket(b"meta").expect("bucket");
        w.end_bucket().expect("end");
        w.finish().expect("finish").0
    };
    let kv = |key: &[u8], create: i64, modr: i64, version: i64| {
        crate::proto::mvccpb::KeyValue {
            key: key.to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            value: b"v".to_vec().into(),
            lease: 0,
        }
        .encode_to_vec()
    };
    let short_key: &[u8] = b"2_";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a revision", write(&[(short_key, kv(b"a", 2, 2, 1))])),
        (
            "not protobuf",
            write(&[(&encode_revision(2, 0, false), vec![0xff, 0xff, 0xff])]),
        ),
        (
            "tombstone of a missing key",
            write(&[(&encode_revision(2, 0, true), kv(b"a", 0, 0, 0))]),
        ),
        (
            "lease missing",
            write(&[(
                &encode_revision(2, 0, false),
                crate::proto::mvccpb::KeyValue {
                    key: b"a".to_vec(),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    value: Default::default(),
                    lease: 5,
                }
                .encode_to_vec(),
            )]),
        ),
    ];
    for (what, bytes) in cases {
        let db = Db::open(&bytes).expect("open");
        assert!(import(&db).is_err(), "{what}: accepted");
    }
    let mut no_meta = Writer::new(Vec::new(), WriterOptions::default()).expect("writer");
    no_meta.begin_bucket(b"key").expect("bucket");
    no_meta.end_bucket().expect("end");
    let bytes = no_meta.finish().expect("finish").0;
    let db = Db::open(&bytes).expect("open");
    assert!(matches!(
        import(&db),
        Err(ImportError::MissingBucket("meta"))
    ));
}

fn command_strategy() -> impl Strategy<Value = Command> {
    let key = prop::collection::vec(b'a'..b'f', 1..3);
    prop_oneof![
        4 => (key.clone(), prop::collection::vec(any::<u8>(), 0..50)).prop_map(|(k, v)| put(&k, &v, 0)),
        1 => key.clone().prop_map(|k| delete(&k)),
        1 => key.prop_map(|k| put(&k, b"leased", 9)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_applied_history_round_trips(
        commands in prop::collection::vec(command_strategy(), 0..80),
        compact_at in prop::option::of(0usize..80),
    ) {
        let mut state = State::new();
        state.apply(&Command::LeaseGrant { id: 9, ttl: 30 });
        for (i, cmd) in commands.iter().enumerate() {
            state.apply(cmd);
            if compact_at == Some(i) {
                let revision = state.kv.current_revision();
                state.apply(&Command::Compact(CompactionRequest { revision, ..CompactionRequest::default() }));
            }
        }
        let bytes = export_bytes(&state);
        let db = Db::open(&bytes).expect("open");
        check(&db).expect("check");
        let imported = import(&db).expect("import");
        prop_assert_eq!(imported.state, state);
    }
}

/// Raised alarms land in etcd's `alarm` bucket as etcd stores them: the marshaled
/// `AlarmMember` as the key, an empty value.
#[test]
fn raised_alarms_are_exported_as_etcd_stores_them() {
    use crate::proto::etcdserverpb::{AlarmMember, AlarmType};
    let mut state = history();
    state
        .alarms
        .insert((0x8e9e05c52164694d, AlarmType::Nospace as i32));
    let bytes = export_bytes(&state);
    let db = Db::open(&bytes).expect("open");
    let alarm = db.root().bucket(b"alarm").expect("read").expect("alarm");
    let entries: Vec<(Vec<u8>, bool)> = alarm
        .entries()
        .map(|e| {
            let e = e.expect("entry");
            let empty = matches!(e.value, Value::Data(v) if v.is_empty());
            (e.key.to_vec(), empty)
        })
        .collect();
    assert_eq!(entries.len(), 1);
    let member = AlarmMember::decode(entries[0].0.as_slice()).expect("AlarmMember");
    assert_eq!(member.member_id, 0x8e9e05c52164694d);
    assert_eq!(member.alarm, AlarmType::Nospace as i32);
    assert!(entries[0].1, "the value is empty");
}

/// Users (as bcrypt hashes), roles and the auth revision travel in etcd's auth buckets and come
/// back unchanged, enabled flag included.
#[test]
fn the_auth_store_is_exported_as_etcd_stores_it_and_imported_back() {
    use crate::auth::{AuthCommand, PermType, Permission};
    let mut state = history();
    let changes = [
        AuthCommand::UserAdd {
            name: "root".into(),
            password_hash: "$2b$04$abcdefghijklmnopqrstuv".into(),
            no_password: false,
        },
        AuthCommand::UserAdd {
            name: "cn".into(),
            password_hash: String::new(),
            no_password: true,
        },
        AuthCommand::RoleAdd { name: "r".into() },
        AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm: Permission {
                perm_type: PermType::Write,
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
            },
        },
        AuthCommand::UserGrantRole {
            user: "cn".into(),
            role: "r".into(),
        },
        AuthCommand::UserGrantRole {
            user: "root".into(),
            role: "root".into(),
        },
        AuthCommand::Enable,
    ];
    for change in changes {
        assert!(state.apply(&Command::Auth(change)).result.is_ok());
    }
    let bytes = export_bytes(&state);
    let db = Db::open(&bytes).expect("open");
    check(&db).expect("check");
    let auth = db.root().bucket(b"auth").expect("read").expect("auth");
    assert!(matches!(
        auth.get(b"authEnabled"),
        Ok(Some(Value::Data([1])))
    ));
    let revision = 7u64.to_be_bytes();
    assert!(matches!(auth.get(b"authRevision"), Ok(Some(Value::Data(r))) if r == revision));
    let users = db
        .root()
        .bucket(b"authUsers")
        .expect("read")
        .expect("authUsers");
    let Ok(Some(Value::Data(root))) = users.get(b"root") else {
        panic!("no root user");
    };
    let root = crate::proto::authpb::User::decode(root).expect("authpb.User");
    assert_eq!(root.password, b"$2b$04$abcdefghijklmnopqrstuv");
    assert_eq!(root.roles, vec!["root".to_string()]);
    let imported = import(&db).expect("import");
    assert_eq!(imported.state, state);
    assert_eq!((imported.auth_users, imported.auth_roles), (2, 1));
}
