//! Frame-level tests of the `:authority` fix: a client byte stream goes in, and what the server
//! would read comes out, parsed back into frames and decoded header lists.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loona_hpack::Decoder;
use tokio::io::{AsyncRead, ReadBuf};

use super::conn::Conn;
use super::hpack::encode_field;
use super::inbound::{
    rewrite_all, Inbound, InboundError, FRAME_PAYLOAD_BYTES_MAX, HEADER_BLOCK_BYTES_MAX, PREFACE,
};

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Splits a server-side byte stream (after the preface) into frames.
fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    assert!(bytes.starts_with(PREFACE), "output lost the preface");
    bytes = &bytes[PREFACE.len()..];
    let mut all = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 9, "truncated frame header");
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        assert!(bytes.len() >= 9 + len, "truncated frame payload");
        all.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    all
}

/// Joins HEADERS + CONTINUATIONs back into blocks and decodes them as the server would, with
/// one decoder for the whole connection. Returns the header lists and the non-header frames.
/// One decoded header list.
type HeaderList = Vec<(String, String)>;

fn decode_blocks(frames: &[Frame]) -> (Vec<HeaderList>, Vec<&Frame>) {
    let mut decoder = Decoder::new();
    let mut lists = Vec::new();
    let mut others = Vec::new();
    let mut block: Option<Vec<u8>> = None;
    for f in frames {
        match f.kind {
            HEADERS => {
                assert!(block.is_none());
                assert!(f.payload.len() <= FRAME_PAYLOAD_BYTES_MAX);
                assert_eq!(f.flags & PADDED, 0, "padding is dropped");
                let start = if f.flags & PRIORITY != 0 { 5 } else { 0 };
                block = Some(f.payload[start..].to_vec());
            }
            CONTINUATION => {
                assert!(f.payload.len() <= FRAME_PAYLOAD_BYTES_MAX);
                match block.as_mut() {
                    Some(b) => b.extend_from_slice(&f.payload),
                    None => panic!("CONTINUATION outside a block"),
                }
            }
            _ => {
                assert!(block.is_none(), "frame inside a header block");
                others.push(f);
                continue;
            }
        }
        if f.flags & END_HEADERS != 0 {
            let b = block.take().unwrap_or_default();
            let list = match decoder.decode(&b) {
                Ok(list) => list,
                Err(e) => panic!("server cannot decode the block: {e}"),
            };
            lists.push(
                list.into_iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8_lossy(&n).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect(),
            );
        }
    }
    assert!(block.is_none(), "unterminated block");
    (lists, others)
}

/// A request's header block as a client encoder writes it: `:authority` with incremental
/// indexing (so later blocks refer to the client's dynamic table).
fn request_block(authority: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0x83); // :method POST (static 3)
    b.push(0x86); // :scheme http (static 6)
    b.push(0x44); // :path, with incremental indexing, name = static 4
    push_string(&mut b, path.as_bytes());
    b.push(0x41); // :authority, with incremental indexing, name = static 1
    push_string(&mut b, authority.as_bytes());
    encode_field(&mut b, b"te", b"trailers");
    b
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A client stream: preface, SETTINGS, a padded+prioritised HEADERS with a scheme authority, a
/// DATA frame, then a second request split over HEADERS + two CONTINUATIONs whose `:path` and
/// `:authority` are references to the client's dynamic table (indices 63 and 62).
fn client_stream() -> Vec<u8> {
    let mut s = PREFACE.to_vec();
    frame(&mut s, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let block = request_block("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    let mut payload = vec![3]; // pad length
    payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0, 0]);
    frame(
        &mut s,
        HEADERS,
        END_HEADERS | PADDED | PRIORITY,
        1,
        &payload,
    );
    frame(&mut s, DATA, END_STREAM, 1, b"\0\0\0\0\x05hello");
    let second = [0x83, 0x86, 0xbf, 0xbe, 0x00, 0x02, b't', b'e', 0x08];
    let mut second = second.to_vec();
    second.extend_from_slice(b"trailers");
    frame(&mut s, HEADERS, END_STREAM, 3, &second[..3]);
    frame(&mut s, CONTINUATION, 0, 3, &second[3..5]);
    frame(&mut s, CONTINUATION, END_HEADERS, 3, &second[5..]);
    s
}

