//! Loading a snapshot by streaming its data to a decoder instead of mapping or reading the
//! whole file first: the data goes through one fixed-size buffer and is checksummed on the way,
//! so the image and the state decoded from it are never both in memory.
//!
//! The decoder runs before the checksum is known (it is known only at the end of the data). A
//! file whose checksum does not match is damaged whatever the decoder said: its decoded value is
//! dropped and the file is skipped or reported exactly as [`SnapStore::load_newest`] would. A
//! decoder error on a file whose checksum matches is a decode failure of the caller's format.
//!
//! Invariant: a value is returned only for a file whose header and data checksums matched.
//! Invariant: the reader never yields bytes beyond the `data_bytes` the header announced, and
//!            every data byte is hashed exactly once, whether the decoder read it or not.

use std::fmt;
use std::io::{self, Read};

use super::format::{SnapHeader, SNAP_HEADER_BYTES};
use super::{SnapError, SnapMeta, SnapStore};
use crate::io::{DiskFile, OpenOptions};

/// Bytes read from the file per `read_at` call.
const CHUNK_BYTES: usize = 1 << 20;

/// Failure of [`SnapStore::load_newest_streamed`].
#[derive(Debug)]
pub enum StreamError<E> {
    /// I/O, or damage with no allowed fallback.
    Snap(SnapError),
    /// The decoder failed on a snapshot whose checksums matched.
    Decode { index: u64, error: E },
}

impl<E: fmt::Display> fmt::Display for StreamError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Snap(e) => write!(f, "{e}"),
            StreamError::Decode { index, error } => {
                write!(f, "snapshot at index {index} does not decode: {error}")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for StreamError<E> {}

impl<E> From<SnapError> for StreamError<E> {
    fn from(e: SnapError) -> Self {
        StreamError::Snap(e)
    }
}

/// The data of one snapshot file, read in order through a buffer and checksummed.
pub struct SnapReader<'f> {
    file: &'f dyn DiskFile,
    /// File offset of the next chunk to read.
    next_offset: u64,
    /// File offset where the data ends.
    end_offset: u64,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    hasher: crc32fast::Hasher,
    /// The first read failure, reported by `finish` as I/O rather than as a decode error.
    io_error: Option<io::Error>,
}

impl<'f> SnapReader<'f> {
    fn new(file: &'f dyn DiskFile, data_bytes: u64) -> Self {
        SnapReader {
            file,
            next_offset: SNAP_HEADER_BYTES,
            end_offset: SNAP_HEADER_BYTES.saturating_add(data_bytes),
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            hasher: crc32fast::Hasher::new(),
            io_error: None,
        }
    }

    /// Bytes of data the header announced (a decoder's allocation limit).
    pub fn data_bytes(&self) -> u64 {
        self.end_offset - SNAP_HEADER_BYTES
    }

    /// Reads the next chunk into the buffer; `Ok(0)` at the end of the data.
    fn refill(&mut self) -> io::Result<usize> {
        let want = (self.end_offset - self.next_offset).min(CHUNK_BYTES as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let got = self.file.read_at(&mut self.buf[..want], self.next_offset)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "snapshot file ended before its announced length",
            ));
        }
        self.hasher.update(&self.buf[..got]);
        self.next_offset += got as u64;
        self.pos = 0;
        self.filled = got;
        Ok(got)
    }

    /// Reads (and hashes) whatever the decoder left, and returns the data checksum.
    fn finish(mut self) -> io::Result<u32> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        while self.refill()? > 0 {}
        Ok(self.hasher.finalize())
    }
}

impl Read for SnapReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.filled {
            match self.refill() {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => {
                    let kind = e.kind();
                    self.io_error.get_or_insert(e);
                    return Err(io::Error::new(kind, "snapshot read failed"));
                }
            }
        }
        let n = out.len().min(self.filled - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// The decoder reads field by field; serve those from the buffer without looping.
    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        if let Some(ready) = self.buf.get(self.pos..self.pos + out.len()) {
            if self.pos + out.len() <= self.filled {
                out.copy_from_slice(ready);
                self.pos += out.len();
                return Ok(());
            }
        }
        let mut done = 0;
        while done < out.len() {
            match self.read(&mut out[done..])? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

impl SnapStore {
    /// Like [`SnapStore::load_newest`], but streams the data of each candidate to `decode`
    /// instead of mapping it, and returns the header of the chosen file with the decoded value.
    /// See the module docs for how checksum damage and decode failures are told apart.
    pub fn load_newest_streamed<T, E>(
        &self,
        covered: impl Fn(u64) -> bool,
        mut decode: impl FnMut(&mut SnapReader<'_>) -> Result<T, E>,
    ) -> Result<Option<(SnapHeader, T)>, StreamError<E>> {
        self.newest_valid(covered, |store, meta| store.stream(meta, &mut decode))
    }

    /// Streams one snapshot to `decode`: outer error for I/O and decode failures, inner for
    /// damage.
    fn stream<T, E>(
        &self,
        meta: &SnapMeta,
        decode: &mut impl FnMut(&mut SnapReader<'_>) -> Result<T, E>,
    ) -> Result<Result<(SnapHeader, T), SnapError>, StreamError<E>> {
        let file = self
            .disk
            .open(&meta.path, OpenOptions::read_only())
            .map_err(|e| SnapError::io("open", &meta.path, e))?;
        let file_bytes = file
            .len()
            .map_err(|e| SnapError::io("stat", &meta.path, e))?;
        let mut head = [0u8; SNAP_HEADER_BYTES as usize];
        let got = read_up_to(file.as_ref(), &mut head, 0)
            .map_err(|e| SnapError::io("read", &meta.path, e))?;
        let header = match SnapHeader::validate_head(&head[..got], file_bytes) {
            Ok(header) => header,
            Err((offset, reason)) => return Ok(Err(meta.damage(offset, reason))),
        };
        if let Err(damage) = meta.matches(&header) {
            return Ok(Err(damage));
        }
        let mut reader = SnapReader::new(file.as_ref(), header.data_bytes);
        let decoded = decode(&mut reader);
        let crc = reader
            .finish()
            .map_err(|e| SnapError::io("read", &meta.path, e))?;
        if let Err((offset, reason)) = header.check_data_crc(crc) {
            return Ok(Err(meta.damage(offset, reason)));
        }
        match decoded {
            Ok(value) => Ok(Ok((header, value))),
            Err(error) => Err(StreamError::Decode {
                index: meta.index,
                error,
            }),
        }
    }
}
