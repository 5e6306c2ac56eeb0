//! Where log lines go: `--log-outputs` (`default` and `stderr` are stderr, `stdout`, file
//! paths appended to) and, with `--enable-log-rotation`, one file rotated by size the way
//! etcd's rotation library (lumberjack) does it under `--log-rotation-config-json`.
//!
//! Rotation rules (lumberjack's): before a write would make the file exceed `maxsize`
//! megabytes (0 = 100), the file is renamed to `<stem>-<2006-01-02T15-04-05.000><ext>` beside
//! it (UTC, or local time with `localtime`) and a new file is started; then rotated files
//! beyond `maxbackups` (0 = all kept) and older than `maxage` days (0 = no limit) are removed,
//! newest kept.
//!
//! Invariant: every line is written with one `write_all` and no buffering in between, so a
//! line is in the kernel before `write_line` returns and nothing is lost when the process
//! exits; a failed write cannot be reported anywhere and is dropped.
//! Invariant: the only state kept per output is an open file and its size; memory does not
//! grow with the amount logged.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One `--log-outputs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
    File(PathBuf),
}

/// `--log-rotation-config-json` (lumberjack's fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationConfig {
    /// Megabytes a file may reach before it is rotated; 0 means 100.
    pub max_size_mb: u64,
    /// Days a rotated file is kept; 0 keeps them regardless of age.
    pub max_age_days: u64,
    /// Rotated files kept; 0 keeps all.
    pub max_backups: u64,
    /// Name rotated files by local time instead of UTC.
    pub local_time: bool,
}

impl RotationConfig {
    /// lumberjack's default size limit.
    pub const MAX_SIZE_MB_DEFAULT: u64 = 100;

    fn max_bytes(&self) -> u64 {
        let mb = if self.max_size_mb == 0 {
            Self::MAX_SIZE_MB_DEFAULT
        } else {
            self.max_size_mb
        };
        mb.saturating_mul(1024 * 1024)
    }
}

/// An open destination.
enum Target {
    Stderr,
    Stdout,
    File(Mutex<File>),
    Rotating(Mutex<RotatingFile>),
}

/// Every destination of the process's log lines.
pub struct Outputs {
    targets: Vec<Target>,
}

impl Outputs {
    /// Opens `outputs` (duplicates are written once, as zap merges them); with `rotation`,
    /// file outputs rotate. The error is etcd's text for a file that cannot be opened.
    pub fn open(
        outputs: &[LogOutput],
        rotation: Option<RotationConfig>,
    ) -> Result<Outputs, String> {
        let mut seen: Vec<&LogOutput> = Vec::new();
        let mut targets = Vec::new();
        for output in outputs {
            if seen.contains(&output) {
                continue;
            }
            seen.push(output);
            targets.push(match (output, rotation) {
                (LogOutput::Stderr, _) => Target::Stderr,
                (LogOutput::Stdout, _) => Target::Stdout,
                (LogOutput::File(path), None) => {
                    let file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| sink_error(path, &e))?;
                    Target::File(Mutex::new(file))
                }
                (LogOutput::File(path), Some(config)) => Target::Rotating(Mutex::new(
                    RotatingFile::open(path.clone(), config, config.max_bytes())
                        .map_err(|e| sink_error(path, &e))?,
                )),
            });
        }
        Ok(Outputs { targets })
    }

    /// Writes one complete line to every destination.
    pub fn write_line(&self, line: &str) {
        for target in &self.targets {
            // A failed write cannot be reported anywhere (the log is where it would go).
            let _ = match target {
                Target::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
                Target::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
                Target::File(file) => file
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_all(line.as_bytes()),
                Target::Rotating(file) => file
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_line(line.as_bytes()),
            };
        }
    }
}

/// zap's error for an output it cannot open, with Go's `open` error text.
fn sink_error(path: &Path, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => e.to_string(),
    };
    format!(
        "couldn't open sink {:?}: open {}: {what}",
        path.display().to_string(),
        path.display()
    )
}

/// A size-rotated file. See the module rules.
pub struct RotatingFile {
    path: PathBuf,
    config: RotationConfig,
    max_bytes: u64,
    file: File,
    size: u64,
    /// The time source for backup names and ages (tests pin it).
    clock: fn() -> SystemTime,
}

