//! One watcher of a stream: its range, filters and position in history.
//!
//! Invariant: `next_rev` only grows; a synced watcher's `next_rev` is the revision after the
//!   last one published (it receives the next one live).

use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::WatchCreateRequest;
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;

/// One watcher of a stream.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub(super) key: Vec<u8>,
    pub(super) range_end: Vec<u8>,
    pub(super) prev_kv: bool,
    pub(super) no_put: bool,
    pub(super) no_delete: bool,
    pub(super) progress_notify: bool,
    /// Split oversized responses into fragments.
    pub(super) fragment: bool,
    /// The next revision this watcher must see.
    pub(super) next_rev: i64,
    pub(super) synced: bool,
    /// Whether anything was sent since the last progress-notify tick.
    pub(super) sent_since_tick: bool,
    /// Hub-wide creation number: tells a watcher from a later one that reused its ID while a
    /// catch-up pass was reading history without the hub lock.
    pub(super) serial: u64,
}

impl Watcher {
    /// A watcher for `req` (validated by the caller) starting at `start`.
    pub(super) fn new(req: &WatchCreateRequest, key: Vec<u8>, start: i64, current: i64) -> Self {
        let filters = &req.filters;
        Watcher {
            key,
            range_end: req.range_end.clone(),
            prev_kv: req.prev_kv,
            no_put: filters.contains(&(FilterType::Noput as i32)),
            no_delete: filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            next_rev: start,
            synced: start > current,
            sent_since_tick: false,
            serial: 0,
        }
    }

    /// Bytes of the watcher's range, counted against the stream's key-bytes bound.
    pub(super) fn key_bytes(&self) -> usize {
        self.key.len() + self.range_end.len()
    }

    pub(super) fn matches(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// The events of this watcher out of `events`, with filters and prev_kv applied.
    pub(super) fn select(&self, events: &[Event]) -> Vec<Event> {
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
