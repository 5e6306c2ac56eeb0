//! The streaming calls of the gateway: Watch and LeaseKeepAlive (bidi in gRPC), Snapshot and
//! Election.Observe (server streams). The request body holds one or more JSON messages back
//! to back; each is fed to the call. The answer is `200`, chunked, each message written as
//! `{"result":{...}}\n` in its own chunk; an error mid-stream is written as
//! `{"error":{"grpc_code":N,"http_code":N,"message":"...","http_status":"..."}}` and ends it.
//! A first message that does not decode is answered as a unary error with code Unknown (500),
//! as etcd's gateway does.
//!
//! A watch stays open after its requests are taken (until the client goes away); a keep-alive
//! ends once every request in the body is answered (Patroni reads the whole response).
//!
//! Invariant: every stream is bounded: the watch by the hub's queue, the others by a bounded
//!   channel; a client that stops reading stops the producer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use futures_core::Stream;
use http::{header, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{error_response, http_status};
use crate::api::{lease, maintenance, Api, ApiError, Code, ReqCtx};
use crate::grpc::stream::ChannelStream;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, SnapshotRequest, WatchRequest};
use crate::proto::v3electionpb::LeaderRequest;

/// Keep-alive answers queued before the producer waits for the client.
const KEEP_ALIVE_QUEUE: usize = 16;

/// The messages of a stream's body; `Err` when the first one does not decode. Messages after
/// a malformed one are dropped (the stream's reader stops there, as etcd's does).
fn messages<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, ApiError> {
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_slice(body).into_iter::<T>() {
        match item {
            Ok(m) => out.push(m),
            Err(e) if out.is_empty() => {
                // etcd's gateway reports it with code Unknown (500).
                return Err(ApiError::Recipe(crate::api::recipe::RecipeError::Failed(
                    Box::new(ApiError::Internal(super::go_text(&e))),
                )));
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

/// One `{"result":...}\n` chunk.
fn result_chunk<T: Serialize>(msg: &T) -> Bytes {
    match serde_json::to_vec(msg) {
        Ok(json) => {
            let mut out = Vec::with_capacity(json.len() + 12);
            out.extend_from_slice(b"{\"result\":");
            out.extend_from_slice(&json);
            out.extend_from_slice(b"}\n");
            Bytes::from(out)
        }
        Err(e) => error_chunk(Code::Internal as i32, &format!("encoding: {e}")),
    }
}

/// The mid-stream error chunk.
fn error_chunk(grpc_code: i32, message: &str) -> Bytes {
    let status = code_of(grpc_code).map_or(StatusCode::INTERNAL_SERVER_ERROR, http_status);
    let body = format!(
        r#"{{"error":{{"grpc_code":{grpc_code},"http_code":{},"message":{},"http_status":{}}}}}"#,
        status.as_u16(),
        serde_json::Value::from(message),
        serde_json::Value::from(status.canonical_reason().unwrap_or("")),
    );
    let mut b = body.into_bytes();
    b.push(b'\n');
    Bytes::from(b)
}

fn code_of(n: i32) -> Option<Code> {
    use Code::*;
    [
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    ]
    .into_iter()
    .find(|c| *c as i32 == n)
}

/// A stream of call results as body chunks; the first error is the last chunk.
struct Chunks<S> {
    inner: S,
    ended: bool,
}

/// A result a stream yields: a message, or an error with its gRPC code and text.
trait Item {
    fn chunk(self) -> (Bytes, bool);
}

impl<T: Serialize> Item for Result<T, ApiError> {
    fn chunk(self) -> (Bytes, bool) {
        match self {
            Ok(m) => (result_chunk(&m), false),
            Err(e) => (error_chunk(e.code() as i32, &e.message()), true),
        }
    }
}

impl<T: Serialize> Item for Result<T, tonic::Status> {
    fn chunk(self) -> (Bytes, bool) {
        match self {
            Ok(m) => (result_chunk(&m), false),
            Err(s) => (error_chunk(s.code() as i32, s.message()), true),
        }
    }
}

impl<S> Stream for Chunks<S>
where
    S: Stream + Unpin,
    S::Item: Item,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let (bytes, last) = item.chunk();
                self.ended = last;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn chunked<S>(inner: S) -> Response<Body>
where
    S: Stream + Unpin + Send + 'static,
    S::Item: Item,
{
    let mut r = Response::new(Body::from_stream(Chunks {
        inner,
        ended: false,
    }));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "grpc-metadata-content-type",
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// The requests of a body, then nothing more (the watch's request side, half-closed).
struct Requests<T> {
    items: std::vec::IntoIter<T>,
}

impl<T: Unpin> Stream for Requests<T> {
    type Item = Result<T, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.items.next().map(Ok))
    }
}

pub fn watch(api: &Arc<Api>, ctx: &ReqCtx, body: &[u8]) -> Response<Body> {
    let requests: Vec<WatchRequest> = match messages(body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    let inbound = Requests {
        items: requests.into_iter(),
    };
    match crate::grpc::watch::open_stream(api, ctx, inbound) {
        Ok(out) => chunked(out),
        Err(e) => error_response(&e),
    }
}

pub fn keep_alive(api: Arc<Api>, ctx: ReqCtx, body: &[u8]) -> Response<Body> {
    let requests: Vec<LeaseKeepAliveRequest> = match messages(body) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = lease::open_keep_alive(&api, &ctx) {
        return error_response(&e);
    }
    let (tx, rx) = mpsc::channel::<Result<_, ApiError>>(KEEP_ALIVE_QUEUE);
    tokio::spawn(async move {
        for req in requests {
            let answer = lease::keep_alive(&api, req.id).await;
            let failed = answer.is_err();
            if tx.send(answer).await.is_err() || failed {
                return;
            }
        }
    });
    chunked(ChannelStream::new(rx))
}

pub fn snapshot(api: &Api, ctx: &ReqCtx, body: &[u8]) -> Response<Body> {
    if let Err(e) = messages::<SnapshotRequest>(body) {
        return error_response(&e);
    }
    // Refused before the first message: the status is the error's, the body the stream's
    // error chunk (etcd 3.5.1's gateway answers so).
    if let Err(e) = api.check_admin_raw(ctx) {
        let code = e.code();
        let mut r = Response::new(Body::from(error_chunk(code as i32, &e.message())));
        *r.status_mut() = http_status(code);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    chunked(ChannelStream::new(maintenance::snapshot(api, |e| e)))
}

pub fn observe(api: Arc<Api>, ctx: ReqCtx, body: &[u8]) -> Response<Body> {
    let req = match messages::<LeaderRequest>(body) {
        Ok(mut r) if !r.is_empty() => r.swap_remove(0),
        Ok(_) => LeaderRequest::default(),
        Err(e) => return error_response(&e),
    };
    chunked(ChannelStream::new(crate::grpc::election::spawn_observe(
        api, ctx, req,
    )))
}
