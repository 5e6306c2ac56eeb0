//! Writer → reader round trips (worked cases and a property), the whole-file check on what the
//! writer produces, and the reader's refusals of damaged files.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::layout::{Meta, PageHeader, FLAG_BRANCH, PAGE_HEADER_BYTES};
use super::*;

/// A bucket's contents as plain data, the oracle the files are compared against.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Value(Vec<u8>),
    Bucket(Tree),
}

type Tree = BTreeMap<Vec<u8>, Node>;

fn write_tree(tree: &Tree, options: WriterOptions) -> Vec<u8> {
    fn walk(w: &mut Writer<Vec<u8>>, tree: &Tree) {
        for (key, node) in tree {
            match node {
                Node::Value(v) => w.put(key, v).expect("put in order"),
                Node::Bucket(sub) => {
                    w.begin_bucket(key).expect("bucket in order");
                    walk(w, sub);
                    w.end_bucket().expect("bucket open");
                }
            }
        }
    }
    let mut writer = Writer::new(Vec::new(), options).expect("valid options");
    walk(&mut writer, tree);
    let (bytes, summary) = writer.finish().expect("finish");
    assert_eq!(bytes.len() as u64, summary.size_bytes);
    bytes
}

fn read_tree(bucket: &Bucket<'_>) -> Result<Tree, BboltError> {
    let mut tree = Tree::new();
    for entry in bucket.entries() {
        let entry = entry?;
        let node = match entry.value {
            Value::Data(v) => Node::Value(v.to_vec()),
            Value::Bucket(b) => Node::Bucket(read_tree(&b)?),
        };
        tree.insert(entry.key.to_vec(), node);
    }
    Ok(tree)
}

fn round_trip(tree: &Tree, options: WriterOptions) -> Vec<u8> {
    let bytes = write_tree(tree, options);
    let db = Db::open(&bytes).expect("open what we wrote");
    assert_eq!(db.meta().txid, options.txid);
    check(&db).expect("what we wrote passes the check");
    assert_eq!(&read_tree(&db.root()).expect("read back"), tree);
    bytes
}

fn bucket(entries: &[(&[u8], Node)]) -> Node {
    Node::Bucket(
        entries
            .iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect(),
    )
}

fn etcd_like(keys: usize, value_bytes: usize) -> Tree {
    let mut key = Tree::new();
    for i in 0..keys as u64 {
        let mut rev = i.to_be_bytes().to_vec();
        rev.push(b'_');
        rev.extend_from_slice(&0u64.to_be_bytes());
        key.insert(rev, Node::Value(vec![(i % 251) as u8; value_bytes]));
    }
    let mut tree = Tree::new();
    tree.insert(b"key".to_vec(), Node::Bucket(key));
    tree.insert(b"lease".to_vec(), Node::Bucket(Tree::new()));
    tree.insert(
        b"meta".to_vec(),
        bucket(&[(
            b"consistent_index",
            Node::Value(7u64.to_be_bytes().to_vec()),
        )]),
    );
    tree
}

#[test]
fn an_empty_file_has_an_empty_root_bucket() {
    for store_freelist in [false, true] {
        let options = WriterOptions {
            store_freelist,
            ..WriterOptions::default()
        };
        let bytes = round_trip(&Tree::new(), options);
        let expected_pages = if store_freelist { 4 } else { 3 };
        assert_eq!(bytes.len(), expected_pages * 4096);
    }
}

#[test]
fn small_buckets_are_inline_and_large_ones_are_trees() {
    let bytes = round_trip(&etcd_like(2000, 100), WriterOptions::default());
    let db = Db::open(&bytes).expect("open");
    let root = db.root();
    let key = root.bucket(b"key").expect("read").expect("key bucket");
    let meta = root.bucket(b"meta").expect("read").expect("meta bucket");
    let lease = root.bucket(b"lease").expect("read").expect("lease bucket");
    assert!(key.root_page().is_some());
    assert_eq!(meta.root_page(), None);
    assert_eq!(lease.root_page(), None);
    // 2000 entries of ~150 bytes need many leaves, so the key bucket's root is a branch.
    let root_page = key.root_page().expect("tree");
    let header = PageHeader::decode(&bytes[root_page as usize * 4096..]);
    assert_eq!(header.flags, FLAG_BRANCH);
}

