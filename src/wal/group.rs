//! Group commit: many writers share one fdatasync.
//!
//! `GroupCommit` owns the `Wal`. In a normal build a dedicated thread takes every queued
//! operation, writes them all, runs ONE `sync`, and only then calls each operation's callback,
//! in submission order. Under `cfg(madsim)` there are no threads: `submit` writes, syncs and
//! calls back inline, which keeps simulation deterministic.
//!
//! Invariant: a callback receives `Ok` only after a sync that covers its operation succeeded.
//! Invariant: callbacks run in submission order, never while the `Wal` is borrowed by the caller.

use std::sync::{Arc, Mutex};

use super::error::WalError;
use super::log::Wal;
use super::LogRecord;

/// One operation on the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalOp {
    Append(Vec<LogRecord>),
    SaveVote(Vec<u8>),
    SaveCommitted(Vec<u8>),
    TruncateFrom(u64),
    PurgeUpto {
        index: u64,
        marker: Vec<u8>,
    },
    /// Writes nothing; completes once everything submitted before it is durable.
    Sync,
}

/// Called once with the outcome of an operation.
pub type Done = Box<dyn FnOnce(Result<(), WalError>) + Send>;

impl Wal {
    /// Writes one operation without syncing.
    pub fn execute(&mut self, op: &WalOp) -> Result<(), WalError> {
        match op {
            WalOp::Append(entries) => self.append(entries),
            WalOp::SaveVote(vote) => self.save_vote(vote),
            WalOp::SaveCommitted(committed) => self.save_committed(committed),
            WalOp::TruncateFrom(index) => self.truncate_from(*index),
            WalOp::PurgeUpto { index, marker } => self.purge_upto(*index, marker),
            WalOp::Sync => Ok(()),
        }
    }
}

/// A cloneable handle on the writer that owns the `Wal`.
#[derive(Clone)]
pub struct GroupCommit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer.
    pub fn new(wal: Wal) -> GroupCommit {
        GroupCommit {
            inner: Arc::new(Inner::start(wal)),
        }
    }

    /// Queues `op`; `done` is called once the operation is durable or has failed.
    pub fn submit(&self, op: WalOp, done: Done) {
        self.inner.submit(Job { op, done });
    }

    /// `submit` as a future.
    pub async fn run(&self, op: WalOp) -> Result<(), WalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            op,
            Box::new(move |result| {
                // The receiver may be gone if the caller stopped waiting; nothing to report then.
                let _ = tx.send(result);
            }),
        );
        rx.await.unwrap_or(Err(WalError::Closed))
    }

    /// Stops the writer after the queued operations and returns the `Wal` (once; later calls
    /// and other clones get `None`, and their submissions fail with `Closed`).
    pub fn shutdown(&self) -> Option<Wal> {
        self.inner.shutdown()
    }
}

struct Job {
    op: WalOp,
    done: Done,
}

/// Writes a batch, syncs once, then reports. Returns the callbacks with their outcomes so the
/// caller can run them after releasing any lock.
fn commit_batch(wal: &mut Wal, batch: Vec<Job>) -> Vec<(Done, Result<(), WalError>)> {
    // Planted bug (test-only `canary` feature): most batches are acknowledged without a sync.
    let ack_before_sync = crate::canary::skip_this_sync();
    let written: Vec<(Done, Result<(), WalError>)> = batch
        .into_iter()
        .map(|job| {
            let result = wal.execute(&job.op);
            (job.done, result)
        })
        .collect();
    let synced = if ack_before_sync { Ok(()) } else { wal.sync() };
    written
        .into_iter()
        .map(|(done, result)| {
            let outcome = match (result, &synced) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(e.clone()),
                (Ok(()), Ok(())) => Ok(()),
            };
            (done, outcome)
        })
        .collect()
}

#[cfg(not(madsim))]
struct Inner {
    tx: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Wal>>>,
}

/// Upper bound on operations sharing one sync, so callbacks are not delayed forever under a
/// constant stream of submissions.
#[cfg(not(madsim))]
const BATCH_OPS_MAX: usize = 4096;

