//! Writing a fresh bbolt file from entries given in key order, streaming: pages are written as
//! soon as they fill, so memory holds one pending leaf and one pending branch node per tree
//! level for each open bucket, not the file.
//!
//! Layout: pages 0 and 1 are the metas (written last, once the root and page count are known),
//! page 2 an empty freelist when one is stored, then every bucket's pages in the order they
//! fill. A bucket is a B+tree built bottom-up: leaves are packed until the next element would
//! not fit a page (a single large element gets a node of its own with overflow pages), each
//! full node's first key goes up one level, and the top level's single node is the root. A
//! bucket whose only leaf is at most a quarter page and holds no sub-bucket is stored inline
//! in its parent's value, as bbolt does.
//!
//! Invariant: pages are written in increasing id order, each exactly once, and the file ends at
//! `pgid * page_bytes`: there are no unreachable pages, so an empty freelist is correct.
//! Invariant: keys within a bucket are strictly increasing (checked on entry), so every node's
//! keys are sorted and every branch key is its child's first key.

use std::fmt;
use std::io;

use super::layout::{
    span_pages, Meta, PageHeader, BRANCH_ELEMENT_BYTES, BUCKET_HEADER_BYTES, COUNT_LIMIT,
    ELEMENT_BUCKET, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, LEAF_ELEMENT_BYTES, NO_FREELIST,
    PAGE_HEADER_BYTES,
};
use super::{KEY_BYTES_MAX, PAGE_BYTES_MAX, PAGE_BYTES_MIN, VALUE_BYTES_MAX};
use crate::io::DiskFile;

/// Where the writer puts its pages.
pub trait PageSink {
    /// Writes all of `bytes` at byte `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
}

impl PageSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start + bytes.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(bytes);
        Ok(())
    }
}

impl<T: PageSink> PageSink for &mut T {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, bytes)
    }
}

impl PageSink for &dyn DiskFile {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        DiskFile::write_at(*self, bytes, offset)
    }
}

/// Choices for the file written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// A power of two in `[PAGE_BYTES_MIN, PAGE_BYTES_MAX]`; etcd's readers take it from the
    /// meta. A multiple of 512 keeps the file a whole number of 512-byte blocks, which
    /// `etcdctl snapshot save` requires of the stream.
    pub page_bytes: u32,
    /// Store an (empty) freelist page, as bbolt does when `NoFreelistSync` is off; otherwise
    /// `meta.freelist` says none is stored, as in etcd's files on Linux.
    pub store_freelist: bool,
    /// The transaction id of meta page 0; meta page 1 gets `txid - 1`. At least 2.
    pub txid: u64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            page_bytes: 4096,
            store_freelist: false,
            txid: 2,
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// The root bucket's page.
    pub root: u64,
    pub pgid: u64,
    pub page_bytes: u32,
    /// `pgid * page_bytes`: the file's length.
    pub size_bytes: u64,
}

/// Why writing failed.
#[derive(Debug)]
pub enum WriteError {
    Io(io::Error),
    BadOptions(&'static str),
    /// A key not greater than the previous key of its bucket.
    KeyOrder {
        key: Vec<u8>,
    },
    /// An empty key, or one longer than `KEY_BYTES_MAX`.
    BadKey {
        key_bytes: usize,
    },
    ValueTooLarge {
        value_bytes: usize,
    },
    /// `end_bucket` with no bucket open.
    NoOpenBucket,
    /// `finish` with buckets still open.
    BucketsStillOpen {
        open: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Io(e) => write!(f, "bbolt write: {e}"),
            WriteError::BadOptions(why) => write!(f, "bbolt write: bad options: {why}"),
            WriteError::KeyOrder { key } => {
                write!(f, "bbolt write: key {key:?} is not after the previous key")
            }
            WriteError::BadKey { key_bytes } => {
                write!(f, "bbolt write: invalid key size {key_bytes}")
            }
            WriteError::ValueTooLarge { value_bytes } => {
                write!(f, "bbolt write: value of {value_bytes} bytes is too large")
            }
            WriteError::NoOpenBucket => write!(f, "bbolt write: no bucket is open"),
            WriteError::BucketsStillOpen { open } => {
                write!(f, "bbolt write: {open} buckets still open at finish")
            }
        }
    }
}

