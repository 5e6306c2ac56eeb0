//! The deeper nemesis (`MultiConfig::deep`): on top of the cluster suite's faults, packet loss,
//! duplicated raft messages, slow fsyncs and membership changes (a learner added, promoted,
//! removed), and half the steps overlap two faults on different members. See
//! docs/simulation.md.
//!
//! CI budget: of MADSIM_TEST_NUM seeds, a 3-member run takes every second seed (split over two
//! tests, seeds 0 and 2 mod 4, so both test threads stay busy) and a 5-member run (about 2.5
//! times the cost) every eighth; 128 seeds cost about 3 minutes on 2 cores.
#![cfg(madsim)]

use sim::multi::{self, MultiConfig};

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

async fn run(members: usize, test_name: &str) {
    let report = multi::run(MultiConfig::deep(members)).await;
    println!("{test_name}: {report}");
    report.assert_ok("deep_faults", test_name);
}

#[madsim::test]
async fn cluster3_deep_faults_a() {
    if seed().is_multiple_of(4) {
        run(3, "cluster3_deep_faults_a").await;
    }
}

#[madsim::test]
async fn cluster3_deep_faults_b() {
    if seed() % 4 == 2 {
        run(3, "cluster3_deep_faults_b").await;
    }
}

#[madsim::test]
async fn cluster5_deep_faults() {
    if seed() % 8 == 1 {
        run(5, "cluster5_deep_faults").await;
    }
}
