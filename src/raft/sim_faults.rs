//! Network faults the simulator injects into the peer transport (compiled only under
//! `cfg(madsim)`): raft message duplication.
//!
//! madsim's connections are reliable, ordered streams (as TCP is), so a message is never
//! delivered twice by the network itself. What raft must survive is a request sent again on
//! another connection and arriving late: a sender that retried, a proxy that replayed. With
//! [`set_duplicate_pct`] above zero, that share of the append-entries, vote and snapshot
//! requests a member sends is sent a second time after a seeded delay of up to
//! [`DUPLICATE_DELAY_MAX`], and the second reply is dropped.
//!
//! The setting is per thread: madsim runs a whole simulated cluster on the test's thread.
//! Invariant: every draw comes from madsim's seeded RNG; with the setting at zero (the default)
//! the transport behaves exactly as in production.

use std::cell::Cell;
use std::time::Duration;

use madsim::rand::Rng;

/// Longest delay before a duplicated request is sent again.
pub const DUPLICATE_DELAY_MAX: Duration = Duration::from_millis(400);

thread_local! {
    static DUPLICATE_PCT: Cell<u32> = const { Cell::new(0) };
}

/// Sends `pct` percent (0..=100) of raft requests twice from now on.
pub fn set_duplicate_pct(pct: u32) {
    DUPLICATE_PCT.with(|p| p.set(pct.min(100)));
}

/// The delay after which to send this request again, or `None` to send it once.
pub(crate) fn draw_duplicate() -> Option<Duration> {
    let pct = DUPLICATE_PCT.with(Cell::get);
    if pct == 0 {
        return None;
    }
    let mut rng = madsim::rand::thread_rng();
    if rng.gen_range(0..100u32) >= pct {
        return None;
    }
    let max_ms = u64::try_from(DUPLICATE_DELAY_MAX.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(rng.gen_range(0..=max_ms)))
}
