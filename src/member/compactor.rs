//! Auto compaction (`--auto-compaction-mode` / `--auto-compaction-retention`): etcd 3.5's two
//! compactors, as pure schedules (`PeriodicSchedule`, `RevisionSchedule`) plus the leader's loop
//! (`run`) that drives them.
//!
//! Periodic mode keeps `retention` of history. Every tick (one tenth of the retention, capped
//! at one hour before dividing, so at most every 6 minutes) the loop samples the current
//! revision. The first compaction comes once a whole retention has passed since the clock
//! started, the next ones every `min(retention, 1 h)` after the last success; each compacts to
//! the newest sample taken at least one retention ago. Revision mode checks every 5 minutes and
//! compacts to `current revision - retention` when that is positive and not the revision it
//! compacted to last.
//!
//! Only the leader compacts, by proposing the same `Command::Compact` a client's Compact
//! proposes, so every member compacts at the same log position. A member that becomes leader
//! (or leads in a new term) restarts the clock: its first compaction is a full wait away.
//! "already compacted" counts as success, as in etcd.
//!
//! Invariant: a schedule never returns a revision newer than what the retention allows: in
//! periodic mode a sample taken at least `retention` ago, in revision mode `current - retention`.
//! Invariant: memory is bounded: at most `SAMPLES_MAX` samples, however long the retention.
//! Invariant: time comes from `tokio::time` (madsim's clock in the simulator); the schedules
//! take milliseconds as arguments and read no clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{Command, Envelope, RequestHeader};
use crate::config::{format_duration, AutoCompaction, GoDuration};
use crate::mvcc::KvError;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::raft::node::RaftNode;

/// etcd divides the (capped) retention by this to get the sampling interval.
const PERIODIC_TICKS_PER_INTERVAL: u64 = 10;
/// Periodic compaction runs at least this often once started (etcd: one hour).
const PERIODIC_INTERVAL_CAP_MS: u64 = 3_600_000;
/// Ticks are never shorter than this, whatever the retention.
const PERIODIC_TICK_MS_MIN: u64 = 1;
/// Revision samples kept at most; beyond it every other sample is dropped (the oldest kept).
const SAMPLES_MAX: usize = 4096;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// etcd's periodic compactor as a pure state machine over millisecond timestamps.
#[derive(Debug, Clone)]
pub struct PeriodicSchedule {
    retention_ms: u64,
    tick_ms: u64,
    /// Wait between compactions once the first one succeeded.
    interval_ms: u64,
    /// `(taken at, revision)`, oldest first, times strictly increasing.
    samples: VecDeque<(u64, i64)>,
    /// When the clock (re)started or the last compaction succeeded.
    since_ms: u64,
    /// How long after `since_ms` the next compaction is due.
    wait_ms: u64,
}

impl PeriodicSchedule {
    /// A schedule keeping `retention` of history, its clock started at `now_ms`.
    pub fn new(retention: Duration, now_ms: u64) -> Self {
        let retention_ms = ms(retention).max(PERIODIC_TICK_MS_MIN);
        let interval_ms = retention_ms.min(PERIODIC_INTERVAL_CAP_MS);
        PeriodicSchedule {
            retention_ms,
            tick_ms: (interval_ms / PERIODIC_TICKS_PER_INTERVAL).max(PERIODIC_TICK_MS_MIN),
            interval_ms,
            samples: VecDeque::new(),
            since_ms: now_ms,
            wait_ms: retention_ms,
        }
    }

    /// How often the driver samples and asks `due`.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Records the current revision, dropping samples no compaction will need again.
    pub fn sample(&mut self, now_ms: u64, revision: i64) {
        if self.samples.back().is_some_and(|(t, _)| *t >= now_ms) {
            self.samples.pop_back();
        }
        self.samples.push_back((now_ms, revision));
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        // Keep the newest sample at or before the cutoff: it is the next compaction target.
        while self.samples.len() >= 2 && self.samples[1].0 <= cutoff {
            self.samples.pop_front();
        }
        if self.samples.len() > SAMPLES_MAX {
            let mut i = 1;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        debug_assert!(self.samples.len() <= SAMPLES_MAX);
    }

    /// The revision to compact to now, if a compaction is due.
    pub fn due(&mut self, now_ms: u64) -> Option<i64> {
        if now_ms.saturating_sub(self.since_ms) < self.wait_ms {
            return None;
        }
        let cutoff = now_ms.checked_sub(self.retention_ms)?;
        let target = self
            .samples
            .iter()
            .take_while(|(t, _)| *t <= cutoff)
            .last()
            .map(|(_, rev)| *rev);
        debug_assert!(self
            .samples
            .iter()
            .all(|(t, rev)| *t > cutoff || Some(*rev) <= target));
        target
    }

    /// The compaction `due` returned went through (or was already done).
    pub fn succeeded(&mut self, now_ms: u64) {
        self.since_ms = now_ms;
        self.wait_ms = self.interval_ms;
    }

    /// This member just started leading: wait a whole retention again.
    pub fn restart(&mut self, now_ms: u64) {
        self.since_ms = now_ms;
        self.wait_ms = self.retention_ms;
    }
}

/// etcd's revision compactor: keep `retention` revisions.
#[derive(Debug, Clone)]
pub struct RevisionSchedule {
    retention: i64,
    last: i64,
}

impl RevisionSchedule {
    pub fn new(retention_revisions: u64) -> Self {
        RevisionSchedule {
            retention: i64::try_from(retention_revisions).unwrap_or(i64::MAX),
            last: 0,
        }
    }

