//! The typed errors of the API layer and etcd's exact texts for them.
//!
//! Every handler in `api/` fails with an [`ApiError`]; each variant knows etcd's status code
//! ([`Code`], numbered as gRPC's) and etcd's message. The transports turn them into their own
//! form in one place each: `grpc::status` into a gRPC status, and the HTTP side (gateway) into
//! the JSON error etcd's gateway writes.
//!
//! Clients match these strings exactly (Go's clientv3 maps them back to typed errors,
//! kube-apiserver compares against `ErrCompacted`), so every text here is etcd's, byte for byte.
//!
//! Invariant: no text is built outside this module for an error etcd also reports.

use std::fmt;

use crate::auth::AuthError;
use crate::mvcc::KvError;
use crate::raft::forward::ForwardError;
use crate::raft::membership::MembershipError;
use crate::raft::network::PeerError;
use crate::raft::node::ProposeError;

pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's text once a member's data failed a corruption check (etcd's CORRUPT alarm).
pub const CORRUPT: &str = "etcdserver: corrupt cluster";
pub const SERVER_STOPPED: &str = "etcdserver: server stopped";
pub const REQUEST_TIMED_OUT: &str = "etcdserver: request timed out";
/// A forwarded request whose connection to the leader failed: it may have been applied.
pub const REQUEST_TIMED_OUT_CONNECTION_LOST: &str =
    "etcdserver: request timed out, possibly due to connection lost";
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";
/// etcd's overload answer: apply lags commit by more than 5000 entries.
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's text when a learner receives a request it does not serve.
pub const LEARNER_UNSUPPORTED: &str = "etcdserver: rpc not supported for learner";
pub const INVALID_PEER_URLS: &str = "etcdserver: given member URLs are invalid";

/// A status code, numbered as gRPC's (the gateway writes the number in its JSON errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A KV or lease rule refused the request (before or after proposing).
    Kv(KvError),
    /// This member's proposal produced no result.
    Propose(ProposeError),
    /// The leader asked for a forwarded request gave no result.
    Forward(ForwardError),
    /// A membership change or leadership transfer was refused or did not finish.
    Membership(MembershipError),
    /// The client asked to fail without a leader (`hasleader`) and there is none.
    NoLeader,
    /// The member's data failed a structural check; nothing is served from it.
    Corrupt,
    /// A learner received a request only voters serve.
    Learner,
    /// Larger than `--max-request-bytes`.
    RequestTooLarge,
    /// Larger than the gRPC receive limit (`--max-request-bytes` + 512 KiB in etcd).
    MessageTooLarge { size: usize, max: usize },
    /// Peer URLs that do not parse.
    InvalidPeerUrls,
    /// A call this member does not implement yet; the text says which.
    Unimplemented(&'static str),
    /// A bug or a failed internal task; never an etcd outcome.
    Internal(String),
    /// An auth refusal etcd 3.5 returns unmapped (maintenance calls that need the root role):
    /// code Unknown, the auth package's own "auth: ..." text.
    AuthRaw(AuthError),
    /// A request that does not decode (the JSON gateway's body); the decoder's text.
    BadRequest(String),
    /// An Election or Lock call failed (etcd reports these with code Unknown).
    Recipe(super::recipe::RecipeError),
    /// Maintenance.Downgrade refused the request.
    Downgrade(super::maintenance::DowngradeError),
}

impl From<super::maintenance::DowngradeError> for ApiError {
    fn from(e: super::maintenance::DowngradeError) -> Self {
        ApiError::Downgrade(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Kv(KvError::Auth(e))
    }
}

impl ApiError {
    /// etcd's status code for this error.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Kv(e) => kv_code(e),
            ApiError::Propose(ProposeError::TooManyRequests) => Code::ResourceExhausted,
            ApiError::Propose(_) => Code::Unavailable,
            ApiError::Forward(ForwardError::Leader(e)) => ApiError::Propose(e.clone()).code(),
            ApiError::Forward(ForwardError::Peer(_)) => Code::Unavailable,
            ApiError::Membership(MembershipError::MemberNotFound) => Code::NotFound,
            ApiError::Membership(
                MembershipError::Timeout
                | MembershipError::TransferTimeout
                | MembershipError::Stopped
                | MembershipError::Unhealthy
                | MembershipError::Raft(_),
            ) => Code::Unavailable,
            ApiError::Membership(_) => Code::FailedPrecondition,
            ApiError::NoLeader | ApiError::Learner => Code::Unavailable,
            ApiError::Corrupt => Code::DataLoss,
            ApiError::RequestTooLarge | ApiError::InvalidPeerUrls => Code::InvalidArgument,
            ApiError::MessageTooLarge { .. } => Code::ResourceExhausted,
            ApiError::Unimplemented(_) => Code::Unimplemented,
            ApiError::Internal(_) => Code::Internal,
            ApiError::AuthRaw(_) => Code::Unknown,
            ApiError::Recipe(_) => Code::Unknown,
            ApiError::BadRequest(_) => Code::InvalidArgument,
            ApiError::Downgrade(e) => {
                use super::maintenance::DowngradeError as D;
                match e {
                    D::WrongFormat | D::InvalidTarget => Code::InvalidArgument,
                    D::NoInflight => Code::FailedPrecondition,
                    D::UnknownAction => Code::Unknown,
                    D::NotSupported => Code::Unimplemented,
                }
            }
        }
    }

    /// etcd's message for this error.
    pub fn message(&self) -> String {
        match self {
            ApiError::Kv(e) => e.etcd_message().to_string(),
            ApiError::Propose(e) => propose_text(e).to_string(),
            // A leader that no longer leads did nothing ("leader changed"); a call without an
            // answer may have been applied, so it gets one of etcd's "request timed out" texts,
            // never a transport error of its own that a client would retry.
            ApiError::Forward(ForwardError::Leader(ProposeError::NoLeader)) => {
                LEADER_CHANGED.to_string()
            }
            ApiError::Forward(ForwardError::Leader(e)) => propose_text(e).to_string(),
            ApiError::Forward(ForwardError::Peer(PeerError::Timeout(_))) => {
                REQUEST_TIMED_OUT.to_string()
            }
            ApiError::Forward(ForwardError::Peer(_)) => {
                REQUEST_TIMED_OUT_CONNECTION_LOST.to_string()
            }
            ApiError::Membership(e) => e.etcd_message().to_string(),
            ApiError::NoLeader => NO_LEADER.to_string(),
            ApiError::Corrupt => CORRUPT.to_string(),
            ApiError::Learner => LEARNER_UNSUPPORTED.to_string(),
            ApiError::RequestTooLarge => REQUEST_TOO_LARGE.to_string(),
            ApiError::MessageTooLarge { size, max } => {
                format!("grpc: received message larger than max ({size} vs. {max})")
            }
            ApiError::InvalidPeerUrls => INVALID_PEER_URLS.to_string(),
            ApiError::Unimplemented(what) => (*what).to_string(),
            ApiError::Internal(what) => what.clone(),
            ApiError::AuthRaw(e) => e.raw_message().to_string(),
            ApiError::Recipe(e) => e.message(),
            ApiError::BadRequest(what) => what.clone(),
            ApiError::Downgrade(e) => e.message().to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        ApiError::Kv(e)
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        ApiError::Propose(e)
    }
}

impl From<ForwardError> for ApiError {
    fn from(e: ForwardError) -> Self {
        ApiError::Forward(e)
    }
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        ApiError::Membership(e)
    }
}

