//! Linearizability of a KV history by revision-order replay.
//!
//! etcd gives every write request exactly one revision and every answer a header revision, so
//! a history orders itself: replay the writes in revision order through a sequential model and
//! check each answer against the model state at its revision. Four passes:
//!
//! 1. **Revisions**: no two acknowledged writes share a revision.
//! 2. **Real time**: if A completed before B was invoked then `rev(A) <= rev(B)`, and
//!    `rev(A) < rev(B)` when B wrote.
//! 3. **Observed values**: every value a read returned was written by an operation that was
//!    not definitely failed, on the same key, at the `mod_revision` the read reported. A write
//!    with an unknown outcome that was observed is pinned to that revision.
//! 4. **Replay**: revisions `initial+1 ..= max` are walked in order. A revision no acknowledged
//!    write owns (a *hole*) must be filled by a write of unknown outcome; which one is decided
//!    by a bounded depth-first search (WGL-style: try each candidate, backtrack on the first
//!    contradiction, memoise failed (revision, used set, state) points). Unknown writes are
//!    never assumed failed: they may fill a hole or have had no effect.
//!
//! A watcher's events, when given ([`check_with_changes`]), narrow the search: a hole at a
//! revision the watcher saw change can only be filled by a write of the key it saw, of the
//! kind it saw (the put of that very value, or a deletion). Without them a hole may be filled
//! by any unknown write that contradicts no answer, so a deletion no client read (a lease
//! expiring early, or deleting a key it no longer held) could pass for some other write.
//!
//! Two reductions keep the search small where many unknown writes could fill a run of unwatched
//! holes (the tail after a watch ended, with the final reads as the only constraint):
//! - **Lookahead** ([`Search::feasible`]): before descending, each key's next observation is
//!   checked against the model. An observation at revision `r` of a value last modified at
//!   `m` freezes the key over `m..=r`, so the model must already hold it; an observation of
//!   the key absent at `r` while the model holds it needs a deleting unknown write in a hole
//!   before `r` (unless an acknowledged delete lies between), and those needs must fit the
//!   holes left, earliest deadline first. Both are necessary conditions, so no linearization
//!   is cut off.
//! - **Interchangeable writes** ([`Search::class_of`]): two unknown writes of the same kind
//!   and key whose values nothing can tell apart (no read, watcher or compare saw them) lead
//!   to the same futures once both may take place, so a hole tries one of them only.
//!
//! A search that runs out of budget is reported as a violation (an unproven history is not a
//! passing one).
//!
//! Invariant: the checker never trusts server-side state; it sees only the client history.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::history::{History, Op, Outcome, Record, Seen};

/// Search steps allowed before giving up on the ambiguous remainder.
pub const SEARCH_STEPS_MAX: u64 = 20_000_000;

/// Why a history is not linearizable (or could not be shown to be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    DuplicateRevision {
        revision: i64,
        first: usize,
        second: usize,
    },
    RealTime {
        earlier: usize,
        later: usize,
        detail: String,
    },
    UnknownValue {
        record: usize,
        value: String,
    },
    WrongObservation {
        record: usize,
        detail: String,
    },
    /// No order of the unknown writes explains the acknowledged answers.
    NoLinearization {
        revision: i64,
        detail: String,
    },
    SearchBudget {
        steps: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::DuplicateRevision {
                revision,
                first,
                second,
            } => {
                write!(f, "duplicated revision {revision}: records #{first} and #{second} both wrote at it")
            }
            Violation::RealTime {
                earlier,
                later,
                detail,
            } => {
                write!(f, "real-time order broken: #{earlier} completed before #{later} began, but {detail}")
            }
            Violation::UnknownValue { record, value } => {
                write!(
                    f,
                    "record #{record} observed value {value:?} that no possible write produced"
                )
            }
            Violation::WrongObservation { record, detail } => {
                write!(f, "record #{record}: {detail}")
            }
            Violation::NoLinearization { revision, detail } => {
                write!(
                    f,
                    "no linearization (deepest contradiction at revision {revision}): {detail}"
                )
            }
            Violation::SearchBudget { steps } => {
                write!(
                    f,
                    "checker gave up after {steps} search steps (counts as a failure)"
                )
            }
        }
    }
}

