//! The index rules of the log, shared by the writer (which refuses calls that break them) and by
//! recovery (which refuses data that breaks them), plus the replay of records into the
//! recovered state.
//!
//! Rules, with `last` the last present entry and `purged` the highest purged index:
//! - append `i`: if the log has entries, `i == last + 1`; if it is empty, `i > purged` (any `i`
//!   when nothing was ever purged). An empty log accepts any start because raft may restart it
//!   after a snapshot, and because recovery may begin after deleted segments.
//! - truncate `i` (drop entries `>= i`): `i > purged`, and `i <= last + 1` when non-empty.
//! - purge `i` (drop entries `<= i`): `i >= purged`.
//!
//! Invariant: `first` and `last` are both set or both unset, `first <= last`, and
//! `first > purged` when both are set.
//! Invariant: the replayed entries are exactly `first..=last`, ascending and contiguous.

use std::collections::VecDeque;

use super::error::{CorruptReason, WalError};
use super::format::Record;
use super::LogRecord;

/// The indexes that describe the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBounds {
    first: Option<u64>,
    last: Option<u64>,
    purged_upto: Option<u64>,
}

/// A broken index rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    NotContiguous { expected: u64, found: u64 },
    BelowPurged { index: u64, purged_upto: u64 },
    TruncateBeyondEnd { index: u64, next_index: u64 },
    PurgeBackwards { index: u64, purged_upto: u64 },
}

impl Violation {
    pub fn into_wal_error(self) -> WalError {
        match self {
            Violation::NotContiguous { expected, found } => {
                WalError::NotContiguous { expected, found }
            }
            Violation::BelowPurged { index, purged_upto } => {
                WalError::BelowPurged { index, purged_upto }
            }
            Violation::TruncateBeyondEnd { index, next_index } => {
                WalError::TruncateBeyondEnd { index, next_index }
            }
            Violation::PurgeBackwards { index, purged_upto } => {
                WalError::PurgeBackwards { index, purged_upto }
            }
        }
    }

    pub fn into_corrupt_reason(self) -> CorruptReason {
        match self {
            Violation::NotContiguous { expected, found } => {
                CorruptReason::IndexGap { expected, found }
            }
            Violation::BelowPurged { index, purged_upto } => {
                CorruptReason::EntryBelowPurged { index, purged_upto }
            }
            Violation::TruncateBeyondEnd { index, .. } => CorruptReason::BadTruncate { index },
            Violation::PurgeBackwards { index, purged_upto } => {
                CorruptReason::PurgeBackwards { index, purged_upto }
            }
        }
    }
}

impl LogBounds {
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }

    pub fn purged_upto(&self) -> Option<u64> {
        self.purged_upto
    }

    /// `last + 1` when the log has entries.
    pub fn next_index(&self) -> Option<u64> {
        self.last.map(|last| last.wrapping_add(1))
    }

    pub fn check_append(&self, index: u64) -> Result<(), Violation> {
        match (self.last, self.purged_upto) {
            (Some(last), _) => match last.checked_add(1) {
                Some(expected) if expected == index => Ok(()),
                _ => Err(Violation::NotContiguous {
                    expected: last.wrapping_add(1),
                    found: index,
                }),
            },
            (None, Some(purged_upto)) if index <= purged_upto => {
                Err(Violation::BelowPurged { index, purged_upto })
            }
            (None, _) => Ok(()),
        }
    }

    pub fn append(&mut self, index: u64) {
        debug_assert_eq!(self.check_append(index), Ok(()));
        self.first.get_or_insert(index);
        self.last = Some(index);
        self.validate();
    }

    pub fn check_truncate(&self, index: u64) -> Result<(), Violation> {
        if let Some(purged_upto) = self.purged_upto {
            if index <= purged_upto {
                return Err(Violation::BelowPurged { index, purged_upto });
            }
        }
        match self.last {
            Some(last) if index > last.saturating_add(1) => Err(Violation::TruncateBeyondEnd {
                index,
                next_index: last.saturating_add(1),
            }),
            _ => Ok(()),
        }
    }

    pub fn truncate(&mut self, index: u64) {
        debug_assert_eq!(self.check_truncate(index), Ok(()));
        if let (Some(first), Some(last)) = (self.first, self.last) {
            if index <= first {
                self.first = None;
                self.last = None;
            } else if index <= last {
                self.last = Some(index - 1);
            }
        }
        self.validate();
    }

    pub fn check_purge(&self, index: u64) -> Result<(), Violation> {
        match self.purged_upto {
            Some(purged_upto) if index < purged_upto => {
                Err(Violation::PurgeBackwards { index, purged_upto })
            }
            _ => Ok(()),
        }
    }

    pub fn purge(&mut self, index: u64) {
        debug_assert_eq!(self.check_purge(index), Ok(()));
        self.purged_upto = Some(index);
        if let (Some(first), Some(last)) = (self.first, self.last) {
            if index >= last {
                self.first = None;
                self.last = None;
            } else if index >= first {
                self.first = Some(index + 1);
            }
        }
        self.validate();
    }

    fn validate(&self) {
        debug_assert_eq!(self.first.is_some(), self.last.is_some());
        if let (Some(first), Some(last)) = (self.first, self.last) {
            debug_assert!(first <= last);
            if let Some(purged) = self.purged_upto {
                debug_assert!(first > purged);
            }
        }
    }
}

