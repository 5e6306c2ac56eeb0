//! v3lockpb.Lock: etcd's server-side mutex, run on the KV/lease/watch API exactly as etcd's
//! client-side mutex recipe writes it, so other clients see the same keys and revisions.
//!
//! Lock{name, lease}: the owner key is `<name>/<lease hex>`, created in one txn that also reads
//! the oldest key under `<name>/` (or, when the key exists already — the same lease locks
//! again — reads it back); the caller owns the lock once no key under the prefix has a lower
//! create revision, and its own key still exists then ("mutex: session is expired"
//! otherwise). Lease 0 gets a fresh 60 s lease nobody keeps alive.
//! Unlock{key}: a plain delete of the owner key.
//!
//! Invariant: a Lock call that fails or is abandoned while waiting (the client went away)
//!   deletes its own key, so it never blocks later callers.

use std::sync::Arc;

use super::recipe::{
    create_rev_is, first_created_op, get_op, owner_key, prefix_of, put_op, session_lease,
    wait_deletes, RecipeError,
};
use super::{kv, Api, ApiError, ReqCtx};
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

pub async fn lock(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: LockRequest,
) -> Result<LockResponse, ApiError> {
    lock_inner(api, ctx, req).await.map_err(ApiError::from)
}

async fn lock_inner(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: LockRequest,
) -> Result<LockResponse, RecipeError> {
    let lease = session_lease(api, ctx, req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = owner_key(&prefix, lease);
    let resp = kv::txn(
        api,
        ctx,
        TxnRequest {
            compare: vec![create_rev_is(&key, 0)],
            success: vec![put_op(&key, b"", lease), first_created_op(&prefix)],
            failure: vec![get_op(&key), first_created_op(&prefix)],
        },
    )
    .await?;
    let header = resp.header.unwrap_or_default();
    let mut my_rev = header.revision;
    if !resp.succeeded {
        my_rev = range_at(&resp, 0)
            .and_then(|r| r.kvs.first())
            .map_or(0, |kv| kv.create_revision);
        if my_rev == 0 {
            // The key vanished between the compare and the read: its lease expired.
            return Err(RecipeError::SessionExpired);
        }
    }
    let owner_rev = range_at(&resp, 1)
        .and_then(|r| r.kvs.first())
        .map(|kv| kv.create_revision);
    if owner_rev.is_none() || owner_rev == Some(my_rev) {
        return Ok(LockResponse {
            header: Some(header),
            key,
        });
    }
    let guard = DeleteOnDrop::new(api.clone(), ctx.clone(), key.clone());
    wait_deletes(api, ctx, &prefix, my_rev - 1).await?;
    // The caller owns the lock only if its key outlived the wait (its lease may have expired
    // meanwhile); the answer carries the header of this last read.
    let mine = kv::range(
        api,
        ctx,
        RangeRequest {
            key: key.clone(),
            ..Default::default()
        },
    )
    .await?;
    if mine.kvs.is_empty() {
        return Err(RecipeError::SessionExpired);
    }
    guard.disarm();
    Ok(LockResponse {
        header: mine.header,
        key,
    })
}

pub async fn unlock(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: UnlockRequest,
) -> Result<UnlockResponse, ApiError> {
    let resp = kv::delete_range(
        api,
        ctx,
        DeleteRangeRequest {
            key: req.key,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| ApiError::from(RecipeError::from(e)))?;
    Ok(UnlockResponse {
        header: resp.header,
    })
}

/// The range response of op `i` of an executed txn.
pub(crate) fn range_at(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        OpResponse::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// Deletes a waiting caller's key when its call ends without owning (error or abandonment).
pub(crate) struct DeleteOnDrop {
    armed: Option<(Arc<Api>, ReqCtx, Vec<u8>)>,
}

impl DeleteOnDrop {
    pub(crate) fn new(api: Arc<Api>, ctx: ReqCtx, key: Vec<u8>) -> Self {
        DeleteOnDrop {
            armed: Some((api, ctx, key)),
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some((api, ctx, key)) = self.armed.take() {
            tokio::spawn(async move {
                let req = DeleteRangeRequest {
                    key,
                    ..Default::default()
                };
                if let Err(e) = kv::delete_range(&api, &ctx, req).await {
                    tracing::warn!(error = %e, "could not delete an abandoned lock/election key");
                }
            });
        }
    }
}
