//! watch/ — fan-out of committed events to watch streams, with etcd's ordering rules.
//!
//! One [`Hub`] per member. Each gRPC watch stream registers a stream slot; each create request
//! adds a [`Watcher`] to it. The hub is fed by the state machine ([`Hub::publish`], called under
//! the state machine's write lock, once per applied revision) and by catch-up passes
//! ([`Hub::sync_stream`], `sync.rs`).
//!
//! Watchers are *synced* (they get live events as they are applied) or *unsynced* (behind; they
//! catch up from mvcc history). A new watcher with a start revision at or below the current
//! revision starts unsynced. A synced watcher whose stream's queue is full (a slow consumer)
//! drops back to unsynced instead of queueing more, and later catches up exactly from history,
//! from its `next_rev`.
//!
//! # Locks and why catch-up has no gap and no duplicate
//! Two locks: the state machine lock (a `RwLock` outside this module, reached through
//! [`KeySpace`]) and the hub lock (`Hub::inner`). `publish` runs under the state machine write
//! lock, in the same critical section as the apply that made the revision, and takes the hub
//! lock. A catch-up pass reads history from an O(1) copy of the key space at revision R with
//! *no* lock held (so a long catch-up never stalls apply), then hands over under the state
//! machine read lock and the hub lock: the watcher's responses are queued, and it becomes synced
//! only if it reached R + 1 and the live revision is still R. An unsynced watcher gets nothing
//! from `publish`, so between the copy and the hand-over nothing can reach it twice; and once
//! synced under the read lock, the next `publish` (R + 1) is the next revision it sees. When
//! applies went on past R, it stays unsynced and the next pass reads from R + 1. See `sync.rs`.
//!
//! # Bounds (everything a client can fill)
//! Per stream: the response queue (`queue.rs`: responses and bytes, control replies included;
//! a request whose replies do not fit waits, so the stream stops reading requests), the number
//! of watchers and the bytes of their keys (a create beyond either is refused with a
//! created + canceled reply), catch-up responses closed at a revision boundary past
//! `catch_up_bytes_max`, fragments for watchers that ask for them, and progress ticks that
//! are skipped, not queued, when the queue is full.
//!
//! Wire rules kept here (reference §1.4): created replies in request order, before any event of
//! that watcher; auto watch IDs per stream from 0, skipping IDs in use, never reused; every event
//! of one revision in one response (unless the watcher asked for fragments); events in revision
//! order; a start revision below the compacted revision gets a created reply and then a cancel
//! carrying `compact_revision`; a progress request is answered (watch_id -1) only when every
//! watcher of the stream is synced, in order with events.
//!
//! Invariant: for every watcher, the revisions it has been sent are strictly increasing and
//!   contiguous over the revisions that touched its range (no gap, no duplicate).
//! Invariant: lock order is state machine lock → hub lock; the hub never calls back out while
//!   holding its lock, and no history is read under either lock by a catch-up pass.
//! Invariant: responses are queued only under the hub lock, and only when they fit.

mod queue;
mod sync;
mod watcher;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::Event;
pub use queue::StreamOutput;
use queue::{pieces, Outbox};
pub use watcher::Watcher;

/// What the hub needs from a copy of the key space (implemented by `mvcc::Store`).
pub trait EventSource {
    fn current_revision(&self) -> i64;
    /// The revision of the last compaction (0 or negative when never compacted).
    fn compact_revision(&self) -> i64;
    /// The events of the revisions in `from..=to` that touched keys in `[key, range_end)`
    /// (etcd's range rules), in revision order, with `prev_kv` filled where the key existed
    /// before, closing at a revision boundary after `revisions_max` such revisions or once
    /// `bytes_max` encoded bytes are reached (always at least one revision if there is one);
    /// and the revision to continue from (the first revision left out, or `to + 1`).
    /// `Err(compact_revision)` when `from` is below the compaction point.
    /// Cost: O(log + history entries between `from` and the revision returned).
    fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
        limits: crate::mvcc::PageLimits,
    ) -> Result<(Vec<Event>, i64), i64>;
}

/// The live key space behind its lock (the state machine's), as catch-up passes use it.
pub trait KeySpace {
    type View: EventSource;
    /// An O(1) copy of the key space as it is now; the lock is released before this returns.
    fn view(&self) -> Self::View;
    /// Runs `f` with the current revision while holding the lock, so that no revision is
    /// applied (and published) until `f` returns. `f` must be O(1)-ish: it blocks apply.
    fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R;
}

/// Identifies one gRPC watch stream.
pub type StreamId = u64;