fn list(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn check_client_stream_output(out: &[u8]) {
    let all = frames(out);
    let (lists, others) = decode_blocks(&all);
    let want = list(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", "127.0.0.1:2379"),
        ("te", "trailers"),
    ]);
    assert_eq!(lists, vec![want.clone(), want]);
    assert_eq!(others.len(), 2);
    assert_eq!(others[0].kind, SETTINGS);
    assert_eq!(others[0].payload, [0, 3, 0, 0, 0, 100]);
    assert_eq!(others[1].payload, b"\0\0\0\0\x05hello");
    assert_eq!(others[1].flags, END_STREAM);
    // Flags that matter survive the re-framing; padding does not.
    let headers: Vec<&Frame> = all.iter().filter(|f| f.kind == HEADERS).collect();
    assert_eq!(headers[0].flags, END_HEADERS | PRIORITY);
    assert_eq!(&headers[0].payload[..5], &[0, 0, 0, 0, 15]);
    assert_eq!(headers[1].flags, END_HEADERS | END_STREAM);
    assert_eq!(headers[1].stream, 3);
}

#[test]
fn scheme_authority_is_fixed_and_other_frames_pass() {
    let out = rewrite_all(&mut Inbound::default(), &client_stream());
    check_client_stream_output(&out.unwrap_or_default());
}

#[test]
fn every_authority_form_reaches_the_server_acceptably() {
    let cases: &[(&str, Option<&str>)] = &[
        ("127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("https://node-1.example:2379", Some("node-1.example:2379")),
        ("unix://localhost:23790", Some("localhost:23790")),
        ("unix:///var/run/etcd.sock", None),
        ("#initially=[http://127.0.0.1:1;http://127.0.0.1:2]", None),
        ("", None),
    ];
    for (sent, want) in cases {
        let mut s = PREFACE.to_vec();
        frame(&mut s, HEADERS, END_HEADERS, 1, &request_block(sent, "/x"));
        let out = rewrite_all(&mut Inbound::default(), &s).unwrap_or_default();
        let (lists, _) = decode_blocks(&frames(&out));
        let got = lists[0]
            .iter()
            .find(|(n, _)| n == ":authority")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, *want, "authority sent as {sent:?}");
        assert_eq!(lists[0].len(), if want.is_some() { 5 } else { 4 });
    }
}

#[test]
fn not_http2_passes_untouched() {
    for input in [
        &b"GET /version HTTP/1.1\r\nHost: http://x\r\n\r\n"[..],
        b"PRI * HTTP/1.1\r\n",
        b"",
    ] {
        let out = rewrite_all(&mut Inbound::default(), input);
        assert_eq!(out.as_deref(), Ok(input));
    }
}

/// A reader that hands out the input in the given chunk sizes, one chunk per read.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    chunks: Vec<usize>,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = if self.chunks.is_empty() {
            usize::MAX
        } else {
            self.chunks.remove(0)
        };
        let n = size.min(buf.remaining()).min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Reads a `Conn` to its end with reads of `read_size` bytes.
fn read_through_conn(data: Vec<u8>, chunks: Vec<usize>, read_size: usize) -> io::Result<Vec<u8>> {
    let mut conn = Conn::new(
        Chunked {
            data,
            at: 0,
            chunks,
        },
        None,
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut conn).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Ok(out),
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => panic!("the chunked reader never blocks"),
        }
    }
}

#[test]
fn split_reads_at_every_byte_boundary() {
    let input = client_stream();
    let whole = rewrite_all(&mut Inbound::default(), &input).unwrap_or_default();
    for cut in 1..input.len() {
        let out = read_through_conn(input.clone(), vec![cut], 16 * 1024);
        assert_eq!(out.ok().as_ref(), Some(&whole), "split at {cut}");
    }
    let bytewise = read_through_conn(input.clone(), vec![1; input.len()], 16 * 1024);
    assert_eq!(bytewise.ok().as_ref(), Some(&whole));
    // Tiny reads on the server side too.
    for read_size in [1, 2, 7, 9] {
        let out = read_through_conn(input.clone(), vec![], read_size);
        assert_eq!(out.ok().as_ref(), Some(&whole), "reads of {read_size}");
    }
    check_client_stream_output(&whole);
}