fn propose_text(e: &ProposeError) -> &'static str {
    match e {
        ProposeError::NoLeader => NO_LEADER,
        ProposeError::Stopped => SERVER_STOPPED,
        ProposeError::Timeout => REQUEST_TIMED_OUT,
        ProposeError::TooManyRequests => TOO_MANY_REQUESTS,
    }
}

/// The code etcd uses for a KV/lease error.
fn kv_code(e: &KvError) -> Code {
    match e {
        KvError::Compacted { .. }
        | KvError::FutureRev { .. }
        | KvError::LeaseTtlTooLarge { .. } => Code::OutOfRange,
        KvError::LeaseNotFound { .. } | KvError::StaleLeaseExpiry { .. } => Code::NotFound,
        KvError::LeaseExists { .. } => Code::FailedPrecondition,
        KvError::NoSpace => Code::ResourceExhausted,
        KvError::Corrupt => Code::DataLoss,
        KvError::Auth(e) => auth_code(*e),
        _ => Code::InvalidArgument,
    }
}

/// The code etcd uses for an auth error.
pub fn auth_code(e: AuthError) -> Code {
    match e {
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::PermissionNotGiven
        | AuthError::InvalidAuthMgmt
        | AuthError::AuthOldRevision => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidAuthToken => Code::Unauthenticated,
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::AuthNotEnabled => Code::FailedPrecondition,
        // etcd returns it unmapped.
        AuthError::VerifyOnly => Code::Unknown,
    }
}

