//! The bounded response queue of one watch stream.
//!
//! Producers (publish, catch-up, request handling, progress ticks) only ever *try* to queue,
//! under the hub lock: an event response that does not fit turns its watcher unsynced (it
//! catches up from history later), a control reply that does not fit makes the request wait
//! (the stream stops reading requests: backpressure on the client), a progress tick that does
//! not fit is skipped until the next tick. The consumer ([`StreamOutput`]) frees room and wakes
//! the stream's syncer and request reader.
//!
//! Invariant: at most `queued_responses_max` responses are queued, and their encoded bytes stay
//!   within `queued_bytes_max` unless the queue held nothing when a larger response came.
//! Invariant: the pieces of one fragmented response are queued all together or not at all.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use tokio::sync::{mpsc, Notify};

use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::Event;

/// A response and its encoded size, as queued (sized when built, so that queueing under the
/// locks is O(1) per response).
pub(super) struct Queued {
    resp: WatchResponse,
    bytes: usize,
}

impl Queued {
    pub(super) fn new(resp: WatchResponse) -> Self {
        Queued {
            bytes: resp.encoded_len(),
            resp,
        }
    }
}

/// The producing half, owned by the hub's stream slot.
pub(super) struct Outbox {
    tx: mpsc::Sender<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    queued_bytes_max: usize,
}

/// The receiving half of a stream: responses in the order they must be sent.
pub struct StreamOutput {
    rx: mpsc::Receiver<Queued>,
    queued_bytes: Arc<AtomicUsize>,
    /// Signalled when the stream has catch-up work (or room was freed for it).
    pub wake: Arc<Notify>,
    /// Signalled when room was freed, for a request waiting to queue its reply.
    pub room: Arc<Notify>,
}

/// Creates a stream's queue; `responses_max` is raised to 2 (one request's replies).
pub(super) fn queue(
    responses_max: usize,
    queued_bytes_max: usize,
    wake: Arc<Notify>,
    room: Arc<Notify>,
) -> (Outbox, StreamOutput) {
    let (tx, rx) = mpsc::channel(responses_max.max(2));
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued_bytes: queued_bytes.clone(),
            queued_bytes_max,
        },
        StreamOutput {
            rx,
            queued_bytes,
            wake,
            room,
        },
    )
}

impl Outbox {
    /// Whether `count` more responses of `bytes` encoded bytes in all fit now.
    pub(super) fn has_room(&self, count: usize, bytes: usize) -> bool {
        let queued = self.queued_bytes.load(Ordering::Relaxed);
        self.tx.capacity() >= count
            && (queued == 0 || queued.saturating_add(bytes) <= self.queued_bytes_max)
    }

    /// Responses that fit now (0 when the bytes bound is reached).
    pub(super) fn room_count(&self) -> usize {
        if self.queued_bytes.load(Ordering::Relaxed) >= self.queued_bytes_max {
            0
        } else {
            self.tx.capacity()
        }
    }

    /// Queues every response of `pieces` or none of them. False when they do not fit or the
    /// consumer is gone. Call under the hub lock (the only place anything is queued), so room
    /// seen here cannot be taken by another producer before the sends.
    pub(super) fn try_send_all(&self, sized: Vec<Queued>) -> bool {
        let bytes = sized.iter().map(|q| q.bytes).sum();
        if self.tx.is_closed() || !self.has_room(sized.len(), bytes) {
            return false;
        }
        for queued in sized {
            let bytes = queued.bytes;
            if self.tx.try_send(queued).is_err() {
                debug_assert!(false, "room was checked under the hub lock");
                return false;
            }
            self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        true
    }

    /// Queues one response if it fits.
    pub(super) fn try_send(&self, resp: WatchResponse) -> bool {
        self.try_send_all(vec![Queued::new(resp)])
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl StreamOutput {
    fn took(&self, queued: Queued) -> WatchResponse {
        self.queued_bytes.fetch_sub(queued.bytes, Ordering::Relaxed);
        // Room freed: a watcher that fell behind may catch up, a waiting request may go on.
        self.wake.notify_one();
        self.room.notify_one();
        queued.resp
    }

    /// The next response, `None` once the stream is closed and drained.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<WatchResponse>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(q)) => Poll::Ready(Some(self.took(q))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Awaits the next response.
    pub async fn next(&mut self) -> Option<WatchResponse> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next response if one is queued.
    pub fn try_next(&mut self) -> Option<WatchResponse> {
        let q = self.rx.try_recv().ok()?;
        Some(self.took(q))
    }

    /// Responses queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Encoded bytes of the responses queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

/// `resp` as it goes on the queue: split into fragments when the watcher asked for them and
/// it holds two or more events over `fragment_bytes` (every piece but the last carries
/// `fragment: true`, never splitting an event); otherwise whole.
pub(super) fn pieces(resp: WatchResponse, fragment: bool, fragment_bytes: usize) -> Vec<Queued> {
    let whole = Queued::new(resp);
    if !fragment || whole.resp.events.len() < 2 || whole.bytes <= fragment_bytes {
        return vec![whole];
    }
    let resp = whole.resp;
    let WatchResponse {
        header,
        watch_id,
        events,
        ..
    } = resp;
    let mut groups: Vec<Vec<Event>> = vec![Vec::new()];
    let mut group_bytes = 0usize;
    for event in events {
        let event_bytes = event.encoded_len() + 4;
        let current = groups.last().map_or(0, Vec::len);
        if current > 0 && group_bytes + event_bytes > fragment_bytes {
            groups.push(Vec::new());
            group_bytes = 0;
        }
        group_bytes += event_bytes;
        if let Some(last) = groups.last_mut() {
            last.push(event);
        }
    }
    let count = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, events)| {
            Queued::new(WatchResponse {
                header,
                watch_id,
                events,
                fragment: i + 1 < count,
                ..WatchResponse::default()
            })
        })
        .collect()
}
