//! The bbolt file format as etcd uses it for its backend database and its snapshot files: a
//! reader that walks a file from its meta page and refuses damaged or hostile input with a
//! typed error, and a writer that lays out sorted buckets as a fresh, fully packed file.
//!
//! Owns only the container format; what etcd keeps in the buckets (revision keys, leases,
//! members...) is interpreted elsewhere. No I/O happens here except through a [`PageSink`] the
//! caller provides; the reader works on a byte slice (a memory-mapped file from `io/`).
//!
//! # Format (all integers little-endian; bbolt writes them in native order, and every host we
//! build for is little-endian)
//!
//! ```text
//! file      := page{pgid}                      pgid = meta.pgid, page i at byte i*page_bytes
//! page      := header body                     a node may span 1+overflow contiguous pages;
//! header    := id:u64 flags:u16 count:u16 overflow:u32        only its first page has a header
//! flags     := 0x01 branch | 0x02 leaf | 0x04 meta | 0x10 freelist   (exactly one)
//! meta body := magic:u32=0xED0CDAED version:u32=2 page_bytes:u32 flags:u32
//!              root:u64 sequence:u64 freelist:u64 pgid:u64 txid:u64 checksum:u64
//!              checksum = FNV-1a 64 of the 56 bytes magic..txid; pages 0 and 1 are metas,
//!              the valid one with the higher txid wins; freelist = u64::MAX: none stored
//! branch    := {pos:u32 ksize:u32 child:u64}{count} keys    child i's first key = key i
//! leaf      := {flags:u32 pos:u32 ksize:u32 vsize:u32}{count} (key value)*
//!              pos counts from the start of its own element; flags 0x01 = value is a bucket
//! bucket    := root:u64 sequence:u64 [inline page]  root = 0: an inline leaf page image follows
//! freelist  := count:u16 in header, or 0xFFFF and the real count as the first u64; then ids
//! ```
//!
//! Invariant: the reader never indexes outside the slice it was given, never recurses (trees
//! are walked with an explicit stack of at most [`DEPTH_MAX`] frames) and allocates only in
//! proportion to the pages it was asked to check; every structural fault is a [`BboltError`].
//! Caution: a bucket value may name any page, so a hostile file can nest a bucket inside
//! itself; iterating one bucket always ends, but a caller walking sub-buckets of a file that
//! did not pass [`check`] (which rules out every shared page) must bound its walk.
//! Invariant: the writer only produces files the strictest bbolt (1.4) accepts: exact page
//! flags, ids equal to positions, strictly increasing keys, first-key branch keys, counts below
//! 0xFFFF, correct meta checksums, and every page in `[0, pgid)` reachable or on the freelist.

mod check;
mod layout;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;

pub use check::{check, CheckSummary};
pub use layout::{Meta, NO_FREELIST};
pub use read::{Bucket, Db, Entries, Entry, Value};
pub use write::{meta_pages, PageSink, WriteError, WriteSummary, Writer, WriterOptions};

/// The deepest B+tree (counting the leaf) the reader follows. bbolt's trees are a handful of
/// levels deep; anything deeper is a cycle or a hostile file.
pub const DEPTH_MAX: usize = 64;
/// bbolt's largest key.
pub const KEY_BYTES_MAX: usize = 32_768;
/// bbolt's largest value.
pub const VALUE_BYTES_MAX: usize = (1 << 31) - 2;
/// Page sizes the reader accepts (powers of two). bbolt uses the OS page size: 4 KiB on most
/// hosts, 16 or 64 KiB on some arm64/ppc64le kernels.
pub const PAGE_BYTES_MIN: u32 = 512;
pub const PAGE_BYTES_MAX: u32 = 64 * 1024;

/// Where in the file a fault was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A page, by id.
    Page(u64),
    /// The inline page of a bucket stored inside a leaf value of the given page.
    Inline { parent: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Page(id) => write!(f, "page {id}"),
            Location::Inline { parent } => write!(f, "inline bucket in page {parent}"),
        }
    }
}

/// Why a meta page was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaFault {
    /// The page is not inside the file.
    Missing,
    Magic(u32),
    Version(u32),
    Checksum {
        stored: u64,
        computed: u64,
    },
    PageSize(u32),
    Flags(u16),
}

impl fmt::Display for MetaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaFault::Missing => write!(f, "not present"),
            MetaFault::Magic(m) => write!(f, "invalid magic {m:#x}"),
            MetaFault::Version(v) => write!(f, "unsupported version {v}"),
            MetaFault::Checksum { stored, computed } => {
                write!(f, "bad meta checksum {stored:#x} (computed {computed:#x})")
            }
            MetaFault::PageSize(p) => write!(f, "unsupported page size {p}"),
            MetaFault::Flags(fl) => write!(f, "page flags {fl:#x} are not meta"),
        }
    }
}

