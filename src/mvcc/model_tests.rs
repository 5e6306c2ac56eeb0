//! Property tests: the store against a reference model that keeps the whole key space at every
//! revision in a `BTreeMap`, in the spirit of a differential fuzzer.
//!
//! Guarantees checked: reads at every retained revision match the model (key spans, limit,
//! count); reads below the compaction point fail; the event log rebuilds each revision from the
//! previous one, with correct prev_kv; compaction never changes reads at or above its point;
//! encode/decode is lossless; the store's invariants hold.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

const KEYS: u8 = 6;

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k % KEYS]
}

/// A delete's range_end: `None` one key, `Some(KEYS)` from-key ("\0"), else `[key, end)`.
fn range_end(end: Option<u8>) -> Vec<u8> {
    match end {
        None => Vec::new(),
        Some(e) if e >= KEYS => vec![0],
        Some(e) => key(e),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
        end: Option<u8>,
    },
    /// If `key`'s version equals `version`, apply `success` else `failure`; each change is a
    /// put (`Some(value)`) or a delete (`None`) of a distinct key.
    Txn {
        key: u8,
        version: i64,
        success: BTreeMap<u8, Option<u8>>,
        failure: BTreeMap<u8, Option<u8>>,
    },
    Compact {
        back: i64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let branch =
        || proptest::collection::btree_map(0..KEYS, proptest::option::of(any::<u8>()), 0..4);
    prop_oneof![
        4 => (0..KEYS, any::<u8>()).prop_map(|(key, value)| Op::Put { key, value }),
        2 => (0..KEYS, proptest::option::of(0..=KEYS)).prop_map(|(key, end)| Op::Delete { key, end }),
        2 => (0..KEYS, 0i64..3, branch(), branch())
            .prop_map(|(key, version, success, failure)| Op::Txn { key, version, success, failure }),
        1 => (0i64..4).prop_map(|back| Op::Compact { back }),
    ]
}

/// The key space at every revision: `states[r - 1]` is the state at revision r.
#[derive(Clone)]
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            states: vec![BTreeMap::new()],
            compacted: NEVER_COMPACTED,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64
    }

    fn now(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.states[self.states.len() - 1]
    }

    /// Applies changes in order as one write; a write that changes nothing adds no revision.
    fn write(&mut self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let rev = self.current() + 1;
        let mut next = self.now().clone();
        let mut changed = false;
        for (k, value) in changes {
            match value {
                Some(value) => {
                    let (create_revision, version) = next
                        .get(k)
                        .map_or((rev, 1), |old| (old.create_revision, old.version + 1));
                    let kv = KeyValue {
                        key: k.clone(),
                        create_revision,
                        mod_revision: rev,
                        version,
                        value: value.clone().into(),
                        lease: 0,
                    };
                    next.insert(k.clone(), kv);
                    changed = true;
                }
                None => changed |= next.remove(k).is_some(),
            }
        }
        if changed {
            self.states.push(next);
        }
    }

    fn keys_in(&self, span: KeySpan<'_>) -> Vec<Vec<u8>> {
        self.now()
            .keys()
            .filter(|k| span.contains(k))
            .cloned()
            .collect()
    }
}

fn branch_ops(changes: &BTreeMap<u8, Option<u8>>) -> Vec<RequestOp> {
    changes
        .iter()
        .map(|(k, value)| RequestOp {
            request: Some(match value {
                Some(v) => Request::RequestPut(PutRequest {
                    key: key(*k),
                    value: vec![*v],
                    ..Default::default()
                }),
                None => Request::RequestDeleteRange(DeleteRangeRequest {
                    key: key(*k),
                    ..Default::default()
                }),
            }),
        })
        .collect()
}

fn branch_changes(changes: &BTreeMap<u8, Option<u8>>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    changes
        .iter()
        .map(|(k, value)| (key(*k), value.map(|v| vec![v])))
        .collect()
}

/// Applies `op` to both; returns an error text on disagreement. The events a write returns must
/// be exactly what a replay of its revision gives.
fn step(store: &mut Store, model: &mut Model, op: &Op) -> Result<(), String> {
    step_in(store, model, op, false)
}