impl std::error::Error for WriteError {}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// A leaf element waiting for its page.
struct Item {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Page allocation and output: the part of the writer shared by all open buckets.
struct Pages<S> {
    sink: S,
    page_bytes: usize,
    next_pgid: u64,
}

impl<S: PageSink> Pages<S> {
    /// Writes a node image (header id and overflow filled in here) at the next free pages.
    fn write_node(&mut self, mut image: Vec<u8>, flags: u16, count: usize) -> io::Result<u64> {
        debug_assert!(count < COUNT_LIMIT);
        let span = span_pages(image.len(), self.page_bytes);
        image.resize(span * self.page_bytes, 0);
        let id = self.next_pgid;
        PageHeader {
            id,
            flags,
            count: count as u16,
            overflow: (span - 1) as u32,
        }
        .encode(&mut image);
        self.sink.write_at(id * self.page_bytes as u64, &image)?;
        self.next_pgid += span as u64;
        Ok(id)
    }
}

/// The bytes of a leaf node holding `items` (header left zero but for flags and count).
fn leaf_image(items: &[Item]) -> Vec<u8> {
    let elements_end = PAGE_HEADER_BYTES + items.len() * LEAF_ELEMENT_BYTES;
    let data_bytes: usize = items.iter().map(|i| i.key.len() + i.value.len()).sum();
    let mut image = vec![0u8; elements_end + data_bytes];
    PageHeader {
        id: 0,
        flags: FLAG_LEAF,
        count: items.len() as u16,
        overflow: 0,
    }
    .encode(&mut image);
    let mut data_at = elements_end;
    for (i, item) in items.iter().enumerate() {
        let element = PAGE_HEADER_BYTES + i * LEAF_ELEMENT_BYTES;
        let fields = [
            item.flags,
            (data_at - element) as u32,
            item.key.len() as u32,
            item.value.len() as u32,
        ];
        for (n, field) in fields.iter().enumerate() {
            image[element + 4 * n..element + 4 * n + 4].copy_from_slice(&field.to_le_bytes());
        }
        image[data_at..data_at + item.key.len()].copy_from_slice(&item.key);
        data_at += item.key.len();
        image[data_at..data_at + item.value.len()].copy_from_slice(&item.value);
        data_at += item.value.len();
    }
    debug_assert_eq!(data_at, image.len());
    image
}

/// The bytes of a branch node over `(first key, child page)` pairs.
fn branch_image(children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let elements_end = PAGE_HEADER_BYTES + children.len() * BRANCH_ELEMENT_BYTES;
    let key_bytes: usize = children.iter().map(|(k, _)| k.len()).sum();
    let mut image = vec![0u8; elements_end + key_bytes];
    let mut data_at = elements_end;
    for (i, (key, child)) in children.iter().enumerate() {
        let element = PAGE_HEADER_BYTES + i * BRANCH_ELEMENT_BYTES;
        image[element..element + 4].copy_from_slice(&((data_at - element) as u32).to_le_bytes());
        image[element + 4..element + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
        image[element + 8..element + 16].copy_from_slice(&child.to_le_bytes());
        image[data_at..data_at + key.len()].copy_from_slice(key);
        data_at += key.len();
    }
    image
}

/// A pending branch level: children written but not yet given a parent node.
#[derive(Default)]
struct Level {
    children: Vec<(Vec<u8>, u64)>,
    bytes: usize,
}

/// One open bucket.
struct BucketBuilder {
    /// Its key in the parent (empty for the root bucket).
    name: Vec<u8>,
    leaf: Vec<Item>,
    leaf_bytes: usize,
    has_sub_bucket: bool,
    /// `levels[0]` holds written leaves, `levels[1]` written branches over them, ...
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
}

impl BucketBuilder {
    fn new(name: Vec<u8>) -> Self {
        BucketBuilder {
            name,
            leaf: Vec::new(),
            leaf_bytes: PAGE_HEADER_BYTES,
            has_sub_bucket: false,
            levels: Vec::new(),
            last_key: None,
        }
    }

    /// Accepts `key` as the next key of this bucket.
    fn admit(&mut self, key: &[u8]) -> Result<(), WriteError> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return Err(WriteError::BadKey {
                key_bytes: key.len(),
            });
        }
        if self.last_key.as_deref().is_some_and(|last| key <= last) {
            return Err(WriteError::KeyOrder { key: key.to_vec() });
        }
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    fn push<S: PageSink>(&mut self, item: Item, pages: &mut Pages<S>) -> io::Result<()> {
        let bytes = LEAF_ELEMENT_BYTES + item.key.len() + item.value.len();
        let full = self.leaf_bytes + bytes > pages.page_bytes || self.leaf.len() + 1 >= COUNT_LIMIT;
        if !self.leaf.is_empty() && full {
            self.flush_leaf(pages)?;
        }
        self.has_sub_bucket |= item.flags == ELEMENT_BUCKET;
        self.leaf_bytes += bytes;
        self.leaf.push(item);
        Ok(())
    }

    fn flush_leaf<S: PageSink>(&mut self, pages: &mut Pages<S>) -> io::Result<()> {
        let items = std::mem::take(&mut self.leaf);
        self.leaf_bytes = PAGE_HEADER_BYTES;
        let Some(first) = items.first() else {
            return Ok(());
        };
        let first_key = first.key.clone();
        let id = pages.write_node(leaf_image(&items), FLAG_LEAF, items.len())?;
        self.push_child(0, first_key, id, pages)
    }

    fn push_child<S: PageSink>(
        &mut self,
        level: usize,
        key: Vec<u8>,
        id: u64,
        pages: &mut Pages<S>,
    ) -> io::Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Level::default());
        }
        let bytes = BRANCH_ELEMENT_BYTES + key.len();
        let pending = &self.levels[level];
        let full = PAGE_HEADER_BYTES + pending.bytes + bytes > pages.page_bytes
            || pending.children.len() + 1 >= COUNT_LIMIT;
        if !pending.children.is_empty() && full {
            self.flush_level(level, pages)?;
        }
        let pending = &mut self.levels[level];
        pending.bytes += bytes;
        pending.children.push((key, id));
        Ok(())
    }

    fn flush_level<S: PageSink>(&mut self, level: usize, pages: &mut Pages<S>) -> io::Result<()> {
        let children = std::mem::take(&mut self.levels[level].children);
        self.levels[level].bytes = 0;
        let Some((first_key, _)) = children.first() else {
            return Ok(());
        };
        let first_key = first_key.clone();
        let id = pages.write_node(branch_image(&children), FLAG_BRANCH, children.len())?;
        self.push_child(level + 1, first_key, id, pages)
    }

    /// Writes what is pending and returns the bucket's value (header, plus the inline page when
    /// `inline_allowed` and the bucket is small enough).
    fn finish<S: PageSink>(
        mut self,
        inline_allowed: bool,
        pages: &mut Pages<S>,
    ) -> io::Result<Vec<u8>> {
        let mut value = vec![0u8; BUCKET_HEADER_BYTES];
        if self.levels.is_empty() {
            if inline_allowed && !self.has_sub_bucket && self.leaf_bytes <= pages.page_bytes / 4 {
                value.extend_from_slice(&leaf_image(&self.leaf));
                return Ok(value);
            }
            let id = pages.write_node(leaf_image(&self.leaf), FLAG_LEAF, self.leaf.len())?;
            value[0..8].copy_from_slice(&id.to_le_bytes());
            return Ok(value);
        }
        self.flush_leaf(pages)?;
        let mut level = 0;
        let root = loop {
            let top = level + 1 == self.levels.len();
            if top && self.levels[level].children.len() == 1 {
                break self.levels[level].children[0].1;
            }
            self.flush_level(level, pages)?;
            level += 1;
        };
        value[0..8].copy_from_slice(&root.to_le_bytes());
        Ok(value)
    }
}

