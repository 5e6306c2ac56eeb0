//! oxetcd: an etcd-compatible, Raft-replicated key-value store. See docs/ARCHITECTURE.md.

pub mod api;
pub mod apply;
pub mod auth;
pub mod backend;
pub mod bbolt;
pub mod canary;
pub mod config;
#[cfg(not(madsim))]
pub mod gateway;
#[cfg(test)]
mod golden;
pub mod grpc;
#[cfg(not(madsim))]
pub mod http;
pub mod ids;
pub mod io;
pub mod lease;
pub mod logging;
pub mod member;
pub mod metrics;
pub mod mvcc;
pub mod net;
pub mod proto;
pub mod raft;
pub mod snap;
pub mod v2store;
pub mod wal;
pub mod watch;
