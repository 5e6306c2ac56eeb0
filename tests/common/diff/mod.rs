//! The differential harness: runs the same etcdctl case script against a reference server (real
//! etcd 3.5 by default) and a candidate (oxetcd by default) and compares every answer after
//! normalisation. See `script` for the case language and `normalize` for what may differ.
//!
//! Environment:
//! - `OXETCD_DIFF_CANDIDATE` = `oxetcd` (default) | `etcd` (= `etcd35`) | `etcd34`
//! - `OXETCD_DIFF_REFERENCE` = `etcd` (default, = `etcd35`) | `etcd34`
//! - `OXETCD_DIFF_VERBOSE=1` prints every step's normalised answers.
//! - `OXETCD_DIFF_LEASE=1` enables `lease.txt` (its `@skip-unless` directive).

pub mod normalize;
pub mod report;
pub mod runner;
pub mod script;

pub use runner::run_script_file;
