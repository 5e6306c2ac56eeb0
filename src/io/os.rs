//! The real disk: `std::fs` with `fdatasync`, directory fsync, files 0600 and directories 0700.
//!
//! Invariant: every directory this type creates has its parent fsynced before `create_dir_all`
//! returns, so a durable file is never lost because its directory entry was not.
//! Invariant: `read_all` maps the file read-only; callers must not write a file while they hold
//! its mapping (the WAL and snapshot readers map files only before writing, or files that are
//! never written again).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Disk, DiskFile, FileBytes, OpenOptions};

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The machine's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

impl OsDisk {
    pub fn new() -> Self {
        OsDisk
    }
}

struct OsFile {
    file: File,
}

impl Disk for OsDisk {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Box<dyn DiskFile>> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(options.write)
            .create(options.create && !options.create_new)
            .create_new(options.create_new)
            .truncate(options.truncate)
            .mode(FILE_MODE)
            .open(path)?;
        Ok(Box::new(OsFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            // Names we did not create (not UTF-8) are skipped: no file of ours has such a name.
            if let Ok(name) = name.into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut missing: Vec<PathBuf> = Vec::new();
        let mut cursor = Some(dir);
        while let Some(path) = cursor {
            if path.as_os_str().is_empty() || path.exists() {
                break;
            }
            missing.push(path.to_path_buf());
            cursor = path.parent();
        }
        for path in missing.iter().rev() {
            match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            self.sync_dir(parent)?;
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

impl DiskFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn allocate(&self, len_bytes: u64) -> io::Result<()> {
        allocate_file(&self.file, len_bytes)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_all(&self) -> io::Result<FileBytes> {
        if self.len()? == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the mapping is read-only and our own code never writes a file while a mapping
        // of it is alive (module invariant). Another process modifying the data dir underneath a
        // running server is outside what any storage engine can defend against.
        let map = unsafe { memmap2::Mmap::map(&self.file)? };
        Ok(FileBytes::Mapped(map))
    }
}

#[cfg(target_os = "linux")]
fn allocate_file(file: &File, len_bytes: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let len = libc::off_t::try_from(len_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
    // SAFETY: plain syscall on a file descriptor we own, no pointers involved.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Some file systems do not support it; fall back to a sparse extension.
        libc::EOPNOTSUPP | libc::EINVAL => extend_sparse(file, len_bytes),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate_file(file: &File, len_bytes: u64) -> io::Result<()> {
    extend_sparse(file, len_bytes)
}

fn extend_sparse(file: &File, len_bytes: u64) -> io::Result<()> {
    if file.metadata()?.len() < len_bytes {
        file.set_len(len_bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_0600_dirs_0700_and_data_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = OsDisk::new();
        let dir = tmp.path().join("a/b");
        disk.create_dir_all(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let path = dir.join("f");
        let file = disk.open(&path, OpenOptions::create_new()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        file.allocate(4096).unwrap();
        file.write_at(b"hello", 100).unwrap();
        file.sync_data().unwrap();
        assert_eq!(file.len().unwrap(), 4096);
        let all = file.read_all().unwrap();
        assert!(matches!(all, FileBytes::Mapped(_)));
        assert_eq!(&all[100..105], b"hello");
        assert!(all[..100].iter().all(|&b| b == 0));

        assert!(disk.open(&path, OpenOptions::create_new()).is_err());
        disk.rename(&path, &dir.join("g")).unwrap();
        disk.sync_dir(&dir).unwrap();
        assert_eq!(disk.list(&dir).unwrap(), vec!["g".to_string()]);
        assert!(disk.exists(&dir.join("g")).unwrap());
        disk.remove(&dir.join("g")).unwrap();
        assert!(!disk.exists(&dir.join("g")).unwrap());
    }

    #[test]
    fn empty_file_reads_as_empty_owned_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = OsDisk::new();
        let file = disk
            .open(&tmp.path().join("e"), OpenOptions::create_new())
            .unwrap();
        let all = file.read_all().unwrap();
        assert!(all.is_empty());
    }
}