/// The state rebuilt by replaying records in log order.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    pub bounds: LogBounds,
    pub entries: VecDeque<LogRecord>,
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged_marker: Option<Vec<u8>>,
}

impl Replay {
    /// Applies one record; breaking an index rule is corruption.
    pub fn apply(&mut self, record: &Record<'_>) -> Result<(), CorruptReason> {
        match *record {
            Record::Entry {
                index,
                term,
                payload,
            } => {
                let bounds = &mut self.bounds;
                bounds
                    .check_append(index)
                    .map_err(Violation::into_corrupt_reason)?;
                bounds.append(index);
                self.entries.push_back(LogRecord {
                    index,
                    term,
                    payload: payload.to_vec(),
                });
            }
            Record::Vote(vote) => self.vote = Some(vote.to_vec()),
            Record::Committed(committed) => self.committed = Some(committed.to_vec()),
            Record::Truncate { index } => {
                let bounds = &mut self.bounds;
                bounds
                    .check_truncate(index)
                    .map_err(Violation::into_corrupt_reason)?;
                bounds.truncate(index);
                while self.entries.back().is_some_and(|e| e.index >= index) {
                    self.entries.pop_back();
                }
            }
            Record::Purge { index, marker } => {
                let bounds = &mut self.bounds;
                bounds
                    .check_purge(index)
                    .map_err(Violation::into_corrupt_reason)?;
                bounds.purge(index);
                while self.entries.front().is_some_and(|e| e.index <= index) {
                    self.entries.pop_front();
                }
                self.purged_marker = Some(marker.to_vec());
            }
        }
        debug_assert_eq!(self.entries.front().map(|e| e.index), self.bounds.first());
        debug_assert_eq!(self.entries.back().map(|e| e.index), self.bounds.last());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_rules() {
        let mut b = LogBounds::default();
        assert_eq!(b.check_append(7), Ok(()));
        b.append(7);
        assert_eq!(
            b.check_append(9),
            Err(Violation::NotContiguous {
                expected: 8,
                found: 9
            })
        );
        assert!(b.check_append(7).is_err());
        b.append(8);
        assert_eq!((b.first(), b.last()), (Some(7), Some(8)));
    }

    #[test]
    fn truncate_and_purge_rules() {
        let mut b = LogBounds::default();
        for i in 5..=10 {
            b.append(i);
        }
        assert!(b.check_truncate(12).is_err());
        assert_eq!(b.check_truncate(11), Ok(()));
        b.truncate(8);
        assert_eq!(b.last(), Some(7));
        b.purge(5);
        assert_eq!(b.first(), Some(6));
        assert!(b.check_truncate(5).is_err());
        assert!(b.check_purge(4).is_err());
        b.purge(100);
        assert_eq!((b.first(), b.last()), (None, None));
        assert!(b.check_append(100).is_err());
        assert_eq!(b.check_append(101), Ok(()));
    }

    #[test]
    fn append_after_the_largest_index_is_refused_not_wrapped() {
        let mut b = LogBounds::default();
        b.append(u64::MAX);
        assert!(b.check_append(0).is_err());
        assert!(b.check_append(u64::MAX).is_err());
    }

    #[test]
    fn replay_keeps_entries_in_step_with_bounds() {
        let mut r = Replay::default();
        for i in 1..=5 {
            r.apply(&Record::Entry {
                index: i,
                term: 1,
                payload: b"p",
            })
            .unwrap();
        }
        r.apply(&Record::Truncate { index: 4 }).unwrap();
        r.apply(&Record::Purge {
            index: 1,
            marker: b"m",
        })
        .unwrap();
        let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![2, 3]);
        assert_eq!(r.purged_marker.as_deref(), Some(&b"m"[..]));
        assert_eq!(
            r.apply(&Record::Entry {
                index: 9,
                term: 1,
                payload: b""
            }),
            Err(CorruptReason::IndexGap {
                expected: 4,
                found: 9
            })
        );
    }
}
