//! The gRPC server's metrics, counted on the client port's HTTP/2 stream as go-grpc-prometheus
//! counts them inside etcd: `grpc_server_started_total` when a call arrives,
//! `grpc_server_handled_total` with its final `grpc-status` when it ends (a stream the client
//! abandons ends as `Canceled`), `grpc_server_msg_received_total`/`_msg_sent_total` per
//! length-prefixed message, `grpc_server_handling_seconds` from arrival to the status, and the
//! message bytes into `etcd_network_client_grpc_{received,sent}_bytes_total`.
//!
//! Only requests with a gRPC content type to a method of `metrics::GRPC_METHODS` are counted;
//! everything else passes through untouched.
//!
//! Invariant: a counted call is handled exactly once (`Finish` is consumed by the first end it
//!   sees: the trailers-only header, the trailers frame, the end of the body, or its drop).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::middleware::Next;
use http::{HeaderMap, Request, Response};
use http_body::Frame;

use crate::metrics::{self, GRPC_STATS};

/// axum middleware: counts the gRPC call `request` makes.
pub async fn observe(request: Request<Body>, next: Next) -> Response<Body> {
    let index = is_grpc(request.headers())
        .then(|| metrics::grpc_method_index(request.uri().path()))
        .flatten();
    let Some(index) = index else {
        return next.run(request).await;
    };
    let stats = &GRPC_STATS[index];
    stats.started.inc();
    let started = Instant::now();
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            messages: Messages::new(Direction::Received, index),
            finish: None,
        })
    });
    let response = next.run(request).await;
    let finish = Finish { index, started };
    if let Some(code) = status_code(response.headers()) {
        // Trailers-only answer: the call is over before any body.
        finish.done(code);
        return response;
    }
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            messages: Messages::new(Direction::Sent, index),
            finish: Some(finish),
        })
    })
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `grpc-status` in `headers`, as an index into `metrics::GRPC_CODES` (an unparsable or
/// unknown code counts as Unknown, as grpc-go reads it).
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|c| *c < metrics::GRPC_CODES.len())
        .unwrap_or(2);
    Some(code)
}

/// The end of one counted call.
struct Finish {
    index: usize,
    started: Instant,
}

impl Finish {
    fn done(self, code: usize) {
        let stats = &GRPC_STATS[self.index];
        stats.handled[code].inc();
        stats.handling.observe_duration(self.started.elapsed());
    }
}

const CANCELED: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Received,
    Sent,
}

/// Splits a byte stream into gRPC's length-prefixed messages (1 flag byte, 4 length bytes,
/// payload) and counts each one as its header completes.
#[derive(Debug)]
struct Messages {
    direction: Direction,
    index: usize,
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes of the current message still to skip.
    payload_left: u64,
}

impl Messages {
    fn new(direction: Direction, index: usize) -> Self {
        Messages {
            direction,
            index,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
        }
    }

    /// Feeds `data`; returns (messages, payload bytes) whose headers completed in it.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                data = &data[skip as usize..];
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.header_len = 0;
                self.payload_left = u64::from(len);
                messages += 1;
                bytes += u64::from(len);
            }
        }
        (messages, bytes)
    }

    fn count(&mut self, data: &Bytes) {
        let (messages, bytes) = self.feed(data);
        let stats = &GRPC_STATS[self.index];
        match self.direction {
            Direction::Received => {
                stats.msg_received.add(messages);
                metrics::CLIENT_GRPC_RECEIVED_BYTES.add(bytes);
            }
            Direction::Sent => {
                stats.msg_sent.add(messages);
                metrics::CLIENT_GRPC_SENT_BYTES.add(bytes);
            }
        }
    }
}

/// A request or response body whose messages are counted on the way through; a response body
/// also ends its call.
struct Counted {
    inner: Body,
    messages: Messages,
    finish: Option<Finish>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.messages.count(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let (Some(code), Some(finish)) = (status_code(trailers), this.finish.take())
                    {
                        finish.done(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                // A body that ends or fails without a status: the call did not complete.
                if let Some(finish) = this.finish.take() {
                    finish.done(CANCELED);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The client went away (or the server dropped the stream) before the status was sent.
        if let Some(finish) = self.finish.take() {
            finish.done(CANCELED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: u32) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, payload_len as usize));
        out
    }

    #[test]
    fn messages_are_counted_across_arbitrary_chunk_boundaries() {
        let mut stream = frame(3);
        stream.extend(frame(0));
        stream.extend(frame(300));
        for chunk in [1, 2, 4, 5, 7, 64, 1000] {
            let mut m = Messages::new(Direction::Sent, 0);
            let (mut messages, mut bytes) = (0, 0);
            for piece in stream.chunks(chunk) {
                let (n, b) = m.feed(piece);
                messages += n;
                bytes += b;
            }
            assert_eq!((messages, bytes), (3, 303), "chunks of {chunk}");
            assert_eq!(
                (m.header_len, m.payload_left),
                (0, 0),
                "ends between messages"
            );
        }
    }

    #[test]
    fn grpc_status_names_the_code_and_garbage_is_unknown() {
        let mut h = HeaderMap::new();
        assert_eq!(status_code(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(
            status_code(&h).map(|c| metrics::GRPC_CODES[c]),
            Some("NotFound")
        );
        h.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(
            status_code(&h).map(|c| metrics::GRPC_CODES[c]),
            Some("Unknown")
        );
    }
}