#[test]
fn deep_trees_and_overflow_values_round_trip_with_small_pages() {
    let mut tree = etcd_like(5000, 20);
    // A value spanning many pages, and one just over a page.
    tree.insert(
        b"big".to_vec(),
        bucket(&[
            (b"a", Node::Value(vec![1; 10_000])),
            (b"b", Node::Value(vec![2; 600])),
            (b"c", Node::Value(Vec::new())),
        ]),
    );
    for page_bytes in [512, 1024, 4096, 16384] {
        let options = WriterOptions {
            page_bytes,
            store_freelist: page_bytes == 1024,
            txid: 9,
        };
        round_trip(&tree, options);
    }
}

#[test]
fn nested_buckets_round_trip() {
    let inner = bucket(&[(b"x", Node::Value(b"1".to_vec())), (b"y", bucket(&[]))]);
    let many: Vec<(Vec<u8>, Node)> = (0..300u32)
        .map(|i| (i.to_be_bytes().to_vec(), Node::Value(vec![0; 30])))
        .collect();
    let mut tree = Tree::new();
    tree.insert(
        b"a".to_vec(),
        bucket(&[
            (b"inner", inner.clone()),
            (b"v", Node::Value(b"2".to_vec())),
        ]),
    );
    tree.insert(b"b".to_vec(), Node::Bucket(many.into_iter().collect()));
    tree.insert(
        b"c".to_vec(),
        bucket(&[(b"deeper", bucket(&[(b"inner", inner)]))]),
    );
    round_trip(
        &tree,
        WriterOptions {
            page_bytes: 512,
            ..WriterOptions::default()
        },
    );
}

#[test]
fn the_writer_refuses_keys_out_of_order() {
    let mut w = Writer::new(Vec::new(), WriterOptions::default()).expect("options");
    w.begin_bucket(b"b").expect("first");
    w.put(b"k2", b"").expect("first key");
    assert!(matches!(
        w.put(b"k1", b""),
        Err(WriteError::KeyOrder { .. })
    ));
    assert!(matches!(
        w.put(b"k2", b""),
        Err(WriteError::KeyOrder { .. })
    ));
    assert!(matches!(w.put(b"", b""), Err(WriteError::BadKey { .. })));
    w.end_bucket().expect("open");
    assert!(matches!(
        w.begin_bucket(b"a"),
        Err(WriteError::KeyOrder { .. })
    ));
    assert!(matches!(w.end_bucket(), Err(WriteError::NoOpenBucket)));
}

#[test]
fn meta_pages_carry_txid_and_txid_minus_one() {
    let options = WriterOptions {
        txid: 5,
        ..WriterOptions::default()
    };
    let bytes = write_tree(&etcd_like(3, 3), options);
    let meta0 = Meta::decode(&bytes).expect("meta 0");
    let meta1 = Meta::decode(&bytes[4096..]).expect("meta 1");
    assert_eq!((meta0.txid, meta1.txid), (5, 4));
    assert_eq!(meta0.root, meta1.root);
}

// ---- refusals ----

fn corrupt_meta_checksum(bytes: &mut [u8], page: usize) {
    bytes[page * 4096 + PAGE_HEADER_BYTES + 60] ^= 0xff;
}

#[test]
fn a_bad_meta_checksum_falls_back_to_the_other_meta_and_two_bad_ones_are_refused() {
    let mut bytes = write_tree(&etcd_like(10, 10), WriterOptions::default());
    corrupt_meta_checksum(&mut bytes, 0);
    let db = Db::open(&bytes).expect("meta 1 still valid");
    assert_eq!(db.meta().txid, 1);
    corrupt_meta_checksum(&mut bytes, 1);
    let err = Db::open(&bytes).expect_err("no valid meta");
    assert!(matches!(err, BboltError::NoValidMeta { .. }), "{err}");
    assert!(err.to_string().contains("bad meta checksum"), "{err}");
}

