//! Links slower than the heartbeat: every message between members takes 30–45 ms one way, so a
//! round trip (60–90 ms) is longer than the 50 ms heartbeat but well inside the 300 ms election
//! timeout. etcd keeps committing there (its raft messages are one-way); so must oxetcd.
//!
//! Bug guarded against: openraft bounds each append-entries call by its `heartbeat_interval`,
//! which was etcd's heartbeat, so every call timed out at such a round trip: nothing committed,
//! CheckQuorum deposed the leader and elections followed one another
//! (`raft::node::rpc_deadline_ms` now gives the calls three heartbeats).
//!
//! CI budget: one seed in sixteen of MADSIM_TEST_NUM (about 8 runs of ~10 simulated seconds).
#![cfg(madsim)]

use std::time::Duration;

use sim::cluster::{ClusterConfig, SimCluster, StartState};
use sim::history::{Op, Outcome};
use sim::{multi, workload};

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

#[madsim::test]
async fn writes_commit_while_a_round_trip_outlasts_the_heartbeat() {
    if seed() % 16 != 3 {
        return;
    }
    let config = ClusterConfig {
        members: 3,
        ..ClusterConfig::default()
    };
    assert_eq!((config.heartbeat_ms, config.election_timeout_ms), (50, 300));
    let cluster = SimCluster::start(config);
    for i in 0..3 {
        let state = cluster.wait_started(i, Duration::from_secs(30)).await;
        assert_eq!(state, StartState::Serving, "seed {}: m{}", seed(), i + 1);
    }
    madsim::net::NetSim::current().update_config(|c| {
        c.send_latency = Duration::from_millis(30)..Duration::from_millis(45);
    });
    let client = multi::node_at("client", [10, 0, 2, 9]);
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    // Twenty puts, each through the next member; each must be acknowledged within 2 s (a
    // few round trips: the client's own, a forward to the leader, the replication).
    let task = client.spawn(async move {
        let mut refused = Vec::new();
        for n in 0..20usize {
            let mut kv = workload::kv_client(&endpoints[n % endpoints.len()]);
            let op = Op::Put {
                key: format!("k{}", n % 4),
                value: format!("slow-{n}"),
            };
            let outcome = workload::execute(&mut kv, &op, Duration::from_secs(2)).await;
            if !matches!(outcome, Outcome::Put { .. }) {
                refused.push((n, outcome));
            }
        }
        refused
    });
    let refused = task.await.expect("the client task ran");
    assert!(
        refused.is_empty(),
        "seed {}: with a 60-90 ms round trip, puts went unacknowledged: {refused:?}",
        seed()
    );
    // And leadership held: the one leader of the run still leads in its own eyes.
    let leader = cluster.leader();
    assert!(
        leader.is_some_and(|l| cluster.leads_in_own_eyes(l) == Some(true)),
        "seed {}: no stable leader under the slow links ({leader:?})",
        seed()
    );
}