/// Checks a request's encoded size against etcd's two limits: gRPC's receive limit (checked
/// here rather than in the transport so the text is grpc-go's) and `--max-request-bytes`.
pub fn check_size(
    encoded_bytes: usize,
    max_request_bytes: usize,
    grpc_max_recv_bytes: usize,
) -> Result<(), ApiError> {
    if encoded_bytes > grpc_max_recv_bytes {
        return Err(ApiError::MessageTooLarge {
            size: encoded_bytes,
            max: grpc_max_recv_bytes,
        });
    }
    if encoded_bytes > max_request_bytes {
        return Err(ApiError::RequestTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(e: ApiError) -> (Code, String) {
        (e.code(), e.message())
    }

    #[test]
    fn size_limits_use_etcds_texts_and_codes() {
        assert!(check_size(10, 100, 200).is_ok());
        assert!(check_size(100, 100, 200).is_ok());
        assert_eq!(
            check_size(101, 100, 200).err().map(pair),
            Some((Code::InvalidArgument, REQUEST_TOO_LARGE.to_string()))
        );
        assert_eq!(
            check_size(201, 100, 200).err().map(pair),
            Some((
                Code::ResourceExhausted,
                "grpc: received message larger than max (201 vs. 200)".to_string()
            ))
        );
    }

    #[test]
    fn proposal_and_forwarding_failures_use_etcds_texts() {
        let cases = [
            (
                ApiError::Propose(ProposeError::TooManyRequests),
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                ApiError::Forward(ForwardError::Peer(PeerError::Timeout(
                    std::time::Duration::from_secs(7),
                ))),
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                ApiError::Forward(ForwardError::Peer(PeerError::Transport("reset".into()))),
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to connection lost",
            ),
            (
                ApiError::Forward(ForwardError::Leader(ProposeError::NoLeader)),
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                ApiError::Forward(ForwardError::Leader(ProposeError::Timeout)),
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                ApiError::Forward(ForwardError::Leader(ProposeError::TooManyRequests)),
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
        ];
        for (err, code, text) in cases {
            assert_eq!(pair(err), (code, text.to_string()));
        }
    }

    /// Every auth error with etcd's gRPC code and text (reference §2), and the raw form the
    /// maintenance calls use.
    #[test]
    fn auth_errors_use_etcds_codes_and_texts() {
        use AuthError as A;
        let table = [
            (
                A::RootUserNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                A::RootRoleNotExist,
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            (
                A::UserAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            (
                A::UserEmpty,
                Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                A::UserNotFound,
                Code::FailedPrecondition,
                "etcdserver: user name not found",
            ),
            (
                A::RoleAlreadyExist,
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            (
                A::RoleNotFound,
                Code::FailedPrecondition,
                "etcdserver: role name not found",
            ),
            (
                A::RoleEmpty,
                Code::InvalidArgument,
                "etcdserver: role name is empty",
            ),
            (
                A::AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                A::PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                A::RoleNotGranted,
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            (
                A::PermissionNotGranted,
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            (
                A::AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (
                A::InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                A::InvalidAuthMgmt,
                Code::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
            (
                A::AuthOldRevision,
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
        ];
        for (e, code, text) in table {
            assert_eq!(pair(e.into()), (code, text.to_string()), "{e:?}");
        }
        assert_eq!(
            pair(ApiError::AuthRaw(A::PermissionDenied)),
            (Code::Unknown, "auth: permission denied".to_string())
        );
    }

    #[test]
    fn kv_and_membership_errors_use_etcds_codes() {
        assert_eq!(
            pair(ApiError::Kv(KvError::Compacted {
                requested: 1,
                compact_revision: 3,
            })),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted".to_string()
            )
        );
        assert_eq!(
            pair(ApiError::Kv(KvError::LeaseNotFound { id: 1 })).0,
            Code::NotFound
        );
        assert_eq!(
            pair(ApiError::Membership(MembershipError::MemberNotFound)),
            (Code::NotFound, "etcdserver: member not found".to_string())
        );
        assert_eq!(
            pair(ApiError::Membership(MembershipError::IdExists)).0,
            Code::FailedPrecondition
        );
        assert_eq!(
            pair(ApiError::Membership(MembershipError::Unhealthy)),
            (
                Code::Unavailable,
                "etcdserver: unhealthy cluster".to_string()
            )
        );
        assert_eq!(
            pair(ApiError::Learner),
            (Code::Unavailable, LEARNER_UNSUPPORTED.to_string())
        );
        assert_eq!(pair(ApiError::Corrupt).0, Code::DataLoss);
    }
}