#[test]
fn a_truncated_file_is_refused() {
    let bytes = write_tree(&etcd_like(100, 100), WriterOptions::default());
    let err = Db::open(&bytes[..bytes.len() - 4096]).expect_err("truncated");
    assert!(matches!(err, BboltError::Truncated { .. }), "{err}");
    assert!(matches!(
        Db::open(&bytes[..100]),
        Err(BboltError::TooSmall { .. })
    ));
}

/// Rewrites a meta's root and checksum in both meta pages.
fn set_root(bytes: &mut [u8], root: u64) {
    for page in 0..2 {
        let mut meta = Meta::decode(&bytes[page * 4096..]).expect("valid meta");
        meta.root = root;
        let image = meta.encode_page(page as u64);
        bytes[page * 4096..(page + 1) * 4096].copy_from_slice(&image);
    }
}

fn first_error(bytes: &[u8]) -> BboltError {
    let db = match Db::open(bytes) {
        Ok(db) => db,
        Err(e) => return e,
    };
    match check(&db) {
        Err(e) => e,
        Ok(_) => panic!("a damaged file passed the check"),
    }
}

#[test]
fn a_branch_pointing_at_itself_is_a_cycle_not_a_hang() {
    let mut bytes = write_tree(&etcd_like(2000, 100), WriterOptions::default());
    let db = Db::open(&bytes).expect("open");
    let key = db.root().bucket(b"key").expect("read").expect("bucket");
    let branch = key.root_page().expect("tree") as usize;
    // Child 1 of the branch now points back at the branch.
    let element = branch * 4096 + PAGE_HEADER_BYTES + 16;
    bytes[element + 8..element + 16].copy_from_slice(&(branch as u64).to_le_bytes());
    let err = first_error(&bytes);
    assert!(
        matches!(err, BboltError::PageReferencedTwice { .. }),
        "{err}"
    );
    // Iterating without the check stops on key order instead of looping.
    let db = Db::open(&bytes).expect("open");
    let key = db.root().bucket(b"key").expect("read").expect("bucket");
    let result: Result<Vec<_>, _> = key.entries().collect();
    assert!(
        matches!(result, Err(BboltError::KeyOrder { .. })),
        "{result:?}"
    );
}

#[test]
fn out_of_bounds_and_mislabelled_pages_are_refused() {
    let bytes = write_tree(&etcd_like(10, 10), WriterOptions::default());
    let pgid = Db::open(&bytes).expect("open").meta().pgid;
    let mut beyond = bytes.clone();
    set_root(&mut beyond, pgid + 5);
    assert!(matches!(first_error(&beyond), BboltError::BadMeta { .. }));

    let mut wrong_id = bytes.clone();
    let root = Db::open(&bytes).expect("open").meta().root as usize;
    wrong_id[root * 4096] ^= 1;
    let err = first_error(&wrong_id);
    assert!(matches!(err, BboltError::PageIdMismatch { .. }), "{err}");

    let mut bad_flags = bytes.clone();
    bad_flags[root * 4096 + 8] = 0x03;
    let err = first_error(&bad_flags);
    assert!(matches!(err, BboltError::BadPageFlags { .. }), "{err}");
}

#[test]
fn keys_out_of_order_are_refused() {
    let tree = bucket(&[(b"a", Node::Value(vec![])), (b"b", Node::Value(vec![]))]);
    let mut top = Tree::new();
    top.insert(b"k".to_vec(), tree);
    let mut bytes = write_tree(&top, WriterOptions::default());
    // The inline bucket's data area holds "a" then "b"; swap them.
    let at = bytes
        .windows(2)
        .position(|w| w == b"ab")
        .expect("keys adjacent in the data area");
    bytes.swap(at, at + 1);
    let err = first_error(&bytes);
    assert!(matches!(err, BboltError::KeyOrder { .. }), "{err}");
}

