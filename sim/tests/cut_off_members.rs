//! Members cut off from their quorum, and what they must not do meanwhile:
//! - a member that has not applied a removal still lists the removed member, and a joiner that
//!   asks it first gets the removed member's ID: the joiner must learn from its other peers
//!   that the ID is gone and stop, as etcd's joiner does (its peers answer a removed member
//!   "410 Gone"), instead of waiting for a leader forever;
//! - a leader cut off from the others is deposed on their side without knowing it: it must
//!   not renew leases from its own deadlines meanwhile (the new leader expires them).
//!
//! CI budget: each test runs one seed in sixteen of MADSIM_TEST_NUM (about 8 runs of under a
//! minute of simulated time each).
#![cfg(madsim)]

use std::time::Duration;

use sim::cluster::{ClusterConfig, SimCluster, StartState};
use sim::multi;
use sim::workload;

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

/// A started 3-member cluster.
async fn start_three() -> SimCluster {
    let cluster = SimCluster::start(ClusterConfig {
        members: 3,
        ..ClusterConfig::default()
    });
    for i in 0..3 {
        let state = cluster.wait_started(i, Duration::from_secs(30)).await;
        assert_eq!(state, StartState::Serving, "seed {}: m{}", seed(), i + 1);
    }
    cluster
}

/// The member the metrics samples name leader, waited for up to 30 s.
async fn leader_of(cluster: &SimCluster) -> usize {
    eventually(Duration::from_secs(30), "a leader", || {
        let leader = cluster.leader();
        async move { leader }
    })
    .await
}

#[madsim::test]
async fn a_joiner_given_a_removed_members_id_by_a_lagging_peer_stops() {
    if seed() % 16 != 5 {
        return;
    }
    let cluster = start_three().await;
    // The operator's calls come from a machine of their own.
    let ops = multi::node_at("ops", [10, 0, 2, 9]);
    let peer = format!("http://{}:2380", cluster.next_joiner_ip());
    let id = eventually(Duration::from_secs(30), "the learner add", || {
        let call = multi::add_learner(cluster.endpoint(0), peer.clone());
        let task = ops.spawn(call);
        async move { task.await.ok().flatten() }
    })
    .await;
    // A member has applied the add; then it is cut off from the others and misses the
    // removal.
    let leader = leader_of(&cluster).await;
    // Every other seed, the lagging member is the leader itself: cut off, it steps down
    // (CheckQuorum) and stops replicating to the joiner.
    let lagging = if (seed() / 16).is_multiple_of(2) {
        leader
    } else {
        (leader + 1) % 3
    };
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
    // members refuse to tell it anything (they do not list its URL), the cut-off member
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

#[madsim::test]
async fn a_cut_off_leader_renews_no_lease() {
    if seed() % 16 != 9 {
        return;
    }
    let cluster = start_three().await;
    let ops = multi::node_at("ops", [10, 0, 2, 9]);
    let leader = leader_of(&cluster).await;
    let on_leader = cluster.endpoint(leader);
    let id = eventually(Duration::from_secs(30), "a lease grant", || {
        let task = ops.spawn(workload::grant_lease(on_leader.clone(), 10));
        async move { task.await.ok().flatten() }
    })
    .await;
    let renew = |limit: Duration| {
        let task = ops.spawn(workload::keep_alive_once(on_leader.clone(), id, limit));
        async move { task.await.unwrap_or_else(|e| Err(e.to_string())) }
    };
    let before = renew(Duration::from_secs(5)).await;
    assert!(
        before.as_ref().is_ok_and(|ttl| *ttl > 0),
        "seed {}: the leader did not renew before the cut: {before:?}",
        seed()
    );
    cluster.partition(&[leader]);
    // For longer than the lease's TTL, the old leader is asked to renew it every second.
    let cut_at = madsim::time::Instant::now();
    while cut_at.elapsed() < Duration::from_secs(15) {
        let answer = renew(Duration::from_secs(3)).await;
        assert!(
            !answer.as_ref().is_ok_and(|ttl| *ttl > 0),
            "seed {}: the cut-off leader renewed lease {id:x} {:?} after the cut: {answer:?}",
            seed(),
            cut_at.elapsed()
        );
        madsim::time::sleep(Duration::from_secs(1)).await;
    }
    // It no longer takes itself for the leader (etcd's CheckQuorum: a leader steps down when
    // no quorum answered within an election timeout).
    assert_eq!(
        cluster.leads_in_own_eyes(leader),
        Some(false),
        "seed {}: the cut-off member still leads in its own eyes after {:?}",
        seed(),
        cut_at.elapsed()
    );
    // The other side elected a leader that let the lease expire: the renewals refused above
    // were not refused for want of a cluster.
    let others: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| cluster.endpoint(i))
        .collect();
    let gone = eventually(
        Duration::from_secs(30),
        "an answer from the other side",
        || {
            let task = ops.spawn(workload::keep_alive_once(
                others[0].clone(),
                id,
                Duration::from_secs(3),
            ));
            async move { task.await.ok().and_then(Result::ok) }
        },
    )
    .await;
    assert_eq!(gone, 0, "seed {}: the lease outlived its TTL", seed());
}
