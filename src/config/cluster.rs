//! `--initial-cluster` parsing and the bootstrap checks etcd makes for a member that starts
//! without data: its name is in the initial cluster, its advertised peer URLs match its
//! entry, no URL appears twice; then member and cluster IDs (see `crate::ids`).
//!
//! Invariant: IDs are derived from canonical URL strings (`Url::to_string`), sorted, so
//! every member computes the same IDs from the same flags regardless of their order.

use super::error::ConfigError;
use super::url::{sort_urls, Url};
use super::{check_url_support, Config};
use crate::ids;

/// One `name=url[,name=url]` entry group of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    /// Sorted.
    pub peer_urls: Vec<Url>,
}

/// A bootstrap member with its derived ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<Url>,
}

/// The cluster a fresh member bootstraps (for `--initial-cluster-state existing` the
/// cluster ID and the other members come from the running cluster instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapCluster {
    pub cluster_id: u64,
    pub local_member_id: u64,
    /// Sorted by ID.
    pub members: Vec<BootstrapMember>,
}

impl Config {
    /// Parses `initial_cluster` (names in order of first appearance; a name may repeat to
    /// give a member several URLs; empty items are skipped, as etcd does).
    pub fn initial_cluster_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for item in self.initial_cluster.split(',').filter(|i| !i.is_empty()) {
            let (name, url) = item.split_once('=').unwrap_or((item, ""));
            match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.to_string()),
                None => groups.push((name.to_string(), vec![url.to_string()])),
            }
        }
        let mut members = Vec::with_capacity(groups.len());
        for (name, raw_urls) in groups {
            let mut peer_urls = raw_urls
                .iter()
                .map(|u| Url::parse(u))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::InitialCluster {
                    reason: e.to_string(),
                })?;
            sort_urls(&mut peer_urls);
            check_url_support("initial-cluster", &peer_urls)?;
            members.push(InitialMember { name, peer_urls });
        }
        Ok(members)
    }

    /// etcd's bootstrap checks and ID derivation; call only for a member without data.
    pub fn bootstrap_cluster(&self) -> Result<BootstrapCluster, ConfigError> {
        let initial = self.initial_cluster_members()?;
        let Some(local) = initial.iter().find(|m| m.name == self.name) else {
            return Err(ConfigError::LocalNameNotInCluster {
                name: self.name.clone(),
            });
        };
        advertise_matches_cluster(&self.name, &self.initial_advertise_peer_urls, local)?;
        if has_duplicate_url(&initial) {
            return Err(ConfigError::InitialClusterDuplicateUrl {
                initial_cluster: urls_map_string(&initial),
            });
        }
        let mut members: Vec<BootstrapMember> = initial
            .iter()
            .map(|m| BootstrapMember {
                id: ids::member_id(
                    &url_strings(&m.peer_urls),
                    &self.initial_cluster_token,
                    None,
                ),
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        if let Some(pair) = members.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(ConfigError::DuplicateMemberId { id: pair[0].id });
        }
        let member_ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        let local_member_id = ids::member_id(
            &url_strings(&local.peer_urls),
            &self.initial_cluster_token,
            None,
        );
        debug_assert!(member_ids.contains(&local_member_id));
        Ok(BootstrapCluster {
            cluster_id: ids::cluster_id(&member_ids),
            local_member_id,
            members,
        })
    }
}

fn url_strings(urls: &[Url]) -> Vec<String> {
    urls.iter().map(Url::to_string).collect()
}

fn has_duplicate_url(members: &[InitialMember]) -> bool {
    let mut all: Vec<String> = members
        .iter()
        .flat_map(|m| url_strings(&m.peer_urls))
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    all.len() != n
}

/// `a=u1,a=u2,b=u3` with names sorted (etcd's `URLsMap.String`).
fn urls_map_string(members: &[InitialMember]) -> String {
    let mut sorted: Vec<&InitialMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(move |u| format!("{}={u}", m.name)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// The advertised peer URLs must equal this member's `--initial-cluster` URLs. etcd
/// resolves DNS names before comparing; we compare canonical strings (IP literals and
/// `localhost`, which etcd does not resolve either, behave identically).
fn advertise_matches_cluster(
    name: &str,
    advertised: &[Url],
    local: &InitialMember,
) -> Result<(), ConfigError> {
    let mut ap = url_strings(advertised);
    ap.sort();
    let ic = url_strings(&local.peer_urls);
    if ap == ic {
        return Ok(());
    }
    let inner = if ap.len() != ic.len() {
        format!("len({}) != len({})", quote_list(&ap), quote_list(&ic))
    } else {
        let (a, b) = ap
            .iter()
            .zip(&ic)
            .find(|(a, b)| a != b)
            .map_or((String::new(), String::new()), |(a, b)| {
                (a.clone(), b.clone())
            });
        format!("{a:?}(resolved from {a:?}) != {b:?}(resolved from {b:?})")
    };
    let ap_joined = ap.join(",");
    let own_entry = ic
        .iter()
        .map(|u| format!("{name}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let missing_from_ap: Vec<String> = ic
        .iter()
        .filter(|u| !ap.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    let detail = if !missing_from_ap.is_empty() {
        format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={ap_joined} ({inner})",
            missing_from_ap.join(",")
        )
    } else {
        let missing_from_ic: Vec<&String> = ap.iter().filter(|u| !ic.contains(u)).collect();
        if !missing_from_ic.is_empty() {
            let joined: Vec<&str> = missing_from_ic.iter().map(|s| s.as_str()).collect();
            format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={own_entry}",
                joined.join(",")
            )
        } else {
            format!(
                "failed to resolve {ap_joined} to match --initial-cluster={own_entry} ({inner})"
            )
        }
    };
    Err(ConfigError::AdvertisePeerMismatch { detail })
}
