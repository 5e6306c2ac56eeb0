//! etcd's bucket schema (3.4/3.5), as far as a snapshot file needs it.
//!
//! ```text
//! key              main:u64be '_' sub:u64be ['t' for a tombstone] -> mvccpb.KeyValue
//!                  (a tombstone's value holds only the key)
//! lease            id:i64be -> leasepb.Lease{ID=1, TTL=2, RemainingTTL=3}
//! meta             consistent_index -> u64be, term -> u64be, confState -> JSON,
//!                  scheduledCompactRev / finishedCompactRev -> revision (sub 0)
//! members          id as lowercase hex -> member JSON; members_removed: hex id -> "removed"
//! cluster          clusterVersion -> "3.5.0"
//! alarm            etcdserverpb.AlarmMember (marshaled) -> empty, one per raised alarm
//! auth, authUsers, authRoles          the auth store (grammar in `backend/auth.rs`)
//! ```
//!
//! Invariant: `BUCKETS` is in byte order, the order the writer needs.

/// Every bucket etcd creates, in byte order.
pub const BUCKETS: [&[u8]; 10] = [
    b"alarm",
    b"auth",
    b"authRoles",
    b"authUsers",
    b"cluster",
    b"key",
    b"lease",
    b"members",
    b"members_removed",
    b"meta",
];

pub const ALARM: &[u8] = b"alarm";
pub const KEY: &[u8] = b"key";
pub const LEASE: &[u8] = b"lease";
pub const META: &[u8] = b"meta";
pub const MEMBERS: &[u8] = b"members";
pub const CLUSTER: &[u8] = b"cluster";

pub const META_CONF_STATE: &[u8] = b"confState";
pub const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const META_TERM: &[u8] = b"term";
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// Bytes of a revision key; a tombstone's has one more (`'t'`).
pub const REVISION_BYTES: usize = 17;

/// The `key` bucket's key for revision `(main, sub)`.
pub fn encode_revision(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(REVISION_BYTES + 1);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// `(main, sub, tombstone)` of a `key` bucket key, or `None` if it is not one: 17 or 18 bytes,
/// `'_'` at 8, a trailing `'t'` if 18, and non-negative revisions (etcd 3.6's rules).
pub fn decode_revision(key: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match key.len() {
        REVISION_BYTES => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[0..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    if main < 0 || sub < 0 {
        return None;
    }
    Some((main, sub, tombstone))
}

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}
