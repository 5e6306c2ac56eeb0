//! Group commit: many writers share one fdatasync.
//!
//! `GroupCommit` owns the `Wal`. In a normal build a dedicated thread takes every queued
//! operation, writes them all, runs ONE `sync`, and only then calls each operation's callback,
//! in submission order. Under `cfg(madsim)` there are no threads: `submit` writes, syncs and
//! calls back inline, which keeps simulation deterministic; when the simulated disk reports an
//! fsync latency (`Disk::sync_latency`), `submit` first waits that long in virtual time, in
//! turn (an async gate keeps submission order), as a writer stuck on a slow fsync would.
//!
//! The queue in front of the writer is bounded by a byte budget (`WAL_QUEUE_BYTES_MAX` by
//! default): `submit` waits for room while queued and unfinished operations hold it all, so a
//! stalled disk pushes back on raft instead of growing memory.
//!
//! Invariant: a callback receives `Ok` only after a sync that covers its operation succeeded.
//! Invariant: callbacks run in submission order, never while the `Wal` is borrowed by the caller.
//! Invariant: submitted and not yet reported operations hold at most the byte budget (one larger
//!   operation only when it is alone).

use std::sync::{Arc, Mutex};

#[cfg(not(madsim))]
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::WalError;
use super::log::Wal;
use super::LogRecord;

/// One operation on the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalOp {
    Append(Vec<LogRecord>),
    /// Entries, then the committed marker right behind them in the same write: for a member
    /// whose entries are committed as soon as they are durable (the sole voter), so that one
    /// fdatasync makes both durable. A torn tail can only drop a suffix, so a durable marker
    /// implies durable entries.
    AppendCommitted {
        entries: Vec<LogRecord>,
        committed: Vec<u8>,
    },
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
            WalOp::AppendCommitted { entries, committed } => {
                self.append(entries)?;
                self.save_committed(committed)
            }
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
    /// Starts the writer with the default queue budget.
    pub fn new(wal: Wal) -> GroupCommit {
        GroupCommit::with_queue_bytes_max(wal, crate::config::WAL_QUEUE_BYTES_MAX)
    }

    /// Starts the writer; at most `queue_bytes_max` bytes of operations wait for it.
    pub fn with_queue_bytes_max(wal: Wal, queue_bytes_max: usize) -> GroupCommit {
        GroupCommit {
            inner: Arc::new(Inner::start(wal, queue_bytes_max)),
        }
    }

    /// Queues `op`, first waiting for room in the queue; `done` is called once the operation is
    /// durable or has failed.
    pub async fn submit(&self, op: WalOp, done: Done) {
        self.inner.submit(op, done).await;
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
        )
        .await;
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
    /// The operation's share of the queue budget, released after its callback ran.
    #[cfg(not(madsim))]
    room: Option<OwnedSemaphorePermit>,
}

/// Memory a queued job costs beyond its payload (the job, its callback, channel slot).
#[cfg(not(madsim))]
const JOB_OVERHEAD_BYTES: usize = 256;

/// An estimate of the memory `op` holds while queued.
#[cfg(not(madsim))]
fn op_bytes(op: &WalOp) -> usize {
    const RECORD_HEADER_BYTES: usize = 16;
    JOB_OVERHEAD_BYTES
        + match op {
            WalOp::Append(records) => records
                .iter()
                .map(|r| r.payload.len() + RECORD_HEADER_BYTES)
                .sum(),
            WalOp::AppendCommitted { entries, committed } => {
                entries
                    .iter()
                    .map(|r| r.payload.len() + RECORD_HEADER_BYTES)
                    .sum::<usize>()
                    + committed.len()
            }
            WalOp::SaveVote(bytes) | WalOp::SaveCommitted(bytes) => bytes.len(),
            WalOp::PurgeUpto { marker, .. } => marker.len(),
            WalOp::TruncateFrom(_) | WalOp::Sync => 0,
        }
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
    /// The queue's byte budget (at most `u32::MAX`).
    room: Arc<Semaphore>,
    room_bytes_max: u32,
}

/// Upper bound on operations sharing one sync, so callbacks are not delayed forever under a
/// constant stream of submissions.
#[cfg(not(madsim))]
const BATCH_OPS_MAX: usize = 4096;

#[cfg(not(madsim))]
impl Inner {
    fn start(wal: Wal, queue_bytes_max: usize) -> Inner {
        // Unbounded as a channel; bounded by the byte budget every job holds a share of.
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
        let room_bytes_max = u32::try_from(queue_bytes_max.max(1)).unwrap_or(u32::MAX);
        Inner {
            tx: Mutex::new(tx),
            thread: Mutex::new(thread),
            room: Arc::new(Semaphore::new(room_bytes_max as usize)),
            room_bytes_max,
        }
    }

