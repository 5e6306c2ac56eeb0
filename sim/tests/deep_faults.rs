//! The deeper nemesis (`MultiConfig::deep`): on top of the cluster suite's faults, packet loss,
//! duplicated raft messages and slow fsyncs, and half the steps overlap two faults on
//! different members. A 3-member cluster on every seed; a 5-member one on every fourth seed
//! (it costs about 2.5 times as much). See docs/simulation.md.
#![cfg(madsim)]

use sim::multi::{self, MultiConfig};

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

#[madsim::test]
async fn cluster3_deep_faults() {
    let report = multi::run(MultiConfig::deep(3)).await;
    println!("cluster3_deep_faults: {report}");
    report.assert_ok("deep_faults", "cluster3_deep_faults");
}

#[madsim::test]
async fn cluster5_deep_faults() {
    if !seed().is_multiple_of(4) {
        return;
    }
    let report = multi::run(MultiConfig::deep(5)).await;
    println!("cluster5_deep_faults: {report}");
    report.assert_ok("deep_faults", "cluster5_deep_faults");
}
