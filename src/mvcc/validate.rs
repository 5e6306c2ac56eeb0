//! Request validation etcd performs before a request is proposed: empty keys, flag conflicts,
//! sort options, the txn op budget and duplicate keys inside a txn branch.
//!
//! The server calls these to reject a request early; `Store` calls them again (without the op
//! budget, a per-member setting) so that applying an invalid command is still a deterministic
//! error and never a half-applied write.
//!
//! Duplicate keys (etcd's rule, including its blind spots): inside one list of ops, recursing into
//! nested txns, a key may not be put twice nor be put and covered by a delete. Deletes are taken
//! literally as `[key, range_end)`, so a delete with range_end `"\0"` covers no put; overlapping
//! deletes are fine; a nested txn's then- and else-branch may put the same key; deletes of a
//! nested txn only count against puts checked after it.
//!
//! Invariant: validation reads only the request, never the store.

use std::collections::BTreeSet;

use super::KvError;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// etcd's default `--max-txn-ops`.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;

/// A range needs a key and known sort options.
pub fn check_range(req: &RangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err() || SortTarget::try_from(req.sort_target).is_err() {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// A put needs a key; `ignore_value` forbids a value and `ignore_lease` a lease.
pub fn check_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// A delete range needs a key.
pub fn check_delete_range(req: &DeleteRangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// Everything etcd checks on a txn before proposing it, with `ops_max` as `--max-txn-ops`.
pub fn check_txn(req: &TxnRequest, ops_max: usize) -> Result<(), KvError> {
    check_txn_ops(req, Some(ops_max))?;
    check_duplicates(req)
}

/// `check_txn` without the op budget: what apply re-checks.
pub(crate) fn check_txn_shape(req: &TxnRequest) -> Result<(), KvError> {
    check_txn_ops(req, None)?;
    check_duplicates(req)
}

/// The largest of the compare, success and failure list lengths must fit the budget; nested
/// txns get what is left of it. Then every op is checked in order.
fn check_txn_ops(req: &TxnRequest, ops_max: Option<usize>) -> Result<(), KvError> {
    let ops = req.compare.len().max(req.success.len()).max(req.failure.len());
    if let Some(ops_max) = ops_max {
        if ops > ops_max {
            return Err(KvError::TooManyOps { ops, ops_max });
        }
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    let nested_max = ops_max.map(|max| max - ops);
    req.success.iter().chain(&req.failure).try_for_each(|op| check_op(op, nested_max))
}

fn check_op(op: &RequestOp, ops_max: Option<usize>) -> Result<(), KvError> {
    match &op.request {
        None => Err(KvError::KeyNotFound),
        Some(Request::RequestRange(range)) => check_range(range),
        Some(Request::RequestPut(put)) => check_put(put),
        Some(Request::RequestDeleteRange(delete)) => check_delete_range(delete),
        Some(Request::RequestTxn(txn)) => check_txn_ops(txn, ops_max),
    }
}

fn check_duplicates(req: &TxnRequest) -> Result<(), KvError> {
    branch_writes(&req.success)?;
    branch_writes(&req.failure)?;
    Ok(())
}

/// A delete as the duplicate check sees it: `[start, end)`, or the one key when `end` is empty.
struct Deleted<'a> {
    start: &'a [u8],
    end: &'a [u8],
}

impl Deleted<'_> {
    fn covers(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == self.start
        } else {
            key >= self.start && key < self.end
        }
    }
}

/// The keys a list of ops (with nested txns) puts and the spans it deletes.
struct BranchWrites<'a> {
    puts: BTreeSet<&'a [u8]>,
    deletes: Vec<Deleted<'a>>,
}

impl<'a> BranchWrites<'a> {
    fn add_put(&mut self, key: &'a [u8]) -> Result<(), KvError> {
        if self.covered(key) || !self.puts.insert(key) {
            return Err(KvError::DuplicateKey);
        }
        Ok(())
    }

    fn covered(&self, key: &[u8]) -> bool {
        self.deletes.iter().any(|d| d.covers(key))
    }
}

