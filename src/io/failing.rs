//! io/failing.rs — a test knob on the real disk: [`FailingSyncs`] is [`OsDisk`] whose file
//! syncs start failing with EIO after a given number of successful ones, so process-level tests
//! can watch a member stop on a failed fsync (`OXETCD_TEST_FAIL_FSYNC_AFTER`, read by the
//! binary). Never used unless that variable is set.
//!
//! Invariant: every operation but `sync_data` is the real disk's, unchanged.

use std::path::Path;
use std::sync::Arc;

use super::os::OsDisk;
use super::Disk;

impl FailingSyncs {
    /// The real disk, whose file syncs fail once `after` successful ones have been used up.
    pub fn new(after: u64) -> Self {
        FailingSyncs {
            inner: OsDisk::new(),
            left: Arc::new(std::sync::atomic::AtomicU64::new(after)),
        }
    }
}

/// [`OsDisk`] whose file syncs fail once `left` successful ones have been used up.
#[derive(Debug)]
pub struct FailingSyncs {
    inner: OsDisk,
    left: Arc<std::sync::atomic::AtomicU64>,
}

struct FailingSyncsFile {
    inner: Box<dyn super::DiskFile>,
    left: Arc<std::sync::atomic::AtomicU64>,
}

impl Disk for FailingSyncs {
    fn open(
        &self,
        path: &Path,
        options: super::OpenOptions,
    ) -> std::io::Result<Box<dyn super::DiskFile>> {
        let inner = self.inner.open(path, options)?;
        Ok(Box::new(FailingSyncsFile {
            inner,
            left: self.left.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
}

impl super::DiskFile for FailingSyncsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let allowed = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if allowed {
            self.inner.sync_data()
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        }
    }
    fn set_len(&self, len_bytes: u64) -> std::io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn allocate(&self, len_bytes: u64) -> std::io::Result<()> {
        self.inner.allocate(len_bytes)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_all(&self) -> std::io::Result<super::FileBytes> {
        self.inner.read_all()
    }
}
