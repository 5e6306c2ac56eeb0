//! etcd backend file → State: the key space with its whole retained history (revisions,
//! versions, tombstones, compaction revision) and the leases with their attached keys.
//!
//! Reading order: `meta` first (the compaction revisions: `finishedCompactRev` is what the
//! records already reflect, a larger `scheduledCompactRev` is a compaction etcd had not finished
//! and is completed here, as etcd does on start), then `key` in revision
//! order, then `lease`. Members, the consistent index and the term are reported but not kept:
//! a restored member gets a fresh membership from its flags, as etcdutl's restore does.
//!
//! Invariant: nothing in the file is trusted; every malformed key or value is an
//! [`ImportError`] naming the bucket and key, and the state returned passed `State::check`.

use std::fmt;

use prost::Message;

use super::schema::{self, decode_revision, LeaseRecord};
use crate::apply::State;
use crate::bbolt::{BboltError, Bucket, Db, Value};
use crate::mvcc::{PutFields, Revision, StoreBuilder};
use crate::proto::mvccpb::KeyValue;

/// Why a file could not be imported.
#[derive(Debug)]
pub enum ImportError {
    Bbolt(BboltError),
    /// A bucket etcd always has is absent.
    MissingBucket(&'static str),
    /// A key or value that does not decode.
    BadEntry {
        bucket: &'static str,
        key: Vec<u8>,
        reason: String,
    },
    /// The records do not form a valid history, or the leases do not match the keys.
    Inconsistent(String),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Bbolt(e) => write!(f, "{e}"),
            ImportError::MissingBucket(name) => write!(f, "backend has no {name:?} bucket"),
            ImportError::BadEntry {
                bucket,
                key,
                reason,
            } => write!(f, "bucket {bucket:?} key {key:02x?}: {reason}"),
            ImportError::Inconsistent(reason) => write!(f, "inconsistent backend: {reason}"),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<BboltError> for ImportError {
    fn from(e: BboltError) -> Self {
        ImportError::Bbolt(e)
    }
}

/// What was imported.
#[derive(Debug)]
pub struct Imported {
    pub state: State,
    /// `meta/consistent_index` (0 if absent).
    pub consistent_index: u64,
    /// `meta/term` (0 if absent, as in etcd 3.4 files).
    pub term: u64,
    /// Records in the `key` bucket that became part of the history.
    pub records: u64,
    /// Entries of the source's `authUsers` and `authRoles` buckets, and whether its auth was
    /// enabled (all imported into `state.auth`).
    pub auth_users: u64,
    pub auth_roles: u64,
    pub auth_enabled: bool,
}

fn bucket<'a>(root: &Bucket<'a>, name: &'static str) -> Result<Option<Bucket<'a>>, ImportError> {
    Ok(root.bucket(name.as_bytes())?)
}

pub(super) fn data<'a>(
    value: Value<'a>,
    bucket: &'static str,
    key: &[u8],
) -> Result<&'a [u8], ImportError> {
    match value {
        Value::Data(bytes) => Ok(bytes),
        Value::Bucket(_) => Err(ImportError::BadEntry {
            bucket,
            key: key.to_vec(),
            reason: "a sub-bucket where a value belongs".into(),
        }),
    }
}

