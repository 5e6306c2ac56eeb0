//! `etcdserverpb.Watch`: one bidi stream per client, many watchers multiplexed on it.
//!
//! Per stream: a reader task turns requests into hub calls (under the state machine's read
//! lock), a syncer task runs catch-up passes for unsynced watchers (woken by the hub, and on a
//! short tick for progress notifications), and [`WatchOut`] hands queued responses to tonic,
//! filling in the member's header fields.
//!
//! Invariant: every hub call that reads the key space holds the state machine's read lock, so
//! it cannot interleave with an apply (see `watch` module docs).

use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, Notify};
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::watch::{Hub, StreamId};

/// How often the syncer looks at a stream without being woken (catch-up retry, progress).
const SYNC_TICK: Duration = Duration::from_millis(100);

/// The Watch service.
pub struct WatchService {
    ctx: Arc<Ctx>,
    hub: Arc<Hub>,
    progress_notify_interval: Duration,
    leader_lost_cancel: Duration,
}

impl WatchService {
    pub fn new(
        ctx: Arc<Ctx>,
        hub: Arc<Hub>,
        progress_notify_interval: Duration,
        leader_lost_cancel: Duration,
    ) -> Self {
        WatchService {
            ctx,
            hub,
            progress_notify_interval,
            leader_lost_cancel,
        }
    }
}

/// Why the server ended a stream (reported to the client as the stream's final status).
type EndReason = Arc<std::sync::Mutex<Option<Status>>>;

/// The response side of one watch stream.
pub struct WatchOut {
    rx: mpsc::UnboundedReceiver<WatchResponse>,
    queued: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    ctx: Arc<Ctx>,
    hub: Arc<Hub>,
    id: StreamId,
    end: EndReason,
    ended: bool,
}

impl Stream for WatchOut {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(mut resp)) => {
                Hub::delivered(&self.queued, &resp);
                if !resp.events.is_empty() {
                    // Room freed: a watcher that fell behind may catch up now.
                    self.wake.notify_one();
                }
                let partial = resp.header.take();
                let mut header = self.ctx.header(&partial);
                if partial.is_none() {
                    header.revision = 0;
                }
                resp.header = Some(header);
                Poll::Ready(Some(Ok(resp)))
            }
            Poll::Ready(None) => {
                if self.ended {
                    return Poll::Ready(None);
                }
                self.ended = true;
                let reason = self.end.lock().unwrap_or_else(|p| p.into_inner()).take();
                Poll::Ready(reason.map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for WatchOut {
    fn drop(&mut self) {
        self.hub.close_stream(self.id);
    }
}

fn handle_request(ctx: &Ctx, hub: &Hub, id: StreamId, req: WatchRequest) {
    let sm = ctx.node.state().read();
    let src = &sm.state.kv;
    match req.request_union {
        Some(RequestUnion::CreateRequest(create)) => hub.create(id, &create, src),
        Some(RequestUnion::CancelRequest(cancel)) => {
            hub.cancel(id, cancel.watch_id, src.current_revision())
        }
        Some(RequestUnion::ProgressRequest(_)) => hub.request_progress(id, src),
        None => {}
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchOut;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchOut>, Status> {
        self.ctx.check_leader(request.metadata())?;
        super::cluster::refuse_learner(&self.ctx)?;
        let require_leader = super::requires_leader(request.metadata());
        let mut inbound = request.into_inner();
        let (id, output) = self.hub.open_stream();

        let (ctx, hub) = (self.ctx.clone(), self.hub.clone());
        tokio::spawn(async move {
            // The stream stays open after the client half-closes, as etcd's does; it ends when
            // the client goes away (the response stream is dropped).
            while let Ok(Some(req)) = inbound.message().await {
                handle_request(&ctx, &hub, id, req);
            }
        });

        let (ctx, hub, wake) = (self.ctx.clone(), self.hub.clone(), output.wake.clone());
        let interval = self.progress_notify_interval;
        let leader_lost_cancel = self.leader_lost_cancel;
        let end: EndReason = Arc::default();
        let end_reason = end.clone();
        tokio::spawn(async move {
            let mut last_progress = tokio::time::Instant::now();
            let mut leaderless_since: Option<tokio::time::Instant> = None;
            loop {
                let _ = tokio::time::timeout(SYNC_TICK, wake.notified()).await;
                if !hub.is_open(id) {
                    break;
                }
                if require_leader {
                    if ctx.node.current_leader().is_some() {
                        leaderless_since = None;
                    } else {
                        let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= leader_lost_cancel {
                            // Closing the hub slot ends the response stream after what is
                            // queued; the stream then reports this status.
                            *end_reason.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(Status::unavailable(super::error::NO_LEADER));
                            hub.close_stream(id);
                            break;
                        }
                    }
                }
                let sm = ctx.node.state().read();
                hub.sync_stream(id, &sm.state.kv);
                if last_progress.elapsed() >= interval {
                    last_progress = tokio::time::Instant::now();
                    hub.progress_tick(id, sm.state.kv.current_revision());
                }
            }
        });

        Ok(Response::new(WatchOut {
            rx: output.rx,
            queued: output.queued,
            wake: output.wake,
            ctx: self.ctx.clone(),
            hub: self.hub.clone(),
            id,
            end,
            ended: false,
        }))
    }
}
