//! `etcdserverpb.Watch`: one bidi stream per client, many watchers multiplexed on it.
//!
//! Per stream: a reader task turns requests into hub calls (each under the state machine's read
//! lock, O(1) work), a syncer task runs catch-up passes for unsynced watchers (woken by the hub,
//! and on a short tick for progress notifications; history is read from an O(1) copy of the
//! key space with no lock held, see `watch`), and [`WatchOut`] hands queued responses to tonic,
//! filling in the member's header fields.
//!
//! Backpressure: the hub refuses a request whose replies do not fit in the stream's bounded
//! queue; the reader then waits until the client reads, so a client that floods requests
//! without reading stops being read (HTTP/2 flow control pushes back) instead of growing memory.
//!
//! Invariant: when tonic drops the response stream ([`WatchOut`]) — the client went away or the
//!   RPC ended — the hub forgets the stream and both tasks end (they wait on `gone`).
//! Invariant: no lock is held across an `.await`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::{req_ctx, status};
use crate::api::{Api, ApiError, ReqCtx};
use crate::mvcc::Store;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::raft::state_machine::SmShared;
use crate::watch::{Hub, KeySpace, QueueFull, StreamId, StreamOutput};

/// How often the syncer looks at a stream without being woken (catch-up retry, progress).
const SYNC_TICK: Duration = Duration::from_millis(100);

/// The state machine as the watch hub reads it: an O(1) clone of the mvcc store for catch-up
/// (the maps are persistent), and the current revision under the read lock for hand-overs.
impl KeySpace for SmShared {
    type View = Store;

    fn view(&self) -> Store {
        self.read().state.kv.clone()
    }

    fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R {
        let sm = self.read();
        f(sm.state.kv.current_revision())
    }
}

/// The Watch service.
pub struct WatchService {
    api: Arc<Api>,
}

impl WatchService {
    pub fn new(api: Arc<Api>) -> Self {
        WatchService { api }
    }
}

/// Why the server ended a stream (reported to the client as the stream's final status).
type EndReason = Arc<std::sync::Mutex<Option<Status>>>;

/// The response side of one watch stream.
pub struct WatchOut {
    output: StreamOutput,
    api: Arc<Api>,
    id: StreamId,
    end: EndReason,
    ended: bool,
    /// Dropped with this stream: the stream's tasks wait on the other half's `closed()`.
    _gone: mpsc::Receiver<()>,
}

impl Stream for WatchOut {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.output.poll_next(cx) {
            Poll::Ready(Some(mut resp)) => {
                let partial = resp.header.take();
                let mut header = self.api.header(&partial);
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
        self.api.hub.close_stream(self.id);
    }
}

/// Hands one request to the hub under the key space's lock.
fn handle_request<K: KeySpace>(
    keys: &K,
    hub: &Hub,
    id: StreamId,
    req: &WatchRequest,
) -> Result<(), QueueFull> {
    keys.with_current_revision(|current| match &req.request_union {
        Some(RequestUnion::CreateRequest(create)) => hub.create(id, create, current),
        Some(RequestUnion::CancelRequest(cancel)) => hub.cancel(id, cancel.watch_id, current),
        Some(RequestUnion::ProgressRequest(_)) => hub.request_progress(id, current),
        None => Ok(()),
    })
}

/// The request stream of one watch, minus the create requests the caller may not make (READ on
/// the watched range, checked once per create as etcd does): each of those is answered here
/// with etcd's canceled-at-creation response and not passed on.
struct PermittedCreates<S> {
    inner: S,
    api: Arc<Api>,
    ctx: crate::api::ReqCtx,
    id: StreamId,
}

/// etcd's cancel reason for a watch the caller may not read.
const WATCH_PERMISSION_DENIED: &str =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

impl<S> Stream for PermittedCreates<S>
where
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
{
    type Item = Result<WatchRequest, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let next = Pin::new(&mut self.inner).poll_next(cx);
            let Poll::Ready(Some(Ok(req))) = next else {
                return next;
            };
            let Some(RequestUnion::CreateRequest(create)) = &req.request_union else {
                return Poll::Ready(Some(Ok(req)));
            };
            let key = if create.key.is_empty() {
                vec![0]
            } else {
                create.key.clone()
            };
            if self
                .api
                .check_read(&self.ctx, &key, &create.range_end)
                .is_ok()
            {
                return Poll::Ready(Some(Ok(req)));
            }
            let current = self.api.current_header().revision;
            // A full queue drops the refusal rather than block the reader; the client then
            // sees no answer to this create, as with any request on an overloaded stream.
            let _ = self
                .api
                .hub
                .refuse_create(self.id, WATCH_PERMISSION_DENIED, current);
        }
    }
}

/// Ends a `hasleader` stream after the member has had no leader for a while.
pub(crate) struct LeaderWatch {
    pub known: Box<dyn Fn() -> bool + Send + Sync>,
    pub cancel_after: Duration,
    pub end: EndReason,
}