/// [`step`], where `in_batches` puts a compaction in force without carrying it out
/// (`begin_compaction`; the caller runs the steps).
fn step_in(store: &mut Store, model: &mut Model, op: &Op, in_batches: bool) -> Result<(), String> {
    let mut events = Vec::new();
    match op {
        Op::Put { key: k, value } => {
            let req = PutRequest {
                key: key(*k),
                value: vec![*value],
                ..Default::default()
            };
            events = store
                .put(&req, &|_| false)
                .map_err(|e| e.to_string())?
                .events;
            model.write(&[(key(*k), Some(vec![*value]))]);
        }
        Op::Delete { key: k, end } => {
            let req = DeleteRangeRequest {
                key: key(*k),
                range_end: range_end(*end),
                prev_kv: false,
            };
            let done = store.delete_range(&req).map_err(|e| e.to_string())?;
            let deleted = done.response.deleted;
            events = done.events;
            let doomed = model.keys_in(KeySpan::new(&req.key, &req.range_end));
            if deleted != doomed.len() as i64 {
                return Err(format!("deleted {deleted}, model {}", doomed.len()));
            }
            model.write(&doomed.into_iter().map(|k| (k, None)).collect::<Vec<_>>());
        }
        Op::Txn {
            key: k,
            version,
            success,
            failure,
        } => {
            let compare = Compare {
                key: key(*k),
                target: CompareTarget::Version as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::Version(*version)),
                ..Default::default()
            };
            let req = TxnRequest {
                compare: vec![compare],
                success: branch_ops(success),
                failure: branch_ops(failure),
            };
            let done = store.txn(&req, &|_| false).map_err(|e| e.to_string())?;
            let holds = model.now().get(&key(*k)).map_or(0, |kv| kv.version) == *version;
            if done.response.succeeded != holds {
                return Err(format!(
                    "txn took {}, model {holds}",
                    done.response.succeeded
                ));
            }
            events = done.events;
            model.write(&branch_changes(if holds { success } else { failure }));
        }
        Op::Compact { back } => {
            let at = model.current() - back;
            let result = if in_batches {
                store.begin_compaction(at)
            } else {
                store.compact(at)
            };
            if at <= model.compacted {
                if !matches!(result, Err(KvError::Compacted { .. })) {
                    return Err(format!(
                        "compact {at} after {}: {result:?}",
                        model.compacted
                    ));
                }
            } else {
                result.map_err(|e| e.to_string())?;
                model.compacted = at;
            }
        }
    }
    if store.current_revision() != model.current() {
        return Err(format!(
            "revision {} vs model {}",
            store.current_revision(),
            model.current()
        ));
    }
    if !events.is_empty() {
        let replayed = store
            .events_since(model.current(), &[0], &[0], 1)
            .map_err(|e| e.to_string())?;
        if replayed != events {
            return Err(format!(
                "write returned {events:?}, replay gives {replayed:?}"
            ));
        }
    }
    Ok(())
}

fn all_at(revision: i64) -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    }
}

