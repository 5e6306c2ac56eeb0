//! v3electionpb.Election: etcd's server-side leader election, run on the KV/lease/watch API
//! exactly as etcd's client-side election recipe writes it (same keys, same revisions).
//!
//! Campaign{name, lease, value}: the candidate key `<name>/<lease hex>` is created with the
//! value (or, when it exists already — the same lease campaigns again — its value is
//! proclaimed); the candidate leads once no key under `<name>/` has a lower create revision.
//! The leader is the oldest key under the prefix. Proclaim and Resign act only while the
//! leader key still has the create revision the caller was given (`LeaderKey.rev`).
//! Observe streams the leader's kv on every change of leader and every proclaim.
//!
//! Invariant: a Campaign that fails or is abandoned while waiting resigns (deletes its key).
//! Invariant: every error is reported with code Unknown (see `recipe`).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::lock::{range_at, DeleteOnDrop};
use super::recipe::{
    create_rev_is, delete_op, first_created, get_op, owner_key, prefix_end, prefix_of, put_op,
    session_lease, wait_deletes, KeyWatch, RecipeError,
};
use super::{kv, Api, ApiError, ReqCtx};
use crate::proto::etcdserverpb::{ResponseHeader, TxnRequest};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

pub async fn campaign(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: CampaignRequest,
) -> Result<CampaignResponse, ApiError> {
    campaign_inner(api, ctx, req).await.map_err(ApiError::from)
}

async fn campaign_inner(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: CampaignRequest,
) -> Result<CampaignResponse, RecipeError> {
    let lease = session_lease(api, ctx, req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = owner_key(&prefix, lease);
    let resp = kv::txn(
        api,
        ctx,
        TxnRequest {
            compare: vec![create_rev_is(&key, 0)],
            success: vec![put_op(&key, &req.value, lease)],
            failure: vec![get_op(&key)],
        },
    )
    .await?;
    let header = resp.header.unwrap_or_default();
    let mut rev = header.revision;
    let guard = DeleteOnDrop::new(api.clone(), ctx.clone(), key.clone());
    if !resp.succeeded {
        let existing = range_at(&resp, 0)
            .and_then(|r| r.kvs.first())
            .ok_or(RecipeError::SessionExpired)?;
        rev = existing.create_revision;
        if existing.value != req.value {
            let leader = LeaderKey {
                name: req.name.clone(),
                key: key.clone(),
                rev,
                lease,
            };
            proclaim_at(api, ctx, &leader, &req.value).await?;
        }
    }
    wait_deletes(api, ctx, &prefix, rev - 1).await?;
    guard.disarm();
    Ok(CampaignResponse {
        header: Some(header),
        leader: Some(LeaderKey {
            name: req.name,
            key,
            rev,
            lease,
        }),
    })
}

pub async fn proclaim(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: ProclaimRequest,
) -> Result<ProclaimResponse, ApiError> {
    let leader = req.leader.ok_or(RecipeError::LeaderMissing)?;
    let header = proclaim_at(api, ctx, &leader, &req.value).await?;
    Ok(ProclaimResponse {
        header: Some(header),
    })
}

async fn proclaim_at(
    api: &Api,
    ctx: &ReqCtx,
    leader: &LeaderKey,
    value: &[u8],
) -> Result<ResponseHeader, RecipeError> {
    let resp = kv::txn(
        api,
        ctx,
        TxnRequest {
            compare: vec![create_rev_is(&leader.key, leader.rev)],
            success: vec![put_op(&leader.key, value, leader.lease)],
            failure: Vec::new(),
        },
    )
    .await?;
    if !resp.succeeded {
        return Err(RecipeError::NotLeader);
    }
    Ok(resp.header.unwrap_or_default())
}

pub async fn leader(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: LeaderRequest,
) -> Result<LeaderResponse, ApiError> {
    let resp = kv::range(api, ctx, first_created(&prefix_of(&req.name)))
        .await
        .map_err(RecipeError::from)?;
    let kv = resp.kvs.into_iter().next().ok_or(RecipeError::NoLeader)?;
    Ok(LeaderResponse {
        header: resp.header,
        kv: Some(kv),
    })
}

pub async fn resign(
    api: &Arc<Api>,
    ctx: &ReqCtx,
    req: ResignRequest,
) -> Result<ResignResponse, ApiError> {
    let leader = req.leader.ok_or(RecipeError::LeaderMissing)?;
    let resp = kv::txn(
        api,
        ctx,
        TxnRequest {
            compare: vec![create_rev_is(&leader.key, leader.rev)],
            success: vec![delete_op(&leader.key)],
            failure: Vec::new(),
        },
    )
    .await
    .map_err(RecipeError::from)?;
    Ok(ResignResponse {
        header: resp.header,
    })
}

/// Observe: sends the leader's kv on each leader change and each proclaim until `tx` is
/// closed (the client went away) or a call underneath fails (sent as the last item).
pub async fn observe(
    api: Arc<Api>,
    ctx: ReqCtx,
    req: LeaderRequest,
    tx: mpsc::Sender<Result<LeaderResponse, ApiError>>,
) {
    let prefix = prefix_of(&req.name);
    let outcome = tokio::select! {
        r = observe_loop(&api, &ctx, &prefix, &tx) => r,
        _ = tx.closed() => Ok(()),
    };
    if let Err(e) = outcome {
        let _ = tx.send(Err(ApiError::from(e))).await;
    }
}

async fn observe_loop(
    api: &Api,
    ctx: &ReqCtx,
    prefix: &[u8],
    tx: &mpsc::Sender<Result<LeaderResponse, ApiError>>,
) -> Result<(), RecipeError> {
    loop {
        let resp = kv::range(api, ctx, first_created(prefix)).await?;
        let mut header = resp.header.unwrap_or_default();
        let kv: KeyValue = match resp.kvs.into_iter().next() {
            Some(kv) => kv,
            None => {
                // No leader yet: wait for the first put under the prefix.
                let mut watch = KeyWatch::open(api, prefix, prefix_end(prefix), header.revision);
                loop {
                    let wr = watch.next().await?;
                    let put = wr
                        .events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                    if let Some(kv) = put {
                        header = api.header(&wr.header);
                        header.revision = kv.mod_revision;
                        break kv;
                    }
                }
            }
        };
        let key = kv.key.clone();
        let first = LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        };
        if tx.send(Ok(first)).await.is_err() {
            return Ok(());
        }
        // Follow this leader's key until it is deleted.
        let mut watch = KeyWatch::open(api, &key, Vec::new(), header.revision + 1);
        'leader: loop {
            let wr = watch.next().await?;
            let wr_header = api.header(&wr.header);
            for ev in wr.events {
                if ev.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let update = LeaderResponse {
                    header: Some(wr_header),
                    kv: ev.kv,
                };
                if tx.send(Ok(update)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
