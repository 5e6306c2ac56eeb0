//! The replicated state machine: `Command`s applied to `State` (the KV store and the lease
//! table), deterministically. A raft log entry carries a [`Proposal`]: one or a batch of
//! [`Envelope`]s, each a command with its [`RequestHeader`] (request ID, user, auth revision),
//! encoded with a format tag (see `proposal.rs`).
//!
//! The v2 store (`v2store`) rides in the same state: its writes are `Command::V2`, they never
//! move the KV revision and KV commands never touch it.
//!
//! Owns: the command set, the proposal envelope and their encodings, the glue between the KV
//! store and the lease table (lease existence for puts, key attachment, revoke = delete keys +
//! drop lease), the auth checks of writes (`authorize.rs`), the snapshot image of the whole
//! state. Knows nothing of raft, time or I/O.
//!
//! Invariant: `apply_entry` is a function of (state, log entry ID, header, command): the same
//!            sequence from the same state gives byte-identical `encode()` output on every
//!            member. The header's `user`/`auth_revision` decide, while auth is enabled, whether
//!            a write is allowed, exactly as etcd's auth applier does.
//! Invariant: a proposal holds plain commands only; batches cannot nest (the types forbid it),
//!            so decoding a proposal never recurses.
//! Invariant: a command that fails changes nothing and produces no events.
//! Invariant: a key is attached to lease L in the table exactly when it is live with lease L in
//!            the KV store (`State::check`).
//! Invariant: a leader's lease expiry (`Command::LeaseExpire`) applies only from an entry of
//!            the term it was decided in; otherwise it changes nothing.

mod authorize;
mod codec;
mod proposal;
#[cfg(test)]
mod proposal_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthCommand, AuthStore};
use crate::canary::{self, Canary};
use crate::lease::{LeaseError, LeaseTable, LEASE_TTL_SECONDS_MAX};
use crate::mvcc::{self, validate, KvError, Written};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::{event::EventType, Event};
use crate::v2store::{Store as V2Store, V2Outcome, V2Request};

pub use codec::{decode_bounded, CodecError, UncheckedState};
pub use proposal::{Envelope, Proposal, RequestHeader, PROPOSAL_TAG_V1};

