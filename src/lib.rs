//! oxetcd: an etcd-compatible, Raft-replicated key-value store. See docs/ARCHITECTURE.md.

pub mod io;
pub mod proto;
pub mod snap;
pub mod wal;
