//! Reading a bbolt file held in memory (usually a read-only mapping): choosing the meta page,
//! resolving pages, and iterating a bucket's entries in key order.
//!
//! Invariant: every offset is checked against the node or file slice before it is used, so a
//! hostile file yields a `BboltError`, never a panic; iteration keeps an explicit stack of at
//! most `DEPTH_MAX` frames and checks as it goes that keys strictly increase and stay inside the
//! range their branch keys promise (which also stops cycles: a revisited page repeats keys).

use super::layout::{
    Meta, PageHeader, BRANCH_ELEMENT_BYTES, BUCKET_HEADER_BYTES, ELEMENT_BUCKET, FLAG_BRANCH,
    FLAG_LEAF, LEAF_ELEMENT_BYTES, NO_FREELIST, PAGE_HEADER_BYTES,
};
use super::{BboltError, Location, MetaFault, DEPTH_MAX, KEY_BYTES_MAX, PAGE_BYTES_MAX};
use super::{PAGE_BYTES_MIN, VALUE_BYTES_MAX};
use crate::io::le::{u32_at, u64_at};

/// An opened bbolt file: the chosen meta and the bytes of pages `[0, pgid)`.
#[derive(Clone, Copy, Debug)]
pub struct Db<'a> {
    data: &'a [u8],
    page_bytes: usize,
    meta: Meta,
}

impl<'a> Db<'a> {
    /// Opens the file image `data`, which may extend past the last page (a snapshot's hash
    /// trailer, or a live file's preallocated tail). Only the meta is validated here; pages are
    /// checked as they are reached (see [`super::check`] for a whole-file check).
    pub fn open(data: &'a [u8]) -> Result<Db<'a>, BboltError> {
        let file_bytes = data.len() as u64;
        if data.len() < 2 * PAGE_BYTES_MIN as usize {
            return Err(BboltError::TooSmall { file_bytes });
        }
        let meta0 = Meta::decode(data);
        // Meta 1 sits one page in; without a valid meta 0 the page size is unknown, so probe
        // every supported size as bbolt 1.3.7+ does.
        let meta1 = match meta0 {
            Ok(m0) => meta_at(data, m0.page_bytes as usize),
            Err(_) => {
                let mut found = Err(MetaFault::Missing);
                let mut size = PAGE_BYTES_MIN as usize;
                while size <= PAGE_BYTES_MAX as usize {
                    found = meta_at(data, size);
                    if found.is_ok() {
                        break;
                    }
                    size *= 2;
                }
                found
            }
        };
        let mut candidates: Vec<Meta> = [meta0, meta1].iter().filter_map(|m| m.ok()).collect();
        if candidates.is_empty() {
            let (Err(meta0), Err(meta1)) = (meta0, meta1) else {
                unreachable!("no candidates means both metas failed");
            };
            return Err(BboltError::NoValidMeta { meta0, meta1 });
        }
        candidates.sort_by_key(|m| std::cmp::Reverse(m.txid));
        let mut first_error = None;
        for meta in candidates {
            match Db::with_meta(data, meta) {
                Ok(db) => return Ok(db),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("at least one candidate was tried"))
    }

    fn with_meta(data: &'a [u8], meta: Meta) -> Result<Db<'a>, BboltError> {
        let page_bytes = meta.page_bytes as usize;
        let end = meta
            .pgid
            .checked_mul(page_bytes as u64)
            .filter(|&end| end <= data.len() as u64);
        let Some(end) = end else {
            return Err(BboltError::Truncated {
                pgid: meta.pgid,
                page_bytes: meta.page_bytes,
                file_bytes: data.len() as u64,
            });
        };
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(BboltError::BadMeta {
                reason: "root page out of range",
                value: meta.root,
            });
        }
        if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
            return Err(BboltError::BadMeta {
                reason: "freelist page out of range",
                value: meta.freelist,
            });
        }
        Ok(Db {
            data: &data[..end as usize],
            page_bytes,
            meta,
        })
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn page_bytes(&self) -> usize {
        self.page_bytes
    }

    /// Bytes in use: `pgid * page_bytes`, what bbolt's `Tx.Size` reports.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'a> {
        Bucket {
            db: *self,
            root: Root::Page(self.meta.root),
            sequence: self.meta.sequence,
            at: Location::Page(0),
        }
    }

    /// The node starting at page `id`, referenced from `from`, with its overflow pages.
    pub(super) fn node(&self, id: u64, from: Location) -> Result<Node<'a>, BboltError> {
        let (_, bytes) = self.span(id, from)?;
        Node::parse(Location::Page(id), bytes)
    }

    /// The header and bytes of the pages starting at `id` with its overflow, without looking
    /// at their contents (the freelist's ids are not 16-byte elements).
    pub(super) fn span(
        &self,
        id: u64,
        from: Location,
    ) -> Result<(PageHeader, &'a [u8]), BboltError> {
        let pgid = self.meta.pgid;
        if id < 2 || id >= pgid {
            return Err(BboltError::PageOutOfBounds { id, pgid, from });
        }
        let start = id as usize * self.page_bytes;
        let header = PageHeader::decode(&self.data[start..]);
        if header.id != id {
            return Err(BboltError::PageIdMismatch {
                id,
                stored: header.id,
            });
        }
        let end_page = id + u64::from(header.overflow) + 1;
        if end_page > pgid {
            return Err(BboltError::PageOutOfBounds {
                id: end_page - 1,
                pgid,
                from: Location::Page(id),
            });
        }
        Ok((
            header,
            &self.data[start..end_page as usize * self.page_bytes],
        ))
    }
}

