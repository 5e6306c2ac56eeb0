//! etcd's backend database: the bbolt file (see `bbolt/`) with etcd's buckets, which is also
//! what etcd's snapshot files are (the file plus a sha256 trailer). This module translates
//! between it and oxetcd's replicated state, both ways:
//!
//! - `export`: an immutable [`State`](crate::apply::State) view → an etcd-format file, written
//!   in one pass over the view with memory bounded by the tree height (`bbolt::Writer`).
//! - `stream`: the file as `Maintenance.Snapshot` sends it: 32 KiB chunks, then the sha256 of
//!   everything sent; built twice (once to learn the layout for the meta pages that come first,
//!   once to send), so neither the file nor a temp copy is ever held.
//! - `import`: an etcd-format file (made by etcd 3.4, 3.5 or oxetcd) → a `State`.
//!
//! The bucket schema is in `schema.rs`.
//!
//! Invariant: export is a deterministic function of its inputs (the stream relies on two runs
//! laying out identical pages); it does no I/O except through the sink it is given.
//! Invariant: import never trusts the file: every key and value is decoded with errors, and the
//! rebuilt state passes `State::check` before it is returned.

mod auth;
mod export;
mod import;
mod schema;
mod stream;

#[cfg(test)]
mod tests;

pub use export::{export, ExportInfo, Member};
pub use import::{import, ImportError, Imported};
pub use schema::{decode_revision, encode_revision, LeaseRecord, BUCKETS};
pub use stream::{stream, Chunk, StreamFailure, CHUNK_BYTES};
