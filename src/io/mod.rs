//! The I/O seam: every disk access, clock read and random draw of the server goes through the
//! traits of this module, so the same code runs on the real machine ([`os::OsDisk`],
//! [`SystemClock`], [`SystemRng`]) and inside tests and the simulator ([`sim::SimDisk`],
//! [`ManualClock`], [`SeededRng`]).
//!
//! The traits are object safe: callers hold `Arc<dyn Disk>` and `Box<dyn DiskFile>` and are not
//! generic over the implementation. Errors are plain `std::io::Error`s; the layers above (wal,
//! snap) wrap them with the operation and path that failed.
//!
//! Invariant: nothing outside `io/` calls `std::fs` or `memmap2` directly for data files.
//! Invariant: `DiskFile::write_at` either writes the whole buffer or returns an error; there are
//! no short writes to handle above this layer.
//! Invariant: data written through a `DiskFile` is durable only after `sync_data` returned `Ok`;
//! a directory entry (create, rename, remove) is durable only after `Disk::sync_dir` of its parent
//! returned `Ok`.

mod clock;
pub mod failing;
pub mod le;
pub mod os;
mod rng;
pub mod sim;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;

pub use clock::{Clock, ManualClock, SystemClock};
pub use rng::{Rng, SeededRng, SplitMix64, SystemRng};

/// The sector size the storage layer assumes is written atomically. Formats align the words they
/// must read back whole (frame heads and tails) so that none straddles a sector.
pub const SECTOR_BYTES: u64 = 512;

/// How to open a file. Reading is always allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Allow writes (`write_at`, `set_len`, `allocate`).
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail with `AlreadyExists` if the file exists (implies `create`).
    pub create_new: bool,
    /// Truncate an existing file to zero bytes.
    pub truncate: bool,
}

impl OpenOptions {
    /// Open an existing file for reading only.
    pub const fn read_only() -> Self {
        OpenOptions {
            write: false,
            create: false,
            create_new: false,
            truncate: false,
        }
    }

    /// Open an existing file for reading and writing.
    pub const fn read_write() -> Self {
        OpenOptions {
            write: true,
            create: false,
            create_new: false,
            truncate: false,
        }
    }

    /// Create a new file that must not exist yet, opened for reading and writing.
    pub const fn create_new() -> Self {
        OpenOptions {
            write: true,
            create: true,
            create_new: true,
            truncate: false,
        }
    }
}

/// A file system. Paths are used as given: callers join names onto the directories they own.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Opens (and possibly creates) a file. New files get mode 0600.
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Box<dyn DiskFile>>;
    /// Renames a file; replaces `to` if it exists. Durable after `sync_dir` of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable after `sync_dir` of its parent.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its missing parents with mode 0700, durably.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Extra time an fdatasync takes on this disk right now, for disks that cannot block for
    /// real (the simulator's, where a writer must wait in virtual time instead). Real disks
    /// block inside `sync_data` and report zero.
    fn sync_latency(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// An open file. All offsets are absolute; there is no cursor.
pub trait DiskFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, growing the file if needed. Not durable until `sync_data`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write and size change so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the file length, cutting or zero-extending it.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Reserves disk blocks for `len_bytes` and makes the file at least that long, so later
    /// writes inside it do not fail for lack of space where the file system supports it.
    fn allocate(&self, len_bytes: u64) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The whole file; memory-mapped where the implementation can.
    fn read_all(&self) -> io::Result<FileBytes>;
}

/// The bytes of a whole file, either memory-mapped (real disk) or owned (simulated disk, empty
/// files).
pub enum FileBytes {
    /// A read-only mapping of the file.
    Mapped(memmap2::Mmap),
    /// A copy of the file.
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            FileBytes::Mapped(_) => "Mapped",
            FileBytes::Owned(_) => "Owned",
        };
        write!(f, "FileBytes::{kind}({} bytes)", self.len())
    }
}

/// `EIO`, as the real kernel reports a failed fsync.
pub fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// `ENOSPC`, as the real kernel reports a full disk.
pub fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// Reads exactly `buf.len()` bytes at `offset` or fails with `UnexpectedEof`.
pub fn read_exact_at(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read at offset {}", offset + done as u64),
            ));
        }
        done += n;
    }
    Ok(())
}
