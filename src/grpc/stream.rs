//! A `Stream` over a tokio mpsc receiver, for server-streaming and bidi gRPC replies.
//!
//! Written here instead of pulling in tokio-stream, whose timer parts do not run under madsim.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

/// Yields what the sender half sends; ends when every sender is dropped.
pub struct ChannelStream<T> {
    rx: mpsc::Receiver<T>,
}

impl<T> ChannelStream<T> {
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        ChannelStream { rx }
    }
}

impl<T> Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}