#[cfg(not(madsim))]
impl Inner {
    fn start(wal: Wal) -> Inner {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer_loop(wal, rx));
        let thread = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without the thread nothing can be written; every submit reports Closed.
                tracing::error!(error = %e, "wal: cannot start writer thread");
                None
            }
        };
        let tx = thread.is_some().then_some(tx);
        Inner {
            tx: Mutex::new(tx),
            thread: Mutex::new(thread),
        }
    }

    fn submit(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let rejected = match tx.as_ref() {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        drop(tx);
        if let Some(job) = rejected {
            (job.done)(Err(WalError::Closed));
        }
    }

    fn shutdown(&self) -> Option<Wal> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        match handle.join() {
            Ok(wal) => Some(wal),
            Err(_) => {
                tracing::error!("wal: writer thread panicked");
                None
            }
        }
    }
}

#[cfg(not(madsim))]
impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.shutdown());
    }
}

#[cfg(not(madsim))]
fn writer_loop(mut wal: Wal, rx: std::sync::mpsc::Receiver<Job>) -> Wal {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_OPS_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        for (done, outcome) in commit_batch(&mut wal, batch) {
            done(outcome);
        }
    }
    wal
}

#[cfg(madsim)]
struct Inner {
    wal: Mutex<Option<Wal>>,
}

#[cfg(madsim)]
impl Inner {
    fn start(wal: Wal) -> Inner {
        Inner {
            wal: Mutex::new(Some(wal)),
        }
    }

    fn submit(&self, job: Job) {
        let mut guard = self.wal.lock().unwrap_or_else(|p| p.into_inner());
        let Some(wal) = guard.as_mut() else {
            drop(guard);
            (job.done)(Err(WalError::Closed));
            return;
        };
        let reports = commit_batch(wal, vec![job]);
        drop(guard);
        for (done, outcome) in reports {
            done(outcome);
        }
    }

    fn shutdown(&self) -> Option<Wal> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Condvar;

    use super::*;
    use crate::io::sim::SimDisk;
    use crate::io::{Disk, DiskFile, FileBytes, OpenOptions};
    use crate::wal::WalConfig;

    /// A disk whose file syncs are counted and can be held at a gate, so a test can queue
    /// operations while the writer is inside a sync.
    #[derive(Debug, Clone)]
    struct GatedDisk {
        inner: SimDisk,
        syncs: Arc<AtomicU64>,
        /// Syncs that found the gate closed and waited.
        parked: Arc<AtomicU64>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    struct GatedFile {
        inner: Box<dyn DiskFile>,
        disk: GatedDisk,
    }

    impl GatedDisk {
        fn set_gate(&self, open: bool) {
            let (lock, cvar) = &*self.gate;
            *lock.lock().unwrap() = open;
            cvar.notify_all();
        }
    }

