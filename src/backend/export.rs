//! State → etcd backend file. One pass over an immutable view, in bucket order; see the schema
//! in `schema.rs`.

use prost::Message;
use serde::Serialize;

use super::schema::{self, LeaseRecord, BUCKETS};
use crate::apply::State;
use crate::bbolt::{PageSink, WriteError, WriteSummary, Writer, WriterOptions};
use crate::proto::etcdserverpb::AlarmMember;
use crate::proto::mvccpb::KeyValue;

/// A cluster member as etcd's `members` bucket stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What the file records beside the key space and leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    /// The raft index the state was applied up to (etcd's `consistent_index`).
    pub consistent_index: u64,
    /// The term of that entry.
    pub term: u64,
    pub members: Vec<Member>,
    /// e.g. "3.5.0" (etcd stores major.minor.0).
    pub cluster_version: String,
}

/// etcd's member JSON: `RaftAttributes` then `Attributes`, empty optional fields left out.
#[derive(Serialize)]
struct MemberJson<'a> {
    id: u64,
    #[serde(rename = "peerURLs")]
    peer_urls: &'a [String],
    #[serde(rename = "isLearner", skip_serializing_if = "is_false")]
    is_learner: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "clientURLs", skip_serializing_if = "<[String]>::is_empty")]
    client_urls: &'a [String],
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// raftpb.ConfState as etcd 3.5 stores it in `meta/confState`.
#[derive(Serialize)]
struct ConfStateJson {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    voters: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    learners: Vec<u64>,
    auto_leave: bool,
}

/// Writes `state` as an etcd backend file into `sink`.
pub fn export<S: PageSink>(
    state: &State,
    info: &ExportInfo,
    options: WriterOptions,
    sink: S,
) -> Result<(S, WriteSummary), WriteError> {
    let mut w = Writer::new(sink, options)?;
    for bucket in BUCKETS {
        w.begin_bucket(bucket)?;
        match bucket {
            schema::ALARM => write_alarms(&mut w, state)?,
            schema::KEY => write_keys(&mut w, state)?,
            schema::LEASE => write_leases(&mut w, state)?,
            schema::META => write_meta(&mut w, state, info)?,
            schema::MEMBERS => write_members(&mut w, info)?,
            schema::CLUSTER => w.put(schema::CLUSTER_VERSION, info.cluster_version.as_bytes())?,
            super::auth::AUTH => super::auth::write_auth(&mut w, &state.auth)?,
            super::auth::AUTH_USERS => super::auth::write_users(&mut w, &state.auth)?,
            super::auth::AUTH_ROLES => super::auth::write_roles(&mut w, &state.auth)?,
            _ => {}
        }
        w.end_bucket()?;
    }
    w.finish()
}

fn write_keys<S: PageSink>(w: &mut Writer<S>, state: &State) -> Result<(), WriteError> {
    let mut value = Vec::new();
    // The file holds what a finished compaction keeps, however far this member's has got.
    let kv_store = state.kv.settled();
    for (rev, key, kv) in kv_store.records() {
        let tombstone = kv.is_none();
        let kv = kv.unwrap_or_else(|| KeyValue {
            key: key.to_vec(),
            ..KeyValue::default()
        });
        value.clear();
        kv.encode(&mut value)
            .expect("a Vec grows to fit any message");
        w.put(
            &schema::encode_revision(rev.main, rev.sub, tombstone),
            &value,
        )?;
    }
    Ok(())
}

/// Raised alarms as etcd stores them: the marshaled `AlarmMember` as the key, no value; keys
/// in byte order, as the writer needs.
fn write_alarms<S: PageSink>(w: &mut Writer<S>, state: &State) -> Result<(), WriteError> {
    let mut keys: Vec<Vec<u8>> = state
        .alarms
        .iter()
        .map(|(member_id, alarm)| {
            AlarmMember {
                member_id: *member_id,
                alarm: *alarm,
            }
            .encode_to_vec()
        })
        .collect();
    keys.sort();
    for key in keys {
        w.put(&key, &[])?;
    }
    Ok(())
}

fn write_leases<S: PageSink>(w: &mut Writer<S>, state: &State) -> Result<(), WriteError> {
    // IDs are positive, so numeric order (the table's) is the order of their big-endian bytes.
    for (id, ttl) in state.leases.leases() {
        let record = LeaseRecord {
            id,
            ttl,
            remaining_ttl: 0,
        };
        w.put(&id.to_be_bytes(), &record.encode_to_vec())?;
    }
    Ok(())
}

fn write_meta<S: PageSink>(
    w: &mut Writer<S>,
    state: &State,
    info: &ExportInfo,
) -> Result<(), WriteError> {
    let conf_state = ConfStateJson {
        voters: voters(info, false),
        learners: voters(info, true),
        auto_leave: false,
    };
    let conf_state = serde_json::to_vec(&conf_state).expect("plain struct serializes");
    w.put(schema::META_CONF_STATE, &conf_state)?;
    w.put(
        schema::META_CONSISTENT_INDEX,
        &info.consistent_index.to_be_bytes(),
    )?;
    let compacted = state.kv.compact_revision();
    let compacted = (compacted > 0).then(|| schema::encode_revision(compacted, 0, false));
    if let Some(rev) = &compacted {
        w.put(schema::META_FINISHED_COMPACT, rev)?;
        w.put(schema::META_SCHEDULED_COMPACT, rev)?;
    }
    w.put(schema::META_TERM, &info.term.to_be_bytes())
}

fn voters(info: &ExportInfo, learners: bool) -> Vec<u64> {
    let mut ids: Vec<u64> = info
        .members
        .iter()
        .filter(|m| m.is_learner == learners)
        .map(|m| m.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn write_members<S: PageSink>(w: &mut Writer<S>, info: &ExportInfo) -> Result<(), WriteError> {
    let mut rows: Vec<(String, Vec<u8>)> = info
        .members
        .iter()
        .map(|m| {
            let json = MemberJson {
                id: m.id,
                peer_urls: &m.peer_urls,
                is_learner: m.is_learner,
                name: &m.name,
                client_urls: &m.client_urls,
            };
            let json = serde_json::to_vec(&json).expect("plain struct serializes");
            (format!("{:x}", m.id), json)
        })
        .collect();
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    for (key, json) in rows {
        w.put(key.as_bytes(), &json)?;
    }
    Ok(())
}
