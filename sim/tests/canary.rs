//! Proves the suite catches planted bugs: with the test-only `canary` feature, each canary of
//! `oxetcd::canary` is planted in turn and the faulty scenario must report a violation within
//! `SEEDS_MAX` seeds (starting at MADSIM_TEST_SEED, default 1). Run with
//! `cargo sim --features canary --test canary`.
#![cfg(all(madsim, feature = "canary"))]

use std::time::Duration;

use oxetcd::canary::{self, Canary};
use sim::multi::{self, MultiConfig};
use sim::scenario::{self, Report, ScenarioConfig};

const SEEDS_MAX: u64 = 200;

fn first_seed() -> u64 {
    std::env::var("MADSIM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Runs seeds until one reports a violation; returns (seeds run, the catching report).
fn hunt(planted: Canary, cfg: ScenarioConfig) -> (u64, Report) {
    hunt_with(planted, move || scenario::run(cfg.clone()))
}

/// A 3-member run, shorter than the CI suite's (a canary shows early or not at all).
fn hunt_cluster(planted: Canary) -> (u64, Report) {
    let cfg = MultiConfig {
        run_secs: 20,
        ..MultiConfig::new(3)
    };
    hunt_with(planted, move || multi::run(cfg.clone()))
}

fn hunt_with<F, Fut>(planted: Canary, run: F) -> (u64, Report)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Report>,
{
    let start = first_seed();
    for n in 0..SEEDS_MAX {
        let seed = start + n;
        let mut rt =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(Duration::from_secs(300));
        let fut = run();
        let report = rt.block_on(async move {
            canary::set(Some(planted));
            fut.await
        });
        canary::set(None);
        if !report.ok() {
            return (n + 1, report);
        }
    }
    panic!("canary {planted:?} was NOT caught in {SEEDS_MAX} seeds starting at {start}: the suite is blind to it");
}

#[test]
fn catches_ack_before_fsync() {
    let cfg = ScenarioConfig {
        rot_chance_pct: 0,
        ..ScenarioConfig::default()
    };
    let (seeds, report) = hunt(Canary::AckBeforeFsync, cfg);
    println!(
        "canary AckBeforeFsync caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_skipped_recovery_crc() {
    let cfg = ScenarioConfig {
        rot_chance_pct: 100,
        ..ScenarioConfig::default()
    };
    let (seeds, report) = hunt(Canary::SkipRecoveryCrc, cfg);
    println!(
        "canary SkipRecoveryCrc caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_follower_read_without_read_index() {
    let (seeds, report) = hunt_cluster(Canary::FollowerReadWithoutReadIndex);
    println!(
        "canary FollowerReadWithoutReadIndex caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_dropped_watch_event() {
    let (seeds, report) = hunt_cluster(Canary::DropWatchEvent);
    println!(
        "canary DropWatchEvent caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_lease_expiry_from_follower_clock() {
    let (seeds, report) = hunt_cluster(Canary::LeaseExpiryFromFollowerClock);
    println!(
        "canary LeaseExpiryFromFollowerClock caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

/// A 3-member run under the deeper nemesis (packet loss, duplicated raft requests, slow
/// fsyncs, overlapping faults), 20 simulated seconds per seed.
fn hunt_deep(planted: Canary) -> (u64, Report) {
    let cfg = MultiConfig {
        run_secs: 20,
        ..MultiConfig::deep(3)
    };
    hunt_with(planted, move || multi::run(cfg.clone()))
}

#[test]
fn catches_watch_resumed_late() {
    let (seeds, report) = hunt_deep(Canary::WatchResumedLate);
    println!(
        "canary WatchResumedLate caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_resent_forwarded_proposal() {
    let (seeds, report) = hunt_deep(Canary::ResendForwardedProposal);
    println!(
        "canary ResendForwardedProposal caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_auth_check_before_read_index() {
    let (seeds, report) = hunt_with(Canary::AuthCheckBeforeReadIndex, || {
        sim::authsim::run(3, 20)
    });
    println!(
        "canary AuthCheckBeforeReadIndex caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_plain_put_keeping_lease() {
    let (seeds, report) = hunt_cluster(Canary::PlainPutKeepsLease);
    println!(
        "canary PlainPutKeepsLease caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
}

#[test]
fn catches_v2_quorum_get_without_read_index() {
    let (seeds, report) = hunt_deep(Canary::V2QuorumGetWithoutReadIndex);
    println!(
        "canary V2QuorumGetWithoutReadIndex caught after {seeds} seed(s) at seed {}: {}",
        report.seed,
        report.violations.join("; ")
    );
    assert!(
        report.violations.iter().any(|v| v.starts_with("v2 ")),
        "caught, but not by the v2 check: {:?}",
        report.violations
    );
}
