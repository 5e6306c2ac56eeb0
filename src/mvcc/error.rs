//! `KvError`: every way a KV or lease request can fail, as a typed value.
//!
//! Owns the mapping from an error to etcd's exact message text (clients compare these strings, see
//! `reference/etcd-api.md` §2). The gRPC status code is chosen by the server, not here.
//!
//! Invariant: `etcd_message` returns exactly the text etcd 3.4 sends for the same condition.
//! Invariant: an error returned by a write leaves the store unchanged.

use std::fmt;

/// Failure of a KV or lease request, either at validation or at apply time. Serde only for a
/// forwarded proposal's answer (`raft::forward`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KvError {
    /// The requested revision was removed by compaction (`compact_revision` is the current one).
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    /// The requested revision has not been written yet.
    FutureRev {
        requested: i64,
        current_revision: i64,
    },
    /// A request without a key (range, put, delete or a txn compare).
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a missing key, or an empty `RequestOp` in a txn.
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    ValueProvided,
    /// `ignore_lease` together with a non-zero lease.
    LeaseProvided,
    /// A txn whose compare, success or failure list exceeds the op budget.
    TooManyOps { ops: usize, ops_max: usize },
    /// A key put twice, or put and deleted, in one txn branch.
    DuplicateKey,
    /// A range with a sort order or target outside the protocol enum.
    InvalidSortOption,
    /// The lease does not exist (put with a lease, revoke, grant with ID 0).
    LeaseNotFound { id: i64 },
    /// Grant of a lease ID that is in use.
    LeaseExists { id: i64 },
    /// Grant with a TTL above the maximum.
    LeaseTtlTooLarge { ttl_seconds: i64 },
    /// A write that adds data while the NOSPACE alarm is raised (or would exceed the quota).
    NoSpace,
    /// Any write while the CORRUPT alarm is raised.
    Corrupt,
    /// The auth store refused the request (permissions, stale auth revision, auth management).
    Auth(crate::auth::AuthError),
    /// A leader's expiry of lease `id`, decided in term `decided`, reached the log in term
    /// `entry`: it changes nothing (internal; never a client's request).
    StaleLeaseExpiry { id: i64, decided: u64, entry: u64 },
}

impl KvError {
    /// etcd's exact error text for this condition.
    pub fn etcd_message(&self) -> &'static str {
        match self {
            KvError::Compacted { .. } => "etcdserver: mvcc: required revision has been compacted",
            KvError::FutureRev { .. } => "etcdserver: mvcc: required revision is a future revision",
            KvError::EmptyKey => "etcdserver: key is not provided",
            KvError::KeyNotFound => "etcdserver: key not found",
            KvError::ValueProvided => "etcdserver: value is provided",
            KvError::LeaseProvided => "etcdserver: lease is provided",
            KvError::TooManyOps { .. } => "etcdserver: too many operations in txn request",
            KvError::DuplicateKey => "etcdserver: duplicate key given in txn request",
            KvError::InvalidSortOption => "etcdserver: invalid sort option",
            KvError::LeaseNotFound { .. } => "etcdserver: requested lease not found",
            KvError::LeaseExists { .. } => "etcdserver: lease already exists",
            KvError::LeaseTtlTooLarge { .. } => "etcdserver: too large lease TTL",
            KvError::NoSpace => "etcdserver: mvcc: database space exceeded",
            KvError::Corrupt => "etcdserver: corrupt cluster",
            KvError::Auth(e) => e.etcd_message(),
            KvError::StaleLeaseExpiry { .. } => {
                "etcdserver: lease expiry decided in an earlier leader term, not applied"
            }
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.etcd_message())?;
        match self {
            KvError::Compacted {
                requested,
                compact_revision,
            } => {
                write!(
                    f,
                    " (requested {requested}, compacted at {compact_revision})"
                )
            }
            KvError::FutureRev {
                requested,
                current_revision,
            } => {
                write!(f, " (requested {requested}, current {current_revision})")
            }
            KvError::TooManyOps { ops, ops_max } => write!(f, " ({ops} > {ops_max})"),
            KvError::LeaseNotFound { id } | KvError::LeaseExists { id } => write!(f, " (id {id})"),
            KvError::LeaseTtlTooLarge { ttl_seconds } => write!(f, " (ttl {ttl_seconds}s)"),
            KvError::StaleLeaseExpiry { id, decided, entry } => {
                write!(
                    f,
                    " (id {id}, decided in term {decided}, logged in term {entry})"
                )
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for KvError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant with the text etcd sends; clients match these byte for byte.
    #[test]
    fn messages_match_etcd() {
        let table: &[(KvError, &str)] = &[
            (
                KvError::Compacted {
                    requested: 1,
                    compact_revision: 2,
                },
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                KvError::FutureRev {
                    requested: 9,
                    current_revision: 2,
                },
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (KvError::EmptyKey, "etcdserver: key is not provided"),
            (KvError::KeyNotFound, "etcdserver: key not found"),
            (KvError::ValueProvided, "etcdserver: value is provided"),
            (KvError::LeaseProvided, "etcdserver: lease is provided"),
            (
                KvError::TooManyOps {
                    ops: 129,
                    ops_max: 128,
                },
                "etcdserver: too many operations in txn request",
            ),
            (
                KvError::DuplicateKey,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                KvError::InvalidSortOption,
                "etcdserver: invalid sort option",
            ),
            (
                KvError::LeaseNotFound { id: 7 },
                "etcdserver: requested lease not found",
            ),
            (
                KvError::LeaseExists { id: 7 },
                "etcdserver: lease already exists",
            ),
            (
                KvError::LeaseTtlTooLarge {
                    ttl_seconds: 9_000_000_001,
                },
                "etcdserver: too large lease TTL",
            ),
        ];
        for (err, text) in table {
            assert_eq!(err.etcd_message(), *text);
            assert!(err.to_string().starts_with(text), "{err}");
        }
    }
}