impl std::error::Error for Violation {}

/// What a passing check saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub max_revision: i64,
    pub acked_writes: usize,
    pub unknown_writes: usize,
    /// Unknown writes that the replay placed in the history.
    pub unknown_applied: usize,
    /// Of those, lease expiries ([`Op::Expire`]) that deleted their key.
    pub expiries_applied: usize,
    pub search_steps: u64,
}

/// The model store at one revision: every live key with the lease it is attached to (0 for
/// none), and the leases whose expiry the replay has placed (no put can attach to them after).
#[derive(Clone, Debug, Default, Hash)]
struct State {
    keys: BTreeMap<String, (Seen, i64)>,
    expired: BTreeSet<i64>,
}

impl State {
    fn get(&self, key: &str) -> Option<&Seen> {
        self.keys.get(key).map(|(seen, _)| seen)
    }

    fn put(&mut self, key: &str, value: &str, rev: i64, lease: i64) {
        let seen = Seen {
            value: value.to_string(),
            mod_revision: rev,
        };
        self.keys.insert(key.to_string(), (seen, lease));
    }
}

/// What a watcher saw change at one revision: the key, and the value put (`None`: deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub value: Option<String>,
}

impl Change {
    /// Whether `op`, applied, makes this change.
    fn made_by(&self, op: &Op) -> bool {
        op.key() == self.key
            && match &self.value {
                Some(v) => op.written_value() == Some(v.as_str()),
                None => matches!(op, Op::Delete { .. } | Op::Expire { .. }),
            }
    }
}

/// Checks `history` against a store that started empty at `initial_revision` (1 for etcd).
pub fn check(history: &History, initial_revision: i64) -> Result<Summary, Violation> {
    check_with_changes(history, initial_revision, &BTreeMap::new())
}

/// [`check`], with what a watcher saw change at each revision it delivered (see the module
/// header; [`crate::watchcheck::changes`] collects them).
pub fn check_with_changes(
    history: &History,
    initial_revision: i64,
    changes: &BTreeMap<i64, Change>,
) -> Result<Summary, Violation> {
    let recs = &history.records;
    let writes_at = acked_write_revisions(recs)?;
    check_real_time(recs)?;
    let pinned = pin_observed_values(recs, &writes_at)?;
    let max_revision = max_revision(recs, initial_revision);
    let mut reads_at: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, r) in recs.iter().enumerate() {
        if let Some((rev, false)) = r.effect() {
            reads_at.entry(rev).or_default().push(i);
        }
    }
    let unknown: Vec<usize> = (0..recs.len())
        .filter(|&i| recs[i].unknown_write())
        .collect();
    let holes: Vec<i64> = (initial_revision + 1..=max_revision)
        .filter(|rev| !writes_at.contains_key(rev) && !pinned.contains_key(rev))
        .collect();
    let mut search = Search {
        recs,
        writes_at: &writes_at,
        pinned: &pinned,
        reads_at: &reads_at,
        unknown: &unknown,
        lower_bounds: unknown.iter().map(|&i| lower_bound(recs, i)).collect(),
        classes: write_classes(recs, &unknown, changes),
        seen_at: key_observations(recs),
        acked_deletes: acked_deletes(recs),
        holes,
        changes,
        max_revision,
        steps: 0,
        failed: HashSet::new(),
        deepest: (initial_revision, String::from("no revision replayed")),
    };
    let mut used = vec![false; unknown.len()];
    for &idx in pinned.values() {
        if let Some(pos) = unknown.iter().position(|&u| u == idx) {
            used[pos] = true;
        }
    }
    let state = State::default();
    if let Err(detail) = search.check_reads(initial_revision, &state) {
        return Err(Violation::NoLinearization {
            revision: initial_revision,
            detail,
        });
    }
    match search.walk(initial_revision + 1, state, &mut used) {
        Walk::Found(applied, expiries_applied) => Ok(Summary {
            max_revision,
            acked_writes: writes_at.len(),
            unknown_writes: unknown.len(),
            unknown_applied: applied,
            expiries_applied,
            search_steps: search.steps,
        }),
        Walk::Dead => Err(Violation::NoLinearization {
            revision: search.deepest.0,
            detail: search.deepest.1,
        }),
        Walk::Budget => Err(Violation::SearchBudget {
            steps: search.steps,
        }),
    }
}

