//! oxetcd: an etcd-compatible, Raft-replicated key-value store. See docs/ARCHITECTURE.md.

pub mod apply;
pub mod lease;
pub mod mvcc;
pub mod proto;
