//! oxetcd: an etcd-compatible, Raft-replicated key-value store. See docs/ARCHITECTURE.md.

pub mod config;
pub mod ids;
pub mod logging;
pub mod proto;