fn acked_write_revisions(recs: &[Record]) -> Result<BTreeMap<i64, usize>, Violation> {
    let mut at: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, r) in recs.iter().enumerate() {
        if let Some((rev, true)) = r.effect() {
            if let Some(&first) = at.get(&rev) {
                return Err(Violation::DuplicateRevision {
                    revision: rev,
                    first,
                    second: i,
                });
            }
            at.insert(rev, i);
        }
    }
    Ok(at)
}

fn check_real_time(recs: &[Record]) -> Result<(), Violation> {
    // Known operations sorted by completion; prefix maximum of their revisions.
    let mut done: Vec<(u64, i64, usize)> = recs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.effect().map(|(rev, _)| (r.complete_ns, rev, i)))
        .collect();
    done.sort_unstable();
    let mut prefix: Vec<(i64, usize)> = Vec::with_capacity(done.len());
    for &(_, rev, i) in &done {
        let best = match prefix.last() {
            Some(&(m, j)) if m >= rev => (m, j),
            _ => (rev, i),
        };
        prefix.push(best);
    }
    for (later, r) in recs.iter().enumerate() {
        let Some((rev, wrote)) = r.effect() else {
            continue;
        };
        let before = done.partition_point(|&(c, _, _)| c < r.invoke_ns);
        if before == 0 {
            continue;
        }
        let (max_rev, earlier) = prefix[before - 1];
        if max_rev > rev || (wrote && max_rev == rev && earlier != later) {
            let detail =
                format!("#{earlier} is at revision {max_rev} and #{later} at revision {rev}");
            return Err(Violation::RealTime {
                earlier,
                later,
                detail,
            });
        }
    }
    Ok(())
}

/// The smallest revision an unknown write invoked by `recs[i]` may take (exclusive bound).
fn lower_bound(recs: &[Record], i: usize) -> i64 {
    let invoke = recs[i].invoke_ns;
    recs.iter()
        .filter(|r| r.complete_ns < invoke)
        .filter_map(|r| r.effect().map(|(rev, _)| rev))
        .max()
        .unwrap_or(i64::MIN)
}

/// What a key was at a revision, per key and in revision order: the store after revision `.0`
/// held `.1` (`None`: absent). Collected from every acknowledged answer that reports the key.
type KeyObservations = HashMap<String, Vec<(i64, Option<Seen>)>>;

fn key_observations(recs: &[Record]) -> KeyObservations {
    let mut out: KeyObservations = HashMap::new();
    for r in recs {
        let seen = match &r.outcome {
            Outcome::Got { revision, kv } => Some((*revision, kv.clone())),
            Outcome::Put { revision, prev } => Some((revision - 1, prev.clone())),
            Outcome::Deleted {
                revision,
                deleted: 0,
            } => Some((*revision, None)),
            Outcome::Cas {
                revision,
                succeeded: false,
                current,
            } => Some((*revision, current.clone())),
            _ => None,
        };
        if let Some(obs) = seen {
            out.entry(r.op.key().to_string()).or_default().push(obs);
        }
    }
    for list in out.values_mut() {
        list.sort_by_key(|(rev, _)| *rev);
    }
    out
}

/// The revisions of acknowledged deletions, per key, in order.
fn acked_deletes(recs: &[Record]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for r in recs {
        if let (Op::Delete { key }, Some((rev, true))) = (&r.op, r.effect()) {
            out.entry(key.clone()).or_default().push(rev);
        }
    }
    for list in out.values_mut() {
        list.sort_unstable();
    }
    out
}