/// How the syncer of a stream ticks and whether it ends the stream without a leader.
pub(crate) struct SyncerOpts {
    pub progress_notify_interval: Duration,
    pub leader: Option<LeaderWatch>,
}

/// The two tasks of one stream (the service lets them end by themselves; tests join them).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct StreamTasks {
    pub reader: JoinHandle<()>,
    pub syncer: JoinHandle<()>,
}

/// Spawns the request reader and the syncer of stream `id`. Both end once `gone` is closed
/// (the response stream was dropped), the hub forgot the stream, or (reader) the client's
/// request stream ended with an error.
pub(crate) fn spawn_stream_tasks<K, S>(
    hub: Arc<Hub>,
    keys: Arc<K>,
    id: StreamId,
    inbound: S,
    gone: mpsc::Sender<()>,
    output: &StreamOutput,
    opts: SyncerOpts,
) -> StreamTasks
where
    K: KeySpace + Send + Sync + 'static,
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    let reader = tokio::spawn(read_requests(
        hub.clone(),
        keys.clone(),
        id,
        inbound,
        gone.clone(),
        output.room.clone(),
    ));
    let syncer = tokio::spawn(run_syncer(hub, keys, id, gone, output.wake.clone(), opts));
    StreamTasks { reader, syncer }
}

async fn read_requests<K, S>(
    hub: Arc<Hub>,
    keys: Arc<K>,
    id: StreamId,
    mut inbound: S,
    gone: mpsc::Sender<()>,
    room: Arc<Notify>,
) where
    K: KeySpace,
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
{
    // The stream stays open after the client half-closes, as etcd's does; it ends when the
    // client goes away (the response stream is dropped).
    loop {
        let next = tokio::select! {
            next = poll_fn(|cx| Pin::new(&mut inbound).poll_next(cx)) => next,
            _ = gone.closed() => return,
        };
        let Some(Ok(req)) = next else {
            return;
        };
        while handle_request(&*keys, &hub, id, &req) == Err(QueueFull) {
            // Backpressure: wait for the client to read before taking this request.
            tokio::select! {
                _ = room.notified() => {}
                _ = gone.closed() => return,
            }
        }
    }
}

async fn run_syncer<K: KeySpace>(
    hub: Arc<Hub>,
    keys: Arc<K>,
    id: StreamId,
    gone: mpsc::Sender<()>,
    wake: Arc<Notify>,
    opts: SyncerOpts,
) {
    let SyncerOpts {
        progress_notify_interval: interval,
        leader,
    } = opts;
    let mut last_progress = tokio::time::Instant::now();
    let mut leaderless_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::timeout(SYNC_TICK, wake.notified()) => {}
            _ = gone.closed() => return,
        }
        if !hub.is_open(id) {
            return;
        }
        if let Some(leader) = &leader {
            if (leader.known)() {
                leaderless_since = None;
            } else {
                let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= leader.cancel_after {
                    // Closing the hub slot ends the response stream after what is queued; the
                    // stream then reports this status.
                    *leader.end.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(status(ApiError::NoLeader));
                    hub.close_stream(id);
                    return;
                }
            }
        }
        hub.sync_stream(id, &*keys);
        if last_progress.elapsed() >= interval {
            last_progress = tokio::time::Instant::now();
            keys.with_current_revision(|current| hub.progress_tick(id, current));
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchOut;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchOut>, Status> {
        let ctx = req_ctx(&request);
        open_stream(&self.api, &ctx, request.into_inner())
            .map(Response::new)
            .map_err(status)
    }
}