impl RotatingFile {
    /// Opens (appending to) or creates `path`; files are rotated past `max_bytes`.
    pub fn open(path: PathBuf, config: RotationConfig, max_bytes: u64) -> std::io::Result<Self> {
        RotatingFile::open_with_clock(path, config, max_bytes, SystemTime::now)
    }

    fn open_with_clock(
        path: PathBuf,
        config: RotationConfig,
        max_bytes: u64,
        clock: fn() -> SystemTime,
    ) -> std::io::Result<Self> {
        let file = open_log_file(&path, false)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            config,
            max_bytes,
            file,
            size,
            clock,
        })
    }

    /// Appends one line, rotating first when it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let now = (self.clock)();
        let backup = self.backup_path(now);
        std::fs::rename(&self.path, &backup)?;
        self.file = open_log_file(&self.path, true)?;
        self.size = 0;
        self.remove_old_backups(now);
        Ok(())
    }

    /// `<dir>/<stem>-<timestamp><ext>`.
    fn backup_path(&self, t: SystemTime) -> PathBuf {
        let (stem, ext) = self.stem_and_ext();
        let name = format!(
            "{stem}-{}{ext}",
            backup_timestamp(t, self.config.local_time)
        );
        self.path.with_file_name(name)
    }

    fn stem_and_ext(&self) -> (String, String) {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.rfind('.') {
            Some(i) => (name[..i].to_string(), name[i..].to_string()),
            None => (name, String::new()),
        }
    }

    /// Rotated files of this log, newest first (their names sort by time).
    pub fn backups(&self) -> Vec<PathBuf> {
        let (stem, ext) = self.stem_and_ext();
        let prefix = format!("{stem}-");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut found: Vec<(String, PathBuf)> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let stamp = name.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
                    parse_backup_timestamp(stamp)?;
                    Some((stamp.to_string(), e.path()))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        found.sort();
        found.reverse();
        found.into_iter().map(|(_, p)| p).collect()
    }

    fn remove_old_backups(&self, now: SystemTime) {
        let (_, ext) = self.stem_and_ext();
        let (stem, _) = self.stem_and_ext();
        let prefix = format!("{stem}-");
        let max_age = Duration::from_secs(self.config.max_age_days.saturating_mul(86_400));
        for (i, path) in self.backups().into_iter().enumerate() {
            let too_many = self.config.max_backups > 0 && i as u64 >= self.config.max_backups;
            let too_old = self.config.max_age_days > 0
                && path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .and_then(|n| {
                        let stamp = n.strip_prefix(&prefix)?.strip_suffix(ext.as_str())?;
                        parse_backup_timestamp(stamp)
                    })
                    .is_some_and(|secs| {
                        let taken = UNIX_EPOCH + Duration::from_secs(secs);
                        now.duration_since(taken).unwrap_or_default() > max_age
                    });
            if too_many || too_old {
                // A backup that cannot be removed now is retried at the next rotation.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Opens a log file for appending (`truncate`: start it empty), mode 0600 when created.
fn open_log_file(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true);
    if truncate {
        options.write(true).truncate(true);
    } else {
        options.append(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Go's `2006-01-02T15-04-05.000` layout.
fn backup_timestamp(t: SystemTime, local: bool) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let offset_s = if local {
        local_offset_s(since.as_secs())
    } else {
        0
    };
    let secs = since.as_secs().saturating_add_signed(offset_s);
    let (year, month, day) = super::civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Seconds since the epoch named by a backup timestamp (read as UTC; only ages use it).
fn parse_backup_timestamp(stamp: &str) -> Option<u64> {
    let b = stamp.as_bytes();
    let dash = |i: usize| b.get(i) == Some(&b'-');
    if b.len() != 23
        || !(dash(4) && dash(7) && dash(13) && dash(16))
        || b[10] != b'T'
        || b[19] != b'.'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<u64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    num(20..23)?;
    Some(super::days_from_civil(year, month, day)? * 86_400 + h * 3600 + m * 60 + s)
}

/// The local time zone's offset from UTC at `epoch_s`, in seconds.
#[cfg(unix)]
fn local_offset_s(epoch_s: u64) -> i64 {
    let t = libc::time_t::try_from(epoch_s).unwrap_or(0);
    // SAFETY: localtime_r only writes the `tm` we own; both pointers are valid.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

#[cfg(not(unix))]
fn local_offset_s(_epoch_s: u64) -> i64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> SystemTime {
        // 2026-11-26T19:22:26.861Z
        UNIX_EPOCH + Duration::from_millis(1_795_720_946_861)
    }

    fn later() -> SystemTime {
        pinned() + Duration::from_secs(10 * 86_400)
    }

    #[test]
    fn backup_names_use_gos_layout() {
        assert_eq!(backup_timestamp(pinned(), false), "2026-11-26T19-22-26.861");
        let secs = parse_backup_timestamp("2026-11-26T19-22-26.861").unwrap();
        assert_eq!(secs, 1_795_720_946);
        assert_eq!(parse_backup_timestamp("2026-11-26T19:22:26.861"), None);
        assert_eq!(parse_backup_timestamp("x"), None);
    }

    fn config(max_backups: u64, max_age_days: u64) -> RotationConfig {
        RotationConfig {
            max_size_mb: 1,
            max_age_days,
            max_backups,
            local_time: false,
        }
    }

    #[test]
    fn rotates_before_a_line_that_would_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let mut f = RotatingFile::open_with_clock(path.clone(), config(0, 0), 30, pinned).unwrap();
        f.write_line(b"0123456789\n").unwrap();
        f.write_line(b"0123456789\n").unwrap();
        assert!(f.backups().is_empty());
        f.write_line(b"abcdefghij\n").unwrap();
        let backups = f.backups();
        assert_eq!(backups.len(), 1);
        assert_eq!(
            backups[0].file_name().unwrap().to_string_lossy(),
            "etcd-2026-11-26T19-22-26.861.log"
        );
        assert_eq!(
            std::fs::read_to_string(&backups[0]).unwrap(),
            "0123456789\n0123456789\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghij\n");
        // A line longer than the limit still goes out whole, into a file of its own.
        f.write_line(&[b'x'; 40]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 40]);
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        std::fs::write(&path, "0123456789012345678901234\n").unwrap();
        let mut f = RotatingFile::open_with_clock(path.clone(), config(0, 0), 30, pinned).unwrap();
        f.write_line(b"next\n").unwrap();
        assert_eq!(f.backups().len(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "next\n");
    }

    #[test]
    fn old_backups_are_removed_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        for stamp in [
            "2026-11-01T00-00-00.000",
            "2026-11-20T00-00-00.000",
            "2026-11-25T00-00-00.000",
        ] {
            std::fs::write(dir.path().join(format!("etcd-{stamp}.log")), "old\n").unwrap();
        }
        // Not a backup of this log: left alone.
        std::fs::write(dir.path().join("etcd-notes.log"), "keep\n").unwrap();
        let mut f = RotatingFile::open_with_clock(path.clone(), config(3, 0), 4, pinned).unwrap();
        f.write_line(b"abc\n").unwrap();
        f.write_line(b"def\n").unwrap();
        let names: Vec<String> = f
            .backups()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "etcd-2026-11-26T19-22-26.861.log",
                "etcd-2026-11-25T00-00-00.000.log",
                "etcd-2026-11-20T00-00-00.000.log",
            ]
        );
        assert!(dir.path().join("etcd-notes.log").exists());
        // Ten days later with maxage 7: only the newest rotation is young enough.
        let mut f = RotatingFile::open_with_clock(path, config(0, 7), 4, later).unwrap();
        f.write_line(b"ghi\n").unwrap();
        assert_eq!(f.backups().len(), 1);
    }

    #[test]
    fn outputs_open_files_and_report_etcds_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let outputs = Outputs::open(
            &[LogOutput::File(a.clone()), LogOutput::File(a.clone())],
            None,
        )
        .unwrap();
        outputs.write_line("{\"msg\":\"x\"}\n");
        // The duplicate output is written once.
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "{\"msg\":\"x\"}\n");
        let e = Outputs::open(&[LogOutput::File("/nonexistent/dir/x.log".into())], None)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "couldn't open sink \"/nonexistent/dir/x.log\": open /nonexistent/dir/x.log: no such \
             file or directory"
        );
    }
}