/// For each unknown write (by position in `unknown`), the position of the first unknown write
/// it is interchangeable with (itself if none): same kind, same key, same compared value, and
/// a written value nothing can observe apart from the other's (not read, which would have
/// pinned it; not watched; not expected by any compare). Lease puts and expiries carry their
/// lease and are never interchangeable.
fn write_classes(
    recs: &[Record],
    unknown: &[usize],
    changes: &BTreeMap<i64, Change>,
) -> Vec<usize> {
    let mut telling: HashSet<&str> = changes
        .values()
        .filter_map(|c| c.value.as_deref())
        .collect();
    for r in recs {
        if let Op::Cas { expected, .. } = &r.op {
            telling.insert(expected);
        }
    }
    let mut first_of: HashMap<(u8, &str, &str), usize> = HashMap::new();
    unknown
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let class = match &recs[i].op {
                Op::Put { key, value } if !telling.contains(value.as_str()) => {
                    Some((0, key.as_str(), ""))
                }
                Op::Delete { key } => Some((1, key.as_str(), "")),
                Op::Cas {
                    key,
                    expected,
                    value,
                } if !telling.contains(value.as_str()) => {
                    Some((2, key.as_str(), expected.as_str()))
                }
                _ => None,
            };
            class.map_or(pos, |c| *first_of.entry(c).or_insert(pos))
        })
        .collect()
}

fn observations(r: &Record) -> Vec<&Seen> {
    match &r.outcome {
        Outcome::Got { kv: Some(s), .. } | Outcome::Put { prev: Some(s), .. } => vec![s],
        Outcome::Cas {
            current: Some(s), ..
        } => vec![s],
        _ => Vec::new(),
    }
}

