//! The client-to-server byte stream of one accepted connection, rewritten frame by frame so the
//! server's HTTP/2 layer accepts every `:authority` etcd clients send (see `hpack`). No I/O
//! here: `conn` feeds it bytes and hands its output to the server.
//!
//! Stream grammar (RFC 7540 §3.5, §4.1):
//! ```text
//! stream  = preface *frame | other-bytes          (other-bytes: not HTTP/2, passed untouched)
//! preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
//! frame   = length:u24 type:u8 flags:u8 stream-id:u32 payload:length bytes
//! HEADERS payload = [pad-length:u8 if PADDED] [dependency:u32 weight:u8 if PRIORITY]
//!                   fragment [padding:pad-length bytes]
//! ```
//! A header block is one HEADERS frame plus CONTINUATION frames up to END_HEADERS, on one stream
//! with no other frame in between. Every block is re-encoded (padding dropped, priority and
//! END_STREAM kept) and re-framed at `FRAME_PAYLOAD_BYTES_MAX`; every other frame passes through
//! unchanged, its payload without being copied into our buffers.
//!
//! Invariant: the output is a valid HTTP/2 stream whenever the input is one; nothing is
//! reordered.
//! Invariant: at most `HEADER_BLOCK_BYTES_MAX` bytes of one block are buffered; a larger block
//! fails the connection.

use super::hpack::{BlockRewriter, HpackError};

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Largest header block (all fragments of one HEADERS + CONTINUATIONs) accepted.
pub const HEADER_BLOCK_BYTES_MAX: usize = 1024 * 1024;
/// Payload size of the re-framed HEADERS/CONTINUATION frames: SETTINGS_MAX_FRAME_SIZE's initial
/// value, which every HTTP/2 endpoint accepts.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 16_384;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const PRIORITY_BYTES: usize = 5;

/// Why the connection is failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundError {
    /// A header block over `HEADER_BLOCK_BYTES_MAX`.
    BlockTooLarge {
        bytes: usize,
    },
    /// A frame other than CONTINUATION on the same stream inside a header block, or padding
    /// longer than the frame.
    Protocol(&'static str),
    Hpack(HpackError),
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboundError::BlockTooLarge { bytes } => write!(
                f,
                "HTTP/2 header block of {bytes} bytes exceeds {HEADER_BLOCK_BYTES_MAX}"
            ),
            InboundError::Protocol(why) => write!(f, "HTTP/2 protocol error: {why}"),
            InboundError::Hpack(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InboundError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8]) -> FrameHead {
        debug_assert!(b.len() >= FRAME_HEADER_BYTES);
        FrameHead {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
        debug_assert!(len <= FRAME_PAYLOAD_BYTES_MAX);
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
    }
}

/// The opening HEADERS frame of the block being collected.
#[derive(Debug, Clone, Copy)]
struct BlockHead {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the 24-byte preface.
    Preface,
    /// Waiting for a frame header.
    Head,
    /// Passing `remaining` payload bytes of a frame through.
    Pass { remaining: usize },
    /// Waiting for the whole payload of a HEADERS or CONTINUATION frame.
    Collect(FrameHead),
    /// Not HTTP/2: everything passes through.
    Raw,
}

/// What to do next, as told by [`Inbound::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// `n` input bytes were consumed (their replacement, if any, was appended to the output).
    /// `n` may be 0 when only the state changed.
    Consumed(usize),
    /// At least `Inbound::wanted()` input bytes are needed before parsing can go on.
    NeedMore,
}

/// The rewriter of one connection's client-to-server direction.
pub struct Inbound {
    state: State,
    hpack: BlockRewriter,
    block_head: Option<BlockHead>,
    /// Fragments of the block being collected.
    block: Vec<u8>,
    /// The re-encoded block, before framing.
    encoded: Vec<u8>,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            state: State::Preface,
            hpack: BlockRewriter::default(),
            block_head: None,
            block: Vec::new(),
            encoded: Vec::new(),
        }
    }
}

