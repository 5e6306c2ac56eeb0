//! Watch history queries: the events of a span of revisions, for a watcher catching up.
//!
//! A single-key span reads the key's own history (`KeyHistory`), so it costs O(log + that key's
//! revisions in the span) however busy the rest of the store was; any other span walks the
//! revision-ordered records from `from`, so it costs O(log + records visited). Either way a
//! query stops at `to` and after `revisions_max` matching revisions: a caught-up watcher reads
//! each retained record at most once (the cost of catching up is linear in the history behind
//! it, never a rescan to the end of history per step).
//!
//! Invariant: the events returned are exactly those `records` holds for the span in
//!   `from..next`, in revision order, with every change of one revision together.

use super::{KeySpan, KvError, Revision, Store};
use crate::proto::mvccpb::Event;

/// What one history query read: the events, and the revision to continue from (the first
/// revision not returned; `to + 1` when everything through `to` was read).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub events: Vec<Event>,
    pub next: i64,
}

#[cfg(test)]
thread_local! {
    /// History entries (records or key-history revisions) visited by queries on this thread:
    /// lets tests check that catching up is linear in the history.
    static VISITED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Entries visited by history queries on the calling thread so far (tests only).
#[cfg(test)]
pub fn history_entries_visited() -> u64 {
    VISITED.with(|v| v.get())
}

fn note_visit() {
    #[cfg(test)]
    VISITED.with(|v| v.set(v.get() + 1));
}

/// How much one query may return: a page closes at a revision boundary once it holds
/// `revisions_max` revisions or `bytes_max` encoded bytes of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    pub revisions_max: usize,
    pub bytes_max: usize,
}

impl PageLimits {
    /// Only a revision count (no byte bound).
    pub fn revisions(revisions_max: usize) -> Self {
        PageLimits {
            revisions_max,
            bytes_max: usize::MAX,
        }
    }
}

/// Collects events revision by revision, stopping at the first revision past the limits.
struct Pager {
    events: Vec<Event>,
    revisions: usize,
    bytes: usize,
    limits: PageLimits,
    last_main: Option<i64>,
}

impl Pager {
    /// Whether an event at `main` still fits; counts a new revision when it does.
    fn admits(&mut self, main: i64) -> bool {
        if self.last_main == Some(main) {
            return true;
        }
        if self.revisions == self.limits.revisions_max
            || (self.revisions > 0 && self.bytes >= self.limits.bytes_max)
        {
            return false;
        }
        self.revisions += 1;
        self.last_main = Some(main);
        true
    }

    fn push(&mut self, event: Event) {
        self.bytes = self
            .bytes
            .saturating_add(prost::Message::encoded_len(&event));
        self.events.push(event);
    }
}

