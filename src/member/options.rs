//! member/options.rs — the raft node's options from etcd's flags: IDs derived from
//! `--initial-cluster` for a new cluster, learned from the peers for `--initial-cluster-state
//! existing`, read from the data dir on restart; and how the start treats raft's state.
//!
//! Invariant: a restarted member (its data dir holds `member/identity`) ignores every
//! `--initial-*` flag, as etcd does.

use std::time::Duration;

use crate::config::{BootstrapCluster, ClusterState, Config};
use crate::io::Disk;
use crate::net::tls::{self, ClientTls, Side};
use crate::net::Dialer;
use crate::raft::membership;
use crate::raft::node::{NodeOptions, StartMode};
use crate::raft::MemberNode;

/// How long a joining member waits for each existing peer to describe the cluster, per ask.
const JOIN_DISCOVERY_ATTEMPT: Duration = Duration::from_secs(2);
/// How long a joining member keeps asking before it gives up: etcd's 10 s (it waits that long
/// for each peer, once); asked again every round, a peer that was cut off or had not applied
/// the `member add` yet still answers in time.
const JOIN_DISCOVERY_DEADLINE: Duration = Duration::from_secs(10);

/// A joining member's IDs, learned from the members listed in `--initial-cluster`.
async fn discover_existing(
    config: &Config,
    dialer: &Dialer,
    own_peer_urls: &[String],
) -> Result<membership::JoinInfo, String> {
    let members = config
        .initial_cluster_members()
        .map_err(|e| e.to_string())?;
    let peers: Vec<String> = members
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(ToString::to_string))
        .filter(|u| !own_peer_urls.contains(u))
        .collect();
    let info = membership::discover(
        dialer.clone(),
        &peers,
        own_peer_urls,
        JOIN_DISCOVERY_ATTEMPT,
        JOIN_DISCOVERY_DEADLINE,
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(
        member_id = %format!("{:x}", info.member_id),
        cluster_id = %format!("{:x}", info.cluster_id),
        "joining an existing cluster"
    );
    Ok(info)
}

/// Node options and start mode from the configuration; bootstrap IDs are derived (or, for
/// `--initial-cluster-state existing`, fetched from the peers) only for an empty data dir.
pub async fn node_options(
    config: &Config,
    disk: &dyn Disk,
    wal_segment_bytes: u64,
) -> Result<(NodeOptions, StartMode), String> {
    let identity = config.data_dir.join("member").join("identity");
    let has_data = disk
        .exists(&identity)
        .map_err(|e| format!("{}: {e}", identity.display()))?;
    let peer_urls: Vec<String> = config
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    let joining = config.initial_cluster_state == ClusterState::Existing;
    let dialer = peer_dialer(config)?;
    let mode = if config.force_new_cluster && has_data {
        StartMode::ForceNewCluster
    } else if joining {
        StartMode::Join
    } else {
        StartMode::Bootstrap
    };
    let mut join_view = None;
    let (member_id, cluster_id, members) = if has_data {
        (0, 0, Vec::new())
    } else if joining {
        let info = discover_existing(config, &dialer, &peer_urls).await?;
        join_view = Some(info.view);
        (info.member_id, info.cluster_id, Vec::new())
    } else {
        let boot = config.bootstrap_cluster().map_err(|e| e.to_string())?;
        (
            boot.local_member_id,
            boot.cluster_id,
            bootstrap_members(&boot),
        )
    };
    let limits = config.limits();
    let opts = NodeOptions {
        data_dir: config.data_dir.clone(),
        wal_dir: config.wal_dir.clone(),
        name: config.name.clone(),
        bootstrap_member_id: member_id,
        bootstrap_cluster_id: cluster_id,
        peer_urls,
        client_urls: config
            .advertise_client_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
        heartbeat_ms: config.heartbeat_interval_ms,
        election_timeout_ms: config.election_timeout_ms,
        snapshot_count: config.snapshot_count,
        max_snapshots: usize::try_from(limits.max_snapshots).unwrap_or(usize::MAX),
        max_wals: usize::try_from(limits.max_wals).unwrap_or(usize::MAX),
        wal_segment_bytes,
        bootstrap_members: members,
        peer_dialer: dialer,
        warning_apply_duration: config.experimental_warning_apply_duration,
        clock_rate_ppm: 0,
        join_view,
    };
    Ok((opts, mode))
}

/// The raft membership a new cluster starts with: every `--initial-cluster` member with its name
/// and peer URLs (client URLs are published by the leader once each member runs). A one-member
/// cluster is left empty so the node registers itself with its client URLs right away.
fn bootstrap_members(boot: &BootstrapCluster) -> Vec<(u64, MemberNode)> {
    if boot.members.len() <= 1 {
        return Vec::new();
    }
    boot.members
        .iter()
        .map(|m| {
            let node = MemberNode {
                name: m.name.clone(),
                peer_urls: m.peer_urls.iter().map(ToString::to_string).collect(),
                client_urls: Vec::new(),
            };
            (m.id, node)
        })
        .collect()
}

/// The peer dialer: TLS with the peer CA (and the peer certificate as client certificate)
/// when `--peer-trusted-ca-file`, a peer key pair or `--peer-auto-tls` is given (auto TLS does
/// not verify the other members' certificates, as in etcd), plaintext otherwise. etcd dials
/// peers with its peer TLS settings the same way, whatever the URLs say.
fn peer_dialer(config: &Config) -> Result<Dialer, String> {
    let files = super::with_auto_tls(
        &config.peer_tls,
        &config.data_dir,
        &config.listen_peer_urls,
        config.self_signed_cert_validity_years,
        Side::Peer,
    )?;
    if files.trusted_ca_file.is_none() && !tls::has_key_pair(&files) {
        return Ok(Dialer::plaintext());
    }
    let tls = ClientTls::load(&files, Side::Peer).map_err(|e| e.to_string())?;
    Ok(Dialer::with_tls(tls))
}
