//! `KeyHistory`: the revisions at which one key was written, grouped into generations.
//!
//! A generation is one lifetime of a key: it starts with the put that created the key and ends
//! with the delete (tombstone) that removed it. The worked example is in the `mvcc` module header.
//!
//! Invariant: every generation has at least one put; its puts are strictly ascending.
//! Invariant: a tombstone is later than every put of its generation; every generation but the
//!            last has a tombstone; generations are in time order and do not overlap.
//! Invariant: `newest` is the last revision of the last generation (its tombstone, else its last
//!            put) and `live` says whether that is a put; both zero/false when there is no
//!            generation. They are kept beside the generations so that a read at or after the
//!            key's last change (most reads: they read at the current revision) answers from the
//!            history itself, without following the generations' two heap pointers.

use std::fmt;

/// A point in the store's history: `main` is the revision of the write request (what clients
/// see), `sub` orders the changes inside that request (0, 1, 2, ... within one txn).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The last change a write with revision `main` can make: reading "at `main`" means reading
    /// everything at or before this point.
    pub const fn end_of(main: i64) -> Self {
        Revision {
            main,
            sub: i64::MAX,
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// One lifetime of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    /// Puts in this lifetime, oldest first (compaction may have dropped the older ones).
    puts: Vec<Revision>,
    /// The delete that ended this lifetime, if it ended.
    tombstone: Option<Revision>,
}

/// Every retained write of one key, oldest generation first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    generations: Vec<Generation>,
    /// The last revision recorded (see the module header's invariants).
    newest: Revision,
    /// Whether `newest` is a put, i.e. the key exists now.
    live: bool,
}

/// What compaction did to one key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// The history that remains; `None` when nothing of the key remains.
    pub remaining: Option<KeyHistory>,
    /// Revisions whose records must be dropped, ascending.
    pub removed: Vec<Revision>,
}

impl KeyHistory {
    /// The revision of the live put, if the key exists now.
    pub fn live(&self) -> Option<Revision> {
        self.live.then_some(self.newest)
    }

    /// A history of these generations (already in the invariants' shape), with its cached tip.
    fn from_generations(generations: Vec<Generation>) -> Self {
        let (newest, live) = tip_of(&generations);
        KeyHistory {
            generations,
            newest,
            live,
        }
    }

    /// The revision of the put visible to a read at `main`, or `None` if the key did not exist
    /// then. Reads below the compaction point are the caller's to refuse.
    pub fn visible_at(&self, main: i64) -> Option<Revision> {
        let bound = Revision::end_of(main);
        if self.newest <= bound {
            return self.live();
        }
        let started = self.generations.partition_point(|g| g.puts[0] <= bound);
        let generation = self.generations.get(started.checked_sub(1)?)?;
        if generation.tombstone.is_some_and(|t| t <= bound) {
            return None;
        }
        let seen = generation.puts.partition_point(|r| *r <= bound);
        debug_assert!(
            seen >= 1,
            "the first put of a started generation is visible"
        );
        generation.puts.get(seen.checked_sub(1)?).copied()
    }

    /// Records a put at `rev`: continues the live generation or starts a new one.
    pub fn record_put(&mut self, rev: Revision) {
        debug_assert!(
            self.last_revision().is_none_or(|last| last < rev),
            "put {rev} out of order"
        );
        match self.generations.last_mut() {
            Some(open) if open.tombstone.is_none() => open.puts.push(rev),
            _ => self.generations.push(Generation {
                puts: vec![rev],
                tombstone: None,
            }),
        }
        self.newest = rev;
        self.live = true;
    }

    /// Records a delete at `rev`. Precondition: the key is live.
    pub fn record_delete(&mut self, rev: Revision) {
        debug_assert!(
            self.last_revision().is_none_or(|last| last < rev),
            "delete {rev} out of order"
        );
        let open = self
            .generations
            .last_mut()
            .filter(|g| g.tombstone.is_none());
        debug_assert!(open.is_some(), "delete {rev} of a key that is not live");
        if let Some(open) = open {
            open.tombstone = Some(rev);
            self.newest = rev;
            self.live = false;
        }
    }

