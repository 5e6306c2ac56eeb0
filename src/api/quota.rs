//! etcd's backend space quota (`--quota-backend-bytes`), checked before a write is proposed.
//!
//! The member's data size is `mvcc::Store::logical_bytes` (keys, values and a fixed overhead
//! per retained revision; what `Status.dbSize` reports: oxetcd has no backend file). A put, a
//! txn or a lease grant whose estimated cost would take it to the quota raises the NOSPACE
//! alarm for this member through the log and is refused with etcd's "etcdserver: mvcc:
//! database space exceeded". Once NOSPACE is raised, apply refuses whatever adds data on every
//! member (`apply::State::out_of_space`) until an operator disarms it, as etcd does: compact
//! (and defragment) first, then `etcdctl alarm disarm`.
//!
//! Invariant: a refused write was never proposed.

use super::forward::propose_or_forward;
use super::{Api, ApiError, ReqCtx};
use crate::apply::Command;
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{AlarmType, RequestOp};

/// Fixed cost of one written revision beyond its key and value (mvcc's record overhead).
const RECORD_COST: u64 = crate::mvcc::RECORD_OVERHEAD_BYTES;
/// Cost charged for a lease grant (etcd charges a fixed lease overhead too).
const LEASE_COST: u64 = 64;

/// What `cmd` may add to the data size; 0 for commands that add nothing.
pub fn cost(cmd: &Command) -> u64 {
    match cmd {
        Command::Put(put) => RECORD_COST + (put.key.len() + put.value.len()) as u64,
        // Only one branch runs: the costlier one counts, on top of a fixed cost that even a
        // read-only txn pays (etcd 3.5 refuses those too once over the quota).
        Command::Txn(txn) => RECORD_COST + ops_cost(&txn.success).max(ops_cost(&txn.failure)),
        Command::LeaseGrant { .. } => LEASE_COST,
        Command::V2(req) => req.cost_bytes(),
        Command::DeleteRange(_)
        | Command::Compact(_)
        | Command::LeaseRevoke { .. }
        | Command::LeaseExpire { .. }
        | Command::Alarm { .. }
        | Command::Auth(_) => 0,
    }
}

fn ops_cost(ops: &[RequestOp]) -> u64 {
    ops.iter()
        .map(|op| match &op.request {
            Some(Request::RequestPut(put)) => {
                RECORD_COST + (put.key.len() + put.value.len()) as u64
            }
            Some(Request::RequestTxn(txn)) => ops_cost(&txn.success).max(ops_cost(&txn.failure)),
            _ => 0,
        })
        .sum()
}

/// Refuses `cmd` when it would take the data size to the quota, after raising this member's
/// NOSPACE alarm (once: not again while it is raised).
pub async fn check(api: &Api, ctx: &ReqCtx, cmd: &Command) -> Result<(), ApiError> {
    let Some(quota) = api.limits.quota_bytes else {
        return Ok(());
    };
    let cost = cost(cmd);
    if cost == 0 {
        return Ok(());
    }
    let me = api.node.member_id();
    let nospace = AlarmType::Nospace as i32;
    let (size, raised) = {
        let sm = api.node.state().read();
        (
            sm.state.kv.logical_bytes(),
            sm.state.alarms.contains(&(me, nospace)),
        )
    };
    if size.saturating_add(cost) < quota {
        return Ok(());
    }
    if !raised {
        tracing::warn!(
            quota_size_bytes = quota,
            current_size_bytes = size,
            "raising NOSPACE: the space quota is exhausted"
        );
        let alarm = Command::Alarm {
            action: AlarmAction::Activate as i32,
            member_id: me,
            alarm: nospace,
        };
        // As etcd: the write is refused whether or not the alarm got through.
        if let Err(e) = propose_or_forward(api, ctx, alarm).await {
            tracing::warn!(error = %e, "could not raise the NOSPACE alarm");
        }
    }
    Err(ApiError::Kv(KvError::NoSpace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{PutRequest, TxnRequest};

    fn put_op(key: &str, value: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn costs_count_what_a_write_may_add() {
        let put = Command::Put(PutRequest {
            key: b"key".to_vec(),
            value: vec![0; 100],
            ..Default::default()
        });
        assert_eq!(cost(&put), RECORD_COST + 103);
        let txn = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![put_op("a", "1"), put_op("b", "2")],
            failure: vec![put_op("c", "12345")],
        });
        assert_eq!(cost(&txn), RECORD_COST + 2 * (RECORD_COST + 2));
        assert_eq!(cost(&Command::LeaseGrant { id: 1, ttl: 5 }), LEASE_COST);
        assert_eq!(cost(&Command::LeaseRevoke { id: 1 }), 0);
    }
}
