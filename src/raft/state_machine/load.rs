//! Loading the member's own snapshot at startup: decoding it as it streams from its file, and
//! the structural check that runs after the start instead of before it.
//!
//! Invariant: only files this member wrote, whose checksums matched, are decoded here without
//! the check up front; a failed background check is recorded in `SmShared::image_defect`.

use std::sync::Weak;
use std::time::Instant;

use super::image::SnapshotImage;
use super::SmShared;
use crate::apply::{State, UncheckedState};

/// A [`SnapshotImage`] decoded without the store's structural check: only for a snapshot file
/// this member wrote, once its checksum matched (the check then runs in the background, see
/// [`StateMachineStore::recover`](super::StateMachineStore::recover)).
pub(super) type LocalSnapshotImage = SnapshotImage<UncheckedState>;

/// The structural check of the image loaded at startup failed.
#[derive(Debug)]
pub(super) struct ImageDefect(pub String);

impl std::fmt::Display for ImageDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the snapshot loaded at startup failed its check: {}",
            self.0
        )
    }
}

impl std::error::Error for ImageDefect {}

/// Decodes a local snapshot's data as it is streamed, never allocating past its length.
pub(super) fn decode_local_image(
    reader: &mut crate::snap::SnapReader<'_>,
) -> Result<LocalSnapshotImage, bincode::Error> {
    use bincode::Options;
    // The same encoding as `bincode::deserialize`, plus a bound on what a length may claim.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(reader.data_bytes())
        .deserialize_from(reader)
}

/// Runs the structural check of the image loaded at startup on `state` (a copy: the maps are
/// persistent, so writes to the live state do not disturb it), on its own thread where there is
/// one, and records a failure in `shared`.
pub(super) fn check_loaded_image(shared: Weak<SmShared>, index: u64, state: State) {
    #[cfg(not(madsim))]
    {
        let (thread_shared, thread_state) = (shared.clone(), state.clone());
        let spawned = std::thread::Builder::new()
            .name("snap-check".into())
            .spawn(move || {
                yield_to_foreground();
                run_image_check(&thread_shared, index, thread_state)
            });
        if spawned.is_ok() {
            return;
        }
        // No thread: check before serving, as a received snapshot is.
    }
    run_image_check(&shared, index, state);
}

/// Lowers the calling thread's CPU priority, so the background check yields to the startup
/// work (replaying the log tail, serving) on a busy machine. Best effort.
#[cfg(all(target_os = "linux", not(madsim)))]
fn yield_to_foreground() {
    const NICE: libc::c_int = 10;
    // SAFETY: plain system call; on Linux, PRIO_PROCESS with id 0 sets the nice value of the
    // calling thread only. A failure leaves the priority unchanged, which is harmless.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
}

#[cfg(all(not(target_os = "linux"), not(madsim)))]
fn yield_to_foreground() {}

fn run_image_check(shared: &Weak<SmShared>, index: u64, state: State) {
    let started = Instant::now();
    let result = state.check();
    drop(state);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => tracing::info!(index, elapsed_ms, "snapshot passed its structural check"),
        Err(defect) => {
            tracing::error!(
                index,
                %defect,
                "snapshot loaded at startup FAILED its structural check; this member stops \
                 applying entries"
            );
            if let Some(shared) = shared.upgrade() {
                let _ = shared.image_defect.set(defect);
            }
        }
    }
}
