//! HPACK decoding (RFC 7541) of the header blocks a client sends, for `net::hpack`'s rewriter.
//!
//! Owns one connection's mirror of the client encoder's dynamic table. The Huffman code is the
//! canonical code of RFC 7541 Appendix B, given here by its code lengths; the decoding tables
//! are built once per process (`canonical`), never per string, because the rewriter decodes
//! every request's header block on the request path.
//!
//! Invariant: the dynamic table never holds more than its current maximum size (entry sizes
//!   counted as RFC 7541 §4.1 does), and that maximum never exceeds the limit given at
//!   creation; a size update above the limit fails the block.
//! Invariant: every read is bounds-checked; malformed input (truncated integers or strings,
//!   integers past 2^32, index 0 or past the tables, bad Huffman padding, EOS inside a string)
//!   is an error, never a panic.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::OnceLock;

/// Why a block does not decode (HTTP/2's COMPRESSION_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Per-entry overhead of the dynamic table's size accounting (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Decodes the header blocks of one direction of one connection, in order.
pub struct HeaderDecoder {
    /// Newest entry first: dynamic index 62 is `table[0]`.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    limit: usize,
}

impl HeaderDecoder {
    /// A decoder whose client may size its table up to `limit` bytes (the SETTINGS value); the
    /// table starts at that size, as HTTP/2 starts it at the setting's value.
    pub fn new(limit: usize) -> Self {
        HeaderDecoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    /// Decodes one complete header block, calling `field` with each field in order. On an
    /// error the table may hold the block's insertions so far; the connection is failed then.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut rest = block;
        let mut ends_in_size_update = false;
        while let Some(&first) = rest.first() {
            ends_in_size_update = first & 0xe0 == 0x20;
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(&mut rest, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                let index = integer(&mut rest, 6)?;
                let name = match index {
                    0 => string(&mut rest)?.into_owned(),
                    i => self.entry(i)?.0.to_vec(),
                };
                let value = string(&mut rest)?.into_owned();
                field(&name, &value);
                self.insert(name, value);
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3).
                let size = integer(&mut rest, 5)?;
                if size > self.limit {
                    return Err(DecodeError("dynamic table size update above the limit"));
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
                let index = integer(&mut rest, 4)?;
                if index == 0 {
                    let name = string(&mut rest)?;
                    let value = string(&mut rest)?;
                    field(&name, &value);
                } else {
                    let (name, _) = self.entry(index)?;
                    let value = string(&mut rest)?;
                    field(name, &value);
                }
            }
        }
        if ends_in_size_update {
            // A size update belongs before the fields of a block (§4.2); one with no field
            // after it is refused, as the decoder used before this one refused it.
            return Err(DecodeError(
                "dynamic table size update at the end of a header block",
            ));
        }
        Ok(())
    }

    /// The field at `index` of the static table (1..=61) or the dynamic one (62..).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        match index {
            0 => Err(DecodeError("index 0")),
            i if i <= STATIC_TABLE.len() => {
                let (name, value) = STATIC_TABLE[i - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            i => self
                .table
                .get(i - STATIC_TABLE.len() - 1)
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .ok_or(DecodeError("index past the dynamic table")),
        }
    }

    /// Adds an entry at the front, evicting from the back (§4.4); an entry larger than the
    /// whole table empties it and is not added.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let bytes = name.len() + value.len() + ENTRY_OVERHEAD;
        if bytes > self.max_size {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - bytes);
        self.size += bytes;
        self.table.push_front((name, value));
        assert!(self.size <= self.max_size, "HPACK table over its size");
    }

    /// Evicts the oldest entries until the table holds at most `bytes`.
    fn evict_to(&mut self, bytes: usize) {
        while self.size > bytes {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }

    /// Entries in the dynamic table (tests).
    #[cfg(test)]
    pub fn table_len(&self) -> usize {
        self.table.len()
    }
}

