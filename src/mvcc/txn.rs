//! Transactions: compares, choice of branch (also for nested txns), the checks etcd makes before
//! executing, and execution of the chosen ops as one write.
//!
//! Order, as in etcd: (1) every compare of the txn and of the nested txns on the taken path is
//! evaluated against the store as it was before the txn; (2) puts on the taken path are checked
//! (`ignore_*` needs a live key, a lease must exist), then ranges (revision not in the future nor
//! compacted), all against the pre-txn store; (3) the ops run in order, each seeing the earlier
//! ones' changes, under one new revision.
//!
//! Invariant: a txn either applies completely or changes nothing.
//! Invariant: compares never see the txn's own writes (nested txns included).

use super::write::Writer;
use super::{header, KeySpan, KvError, Record, Store, Written};
use crate::mvcc::validate;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse};

/// The branch a txn takes and, in op order, the paths of the nested txns in that branch.
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

/// The fields of a pair that a compare can look at.
#[derive(Default)]
struct Compared<'a> {
    value: &'a [u8],
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl Store {
    /// Applies a txn. `lease_exists` answers whether a lease ID is granted.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Written<TxnResponse>, KvError> {
        validate::check_txn_shape(req)?;
        let path = self.txn_path(req);
        let mut taken = Vec::new();
        taken_ops(req, &path, &mut taken);
        for op in &taken {
            self.check_taken_put(op, lease_exists)?;
        }
        for op in &taken {
            self.check_taken_range(op)?;
        }
        // Only an ignore_* put can fail mid-txn (its key deleted by an earlier op the duplicate
        // check does not see, a from-key delete); keep a copy to roll back to then. O(1).
        let backup = taken.iter().any(|op| is_ignore_put(op)).then(|| self.clone());
        let mut writer = Writer::new(self);
        match execute(&mut writer, req, &path) {
            Ok(mut response) => {
                let (revision, events) = writer.finish();
                response.header = header(revision);
                Ok(Written { response, events })
            }
            Err(err) => {
                drop(writer);
                match backup {
                    Some(backup) => *self = backup,
                    None => unreachable!("txn op failed after its checks: {err}"),
                }
                Err(err)
            }
        }
    }

    fn txn_path(&self, req: &TxnRequest) -> TxnPath {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c));
        let nested = branch(req, succeeded)
            .iter()
            .filter_map(|op| match &op.request {
                Some(Request::RequestTxn(inner)) => Some(self.txn_path(inner)),
                _ => None,
            })
            .collect();
        TxnPath { succeeded, nested }
    }

    /// A compare holds if every key in its span satisfies it; with no key, VALUE compares fail
    /// and the others compare against 0.
    fn compare_holds(&self, compare: &Compare) -> bool {
        let at = self.current_revision;
        let mut seen = false;
        for (_, history) in self.keys_in(KeySpan::new(&compare.key, &compare.range_end)) {
            let Some(rev) = history.visible_at(at) else { continue };
            let Some(Record::Put { value, create_revision, version, lease, .. }) = self.record(rev) else {
                continue;
            };
            seen = true;
            let fields = Compared {
                value,
                create_revision: *create_revision,
                mod_revision: rev.main,
                version: *version,
                lease: *lease,
            };
            if !compare_fields(compare, &fields) {
                return false;
            }
        }
        seen || (compare.target != CompareTarget::Value as i32 && compare_fields(compare, &Compared::default()))
    }

    fn check_taken_put(&self, op: &RequestOp, lease_exists: &dyn Fn(i64) -> bool) -> Result<(), KvError> {
        let Some(Request::RequestPut(put)) = &op.request else { return Ok(()) };
        if (put.ignore_value || put.ignore_lease) && self.live(&put.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        if put.lease != 0 && !lease_exists(put.lease) {
            return Err(KvError::LeaseNotFound { id: put.lease });
        }
        Ok(())
    }

    /// etcd's pre-check of a range inside a txn: 0 is fine, otherwise it must be neither above
    /// the current revision nor below the compaction point.
    fn check_taken_range(&self, op: &RequestOp) -> Result<(), KvError> {
        let Some(Request::RequestRange(range)) = &op.request else { return Ok(()) };
        let requested = range.revision;
        if requested == 0 {
            Ok(())
        } else if requested > self.current_revision {
            Err(KvError::FutureRev { requested, current_revision: self.current_revision })
        } else if requested < self.compact_revision {
            Err(KvError::Compacted { requested, compact_revision: self.compact_revision })
        } else {
            Ok(())
        }
    }
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Collects the non-txn ops on the taken path, depth first in execution order.
fn taken_ops<'r>(req: &'r TxnRequest, path: &TxnPath, out: &mut Vec<&'r RequestOp>) {
    let mut nested = path.nested.iter();
    for op in branch(req, path.succeeded) {
        match &op.request {
            Some(Request::RequestTxn(inner)) => {
                if let Some(inner_path) = nested.next() {
                    taken_ops(inner, inner_path, out);
                }
            }
            _ => out.push(op),
        }
    }
}

fn is_ignore_put(op: &RequestOp) -> bool {
    matches!(&op.request, Some(Request::RequestPut(put)) if put.ignore_value || put.ignore_lease)
}

/// Runs the taken branch. Inner responses carry only the revision in their headers; a nested
/// txn's header is empty (etcd).
fn execute(writer: &mut Writer<'_>, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, KvError> {
    let ops = branch(req, path.succeeded);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            None => None,
            Some(Request::RequestRange(range)) => Some(Response::ResponseRange(writer.range_request(range))),
            Some(Request::RequestPut(put)) => Some(Response::ResponsePut(writer.put_request(put)?)),
            Some(Request::RequestDeleteRange(delete)) => {
                Some(Response::ResponseDeleteRange(writer.delete_request(delete)))
            }
            Some(Request::RequestTxn(inner)) => {
                let Some(inner_path) = nested.next() else {
                    unreachable!("txn path was built from this request")
                };
                let mut inner_response = execute(writer, inner, inner_path)?;
                inner_response.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(inner_response))
            }
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse { header: None, succeeded: path.succeeded, responses })
}

/// One compare against one pair. A target value of the wrong kind counts as 0 or empty; an
/// unknown target compares equal and an unknown result holds (etcd).
fn compare_fields(compare: &Compare, kv: &Compared<'_>) -> bool {
    use TargetUnion as U;
    let union = compare.target_union.as_ref();
    let ordering = match CompareTarget::try_from(compare.target) {
        Ok(CompareTarget::Value) => kv.value.cmp(match union {
            Some(U::Value(v)) => v.as_slice(),
            _ => &[],
        }),
        Ok(CompareTarget::Version) => kv.version.cmp(&match union {
            Some(U::Version(v)) => *v,
            _ => 0,
        }),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&match union {
            Some(U::CreateRevision(v)) => *v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&match union {
            Some(U::ModRevision(v)) => *v,
            _ => 0,
        }),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&match union {
            Some(U::Lease(v)) => *v,
            _ => 0,
        }),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering.is_eq(),
        Ok(CompareResult::NotEqual) => ordering.is_ne(),
        Ok(CompareResult::Greater) => ordering.is_gt(),
        Ok(CompareResult::Less) => ordering.is_lt(),
        Err(_) => true,
    }
}