    /// Drops what no read at a revision ≥ `main` can see: whole generations deleted at or before
    /// `main`, and the puts older than the one visible at `main`. Returns `None` if nothing changes.
    pub fn compact(&self, main: i64) -> Option<Compacted> {
        let bound = Revision::end_of(main);
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.generations.len());
        for generation in &self.generations {
            if generation.puts[0] > bound {
                kept.push(generation.clone());
            } else if let Some(tombstone) = generation.tombstone.filter(|t| *t <= bound) {
                removed.extend_from_slice(&generation.puts);
                removed.push(tombstone);
            } else {
                let visible = generation.puts.partition_point(|r| *r <= bound) - 1;
                removed.extend_from_slice(&generation.puts[..visible]);
                kept.push(Generation {
                    puts: generation.puts[visible..].to_vec(),
                    tombstone: generation.tombstone,
                });
            }
        }
        if removed.is_empty() {
            return None;
        }
        let remaining = (!kept.is_empty()).then(|| KeyHistory::from_generations(kept));
        Some(Compacted { remaining, removed })
    }

    /// Every retained revision of this key, ascending.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations
            .iter()
            .flat_map(|g| g.puts.iter().copied().chain(g.tombstone))
    }

    /// The retained revisions of this key at or after main revision `main`, ascending; finding
    /// the first is O(log generations + log puts).
    pub fn revisions_from(&self, main: i64) -> impl Iterator<Item = Revision> + '_ {
        let start = Revision::new(main, 0);
        let first = self.generations.partition_point(|g| {
            let last = g.tombstone.or_else(|| g.puts.last().copied());
            last.is_some_and(|last| last < start)
        });
        self.generations[first..]
            .iter()
            .enumerate()
            .flat_map(move |(i, g)| {
                let skip = if i == 0 {
                    g.puts.partition_point(|r| *r < start)
                } else {
                    0
                };
                g.puts[skip..].iter().copied().chain(g.tombstone)
            })
    }

    pub fn last_revision(&self) -> Option<Revision> {
        (!self.generations.is_empty()).then_some(self.newest)
    }

    /// Checks the invariants in the module header.
    pub fn check(&self) -> Result<(), String> {
        if self.generations.is_empty() {
            return Err("key history without generations".into());
        }
        let mut previous: Option<Revision> = None;
        for (i, generation) in self.generations.iter().enumerate() {
            if generation.puts.is_empty() {
                return Err(format!("generation {i} has no put"));
            }
            if generation.tombstone.is_none() && i + 1 != self.generations.len() {
                return Err(format!("generation {i} is open but not last"));
            }
            for rev in generation.puts.iter().copied().chain(generation.tombstone) {
                if previous.is_some_and(|p| p >= rev) {
                    return Err(format!("revision {rev} not after {previous:?}"));
                }
                previous = Some(rev);
            }
        }
        let (newest, live) = tip_of(&self.generations);
        if (newest, live) != (self.newest, self.live) {
            return Err(format!(
                "cached tip {} (live {}) is not the last revision {newest} (live {live})",
                self.newest, self.live
            ));
        }
        Ok(())
    }
}

