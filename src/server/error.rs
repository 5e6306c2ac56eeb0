//! The one place where internal errors become etcd's gRPC status codes and texts.
//!
//! Clients match these strings exactly (Go's clientv3 maps them back to typed errors, kube-apiserver
//! compares against `ErrCompacted`), so every text here is etcd's, byte for byte.

use tonic::{Code, Status};

use crate::mvcc::KvError;
use crate::raft::forward::ForwardError;
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

/// The gRPC code etcd uses for a KV/lease error.
pub fn kv_code(e: &KvError) -> Code {
    match e {
        KvError::Compacted { .. }
        | KvError::FutureRev { .. }
        | KvError::LeaseTtlTooLarge { .. } => Code::OutOfRange,
        KvError::LeaseNotFound { .. } => Code::NotFound,
        KvError::LeaseExists { .. } => Code::FailedPrecondition,
        _ => Code::InvalidArgument,
    }
}

/// etcd's status for a KV/lease error.
pub fn kv_status(e: &KvError) -> Status {
    Status::new(kv_code(e), e.etcd_message())
}

/// etcd's status for a proposal that did not produce a result.
pub fn propose_status(e: &ProposeError) -> Status {
    match e {
        ProposeError::NoLeader => Status::unavailable(NO_LEADER),
        ProposeError::Stopped => Status::unavailable(SERVER_STOPPED),
        ProposeError::Timeout => Status::unavailable(REQUEST_TIMED_OUT),
        ProposeError::TooManyRequests => Status::resource_exhausted(TOO_MANY_REQUESTS),
    }
}

/// etcd's status for a request forwarded to the leader that got no result. A leader that no
/// longer leads did nothing ("leader changed"); a call without an answer may have been applied,
/// so it gets one of etcd's "request timed out" texts, never a transport error of its own.
pub fn forward_status(e: &ForwardError) -> Status {
    match e {
        ForwardError::Leader(ProposeError::NoLeader) => Status::unavailable(LEADER_CHANGED),
        ForwardError::Leader(e) => propose_status(e),
        ForwardError::Peer(PeerError::Timeout(_)) => Status::unavailable(REQUEST_TIMED_OUT),
        ForwardError::Peer(_) => Status::unavailable(REQUEST_TIMED_OUT_CONNECTION_LOST),
    }
}

/// Checks a request's encoded size against etcd's two limits: gRPC's receive limit (checked
/// here rather than in the transport so the text is grpc-go's) and `--max-request-bytes`.
pub fn check_size(
    encoded_bytes: usize,
    max_request_bytes: usize,
    grpc_max_recv_bytes: usize,
) -> Result<(), Status> {
    if encoded_bytes > grpc_max_recv_bytes {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({encoded_bytes} vs. {grpc_max_recv_bytes})"
        )));
    }
    if encoded_bytes > max_request_bytes {
        return Err(Status::invalid_argument(REQUEST_TOO_LARGE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_use_etcds_texts_and_codes() {
        assert!(check_size(10, 100, 200).is_ok());
        assert!(check_size(100, 100, 200).is_ok());
        let too_large = check_size(101, 100, 200)
            .err()
            .map(|s| (s.code(), s.message().to_string()));
        assert_eq!(
            too_large,
            Some((Code::InvalidArgument, REQUEST_TOO_LARGE.to_string()))
        );
        let grpc = check_size(201, 100, 200)
            .err()
            .map(|s| (s.code(), s.message().to_string()));
        assert_eq!(
            grpc,
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
                propose_status(&ProposeError::TooManyRequests),
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                forward_status(&ForwardError::Peer(PeerError::Timeout(
                    std::time::Duration::from_secs(7),
                ))),
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                forward_status(&ForwardError::Peer(PeerError::Transport("reset".into()))),
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to connection lost",
            ),
            (
                forward_status(&ForwardError::Leader(ProposeError::NoLeader)),
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                forward_status(&ForwardError::Leader(ProposeError::Timeout)),
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
        ];
        for (status, code, text) in cases {
            assert_eq!((status.code(), status.message()), (code, text));
        }
    }

    #[test]
    fn compacted_is_out_of_range_with_etcds_text() {
        let s = kv_status(&KvError::Compacted {
            requested: 1,
            compact_revision: 3,
        });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