#[test]
fn large_data_frames_pass_through_the_conn() {
    let mut input = PREFACE.to_vec();
    let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    for chunk in body.chunks(16_384) {
        frame(&mut input, DATA, 0, 1, chunk);
    }
    let out = read_through_conn(input.clone(), vec![], 8192);
    assert_eq!(out.ok(), Some(input));
}

#[test]
fn large_blocks_are_reframed_at_the_default_frame_size() {
    let mut block = Vec::new();
    let big = vec![b'v'; 30_000];
    encode_field(&mut block, b":authority", b"http://127.0.0.1:2379");
    // Literal without indexing, long value: written directly with a multi-byte length.
    block.push(0x00);
    block.extend_from_slice(&[5, b'x', b'-', b'b', b'i', b'g']);
    block.push(0x7f);
    let mut rest = big.len() - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend_from_slice(&big);
    let mut input = PREFACE.to_vec();
    let (a, b) = block.split_at(20_000);
    frame(&mut input, HEADERS, END_STREAM, 5, a);
    frame(&mut input, CONTINUATION, END_HEADERS, 5, b);
    let out = rewrite_all(&mut Inbound::default(), &input).unwrap_or_default();
    let all = frames(&out);
    assert!(all.len() >= 2);
    assert!(all.iter().all(|f| f.stream == 5));
    let (lists, _) = decode_blocks(&all);
    assert_eq!(lists[0][0], (":authority".into(), "127.0.0.1:2379".into()));
    assert_eq!(lists[0][1].1.len(), big.len());
}

#[test]
fn oversized_blocks_are_refused() {
    let mut input = PREFACE.to_vec();
    let fragment = vec![0u8; 16_384];
    frame(&mut input, HEADERS, 0, 1, &fragment);
    let mut sent = fragment.len();
    while sent <= HEADER_BLOCK_BYTES_MAX {
        frame(&mut input, CONTINUATION, 0, 1, &fragment);
        sent += fragment.len();
    }
    assert!(matches!(
        rewrite_all(&mut Inbound::default(), &input),
        Err(InboundError::BlockTooLarge { .. })
    ));
    // One HEADERS frame announcing more than the limit is refused from its header alone.
    let mut input = PREFACE.to_vec();
    let len = HEADER_BLOCK_BYTES_MAX + 1;
    input.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, HEADERS, 0]);
    input.extend_from_slice(&1u32.to_be_bytes());
    assert!(matches!(
        rewrite_all(&mut Inbound::default(), &input),
        Err(InboundError::BlockTooLarge { .. })
    ));
    let err = read_through_conn(input, vec![], 4096);
    assert_eq!(
        err.err().map(|e| e.kind()),
        Some(io::ErrorKind::InvalidData)
    );
}

#[test]
fn malformed_blocks_fail_the_connection() {
    let block = request_block("127.0.0.1:2379", "/x");
    // Another frame inside a header block.
    let mut input = PREFACE.to_vec();
    frame(&mut input, HEADERS, 0, 1, &block);
    frame(&mut input, DATA, 0, 1, b"x");
    assert!(matches!(
        rewrite_all(&mut Inbound::default(), &input),
        Err(InboundError::Protocol(_))
    ));
    // CONTINUATION on another stream.
    let mut input = PREFACE.to_vec();
    frame(&mut input, HEADERS, 0, 1, &block);
    frame(&mut input, CONTINUATION, END_HEADERS, 3, b"");
    assert!(rewrite_all(&mut Inbound::default(), &input).is_err());
    // Padding longer than the frame.
    let mut input = PREFACE.to_vec();
    frame(&mut input, HEADERS, END_HEADERS | PADDED, 1, &[200, 0x83]);
    assert!(matches!(
        rewrite_all(&mut Inbound::default(), &input),
        Err(InboundError::Protocol(_))
    ));
    // Invalid HPACK.
    let mut input = PREFACE.to_vec();
    frame(
        &mut input,
        HEADERS,
        END_HEADERS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    assert!(matches!(
        rewrite_all(&mut Inbound::default(), &input),
        Err(InboundError::Hpack(_))
    ));
}

proptest::proptest! {
    /// Whatever bytes a client sends, the rewriter neither panics nor buffers past its bounds.
    #[test]
    fn arbitrary_input_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&tail);
        let _ = rewrite_all(&mut Inbound::default(), &input);
    }
}
