//! The client-observed history of a simulated run: what each client asked, when, and what it
//! was told. Pure data; the checkers in [`crate::linear`] and [`crate::durability`] read it.
//!
//! Times are nanoseconds of simulated time since the start of the run.
//!
//! Invariant: an operation whose outcome the client could not learn (timeout, connection lost
//! after sending) is recorded as [`Outcome::Unknown`] and never as failed.
//! Invariant: every write carries a value no other operation in the run writes.

/// What a client asked for. Keys and values are short strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Linearizable single-key range.
    Get { key: String },
    /// Put with `prev_kv = true`.
    Put { key: String, value: String },
    /// Single-key delete.
    Delete { key: String },
    /// Txn: if `value(key) == expected` then put `value` else get `key`.
    Cas {
        key: String,
        expected: String,
        value: String,
    },
    /// Put with `prev_kv = true` that attaches the key to `lease` (the other writes detach it).
    LeasePut {
        key: String,
        value: String,
        lease: i64,
    },
    /// Not a client call: the server deleting `key` when `lease` expired (recorded once per
    /// lease that had the key attached, always with an unknown outcome). Invoked at the
    /// earliest moment the lease may have expired, so the checkers place the deletion no
    /// earlier; it may also have had no effect (the key was detached or deleted first).
    Expire { key: String, lease: i64 },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::LeasePut { key, .. }
            | Op::Expire { key, .. } => key,
        }
    }

    /// The value the operation may write, if it writes one.
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Op::Put { value, .. } | Op::Cas { value, .. } | Op::LeasePut { value, .. } => {
                Some(value)
            }
            Op::Get { .. } | Op::Delete { .. } | Op::Expire { .. } => None,
        }
    }

    /// Whether the operation can change the store.
    pub fn may_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

/// A key as a read returned it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Seen {
    pub value: String,
    pub mod_revision: i64,
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Get answered at header revision `revision`.
    Got { revision: i64, kv: Option<Seen> },
    /// Put applied at `revision`; `prev` is the key before it.
    Put { revision: i64, prev: Option<Seen> },
    /// Delete answered at `revision`; it removed `deleted` keys (0 means it wrote nothing and
    /// `revision` is a read revision).
    Deleted { revision: i64, deleted: i64 },
    /// Cas answered at `revision`. On success the put happened at `revision`; on failure
    /// `current` is the key as the else-branch read it at `revision`.
    Cas {
        revision: i64,
        succeeded: bool,
        current: Option<Seen>,
    },
    /// Definitely not applied (rejected before it was proposed).
    Failed,
    /// The client does not know whether it was applied.
    Unknown,
}

/// One operation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub client: u32,
    pub op: Op,
    pub invoke_ns: u64,
    /// When the answer arrived; for `Unknown` outcomes, when the client gave up (the operation
    /// may still take effect later).
    pub complete_ns: u64,
    pub outcome: Outcome,
}

impl Record {
    /// The revision at which a known outcome took effect, and whether it changed the store.
    pub fn effect(&self) -> Option<(i64, bool)> {
        match &self.outcome {
            Outcome::Got { revision, .. } => Some((*revision, false)),
            Outcome::Put { revision, .. } => Some((*revision, true)),
            Outcome::Deleted { revision, deleted } => Some((*revision, *deleted > 0)),
            Outcome::Cas {
                revision,
                succeeded,
                ..
            } => Some((*revision, *succeeded)),
            Outcome::Failed | Outcome::Unknown => None,
        }
    }

    /// Whether the client was told the write happened.
    pub fn acked_write(&self) -> bool {
        matches!(self.effect(), Some((_, true)))
    }

    /// Whether the operation is a write whose outcome is unknown.
    pub fn unknown_write(&self) -> bool {
        self.outcome == Outcome::Unknown && self.op.may_write()
    }
}

/// A whole run's history, in the order operations were recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub records: Vec<Record>,
}

impl History {
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Short multi-line dump for failure reports.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.records.iter().enumerate() {
            out.push_str(&format!(
                "#{i} c{} [{}..{}] {:?} -> {:?}\n",
                r.client, r.invoke_ns, r.complete_ns, r.op, r.outcome
            ));
        }
        out
    }
}

/// An acknowledged put by client 0 at `revision` (for the checkers' unit tests).
#[cfg(test)]
pub(crate) fn put(key: &str, value: &str, revision: i64) -> Record {
    Record {
        client: 0,
        op: Op::Put {
            key: key.into(),
            value: value.into(),
        },
        invoke_ns: 0,
        complete_ns: 1,
        outcome: Outcome::Put {
            revision,
            prev: None,
        },
    }
}