/// Reads an integer with a `prefix_bits`-bit prefix (§5.1) off the front of `rest`. Values
/// past `u32::MAX` are refused (no length or index that large can be valid here).
fn integer(rest: &mut &[u8], prefix_bits: u32) -> Result<usize, DecodeError> {
    const TRUNCATED: DecodeError = DecodeError("truncated integer");
    let (&first, mut tail) = rest.split_first().ok_or(TRUNCATED)?;
    let mask = (1u8 << prefix_bits) - 1;
    let mut value = u64::from(first & mask);
    if value == u64::from(mask) {
        let mut shift = 0u32;
        loop {
            let (&b, next) = tail.split_first().ok_or(TRUNCATED)?;
            tail = next;
            value += u64::from(b & 0x7f) << shift;
            if value > u64::from(u32::MAX) {
                return Err(DecodeError("integer too large"));
            }
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(DecodeError("integer too large"));
            }
        }
    }
    *rest = tail;
    usize::try_from(value).map_err(|_| DecodeError("integer too large"))
}

/// Reads a string literal (§5.2) off the front of `rest`: borrowed when raw, decoded when
/// Huffman-coded.
fn string<'a>(rest: &mut &'a [u8]) -> Result<Cow<'a, [u8]>, DecodeError> {
    let huffman = rest.first().is_some_and(|b| b & 0x80 != 0);
    let len = integer(rest, 7)?;
    if len > rest.len() {
        return Err(DecodeError("truncated string"));
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    if huffman {
        huffman_decode(bytes).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

/// Code length of each symbol (0..=255, then EOS as 256) of the HPACK Huffman code (RFC 7541
/// Appendix B). The code is canonical: codes are assigned in order of (length, symbol), so the
/// lengths determine every code.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const CODE_LENGTH_MAX: usize = 30;
const EOS: u16 = 256;

/// The canonical decoding tables: for each code length, the first code of that length, how
/// many codes have it, and where their symbols start in `symbols` (ordered by length, then
/// symbol).
pub(crate) struct Canonical {
    first: [u32; CODE_LENGTH_MAX + 1],
    count: [u32; CODE_LENGTH_MAX + 1],
    offset: [usize; CODE_LENGTH_MAX + 1],
    symbols: Vec<u16>,
}

impl Canonical {
    fn build() -> Self {
        let mut count = [0u32; CODE_LENGTH_MAX + 1];
        for &len in &CODE_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut first = [0u32; CODE_LENGTH_MAX + 1];
        let mut offset = [0usize; CODE_LENGTH_MAX + 1];
        let (mut code, mut at) = (0u32, 0usize);
        for len in 1..=CODE_LENGTH_MAX {
            first[len] = code;
            offset[len] = at;
            code = (code + count[len]) << 1;
            at += count[len] as usize;
        }
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| (CODE_LENGTHS[usize::from(s)], s));
        Canonical {
            first,
            count,
            offset,
            symbols,
        }
    }

    /// The code of `symbol` and its length in bits (the tests' encoder).
    #[cfg(test)]
    pub(crate) fn code(&self, symbol: u16) -> (u32, u8) {
        let len = CODE_LENGTHS[usize::from(symbol)];
        let l = usize::from(len);
        let rank = self.symbols[self.offset[l]..self.offset[l] + self.count[l] as usize]
            .iter()
            .position(|&s| s == symbol)
            .unwrap_or(0);
        (self.first[l] + rank as u32, len)
    }
}

/// The decoding tables, built on first use.
pub(crate) fn canonical() -> &'static Canonical {
    static TABLES: OnceLock<Canonical> = OnceLock::new();
    TABLES.get_or_init(Canonical::build)
}

/// Decodes a Huffman-coded string (§5.2): the padding must be fewer than 8 bits, all ones
/// (a prefix of EOS), and EOS itself must not appear.
pub fn huffman_decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let c = canonical();
    let mut out = Vec::with_capacity(input.len() + input.len() / 2);
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in input {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let rank = code.wrapping_sub(c.first[len]);
            if rank < c.count[len] {
                let symbol = c.symbols[c.offset[len] + rank as usize];
                if symbol == EOS {
                    return Err(DecodeError("EOS inside a Huffman string"));
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            } else if len == CODE_LENGTH_MAX {
                // Every 30-bit value is a code or extends a shorter one; kept for safety.
                return Err(DecodeError("invalid Huffman code"));
            }
        }
    }
    if len > 7 {
        return Err(DecodeError("Huffman padding longer than 7 bits"));
    }
    if code != (1u32 << len) - 1 {
        return Err(DecodeError("Huffman padding is not a prefix of EOS"));
    }
    Ok(out)
}

