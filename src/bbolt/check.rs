//! The whole-file consistency check, the conditions bbolt's `Tx.Check` (1.3.7+) enforces: every
//! page reached from the root (through sub-buckets, overflow included) is referenced once, is a
//! branch or leaf, and is not free; freelist ids are in range and unique; with a stored
//! freelist, every page in `[0, pgid)` is reachable or free; keys are in order everywhere.
//!
//! Invariant: memory is one flag pair per page of the file plus stacks bounded by the page
//! count, so a hostile file cannot make the check allocate more than its own size allows.

use super::layout::{PageHeader, COUNT_LIMIT, FLAG_FREELIST, NO_FREELIST, PAGE_HEADER_BYTES};
use super::read::{Bucket, Db, Value};
use super::{BboltError, Location, DEPTH_MAX};
use crate::io::le::u64_at;

/// What a successful check saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub pages_reachable: u64,
    pub pages_free: u64,
    pub buckets: u64,
    pub entries: u64,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum PageState {
    #[default]
    Unseen,
    Reachable,
    Free,
}

/// Checks the whole file; the first fault found is returned.
pub fn check(db: &Db<'_>) -> Result<CheckSummary, BboltError> {
    let pgid = db.meta().pgid;
    // `Db::open` guaranteed pgid * page_bytes <= file length, so this is bounded by the file.
    let mut pages = vec![PageState::Unseen; pgid as usize];
    let mut summary = CheckSummary::default();
    pages[0] = PageState::Reachable;
    pages[1] = PageState::Reachable;
    summary.pages_reachable = 2;
    if db.meta().freelist != NO_FREELIST {
        read_freelist(db, &mut pages, &mut summary)?;
    }
    let mut buckets: Vec<Bucket<'_>> = vec![db.root()];
    while let Some(bucket) = buckets.pop() {
        summary.buckets += 1;
        if let Some(root) = bucket.root_page() {
            mark_tree(db, root, bucket.location(), &mut pages, &mut summary)?;
        }
        for entry in bucket.entries() {
            let entry = entry?;
            summary.entries += 1;
            if let Value::Bucket(sub) = entry.value {
                buckets.push(sub);
            }
        }
    }
    if db.meta().freelist != NO_FREELIST {
        if let Some(id) = pages.iter().position(|p| *p == PageState::Unseen) {
            return Err(BboltError::Unreachable { id: id as u64 });
        }
    }
    Ok(summary)
}

fn read_freelist(
    db: &Db<'_>,
    pages: &mut [PageState],
    summary: &mut CheckSummary,
) -> Result<(), BboltError> {
    let id = db.meta().freelist;
    let (header, bytes) = db.span(id, Location::Page(0))?;
    if header.flags != FLAG_FREELIST {
        return Err(BboltError::BadPageFlags {
            at: Location::Page(id),
            flags: header.flags,
            expected: "freelist",
        });
    }
    mark_span(id, &header, pages, summary)?;
    let (count, first) = if usize::from(header.count) == COUNT_LIMIT {
        if bytes.len() < PAGE_HEADER_BYTES + 8 {
            return Err(BboltError::ElementOutOfBounds {
                at: Location::Page(id),
                index: 0,
            });
        }
        (u64_at(bytes, PAGE_HEADER_BYTES), PAGE_HEADER_BYTES + 8)
    } else {
        (u64::from(header.count), PAGE_HEADER_BYTES)
    };
    let fits = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(first as u64))
        .is_some_and(|end| end <= bytes.len() as u64);
    if !fits {
        return Err(BboltError::ElementOutOfBounds {
            at: Location::Page(id),
            index: count as usize,
        });
    }
    for i in 0..count as usize {
        let free = u64_at(bytes, first + i * 8);
        let state = pages.get_mut(free as usize).filter(|_| free >= 2);
        let Some(state) = state else {
            return Err(BboltError::BadFreelist {
                id: free,
                reason: "out of range",
            });
        };
        match *state {
            PageState::Unseen => *state = PageState::Free,
            PageState::Free => {
                return Err(BboltError::BadFreelist {
                    id: free,
                    reason: "listed twice",
                })
            }
            PageState::Reachable => {
                return Err(BboltError::BadFreelist {
                    id: free,
                    reason: "page is in use",
                })
            }
        }
        summary.pages_free += 1;
    }
    Ok(())
}

/// Marks every page of the tree rooted at `root`; each may be reached once only.
fn mark_tree(
    db: &Db<'_>,
    root: u64,
    from: Location,
    pages: &mut [PageState],
    summary: &mut CheckSummary,
) -> Result<(), BboltError> {
    let mut stack = vec![(root, from, 1usize)];
    while let Some((id, from, depth)) = stack.pop() {
        if depth > DEPTH_MAX {
            return Err(BboltError::TooDeep { at: from });
        }
        let node = db.node(id, from)?.expect_tree()?;
        let (header, _) = db.span(id, from)?;
        mark_span(id, &header, pages, summary)?;
        if node.is_branch() {
            for index in 0..node.count {
                let (_, child) = node.branch_element(index)?;
                stack.push((child, node.at, depth + 1));
            }
        }
    }
    Ok(())
}

fn mark_span(
    id: u64,
    header: &PageHeader,
    pages: &mut [PageState],
    summary: &mut CheckSummary,
) -> Result<(), BboltError> {
    // `Db::span` checked that the span ends at or before pgid.
    for page in id..=id + u64::from(header.overflow) {
        let state = &mut pages[page as usize];
        match *state {
            PageState::Unseen => *state = PageState::Reachable,
            PageState::Reachable => return Err(BboltError::PageReferencedTwice { id: page }),
            PageState::Free => {
                return Err(BboltError::BadFreelist {
                    id: page,
                    reason: "page is in use",
                })
            }
        }
        summary.pages_reachable += 1;
    }
    Ok(())
}
