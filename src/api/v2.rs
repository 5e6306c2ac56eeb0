//! api/v2 — the v2 store's side of the member: proposing v2 writes (here or through the
//! leader), the leader's TTL expiry task, and the notice of applied v2 writes that waiting
//! watches (`http::v2`) listen to.
//!
//! Expiry: only the leader decides that nodes expired. Every `EXPIRY_CHECK_INTERVAL` it
//! compares the earliest expiration in its applied v2 store with its wall clock and, when one
//! is due, proposes `V2Request::Expire` carrying that time; every member removes the same
//! nodes when it applies the entry. Followers never expire anything on their own clock. A new
//! leader's task sees the same applied store, so expiry survives a leader change.
//!
//! Invariant: v2 writes carry an empty request header (v3 auth does not apply to v2, as in
//!            etcd) and never move the KV revision.
//! Invariant: the applied-index notice only moves forward and is sent after the state changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::forward::propose_envelope_or_forward;
use super::{Api, ApiError, ReqCtx};
use crate::apply::{Command, Envelope, Outcome};
use crate::v2store::{Action, Listing, V2Error, V2Outcome, V2Request};

/// How often the leader looks for expired v2 nodes (etcd's v2 sync ticker: 500 ms).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Whether the v2 API is served, and the notice of applied v2 writes.
pub struct V2Context {
    /// `--enable-v2`.
    pub enabled: bool,
    /// The v2 store index after the last applied v2 command (or snapshot).
    applied: watch::Sender<u64>,
    /// etcd's v2 store statistics on this member (`/v2/stats/store`).
    stats: std::sync::Mutex<StoreStats>,
}

/// etcd's v2 store counters, in its JSON field order: success and failure per operation,
/// expired nodes, waiting watchers. Local to the member, as in etcd.
#[derive(Debug, Default, Clone)]
pub struct StoreStats {
    pub gets: (u64, u64),
    pub sets: (u64, u64),
    pub deletes: (u64, u64),
    pub updates: (u64, u64),
    pub creates: (u64, u64),
    pub compare_and_swaps: (u64, u64),
    pub compare_and_deletes: (u64, u64),
    pub expire_count: u64,
    pub watchers: u64,
}

impl V2Context {
    pub fn new(enabled: bool) -> Self {
        V2Context {
            enabled,
            applied: watch::Sender::new(0),
            stats: std::sync::Mutex::new(StoreStats::default()),
        }
    }

    fn with_stats(&self, f: impl FnOnce(&mut StoreStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    /// Counts an applied v2 request of `kind` (a write, or an expiry of `expired` nodes).
    pub fn count_write(&self, kind: Action, ok: bool, expired: u64) {
        self.with_stats(|s| {
            let pair = match kind {
                Action::Set => &mut s.sets,
                Action::Delete => &mut s.deletes,
                Action::Update => &mut s.updates,
                Action::Create => &mut s.creates,
                Action::CompareAndSwap => &mut s.compare_and_swaps,
                Action::CompareAndDelete => &mut s.compare_and_deletes,
                Action::Get => &mut s.gets,
                Action::Expire => {
                    s.expire_count += expired;
                    return;
                }
            };
            if ok {
                pair.0 += 1;
            } else {
                pair.1 += 1;
            }
        });
    }

    /// Counts a local GET.
    pub fn count_get(&self, ok: bool) {
        self.count_write(Action::Get, ok, 0);
    }

    /// A watch started (`true`) or ended.
    pub fn count_watcher(&self, started: bool) {
        self.with_stats(|s| {
            if started {
                s.watchers += 1;
            } else {
                s.watchers = s.watchers.saturating_sub(1);
            }
        });
    }

    /// `/v2/stats/store`'s body (without the newline).
    pub fn stats_json(&self) -> String {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        format!(
            "{{\"getsSuccess\":{},\"getsFail\":{},\"setsSuccess\":{},\"setsFail\":{},\
             \"deleteSuccess\":{},\"deleteFail\":{},\"updateSuccess\":{},\"updateFail\":{},\
             \"createSuccess\":{},\"createFail\":{},\"compareAndSwapSuccess\":{},\
             \"compareAndSwapFail\":{},\"compareAndDeleteSuccess\":{},\
             \"compareAndDeleteFail\":{},\"expireCount\":{},\"watchers\":{}}}",
            s.gets.0,
            s.gets.1,
            s.sets.0,
            s.sets.1,
            s.deletes.0,
            s.deletes.1,
            s.updates.0,
            s.updates.1,
            s.creates.0,
            s.creates.1,
            s.compare_and_swaps.0,
            s.compare_and_swaps.1,
            s.compare_and_deletes.0,
            s.compare_and_deletes.1,
            s.expire_count,
            s.watchers
        )
    }

    /// A receiver that wakes whenever a v2 command was applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Called by the apply observer after a v2 command or a snapshot changed the store.
    pub fn applied(&self, store_index: u64) {
        self.applied.send_replace(store_index);
    }
}

/// The Unix time in nanoseconds by this member's wall clock (what a TTL counts from).
pub fn now_unix_ns() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// Proposes a v2 write and answers with its outcome (an event or etcd's v2 error).
pub async fn write(api: &Api, ctx: &ReqCtx, req: V2Request) -> Result<V2Outcome, ApiError> {
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    // No --max-request-bytes check: etcd 3.4 bounds v2 writes only by Go's 10 MiB form limit
    // (`http::v2::form`), which the caller has already applied.
    let cmd = Command::V2(req);
    super::quota::check(api, ctx, &cmd).await?;
    let envelope = Envelope::new(api.internal_header(), cmd);
    match propose_envelope_or_forward(api, ctx, envelope).await? {
        Outcome::V2(outcome) => Ok(outcome),
        _ => Err(ApiError::Internal(
            "etcdserver: unexpected apply outcome for a v2 request".into(),
        )),
    }
}

/// A v2 GET of `path`: with `quorum`, after the read index (etcd's quorum read), else from
/// this member's applied store. The outer error is a read index that failed; the inner one
/// etcd's v2 error (key not found, ...), both with the store index they were answered at.
pub async fn get(
    api: &Api,
    path: &str,
    recursive: bool,
    quorum: bool,
) -> Result<Result<Listing, V2Error>, ApiError> {
    if quorum {
        // Planted bug (canary builds only): a follower answers without the read index.
        let planted = crate::canary::active(crate::canary::Canary::V2QuorumGetWithoutReadIndex)
            && api.node.current_leader() != Some(api.node.member_id());
        if !planted {
            api.node.read_index().await?;
        }
    }
    let view = api.node.state().view();
    let listing = view.state.v2.get(path, recursive, now_unix_ns());
    drop(view);
    api.v2.count_get(listing.is_ok());
    Ok(listing)
}

/// The leader's v2 expiry loop; see the module header. Ends when `stop` turns true.
pub async fn run_expiry(api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    loop {
        let leader = api.node.current_leader() == Some(api.node.member_id());
        // Whatever this member's --enable-v2: the v2 store is cluster state, and members
        // started with it may have written TTLs through another member.
        if leader {
            let now_ns = now_unix_ns();
            let due = api
                .node
                .state()
                .read()
                .state
                .v2
                .next_expiration_ns()
                .is_some_and(|at| at <= now_ns);
            if due {
                let envelope = Envelope::new(
                    api.internal_header(),
                    Command::V2(V2Request::Expire { now_ns }),
                );
                if let Err(e) = api.node.propose(envelope).await {
                    tracing::warn!(error = ?e, "could not expire v2 keys");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_CHECK_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