    /// The revision to compact to at `current_revision`, if any.
    pub fn due(&self, current_revision: i64) -> Option<i64> {
        let target = current_revision.saturating_sub(self.retention);
        (target > 0 && target != self.last).then_some(target)
    }

    /// A compaction to `revision` went through (or was already done).
    pub fn succeeded(&mut self, revision: i64) {
        self.last = revision;
    }
}

/// Whether this member leads, and whether it did at the previous look in the same term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    Follower,
    /// Leading since an earlier look, same term.
    Continuing,
    /// Leading, but not at the previous look (or in another term): restart the clock.
    Started,
}

struct LeaderWatch {
    term: Option<u64>,
}

impl LeaderWatch {
    /// Starts watching; a member leading already counts as leading since now.
    fn new(node: &RaftNode) -> Self {
        let mut watch = LeaderWatch { term: None };
        watch.look(node);
        watch
    }

    fn look(&mut self, node: &RaftNode) -> Lead {
        if node.current_leader() != Some(node.member_id()) {
            self.term = None;
            return Lead::Follower;
        }
        let term = node.term();
        if self.term == Some(term) {
            return Lead::Continuing;
        }
        self.term = Some(term);
        Lead::Started
    }
}

/// Proposes a compaction to `revision`; "already compacted" counts as success.
async fn compact(node: &RaftNode, revision: i64) -> Result<(), String> {
    let cmd = Command::Compact(CompactionRequest {
        revision,
        physical: false,
    });
    // The compactor is the server's own caller: no user, as etcd's compactor.
    let header = RequestHeader {
        id: node.next_request_id(),
        user: String::new(),
        auth_revision: 0,
    };
    match node.propose(Envelope::new(header, cmd)).await {
        Ok(applied) => match &applied.result {
            Ok(_) | Err(KvError::Compacted { .. }) => Ok(()),
            Err(e) => Err(e.etcd_message().to_string()),
        },
        Err(e) => Err(format!("{e:?}")),
    }
}

fn go(d: Duration) -> String {
    format_duration(GoDuration {
        nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
    })
}

fn current_revision(node: &RaftNode) -> i64 {
    node.state().read().state.kv.current_revision()
}