/// A damaged or hostile file, or a failed read.
#[derive(Debug)]
pub enum BboltError {
    /// Shorter than two pages of the smallest page size.
    TooSmall { file_bytes: u64 },
    /// Neither meta page is valid.
    NoValidMeta { meta0: MetaFault, meta1: MetaFault },
    /// The meta names pages beyond the end of the file.
    Truncated {
        pgid: u64,
        page_bytes: u32,
        file_bytes: u64,
    },
    /// The meta's root or freelist page is out of range.
    BadMeta { reason: &'static str, value: u64 },
    /// A reference to a page outside `[2, pgid)` or a node running past `pgid`.
    PageOutOfBounds { id: u64, pgid: u64, from: Location },
    /// A page header's id differs from its position.
    PageIdMismatch { id: u64, stored: u64 },
    /// A page's flags are not the kind expected there.
    BadPageFlags {
        at: Location,
        flags: u16,
        expected: &'static str,
    },
    /// An element or its key/value runs past the end of its node.
    ElementOutOfBounds { at: Location, index: usize },
    /// Keys not strictly increasing, or outside the range its branch key promises.
    KeyOrder { at: Location, index: usize },
    /// An empty key or one beyond bbolt's limits.
    BadKey { at: Location, index: usize },
    /// A leaf element with unknown flags, or a bucket value shorter than its header.
    BadElement { at: Location, index: usize },
    /// An inline bucket holding a sub-bucket (bbolt never writes one).
    InlineSubBucket { at: Location },
    /// A tree deeper than [`DEPTH_MAX`]: a cycle or a hostile file.
    TooDeep { at: Location },
    /// A page referenced twice (a cycle, or two trees sharing a page).
    PageReferencedTwice { id: u64 },
    /// A page on the freelist that is also in use, or listed twice.
    BadFreelist { id: u64, reason: &'static str },
    /// A page neither reachable nor free.
    Unreachable { id: u64 },
    /// Reading the file failed.
    Io(io::Error),
}

impl fmt::Display for BboltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BboltError::*;
        match self {
            TooSmall { file_bytes } => write!(f, "bbolt: file size too small ({file_bytes} bytes)"),
            NoValidMeta { meta0, meta1 } => {
                write!(
                    f,
                    "bbolt: no valid meta page (meta 0: {meta0}; meta 1: {meta1})"
                )
            }
            Truncated {
                pgid,
                page_bytes,
                file_bytes,
            } => write!(
                f,
                "bbolt: file truncated: meta names {pgid} pages of {page_bytes} bytes, \
                 file has {file_bytes} bytes"
            ),
            BadMeta { reason, value } => write!(f, "bbolt: meta {reason} ({value})"),
            PageOutOfBounds { id, pgid, from } => write!(
                f,
                "bbolt: page {id} out of bounds (high water mark {pgid}), referenced from {from}"
            ),
            PageIdMismatch { id, stored } => {
                write!(f, "bbolt: page {id} has id {stored} in its header")
            }
            BadPageFlags {
                at,
                flags,
                expected,
            } => write!(f, "bbolt: {at} has flags {flags:#x}, expected {expected}"),
            ElementOutOfBounds { at, index } => {
                write!(f, "bbolt: {at} element {index} out of bounds")
            }
            KeyOrder { at, index } => write!(f, "bbolt: {at} element {index}: bad key order"),
            BadKey { at, index } => write!(f, "bbolt: {at} element {index}: invalid key size"),
            BadElement { at, index } => write!(f, "bbolt: {at} element {index}: invalid element"),
            InlineSubBucket { at } => write!(f, "bbolt: {at} holds a sub-bucket"),
            TooDeep { at } => write!(
                f,
                "bbolt: tree deeper than {DEPTH_MAX} levels at {at} (cycle?)"
            ),
            PageReferencedTwice { id } => write!(f, "bbolt: page {id}: multiple references"),
            BadFreelist { id, reason } => write!(f, "bbolt: freelist page id {id}: {reason}"),
            Unreachable { id } => write!(f, "bbolt: page {id}: unreachable unfreed"),
            Io(e) => write!(f, "bbolt: read: {e}"),
        }
    }
}

impl std::error::Error for BboltError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BboltError::Io(e) => Some(e),
            _ => None,
        }
    }
}
