//! `SimDisk`: an in-memory disk with a power-loss model, for tests and the simulator (madsim
//! has no disk model of its own). Deterministic for a given seed; no global randomness.
//!
//! # Fault model
//! - **Files** hold two images: the *live* bytes every read sees, and the *durable* bytes that
//!   survive a crash. Every `write_at` and `set_len` changes the live image at once and is queued
//!   as *pending*. `sync_data` applies the pending operations to the durable image in order.
//! - **Directory entries** are also two-level: `open(create)`, `rename` and `remove` change the
//!   live namespace at once; they reach the durable namespace only when `sync_dir` is called on
//!   the parent directory. Directories themselves are durable as soon as `create_dir_all`
//!   returns (the real disk fsyncs each new directory's parent to match).
//! - **`crash()`** (power loss) rebuilds the live state from the durable one: the namespace
//!   becomes the durable namespace (files whose names were never made durable vanish), and each
//!   surviving file keeps its durable image plus an in-order *prefix* of its pending operations,
//!   where the length of the prefix is drawn from the seed (so "all pending writes dropped" and
//!   "all kept" are both possible). With probability 1/2 the last kept write is *torn*: only
//!   the part of it before a 512-byte sector boundary (in file offsets) reaches the disk, the rest
//!   keeps the old bytes. Sectors are atomic: a sector is never half old, half new.
//!   `crash_drop_unsynced()` is the plain variant that keeps no pending operation.
//! - **Handles** opened before a crash fail with `EIO` afterwards: the process that held them died.
//! - **Injected faults**, on demand:
//!   - `fail_next_syncs(n)`: the next `n` `sync_data`/`sync_dir` calls return `EIO`. Like Linux,
//!     a failed `sync_data` forgets the pending writes of that file: they stay visible to reads
//!     but a later successful sync does not make them durable, so they vanish in a crash. A
//!     caller that retries fsync and then trusts the data is caught by this.
//!   - `set_enospc(true)`: every write, growing `set_len`/`allocate` and file creation fails with
//!     `ENOSPC` until cleared.
//!   - `set_sync_latency(d)`: every fsync takes `d` longer (a slow or overloaded device). The
//!     disk cannot block in virtual time itself; it reports `d` through `Disk::sync_latency`
//!     and the WAL writer waits that long (in simulated time) before each batch.
//!   - `flip_bit_on_read(path, offset, bit)`: reads of that byte return it with one bit flipped
//!     (the stored data is intact); `corrupt_durable` flips a stored bit (media damage).
//!
//! Paths are compared exactly as given: callers must build them the same way every time
//! (join names onto one directory path, no `..`).
//!
//! Invariant: the durable image of a file only changes in `sync_data`, `crash` and
//! `corrupt_durable`; the durable namespace only in `sync_dir`, `create_dir_all` and `crash`.
//! Invariant: after `crash()` every file's live image equals its durable image and no file has
//! pending operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{eio, enospc, Disk, DiskFile, FileBytes, OpenOptions, SplitMix64, SECTOR_BYTES};

/// A cloneable handle on one simulated disk; clones see the same disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

/// What a crash did, for tests that want to know they exercised the torn path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Pending operations that did not survive.
    pub dropped_ops: u64,
    /// Pending operations that survived whole.
    pub kept_ops: u64,
    /// Writes that survived only up to a sector boundary.
    pub torn_writes: u64,
    /// Files that vanished because their directory entry was never synced.
    pub lost_files: u64,
}

struct SimState {
    rng: SplitMix64,
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    fail_syncs: u32,
    enospc: bool,
    sync_latency: std::time::Duration,
    read_flips: BTreeMap<(u64, u64), u8>,
}

#[derive(Default)]
struct Inode {
    durable: Vec<u8>,
    live: Vec<u8>,
    pending: Vec<Pending>,
    /// A failed sync dropped pending writes: live and durable may differ even when in sync.
    forgot_writes: bool,
}

enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: u64,
    generation: u64,
    writable: bool,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("SimDisk")
            .field("files", &state.names.len())
            .field("generation", &state.generation)
            .finish()
    }
}

