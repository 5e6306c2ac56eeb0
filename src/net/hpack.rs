//! Re-encoding of HTTP/2 header blocks sent by a client, with `:authority` made acceptable.
//!
//! The client's blocks are decoded (`net::hpack_decoder`) with a decoder that mirrors the
//! client's encoder (its own dynamic table, size updates included); each field is written back as a literal WITHOUT
//! indexing (RFC 7541 §6.2.2), with a static-table name index where the name has one and no
//! Huffman coding. The server's decoder therefore never inserts into its dynamic table, so the
//! two tables (the client's, mirrored here, and the server's, always empty) cannot diverge.
//!
//! `:authority` rules (what etcd's clients send, and what `http::uri::Authority` accepts, which is
//! what the server's HTTP/2 layer demands):
//! - a valid authority (`host:port`) is kept as is;
//! - `scheme://rest` becomes `rest` when `rest` is a valid authority (`http://127.0.0.1:2379`);
//! - anything else (`unix:///tmp/s`, `#initially=[...]`, empty) is dropped: a request without
//!   `:authority` is valid HTTP/2 and gRPC does not need it.
//!
//! Invariant: a re-encoded block never contains an indexed field referring to the dynamic table,
//! a literal with incremental indexing, or a dynamic table size update.
//! Invariant: a decoded header list larger than `HEADER_LIST_BYTES_MAX` is refused, so a small
//! block of references to a large table entry cannot grow without bound.

use super::hpack_decoder::{DecodeError, HeaderDecoder};

/// Dynamic table size the client's encoder may use: our HTTP/2 server never advertises
/// SETTINGS_HEADER_TABLE_SIZE, so the protocol default (4,096 bytes) is in force.
pub const HPACK_TABLE_BYTES_MAX: usize = 4096;

/// Largest decoded header list (names + values + 32 bytes per field, RFC 7540 §6.5.2) accepted
/// in one block; far above what any etcd client sends (grpc-go's default limit is 16 MiB, but
/// its clients send well under 1 KiB).
pub const HEADER_LIST_BYTES_MAX: usize = 1024 * 1024;

/// Why a header block could not be re-encoded; the connection is failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HpackError {
    /// The block is not valid HPACK (COMPRESSION_ERROR in HTTP/2 terms).
    Decode(String),
    /// The decoded header list exceeds `HEADER_LIST_BYTES_MAX`.
    ListTooLarge,
}

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HpackError::Decode(why) => write!(f, "invalid HPACK header block: {why}"),
            HpackError::ListTooLarge => {
                write!(f, "header list larger than {HEADER_LIST_BYTES_MAX} bytes")
            }
        }
    }
}

impl std::error::Error for HpackError {}

impl From<DecodeError> for HpackError {
    fn from(e: DecodeError) -> Self {
        HpackError::Decode(e.to_string())
    }
}

/// Re-encodes the header blocks of one connection's client-to-server direction.
pub struct BlockRewriter {
    decoder: HeaderDecoder,
}

impl Default for BlockRewriter {
    fn default() -> Self {
        BlockRewriter {
            decoder: HeaderDecoder::new(HPACK_TABLE_BYTES_MAX),
        }
    }
}

impl BlockRewriter {
    /// Decodes one complete header block (all fragments joined) and appends its re-encoding to
    /// `out`. Blocks must be given in the order the client sent them.
    pub fn rewrite(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
        let start = out.len();
        let mut list_bytes: usize = 0;
        let mut too_large = false;
        self.decoder.decode(block, |name, value| {
            list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
            if list_bytes > HEADER_LIST_BYTES_MAX {
                too_large = true;
            }
            if too_large {
                return;
            }
            if name == b":authority" {
                if let Some(fixed) = fix_authority(value) {
                    encode_field(out, name, fixed);
                }
            } else {
                encode_field(out, name, value);
            }
        })?;
        if too_large {
            out.truncate(start);
            return Err(HpackError::ListTooLarge);
        }
        Ok(())
    }
}

/// The `:authority` value to forward, or `None` to drop the field (see the module rules).
pub fn fix_authority(value: &[u8]) -> Option<&[u8]> {
    if is_authority(value) {
        return Some(value);
    }
    let at = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[at + 3..];
    is_authority(rest).then_some(rest)
}

/// True when the server's HTTP/2 layer accepts `value` as `:authority`.
fn is_authority(value: &[u8]) -> bool {
    !value.is_empty() && http::uri::Authority::try_from(value).is_ok()
}

/// Appends one field as a literal without indexing, no Huffman coding (RFC 7541 §6.2.2).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name_index(name) {
        Some(index) => encode_integer(out, 0x00, 4, index),
        None => {
            out.push(0x00);
            encode_string(out, name);
        }
    }
    encode_string(out, value);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// An integer with an `prefix_bits`-bit prefix, OR-ed into `first` (RFC 7541 §5.1).