/// Pass 3: maps each revision an unknown write was observed at to that write.
fn pin_observed_values(
    recs: &[Record],
    writes_at: &BTreeMap<i64, usize>,
) -> Result<BTreeMap<i64, usize>, Violation> {
    let mut writer: HashMap<&str, usize> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        if let Some(v) = r.op.written_value() {
            debug_assert!(!writer.contains_key(v), "workload must write unique values");
            writer.insert(v, i);
        }
    }
    let mut pinned: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, r) in recs.iter().enumerate() {
        for seen in observations(r) {
            let Some(&w) = writer.get(seen.value.as_str()) else {
                return Err(Violation::UnknownValue {
                    record: i,
                    value: seen.value.clone(),
                });
            };
            let wr = &recs[w];
            let bad = |detail: String| Err(Violation::WrongObservation { record: i, detail });
            if wr.op.key() != r.op.key() {
                return bad(format!(
                    "saw {:?} under key {:?}, written to {:?} by #{w}",
                    seen.value,
                    r.op.key(),
                    wr.op.key()
                ));
            }
            match wr.outcome {
                Outcome::Failed => {
                    return bad(format!(
                        "saw {:?} of #{w}, which definitely failed",
                        seen.value
                    ))
                }
                Outcome::Unknown => {}
                _ => match wr.effect() {
                    Some((rev, true)) if rev == seen.mod_revision => continue,
                    Some((rev, true)) => {
                        return bad(format!(
                            "saw {:?} at mod_revision {}, but #{w} wrote it at {rev}",
                            seen.value, seen.mod_revision
                        ))
                    }
                    _ => {
                        return bad(format!(
                            "saw {:?} of #{w}, which reported that it did not write",
                            seen.value
                        ))
                    }
                },
            }
            if let Some(&owner) = writes_at.get(&seen.mod_revision) {
                return bad(format!(
                    "saw {:?} at mod_revision {}, which #{owner} owns",
                    seen.value, seen.mod_revision
                ));
            }
            match pinned.insert(seen.mod_revision, w) {
                Some(other) if other != w => {
                    return bad(format!(
                        "revision {} observed as both #{other} and #{w}",
                        seen.mod_revision
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(pinned)
}

fn max_revision(recs: &[Record], initial: i64) -> i64 {
    let mut max = initial;
    for r in recs {
        if let Some((rev, _)) = r.effect() {
            max = max.max(rev);
        }
        for seen in observations(r) {
            max = max.max(seen.mod_revision);
        }
    }
    max
}

enum Walk {
    /// Unknown writes placed, and how many of them are lease expiries.
    Found(usize, usize),
    Dead,
    Budget,
}

struct Search<'a> {
    recs: &'a [Record],
    writes_at: &'a BTreeMap<i64, usize>,
    pinned: &'a BTreeMap<i64, usize>,
    reads_at: &'a BTreeMap<i64, Vec<usize>>,
    unknown: &'a [usize],
    lower_bounds: Vec<i64>,
    /// Per unknown write, the first write it is interchangeable with ([`write_classes`]).
    classes: Vec<usize>,
    seen_at: KeyObservations,
    acked_deletes: HashMap<String, Vec<i64>>,
    /// Revisions no acknowledged or observed write owns, in order.
    holes: Vec<i64>,
    changes: &'a BTreeMap<i64, Change>,
    max_revision: i64,
    steps: u64,
    failed: HashSet<(i64, u64)>,
    deepest: (i64, String),
}

impl Search<'_> {
    /// Replays from revision `rev` with `state` = the store at `rev - 1`.
    fn walk(&mut self, mut rev: i64, mut state: State, used: &mut [bool]) -> Walk {
        while rev <= self.max_revision {
            self.steps += 1;
            if self.steps > SEARCH_STEPS_MAX {
                return Walk::Budget;
            }
            let owner = self
                .writes_at
                .get(&rev)
                .or_else(|| self.pinned.get(&rev))
                .copied();
            if let Some(i) = owner {
                if let Some(pos) = self.unknown.iter().position(|&u| u == i) {
                    if self.lower_bounds[pos] >= rev {
                        let detail =
                            format!("#{i} was observed at revision {rev}, before it was invoked");
                        return self.dead(rev, detail);
                    }
                }
                if let Err(detail) = self.apply(i, rev, &mut state) {
                    return self.dead(rev, detail);
                }
                if let Err(detail) = self.check_reads(rev, &state) {
                    return self.dead(rev, detail);
                }
                rev += 1;
                continue;
            }
            return self.fill_hole(rev, state, used);
        }
        let placed = || (0..used.len()).filter(|&pos| used[pos]);
        let expiries = placed()
            .filter(|&pos| matches!(self.recs[self.unknown[pos]].op, Op::Expire { .. }))
            .count();
        Walk::Found(placed().count(), expiries)
    }

    fn fill_hole(&mut self, rev: i64, state: State, used: &mut [bool]) -> Walk {
        let key = (rev, fingerprint(&state, used));
        if self.failed.contains(&key) {
            return Walk::Dead;
        }
        let mut any = false;
        let seen = self.changes.get(&rev);
        let mut tried: HashSet<usize> = HashSet::new();
        for pos in 0..self.unknown.len() {
            if used[pos] || self.lower_bounds[pos] >= rev {
                continue;
            }
            if seen.is_some_and(|c| !c.made_by(&self.recs[self.unknown[pos]].op)) {
                continue;
            }
            if !tried.insert(self.classes[pos]) {
                continue;
            }
            let mut next = state.clone();
            if self.apply(self.unknown[pos], rev, &mut next).is_err()
                || self.check_reads(rev, &next).is_err()
            {
                continue;
            }
            if let Err(detail) = self.feasible(rev + 1, &next) {
                any = true;
                self.dead(rev, detail);
                continue;
            }
            any = true;
            used[pos] = true;
            match self.walk(rev + 1, next, used) {
                Walk::Dead => used[pos] = false,
                done => return done,
            }
        }
        self.failed.insert(key);
        if !any {
            let watched = seen.map_or(String::new(), |c| format!(" (a watcher saw {c:?})"));
            return self.dead(
                rev,
                format!("revision {rev} was produced{watched}, but no unknown write can have produced it"),
            );
        }
        Walk::Dead
    }

    /// Whether the store `state` after revision `from - 1` can still meet every later
    /// observation (the lookahead of the module header). An error only when no placement of
    /// the remaining unknown writes can.
    fn feasible(&self, from: i64, state: &State) -> Result<(), String> {
        let now = from - 1;
        let mut deadlines: Vec<i64> = Vec::new();
        for (key, list) in &self.seen_at {
            let next = list.partition_point(|(rev, _)| *rev < now);
            let Some((at, seen)) = list.get(next) else {
                continue;
            };
            let held = state.get(key);
            match seen {
                Some(s) if s.mod_revision <= now => {
                    if held != Some(s) {
                        return Err(format!(
                            "{key:?} was {s:?} from {} to {at}, but the store held {held:?} at {now}",
                            s.mod_revision
                        ));
                    }
                }
                Some(_) => {}
                None if held.is_none() => {}
                None => {
                    if *at == now {
                        return Err(format!(
                            "{key:?} was absent at {now}, but the store held {held:?}"
                        ));
                    }
                    let acked = self.acked_deletes.get(key).is_some_and(|revs| {
                        let i = revs.partition_point(|r| *r < from);
                        revs.get(i).is_some_and(|r| r <= at)
                    });
                    if !acked {
                        deadlines.push(*at);
                    }
                }
            }
        }
        deadlines.sort_unstable();
        let first = self.holes.partition_point(|h| *h < from);
        for (need, at) in deadlines.iter().enumerate() {
            let holes = self.holes.partition_point(|h| h <= at) - first;
            if holes <= need {
                return Err(format!(
                    "after revision {now}, {} keys must be deleted by unknown writes by revision {at}, but only {holes} revisions are left for them",
                    need + 1
                ));
            }
        }
        Ok(())
    }

    fn dead(&mut self, rev: i64, detail: String) -> Walk {
        if rev >= self.deepest.0 {
            self.deepest = (rev, detail);
        }
        Walk::Dead
    }

    /// Applies the write of record `i` at `rev`, checking what its answer claimed.
    fn apply(&self, i: usize, rev: i64, state: &mut State) -> Result<(), String> {
        let r = &self.recs[i];
        let before = state.get(r.op.key()).cloned();
        let check_prev = |outcome: &Outcome| match outcome {
            Outcome::Put { prev, .. } if *prev != before => Err(format!(
                "#{i} put reported prev {prev:?}, store had {before:?}"
            )),
            _ => Ok(()),
        };
        match &r.op {
            Op::Put { key, value } => {
                check_prev(&r.outcome)?;
                state.put(key, value, rev, 0);
            }
            Op::LeasePut { key, value, lease } => {
                if state.expired.contains(lease) {
                    return Err(format!(
                        "#{i} attached {key:?} to lease {lease:x} at {rev}, after the lease expired"
                    ));
                }
                check_prev(&r.outcome)?;
                state.put(key, value, rev, *lease);
            }
            Op::Delete { key } => {
                if before.is_none() {
                    return Err(format!(
                        "#{i} deleted {key:?} at {rev}, but it did not exist"
                    ));
                }
                state.keys.remove(key);
            }
            Op::Expire { key, lease } => {
                // An expiry deletes exactly the keys attached at that moment; one that finds
                // the key detached (or gone) deletes nothing and takes no revision.
                match state.keys.get(key) {
                    Some((_, attached)) if attached == lease => {}
                    other => {
                        return Err(format!(
                            "lease {lease:x} expiring at {rev} cannot delete {key:?}: the store had {other:?}"
                        ))
                    }
                }
                state.keys.remove(key);
                state.expired.insert(*lease);
            }
            Op::Cas {
                key,
                expected,
                value,
            } => {
                if before.as_ref().map(|s| &s.value) != Some(expected) {
                    return Err(format!(
                        "#{i} cas succeeded at {rev}, but {key:?} was {before:?}, not {expected:?}"
                    ));
                }
                state.put(key, value, rev, 0);
            }
            Op::Get { .. } => return Err(format!("#{i} is a read but owns revision {rev}")),
        }
        Ok(())
    }

    /// Checks every read answered at header revision `rev` against `state`.
    fn check_reads(&self, rev: i64, state: &State) -> Result<(), String> {
        let Some(reads) = self.reads_at.get(&rev) else {
            return Ok(());
        };
        for &i in reads {
            let r = &self.recs[i];
            let now = state.get(r.op.key());
            let ok = match (&r.op, &r.outcome) {
                (_, Outcome::Got { kv, .. }) => kv.as_ref() == now,
                (_, Outcome::Deleted { .. }) => now.is_none(),
                (Op::Cas { expected, .. }, Outcome::Cas { current, .. }) => {
                    now.map(|s| &s.value) != Some(expected) && current.as_ref() == now
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "#{i} {:?} answered {:?} at revision {rev}, but the store held {now:?}",
                    r.op, r.outcome
                ));
            }
        }
        Ok(())
    }
}

fn fingerprint(state: &State, used: &[bool]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state.hash(&mut h);
    used.hash(&mut h);
    h.finish()
}

#[cfg(test)]
#[path = "linear_tests.rs"]
mod tests;
