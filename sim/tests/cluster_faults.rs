//! Multi-member clusters (3 and 5 members over the real peer transport) under partitions,
//! clogged links, latency, crashes with power loss, kills, pauses and compaction, with clients
//! on every member. One seed per madsim run (MADSIM_TEST_SEED / MADSIM_TEST_NUM); see
//! docs/simulation.md.
//!
//! A 5-member run costs about 2.5 times a 3-member one, so the 5-member suite is split into
//! two tests that take the even and the odd seeds: with two test threads the three tests keep
//! both cores busy, and MADSIM_TEST_NUM seeds still mean MADSIM_TEST_NUM runs of each size.
#![cfg(madsim)]

use sim::multi::{self, MultiConfig};

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

#[madsim::test]
async fn cluster3_faults() {
    let report = multi::run(MultiConfig::new(3)).await;
    println!("cluster3_faults: {report}");
    report.assert_ok("cluster_faults", "cluster3_faults");
}

#[madsim::test]
async fn cluster5_faults_even_seeds() {
    if !seed().is_multiple_of(2) {
        return;
    }
    let report = multi::run(MultiConfig::new(5)).await;
    println!("cluster5_faults: {report}");
    report.assert_ok("cluster_faults", "cluster5_faults_even_seeds");
}

#[madsim::test]
async fn cluster5_faults_odd_seeds() {
    if seed().is_multiple_of(2) {
        return;
    }
    let report = multi::run(MultiConfig::new(5)).await;
    println!("cluster5_faults: {report}");
    report.assert_ok("cluster_faults", "cluster5_faults_odd_seeds");
}