/// Checks one op list: its own deletes first, then each nested txn's puts (then-branch and
/// else-branch may share keys), then its own puts.
fn branch_writes(ops: &[RequestOp]) -> Result<BranchWrites<'_>, KvError> {
    let mut writes = BranchWrites { puts: BTreeSet::new(), deletes: Vec::new() };
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            writes.deletes.push(Deleted { start: &d.key, end: &d.range_end });
        }
    }
    for op in ops {
        let Some(Request::RequestTxn(txn)) = &op.request else { continue };
        let then = branch_writes(&txn.success)?;
        let otherwise = branch_writes(&txn.failure)?;
        for key in &then.puts {
            writes.add_put(key)?;
        }
        for key in &otherwise.puts {
            if writes.covered(key) || (writes.puts.contains(key) && !then.puts.contains(key)) {
                return Err(KvError::DuplicateKey);
            }
            writes.puts.insert(key);
        }
        writes.deletes.extend(then.deletes);
        writes.deletes.extend(otherwise.deletes);
    }
    for op in ops {
        if let Some(Request::RequestPut(put)) = &op.request {
            writes.add_put(&put.key)?;
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::Compare;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, range_end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: range_end.into(),
                ..Default::default()
            })),
        }
    }

    fn get(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: key.into(), ..Default::default() })),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }

    fn cmp(key: &str) -> Compare {
        Compare { key: key.into(), ..Default::default() }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    /// Duplicate-key rules, one case per line: (name, txn, expected).
    #[test]
    fn duplicate_key_table() {
        let dup = Err(KvError::DuplicateKey);
        let cases: Vec<(&str, TxnRequest, Result<(), KvError>)> = vec![
            ("distinct puts", txn(vec![put("a"), put("b")], vec![]), Ok(())),
            ("put twice", txn(vec![put("a"), put("a")], vec![]), dup.clone()),
            ("put twice in failure", txn(vec![], vec![put("a"), put("a")]), dup.clone()),
            ("same key in success and failure", txn(vec![put("a")], vec![put("a")]), Ok(())),
            ("put then point delete", txn(vec![put("a"), del("a", "")], vec![]), dup.clone()),
            ("point delete then put", txn(vec![del("a", ""), put("a")], vec![]), dup.clone()),
            ("put inside deleted range", txn(vec![del("a", "c"), put("b")], vec![]), dup.clone()),
            ("put at range end", txn(vec![del("a", "c"), put("c")], vec![]), Ok(())),
            ("overlapping deletes", txn(vec![del("a", "c"), del("b", "d")], vec![]), Ok(())),
            ("same delete twice", txn(vec![del("a", ""), del("a", "")], vec![]), Ok(())),
            ("from-key delete is not a range here", txn(vec![del("a", "\0"), put("b")], vec![]), Ok(())),
            ("range and put", txn(vec![get("a"), put("a")], vec![]), Ok(())),
            (
                "nested put vs outer put",
                txn(vec![put("a"), nested(vec![put("a")], vec![])], vec![]),
                dup.clone(),
            ),
            (
                "nested put vs outer delete",
                txn(vec![del("a", "b"), nested(vec![], vec![put("a")])], vec![]),
                dup.clone(),
            ),
            (
                "nested delete vs outer put",
                txn(vec![put("a"), nested(vec![del("a", "")], vec![])], vec![]),
                dup.clone(),
            ),
            (
                "then and else of one nested txn",
                txn(vec![nested(vec![put("a")], vec![put("a")])], vec![]),
                Ok(()),
            ),
            (
                "two nested txns put the same key",
                txn(vec![nested(vec![put("a")], vec![]), nested(vec![], vec![put("a")])], vec![]),
                dup.clone(),
            ),
            (
                "earlier nested delete vs later nested put",
                txn(vec![nested(vec![del("a", "")], vec![]), nested(vec![put("a")], vec![])], vec![]),
                dup.clone(),
            ),
            (
                "earlier nested put vs later nested delete (etcd lets it pass)",
                txn(vec![nested(vec![put("a")], vec![]), nested(vec![del("a", "")], vec![])], vec![]),
                Ok(()),
            ),
            (
                "then-put vs else-delete of one nested txn",
                txn(vec![nested(vec![put("a")], vec![del("a", "")])], vec![]),
                Ok(()),
            ),
            (
                "doubly nested duplicate",
                txn(vec![nested(vec![nested(vec![put("a"), put("a")], vec![])], vec![])], vec![]),
                dup.clone(),
            ),
            (
                "else-put clashing with an earlier sibling",
                txn(vec![put("a"), nested(vec![], vec![put("a")])], vec![]),
                dup,
            ),
        ];
        for (name, req, want) in cases {
            assert_eq!(check_txn(&req, TXN_OPS_MAX_DEFAULT), want, "{name}");
        }
    }

    #[test]
    fn op_budget() {
        let puts = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
        let at_limit = txn(puts(4), vec![]);
        assert_eq!(check_txn(&at_limit, 4), Ok(()));
        assert_eq!(check_txn(&at_limit, 3), Err(KvError::TooManyOps { ops: 4, ops_max: 3 }));
        // The largest of the three lists counts, not their sum.
        let spread = TxnRequest { compare: vec![cmp("a"), cmp("b")], success: puts(3), failure: puts(2) };
        assert_eq!(check_txn(&spread, 3), Ok(()));
        let compares = TxnRequest { compare: (0..5).map(|_| cmp("a")).collect(), ..Default::default() };
        assert_eq!(check_txn(&compares, 4), Err(KvError::TooManyOps { ops: 5, ops_max: 4 }));
        // A nested txn gets the budget left after its parent: 4 - 2 = 2.
        let inner_fits = txn(vec![put("x"), nested(puts(2), vec![])], vec![]);
        assert_eq!(check_txn(&inner_fits, 4), Ok(()));
        let inner_too_big = txn(vec![put("x"), nested(puts(3), vec![])], vec![]);
        assert_eq!(check_txn(&inner_too_big, 4), Err(KvError::TooManyOps { ops: 3, ops_max: 2 }));
        // Apply does not enforce the budget.
        assert_eq!(check_txn_shape(&txn(puts(200), vec![])), Ok(()));
        assert_eq!(check_txn(&txn(puts(129), vec![]), TXN_OPS_MAX_DEFAULT).unwrap_err().etcd_message(),
            "etcdserver: too many operations in txn request");
    }

    #[test]
    fn op_shape_errors() {
        let empty_op = txn(vec![RequestOp { request: None }], vec![]);
        assert_eq!(check_txn(&empty_op, 8), Err(KvError::KeyNotFound));
        let empty_compare = TxnRequest { compare: vec![cmp("")], ..Default::default() };
        assert_eq!(check_txn(&empty_compare, 8), Err(KvError::EmptyKey));
        assert_eq!(check_txn(&txn(vec![], vec![put("")]), 8), Err(KvError::EmptyKey));
        assert_eq!(check_txn(&txn(vec![get("")], vec![]), 8), Err(KvError::EmptyKey));
        assert_eq!(check_txn(&txn(vec![del("", "")], vec![]), 8), Err(KvError::EmptyKey));
        let nested_empty = txn(vec![nested(vec![RequestOp { request: None }], vec![])], vec![]);
        assert_eq!(check_txn(&nested_empty, 8), Err(KvError::KeyNotFound));
        let value_and_ignore = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&value_and_ignore), Err(KvError::ValueProvided));
        let lease_and_ignore =
            PutRequest { key: b"k".to_vec(), lease: 5, ignore_lease: true, ..Default::default() };
        assert_eq!(check_put(&lease_and_ignore), Err(KvError::LeaseProvided));
        let bad_sort = RangeRequest { key: b"k".to_vec(), sort_order: 3, ..Default::default() };
        assert_eq!(check_range(&bad_sort), Err(KvError::InvalidSortOption));
        let bad_target = RangeRequest { key: b"k".to_vec(), sort_target: 5, ..Default::default() };
        assert_eq!(check_range(&bad_target), Err(KvError::InvalidSortOption));
    }
}
