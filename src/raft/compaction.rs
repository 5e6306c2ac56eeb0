//! Carrying out compactions in batches, beside apply (etcd's "scheduled compaction").
//!
//! Applying a Compact entry only puts the compaction point in force (`mvcc::Store::
//! begin_compaction`, O(1)): from then on reads below it fail and nothing any read can see
//! changes. Dropping the records no read can see any more is this module's loop: it takes the
//! state machine's write lock for one batch of `--experimental-compaction-batch-limit` units
//! (a key looked at or a record dropped), releases it, and waits [`BATCH_INTERVAL`] before the
//! next, so entries applied meanwhile (writes) wait for at most one batch, never for the whole
//! key space. etcd does the same with its backend deletions (batches of the same flag, 10 ms
//! apart).
//!
//! Invariant: how far a compaction got never shows in an answer (see `mvcc`'s header), so
//! members may be at different points of the same compaction at the same applied index.
//! Invariant: [`SmShared::compacted`] only grows, and names a revision whose compaction is
//! finished on this member (what a `physical` Compact waits for).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::state_machine::SmShared;

/// etcd's default `--experimental-compaction-batch-limit`.
pub const DEFAULT_BATCH_LIMIT: usize = 1000;

/// Pause between two batches (etcd 3.5: 10 ms).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// How often the loop looks at `stopped` while nothing is pending.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The batch size for a `--experimental-compaction-batch-limit` value: 0 means etcd's default
/// (1000), a negative value no limit (the whole compaction in one batch), as in etcd.
pub fn batch_limit_from_flag(flag: i64) -> usize {
    match flag {
        0 => DEFAULT_BATCH_LIMIT,
        n if n < 0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

/// Runs pending compactions batch by batch until `stopped`.
pub async fn run(shared: Arc<SmShared>, stopped: Arc<AtomicBool>) {
    while !stopped.load(Ordering::Relaxed) {
        if !shared.compaction_due(IDLE_POLL).await {
            continue;
        }
        let started = tokio::time::Instant::now();
        let mut keys = 0usize;
        let mut removed = 0usize;
        let mut finished_at = None;
        loop {
            let batch_started = tokio::time::Instant::now();
            let Some((revision, done)) = shared.compaction_step() else {
                break;
            };
            keys += done.keys;
            removed += done.removed;
            crate::metrics::observe_compaction_batch(batch_started.elapsed(), done.removed);
            if done.finished {
                finished_at = Some(revision);
                break;
            }
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(BATCH_INTERVAL).await;
        }
        if let Some(revision) = finished_at {
            let took = started.elapsed();
            crate::metrics::observe_compaction_total(took);
            tracing::info!(
                compact_revision = revision,
                took = %go(took),
                keys,
                removed,
                "finished scheduled compaction"
            );
        }
    }
}

fn go(d: Duration) -> String {
    crate::config::format_duration(crate::config::GoDuration {
        nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    })
}
