//! One accepted connection as the server sees it: the socket with its client-to-server bytes
//! run through [`Inbound`] (server-to-client bytes pass untouched), plus the listener's
//! connection permit, released when the server drops the connection.
//!
//! Invariant: bytes the rewriter does not need to see (frame payloads other than header blocks,
//! a connection that is not HTTP/2) go from the socket straight into the server's buffer when
//! nothing is buffered here; otherwise they are copied once out of `raw`.
//! Invariant: `raw` never holds more than `max(READ_CHUNK_BYTES, HEADER_BLOCK_BYTES_MAX +
//! FRAME_HEADER_BYTES)` bytes; `out` never more than one re-framed block.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::inbound::{Inbound, Parsed};

/// Bytes read from the socket at once while the rewriter parses.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// An accepted connection with the `:authority` fix applied (see the module header).
pub struct Conn<S> {
    inner: S,
    inbound: Inbound,
    /// Socket bytes not yet handed on: `raw[raw_start..raw_end]`.
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// Rewritten bytes ready for the server: `out[out_start..]`.
    out: Vec<u8>,
    out_start: usize,
    /// Held for the connection's lifetime: bounds the listener's open connections.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S> Conn<S> {
    pub fn new(inner: S, permit: Option<OwnedSemaphorePermit>) -> Self {
        Conn {
            inner,
            inbound: Inbound::default(),
            raw: Vec::new(),
            raw_start: 0,
            raw_end: 0,
            out: Vec::new(),
            out_start: 0,
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Makes room in `raw` for the `wanted` bytes the parser needs (more than it holds)
    /// and for at least one more byte to be read.
    fn reserve_raw(&mut self, wanted: usize) {
        if self.raw_start > 0 {
            self.raw.copy_within(self.raw_start..self.raw_end, 0);
            self.raw_end -= self.raw_start;
            self.raw_start = 0;
        }
        debug_assert!(self.raw_end < wanted);
        let want_len = wanted.max(READ_CHUNK_BYTES);
        if self.raw.len() > want_len {
            // Give back the room an unusually large block needed.
            self.raw.truncate(want_len);
            self.raw.shrink_to_fit();
        }
        if self.raw.len() < want_len {
            self.raw.resize(want_len, 0);
        }
        debug_assert!(self.raw_end < self.raw.len());
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_start < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_start);
                buf.put_slice(&this.out[this.out_start..this.out_start + n]);
                this.out_start += n;
                if this.out_start == this.out.len() {
                    this.out.clear();
                    this.out_start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(pass) = this.inbound.pass_len() {
                let limit = pass.min(buf.remaining());
                if this.raw_start < this.raw_end {
                    let n = limit.min(this.raw_end - this.raw_start);
                    buf.put_slice(&this.raw[this.raw_start..this.raw_start + n]);
                    this.raw_start += n;
                    this.inbound.passed(n);
                    return Poll::Ready(Ok(()));
                }
                // Nothing buffered: read straight into the server's buffer.
                let dst = buf.initialize_unfilled_to(limit);
                let mut direct = ReadBuf::new(dst);
                match Pin::new(&mut this.inner).poll_read(cx, &mut direct) {
                    Poll::Ready(Ok(())) => {
                        let n = direct.filled().len();
                        buf.advance(n);
                        this.inbound.passed(n);
                        return Poll::Ready(Ok(()));
                    }
                    other => return other,
                }
            }
            let input = &this.raw[this.raw_start..this.raw_end];
            let parsed = this
                .inbound
                .parse(input, &mut this.out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match parsed {
                Parsed::Consumed(n) => {
                    this.raw_start += n;
                    continue;
                }
                Parsed::NeedMore => {}
            }
            let wanted = this.inbound.wanted();
            this.reserve_raw(wanted);
            let mut into = ReadBuf::new(&mut this.raw[this.raw_end..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut into) {
                Poll::Ready(Ok(())) => {
                    let n = into.filled().len();
                    if n == 0 {
                        // End of stream; a partial frame left in `raw` is the client's to
                        // explain, the server sees a clean end.
                        return Poll::Ready(Ok(()));
                    }
                    this.raw_end += n;
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl tonic::transport::server::Connected for Conn<super::transport::Transport> {
    type ConnectInfo = super::transport::ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        super::transport::ConnInfo {
            local_addr: self.inner.socket().local_addr(),
            remote_addr: self.inner.peer_addr(),
            common_name: self.inner.client_common_name(),
            secure: matches!(self.inner, super::transport::Transport::Tls(_)),
        }
    }
}
