//! Byte layout of bbolt's page header, meta page and elements (see the grammar in `mod.rs`), and
//! the FNV-1a checksum of the meta.
//!
//! Invariant: `Meta::encode` and `Meta::decode` are inverses on valid metas; `decode` checks
//! magic, version, checksum and page size in that order, as bbolt's `validate` does (plus the
//! page size, which bbolt trusts).

use super::{MetaFault, PAGE_BYTES_MAX, PAGE_BYTES_MIN};
use crate::io::le::{u16_at, u32_at, u64_at};

pub const MAGIC: u32 = 0xED0C_DAED;
pub const FORMAT_VERSION: u32 = 2;
/// `meta.freelist` when no freelist is stored (etcd on Linux: `NoFreelistSync`).
pub const NO_FREELIST: u64 = u64::MAX;

pub const PAGE_HEADER_BYTES: usize = 16;
pub const BRANCH_ELEMENT_BYTES: usize = 16;
pub const LEAF_ELEMENT_BYTES: usize = 16;
pub const BUCKET_HEADER_BYTES: usize = 16;
/// Magic through checksum.
pub const META_BYTES: usize = 64;
/// The checksummed part of the meta: magic through txid.
const META_SUMMED_BYTES: usize = 56;

pub const FLAG_BRANCH: u16 = 0x01;
pub const FLAG_LEAF: u16 = 0x02;
pub const FLAG_META: u16 = 0x04;
pub const FLAG_FREELIST: u16 = 0x10;
/// Leaf element flag: the value is a bucket.
pub const ELEMENT_BUCKET: u32 = 0x01;
/// A node holds fewer elements than this (bbolt panics at 0xFFFF); a freelist with this many or
/// more ids stores its count in its first word.
pub const COUNT_LIMIT: usize = 0xFFFF;

/// The 16-byte header at the start of every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes the first 16 bytes; the caller guarantees they exist.
    pub fn decode(bytes: &[u8]) -> PageHeader {
        debug_assert!(bytes.len() >= PAGE_HEADER_BYTES);
        PageHeader {
            id: u64_at(bytes, 0),
            flags: u16_at(bytes, 8),
            count: u16_at(bytes, 10),
            overflow: u32_at(bytes, 12),
        }
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A decoded meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_bytes: u32,
    /// The root bucket's page.
    pub root: u64,
    /// The root bucket's sequence.
    pub sequence: u64,
    /// The freelist page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: the number of pages in use.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// The meta page image for page `id` (0 or 1), `page_bytes` long.
    pub fn encode_page(&self, id: u64) -> Vec<u8> {
        let mut page = vec![0u8; self.page_bytes as usize];
        PageHeader {
            id,
            flags: FLAG_META,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        let m = &mut page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + META_BYTES];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_bytes.to_le_bytes());
        // 12..16: flags, unused.
        m[16..24].copy_from_slice(&self.root.to_le_bytes());
        m[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&m[..META_SUMMED_BYTES]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        page
    }

    /// Decodes the meta page at the start of `page`, which holds at least the header and meta
    /// (`PAGE_HEADER_BYTES + META_BYTES`) bytes or is reported missing.
    pub fn decode(page: &[u8]) -> Result<Meta, MetaFault> {
        let Some(m) = page.get(PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + META_BYTES) else {
            return Err(MetaFault::Missing);
        };
        let magic = u32_at(m, 0);
        if magic != MAGIC {
            return Err(MetaFault::Magic(magic));
        }
        let version = u32_at(m, 4);
        if version != FORMAT_VERSION {
            return Err(MetaFault::Version(version));
        }
        let stored = u64_at(m, 56);
        let computed = fnv1a64(&m[..META_SUMMED_BYTES]);
        if stored != computed {
            return Err(MetaFault::Checksum { stored, computed });
        }
        let flags = PageHeader::decode(page).flags;
        if flags != FLAG_META {
            return Err(MetaFault::Flags(flags));
        }
        let page_bytes = u32_at(m, 8);
        if !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&page_bytes) || !page_bytes.is_power_of_two()
        {
            return Err(MetaFault::PageSize(page_bytes));
        }
        Ok(Meta {
            page_bytes,
            root: u64_at(m, 16),
            sequence: u64_at(m, 24),
            freelist: u64_at(m, 32),
            pgid: u64_at(m, 40),
            txid: u64_at(m, 48),
        })
    }
}

/// 64-bit FNV-1a, bbolt's meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// How many pages a node of `bytes` bytes spans.
pub fn span_pages(bytes: usize, page_bytes: usize) -> usize {
    debug_assert!(page_bytes > 0);
    bytes.div_ceil(page_bytes).max(1)
}