fn meta_at(data: &[u8], offset: usize) -> Result<Meta, MetaFault> {
    let meta = Meta::decode(data.get(offset..).ok_or(MetaFault::Missing)?)?;
    if meta.page_bytes as usize != offset {
        return Err(MetaFault::PageSize(meta.page_bytes));
    }
    Ok(meta)
}

/// One branch or leaf node: its header fields and all its bytes (header included).
#[derive(Clone, Copy, Debug)]
pub(super) struct Node<'a> {
    pub at: Location,
    pub flags: u16,
    pub count: usize,
    bytes: &'a [u8],
}

impl<'a> Node<'a> {
    fn parse(at: Location, bytes: &'a [u8]) -> Result<Node<'a>, BboltError> {
        if bytes.len() < PAGE_HEADER_BYTES {
            return Err(BboltError::ElementOutOfBounds { at, index: 0 });
        }
        let header = PageHeader::decode(bytes);
        let count = usize::from(header.count);
        if PAGE_HEADER_BYTES + count * LEAF_ELEMENT_BYTES > bytes.len() {
            return Err(BboltError::ElementOutOfBounds {
                at,
                index: count.saturating_sub(1),
            });
        }
        Ok(Node {
            at,
            flags: header.flags,
            count,
            bytes,
        })
    }

    /// Requires a branch or leaf node.
    pub fn expect_tree(self) -> Result<Node<'a>, BboltError> {
        if self.flags == FLAG_BRANCH || self.flags == FLAG_LEAF {
            Ok(self)
        } else {
            Err(BboltError::BadPageFlags {
                at: self.at,
                flags: self.flags,
                expected: "branch or leaf",
            })
        }
    }

    pub fn is_branch(&self) -> bool {
        self.flags == FLAG_BRANCH
    }

    /// The bytes `[at + pos, at + pos + len)` of element `index`, bounds-checked.
    fn slice(
        &self,
        element: usize,
        pos: u32,
        len: u32,
        index: usize,
    ) -> Result<&'a [u8], BboltError> {
        let start = element.checked_add(pos as usize);
        let end = start.and_then(|s| s.checked_add(len as usize));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() => Ok(&self.bytes[s..e]),
            _ => Err(BboltError::ElementOutOfBounds { at: self.at, index }),
        }
    }

    /// Branch element `index`: its key and child page.
    pub fn branch_element(&self, index: usize) -> Result<(&'a [u8], u64), BboltError> {
        debug_assert!(self.is_branch());
        debug_assert!(index < self.count);
        let element = PAGE_HEADER_BYTES + index * BRANCH_ELEMENT_BYTES;
        let pos = u32_at(self.bytes, element);
        let key_bytes = u32_at(self.bytes, element + 4);
        let child = u64_at(self.bytes, element + 8);
        check_key_size(key_bytes, self.at, index)?;
        let key = self.slice(element, pos, key_bytes, index)?;
        Ok((key, child))
    }

    /// Leaf element `index`: flags, key, value.
    pub fn leaf_element(&self, index: usize) -> Result<(u32, &'a [u8], &'a [u8]), BboltError> {
        debug_assert!(!self.is_branch());
        debug_assert!(index < self.count);
        let element = PAGE_HEADER_BYTES + index * LEAF_ELEMENT_BYTES;
        let flags = u32_at(self.bytes, element);
        let pos = u32_at(self.bytes, element + 4);
        let key_bytes = u32_at(self.bytes, element + 8);
        let value_bytes = u32_at(self.bytes, element + 12);
        check_key_size(key_bytes, self.at, index)?;
        if value_bytes as usize > VALUE_BYTES_MAX {
            return Err(BboltError::BadElement { at: self.at, index });
        }
        let pair = self.slice(element, pos, key_bytes.saturating_add(value_bytes), index)?;
        let (key, value) = pair.split_at(key_bytes as usize);
        Ok((flags, key, value))
    }
}

