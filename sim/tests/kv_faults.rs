//! KV linearizability and durability of a production member under crashes with power loss,
//! kills, pauses, client deadlines and end-of-run WAL rot. One seed per madsim run; seeds come
//! from MADSIM_TEST_SEED / MADSIM_TEST_NUM (see docs/simulation.md).
#![cfg(madsim)]

use sim::scenario::{self, ScenarioConfig};

#[madsim::test]
async fn kv_single_member_faults() {
    let report = scenario::run(ScenarioConfig::default()).await;
    println!("kv_single_member_faults: {report}");
    report.assert_ok("kv_faults", "kv_single_member_faults");
}

#[madsim::test]
async fn kv_single_member_no_faults() {
    let cfg = ScenarioConfig {
        faults: false,
        rot_chance_pct: 0,
        ..ScenarioConfig::default()
    };
    let report = scenario::run(cfg).await;
    println!("kv_single_member_no_faults: {report}");
    assert_eq!(
        report.unknown_ops, 0,
        "no fault, yet some calls got no answer: {report}"
    );
    report.assert_ok("kv_faults", "kv_single_member_no_faults");
}
