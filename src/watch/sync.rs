//! Catch-up of unsynced watchers, in three steps per pass so that no lock is held while
//! history is read:
//!
//! 1. *plan* (hub lock): note each unsynced watcher (a copy, with its serial and `next_rev`)
//!    and the room left in the stream's queue;
//! 2. *scan* (no lock): take an O(1) view of the key space ([`KeySpace::view`], at revision R),
//!    read each watcher's events from its `next_rev` through R into responses, within the room;
//! 3. *hand over* (state machine lock, then hub lock): queue the responses of every watcher that
//!    is still the one planned and has not moved; mark it synced only if it reached R + 1 and
//!    the live revision is still R. Otherwise it stays unsynced and the next pass continues
//!    from where this one got.
//!
//! Why no gap and no duplicate: an unsynced watcher receives nothing from `publish`, so only a
//! hand-over moves it. A hand-over runs under the state machine lock, which `publish` needs (it
//! runs under the write lock, in the same critical section as the apply that produced the
//! revision). So when the hand-over sees live revision == R, every revision up to R is in the
//! view and the next `publish` (R + 1) comes after the watcher is synced.

use super::queue::{pieces, Queued};
use super::{header, EventSource, Hub, HubLimits, KeySpace, StreamId, Watcher};
use crate::proto::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::proto::mvccpb::Event;

/// A watcher as the pass planned it.
struct Planned {
    watch_id: i64,
    watcher: Watcher,
}

/// One catch-up response (possibly in fragments) and the revision the watcher is at after it.
struct Step {
    pieces: Vec<Queued>,
    next_rev: i64,
}

/// What the scan found for one watcher.
enum Found {
    /// Its next revision is below the compaction point of the view.
    Compacted(i64),
    Steps(Vec<Step>),
}

impl Hub {
    /// One catch-up pass over the unsynced watchers of a stream (see the module header). Call
    /// with no lock held. Returns true when the stream still has unsynced watchers: the hub
    /// wakes the stream's syncer when there is room to go on.
    pub fn sync_stream<K: KeySpace>(&self, id: StreamId, keys: &K) -> bool {
        let Some((planned, room)) = self.plan(id) else {
            return false;
        };
        if planned.is_empty() {
            // Nothing to read; a progress reply that found no room earlier may go now.
            return keys.with_current_revision(|live| self.hand_over(id, Vec::new(), live, live));
        }
        if room == 0 {
            return true;
        }
        let view = keys.view();
        let scanned_to = view.current_revision();
        let found: Vec<(Planned, Found)> = planned
            .into_iter()
            .scan(room, |budget, p| {
                let found = scan(
                    &p.watcher,
                    p.watch_id,
                    &view,
                    scanned_to,
                    budget,
                    &self.limits,
                );
                Some((p, found))
            })
            .collect();
        drop(view);
        keys.with_current_revision(|live| self.hand_over(id, found, scanned_to, live))
    }

    /// Step 1: the unsynced watchers of the stream and the room in its queue.
    fn plan(&self, id: StreamId) -> Option<(Vec<Planned>, usize)> {
        let inner = self.lock();
        let slot = inner.streams.get(&id)?;
        let planned = slot
            .watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(watch_id, w)| Planned {
                watch_id: *watch_id,
                watcher: w.clone(),
            })
            .collect();
        Some((planned, slot.outbox.room_count()))
    }

    /// Step 3, under the state machine lock (`live` is its current revision).
    fn hand_over(
        &self,
        id: StreamId,
        found: Vec<(Planned, Found)>,
        scanned_to: i64,
        live: i64,
    ) -> bool {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return false;
        };
        let mut full = false;
        for (planned, found) in found {
            let Some(w) = slot.watchers.get_mut(&planned.watch_id) else {
                continue; // canceled meanwhile
            };
            if w.serial != planned.watcher.serial
                || w.synced
                || w.next_rev != planned.watcher.next_rev
            {
                continue; // another watcher now, or moved by another pass
            }
            match found {
                Found::Compacted(compacted) => {
                    let cancel = WatchResponse {
                        header: Some(ResponseHeader::default()),
                        watch_id: planned.watch_id,
                        canceled: true,
                        compact_revision: compacted,
                        ..WatchResponse::default()
                    };
                    if slot.outbox.try_send(cancel) {
                        let gone = slot.watchers.remove(&planned.watch_id);
                        slot.watcher_key_bytes -= gone.map_or(0, |w| w.key_bytes());
                    } else {
                        full = true;
                    }
                }
                Found::Steps(steps) => {
                    for step in steps {
                        debug_assert!(
                            step.next_rev > w.next_rev,
                            "a catch-up step must make progress"
                        );
                        if !step.pieces.is_empty() {
                            if !slot.outbox.try_send_all(step.pieces) {
                                full = true;
                                break;
                            }
                            w.sent_since_tick = true;
                        }
                        w.next_rev = step.next_rev;
                    }
                    if w.next_rev == scanned_to + 1 && live == scanned_to {
                        w.synced = true;
                    }
                }
            }
        }
        slot.answer_progress_if_ready(live);
        let behind = !slot.all_synced() || slot.progress_pending;
        if behind && !full && slot.outbox.room_count() > 0 {
            // Applies went on while history was read (or room remains): go on soon.
            slot.wake.notify_one();
        }
        behind
    }
}

/// Step 2 for one watcher: catch-up responses from its `next_rev` through `to`, using at most
/// `budget` queue slots (taken from it).
fn scan(
    w: &Watcher,
    watch_id: i64,
    src: &dyn EventSource,
    to: i64,
    budget: &mut usize,
    limits: &HubLimits,
) -> Found {
    let mut steps = Vec::new();
    let mut next = w.next_rev;
    while next <= to && *budget > 0 {
        let Ok((events, next_rev)) = catch_up_batch(w, src, next, to, limits) else {
            return Found::Compacted(src.compact_revision());
        };
        debug_assert!(next_rev > next, "a catch-up step must make progress");
        let pieces = if events.is_empty() {
            Vec::new()
        } else {
            let resp = WatchResponse {
                header: header(to),
                watch_id,
                events,
                ..WatchResponse::default()
            };
            pieces(resp, w.fragment, limits.fragment_bytes)
        };
        *budget = budget.saturating_sub(pieces.len());
        steps.push(Step { pieces, next_rev });
        next = next_rev;
    }
    Found::Steps(steps)
}

/// The events of `w` for its next catch-up response from `from` (filters applied), and the
/// revision after them.
///
/// As etcd's batches: the response covers the first `catch_up_revisions_max` revisions from
/// `from` that touched the range (counted before the watcher's filters). It also closes, at a
/// revision boundary, once the events read hold `catch_up_bytes_max` encoded bytes, so a
/// catch-up response stays near the size of one revision. `Err` when history below the
/// compaction point is needed.
fn catch_up_batch(
    w: &Watcher,
    src: &dyn EventSource,
    from: i64,
    to: i64,
    limits: &HubLimits,
) -> Result<(Vec<Event>, i64), i64> {
    let page = crate::mvcc::PageLimits {
        revisions_max: usize::try_from(limits.catch_up_revisions_max.max(1)).unwrap_or(usize::MAX),
        bytes_max: limits.catch_up_bytes_max,
    };
    let (events, next) = src.events_in(&w.key, &w.range_end, from, to, page)?;
    Ok((w.select(&events), next))
}