/// Writes one bbolt file. Call [`Writer::put`], [`Writer::begin_bucket`] and
/// [`Writer::end_bucket`] with keys in increasing order within each bucket, then
/// [`Writer::finish`].
pub struct Writer<S> {
    pages: Pages<S>,
    options: WriterOptions,
    /// Open buckets; `[0]` is the root bucket, whose entries are the top-level buckets.
    open: Vec<BucketBuilder>,
}

impl<S: PageSink> Writer<S> {
    pub fn new(mut sink: S, options: WriterOptions) -> Result<Writer<S>, WriteError> {
        let page_bytes = options.page_bytes;
        if !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&page_bytes) || !page_bytes.is_power_of_two()
        {
            return Err(WriteError::BadOptions("page size"));
        }
        if options.txid < 2 {
            return Err(WriteError::BadOptions("txid must be at least 2"));
        }
        let page_bytes = page_bytes as usize;
        let mut next_pgid = 2;
        if options.store_freelist {
            let mut page = vec![0u8; page_bytes];
            PageHeader {
                id: 2,
                flags: FLAG_FREELIST,
                count: 0,
                overflow: 0,
            }
            .encode(&mut page);
            sink.write_at(2 * page_bytes as u64, &page)?;
            next_pgid = 3;
        }
        Ok(Writer {
            pages: Pages {
                sink,
                page_bytes,
                next_pgid,
            },
            options,
            open: vec![BucketBuilder::new(Vec::new())],
        })
    }

    fn innermost(&mut self) -> &mut BucketBuilder {
        self.open
            .last_mut()
            .expect("the root bucket stays open until finish")
    }

    /// Stores `value` under `key` in the innermost open bucket (the root bucket holds only
    /// buckets in files bbolt writes, but nothing here forbids values there).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        if value.len() > VALUE_BYTES_MAX {
            return Err(WriteError::ValueTooLarge {
                value_bytes: value.len(),
            });
        }
        self.innermost().admit(key)?;
        let item = Item {
            flags: 0,
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let bucket = self.open.last_mut().expect("root bucket open");
        bucket.push(item, &mut self.pages)?;
        Ok(())
    }

    /// Opens a sub-bucket named `name` in the innermost open bucket; entries go into it until
    /// the matching [`Writer::end_bucket`].
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<(), WriteError> {
        self.innermost().admit(name)?;
        self.open.push(BucketBuilder::new(name.to_vec()));
        Ok(())
    }

    /// Closes the innermost open bucket.
    pub fn end_bucket(&mut self) -> Result<(), WriteError> {
        if self.open.len() < 2 {
            return Err(WriteError::NoOpenBucket);
        }
        let bucket = self.open.pop().expect("checked above");
        let name = bucket.name.clone();
        let value = bucket.finish(true, &mut self.pages)?;
        let item = Item {
            flags: ELEMENT_BUCKET,
            key: name,
            value,
        };
        let parent = self.open.last_mut().expect("checked above");
        parent.push(item, &mut self.pages)?;
        Ok(())
    }

    /// Writes the remaining pages and both metas; returns the sink and what was written.
    pub fn finish(mut self) -> Result<(S, WriteSummary), WriteError> {
        if self.open.len() != 1 {
            return Err(WriteError::BucketsStillOpen {
                open: self.open.len() - 1,
            });
        }
        let root_bucket = self.open.pop().expect("checked above");
        let value = root_bucket.finish(false, &mut self.pages)?;
        let root = u64::from_le_bytes(value[0..8].try_into().expect("8-byte header field"));
        let pgid = self.pages.next_pgid;
        debug_assert!(root >= 2 && root < pgid);
        let page_bytes = self.pages.page_bytes as u64;
        let summary = WriteSummary {
            root,
            pgid,
            page_bytes: self.options.page_bytes,
            size_bytes: pgid * page_bytes,
        };
        self.pages
            .sink
            .write_at(0, &meta_pages(&self.options, &summary))?;
        Ok((self.pages.sink, summary))
    }
}

/// Pages 0 and 1 of the file `summary` describes: both metas, page 0 with `options.txid` and
/// page 1 with `txid - 1`. A writer that streams the file out (and so cannot seek back) writes
/// these first, from a summary of an earlier identical run.
pub fn meta_pages(options: &WriterOptions, summary: &WriteSummary) -> Vec<u8> {
    let mut meta = Meta {
        page_bytes: options.page_bytes,
        root: summary.root,
        sequence: 0,
        freelist: if options.store_freelist {
            2
        } else {
            NO_FREELIST
        },
        pgid: summary.pgid,
        txid: options.txid,
    };
    let mut pages = meta.encode_page(0);
    meta.txid -= 1;
    pages.extend_from_slice(&meta.encode_page(1));
    pages
}
