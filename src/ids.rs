//! Member and cluster IDs, derived exactly as etcd derives them, so IDs are stable across
//! restarts and recognisable next to real etcd members.
//!
//! ```text
//! member_id  = u64_be(SHA-1(concat(sorted peer URLs) ++ token [++ decimal unix seconds])[0..8])
//! cluster_id = u64_be(SHA-1(concat(u64_be(id) for id in sorted member IDs))[0..8])
//! ```
//! The time suffix is used for members added at runtime (MemberAdd), not at bootstrap.
//!
//! Invariant: both functions are pure and independent of input order.

use sha1::{Digest, Sha1};

/// etcd's member ID for a member with `peer_urls` (canonical strings, e.g.
/// `http://127.0.0.1:2380`) in the cluster named by `token`.
pub fn member_id(peer_urls: &[String], token: &str, now_unix_s: Option<u64>) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for url in sorted {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    if let Some(secs) = now_unix_s {
        hasher.update(secs.to_string().as_bytes());
    }
    first_u64(&hasher.finalize())
}

/// etcd's cluster ID for a cluster bootstrapped with `member_ids`.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

/// An ID as etcd prints it: lower-case hex without leading zeros.
pub fn format_id(id: u64) -> String {
    format!("{id:x}")
}

/// Parses an ID printed by `format_id` (or etcdctl).
pub fn parse_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

fn first_u64(digest: &[u8]) -> u64 {
    debug_assert_eq!(digest.len(), 20, "SHA-1 digests are 20 bytes");
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // Vectors observed on real etcd (3.4.23 and 3.5.1) started on loopback.
    #[test]
    fn single_member_vectors() {
        let cases: &[(&[&str], &str, u64, u64)] = &[
            (
                &["http://127.0.0.1:23800"],
                "etcd-cluster",
                0x2e1259d415f2a040,
                0x48276a8f75b6a87,
            ),
            (
                &["http://127.0.0.1:23801"],
                "etcd-cluster",
                0xbdae9bbc11dd390d,
                0xd1cfaf999eb97a2a,
            ),
            (
                &["http://127.0.0.1:23805"],
                "tok-A",
                0x501e8c99b110c84c,
                0x15bda362da8201d7,
            ),
            // etcdctl member list -w json: 6586608129575388945 / 3457902536490264864.
            (
                &["http://127.0.0.1:23811"],
                "oxetcd-ids",
                6586608129575388945,
                3457902536490264864,
            ),
            (
                &["http://127.0.0.2:23806", "http://127.0.0.1:23805"],
                "etcd-cluster",
                0xb943f78e167dcc06,
                0xd73afae13fc748ff,
            ),
        ];
        for (peer_urls, token, member, cluster) in cases {
            let m = member_id(&urls(peer_urls), token, None);
            assert_eq!(m, *member, "{peer_urls:?} {token}");
            assert_eq!(cluster_id(&[m]), *cluster, "{peer_urls:?} {token}");
        }
    }

    #[test]
    fn three_member_vector() {
        // etcd 3.5.1 with --initial-cluster n3=:23805,n4=:23806,n5=:23807 logged
        // local member 7d07b6b9bfeb346a (n3) in cluster e2fc15a10162105f.
        let ids: Vec<u64> = [23805, 23806, 23807]
            .iter()
            .map(|p| {
                member_id(
                    &urls(&[&format!("http://127.0.0.1:{p}")]),
                    "etcd-cluster",
                    None,
                )
            })
            .collect();
        assert_eq!(ids[0], 0x7d07b6b9bfeb346a);
        assert_eq!(cluster_id(&ids), 0xe2fc15a10162105f);
        let reversed: Vec<u64> = ids.iter().rev().copied().collect();
        assert_eq!(cluster_id(&reversed), 0xe2fc15a10162105f);
    }

    #[test]
    fn time_suffix_changes_the_id() {
        let u = urls(&["http://127.0.0.1:23800"]);
        let base = member_id(&u, "etcd-cluster", None);
        let added = member_id(&u, "etcd-cluster", Some(1_700_000_000));
        assert_ne!(base, added);
        assert_eq!(added, member_id(&u, "etcd-cluster", Some(1_700_000_000)));
        assert_ne!(added, member_id(&u, "etcd-cluster", Some(1_700_000_001)));
    }

    #[test]
    fn ids_print_like_etcd() {
        assert_eq!(format_id(0x48276a8f75b6a87), "48276a8f75b6a87");
        assert_eq!(parse_id("2e1259d415f2a040"), Some(0x2e1259d415f2a040));
        assert_eq!(parse_id("xyz"), None);
    }
}