/// Limits of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Responses (events and control replies) queued per stream and not yet taken by the
    /// stream's sender. When full, synced watchers fall back to unsynced, requests wait, and
    /// progress ticks are skipped. At least 2 (one request's replies).
    pub queued_responses_max: usize,
    /// Encoded bytes of the responses queued per stream (a larger single response is still
    /// queued when nothing else is).
    pub queued_bytes_max: usize,
    /// Revisions per catch-up response of one watcher, counted among the revisions that touched
    /// its range (etcd: 1000).
    pub catch_up_revisions_max: i64,
    /// A catch-up read from history is closed at the next revision boundary once it holds this
    /// many encoded bytes of events (counted before the watcher's filters), so a catch-up
    /// response stays near this size (etcd has no such bound and may send up to 2 GiB).
    pub catch_up_bytes_max: usize,
    /// A response for a watcher that asked for `fragment` is split above this many encoded
    /// bytes (etcd: max-request-bytes + 512 KiB), never inside one event.
    pub fragment_bytes: usize,
    /// Watchers per stream; a create beyond it is refused (etcd has no bound).
    pub watchers_per_stream_max: usize,
    /// Bytes of the keys and range ends of a stream's watchers; a create beyond it is refused.
    pub watcher_key_bytes_per_stream_max: usize,
}

/// Watchers per stream by default: far above what real clients open on one stream
/// (kube-apiserver opens one per resource type), low enough to bound a stream's table.
pub const WATCHERS_PER_STREAM_MAX: usize = 10_000;

impl Default for HubLimits {
    fn default() -> Self {
        let fragment_bytes = 1_572_864 + 512 * 1024;
        HubLimits {
            queued_responses_max: 1024,
            queued_bytes_max: 64 * 1024 * 1024,
            catch_up_revisions_max: 1000,
            catch_up_bytes_max: fragment_bytes,
            fragment_bytes,
            watchers_per_stream_max: WATCHERS_PER_STREAM_MAX,
            watcher_key_bytes_per_stream_max: 64 * 1024 * 1024,
        }
    }
}

const RANGE_EMPTY: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Reason of a create refused by `watchers_per_stream_max` or the key-bytes bound.
pub const TOO_MANY_WATCHERS: &str =
    "oxetcd: too many watchers on this watch stream; cancel some or open another stream";

/// The replies one request can cause (a cancel reply plus a progress reply it unblocks); a
/// request is handled only when this many fit in the stream's queue.
const REPLIES_PER_REQUEST: usize = 2;
/// Bytes reserved per control reply in that check (a header, IDs and a short reason).
const CONTROL_REPLY_BYTES: usize = 256;

/// A request could not be handled because its replies do not fit in the stream's queue yet:
/// retry once the client has read some responses ([`StreamOutput::room`] is signalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

struct StreamSlot {
    outbox: Outbox,
    wake: Arc<Notify>,
    room: Arc<Notify>,
    watchers: BTreeMap<i64, Watcher>,
    /// Sum of `Watcher::key_bytes` over `watchers`.
    watcher_key_bytes: usize,
    next_auto_id: i64,
    progress_pending: bool,
    /// The watch ID the next progress tick starts from.
    tick_from: i64,
}

impl StreamSlot {
    fn all_synced(&self) -> bool {
        self.watchers.values().all(|w| w.synced)
    }

    /// Fails unless one request's replies fit in the queue now.
    fn request_room(&self) -> Result<(), QueueFull> {
        if self.outbox.is_closed()
            || self.outbox.has_room(
                REPLIES_PER_REQUEST,
                REPLIES_PER_REQUEST * CONTROL_REPLY_BYTES,
            )
        {
            Ok(())
        } else {
            Err(QueueFull)
        }
    }

    fn send_control(&self, resp: WatchResponse) {
        // Room was checked for the request (request_room); a closed queue means the stream is
        // going away and close_stream removes the slot.
        let sent = self.outbox.try_send(resp);
        debug_assert!(
            sent || self.outbox.is_closed(),
            "control reply without room"
        );
    }

