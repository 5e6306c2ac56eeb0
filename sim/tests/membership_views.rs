//! Membership views that lag: a member that has not applied a removal still lists the removed
//! member, and a joiner that asks it first gets the removed member's ID. The joiner must learn
//! from its other peers that the ID is gone and stop, as etcd's joiner does (its peers answer
//! a removed member "410 Gone"), instead of waiting for a leader forever.
//!
//! CI budget: one seed in sixteen of MADSIM_TEST_NUM (about 8 runs of under a minute of
//! simulated time each).
#![cfg(madsim)]

use std::time::Duration;

use sim::cluster::{ClusterConfig, SimCluster, StartState};
use sim::multi;

fn seed() -> u64 {
    madsim::runtime::Handle::current().seed()
}

/// Retries `call` every half second until it answers `Some`, up to `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = madsim::time::Instant::now() + limit;
    loop {
        if let Some(v) = call().await {
            return v;
        }
        assert!(
            madsim::time::Instant::now() < deadline,
            "seed {}: {what} did not happen within {limit:?}",
            seed()
        );
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
}

#[madsim::test]
async fn a_joiner_given_a_removed_members_id_by_a_lagging_peer_stops() {
    if seed() % 16 != 5 {
        return;
    }
    let cluster = SimCluster::start(ClusterConfig {
        members: 3,
        ..ClusterConfig::default()
    });
    for i in 0..3 {
        let state = cluster.wait_started(i, Duration::from_secs(30)).await;
        assert_eq!(state, StartState::Serving, "seed {}: m{}", seed(), i + 1);
    }
    // The operator's calls come from a machine of their own.
    let ops = multi::node_at("ops", [10, 0, 2, 9]);
    let peer = format!("http://{}:2380", cluster.next_joiner_ip());
    let id = eventually(Duration::from_secs(30), "the learner add", || {
        let call = multi::add_learner(cluster.endpoint(0), peer.clone());
        let task = ops.spawn(call);
        async move { task.await.ok().flatten() }
    })
    .await;
    // A follower has applied the add; then it is cut off from the others and misses the
    // removal. (A cut-off leader would keep replicating to the joiner: see
    // `an_isolated_leader_keeps_no_lease_alive` for what it must not do meanwhile.)
    let leader = eventually(Duration::from_secs(30), "a leader", || {
        let leader = cluster.leader();
        async move { leader }
    })
    .await;
    let lagging = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != lagging).collect();
    eventually(
        Duration::from_secs(30),
        "the follower listing the learner",
        || {
            let endpoint = cluster.endpoint(lagging);
            let task = ops.spawn(async move { multi::member_list(&endpoint).await });
            async move {
                task.await
                    .ok()
                    .flatten()
                    .filter(|list| list.iter().any(|m| m.0 == id))
            }
        },
    )
    .await;
    cluster.partition(&[lagging]);
    eventually(Duration::from_secs(60), "the learner's removal", || {
        let (m1, m2) = (cluster.endpoint(others[0]), cluster.endpoint(others[1]));
        let task =
            ops.spawn(async move { multi::remove(m1, id).await || multi::remove(m2, id).await });
        async move { task.await.ok().filter(|removed| *removed).map(|_| ()) }
    })
    .await;
    // The joiner is started as the removed member's replacement would be: the two up-to-date
    // members refuse to tell it anything (they do not list its URL), the cut-off follower
    // answers with its lagging view, so the joiner takes the removed ID.
    cluster.start_joiner(id, true);
    cluster.wait_joiner_started(Duration::from_secs(30)).await;
    let stopped = eventually(Duration::from_secs(60), "the joiner stopping", || async {
        match cluster.joiner_info() {
            Some((_, _, _, StartState::Serving)) | None => None,
            Some((_, _, _, state)) => Some(state),
        }
    })
    .await;
    assert_eq!(
        stopped,
        StartState::Removed,
        "seed {}: the joiner with a removed ID ended otherwise",
        seed()
    );
}