/// Every read the model can answer, at every revision.
fn check_reads(store: &Store, model: &Model) -> Result<(), String> {
    for rev in 1..=model.current() {
        let state = &model.states[rev as usize - 1];
        if rev < model.compacted {
            match store.range(&all_at(rev)) {
                Err(KvError::Compacted { .. }) => continue,
                other => {
                    return Err(format!(
                        "read at {rev} below {}: {other:?}",
                        model.compacted
                    ))
                }
            }
        }
        for lo in 0..KEYS {
            for end in (0..=KEYS).map(Some).chain([None]) {
                for limit in [0, 1, 2] {
                    let req = RangeRequest {
                        key: key(lo),
                        range_end: range_end(end),
                        revision: rev,
                        limit,
                        ..Default::default()
                    };
                    let span = KeySpan::new(&req.key, &req.range_end);
                    let want: Vec<&KeyValue> =
                        state.values().filter(|kv| span.contains(&kv.key)).collect();
                    let got = store
                        .range(&req)
                        .map_err(|e| format!("range at {rev}: {e}"))?;
                    let shown = if limit > 0 {
                        want.len().min(limit as usize)
                    } else {
                        want.len()
                    };
                    let same = got.count == want.len() as i64
                        && got.kvs.iter().eq(want[..shown].iter().copied())
                        && got.more == (shown < want.len());
                    if !same {
                        return Err(format!("range {req:?}: got {got:?}, want {want:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Replaying the events of each retained revision onto the previous state gives the next one.
fn check_events(store: &Store, model: &Model) -> Result<(), String> {
    let first = (model.compacted + 1).max(2);
    let events = store
        .events_since(first, &[0], &[0], usize::MAX)
        .map_err(|e| e.to_string())?;
    let mut by_revision: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for event in &events {
        let kv = event.kv.as_ref().ok_or("event without kv")?;
        by_revision.entry(kv.mod_revision).or_default().push(event);
    }
    for rev in first..=model.current() {
        let before = &model.states[rev as usize - 2];
        let mut state = before.clone();
        for event in by_revision.get(&rev).ok_or(format!("no events at {rev}"))? {
            let kv = event.kv.clone().ok_or("event without kv")?;
            let creation = event.r#type == 0 && kv.version == 1;
            let want_prev = if creation {
                None
            } else {
                before.get(&kv.key).cloned()
            };
            if event.prev_kv != want_prev {
                return Err(format!(
                    "prev_kv at {rev}: {:?} vs {want_prev:?}",
                    event.prev_kv
                ));
            }
            if event.r#type == 0 {
                state.insert(kv.key.clone(), kv);
            } else {
                state.remove(&kv.key);
            }
        }
        if state != model.states[rev as usize - 1] {
            return Err(format!("events of {rev} do not rebuild it"));
        }
    }
    Ok(())
}

fn check_codec(store: &Store) -> Result<(), String> {
    let bytes = bincode::serialize(store).map_err(|e| e.to_string())?;
    let decoded: Store = bincode::deserialize(&bytes).map_err(|e| e.to_string())?;
    if &decoded != store || decoded.hash_kv(0) != store.hash_kv(0) {
        return Err("decoded store differs".into());
    }
    let super::UncheckedStore(unchecked) =
        bincode::deserialize(&bytes).map_err(|e| e.to_string())?;
    if &unchecked != store {
        return Err("store decoded without the check differs".into());
    }
    let mut by_revision: Vec<(&[u8], i64)> = store.live_leased_keys_by_revision().collect();
    by_revision.sort();
    if by_revision != store.leased_keys().collect::<Vec<_>>() {
        return Err("leased keys by revision differ from leased keys by key".into());
    }
    let again = bincode::serialize(&decoded).map_err(|e| e.to_string())?;
    if again != bytes {
        return Err("re-encoding differs".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let mut store = Store::new();
        let mut model = Model::new();
        for op in &ops {
            step(&mut store, &mut model, op).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
        store.check().map_err(TestCaseError::fail)?;
        check_reads(&store, &model).map_err(TestCaseError::fail)?;
        check_events(&store, &model).map_err(TestCaseError::fail)?;
        check_codec(&store).map_err(TestCaseError::fail)?;
    }

    /// A compaction carried out a few keys at a time, with writes and further compactions in
    /// between, answers every read, replay, hash and image exactly as one done at once.
    #[test]
    fn compaction_in_batches_answers_as_one_done_at_once(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        budget in 1usize..6,
    ) {
        let (mut lazy, mut lazy_model) = (Store::new(), Model::new());
        let (mut eager, mut eager_model) = (Store::new(), Model::new());
        for op in &ops {
            step_in(&mut lazy, &mut lazy_model, op, true).map_err(TestCaseError::fail)?;
            step_in(&mut eager, &mut eager_model, op, false).map_err(TestCaseError::fail)?;
            lazy.compact_step(budget);
            lazy.check().map_err(TestCaseError::fail)?;
            check_reads(&lazy, &lazy_model).map_err(TestCaseError::fail)?;
            check_events(&lazy, &lazy_model).map_err(TestCaseError::fail)?;
            let from = lazy.compact_revision().max(1);
            prop_assert_eq!(
                lazy.events_since(from, &[0], &[0], usize::MAX),
                eager.events_since(from, &[0], &[0], usize::MAX)
            );
            prop_assert_eq!(lazy.hash_kv(0), eager.hash_kv(0));
            prop_assert_eq!(lazy.hash_kv(from), eager.hash_kv(from));
            let images = (bincode::serialize(&lazy), bincode::serialize(&eager));
            prop_assert_eq!(images.0.map_err(|e| e.to_string()), images.1.map_err(|e| e.to_string()));
            prop_assert!(lazy == eager);
        }
        lazy.finish_compaction();
        prop_assert_eq!(lazy.compaction_pending(), None);
        prop_assert_eq!(lazy.record_count(), eager.record_count());
        prop_assert_eq!(lazy.logical_bytes(), eager.logical_bytes());
    }

    #[test]
    fn compaction_keeps_reads_at_or_above_its_point(
        ops in proptest::collection::vec(op_strategy(), 1..40),
        back in 0i64..20,
    ) {
        let mut store = Store::new();
        let mut model = Model::new();
        for op in ops.iter().filter(|op| !matches!(op, Op::Compact { .. })) {
            step(&mut store, &mut model, op).map_err(TestCaseError::fail)?;
        }
        let at = (store.current_revision() - back).max(1);
        let mut compacted = store.clone();
        compacted.compact(at).map_err(|e| TestCaseError::fail(e.to_string()))?;
        compacted.check().map_err(TestCaseError::fail)?;
        prop_assert!(compacted.record_count() <= store.record_count());
        for rev in at..=store.current_revision() {
            prop_assert_eq!(compacted.range(&all_at(rev)), store.range(&all_at(rev)));
        }
        for rev in 1..at {
            let compacted_read = matches!(compacted.range(&all_at(rev)), Err(KvError::Compacted { .. }));
            prop_assert!(compacted_read);
        }
        prop_assert_eq!(
            compacted.events_since(at + 1, &[0], &[0], usize::MAX),
            store.events_since(at + 1, &[0], &[0], usize::MAX)
        );
    }
}

/// A write of the size-counter property below: keys and values of varied lengths, so a counter
/// that forgets a key, a value or an overhead somewhere cannot match the recount by chance.
#[derive(Clone, Debug)]
enum SizedOp {
    Put { key: u8, value_bytes: usize },
    Delete { key: u8, end: Option<u8> },
    DeleteKeys { keys: Vec<u8> },
    Txn { key: u8, value_bytes: usize },
    Compact { back: i64 },
}

fn sized_key(k: u8) -> Vec<u8> {
    // Lengths 1..=KEYS: key `k` is `k + 1` bytes long.
    vec![b'a' + k % KEYS; usize::from(k % KEYS) + 1]
}

fn sized_op_strategy() -> impl Strategy<Value = SizedOp> {
    prop_oneof![
        4 => (0..KEYS, 0usize..300).prop_map(|(key, value_bytes)| SizedOp::Put { key, value_bytes }),
        2 => (0..KEYS, proptest::option::of(0..KEYS + 1)).prop_map(|(key, end)| SizedOp::Delete { key, end }),
        1 => proptest::collection::vec(0..KEYS, 0..4).prop_map(|keys| SizedOp::DeleteKeys { keys }),
        1 => (0..KEYS, 0usize..300).prop_map(|(key, value_bytes)| SizedOp::Txn { key, value_bytes }),
        1 => (0i64..6).prop_map(|back| SizedOp::Compact { back }),
    ]
}

fn sized_step(store: &mut Store, op: &SizedOp) {
    let end = |end: &Option<u8>| match end {
        None => Vec::new(),
        Some(e) if *e >= KEYS => vec![0],
        Some(e) => sized_key(*e),
    };
    match op {
        SizedOp::Put { key, value_bytes } => {
            let req = PutRequest {
                key: sized_key(*key),
                value: vec![7; *value_bytes],
                ..Default::default()
            };
            let _ = store.put(&req, &|_| false);
        }
        SizedOp::Delete { key, end: e } => {
            let req = DeleteRangeRequest {
                key: sized_key(*key),
                range_end: end(e),
                ..Default::default()
            };
            let _ = store.delete_range(&req);
        }
        SizedOp::DeleteKeys { keys } => {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| sized_key(*k)).collect();
            store.delete_keys(&keys);
        }
        SizedOp::Txn { key, value_bytes } => {
            let put = |k: u8| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: sized_key(k),
                    value: vec![9; *value_bytes],
                    ..Default::default()
                })),
            };
            let delete = RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: sized_key(*key),
                    ..Default::default()
                })),
            };
            let req = TxnRequest {
                compare: Vec::new(),
                success: vec![put(*key + 1), delete],
                failure: Vec::new(),
            };
            let _ = store.txn(&req, &|_| false);
        }
        SizedOp::Compact { back } => {
            let at = store.current_revision() - back;
            let _ = store.compact(at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// `Status.dbSize` is read from a counter kept by writes and compaction, not recounted: after
    /// every write and compaction it must equal the recount, a view taken before a write keeps
    /// its own figure, and a decoded image counts the same as the store it came from.
    #[test]
    fn the_size_counter_matches_a_recount_after_every_change(
        ops in proptest::collection::vec(sized_op_strategy(), 1..60),
    ) {
        let mut store = Store::new();
        prop_assert_eq!(store.logical_bytes(), store.recount_logical_bytes());
        for op in &ops {
            let view = store.clone();
            let before = store.logical_bytes();
            sized_step(&mut store, op);
            prop_assert_eq!(store.logical_bytes(), store.recount_logical_bytes(), "after {:?}", op);
            prop_assert_eq!(view.logical_bytes(), before);
            prop_assert_eq!(view.recount_logical_bytes(), before);
        }
        store.check().map_err(TestCaseError::fail)?;
        let bytes = bincode::serialize(&store).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded: Store = bincode::deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.logical_bytes(), store.logical_bytes());
    }
}