    /// The next auto ID: counts up from 0, skipping IDs in use, never reusing one handed out
    /// before (as etcd).
    fn free_auto_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_auto_id) {
            self.next_auto_id += 1;
        }
        let id = self.next_auto_id;
        self.next_auto_id += 1;
        id
    }

    /// Answers a pending progress request if every watcher is synced and the reply fits.
    fn answer_progress_if_ready(&mut self, current: i64) {
        if self.progress_pending && self.all_synced() {
            let reply = WatchResponse {
                header: header(current),
                watch_id: -1,
                ..WatchResponse::default()
            };
            if self.outbox.try_send(reply) || self.outbox.is_closed() {
                self.progress_pending = false;
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    streams: HashMap<StreamId, StreamSlot>,
    next_stream: StreamId,
    next_serial: u64,
}

/// The member's watch hub.
pub struct Hub {
    inner: Mutex<Inner>,
    limits: HubLimits,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

impl Hub {
    pub fn new(limits: HubLimits) -> Self {
        Hub {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new stream.
    pub fn open_stream(&self) -> (StreamId, StreamOutput) {
        let wake = Arc::new(Notify::new());
        let room = Arc::new(Notify::new());
        let (outbox, output) = queue::queue(
            self.limits.queued_responses_max,
            self.limits.queued_bytes_max,
            wake.clone(),
            room.clone(),
        );
        let mut inner = self.lock();
        let id = inner.next_stream;
        inner.next_stream += 1;
        inner.streams.insert(
            id,
            StreamSlot {
                outbox,
                wake,
                room,
                watchers: BTreeMap::new(),
                watcher_key_bytes: 0,
                next_auto_id: 0,
                progress_pending: false,
                tick_from: i64::MIN,
            },
        );
        (id, output)
    }

    /// Forgets a stream and all its watchers; its output ends after what is queued, and its
    /// syncer and request reader are woken to notice.
    pub fn close_stream(&self, id: StreamId) {
        let slot = self.lock().streams.remove(&id);
        if let Some(slot) = slot {
            slot.wake.notify_one();
            slot.room.notify_one();
        }
    }

    /// Whether the stream is still registered.
    pub fn is_open(&self, id: StreamId) -> bool {
        self.lock().streams.contains_key(&id)
    }

    /// Number of open streams.
    pub fn stream_count(&self) -> usize {
        self.lock().streams.len()
    }

    /// Number of watchers across all streams.
    pub fn watcher_count(&self) -> usize {
        self.lock().streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Handles a create request. Call with the state machine's read lock held (`current` is
    /// its revision) so that the created reply and the watcher's first revision agree.
    pub fn create(
        &self,
        id: StreamId,
        req: &WatchCreateRequest,
        current: i64,
    ) -> Result<(), QueueFull> {
        let limits = self.limits;
        let mut inner = self.lock();
        inner.next_serial += 1;
        let serial = inner.next_serial;
        let Some(slot) = inner.streams.get_mut(&id) else {
            return Ok(());
        };
        slot.request_room()?;
        let failure = |reason: &str| WatchResponse {
            header: header(current),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        };
        let key = if req.key.is_empty() {
            vec![0]
        } else {
            req.key.clone()
        };
        let range_end = &req.range_end;
        if !(range_end.is_empty() || range_end.as_slice() == [0] || *range_end > key) {
            slot.send_control(failure(RANGE_EMPTY));
            return Ok(());
        }
        if req.start_revision < 0 {
            slot.send_control(failure(COMPACTED));
            return Ok(());
        }
        let key_bytes = key.len() + range_end.len();
        if slot.watchers.len() >= limits.watchers_per_stream_max
            || slot.watcher_key_bytes + key_bytes > limits.watcher_key_bytes_per_stream_max
        {
            slot.send_control(failure(TOO_MANY_WATCHERS));
            return Ok(());
        }
        let watch_id = if req.watch_id == 0 {
            slot.free_auto_id()
        } else if slot.watchers.contains_key(&req.watch_id) {
            slot.send_control(failure(DUPLICATE_ID));
            return Ok(());
        } else {
            req.watch_id
        };
        let start = if req.start_revision == 0 {
            current + 1
        } else if crate::canary::active(crate::canary::Canary::WatchResumedLate)
            && req.start_revision <= current
        {
            // Planted bug (test-only `canary` feature): a resume into history skips a revision.
            req.start_revision + 1
        } else {
            req.start_revision
        };
        let mut watcher = Watcher::new(req, key, start, current);
        watcher.serial = serial;
        let synced = watcher.synced;
        slot.watcher_key_bytes += watcher.key_bytes();
        slot.watchers.insert(watch_id, watcher);
        slot.send_control(WatchResponse {
            header: header(current),
            watch_id,
            created: true,
            ..WatchResponse::default()
        });
        if !synced {
            slot.wake.notify_one();
        }
        Ok(())
    }

    /// Answers a create request the caller may not make (auth): etcd's canceled-at-creation
    /// response with `reason`, in order with the stream's other control responses.
    pub fn refuse_create(&self, id: StreamId, reason: &str, current: i64) -> Result<(), QueueFull> {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return Ok(());
        };
        slot.request_room()?;
        slot.send_control(WatchResponse {
            header: header(current),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        });
        Ok(())
    }

    /// Handles a cancel request; an unknown ID gets no reply (as etcd).
    pub fn cancel(&self, id: StreamId, watch_id: i64, current: i64) -> Result<(), QueueFull> {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return Ok(());
        };
        slot.request_room()?;
        if let Some(gone) = slot.watchers.remove(&watch_id) {
            slot.watcher_key_bytes -= gone.key_bytes();
            slot.send_control(WatchResponse {
                header: header(current),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            });
        }
        slot.answer_progress_if_ready(current);
        Ok(())
    }

    /// Handles a progress request (etcd 3.5.8+ rule): answered now if every watcher of the
    /// stream is synced, otherwise as soon as they all are, in order with their events. Any
    /// number of requests while some watcher is unsynced are answered by one reply.
    pub fn request_progress(&self, id: StreamId, current: i64) -> Result<(), QueueFull> {
        let mut inner = self.lock();
        if let Some(slot) = inner.streams.get_mut(&id) {
            slot.request_room()?;
            slot.progress_pending = true;
            slot.answer_progress_if_ready(current);
        }
        Ok(())
    }

    /// Feeds the events of one applied revision to synced watchers. Called by the state machine
    /// under its write lock, in revision order.
    pub fn publish(&self, revision: i64, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let planted = crate::canary::active(crate::canary::Canary::DropWatchEvent)
            && revision % crate::canary::DROP_EVENT_EVERY == 0;
        let limits = self.limits;
        let mut inner = self.lock();
        for slot in inner.streams.values_mut() {
            let mut woke = false;
            for (watch_id, w) in slot.watchers.iter_mut() {
                if !w.synced || revision < w.next_rev {
                    continue;
                }
                debug_assert_eq!(w.next_rev, revision, "synced watcher skipped a revision");
                if w.next_rev != revision {
                    // Never lose events over a missed revision: catch up from history instead.
                    w.synced = false;
                    woke = true;
                    continue;
                }
                let selected = w.select(events);
                if selected.is_empty() || planted {
                    w.next_rev = revision + 1;
                    continue;
                }
                let resp = WatchResponse {
                    header: header(revision),
                    watch_id: *watch_id,
                    events: selected,
                    ..WatchResponse::default()
                };
                if slot
                    .outbox
                    .try_send_all(pieces(resp, w.fragment, limits.fragment_bytes))
                {
                    w.next_rev = revision + 1;
                    w.sent_since_tick = true;
                } else {
                    // Slow consumer: stop queueing, catch up from history later.
                    w.synced = false;
                    woke = true;
                }
            }
            if woke {
                slot.wake.notify_one();
            }
        }
    }

    /// The key space was replaced wholesale (a follower installed the leader's snapshot): the
    /// revisions between a synced watcher's `next_rev` and the snapshot's were never published
    /// here. Every watcher becomes unsynced and catches up from the new key space's history
    /// (or is canceled with the compaction revision when that history no longer reaches back
    /// to it). Called under the state machine's write lock, in the critical section that
    /// replaced the state, so no publish of the new state comes first.
    pub fn restored(&self) {
        let mut inner = self.lock();
        for slot in inner.streams.values_mut() {
            let mut any = false;
            for w in slot.watchers.values_mut() {
                any |= std::mem::replace(&mut w.synced, false);
            }
            if any {
                slot.wake.notify_one();
            }
        }
    }

    /// Progress-notify tick: every synced watcher with `progress_notify` that was sent nothing
    /// since the last tick gets an empty response at the current revision, as long as the
    /// stream's queue has room (a watcher skipped for lack of room gets one at a later tick).
    pub fn progress_tick(&self, id: StreamId, current: i64) {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return;
        };
        // Start where the last tick ran out of room, so no watcher is starved by lower IDs.
        let from = slot.tick_from;
        let ids: Vec<i64> = slot
            .watchers
            .range(from..)
            .chain(slot.watchers.range(..from))
            .map(|(watch_id, _)| *watch_id)
            .collect();
        for watch_id in ids {
            let Some(w) = slot.watchers.get_mut(&watch_id) else {
                continue;
            };
            if w.progress_notify && w.synced && !w.sent_since_tick {
                let notice = WatchResponse {
                    header: header(current),
                    watch_id,
                    ..WatchResponse::default()
                };
                if !slot.outbox.try_send(notice) {
                    slot.tick_from = watch_id;
                    return;
                }
            }
            w.sent_since_tick = false;
        }
        slot.tick_from = i64::MIN;
    }
}

impl EventSource for crate::mvcc::Store {
    fn current_revision(&self) -> i64 {
        crate::mvcc::Store::current_revision(self)
    }

    fn compact_revision(&self) -> i64 {
        crate::mvcc::Store::compact_revision(self)
    }

    fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
        limits: crate::mvcc::PageLimits,
    ) -> Result<(Vec<Event>, i64), i64> {
        self.events_between(key, range_end, from, to, limits)
            .map(|page| (page.events, page.next))
            .map_err(|_| crate::mvcc::Store::compact_revision(self))
    }
}
