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
    let written: Vec<(Done, Result<(), WalError>)> = batch
        .into_iter()
        .map(|job| {
            let result = wal.execute(&job.op);
            (job.done, result)
        })
        .collect();
    let synced = wal.sync();
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