impl Store {
    /// The events at revisions `from..=to` on keys in (`key`, `range_end`) (range rules), in
    /// revision order, closing at a revision boundary at the `limits` (at least one revision
    /// that touched the span is returned if there is one; a revision is never split). Fails with `Compacted` if `from` is below the compaction point
    /// (equal is allowed: watchers resume from the `compact_revision` they were told).
    pub fn events_between(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
        limits: PageLimits,
    ) -> Result<HistoryPage, KvError> {
        if from < self.compact_revision {
            return Err(KvError::Compacted {
                requested: from,
                compact_revision: self.compact_revision,
            });
        }
        let mut pager = Pager {
            events: Vec::new(),
            revisions: 0,
            bytes: 0,
            limits,
            last_main: None,
        };
        if to < from {
            return Ok(HistoryPage {
                events: Vec::new(),
                next: from,
            });
        }
        let end = Revision::end_of(to);
        match KeySpan::new(key, range_end) {
            KeySpan::Nothing => {}
            KeySpan::One(one) => {
                let Some(history) = self.index.get(one) else {
                    return Ok(HistoryPage {
                        events: Vec::new(),
                        next: to + 1,
                    });
                };
                for rev in history.revisions_from(from) {
                    note_visit();
                    if rev > end {
                        break;
                    }
                    let Some(record) = self.record(rev) else {
                        continue;
                    };
                    if self.dropped_by_pending(rev, record) {
                        continue;
                    }
                    if !pager.admits(rev.main) {
                        return Ok(HistoryPage {
                            events: pager.events,
                            next: rev.main,
                        });
                    }
                    pager.push(self.event_for(rev, record));
                }
            }
            span => {
                for (rev, record) in self.records.range(Revision::new(from, 0)..=end) {
                    note_visit();
                    if !span.contains(record.key()) || self.dropped_by_pending(*rev, record) {
                        continue;
                    }
                    if !pager.admits(rev.main) {
                        return Ok(HistoryPage {
                            events: pager.events,
                            next: rev.main,
                        });
                    }
                    pager.push(self.event_for(*rev, record));
                }
            }
        }
        Ok(HistoryPage {
            events: pager.events,
            next: to + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::range_tests::{delete, put};

    fn all() -> PageLimits {
        PageLimits::revisions(usize::MAX)
    }

    fn revs(page: &HistoryPage) -> Vec<i64> {
        page.events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
            .collect()
    }

    /// "k" written at 2, 4 (deleted at 6), 8; "other" at every other revision.
    fn store() -> Store {
        let mut s = Store::new();
        for step in 0..8 {
            match step {
                0 | 2 | 6 => {
                    put(&mut s, "k", "v");
                }
                4 => {
                    delete(&mut s, "k", "");
                }
                _ => {
                    put(&mut s, "other", "o");
                }
            }
        }
        s
    }

    #[test]
    fn single_key_and_range_queries_agree_and_stop_where_told() {
        let s = store();
        let one = s.events_between(b"k", b"", 1, 9, all()).unwrap();
        assert_eq!((revs(&one), one.next), (vec![2, 4, 6, 8], 10));
        let range = s.events_between(b"k", b"l", 1, 9, all()).unwrap();
        assert_eq!(
            range, one,
            "the key index and the records give the same events"
        );
        // Bounded by `to`, by the revision budget, and resumable from `next`.
        let upto = s.events_between(b"k", b"", 3, 6, all()).unwrap();
        assert_eq!((revs(&upto), upto.next), (vec![4, 6], 7));
        let two = s
            .events_between(b"k", b"l", 1, 9, PageLimits::revisions(2))
            .unwrap();
        assert_eq!((revs(&two), two.next), (vec![2, 4], 6));
        let rest = s
            .events_between(b"k", b"l", two.next, 9, PageLimits::revisions(2))
            .unwrap();
        assert_eq!((revs(&rest), rest.next), (vec![6, 8], 10));
        let none = s
            .events_between(b"zz", b"", 1, 9, PageLimits::revisions(5))
            .unwrap();
        assert_eq!((revs(&none), none.next), (vec![], 10));
    }

    #[test]
    fn pages_close_at_a_revision_boundary_past_the_byte_bound() {
        let s = store();
        let one_event = s.events_between(b"k", b"", 2, 2, all()).unwrap();
        let event_bytes = prost::Message::encoded_len(&one_event.events[0]);
        let limits = PageLimits {
            revisions_max: 1000,
            bytes_max: event_bytes + 1,
        };
        let page = s.events_between(b"k", b"", 1, 9, limits).unwrap();
        assert_eq!((revs(&page), page.next), (vec![2, 4], 6));
        // A bound below one event still makes progress.
        let tiny = PageLimits {
            revisions_max: 1000,
            bytes_max: 1,
        };
        let page = s.events_between(b"k", b"", 1, 9, tiny).unwrap();
        assert_eq!((revs(&page), page.next), (vec![2], 4));
    }

    #[test]
    fn a_query_visits_only_its_span() {
        // Bug guarded against: the catch-up query scanned from `from` to the end of history
        // and filtered afterwards, so a watcher behind N revisions cost O(N²/window).
        let mut s = Store::new();
        for _ in 0..10_000 {
            put(&mut s, "other", "o");
        }
        let before = history_entries_visited();
        let page = s
            .events_between(b"a", b"b", 100, 1099, PageLimits::revisions(1000))
            .unwrap();
        assert_eq!((page.events.len(), page.next), (0, 1100));
        let visited = history_entries_visited() - before;
        assert!(
            visited <= 1000,
            "visited {visited} records for a 1000-revision span"
        );
    }
}