fn lock(state: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    // A panic while holding the lock leaves the model consistent enough to inspect.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl SimDisk {
    /// An empty disk whose crash choices are drawn from `seed`. The root (`""` and `/`) exists.
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::new());
        dirs.insert(PathBuf::from("/"));
        SimDisk {
            state: Arc::new(Mutex::new(SimState {
                rng: SplitMix64::new(seed),
                generation: 0,
                next_inode: 1,
                inodes: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dirs,
                fail_syncs: 0,
                enospc: false,
                sync_latency: std::time::Duration::ZERO,
                read_flips: BTreeMap::new(),
            })),
        }
    }

    /// Power loss with seeded survival of pending operations (see the module's fault model).
    pub fn crash(&self) -> CrashReport {
        lock(&self.state).crash(true)
    }

    /// Power loss that keeps nothing that was not synced.
    pub fn crash_drop_unsynced(&self) -> CrashReport {
        lock(&self.state).crash(false)
    }

    /// The next `count` fsyncs (file or directory) fail with `EIO`.
    pub fn fail_next_syncs(&self, count: u32) {
        lock(&self.state).fail_syncs = count;
    }

    /// Every fsync from now on takes `latency` longer (zero: a healthy disk again).
    pub fn set_sync_latency(&self, latency: std::time::Duration) {
        lock(&self.state).sync_latency = latency;
    }

    /// Turns "disk full" on or off.
    pub fn set_enospc(&self, on: bool) {
        lock(&self.state).enospc = on;
    }

    /// Reads of byte `byte_offset` of the file at `path` return it with bit `bit` (0..8) flipped.
    pub fn flip_bit_on_read(&self, path: &Path, byte_offset: u64, bit: u8) -> io::Result<()> {
        let mut state = lock(&self.state);
        let inode = *state.names.get(path).ok_or_else(|| not_found(path))?;
        state
            .read_flips
            .insert((inode, byte_offset), 1u8 << (bit % 8));
        Ok(())
    }

    /// Removes every read fault.
    pub fn clear_read_faults(&self) {
        lock(&self.state).read_flips.clear();
    }

    /// Flips a stored bit of the file at `path`, in both images (media damage).
    pub fn corrupt_durable(&self, path: &Path, byte_offset: u64, bit: u8) -> io::Result<()> {
        let mut state = lock(&self.state);
        let inode_id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.entry(inode_id).or_default();
        let at = usize::try_from(byte_offset).unwrap_or(usize::MAX);
        let mask = 1u8 << (bit % 8);
        match (inode.durable.get_mut(at), inode.live.get_mut(at)) {
            (Some(d), Some(l)) => {
                *d ^= mask;
                *l ^= mask;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: offset {byte_offset} past end", path.display()),
            )),
        }
    }

    /// The live bytes of the file at `path` (what a read would return, without read faults).
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = lock(&self.state);
        let inode = state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(state
            .inodes
            .get(inode)
            .map(|i| i.live.clone())
            .unwrap_or_default())
    }
}

impl SimState {
    fn crash(&mut self, seeded: bool) -> CrashReport {
        let mut report = CrashReport::default();
        self.generation += 1;
        report.lost_files = self
            .names
            .iter()
            .filter(|(path, inode)| self.durable_names.get(*path) != Some(inode))
            .count() as u64;
        self.names = self.durable_names.clone();
        let alive: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|id, _| alive.contains(id));
        self.read_flips.retain(|(id, _), _| alive.contains(id));
        for inode in self.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            let keep = if seeded {
                self.rng.below(pending.len() as u64 + 1) as usize
            } else {
                0
            };
            let tear_last = seeded && keep > 0 && self.rng.below(2) == 0;
            report.dropped_ops += (pending.len() - keep) as u64;
            for (i, op) in pending.into_iter().take(keep).enumerate() {
                if tear_last && i + 1 == keep {
                    if let Pending::Write { offset, data } = &op {
                        let cut = torn_length(*offset, data.len(), &mut self.rng);
                        if cut < data.len() {
                            report.torn_writes += 1;
                        }
                        let torn = Pending::Write {
                            offset: *offset,
                            data: data[..cut].to_vec(),
                        };
                        apply(&mut inode.durable, &torn);
                        continue;
                    }
                }
                report.kept_ops += 1;
                apply(&mut inode.durable, &op);
            }
            inode.live = inode.durable.clone();
            inode.forgot_writes = false;
        }
        report
    }

    fn inode_mut(&mut self, file: &SimFile) -> io::Result<&mut Inode> {
        if file.generation != self.generation {
            return Err(eio());
        }
        self.inodes.get_mut(&file.inode).ok_or_else(eio)
    }
}

