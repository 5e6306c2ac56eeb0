//! `LeaseTable`: the granted leases, their granted TTLs and the keys attached to each.
//!
//! Pure bookkeeping. There is no clock here: expiry deadlines live in the leader's [`lessor`]
//! (which is handed instants, never reads a clock), and the leader proposes a revoke when a
//! lease runs out; applying that revoke (through `apply`) deletes the keys. Lease
//! IDs are chosen by the proposer (ID 0 is replaced by a fresh ID before proposing), so granting
//! is deterministic. The minimum TTL is also raised by the proposer.
//!
//! Invariant: a key is attached to lease L exactly when it is live in the KV store with lease L
//!            (kept by `apply`, checked by `apply::State::check`).
//! Invariant: every lease has an ID ≠ 0 and a granted TTL ≤ `LEASE_TTL_SECONDS_MAX`.

pub mod lessor;

use std::fmt;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

/// etcd's largest grantable TTL.
pub const LEASE_TTL_SECONDS_MAX: i64 = 9_000_000_000;

/// Why a lease operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// No lease with this ID (also: granting ID 0, which means "pick one" and must be resolved
    /// before proposing).
    NotFound { id: i64 },
    /// The ID is already granted.
    Exists { id: i64 },
    /// The TTL is above `LEASE_TTL_SECONDS_MAX`.
    TtlTooLarge { ttl_seconds: i64 },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::NotFound { id } => write!(f, "lease {id} not found"),
            LeaseError::Exists { id } => write!(f, "lease {id} already exists"),
            LeaseError::TtlTooLarge { ttl_seconds } => {
                write!(f, "lease TTL {ttl_seconds}s above {LEASE_TTL_SECONDS_MAX}s")
            }
        }
    }
}

impl std::error::Error for LeaseError {}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    ttl_seconds: i64,
    keys: OrdSet<Arc<[u8]>>,
}

/// Every granted lease. `Clone` is O(1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: OrdMap<i64, Lease>,
}

impl LeaseTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants lease `id` with `ttl_seconds` (already raised to the minimum by the proposer).
    pub fn grant(&mut self, id: i64, ttl_seconds: i64) -> Result<(), LeaseError> {
        if id == 0 {
            return Err(LeaseError::NotFound { id });
        }
        if ttl_seconds > LEASE_TTL_SECONDS_MAX {
            return Err(LeaseError::TtlTooLarge { ttl_seconds });
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists { id });
        }
        self.leases.insert(
            id,
            Lease {
                ttl_seconds,
                keys: OrdSet::new(),
            },
        );
        Ok(())
    }

    /// Removes lease `id`, which must have no keys left (the caller deletes them first).
    pub fn revoke(&mut self, id: i64) -> Result<(), LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound { id })?;
        debug_assert!(
            lease.keys.is_empty()
                || crate::canary::active(crate::canary::Canary::PlainPutKeepsLease),
            "lease {id} revoked with keys attached"
        );
        Ok(())
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The TTL lease `id` was granted with.
    pub fn granted_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|lease| lease.ttl_seconds)
    }

    /// The keys attached to lease `id`, in key order.
    pub fn keys(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        self.leases
            .get(&id)
            .map(|lease| lease.keys.iter().map(|k| k.to_vec()).collect())
    }

    /// Every lease as (ID, granted TTL), in ID order.
    pub fn leases(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.leases
            .iter()
            .map(|(id, lease)| (*id, lease.ttl_seconds))
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Attaches `key` to lease `id`. Returns false if the lease does not exist.
    pub fn attach(&mut self, id: i64, key: &[u8]) -> bool {
        match self.leases.get_mut(&id) {
            Some(lease) => {
                lease.keys.insert(Arc::from(key));
                true
            }
            None => false,
        }
    }

    /// Detaches `key` from lease `id`. Returns false if it was not attached.
    pub fn detach(&mut self, id: i64, key: &[u8]) -> bool {
        self.leases
            .get_mut(&id)
            .is_some_and(|lease| lease.keys.remove(key).is_some())
    }

    /// Whether `key` is attached to lease `id`.
    pub fn is_attached(&self, id: i64, key: &[u8]) -> bool {
        self.leases
            .get(&id)
            .is_some_and(|lease| lease.keys.contains(key))
    }

    /// Every attachment as (lease ID, key), by lease then key.
    pub fn attachments(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        self.leases
            .iter()
            .flat_map(|(id, lease)| lease.keys.iter().map(move |key| (*id, key.as_ref())))
    }

    /// Number of keys attached to any lease.
    pub fn attached_count(&self) -> usize {
        self.leases.values().map(|lease| lease.keys.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_rules() {
        let mut table = LeaseTable::new();
        assert_eq!(table.grant(7, 10), Ok(()));
        assert_eq!(table.grant(7, 10), Err(LeaseError::Exists { id: 7 }));
        assert_eq!(table.grant(0, 10), Err(LeaseError::NotFound { id: 0 }));
        assert_eq!(table.grant(8, LEASE_TTL_SECONDS_MAX), Ok(()));
        assert_eq!(
            table.grant(9, LEASE_TTL_SECONDS_MAX + 1),
            Err(LeaseError::TtlTooLarge {
                ttl_seconds: LEASE_TTL_SECONDS_MAX + 1
            })
        );
        assert_eq!(
            table.leases().collect::<Vec<_>>(),
            vec![(7, 10), (8, LEASE_TTL_SECONDS_MAX)]
        );
        assert_eq!(table.granted_ttl(7), Some(10));
        assert_eq!(table.granted_ttl(9), None);
    }

    #[test]
    fn attach_detach_revoke() {
        let mut table = LeaseTable::new();
        table.grant(1, 5).unwrap();
        assert!(table.attach(1, b"b"));
        assert!(table.attach(1, b"a"));
        assert!(!table.attach(2, b"a"));
        assert_eq!(table.keys(1), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(table.attached_count(), 2);
        assert!(table.detach(1, b"a"));
        assert!(!table.detach(1, b"a"));
        assert!(table.detach(1, b"b"));
        assert_eq!(table.revoke(1), Ok(()));
        assert_eq!(table.revoke(1), Err(LeaseError::NotFound { id: 1 }));
        assert!(table.is_empty());
        assert_eq!(table.keys(1), None);
    }
}