impl Inbound {
    /// How many of the next input bytes pass through untouched, without parsing; `None` while
    /// the parser needs to see the bytes. `usize::MAX` for a connection that is not HTTP/2.
    pub fn pass_len(&self) -> Option<usize> {
        match self.state {
            State::Pass { remaining } => Some(remaining),
            State::Raw => Some(usize::MAX),
            _ => None,
        }
    }

    /// Records that `n` bytes (at most `pass_len()`) passed through.
    pub fn passed(&mut self, n: usize) {
        if let State::Pass { remaining } = self.state {
            debug_assert!(n <= remaining);
            let remaining = remaining.saturating_sub(n);
            self.state = if remaining == 0 {
                State::Head
            } else {
                State::Pass { remaining }
            };
        }
    }

    /// Input bytes that must be buffered before `parse` can make progress.
    pub fn wanted(&self) -> usize {
        match self.state {
            State::Preface => PREFACE.len(),
            State::Head => FRAME_HEADER_BYTES,
            State::Collect(head) => head.len,
            State::Pass { .. } | State::Raw => 1,
        }
    }

    /// Parses from the front of `input`, appending bytes for the server to `out`. Call only
    /// while `pass_len()` is `None`.
    pub fn parse(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Parsed, InboundError> {
        match self.state {
            State::Preface => {
                let n = input.len().min(PREFACE.len());
                if input[..n] != PREFACE[..n] {
                    self.state = State::Raw;
                    return Ok(Parsed::Consumed(0));
                }
                if n < PREFACE.len() {
                    return Ok(Parsed::NeedMore);
                }
                out.extend_from_slice(PREFACE);
                self.state = State::Head;
                Ok(Parsed::Consumed(PREFACE.len()))
            }
            State::Head => {
                if input.len() < FRAME_HEADER_BYTES {
                    return Ok(Parsed::NeedMore);
                }
                let head = FrameHead::parse(input);
                self.on_head(head, &input[..FRAME_HEADER_BYTES], out)?;
                Ok(Parsed::Consumed(FRAME_HEADER_BYTES))
            }
            State::Collect(head) => {
                if input.len() < head.len {
                    return Ok(Parsed::NeedMore);
                }
                self.on_block_frame(head, &input[..head.len], out)?;
                Ok(Parsed::Consumed(head.len))
            }
            State::Pass { .. } | State::Raw => Ok(Parsed::Consumed(0)),
        }
    }

    fn on_head(
        &mut self,
        head: FrameHead,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), InboundError> {
        if let Some(open) = self.block_head {
            if head.kind != TYPE_CONTINUATION || head.stream != open.stream {
                return Err(InboundError::Protocol("header block interrupted"));
            }
            let bytes = self.block.len().saturating_add(head.len);
            if bytes > HEADER_BLOCK_BYTES_MAX {
                return Err(InboundError::BlockTooLarge { bytes });
            }
            self.state = State::Collect(head);
            return Ok(());
        }
        if head.kind == TYPE_HEADERS {
            if head.len > HEADER_BLOCK_BYTES_MAX {
                return Err(InboundError::BlockTooLarge { bytes: head.len });
            }
            self.state = State::Collect(head);
            return Ok(());
        }
        // Any other frame (a stray CONTINUATION included: the server rejects it) as is.
        out.extend_from_slice(raw);
        self.state = if head.len == 0 {
            State::Head
        } else {
            State::Pass {
                remaining: head.len,
            }
        };
        Ok(())
    }

    fn on_block_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), InboundError> {
        if head.kind == TYPE_HEADERS {
            let (open, fragment) = split_headers_payload(head, payload)?;
            self.block_head = Some(open);
            self.block.extend_from_slice(fragment);
        } else {
            self.block.extend_from_slice(payload);
        }
        debug_assert!(self.block.len() <= HEADER_BLOCK_BYTES_MAX);
        self.state = State::Head;
        if head.flags & FLAG_END_HEADERS == 0 {
            return Ok(());
        }
        let Some(open) = self.block_head.take() else {
            return Err(InboundError::Protocol("block without HEADERS"));
        };
        self.encoded.clear();
        let result = self.hpack.rewrite(&self.block, &mut self.encoded);
        self.block.clear();
        result.map_err(InboundError::Hpack)?;
        write_block(open, &self.encoded, out);
        release_if_large(&mut self.block);
        release_if_large(&mut self.encoded);
        Ok(())
    }
}

