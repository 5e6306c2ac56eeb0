//! Deterministic simulation suites for oxetcd.
//!
//! The checkers ([`authcheck`], [`history`], [`linear`], [`durability`], [`serial`], [`watchcheck`],
//! [`leasecheck`], [`invariants`]) are plain code, unit-tested in every build. The harness that
//! runs production members inside madsim (`cluster`, `workload`, `scenario` for one member with
//! disk faults, `multi` for 3 and 5 members with network faults, `authsim` for auth changes
//! under the same nemesis, `v2load` for v2 clients beside the members) exists only under
//! `--cfg madsim`; the suites live in `tests/` and are `#![cfg(madsim)]`.
//! See docs/simulation.md for the fault model and how to replay a seed.
//!
//! [`chaos`] (not under madsim) is the real-process nemesis suite's harness: real member
//! processes behind peer proxies, real etcd clients, the same checkers (docs/reliability.md).

pub mod authcheck;
#[cfg(not(madsim))]
pub mod chaos;
pub mod durability;
pub mod history;
pub mod invariants;
pub mod leasecheck;
pub mod linear;
pub mod serial;
pub mod watchcheck;

#[cfg(madsim)]
pub mod authsim;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod multi;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod v2load;
#[cfg(madsim)]
pub mod workload;