/// The HPACK static table (RFC 7541 Appendix A), index 1 first.
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::hpack::encode_integer;
    use loona_hpack::Decoder;

    /// Huffman-encodes `input` with the canonical codes (tests only: the rewriter never emits
    /// Huffman strings).
    fn huffman_encode(input: &[u8]) -> Vec<u8> {
        let c = canonical();
        let (mut acc, mut bits) = (0u64, 0u32);
        let mut out = Vec::new();
        for &b in input {
            let (code, len) = c.code(u16::from(b));
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) as u8) | ((1u8 << pad) - 1));
        }
        out
    }

    fn push_string(out: &mut Vec<u8>, s: &[u8], huffman: bool) {
        if huffman {
            let coded = huffman_encode(s);
            encode_integer(out, 0x80, 7, coded.len());
            out.extend_from_slice(&coded);
        } else {
            encode_integer(out, 0x00, 7, s.len());
            out.extend_from_slice(s);
        }
    }

    type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

    fn ours(d: &mut HeaderDecoder, block: &[u8]) -> Result<HeaderList, DecodeError> {
        let mut list = Vec::new();
        d.decode(block, |n, v| list.push((n.to_vec(), v.to_vec())))?;
        Ok(list)
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    #[test]
    fn the_code_is_complete_and_eos_is_thirty_ones() {
        // Kraft equality: a complete prefix code.
        let total: u64 = CODE_LENGTHS
            .iter()
            .map(|&l| 1u64 << (CODE_LENGTH_MAX - usize::from(l)))
            .sum();
        assert_eq!(total, 1u64 << CODE_LENGTH_MAX);
        assert_eq!(canonical().code(EOS), ((1u32 << 30) - 1, 30));
        // RFC 7541 Appendix B: '0' is 00000, ' ' is 010100, 'a' is 00011.
        assert_eq!(canonical().code(u16::from(b'0')), (0, 5));
        assert_eq!(canonical().code(u16::from(b' ')), (0x14, 6));
        assert_eq!(canonical().code(u16::from(b'a')), (0x3, 5));
    }

    #[test]
    fn rfc_huffman_strings_decode() {
        // RFC 7541 C.4.
        for (coded, plain) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ] {
            assert_eq!(huffman_decode(&hex(coded)), Ok(plain.as_bytes().to_vec()));
            assert_eq!(huffman_encode(plain.as_bytes()), hex(coded));
        }
    }

    #[test]
    fn every_byte_value_round_trips_and_matches_an_independent_decoder() {
        let all: Vec<u8> = (0..=255).collect();
        let coded = huffman_encode(&all);
        assert_eq!(huffman_decode(&coded), Ok(all.clone()));
        // loona_hpack has its own copy of the code table: a wrong length here shows up.
        let mut block = vec![0x00];
        push_string(&mut block, b"x", false);
        push_string(&mut block, &all, true);
        let theirs = Decoder::new().decode(&block).expect("loona decodes it");
        assert_eq!(theirs, vec![(b"x".to_vec(), all)]);
    }

    #[test]
    fn bad_huffman_input_is_refused() {
        // Padding of 8 ones (a whole byte after a complete string).
        let mut coded = huffman_encode(b"a");
        coded.push(0xff);
        assert!(huffman_decode(&coded).is_err());
        // Padding of zeros: 'a' is 00011, then 000 is not a prefix of EOS.
        assert!(huffman_decode(&[0b0001_1000]).is_err());
        // EOS spelled out (30 ones) then padding.
        assert!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn static_table_matches_an_independent_decoder() {
        for i in 1..=STATIC_TABLE.len() {
            let block = [0x80 | i as u8];
            let theirs = Decoder::new().decode(&block).expect("loona decodes it");
            let mine = ours(&mut HeaderDecoder::new(4096), &block).expect("we decode it");
            assert_eq!(mine, theirs, "static index {i}");
        }
    }

    #[test]
    fn malformed_blocks_are_errors() {
        for block in [
            &[0x80][..],                           // index 0
            &[0xbe],                               // dynamic index 62 of an empty table
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // integer too large
            &[0xff, 0x80],                         // truncated integer
            &[0x00, 0x85, b'a'],                   // truncated string
            &[0x3f, 0xe2, 0x1f],                   // size update 4,097 > 4,096
            &[0x82, 0x20],                         // a size update with no field after it
        ] {
            assert!(
                ours(&mut HeaderDecoder::new(4096), block).is_err(),
                "{block:?}"
            );
        }
    }

    #[test]
    fn eviction_and_size_updates_follow_the_size_rules() {
        let mut d = HeaderDecoder::new(100);
        // Each entry is 1 + 17 + 32 = 50 bytes: two fit in 100.
        let mut block = Vec::new();
        for v in [
            b"aaaaaaaaaaaaaaaaa",
            b"bbbbbbbbbbbbbbbbb",
            b"ccccccccccccccccc",
        ] {
            block.push(0x40);
            push_string(&mut block, b"x", false);
            push_string(&mut block, v, false);
        }
        ours(&mut d, &block).expect("decodes");
        assert_eq!(d.table_len(), 2);
        // 62 is the newest (c), 63 the one before (b); a is gone.
        let list = ours(&mut d, &[0xbe, 0xbf]).expect("decodes");
        assert_eq!(list[0].1, b"ccccccccccccccccc");
        assert_eq!(list[1].1, b"bbbbbbbbbbbbbbbbb");
        assert!(ours(&mut d, &[0xc0]).is_err());
        // Size update to 50 keeps one entry; to 0 empties the table.
        // (Each followed by `:method: GET`: a block must not end in a size update.)
        ours(&mut d, &[0x3f, 0x13, 0x82]).expect("size update to 50");
        assert_eq!(d.table_len(), 1);
        ours(&mut d, &[0x20, 0x82]).expect("size update to 0");
        assert_eq!(d.table_len(), 0);
        // An entry larger than the table is not added (and empties it).
        let mut big = vec![0x40];
        push_string(&mut big, b"x", false);
        push_string(&mut big, b"y", false);
        ours(&mut d, &big).expect("decodes");
        assert_eq!(d.table_len(), 0);
    }

    proptest::proptest! {
        /// Random blocks built from every representation (indexed, literal with and without
        /// indexing, never indexed, Huffman or raw, size updates) decode to the same lists as
        /// an independent decoder, block after block on the same connection.
        #[test]
        fn agrees_with_an_independent_decoder(
            blocks in proptest::collection::vec(
                proptest::collection::vec(
                    (0u8..6, proptest::collection::vec(proptest::num::u8::ANY, 0..24),
                     proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                     proptest::bool::ANY, 0usize..100),
                    0..12),
                1..4),
        ) {
            let mut mine = HeaderDecoder::new(4096);
            let mut theirs = Decoder::new();
            theirs.set_max_allowed_table_size(4096);
            let mut inserted = 0usize;
            for fields in &blocks {
                let mut block = Vec::new();
                for (kind, name, value, huffman, pick) in fields {
                    match kind {
                        0 => encode_integer(&mut block, 0x80, 7, 1 + pick % 61),
                        1 if inserted > 0 => encode_integer(&mut block, 0x80, 7, 62 + pick % inserted.min(4)),
                        2 => {
                            block.push(0x40);
                            push_string(&mut block, name, *huffman);
                            push_string(&mut block, value, *huffman);
                            inserted += 1;
                        }
                        3 => {
                            encode_integer(&mut block, 0x40, 6, 1 + pick % 61);
                            push_string(&mut block, value, *huffman);
                            inserted += 1;
                        }
                        4 => {
                            encode_integer(&mut block, if *huffman { 0x10 } else { 0x00 }, 4, 1 + pick % 61);
                            push_string(&mut block, value, !*huffman);
                        }
                        _ => {
                            encode_integer(&mut block, 0x20, 5, 2048 + pick * 20);
                        }
                    }
                }
                let want = theirs.decode(&block).map_err(|e| format!("{e:?}"));
                let got = ours(&mut mine, &block).map_err(|e| e.to_string());
                proptest::prop_assert_eq!(got.is_ok(), want.is_ok(), "ours {:?} theirs {:?}", got, want);
                if let (Ok(got), Ok(want)) = (got, want) {
                    proptest::prop_assert_eq!(got, want);
                } else {
                    break;
                }
            }
        }
    }
}
