//! Deterministic simulation suites for oxetcd (compiled with `--cfg madsim`).