pub(crate) fn encode_integer(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    debug_assert!((1..=8).contains(&prefix_bits));
    let limit = (1usize << prefix_bits) - 1;
    if value < limit {
        out.push(first | value as u8);
        return;
    }
    out.push(first | limit as u8);
    let mut rest = value - limit;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Index of the first static-table entry (RFC 7541 Appendix A) with this name.
fn static_name_index(name: &[u8]) -> Option<usize> {
    STATIC_NAMES
        .iter()
        .position(|n| n.as_bytes() == name)
        .map(|i| i + 1)
}

/// Names of the HPACK static table, in index order starting at 1 (RFC 7541 Appendix A).
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Decoder;

    fn decode_all(d: &mut Decoder<'static>, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        match d.decode(block) {
            Ok(list) => list,
            Err(e) => panic!("block does not decode: {e}"),
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn authority_forms_etcd_clients_send() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("localhost", Some("localhost")),
            ("[::1]:2379", Some("[::1]:2379")),
            ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("https://example.com:2379", Some("example.com:2379")),
            ("unix://localhost:1234", Some("localhost:1234")),
            ("unix:///tmp/etcd.sock", None),
            ("#initially=[http://a:1;http://b:2]", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = fix_authority(input.as_bytes());
            assert_eq!(got, want.map(str::as_bytes), "authority {input:?}");
        }
    }

    #[test]
    fn integer_coding_matches_rfc_examples() {
        // RFC 7541 C.1.1-C.1.3.
        let mut out = Vec::new();
        encode_integer(&mut out, 0, 5, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        encode_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        out.clear();
        encode_integer(&mut out, 0, 8, 42);
        assert_eq!(out, [0x2a]);
    }

    /// RFC 7541 C.4: three requests encoded with Huffman coding and dynamic-table insertions.
    /// Re-encoding must keep every field and leave a fresh decoder's table empty.
    #[test]
    fn rfc_huffman_requests_reencode_without_indexing() {
        let requests = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        let wants = [
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]),
        ];
        let mut rewriter = BlockRewriter::default();
        let mut server = Decoder::new();
        for (request, want) in requests.iter().zip(wants.iter()) {
            let mut out = Vec::new();
            assert_eq!(rewriter.rewrite(&hex(request), &mut out), Ok(()));
            assert_eq!(&decode_all(&mut server, &out), want);
            assert_no_indexing(&out);
        }
    }

    /// Every field of a re-encoded block is in our literal-without-indexing form: encoding
    /// the decoded list again gives the same bytes.
    fn assert_no_indexing(block: &[u8]) {
        let mut again = Vec::new();
        for (name, value) in decode_all(&mut Decoder::new(), block) {
            encode_field(&mut again, &name, &value);
        }
        assert_eq!(again, block);
    }

    #[test]
    fn scheme_authority_is_fixed_and_bad_ones_dropped() {
        let mut client = Vec::new();
        for (name, value) in [
            (":method", "POST"),
            (":authority", "http://127.0.0.1:2379"),
            (":path", "/etcdserverpb.Maintenance/Status"),
        ] {
            encode_field(&mut client, name.as_bytes(), value.as_bytes());
        }
        let mut out = Vec::new();
        assert_eq!(BlockRewriter::default().rewrite(&client, &mut out), Ok(()));
        assert_eq!(
            decode_all(&mut Decoder::new(), &out),
            pairs(&[
                (":method", "POST"),
                (":authority", "127.0.0.1:2379"),
                (":path", "/etcdserverpb.Maintenance/Status"),
            ])
        );

        let mut client = Vec::new();
        encode_field(
            &mut client,
            b":authority",
            b"#initially=[http://a:1;http://b:2]",
        );
        encode_field(&mut client, b"te", b"trailers");
        let mut out = Vec::new();
        assert_eq!(BlockRewriter::default().rewrite(&client, &mut out), Ok(()));
        assert_eq!(
            decode_all(&mut Decoder::new(), &out),
            pairs(&[("te", "trailers")])
        );
    }

    #[test]
    fn table_references_cannot_inflate_without_bound() {
        // One literal with incremental indexing of a ~4 KB field, then many 1-byte references
        // to it: tiny on the wire, gigabytes decoded.
        let mut block = vec![0x40];
        encode_string(&mut block, b"x-big");
        encode_string(&mut block, &[b'a'; 4000]);
        block.extend(std::iter::repeat_n(0xbe, 1000));
        let mut out = Vec::new();
        assert_eq!(
            BlockRewriter::default().rewrite(&block, &mut out),
            Err(HpackError::ListTooLarge)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_table_size_update_is_refused() {
        let mut block = Vec::new();
        encode_integer(&mut block, 0x20, 5, HPACK_TABLE_BYTES_MAX + 1);
        encode_field(&mut block, b":method", b"GET");
        let mut out = Vec::new();
        assert!(matches!(
            BlockRewriter::default().rewrite(&block, &mut out),
            Err(HpackError::Decode(_))
        ));
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for block in [
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x80],
            &[0x00, 0x85],
        ] {
            let mut out = Vec::new();
            assert!(BlockRewriter::default().rewrite(block, &mut out).is_err());
        }
    }

    proptest::proptest! {
        /// Any header list the client encodes (with or without indexing) decodes to the same
        /// list after re-encoding, `:authority` aside.
        #[test]
        fn random_header_lists_survive(
            fields in proptest::collection::vec(
                ("[a-z-]{1,12}", "[ -~]{0,40}", proptest::bool::ANY), 0..20),
        ) {
            let mut client = Vec::new();
            let mut want = Vec::new();
            for (name, value, indexed) in &fields {
                if *indexed {
                    client.push(0x40);
                    encode_string(&mut client, name.as_bytes());
                    encode_string(&mut client, value.as_bytes());
                } else {
                    encode_field(&mut client, name.as_bytes(), value.as_bytes());
                }
                want.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
            }
            let mut rewriter = BlockRewriter::default();
            let mut server = Decoder::new();
            // Twice: the second block sees the client's table filled by the first.
            for _ in 0..2 {
                let mut out = Vec::new();
                proptest::prop_assert_eq!(rewriter.rewrite(&client, &mut out), Ok(()));
                proptest::prop_assert_eq!(&decode_all(&mut server, &out), &want);
            }
        }
    }
}