/// The last revision of the last generation and whether it is a put; zero and false for none.
fn tip_of(generations: &[Generation]) -> (Revision, bool) {
    match generations.last() {
        None => (Revision::default(), false),
        Some(last) => match last.tombstone {
            Some(tombstone) => (tombstone, false),
            None => (last.puts.last().copied().unwrap_or_default(), true),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// The module-header example: put@2, put@4, delete@6, put@8, put@10.
    fn example() -> KeyHistory {
        let mut history = KeyHistory::default();
        history.record_put(rev(2));
        history.record_put(rev(4));
        history.record_delete(rev(6));
        history.record_put(rev(8));
        history.record_put(rev(10));
        history.check().unwrap();
        history
    }

    #[test]
    fn visible_at_follows_generations() {
        let history = example();
        let table = [
            (1, None),
            (2, Some(2)),
            (3, Some(2)),
            (4, Some(4)),
            (5, Some(4)),
            (6, None),
        ];
        let table2 = [
            (7, None),
            (8, Some(8)),
            (9, Some(8)),
            (10, Some(10)),
            (99, Some(10)),
        ];
        for (at, want) in table.into_iter().chain(table2) {
            assert_eq!(history.visible_at(at), want.map(rev), "read at {at}");
        }
        assert_eq!(history.live(), Some(rev(10)));
    }

    #[test]
    fn revisions_from_starts_at_the_first_revision_not_before() {
        let history = example(); // puts 2, 4, tombstone 6, puts 8, 10
        let from = |main| {
            history
                .revisions_from(main)
                .map(|r| r.main)
                .collect::<Vec<_>>()
        };
        assert_eq!(from(0), vec![2, 4, 6, 8, 10]);
        assert_eq!(from(3), vec![4, 6, 8, 10]);
        assert_eq!(from(6), vec![6, 8, 10]);
        assert_eq!(from(7), vec![8, 10]);
        assert_eq!(from(11), Vec::<i64>::new());
    }

    #[test]
    fn sub_revisions_order_changes_inside_one_write() {
        // One txn deletes the key (sub 0) and creates it again (sub 1) at revision 5.
        let mut history = KeyHistory::default();
        history.record_put(rev(3));
        history.record_delete(Revision::new(5, 0));
        history.record_put(Revision::new(5, 1));
        history.check().unwrap();
        assert_eq!(history.visible_at(4), Some(rev(3)));
        assert_eq!(history.visible_at(5), Some(Revision::new(5, 1)));
    }

    /// Compaction of the example at every revision: what remains and what is dropped.
    #[test]
    fn compaction_table() {
        struct Case {
            at: i64,
            remaining: &'static [i64],
            removed: &'static [i64],
        }
        let cases = [
            Case {
                at: 1,
                remaining: &[2, 4, 6, 8, 10],
                removed: &[],
            },
            Case {
                at: 2,
                remaining: &[2, 4, 6, 8, 10],
                removed: &[],
            },
            Case {
                at: 3,
                remaining: &[2, 4, 6, 8, 10],
                removed: &[],
            },
            Case {
                at: 4,
                remaining: &[4, 6, 8, 10],
                removed: &[2],
            },
            Case {
                at: 5,
                remaining: &[4, 6, 8, 10],
                removed: &[2],
            },
            Case {
                at: 6,
                remaining: &[8, 10],
                removed: &[2, 4, 6],
            },
            Case {
                at: 7,
                remaining: &[8, 10],
                removed: &[2, 4, 6],
            },
            Case {
                at: 9,
                remaining: &[8, 10],
                removed: &[2, 4, 6],
            },
            Case {
                at: 10,
                remaining: &[10],
                removed: &[2, 4, 6, 8],
            },
            Case {
                at: 50,
                remaining: &[10],
                removed: &[2, 4, 6, 8],
            },
        ];
        for case in cases {
            let history = example();
            let remaining: Vec<Revision> = case.remaining.iter().copied().map(rev).collect();
            let removed: Vec<Revision> = case.removed.iter().copied().map(rev).collect();
            match history.compact(case.at) {
                None => assert!(removed.is_empty(), "compact at {}", case.at),
                Some(done) => {
                    assert_eq!(done.removed, removed, "compact at {}", case.at);
                    let after = done.remaining.unwrap();
                    after.check().unwrap();
                    assert_eq!(after.revisions().collect::<Vec<_>>(), remaining);
                    for read in case.at..12 {
                        assert_eq!(
                            after.visible_at(read),
                            history.visible_at(read),
                            "read {read}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn compacting_a_deleted_key_removes_it() {
        let mut history = KeyHistory::default();
        history.record_put(rev(2));
        history.record_delete(rev(3));
        assert_eq!(
            history.compact(2),
            None,
            "the put at 2 is still visible at 2"
        );
        let done = history.compact(3).unwrap();
        assert_eq!(done.remaining, None);
        assert_eq!(done.removed, vec![rev(2), rev(3)]);
    }

    #[test]
    fn check_rejects_broken_histories() {
        let open_not_last = KeyHistory::from_generations(vec![
            Generation {
                puts: vec![rev(2)],
                tombstone: None,
            },
            Generation {
                puts: vec![rev(3)],
                tombstone: None,
            },
        ]);
        assert!(open_not_last.check().is_err());
        let unordered = KeyHistory::from_generations(vec![Generation {
            puts: vec![rev(4), rev(3)],
            tombstone: None,
        }]);
        assert!(unordered.check().is_err());
        assert!(KeyHistory::default().check().is_err());
        let mut stale_tip = example();
        stale_tip.newest = rev(8);
        let err = stale_tip.check().unwrap_err();
        assert!(err.contains("cached tip 8.0"), "{err}");
        let mut dead_tip = example();
        dead_tip.live = false;
        assert!(dead_tip.check().is_err());
    }

    /// One step of a key's life in the property test below.
    #[derive(Clone, Debug)]
    enum Step {
        Put,
        Delete,
        /// Compact at this many revisions below the newest.
        Compact(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Put),
            1 => Just(Step::Delete),
            1 => (0i64..6).prop_map(Step::Compact),
        ]
    }

    proptest! {
        /// Whatever the writes and compactions, every read at or above the compaction point
        /// sees what a plain replay of the writes says, through both the cached tip (reads at
        /// or after the last change) and the generations (reads before it).
        #[test]
        fn reads_match_a_replay_of_the_writes(steps in proptest::collection::vec(step(), 1..40)) {
            let mut history = KeyHistory::default();
            // Every write so far: (revision, put?), oldest first.
            let mut writes: Vec<(Revision, bool)> = Vec::new();
            let mut compacted_at = 0i64;
            let mut main = 1i64;
            for step in steps {
                match step {
                    Step::Put => {
                        main += 1;
                        history.record_put(rev(main));
                        writes.push((rev(main), true));
                    }
                    Step::Delete if history.live().is_some() => {
                        main += 1;
                        history.record_delete(rev(main));
                        writes.push((rev(main), false));
                    }
                    Step::Delete => {}
                    Step::Compact(back) => {
                        let at = (main - back).max(compacted_at);
                        if let Some(done) = history.compact(at) {
                            history = done.remaining.unwrap_or_default();
                        }
                        compacted_at = at;
                    }
                }
                if !history.generations.is_empty() {
                    prop_assert_eq!(history.check(), Ok(()));
                }
                for read in compacted_at..=main + 1 {
                    let want = writes
                        .iter()
                        .take_while(|(r, _)| r.main <= read)
                        .last()
                        .and_then(|(r, put)| put.then_some(*r));
                    prop_assert_eq!(history.visible_at(read), want, "read at {}", read);
                }
            }
        }
    }
}
