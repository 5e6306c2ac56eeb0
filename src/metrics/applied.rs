//! What apply did, counted into etcd's mvcc and slow-apply families. Called by the state
//! machine after each command; `apply` itself stays free of side effects.
//!
//! Invariant: only commands that succeeded are counted (etcd counts the operations its store
//! executed; a refused request never reaches the store).

use std::time::Duration;

use crate::apply::{Applied, Command, Outcome};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{RequestOp, ResponseOp, TxnRequest, TxnResponse};

/// Counts one applied command that took `elapsed` to apply.
pub fn count_applied(cmd: &Command, applied: &Applied, elapsed: Duration) {
    if elapsed > super::SLOW_APPLY {
        super::SLOW_APPLY_TOTAL.inc();
    }
    match (cmd, &applied.result) {
        (Command::Put(_), Ok(Outcome::Put(_))) => super::MVCC_PUT.inc(),
        (Command::DeleteRange(_), Ok(Outcome::DeleteRange(_))) => super::MVCC_DELETE.inc(),
        (Command::Txn(req), Ok(Outcome::Txn(resp))) => {
            let ops = txn_ops(req, resp);
            super::count_txn(req.compare.len() as u64, ops.puts, ops.deletes, ops.ranges);
        }
        _ => {}
    }
}

/// The store operations of a txn's executed branch, nested txns included (their compares are
/// reads too).
#[derive(Debug, Default, PartialEq, Eq)]
struct TxnOps {
    puts: u64,
    deletes: u64,
    ranges: u64,
}

fn txn_ops(req: &TxnRequest, resp: &TxnResponse) -> TxnOps {
    let mut ops = TxnOps::default();
    add_branch(&mut ops, req, resp);
    ops
}

fn add_branch(ops: &mut TxnOps, req: &TxnRequest, resp: &TxnResponse) {
    let branch: &[RequestOp] = if resp.succeeded {
        &req.success
    } else {
        &req.failure
    };
    for (op, answer) in branch.iter().zip(resp.responses.iter()) {
        match (&op.request, answer) {
            (Some(Request::RequestRange(_)), _) => ops.ranges += 1,
            (Some(Request::RequestPut(_)), _) => ops.puts += 1,
            (Some(Request::RequestDeleteRange(_)), _) => ops.deletes += 1,
            (
                Some(Request::RequestTxn(inner)),
                ResponseOp {
                    response: Some(Response::ResponseTxn(inner_resp)),
                },
            ) => {
                ops.ranges += inner.compare.len() as u64;
                add_branch(ops, inner, inner_resp);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RangeResponse};

    fn put() -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        }
    }

    fn range() -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest::default())),
        }
    }

    fn answered(n: usize) -> Vec<ResponseOp> {
        vec![
            ResponseOp {
                response: Some(Response::ResponseRange(RangeResponse::default())),
            };
            n
        ]
    }

    #[test]
    fn only_the_executed_branch_and_nested_compares_count() {
        let inner = TxnRequest {
            compare: vec![Compare::default(); 2],
            success: vec![put()],
            failure: vec![range(), range()],
        };
        let req = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![put(), put()],
            failure: vec![
                range(),
                RequestOp {
                    request: Some(Request::RequestTxn(inner)),
                },
            ],
        };
        let took_success = TxnResponse {
            succeeded: true,
            responses: answered(2),
            ..TxnResponse::default()
        };
        let ops = txn_ops(&req, &took_success);
        assert_eq!(
            ops,
            TxnOps {
                puts: 2,
                deletes: 0,
                ranges: 0
            }
        );
        let inner_failed = TxnResponse {
            succeeded: false,
            responses: answered(2),
            ..TxnResponse::default()
        };
        let took_failure = TxnResponse {
            succeeded: false,
            responses: vec![
                ResponseOp {
                    response: Some(Response::ResponseRange(RangeResponse::default())),
                },
                ResponseOp {
                    response: Some(Response::ResponseTxn(inner_failed)),
                },
            ],
            ..TxnResponse::default()
        };
        let ops = txn_ops(&req, &took_failure);
        assert_eq!(
            ops,
            TxnOps {
                puts: 0,
                deletes: 0,
                ranges: 1 + 2 + 2
            }
        );
    }
}
