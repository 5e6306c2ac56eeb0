//! raft/ — the only module that imports openraft.
//!
//! It owns the type configuration, the log store on top of `wal/` ([`log_store`]), the state
//! machine on top of `apply` and `snap/` ([`state_machine`]), the peer network: gRPC client
//! ([`network`]) and server ([`peer`]) on `--listen-peer-urls` (also carrying the client requests a
//! follower forwards to the leader, [`forward`]), and the async runtime that makes openraft run on real tokio and under madsim
//! ([`runtime`]). [`node`] puts them together into a running member.
//!
//! Invariant: a write is acknowledged only after its entry is durable (fdatasync) on a quorum
//!   and applied; the log store reports an append flushed only from the WAL's sync callback.
//! Invariant: the state machine is changed only by applying committed entries in log order or
//!   by installing a snapshot; reads never mutate it.

// openraft's StorageError is large by design and every storage trait method returns it.
#![allow(clippy::result_large_err)]

pub mod batch;
pub mod check_quorum;
pub mod compaction;
pub mod confirm;
pub mod corrupt;
#[cfg(all(test, not(madsim)))]
mod format_tests;
pub mod forward;
pub mod log_store;
pub mod membership;
pub mod milestones;
pub mod network;
pub mod node;
pub mod peer;
pub mod runtime;
pub mod seed;
#[cfg(madsim)]
pub mod sim_faults;
pub mod slow_apply;
pub mod state_machine;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::apply::{Applied, Proposal};

/// A member's raft ID: etcd's member ID (see `ids`).
pub type NodeId = u64;

/// What raft knows about a member: etcd's `Member` minus the ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// `--name`; empty until the member has started (etcd prints "unstarted").
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// The result of applying one log entry, handed back to the proposer.
///
/// Replies travel only inside the process (from the state machine to the task that called
/// `client_write`), so they are never serialized; openraft's serde bound is met with impls that
/// refuse to run.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A blank or membership entry: nothing for a client.
    None,
    /// A client command was applied.
    Applied(Arc<Applied>),
    /// A `Proposal::Batch` was applied: one result per command, in the batch's order.
    Batch(Vec<Arc<Applied>>),
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "raft replies are process-local and never serialized",
        ))
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "raft replies are process-local and never deserialized",
        ))
    }
}

openraft::declare_raft_types!(
    /// oxetcd's openraft type configuration. A normal entry carries a versioned
    /// [`Proposal`] (see `apply::proposal` for its format).
    pub TypeConfig:
        D = Proposal,
        R = Reply,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = runtime::OxRuntime,
);

/// The running raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log ID of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// Stored membership of this configuration.
pub type StoredMembership = openraft::StoredMembership<NodeId, MemberNode>;