#[test]
fn unreachable_pages_are_refused_only_when_a_freelist_is_stored() {
    for store_freelist in [false, true] {
        let options = WriterOptions {
            store_freelist,
            ..WriterOptions::default()
        };
        let mut bytes = write_tree(&etcd_like(10, 10), options);
        // Append a stray page and raise the high-water mark over it.
        let pgid = bytes.len() / 4096;
        bytes.resize(bytes.len() + 4096, 0);
        for page in 0..2 {
            let mut meta = Meta::decode(&bytes[page * 4096..]).expect("valid meta");
            meta.pgid = pgid as u64 + 1;
            bytes[page * 4096..(page + 1) * 4096].copy_from_slice(&meta.encode_page(page as u64));
        }
        let db = Db::open(&bytes).expect("open");
        match (store_freelist, check(&db)) {
            (false, Ok(_)) => {}
            (true, Err(BboltError::Unreachable { id })) => assert_eq!(id, pgid as u64),
            (_, other) => panic!("freelist {store_freelist}: {other:?}"),
        }
    }
}

// ---- properties ----

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..12)
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..3000),
    ]
}

fn tree_strategy() -> impl Strategy<Value = Tree> {
    let leaf = prop::collection::btree_map(
        key_strategy(),
        value_strategy().prop_map(Node::Value),
        0..60,
    );
    leaf.prop_recursive(3, 400, 40, |inner| {
        prop::collection::btree_map(
            key_strategy(),
            prop_oneof![
                3 => value_strategy().prop_map(Node::Value),
                1 => inner.prop_map(Node::Bucket),
            ],
            0..40,
        )
    })
}

fn options_strategy() -> impl Strategy<Value = WriterOptions> {
    (
        prop_oneof![Just(512u32), Just(1024), Just(4096)],
        any::<bool>(),
        2u64..100,
    )
        .prop_map(|(page_bytes, store_freelist, txid)| WriterOptions {
            page_bytes,
            store_freelist,
            txid,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn whatever_the_writer_writes_the_reader_reads_back(
        tree in tree_strategy(),
        options in options_strategy(),
    ) {
        round_trip(&tree, options);
    }

    #[test]
    fn damaged_files_never_panic_the_reader(
        tree in tree_strategy(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = write_tree(&tree, WriterOptions { page_bytes: 512, ..WriterOptions::default() });
        for (at, byte) in damage {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(db) = Db::open(&bytes) {
            let _ = check(&db);
            let _ = read_tree(&db.root());
        }
    }
}

// ---- the fuzz corpus, replayed on stable ----

/// Files in `fuzz/corpus/bbolt_read/`: real etcd 3.4/3.5 files (`etcd*`, made by `etcdctl
/// snapshot save` and copied from `member/snap/db` after puts, a delete, a lease and a
/// compaction) must open, pass the check and import; damaged ones (`bad-*`) must be refused;
/// none may panic.
#[test]
fn fuzz_corpus_real_etcd_files_import_and_damaged_ones_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bbolt_read");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "corpus too small: {names:?}");
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("corpus file");
        let opened = Db::open(&bytes);
        let checked = opened.as_ref().ok().map(check);
        if name.starts_with("etcd") {
            let db = opened.unwrap_or_else(|e| panic!("{name}: {e}"));
            checked
                .expect("checked")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let imported = crate::backend::import(&db).unwrap_or_else(|e| panic!("{name}: {e}"));
            // 40 puts, a delete, a lease put (and the readiness probe), compacted at 20.
            assert!(imported.state.kv.current_revision() >= 43, "{name}");
            assert_eq!(imported.state.kv.compact_revision(), 20, "{name}");
            assert_eq!(imported.state.leases.len(), 1, "{name}");
        } else if name.starts_with("bad") {
            let refused = opened.is_err() || matches!(checked, Some(Err(_)));
            assert!(refused, "{name} was accepted");
        }
    }
}