/// The leader's auto-compaction loop for `mode`; returns at once for `Off`, otherwise runs until
/// `stop` fires. `revision_check_interval` is etcd's 5 minutes outside tests.
pub async fn run(
    node: Arc<RaftNode>,
    mode: AutoCompaction,
    revision_check_interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let origin = tokio::time::Instant::now();
    let now_ms = || ms(origin.elapsed());
    match mode {
        AutoCompaction::Off => {}
        AutoCompaction::Periodic { retention } => {
            tracing::info!(compact_period = %go(retention), "starting auto periodic compaction loop");
            let mut schedule = PeriodicSchedule::new(retention, now_ms());
            let mut lead = LeaderWatch::new(&node);
            loop {
                schedule.sample(now_ms(), current_revision(&node));
                tokio::select! {
                    _ = tokio::time::sleep(schedule.tick()) => {}
                    _ = stop.changed() => return,
                }
                match lead.look(&node) {
                    Lead::Follower => continue,
                    Lead::Started => {
                        schedule.restart(now_ms());
                        continue;
                    }
                    Lead::Continuing => {}
                }
                let Some(revision) = schedule.due(now_ms()) else {
                    continue;
                };
                tracing::info!(revision, compact_period = %go(retention), "starting auto periodic compaction");
                let started = tokio::time::Instant::now();
                match compact(&node, revision).await {
                    Ok(()) => {
                        tracing::info!(
                            revision,
                            compact_period = %go(retention),
                            took = %go(started.elapsed()),
                            "completed auto periodic compaction"
                        );
                        schedule.succeeded(now_ms());
                    }
                    Err(error) => tracing::warn!(
                        revision,
                        compact_period = %go(retention),
                        retry_interval = %go(schedule.tick()),
                        error,
                        "failed auto periodic compaction"
                    ),
                }
            }
        }
        AutoCompaction::Revision {
            retention_revisions,
        } => {
            tracing::info!(
                revision_compaction_retention = retention_revisions,
                "starting auto revision compaction loop"
            );
            let mut schedule = RevisionSchedule::new(retention_revisions);
            let mut lead = LeaderWatch::new(&node);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(revision_check_interval) => {}
                    _ = stop.changed() => return,
                }
                if lead.look(&node) != Lead::Continuing {
                    continue;
                }
                let Some(revision) = schedule.due(current_revision(&node)) else {
                    continue;
                };
                tracing::info!(
                    revision,
                    revision_compaction_retention = retention_revisions,
                    "starting auto revision compaction"
                );
                let started = tokio::time::Instant::now();
                match compact(&node, revision).await {
                    Ok(()) => {
                        schedule.succeeded(revision);
                        tracing::info!(
                            revision,
                            revision_compaction_retention = retention_revisions,
                            took = %go(started.elapsed()),
                            "completed auto revision compaction"
                        );
                    }
                    Err(error) => tracing::warn!(
                        revision,
                        revision_compaction_retention = retention_revisions,
                        retry_interval = %go(revision_check_interval),
                        error,
                        "failed auto revision compaction"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;

    /// Drives a schedule like the loop does: sample, wait one tick, ask. `revision_at` gives
    /// the store's revision at a time; every due compaction succeeds. Returns `(time, revision)`
    /// of each compaction.
    fn drive(
        retention: Duration,
        until_ms: u64,
        revision_at: impl Fn(u64) -> i64,
    ) -> Vec<(u64, i64)> {
        let mut s = PeriodicSchedule::new(retention, 0);
        let tick = ms(s.tick());
        let mut now = 0;
        let mut done = Vec::new();
        while now < until_ms {
            s.sample(now, revision_at(now));
            now += tick;
            if let Some(rev) = s.due(now) {
                done.push((now, rev));
                s.succeeded(now);
            }
        }
        done
    }

    #[test]
    fn periodic_under_an_hour_compacts_every_retention_to_the_revision_one_retention_ago() {
        // One revision per minute; keep 10 minutes.
        let done = drive(Duration::from_secs(600), 45 * MIN, |t| (t / MIN) as i64 + 1);
        assert_eq!(
            done,
            vec![
                (10 * MIN, 1),
                (20 * MIN, 11),
                (30 * MIN, 21),
                (40 * MIN, 31)
            ]
        );
    }

    #[test]
    fn periodic_over_an_hour_waits_the_retention_then_compacts_hourly() {
        // Keep 3 hours; ticks are 6 minutes; one revision per minute.
        let s = PeriodicSchedule::new(Duration::from_secs(3 * 3600), 0);
        assert_eq!(s.tick(), Duration::from_secs(360));
        let done = drive(Duration::from_secs(3 * 3600), 6 * HOUR + MIN, |t| {
            (t / MIN) as i64 + 1
        });
        let times: Vec<u64> = done.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![3 * HOUR, 4 * HOUR, 5 * HOUR, 6 * HOUR]);
        for (t, rev) in done {
            // The revision of exactly one retention ago.
            assert_eq!(rev, ((t - 3 * HOUR) / MIN) as i64 + 1, "at {t}");
        }
    }

    #[test]
    fn periodic_never_compacts_history_younger_than_the_retention() {
        let mut s = PeriodicSchedule::new(Duration::from_secs(100), 0);
        // Irregular ticks (a slow loop): samples at 0, 7 s, 95 s, 130 s.
        s.sample(0, 5);
        s.sample(7_000, 9);
        s.sample(95_000, 40);
        assert_eq!(s.due(99_999), None, "retention not over yet");
        s.sample(130_000, 50);
        // Cutoff 30 s: the newest sample at or before it is the one of 7 s.
        assert_eq!(s.due(130_000), Some(9));
        s.succeeded(130_000);
        assert_eq!(s.due(200_000), None, "next one a full interval later");
        assert_eq!(s.due(230_000), Some(50));
    }

    #[test]
    fn periodic_restart_waits_a_whole_retention_again() {
        let mut s = PeriodicSchedule::new(Duration::from_secs(60), 0);
        for t in (0..=60_000).step_by(6_000) {
            s.sample(t, t as i64 / 1000);
        }
        s.restart(60_000);
        assert_eq!(s.due(60_000), None);
        assert_eq!(s.due(119_999), None);
        s.sample(120_000, 120);
        assert_eq!(s.due(120_000), Some(60));
    }

    #[test]
    fn periodic_samples_stay_bounded_for_huge_retentions() {
        let mut s = PeriodicSchedule::new(Duration::from_secs(1_000_000 * 3600), 0);
        let tick = ms(s.tick());
        for i in 0..(3 * SAMPLES_MAX as u64) {
            s.sample(i * tick, i as i64);
            assert!(s.samples.len() <= SAMPLES_MAX);
        }
        // The oldest sample is kept, so the target is never too new.
        assert_eq!(s.samples.front(), Some(&(0, 0)));
    }

    #[test]
    fn periodic_tiny_retention_still_ticks() {
        let s = PeriodicSchedule::new(Duration::from_nanos(5), 0);
        assert_eq!(s.tick(), Duration::from_millis(1));
    }

    #[test]
    fn revision_compacts_to_current_minus_retention_once() {
        let mut s = RevisionSchedule::new(100);
        assert_eq!(s.due(50), None);
        assert_eq!(s.due(100), None);
        assert_eq!(s.due(101), Some(1));
        s.succeeded(1);
        assert_eq!(s.due(101), None, "same target twice");
        assert_eq!(s.due(350), Some(250));
        let huge = RevisionSchedule::new(u64::MAX);
        assert_eq!(huge.due(i64::MAX), None);
    }
}