fn meta_u64(meta: &Bucket<'_>, key: &'static [u8]) -> Result<u64, ImportError> {
    let Some(value) = meta.get(key)? else {
        return Ok(0);
    };
    let bytes = data(value, "meta", key)?;
    let word: [u8; 8] = bytes.try_into().map_err(|_| ImportError::BadEntry {
        bucket: "meta",
        key: key.to_vec(),
        reason: format!("{} bytes, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(word))
}

fn meta_revision(meta: &Bucket<'_>, key: &'static [u8]) -> Result<i64, ImportError> {
    let Some(value) = meta.get(key)? else {
        return Ok(0);
    };
    let bytes = data(value, "meta", key)?;
    decode_revision(bytes)
        .map(|(main, _, _)| main)
        .ok_or_else(|| ImportError::BadEntry {
            bucket: "meta",
            key: key.to_vec(),
            reason: "not a revision".into(),
        })
}

/// Reads an etcd backend file (already opened) into a state.
pub fn import(db: &Db<'_>) -> Result<Imported, ImportError> {
    let root = db.root();
    let meta = bucket(&root, "meta")?.ok_or(ImportError::MissingBucket("meta"))?;
    let consistent_index = meta_u64(&meta, schema::META_CONSISTENT_INDEX)?;
    let term = meta_u64(&meta, schema::META_TERM)?;
    let finished = meta_revision(&meta, schema::META_FINISHED_COMPACT)?;
    let scheduled = meta_revision(&meta, schema::META_SCHEDULED_COMPACT)?;
    // Compaction revision bounds the tombstones allowed without a live key; the records are
    // what a finished compaction left, plus anything an unfinished one had yet to remove.
    let compacted = finished.max(scheduled);

    let mut builder = StoreBuilder::new();
    let mut last_main = 0;
    let mut records = 0;
    if let Some(keys) = bucket(&root, "key")? {
        for entry in keys.entries() {
            let entry = entry?;
            let bad = |reason: String| ImportError::BadEntry {
                bucket: "key",
                key: entry.key.to_vec(),
                reason,
            };
            let (main, sub, tombstone) =
                decode_revision(entry.key).ok_or_else(|| bad("not a revision".into()))?;
            last_main = last_main.max(main);
            let value = data(entry.value, "key", entry.key)?;
            let kv = KeyValue::decode(value).map_err(|e| bad(e.to_string()))?;
            if kv.key.is_empty() {
                // etcdutl's --bump-revision marker: moves the revision, holds no key.
                continue;
            }
            let rev = Revision::new(main, sub);
            if tombstone {
                if !builder.is_live(&kv.key) && main <= compacted {
                    // Left behind by a compaction that had not finished; it deletes nothing.
                    continue;
                }
                builder.push(rev, &kv.key, None).map_err(bad)?;
            } else {
                let put = PutFields {
                    value: Vec::from(kv.value),
                    create_revision: kv.create_revision,
                    version: kv.version,
                    lease: kv.lease,
                };
                builder.push(rev, &kv.key, Some(put)).map_err(bad)?;
            }
            records += 1;
        }
    }
    let current = last_main.max(compacted);
    let mut state = State::new();
    let compact_revision = if finished > 0 {
        finished
    } else {
        crate::mvcc::NEVER_COMPACTED
    };
    state.kv = builder
        .finish(current, compact_revision)
        .map_err(ImportError::Inconsistent)?;
    if scheduled > finished {
        // etcd finishes an interrupted compaction when it opens the backend; so do we.
        state
            .kv
            .compact(scheduled)
            .map_err(|e| ImportError::Inconsistent(format!("compaction at {scheduled}: {e}")))?;
    }
    import_leases(&root, &mut state)?;
    state.auth = std::sync::Arc::new(super::auth::import_auth(&root)?);
    state.check().map_err(ImportError::Inconsistent)?;
    let count = |name| -> Result<u64, ImportError> {
        let Some(b) = bucket(&root, name)? else {
            return Ok(0);
        };
        let mut n = 0;
        for entry in b.entries() {
            entry?;
            n += 1;
        }
        Ok(n)
    };
    let auth_enabled = match bucket(&root, "auth")? {
        Some(auth) => matches!(auth.get(b"authEnabled")?, Some(Value::Data([1]))),
        None => false,
    };
    Ok(Imported {
        state,
        consistent_index,
        term,
        records,
        auth_users: count("authUsers")?,
        auth_roles: count("authRoles")?,
        auth_enabled,
    })
}

fn import_leases(root: &Bucket<'_>, state: &mut State) -> Result<(), ImportError> {
    if let Some(leases) = bucket(root, "lease")? {
        for entry in leases.entries() {
            let entry = entry?;
            let bad = |reason: String| ImportError::BadEntry {
                bucket: "lease",
                key: entry.key.to_vec(),
                reason,
            };
            let value = data(entry.value, "lease", entry.key)?;
            let lease = LeaseRecord::decode(value).map_err(|e| bad(e.to_string()))?;
            state
                .leases
                .grant(lease.id, lease.ttl)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let leased: Vec<(Vec<u8>, i64)> = state
        .kv
        .leased_keys()
        .map(|(key, lease)| (key.to_vec(), lease))
        .collect();
    for (key, lease) in leased {
        if !state.leases.attach(lease, &key) {
            return Err(ImportError::Inconsistent(format!(
                "key {key:02x?} is attached to lease {lease:x}, which the lease bucket lacks"
            )));
        }
    }
    Ok(())
}