/// How many bytes of a write at `offset` of `len` bytes survive a tear: a sector boundary
/// strictly inside the write, or all/nothing when the write sits inside one sector.
fn torn_length(offset: u64, len: usize, rng: &mut SplitMix64) -> usize {
    let end = offset + len as u64;
    let first_boundary = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
    if first_boundary >= end {
        return if rng.below(2) == 0 { 0 } else { len };
    }
    let boundaries = (end - 1 - first_boundary) / SECTOR_BYTES + 1;
    let boundary = first_boundary + rng.below(boundaries) * SECTOR_BYTES;
    debug_assert!(boundary > offset && boundary < end);
    debug_assert_eq!(boundary % SECTOR_BYTES, 0);
    (boundary - offset) as usize
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => image.resize(*len as usize, 0),
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Box<dyn DiskFile>> {
        let mut state = lock(&self.state);
        if state.dirs.contains(path) {
            return Err(io::Error::other("is a directory"));
        }
        let inode = match state.names.get(path).copied() {
            Some(_) if options.create_new => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"))
            }
            Some(inode) => inode,
            None if options.create || options.create_new => {
                if !state.dirs.contains(&parent_of(path)) {
                    return Err(not_found(&parent_of(path)));
                }
                if state.enospc {
                    return Err(enospc());
                }
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Inode::default());
                state.names.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(not_found(path)),
        };
        if options.truncate && options.write {
            if let Some(node) = state.inodes.get_mut(&inode) {
                node.live.clear();
                node.pending.push(Pending::SetLen(0));
            }
        }
        let generation = state.generation;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
            generation,
            writable: options.write,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.dirs.contains(&parent_of(to)) {
            return Err(not_found(&parent_of(to)));
        }
        let inode = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        if state.fail_syncs > 0 {
            state.fail_syncs -= 1;
            return Err(eio());
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let live: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        state.durable_names.retain(|p, _| !in_dir(p));
        state.durable_names.extend(live);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = state.names.keys();
        let mut names: Vec<String> = files
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .filter_map(|n| n.to_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        for ancestor in dir.ancestors() {
            if state.names.contains_key(ancestor) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "file in the way",
                ));
            }
        }
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = lock(&self.state);
        Ok(state.names.contains_key(path) || state.dirs.contains(path))
    }

    fn sync_latency(&self) -> std::time::Duration {
        lock(&self.state).sync_latency
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = lock(&self.state);
        let inode = state.inode_mut(self)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start >= inode.live.len() {
            return Ok(0);
        }
        let n = buf.len().min(inode.live.len() - start);
        buf[..n].copy_from_slice(&inode.live[start..start + n]);
        for ((id, at), mask) in state.read_flips.range((self.inode, offset)..) {
            if *id != self.inode || *at >= offset + n as u64 {
                break;
            }
            buf[(*at - offset) as usize] ^= mask;
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"));
        }
        let mut state = lock(&self.state);
        if state.enospc {
            return Err(enospc());
        }
        let inode = state.inode_mut(self)?;
        let op = Pending::Write {
            offset,
            data: buf.to_vec(),
        };
        apply(&mut inode.live, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        let fail = state.fail_syncs > 0;
        if fail {
            state.fail_syncs -= 1;
        }
        let inode = state.inode_mut(self)?;
        let pending = std::mem::take(&mut inode.pending);
        if fail {
            // Linux semantics: the error is reported once and the dirty data is forgotten.
            inode.forgot_writes = true;
            return Err(eio());
        }
        for op in &pending {
            apply(&mut inode.durable, op);
        }
        debug_assert!(inode.forgot_writes || inode.durable == inode.live);
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"));
        }
        let mut state = lock(&self.state);
        let enospc_on = state.enospc;
        let inode = state.inode_mut(self)?;
        if enospc_on && len_bytes > inode.live.len() as u64 {
            return Err(enospc());
        }
        let op = Pending::SetLen(len_bytes);
        apply(&mut inode.live, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        let current = self.len()?;
        if current < len_bytes {
            self.set_len(len_bytes)?;
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = lock(&self.state);
        Ok(state.inode_mut(self)?.live.len() as u64)
    }

    fn read_all(&self) -> io::Result<FileBytes> {
        let len = self.len()?;
        let mut bytes = vec![0u8; len as usize];
        let n = self.read_at(&mut bytes, 0)?;
        debug_assert_eq!(n as u64, len);
        Ok(FileBytes::Owned(bytes))
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
