//! watch/ — fan-out of committed events to watch streams, with etcd's ordering rules.
//!
//! One [`Hub`] per member. Each gRPC watch stream registers a stream slot; each create request
//! adds a [`Watcher`] to it. The hub is fed by the state machine ([`Hub::publish`], called under
//! the state machine's write lock, once per applied revision) and by catch-up passes
//! ([`Hub::sync_stream`], called under the state machine's read lock). Because both run under
//! that lock, no revision can slip between "read history up to R" and "receive live events from
//! R+1": a watcher is never handed a gap or a duplicate.
//!
//! Watchers are *synced* (they get live events as they are applied) or *unsynced* (behind; they
//! catch up from mvcc history). A new watcher with a start revision at or below the current
//! revision starts unsynced. A synced watcher whose stream has too many undelivered responses
//! (a slow consumer) drops back to unsynced instead of queueing more: memory per stream stays
//! bounded and the watcher later catches up exactly from history, from its `next_rev`.
//!
//! Wire rules kept here (reference §1.4): created replies in request order, before any event of
//! that watcher; auto watch IDs per stream from 0, skipping IDs in use, never reused; every event
//! of one revision in one response; events in revision order; a start revision below the compacted
//! revision gets a created reply and then a cancel carrying `compact_revision`; a progress request
//! is answered (watch_id -1) only when every watcher of the stream is synced, in order with events.
//!
//! Invariant: for every watcher, the revisions it has been sent are strictly increasing and
//!   contiguous over the revisions that touched its range (no gap, no duplicate).
//! Invariant: lock order is state machine lock → hub lock; the hub never calls back out.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Notify};

use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// What the hub needs from the key space (implemented by `mvcc::Store`).
pub trait EventSource {
    fn current_revision(&self) -> i64;
    /// The revision of the last compaction (0 or negative when never compacted).
    fn compact_revision(&self) -> i64;
    /// Every event with `from <= revision <= to` on keys in `[key, range_end)` (etcd's range
    /// rules), in revision order, with `prev_kv` filled where the key existed before.
    /// `Err(compact_revision)` when `from` is below the compaction point.
    fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, i64>;
}

/// Identifies one gRPC watch stream.
pub type StreamId = u64;

/// Limits of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Undelivered event responses per stream before synced watchers fall back to unsynced.
    pub queued_responses_max: usize,
    /// Revisions per catch-up response of one watcher, counted among the revisions that touched
    /// its range (etcd: 1000); also the window of one read from history.
    pub catch_up_revisions_max: i64,
    /// A response for a watcher that asked for `fragment` is split above this many encoded
    /// bytes (etcd: max-request-bytes + 512 KiB), never inside one event.
    pub fragment_bytes: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            queued_responses_max: 1024,
            catch_up_revisions_max: 1000,
            fragment_bytes: 1_572_864 + 512 * 1024,
        }
    }
}

const RANGE_EMPTY: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// One watcher of a stream.
#[derive(Debug, Clone)]
pub struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// Split oversized responses into fragments.
    fragment: bool,
    /// The next revision this watcher must see.
    next_rev: i64,
    synced: bool,
    /// Whether anything was sent since the last progress-notify tick.
    sent_since_tick: bool,
}

