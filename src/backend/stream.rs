//! The backend file as `Maintenance.Snapshot` streams it: the db bytes in chunks of
//! [`CHUNK_BYTES`] (the last one shorter), each with the bytes still to come after it, then one
//! more chunk holding the sha256 of every byte sent, with `remaining_bytes` 0 (etcd's layout;
//! `etcdctl snapshot save` appends the blobs and checks the total is 32 mod 512).
//!
//! The meta pages come first in the file but depend on the layout of everything after them, and
//! the writer learns that layout only at the end. So the file is built twice from the same
//! immutable state: once into a sink that keeps nothing (to learn the root page and page count),
//! then for real, sending the metas first and every later page as it is written.
//!
//! Invariant: memory is one chunk plus the writer's pending nodes, whatever the state's size.
//! Invariant: the second build must lay out the same pages as the first (export is
//! deterministic); the sink checks the metas it is finally handed against those it already sent
//! and fails the stream rather than send a file whose metas do not match its pages.

use std::io;

use sha2::{Digest, Sha256};

use super::export::{export, ExportInfo};
use crate::apply::State;
use crate::bbolt::{meta_pages, PageSink, WriteError, WriterOptions};

/// etcd's `snapshotSendBufferSize`.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// One message of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub blob: Vec<u8>,
    /// Db bytes still to come after this chunk (0 for the last data chunk and the hash).
    pub remaining_bytes: u64,
}

/// Why a stream stopped early.
#[derive(Debug)]
pub enum StreamFailure {
    /// The receiver went away (the client cancelled).
    Closed,
    Write(WriteError),
    /// The two builds differed: a bug, never sent as a valid file.
    LayoutChanged,
}

impl std::fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFailure::Closed => write!(f, "snapshot receiver closed"),
            StreamFailure::Write(e) => write!(f, "{e}"),
            StreamFailure::LayoutChanged => {
                write!(f, "snapshot layout changed between its two builds")
            }
        }
    }
}

/// A sink that keeps nothing.
struct Discard;

impl PageSink for Discard {
    fn write_at(&mut self, _offset: u64, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Cuts sequential writes into chunks and hashes them.
struct ChunkSink<F> {
    emit: F,
    metas: Vec<u8>,
    buffer: Vec<u8>,
    hasher: Sha256,
    next_offset: u64,
    total_bytes: u64,
    sent_bytes: u64,
    closed: bool,
    layout_changed: bool,
}

impl<F: FnMut(Chunk) -> bool> ChunkSink<F> {
    fn send(&mut self, blob: Vec<u8>) -> io::Result<()> {
        self.hasher.update(&blob);
        self.sent_bytes += blob.len() as u64;
        let remaining_bytes = self.total_bytes.saturating_sub(self.sent_bytes);
        if !(self.emit)(Chunk {
            blob,
            remaining_bytes,
        }) {
            self.closed = true;
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buffer.extend_from_slice(bytes);
        self.next_offset += bytes.len() as u64;
        while self.buffer.len() >= CHUNK_BYTES {
            let rest = self.buffer.split_off(CHUNK_BYTES);
            let chunk = std::mem::replace(&mut self.buffer, rest);
            self.send(chunk)?;
        }
        Ok(())
    }
}

impl<F: FnMut(Chunk) -> bool> PageSink for ChunkSink<F> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if offset == 0 {
            // The writer's final metas: already sent from the first build.
            if bytes != self.metas.as_slice() {
                self.layout_changed = true;
                return Err(io::Error::other("meta pages differ from the first build"));
            }
            return Ok(());
        }
        if offset != self.next_offset {
            self.layout_changed = true;
            return Err(io::Error::other("pages written out of order"));
        }
        self.append(bytes)
    }
}

/// Streams `state` as an etcd snapshot through `emit`, which returns false once its receiver is
/// gone. Returns the db size in bytes (without the hash).
pub fn stream(
    state: &State,
    info: &ExportInfo,
    emit: impl FnMut(Chunk) -> bool,
) -> Result<u64, StreamFailure> {
    let options = WriterOptions::default();
    let (_, layout) = export(state, info, options, Discard).map_err(StreamFailure::Write)?;
    let metas = meta_pages(&options, &layout);
    let mut sink = ChunkSink {
        emit,
        metas: metas.clone(),
        buffer: Vec::with_capacity(2 * CHUNK_BYTES),
        hasher: Sha256::new(),
        next_offset: 0,
        total_bytes: layout.size_bytes,
        sent_bytes: 0,
        closed: false,
        layout_changed: false,
    };
    let built = sink
        .append(&metas)
        .map_err(WriteError::Io)
        .and_then(|()| export(state, info, options, &mut sink).map(|(_, summary)| summary));
    let summary = match built {
        Ok(summary) => summary,
        Err(_) if sink.closed => return Err(StreamFailure::Closed),
        Err(_) if sink.layout_changed => return Err(StreamFailure::LayoutChanged),
        Err(e) => return Err(StreamFailure::Write(e)),
    };
    if summary != layout || sink.next_offset != layout.size_bytes {
        return Err(StreamFailure::LayoutChanged);
    }
    let last = std::mem::take(&mut sink.buffer);
    if !last.is_empty() {
        sink.send(last).map_err(|_| StreamFailure::Closed)?;
    }
    debug_assert_eq!(sink.sent_bytes, layout.size_bytes);
    let hash = sink.hasher.clone().finalize().to_vec();
    if !(sink.emit)(Chunk {
        blob: hash,
        remaining_bytes: 0,
    }) {
        return Err(StreamFailure::Closed);
    }
    Ok(layout.size_bytes)
}
