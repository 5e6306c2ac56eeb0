//! `cargo test --features sim` at the root runs the deterministic simulation suite: this target
//! includes the sim crate's runner, which re-runs `cargo test -p sim --tests` under
//! `--cfg madsim` (see sim/tests/run_madsim.rs and docs/simulation.md).
#![cfg(all(feature = "sim", not(madsim)))]

#[path = "../sim/tests/run_madsim.rs"]
mod run_madsim;