/// One replicated state change, as proposed to raft inside an [`Envelope`]. Protobuf requests
/// are carried as their protobuf encoding inside the serde (bincode) encoding.
///
/// The variant order is part of the log format (bincode writes the variant index): append new
/// variants at the end, never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Put(#[serde(with = "codec::proto_bytes")] PutRequest),
    DeleteRange(#[serde(with = "codec::proto_bytes")] DeleteRangeRequest),
    Txn(#[serde(with = "codec::proto_bytes")] TxnRequest),
    Compact(#[serde(with = "codec::proto_bytes")] CompactionRequest),
    /// `id` is never 0 here: the proposer picks a fresh ID first. `ttl` is in seconds, already
    /// raised to the minimum TTL.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    /// A client revoke or the leader's expiry of the lease.
    LeaseRevoke {
        id: i64,
    },
    /// etcd's Alarm request: list (`action` GET), raise or clear an alarm of a member. A member
    /// over its space quota raises NOSPACE for itself.
    Alarm {
        action: i32,
        member_id: u64,
        alarm: i32,
    },
    /// A change of the auth store (passwords arrive hashed; see `auth`).
    Auth(AuthCommand),
    /// A write of the v2 store (`/v2/keys`), or the leader's expiry of its TTL nodes. Never
    /// touches the KV store or its revision.
    V2(V2Request),
    /// The leader's expiry of a lease, decided from its deadlines as leader in `term`: revokes
    /// the lease only when the entry carrying it is of that same term. In a later term the
    /// deadlines were restarted and a keep-alive may have renewed the lease since, so the
    /// expiry is stale and changes nothing ([`KvError::StaleLeaseExpiry`]).
    LeaseExpire {
        id: i64,
        term: u64,
    },
}

/// The successful result of a command. Headers carry only `revision`. Serde (protobuf bytes
/// inside) only for the leader's answer to a forwarded proposal (`raft::forward`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Put(#[serde(with = "codec::proto_bytes")] PutResponse),
    DeleteRange(#[serde(with = "codec::proto_bytes")] DeleteRangeResponse),
    Txn(#[serde(with = "codec::proto_bytes")] TxnResponse),
    Compact(#[serde(with = "codec::proto_bytes")] CompactionResponse),
    LeaseGrant(#[serde(with = "codec::proto_bytes")] LeaseGrantResponse),
    LeaseRevoke(#[serde(with = "codec::proto_bytes")] LeaseRevokeResponse),
    Alarm(#[serde(with = "codec::proto_bytes")] AlarmResponse),
    /// An auth store change: the KV revision for the response header, and the token an
    /// Authenticate issued (empty for every other change).
    Auth {
        revision: i64,
        token: String,
    },
    /// A v2 store write: its event or etcd's v2 error (a v2 error is an answer, not a failed
    /// command: it changes nothing).
    V2(V2Outcome),
}

/// Where a command sits in the raft log: its entry's index and term (the term of the leader
/// that appended it), the same on every member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryId {
    pub index: u64,
    pub term: u64,
}

/// What applying one command did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub result: Result<Outcome, KvError>,
    /// The events of the new revision (empty if the revision did not move), `prev_kv` filled.
    pub events: Vec<Event>,
    /// The store revision after the command.
    pub revision: i64,
}

/// The whole replicated state. `Clone` is O(1), so a snapshot is encoded from a clone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub kv: mvcc::Store,
    pub leases: LeaseTable,
    /// Raised alarms: (member ID, `AlarmType`). While NOSPACE is raised, writes that would add
    /// data are refused (etcd's capped applier); deletes, reads, compaction still work.
    pub alarms: BTreeSet<(u64, i32)>,
    /// Users, roles, permissions; shared until changed (auth changes are rare, views many).
    pub auth: Arc<AuthStore>,
    /// The v2 store (`/v2/keys`), shared until changed; invisible to the KV store and back.
    pub v2: Arc<V2Store>,
}

impl State {
    /// An empty state: store at revision 1, no leases.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command with an empty header at log index 0, term 0 (tests, tools).
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        self.apply_entry(
            EntryId { index: 0, term: 0 },
            &RequestHeader::default(),
            cmd,
        )
    }

    /// Applies one committed command of the entry `entry`, proposed with `header`. A batched
    /// entry applies each of its commands with this, in order, as if each had its own entry:
    /// its own revision, its own result.
    pub fn apply_entry(
        &mut self,
        entry: EntryId,
        header: &RequestHeader,
        cmd: &Command,
    ) -> Applied {
        let result = self
            .refuse_by_alarm(cmd)
            .and_then(|()| self.authorize(header, cmd))
            .and_then(|()| self.apply_command(entry, cmd));
        let revision = self.kv.current_revision();
        match result {
            Ok((outcome, events)) => Applied {
                result: Ok(outcome),
                events,
                revision,
            },
            Err(err) => Applied {
                result: Err(err),
                events: Vec::new(),
                revision,
            },
        }
    }

    /// Whether a NOSPACE alarm is raised (writes that add data are refused).
    pub fn out_of_space(&self) -> bool {
        self.alarms
            .iter()
            .any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    /// Whether a CORRUPT alarm is raised (every command but alarms is refused).
    pub fn corrupt(&self) -> bool {
        self.alarms
            .iter()
            .any(|(_, a)| *a == AlarmType::Corrupt as i32)
    }

    fn apply_command(
        &mut self,
        entry: EntryId,
        cmd: &Command,
    ) -> Result<(Outcome, Vec<Event>), KvError> {
        let index = entry.index;
        let leases = &self.leases;
        let lease_exists = |id: i64| leases.contains(id);
        match cmd {
            Command::Put(req) => {
                let written = self.kv.put(req, &lease_exists)?;
                Ok(self.attach_leases(written, Outcome::Put))
            }
            Command::DeleteRange(req) => {
                let written = self.kv.delete_range(req)?;
                Ok(self.attach_leases(written, Outcome::DeleteRange))
            }
            Command::Txn(req) => {
                let written = self.kv.txn(req, &lease_exists)?;
                Ok(self.attach_leases(written, Outcome::Txn))
            }
            Command::Compact(req) => Ok((
                Outcome::Compact(self.kv.begin_compaction(req.revision)?),
                Vec::new(),
            )),
            Command::LeaseGrant { id, ttl } => {
                self.leases.grant(*id, *ttl)?;
                let response = LeaseGrantResponse {
                    header: self.header(),
                    id: *id,
                    ttl: *ttl,
                    error: String::new(),
                };
                Ok((Outcome::LeaseGrant(response), Vec::new()))
            }
            Command::LeaseRevoke { id } => self.revoke(*id),
            Command::LeaseExpire { id, term }
                if *term != entry.term && !canary::active(Canary::StaleLeaseExpiryApplied) =>
            {
                Err(KvError::StaleLeaseExpiry {
                    id: *id,
                    decided: *term,
                    entry: entry.term,
                })
            }
            Command::LeaseExpire { id, .. } => self.revoke(*id),
            Command::Alarm {
                action,
                member_id,
                alarm,
            } => Ok((
                Outcome::Alarm(self.alarm(*action, *member_id, *alarm)),
                Vec::new(),
            )),
            Command::Auth(change) => {
                let token = Arc::make_mut(&mut self.auth)
                    .apply(index, change)
                    .map_err(KvError::Auth)?;
                let revision = self.kv.current_revision();
                Ok((Outcome::Auth { revision, token }, Vec::new()))
            }
            Command::V2(req) => {
                let outcome = Arc::make_mut(&mut self.v2).apply(req);
                Ok((Outcome::V2(outcome), Vec::new()))
            }
        }
    }

    /// etcd's alarm store: GET lists the alarms (of one type, or all for NONE), ACTIVATE raises
    /// one (NONE is ignored) and answers it, DEACTIVATE clears one and answers it if it was
    /// raised. Unknown actions change nothing.
    fn alarm(&mut self, action: i32, member_id: u64, alarm: i32) -> AlarmResponse {
        let member = |(member_id, alarm): (u64, i32)| AlarmMember { member_id, alarm };
        let alarms = match AlarmAction::try_from(action) {
            Ok(AlarmAction::Get) => self
                .alarms
                .iter()
                .filter(|(_, a)| alarm == AlarmType::None as i32 || *a == alarm)
                .map(|pair| member(*pair))
                .collect(),
            Ok(AlarmAction::Activate) if alarm != AlarmType::None as i32 => {
                self.alarms.insert((member_id, alarm));
                vec![member((member_id, alarm))]
            }
            Ok(AlarmAction::Deactivate) if self.alarms.remove(&(member_id, alarm)) => {
                vec![member((member_id, alarm))]
            }
            _ => Vec::new(),
        };
        AlarmResponse {
            header: self.header(),
            alarms,
        }
    }

    /// Deletes the lease's keys in one revision, then drops the lease.
    fn revoke(&mut self, id: i64) -> Result<(Outcome, Vec<Event>), KvError> {
        let keys = self.leases.keys(id).ok_or(KvError::LeaseNotFound { id })?;
        let written = self.kv.delete_keys(&keys);
        debug_assert!(
            written.response == keys.len() as i64 || canary::active(Canary::PlainPutKeepsLease),
            "lease {id} had keys that are not live"
        );
        let (_, events) = self.attach_leases(written, |deleted| deleted);
        self.leases.revoke(id)?;
        let response = LeaseRevokeResponse {
            header: self.header(),
        };
        Ok((Outcome::LeaseRevoke(response), events))
    }

    /// Moves lease attachments to match a write: per key, from its lease before the write (the
    /// first event's `prev_kv`) to its lease after it (the last event).
    fn attach_leases<T, O>(
        &mut self,
        written: Written<T>,
        wrap: impl FnOnce(T) -> O,
    ) -> (O, Vec<Event>) {
        let mut moves: BTreeMap<&[u8], (i64, i64)> = BTreeMap::new();
        for event in &written.events {
            let Some(kv) = &event.kv else { continue };
            let after = if event.r#type == EventType::Put as i32 {
                kv.lease
            } else {
                0
            };
            let before = event.prev_kv.as_ref().map_or(0, |prev| prev.lease);
            moves
                .entry(&kv.key)
                .and_modify(|m| m.1 = after)
                .or_insert((before, after));
        }
        for (key, (before, after)) in moves.into_iter().filter(|(_, (b, a))| b != a) {
            let planted = after == 0
                && self.kv.get(key).is_some()
                && canary::active(Canary::PlainPutKeepsLease);
            if before != 0 && !planted {
                let detached = self.leases.detach(before, key);
                debug_assert!(detached, "key {key:?} was not attached to lease {before}");
            }
            if after != 0 {
                let attached = self.leases.attach(after, key);
                debug_assert!(attached, "key {key:?} put with missing lease {after}");
            }
        }
        #[cfg(debug_assertions)]
        for event in &written.events {
            let Some(key) = event.kv.as_ref().map(|kv| kv.key.as_slice()) else {
                continue;
            };
            let lease = self.kv.get(key).map_or(0, |kv| kv.lease);
            debug_assert!(
                lease == 0 || self.leases.is_attached(lease, key),
                "key {key:?} not attached to {lease}"
            );
        }
        (wrap(written.response), written.events)
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.kv.current_revision(),
            ..ResponseHeader::default()
        })
    }

    /// Checks the KV store's invariants and that lease attachments match the store; O(size).
    pub fn check(&self) -> Result<(), String> {
        self.kv.check()?;
        self.v2.check()?;
        let in_store: Vec<(i64, &[u8])> = {
            let mut pairs: Vec<_> = self
                .kv
                .leased_keys()
                .map(|(key, lease)| (lease, key))
                .collect();
            pairs.sort_unstable();
            pairs
        };
        let in_table: Vec<(i64, &[u8])> = self.leases.attachments().collect();
        if in_store != in_table {
            return Err(format!(
                "lease attachments differ: store has {} leased keys, table {}",
                in_store.len(),
                in_table.len()
            ));
        }
        Ok(())
    }

    /// Encodes the whole state (the state machine part of a raft snapshot).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        bincode::serialize(self).map_err(CodecError::Encode)
    }

    /// Encodes the whole state into `writer`, without building it in memory first.
    pub fn encode_into<W: std::io::Write>(&self, writer: W) -> Result<(), CodecError> {
        bincode::serialize_into(writer, self).map_err(CodecError::Encode)
    }

    /// Decodes a state written by `encode`, checking every invariant.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_bounded(bytes).map_err(CodecError::Decode)
    }
}