fn check_key_size(key_bytes: u32, at: Location, index: usize) -> Result<(), BboltError> {
    if key_bytes == 0 || key_bytes as usize > KEY_BYTES_MAX {
        return Err(BboltError::BadKey { at, index });
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Root<'a> {
    Page(u64),
    /// An inline leaf page image.
    Inline(&'a [u8]),
}

/// A bucket: a B+tree rooted at a page, or a single inline leaf.
#[derive(Clone, Copy, Debug)]
pub struct Bucket<'a> {
    db: Db<'a>,
    root: Root<'a>,
    sequence: u64,
    /// Where the bucket's value lives (page 0 stands for the meta, for the root bucket).
    at: Location,
}

impl<'a> Bucket<'a> {
    /// The bucket's sequence counter (bbolt's `NextSequence`).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The root page id, or `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        match self.root {
            Root::Page(id) => Some(id),
            Root::Inline(_) => None,
        }
    }

    /// Where the bucket's value lives (page 0 stands for the meta, for the root bucket).
    pub fn location(&self) -> Location {
        self.at
    }

    /// The entries in key order; each item is checked as it is reached.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            db: self.db,
            start: Some(*self),
            stack: Vec::new(),
            last_key: None,
            failed: false,
        }
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value<'a>>, BboltError> {
        for entry in self.entries() {
            let entry = entry?;
            if entry.key == key {
                return Ok(Some(entry.value));
            }
            if entry.key > key {
                break;
            }
        }
        Ok(None)
    }

    /// The sub-bucket named `name`, if any (a plain value under that name is not a bucket).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, BboltError> {
        Ok(match self.get(name)? {
            Some(Value::Bucket(b)) => Some(b),
            _ => None,
        })
    }
}

/// A bucket's value: plain bytes or a nested bucket.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Data(&'a [u8]),
    Bucket(Bucket<'a>),
}

/// One key and its value.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: Value<'a>,
}

struct Frame<'a> {
    node: Node<'a>,
    next: usize,
    /// Every key in this node is >= `lower` and < `upper`.
    lower: Option<&'a [u8]>,
    upper: Option<&'a [u8]>,
}

/// Iterator over a bucket's entries; stops after the first error.
pub struct Entries<'a> {
    db: Db<'a>,
    start: Option<Bucket<'a>>,
    stack: Vec<Frame<'a>>,
    last_key: Option<&'a [u8]>,
    failed: bool,
}

impl<'a> Entries<'a> {
    fn root_frame(&self, bucket: Bucket<'a>) -> Result<Frame<'a>, BboltError> {
        let node = match bucket.root {
            Root::Page(id) => self.db.node(id, bucket.at)?.expect_tree()?,
            Root::Inline(bytes) => {
                let Location::Page(parent) = bucket.at else {
                    return Err(BboltError::InlineSubBucket { at: bucket.at });
                };
                let at = Location::Inline { parent };
                let node = Node::parse(at, bytes)?;
                if node.flags != FLAG_LEAF {
                    return Err(BboltError::BadPageFlags {
                        at,
                        flags: node.flags,
                        expected: "leaf",
                    });
                }
                node
            }
        };
        Ok(Frame {
            node,
            next: 0,
            lower: None,
            upper: None,
        })
    }

    fn step(&mut self) -> Result<Option<Entry<'a>>, BboltError> {
        if let Some(bucket) = self.start.take() {
            let frame = self.root_frame(bucket)?;
            self.stack.push(frame);
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            if frame.next >= frame.node.count {
                self.stack.pop();
                continue;
            }
            let index = frame.next;
            frame.next += 1;
            let node = frame.node;
            let (lower, upper) = (frame.lower, frame.upper);
            if node.is_branch() {
                let (key, child) = node.branch_element(index)?;
                let child_upper = if index + 1 < node.count {
                    Some(node.branch_element(index + 1)?.0)
                } else {
                    upper
                };
                let in_range = lower.is_none_or(|l| key >= l)
                    && upper.is_none_or(|u| key < u)
                    && child_upper.is_none_or(|u| key < u);
                if !in_range {
                    return Err(BboltError::KeyOrder { at: node.at, index });
                }
                if self.stack.len() >= DEPTH_MAX {
                    return Err(BboltError::TooDeep { at: node.at });
                }
                let child = self.db.node(child, node.at)?.expect_tree()?;
                self.stack.push(Frame {
                    node: child,
                    next: 0,
                    lower: Some(key),
                    upper: child_upper,
                });
                continue;
            }
            let (flags, key, value) = node.leaf_element(index)?;
            let ordered = self.last_key.is_none_or(|last| key > last)
                && lower.is_none_or(|l| key >= l)
                && upper.is_none_or(|u| key < u);
            if !ordered {
                return Err(BboltError::KeyOrder { at: node.at, index });
            }
            self.last_key = Some(key);
            let value = match flags {
                0 => Value::Data(value),
                ELEMENT_BUCKET => Value::Bucket(self.sub_bucket(node.at, index, value)?),
                _ => return Err(BboltError::BadElement { at: node.at, index }),
            };
            return Ok(Some(Entry { key, value }));
        }
    }

    fn sub_bucket(
        &self,
        at: Location,
        index: usize,
        value: &'a [u8],
    ) -> Result<Bucket<'a>, BboltError> {
        if matches!(at, Location::Inline { .. }) {
            return Err(BboltError::InlineSubBucket { at });
        }
        if value.len() < BUCKET_HEADER_BYTES {
            return Err(BboltError::BadElement { at, index });
        }
        let root_id = u64_at(value, 0);
        let sequence = u64_at(value, 8);
        let root = if root_id == 0 {
            Root::Inline(&value[BUCKET_HEADER_BYTES..])
        } else {
            Root::Page(root_id)
        };
        Ok(Bucket {
            db: self.db,
            root,
            sequence,
            at,
        })
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, BboltError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