    impl Disk for GatedDisk {
        fn open(&self, path: &Path, options: OpenOptions) -> std::io::Result<Box<dyn DiskFile>> {
            let inner = self.inner.open(path, options)?;
            Ok(Box::new(GatedFile {
                inner,
                disk: self.clone(),
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

    impl DiskFile for GatedFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.inner.write_at(buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            let (lock, cvar) = &*self.disk.gate;
            let mut open = lock.lock().unwrap();
            if !*open {
                self.disk.parked.fetch_add(1, Ordering::SeqCst);
            }
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            drop(open);
            self.disk.syncs.fetch_add(1, Ordering::SeqCst);
            self.inner.sync_data()
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
        fn read_all(&self) -> std::io::Result<FileBytes> {
            self.inner.read_all()
        }
    }

    fn setup() -> (GatedDisk, PathBuf, GroupCommit) {
        let disk = GatedDisk {
            inner: SimDisk::new(1),
            syncs: Arc::new(AtomicU64::new(0)),
            parked: Arc::new(AtomicU64::new(0)),
            gate: Arc::new((Mutex::new(true), Condvar::new())),
        };
        let dir = PathBuf::from("/g/wal");
        let cfg = WalConfig {
            segment_bytes: 1 << 20,
            ..WalConfig::default()
        };
        let (wal, _) = Wal::open(Arc::new(disk.clone()), &dir, cfg).unwrap();
        (disk, dir, GroupCommit::new(wal))
    }

    fn entry(index: u64) -> LogRecord {
        LogRecord {
            index,
            term: 1,
            payload: index.to_le_bytes().to_vec(),
        }
    }

    #[test]
    fn queued_operations_share_one_sync_and_report_in_order_after_it() {
        let (disk, dir, group) = setup();
        let syncs_before = disk.syncs.load(Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        disk.set_gate(false);
        // The first append enters its sync and blocks at the gate,
        let report = |tx: std::sync::mpsc::Sender<(u64, Result<(), WalError>, u64)>,
                      disk: GatedDisk,
                      i: u64| {
            Box::new(move |r| {
                tx.send((i, r, disk.syncs.load(Ordering::SeqCst))).unwrap();
            }) as Done
        };
        group.submit(
            WalOp::Append(vec![entry(1)]),
            report(tx.clone(), disk.clone(), 1),
        );
        // ...wait until the writer is really parked in that sync...
        while disk.parked.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // ...while 49 more operations from several threads queue up behind it.
        let threads: Vec<_> = (0..7u64)
            .map(|t| {
                let group = group.clone();
                let tx = tx.clone();
                let disk = disk.clone();
                std::thread::spawn(move || {
                    for k in 0..7u64 {
                        let i = 2 + t * 7 + k;
                        group.submit(
                            WalOp::SaveVote(i.to_le_bytes().to_vec()),
                            report(tx.clone(), disk.clone(), i),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(rx.try_recv().is_err(), "no report while the sync is held");
        disk.set_gate(true);
        let reports: Vec<(u64, Result<(), WalError>, u64)> =
            (0..50).map(|_| rx.recv().unwrap()).collect();
        assert!(reports.iter().all(|(_, r, _)| r.is_ok()));
        // The first op got its own sync; all 49 queued ones shared exactly one more.
        let synced_first = reports.iter().find(|r| r.0 == 1).unwrap().2;
        assert_eq!(synced_first, syncs_before + 1);
        assert!(reports.iter().all(|r| r.0 == 1 || r.2 == syncs_before + 2));
        assert_eq!(disk.syncs.load(Ordering::SeqCst), syncs_before + 2);
        // Submission order is kept: op 1 first, and each thread's ops in the order it sent them.
        assert_eq!(reports[0].0, 1);
        for t in 0..7u64 {
            let mine: Vec<u64> = reports
                .iter()
                .map(|r| r.0)
                .filter(|i| *i >= 2 && (i - 2) / 7 == t)
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
            assert_eq!(mine.len(), 7);
        }
        let wal = group.shutdown().unwrap();
        assert_eq!(wal.last_index(), Some(1));
        drop(wal);
        let (_, recovered) = Wal::open(Arc::new(disk.clone()), &dir, WalConfig::default()).unwrap();
        assert_eq!(recovered.entries, vec![entry(1)]);
        assert!(recovered.vote.is_some());
    }

    #[test]
    fn a_failed_sync_fails_the_whole_batch_and_poisons_later_submissions() {
        let (disk, _dir, group) = setup();
        disk.inner.fail_next_syncs(1);
        let first = block_on(group.run(WalOp::Append(vec![entry(1)])));
        assert!(
            matches!(
                first,
                Err(WalError::Io {
                    op: "fdatasync",
                    ..
                })
            ),
            "{first:?}"
        );
        let later = block_on(group.run(WalOp::Sync));
        assert!(matches!(later, Err(WalError::Poisoned { .. })), "{later:?}");
    }

    #[test]
    fn invalid_operations_fail_alone_and_shutdown_closes_the_writer() {
        let (_disk, _dir, group) = setup();
        assert!(block_on(group.run(WalOp::Append(vec![entry(5)]))).is_ok());
        let gap = block_on(group.run(WalOp::Append(vec![entry(9)])));
        assert!(matches!(
            gap,
            Err(WalError::NotContiguous {
                expected: 6,
                found: 9
            })
        ));
        assert!(block_on(group.run(WalOp::TruncateFrom(5))).is_ok());
        assert!(block_on(group.run(WalOp::PurgeUpto {
            index: 3,
            marker: vec![]
        }))
        .is_ok());
        let wal = group.shutdown().unwrap();
        assert_eq!(wal.last_index(), None);
        assert_eq!(wal.purged_upto(), Some(3));
        assert!(group.shutdown().is_none());
        assert!(matches!(
            block_on(group.run(WalOp::Sync)),
            Err(WalError::Closed)
        ));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