    async fn submit(&self, op: WalOp, done: Done) {
        // An operation larger than the whole budget takes all of it: it waits for an empty queue.
        let share = u32::try_from(op_bytes(&op))
            .unwrap_or(u32::MAX)
            .min(self.room_bytes_max);
        // The semaphore is never closed, so acquiring only waits.
        let room = self.room.clone().acquire_many_owned(share).await.ok();
        let job = Job { op, done, room };
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
        let rooms: Vec<Option<OwnedSemaphorePermit>> =
            batch.iter_mut().map(|job| job.room.take()).collect();
        for (done, outcome) in commit_batch(&mut wal, batch) {
            done(outcome);
        }
        drop(rooms);
    }
    wal
}

#[cfg(madsim)]
struct Inner {
    wal: Mutex<Option<Wal>>,
    /// Held across the simulated fsync latency so operations still complete in order.
    turn: tokio::sync::Mutex<()>,
}

#[cfg(madsim)]
impl Inner {
    /// No queue under madsim: every operation is written inline, so there is nothing to bound.
    fn start(wal: Wal, _queue_bytes_max: usize) -> Inner {
        Inner {
            wal: Mutex::new(Some(wal)),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    async fn submit(&self, op: WalOp, done: Done) {
        let job = Job { op, done };
        let _turn = self.turn.lock().await;
        let latency = {
            let guard = self.wal.lock().unwrap_or_else(|p| p.into_inner());
            guard
                .as_ref()
                .map_or(std::time::Duration::ZERO, Wal::sync_latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
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
        setup_with_budget(crate::config::WAL_QUEUE_BYTES_MAX)
    }

    fn setup_with_budget(queue_bytes_max: usize) -> (GatedDisk, PathBuf, GroupCommit) {
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
        (
            disk,
            dir,
            GroupCommit::with_queue_bytes_max(wal, queue_bytes_max),
        )
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
        block_on(group.submit(
            WalOp::Append(vec![entry(1)]),
            report(tx.clone(), disk.clone(), 1),
        ));
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
                        block_on(group.submit(
                            WalOp::SaveVote(i.to_le_bytes().to_vec()),
                            report(tx.clone(), disk.clone(), i),
                        ));
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

    /// Polls `fut` once; `true` when it completed.
    fn ready_at_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        fut.poll(&mut cx).is_ready()
    }

    /// Bug guarded against: the writer's job queue was unbounded, so a disk stalled in a sync
    /// let raft's appends pile up in memory without limit. Now the operations submitted and
    /// not yet reported hold at most the byte budget; a submitter waits for room, and gets it
    /// once the writer has reported.
    #[test]
    fn a_stalled_writer_makes_submitters_wait_within_the_byte_budget() {
        let payload_bytes = 1000;
        let op = |i: u64| {
            WalOp::Append(vec![LogRecord {
                index: i,
                term: 1,
                payload: vec![7; payload_bytes],
            }])
        };
        let per_op = op_bytes(&op(1));
        assert!(per_op > payload_bytes);
        let (disk, _dir, group) = setup_with_budget(4 * per_op);
        disk.set_gate(false);
        // Reopens the gate even when an assertion fails, so the writer thread can be joined.
        struct OpenOnDrop(GatedDisk);
        impl Drop for OpenOnDrop {
            fn drop(&mut self) {
                self.0.set_gate(true);
            }
        }
        let _open_on_drop = OpenOnDrop(disk.clone());
        let reported = Arc::new(AtomicU64::new(0));
        let count = |reported: &Arc<AtomicU64>| {
            let reported = reported.clone();
            Box::new(move |r: Result<(), WalError>| {
                assert!(r.is_ok(), "{r:?}");
                reported.fetch_add(1, Ordering::SeqCst);
            }) as Done
        };
        // Four operations fit: the first parks the writer in its sync, three queue behind it.
        for i in 1..=4 {
            let submit = std::pin::pin!(group.submit(op(i), count(&reported)));
            assert!(ready_at_once(submit), "operation {i} fits in the budget");
        }
        while disk.parked.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // The fifth finds no room: it waits (and stays waiting) while the disk is stalled.
        let mut fifth = std::pin::pin!(group.submit(op(5), count(&reported)));
        assert!(
            !ready_at_once(fifth.as_mut()),
            "a full queue must make the submitter wait"
        );
        assert!(!ready_at_once(fifth.as_mut()));
        assert_eq!(reported.load(Ordering::SeqCst), 0);
        // Once the writer reports, room is back and the waiting submission goes through.
        disk.set_gate(true);
        block_on(fifth);
        assert!(block_on(group.run(WalOp::Sync)).is_ok());
        assert_eq!(reported.load(Ordering::SeqCst), 5);
        let wal = group.shutdown().unwrap();
        assert_eq!(wal.last_index(), Some(5));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