/// Strips padding and priority from a HEADERS payload.
fn split_headers_payload(
    head: FrameHead,
    payload: &[u8],
) -> Result<(BlockHead, &[u8]), InboundError> {
    let mut rest = payload;
    let mut pad = 0;
    if head.flags & FLAG_PADDED != 0 {
        let Some((&n, tail)) = rest.split_first() else {
            return Err(InboundError::Protocol(
                "PADDED HEADERS without a pad length",
            ));
        };
        pad = usize::from(n);
        rest = tail;
    }
    let mut priority = None;
    if head.flags & FLAG_PRIORITY != 0 {
        if rest.len() < PRIORITY_BYTES {
            return Err(InboundError::Protocol("PRIORITY HEADERS too short"));
        }
        let (p, tail) = rest.split_at(PRIORITY_BYTES);
        let mut bytes = [0; PRIORITY_BYTES];
        bytes.copy_from_slice(p);
        priority = Some(bytes);
        rest = tail;
    }
    if pad > rest.len() {
        return Err(InboundError::Protocol(
            "padding longer than the HEADERS frame",
        ));
    }
    let open = BlockHead {
        stream: head.stream,
        end_stream: head.flags & FLAG_END_STREAM != 0,
        priority,
    };
    Ok((open, &rest[..rest.len() - pad]))
}

/// Frames a re-encoded block as HEADERS + CONTINUATIONs of at most `FRAME_PAYLOAD_BYTES_MAX`.
fn write_block(open: BlockHead, block: &[u8], out: &mut Vec<u8>) {
    let mut flags = 0;
    if open.end_stream {
        flags |= FLAG_END_STREAM;
    }
    let prefix: &[u8] = match &open.priority {
        Some(p) => {
            flags |= FLAG_PRIORITY;
            p
        }
        None => &[],
    };
    let first_len = block.len().min(FRAME_PAYLOAD_BYTES_MAX - prefix.len());
    let (first, mut rest) = block.split_at(first_len);
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    FrameHead::write(
        out,
        prefix.len() + first.len(),
        TYPE_HEADERS,
        flags,
        open.stream,
    );
    out.extend_from_slice(prefix);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(FRAME_PAYLOAD_BYTES_MAX));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        FrameHead::write(out, chunk.len(), TYPE_CONTINUATION, flags, open.stream);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

/// Keeps a connection's idle buffers small after an unusually large block.
fn release_if_large(buf: &mut Vec<u8>) {
    const IDLE_BUFFER_BYTES_MAX: usize = 64 * 1024;
    if buf.capacity() > IDLE_BUFFER_BYTES_MAX {
        *buf = Vec::new();
    }
}

/// Runs `input` through a fresh [`Inbound`] in one go (tests and fuzzing).
pub fn rewrite_all(inbound: &mut Inbound, input: &[u8]) -> Result<Vec<u8>, InboundError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < input.len() {
        if let Some(n) = inbound.pass_len() {
            let k = n.min(input.len() - at);
            out.extend_from_slice(&input[at..at + k]);
            inbound.passed(k);
            at += k;
            continue;
        }
        match inbound.parse(&input[at..], &mut out)? {
            Parsed::Consumed(n) => at += n,
            Parsed::NeedMore => break,
        }
    }
    Ok(out)
}
