//! The auth suite (`sim::authsim`): a 3-member cluster under the cluster nemesis while an
//! administrator grants and revokes roles and permissions, changes a password and turns auth on
//! and off, and two users read and write with their tokens; every "allowed" and "permission
//! denied" must match an auth state in force during the request (`sim::authcheck`), and every
//! member must end with the auth state the last changes set. See docs/simulation.md.
//!
//! CI budget: every second seed of MADSIM_TEST_NUM, 40 simulated seconds of faults each (about
//! 2 s of one core per seed).
#![cfg(madsim)]

use sim::authsim;

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

#[madsim::test]
async fn cluster3_auth_faults() {
    if seed() % 2 == 1 {
        let report = authsim::run(3, 40).await;
        println!("cluster3_auth_faults: {report}");
        report.assert_ok("auth_faults", "cluster3_auth_faults");
    }
}