impl From<LeaseError> for KvError {
    fn from(err: LeaseError) -> Self {
        match err {
            LeaseError::NotFound { id } => KvError::LeaseNotFound { id },
            LeaseError::Exists { id } => KvError::LeaseExists { id },
            LeaseError::TtlTooLarge { ttl_seconds } => KvError::LeaseTtlTooLarge { ttl_seconds },
        }
    }
}

/// The checks etcd makes before proposing `cmd`, with `max_txn_ops` as `--max-txn-ops`. Apply
/// repeats all of them except the op budget.
pub fn validate(cmd: &Command, max_txn_ops: usize) -> Result<(), KvError> {
    match cmd {
        Command::Put(req) => validate::check_put(req),
        Command::DeleteRange(req) => validate::check_delete_range(req),
        Command::Txn(req) => validate::check_txn(req, max_txn_ops),
        Command::Compact(_)
        | Command::LeaseRevoke { .. }
        | Command::LeaseExpire { .. }
        | Command::Alarm { .. }
        | Command::Auth(_)
        | Command::V2(_) => Ok(()),
        Command::LeaseGrant { ttl, .. } if *ttl > LEASE_TTL_SECONDS_MAX => {
            Err(KvError::LeaseTtlTooLarge { ttl_seconds: *ttl })
        }
        Command::LeaseGrant { .. } => Ok(()),
    }
}

/// The checks etcd makes on a range before serving it (it is not a command: reads do not go
/// through the log).
pub fn validate_range(req: &RangeRequest) -> Result<(), KvError> {
    validate::check_range(req)
}

/// Whether `cmd` may add data: what etcd refuses while NOSPACE is raised (a put, any txn —
/// etcd charges every txn a cost, read-only ones included — and a lease grant).
fn adds_data(cmd: &Command) -> bool {
    match cmd {
        Command::Put(_) | Command::Txn(_) | Command::LeaseGrant { .. } => true,
        Command::V2(req) => req.cost_bytes() > 0,
        Command::DeleteRange(_)
        | Command::Compact(_)
        | Command::LeaseRevoke { .. }
        | Command::LeaseExpire { .. }
        | Command::Alarm { .. }
        | Command::Auth(_) => false,
    }
}