/// Opens one watch stream fed by `inbound` (the gRPC request stream, or the requests of a
/// gateway body): the response side is the returned [`WatchOut`].
pub fn open_stream<S>(api: &Arc<Api>, ctx: &ReqCtx, inbound: S) -> Result<WatchOut, ApiError>
where
    S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
{
    api.check_leader(ctx)?;
    api.refuse_learner()?;
    let (id, output) = api.hub.open_stream();
    let inbound = PermittedCreates {
        inner: inbound,
        api: api.clone(),
        ctx: ctx.clone(),
        id,
    };
    let (gone_tx, gone_rx) = mpsc::channel(1);
    let end: EndReason = Arc::default();
    let leader = ctx.require_leader.then(|| {
        let node = api.node.clone();
        LeaderWatch {
            known: Box::new(move || node.current_leader().is_some()),
            cancel_after: api.leader_lost_watch_cancel,
            end: end.clone(),
        }
    });
    // The tasks end by themselves (see `spawn_stream_tasks`); nothing joins them.
    let _tasks = spawn_stream_tasks(
        api.hub.clone(),
        api.node.state().clone(),
        id,
        inbound,
        gone_tx,
        &output,
        SyncerOpts {
            progress_notify_interval: api.progress_notify_interval,
            leader,
        },
    );
    Ok(WatchOut {
        output,
        api: api.clone(),
        id,
        end,
        ended: false,
        _gone: gone_rx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::stream::ChannelStream;
    use crate::proto::etcdserverpb::WatchCreateRequest;
    use crate::watch::HubLimits;

    /// The key space behind a lock, as the state machine keeps it.
    struct Keys(std::sync::RwLock<Store>);

    impl KeySpace for Keys {
        type View = Store;
        fn view(&self) -> Store {
            self.0.read().unwrap().clone()
        }
        fn with_current_revision<R>(&self, f: impl FnOnce(i64) -> R) -> R {
            f(self.0.read().unwrap().current_revision())
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn create(key: &str) -> Result<WatchRequest, Status> {
        Ok(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.as_bytes().to_vec(),
                ..WatchCreateRequest::default()
            })),
        })
    }

    /// One stream with its tasks, driven the way tonic drives it.
    struct Client {
        hub: Arc<Hub>,
        id: StreamId,
        requests: mpsc::Sender<Result<WatchRequest, Status>>,
        output: StreamOutput,
        gone: mpsc::Receiver<()>,
        tasks: StreamTasks,
    }

    fn open(limits: HubLimits) -> Client {
        let hub = Arc::new(Hub::new(limits));
        let keys = Arc::new(Keys(std::sync::RwLock::new(Store::new())));
        let (id, output) = hub.open_stream();
        let (requests, inbound) = mpsc::channel(1024);
        let (gone_tx, gone) = mpsc::channel(1);
        let tasks = spawn_stream_tasks(
            hub.clone(),
            keys,
            id,
            ChannelStream::new(inbound),
            gone_tx,
            &output,
            SyncerOpts {
                progress_notify_interval: Duration::from_secs(600),
                leader: None,
            },
        );
        Client {
            hub,
            id,
            requests,
            output,
            gone,
            tasks,
        }
    }

    impl Client {
        /// What tonic does when the client goes away: it drops the response stream, whose
        /// `Drop` closes the hub slot and releases `gone`. The request half stays open (a
        /// half-dead connection does not have to end it).
        async fn vanish(self) -> (Arc<Hub>, mpsc::Sender<Result<WatchRequest, Status>>) {
            let Client {
                hub,
                id,
                requests,
                output,
                gone,
                tasks,
            } = self;
            hub.close_stream(id);
            drop(output);
            drop(gone);
            let ended = tokio::time::timeout(Duration::from_secs(30), async {
                tasks.reader.await.unwrap();
                tasks.syncer.await.unwrap();
            })
            .await;
            assert!(ended.is_ok(), "the stream's tasks outlived it");
            (hub, requests)
        }
    }

    #[test]
    fn dropping_the_response_stream_ends_every_task_of_the_stream() {
        runtime().block_on(async {
            let mut client = open(HubLimits::default());
            client.requests.send(create("k")).await.unwrap();
            let created = client.output.next().await.unwrap();
            assert!(created.created);
            let (hub, _requests) = client.vanish().await;
            assert_eq!(hub.stream_count(), 0);
            assert_eq!(hub.watcher_count(), 0);
        });
    }

    #[test]
    fn a_client_flooding_creates_without_reading_is_pushed_back_then_served_in_order() {
        runtime().block_on(async {
            let limits = HubLimits {
                queued_responses_max: 4,
                ..HubLimits::default()
            };
            let mut client = open(limits);
            for i in 0..50 {
                client
                    .requests
                    .send(create(&format!("k{i}")))
                    .await
                    .unwrap();
            }
            // The reader stops once replies no longer fit: the queue stays at its bound and
            // the rest of the requests wait unread.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while client.output.len() < limits.queued_responses_max - 1 {
                assert!(tokio::time::Instant::now() < deadline, "the reader stalled");
                tokio::task::yield_now().await;
            }
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert!(client.output.len() < limits.queued_responses_max);
            assert!(client.hub.watcher_count() < 50);
            // Reading lets every request through, replies in request order.
            let mut ids = Vec::new();
            while ids.len() < 50 {
                let resp = tokio::time::timeout(Duration::from_secs(30), client.output.next())
                    .await
                    .expect("a request waiting for room was never handled")
                    .unwrap();
                assert!(resp.created && !resp.canceled);
                ids.push(resp.watch_id);
            }
            assert_eq!(ids, (0..50).collect::<Vec<i64>>());
        });
    }

    #[test]
    fn a_reader_waiting_for_room_ends_with_the_stream() {
        runtime().block_on(async {
            let limits = HubLimits {
                queued_responses_max: 4,
                ..HubLimits::default()
            };
            let client = open(limits);
            for i in 0..50 {
                client
                    .requests
                    .send(create(&format!("k{i}")))
                    .await
                    .unwrap();
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while client.output.len() < limits.queued_responses_max - 1 {
                assert!(tokio::time::Instant::now() < deadline, "the reader stalled");
                tokio::task::yield_now().await;
            }
            let (hub, _requests) = client.vanish().await;
            assert_eq!(hub.stream_count(), 0);
        });
    }
}