impl Watcher {
    fn matches(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// The events of this watcher out of `events`, with filters and prev_kv applied.
    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| self.matches(&kv.key)))
            .filter(|e| {
                let put = e.r#type == EventType::Put as i32;
                !(put && self.no_put || !put && self.no_delete)
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// The receiving half of a stream: responses in the order they must be sent.
pub struct StreamOutput {
    pub rx: mpsc::UnboundedReceiver<WatchResponse>,
    /// Decrement once per event response taken out of `rx` (see [`Hub::delivered`]).
    pub queued: Arc<AtomicUsize>,
    /// Signalled when the stream has catch-up work.
    pub wake: Arc<Notify>,
}

struct StreamSlot {
    tx: mpsc::UnboundedSender<WatchResponse>,
    queued: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    progress_pending: bool,
}

impl StreamSlot {
    fn all_synced(&self) -> bool {
        self.watchers.values().all(|w| w.synced)
    }

    fn send_control(&self, resp: WatchResponse) {
        // A closed receiver means the stream is going away; the slot is removed by close_stream.
        let _ = self.tx.send(resp);
    }

    /// Sends an event response, split into fragments when the watcher asked for them and the
    /// response is too large: every piece but the last carries `fragment: true`.
    fn send_events_fragmented(&self, resp: WatchResponse, fragment: bool, fragment_bytes: usize) {
        use prost::Message;
        if !fragment || resp.events.len() < 2 || resp.encoded_len() <= fragment_bytes {
            self.send_events(resp);
            return;
        }
        let WatchResponse {
            header,
            watch_id,
            events,
            ..
        } = resp;
        let mut pieces: Vec<Vec<Event>> = vec![Vec::new()];
        let mut piece_bytes = 0usize;
        for event in events {
            let event_bytes = event.encoded_len() + 4;
            let current = pieces.last().map_or(0, Vec::len);
            if current > 0 && piece_bytes + event_bytes > fragment_bytes {
                pieces.push(Vec::new());
                piece_bytes = 0;
            }
            piece_bytes += event_bytes;
            if let Some(last) = pieces.last_mut() {
                last.push(event);
            }
        }
        let count = pieces.len();
        for (i, events) in pieces.into_iter().enumerate() {
            self.send_events(WatchResponse {
                header,
                watch_id,
                events,
                fragment: i + 1 < count,
                ..WatchResponse::default()
            });
        }
    }

    fn send_events(&self, resp: WatchResponse) -> bool {
        if self.tx.send(resp).is_ok() {
            self.queued.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn has_room(&self, limits: &HubLimits) -> bool {
        self.queued.load(Ordering::Relaxed) < limits.queued_responses_max
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
}

#[derive(Default)]
struct Inner {
    streams: HashMap<StreamId, StreamSlot>,
    next_stream: StreamId,
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
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let mut inner = self.lock();
        let id = inner.next_stream;
        inner.next_stream += 1;
        inner.streams.insert(
            id,
            StreamSlot {
                tx,
                queued: queued.clone(),
                wake: wake.clone(),
                watchers: BTreeMap::new(),
                next_auto_id: 0,
                progress_pending: false,
            },
        );
        (id, StreamOutput { rx, queued, wake })
    }

    /// Forgets a stream and all its watchers.
    pub fn close_stream(&self, id: StreamId) {
        self.lock().streams.remove(&id);
    }

    /// Whether the stream is still registered.
    pub fn is_open(&self, id: StreamId) -> bool {
        self.lock().streams.contains_key(&id)
    }

    /// Number of watchers across all streams.
    pub fn watcher_count(&self) -> usize {
        self.lock().streams.values().map(|s| s.watchers.len()).sum()
    }

    /// Handles a create request. Call with the state machine's read lock held (`src` is the
    /// locked store) so that the created reply and the watcher's first revision are consistent.
    pub fn create(&self, id: StreamId, req: &WatchCreateRequest, src: &dyn EventSource) {
        let current = src.current_revision();
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return;
        };
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
        let range_end = req.range_end.clone();
        if !(range_end.is_empty() || range_end == [0] || range_end > key) {
            slot.send_control(failure(RANGE_EMPTY));
            return;
        }
        if req.start_revision < 0 {
            slot.send_control(failure(COMPACTED));
            return;
        }
        let watch_id = if req.watch_id == 0 {
            slot.free_auto_id()
        } else if slot.watchers.contains_key(&req.watch_id) {
            slot.send_control(failure(DUPLICATE_ID));
            return;
        } else {
            req.watch_id
        };
        let start = if req.start_revision == 0 {
            current + 1
        } else {
            req.start_revision
        };
        let filters = &req.filters;
        let watcher = Watcher {
            key,
            range_end,
            prev_kv: req.prev_kv,
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev: start,
            synced: start > current,
            sent_since_tick: false,
        };
        let synced = watcher.synced;
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
    }

    /// Handles a cancel request; an unknown ID gets no reply (as etcd).
    pub fn cancel(&self, id: StreamId, watch_id: i64, current: i64) {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return;
        };
        if slot.watchers.remove(&watch_id).is_some() {
            slot.send_control(WatchResponse {
                header: header(current),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            });
        }
        Self::answer_progress_if_ready(slot, current);
    }

    /// Handles a progress request (etcd 3.5.8+ rule): answered now if every watcher of the
    /// stream is synced, otherwise as soon as they all are, in order with their events.
    pub fn request_progress(&self, id: StreamId, src: &dyn EventSource) {
        let current = src.current_revision();
        let mut inner = self.lock();
        if let Some(slot) = inner.streams.get_mut(&id) {
            slot.progress_pending = true;
            Self::answer_progress_if_ready(slot, current);
        }
    }

    fn answer_progress_if_ready(slot: &mut StreamSlot, current: i64) {
        if slot.progress_pending && slot.all_synced() {
            slot.progress_pending = false;
            slot.send_control(WatchResponse {
                header: header(current),
                watch_id: -1,
                ..WatchResponse::default()
            });
        }
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
            let room = slot.has_room(&limits);
            let tx_ok = !slot.tx.is_closed();
            let mut outgoing = Vec::new();
            for (watch_id, w) in slot.watchers.iter_mut() {
                if !w.synced || revision < w.next_rev {
                    continue;
                }
                debug_assert_eq!(w.next_rev, revision, "synced watcher skipped a revision");
                let selected = w.select(events);
                if selected.is_empty() || planted {
                    w.next_rev = revision + 1;
                    continue;
                }
                if room && tx_ok {
                    w.next_rev = revision + 1;
                    w.sent_since_tick = true;
                    outgoing.push((
                        WatchResponse {
                            header: header(revision),
                            watch_id: *watch_id,
                            events: selected,
                            ..WatchResponse::default()
                        },
                        w.fragment,
                    ));
                } else {
                    // Slow consumer: stop queueing, catch up from history later.
                    w.synced = false;
                    woke = true;
                }
            }
            for (resp, fragment) in outgoing {
                slot.send_events_fragmented(resp, fragment, limits.fragment_bytes);
            }
            if woke {
                slot.wake.notify_one();
            }
        }
    }

    /// One catch-up pass over the unsynced watchers of a stream. Call with the state machine's
    /// read lock held. Returns true when the stream still has unsynced watchers (call again once
    /// the client has drained some responses).
    pub fn sync_stream(&self, id: StreamId, src: &dyn EventSource) -> bool {
        let current = src.current_revision();
        let compacted = src.compact_revision();
        let limits = self.limits;
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return false;
        };
        let mut canceled = Vec::new();
        let ids: Vec<i64> = slot
            .watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(id, _)| *id)
            .collect();
        for watch_id in ids {
            while slot.has_room(&limits) {
                let Some(w) = slot.watchers.get_mut(&watch_id) else {
                    break;
                };
                if compacted > 0 && w.next_rev < compacted {
                    canceled.push(watch_id);
                    break;
                }
                if w.next_rev > current {
                    w.synced = true;
                    break;
                }
                let Ok((events, next_rev)) =
                    catch_up_batch(w, src, current, limits.catch_up_revisions_max)
                else {
                    canceled.push(watch_id);
                    break;
                };
                debug_assert!(next_rev > w.next_rev, "a catch-up step must make progress");
                w.next_rev = next_rev;
                let events = w.select(&events);
                if !events.is_empty() {
                    w.sent_since_tick = true;
                    let resp = WatchResponse {
                        header: header(current),
                        watch_id,
                        events,
                        ..WatchResponse::default()
                    };
                    let fragment = w.fragment;
                    slot.send_events_fragmented(resp, fragment, limits.fragment_bytes);
                }
            }
        }
        for watch_id in canceled {
            slot.watchers.remove(&watch_id);
            slot.send_control(WatchResponse {
                header: Some(ResponseHeader::default()),
                watch_id,
                canceled: true,
                compact_revision: compacted,
                ..WatchResponse::default()
            });
        }
        Self::answer_progress_if_ready(slot, current);
        !slot.all_synced()
    }

    /// Progress-notify tick: every synced watcher with `progress_notify` that was sent nothing
    /// since the last tick gets an empty response at the current revision.
    pub fn progress_tick(&self, id: StreamId, current: i64) {
        let mut inner = self.lock();
        let Some(slot) = inner.streams.get_mut(&id) else {
            return;
        };
        let mut notify = Vec::new();
        for (watch_id, w) in slot.watchers.iter_mut() {
            if w.progress_notify && w.synced && !w.sent_since_tick {
                notify.push(*watch_id);
            }
            w.sent_since_tick = false;
        }
        for watch_id in notify {
            slot.send_control(WatchResponse {
                header: header(current),
                watch_id,
                ..WatchResponse::default()
            });
        }
    }

    /// The stream's consumer took one response out of its receiver.
    pub fn delivered(output_queued: &AtomicUsize, resp: &WatchResponse) {
        if !resp.events.is_empty() {
            output_queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The events of `w`'s range for its next catch-up response, and the revision after them.
///
/// As etcd's batches: the response covers the first `revisions_max` revisions from `next_rev`
/// that touched the range (counted before the watcher's filters), read from history in windows
/// of `revisions_max` revisions. `Err` when the history below the compaction point is needed.
fn catch_up_batch(
    w: &Watcher,
    src: &dyn EventSource,
    current: i64,
    revisions_max: i64,
) -> Result<(Vec<Event>, i64), i64> {
    let revisions_max = revisions_max.max(1);
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_revs = 0;
    let mut from = w.next_rev;
    while from <= current {
        let to = current.min(from.saturating_add(revisions_max - 1));
        for event in src.events_in(&w.key, &w.range_end, from, to)? {
            let rev = event.kv.as_ref().map_or(from, |kv| kv.mod_revision);
            let last_rev = batch
                .last()
                .and_then(|e| e.kv.as_ref())
                .map(|kv| kv.mod_revision);
            if last_rev != Some(rev) {
                if batch_revs == revisions_max {
                    return Ok((batch, rev));
                }
                batch_revs += 1;
            }
            batch.push(event);
        }
        from = to + 1;
    }
    Ok((batch, current + 1))
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
    ) -> Result<Vec<Event>, i64> {
        if to < from {
            return Ok(Vec::new());
        }
        let window = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
        let events = self
            .events_since(from, key, range_end, window)
            .map_err(|_| crate::mvcc::Store::compact_revision(self))?;
        Ok(events
            .into_iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision <= to))
            .collect())
    }
}
