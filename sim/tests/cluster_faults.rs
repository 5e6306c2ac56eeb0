//! Multi-member clusters (3 and 5 members over the real peer transport) under partitions,
//! clogged links, latency, crashes with power loss, kills, pauses and compaction, with clients
//! on every member. One seed per madsim run (MADSIM_TEST_SEED / MADSIM_TEST_NUM); see
//! docs/simulation.md.
#![cfg(madsim)]

use sim::multi::{self, MultiConfig};

#[madsim::test]
async fn cluster3_faults() {
    let report = multi::run(MultiConfig::new(3)).await;
    println!("cluster3_faults: {report}");
    report.assert_ok("cluster_faults", "cluster3_faults");
}

#[madsim::test]
async fn cluster5_faults() {
    let report = multi::run(MultiConfig::new(5)).await;
    println!("cluster5_faults: {report}");
    report.assert_ok("cluster_faults", "cluster5_faults");
}
