//! The raft log payload: a [`Proposal`] holds one or a batch of [`Envelope`]s, each a
//! [`Command`] with the [`RequestHeader`] it was proposed with.
//!
//! ```text
//! proposal  := tag body                                  ; what a normal raft entry carries
//! tag       := "OXP" version:u8                          ; 4 bytes; version 1 is the only one
//! body(v1)  := kind:u32=0 envelope                       ; one command
//!            | kind:u32=1 count:u64 envelope{count}      ; a batch, applied in order
//! envelope  := header command
//! header    := id:u64 user_len:u64 user:utf8{user_len} auth_revision:u64
//! command   := variant:u32 fields                        ; `Command`'s derived bincode layout:
//!              0 Put, 1 DeleteRange, 2 Txn, 3 Compact (each a protobuf: len:u64 bytes),
//!              4 LeaseGrant id:i64 ttl:i64, 5 LeaseRevoke id:i64,
//!              6 Alarm action:i32 member:u64 alarm:i32,
//!              7 Auth change                             ; `auth::AuthCommand`'s derived layout
//!              8 V2 request                              ; `v2store::V2Request`'s derived layout
//!              9 LeaseExpire id:i64 term:u64
//! ```
//! Integers are little-endian (bincode's fixed-width default). A batch holds envelopes and an
//! envelope holds a plain command, so nothing nests and decoding never recurses.
//!
//! The format before envelopes ("format 0", still found in data dirs written before version 1)
//! had no tag: an entry carried a bare command, `variant:u32 fields`, where variant 6 was a
//! batch, `count:u64 command{count}`. Its first four bytes are `v 0 0 0` with `v <= 6`, which no
//! tag starts with, so the decoder tells the two apart and reads format 0 as envelopes with an
//! empty header (request ID 0). A format-0 batch nested in a batch is refused (the proposer
//! never wrote one).
//!
//! Invariant: encoding always writes the newest version; decoding accepts every version listed
//!            here and refuses any other tag with [`CodecError::UnknownFormat`].

use serde::de::{self, Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codec::{self, decode_bounded, CodecError};
use super::Command;
use crate::proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest};

/// The tag of proposal format version 1 (the current one).
pub const PROPOSAL_TAG_V1: [u8; 4] = *b"OXP\x01";

/// The format-0 variant index of a batch.
const LEGACY_BATCH_VARIANT: u32 = 6;

/// What a proposal was checked against and who sent it (etcd's `RequestHeader`: ID, username,
/// auth_revision).
///
/// Apply does not look at `user` or `auth_revision` yet; the auth store will refuse a proposal
/// whose `auth_revision` is older than its own ("etcdserver: revision of auth store is old").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHeader {
    /// Unique per proposal within the cluster (see `raft::node::RequestIds`); 0 for entries
    /// written before envelopes existed.
    pub id: u64,
    /// The authenticated user; empty when auth is off.
    pub user: String,
    /// The auth store revision the request's permissions were checked against; 0 without auth.
    pub auth_revision: u64,
}

/// One command with its request header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub header: RequestHeader,
    pub command: Command,
}

impl Envelope {
    pub fn new(header: RequestHeader, command: Command) -> Self {
        Envelope { header, command }
    }
}

/// The payload of a normal raft entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Proposal {
    /// A lone command.
    One(Envelope),
    /// Several commands proposed as one entry (see `raft::batch`): each is applied in order as
    /// if it had its own entry, with its own revision and its own result.
    Batch(Vec<Envelope>),
}

impl Proposal {
    /// The envelopes in apply order (one for [`Proposal::One`]).
    pub fn envelopes(&self) -> &[Envelope] {
        match self {
            Proposal::One(envelope) => std::slice::from_ref(envelope),
            Proposal::Batch(envelopes) => envelopes,
        }
    }

    /// The encoding of this proposal (the newest format version).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        bincode::serialize(self).map_err(CodecError::Encode)
    }

    /// Decodes a proposal of any known format version; an unknown tag is
    /// [`CodecError::UnknownFormat`], any other defect [`CodecError::Decode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if let Some(tag) = bytes.get(..4) {
            let tag = [tag[0], tag[1], tag[2], tag[3]];
            if Format::of(tag) == Format::Unknown {
                return Err(unknown(tag));
            }
        }
        decode_bounded(bytes).map_err(CodecError::Decode)
    }
}

fn unknown(tag: [u8; 4]) -> CodecError {
    CodecError::UnknownFormat {
        what: "proposal",
        tag,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Format {
    /// Before envelopes: the tag bytes are the command's variant index.
    Legacy(u32),
    V1,
    Unknown,
}

impl Format {
    fn of(tag: [u8; 4]) -> Format {
        let word = u32::from_le_bytes(tag);
        if tag == PROPOSAL_TAG_V1 {
            Format::V1
        } else if word <= LEGACY_BATCH_VARIANT {
            Format::Legacy(word)
        } else {
            Format::Unknown
        }
    }
}

/// The body of version 1, as written.
#[derive(Serialize)]
enum BodyV1Ref<'a> {
    One(&'a Envelope),
    Batch(&'a [Envelope]),
}

/// The body of version 1, as read (same layout as [`BodyV1Ref`]).
#[derive(Deserialize)]
enum BodyV1 {
    One(Envelope),
    Batch(Vec<Envelope>),
}

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = match self {
            Proposal::One(envelope) => BodyV1Ref::One(envelope),
            Proposal::Batch(envelopes) => BodyV1Ref::Batch(envelopes),
        };
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&PROPOSAL_TAG_V1)?;
        tuple.serialize_element(&body)?;
        tuple.end()
    }
}

/// Most elements a proposal is read as: the tag, then a version-1 body or up to two format-0
/// fields (a lease grant's ID and TTL).
const PROPOSAL_ELEMENTS_MAX: usize = 3;

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(PROPOSAL_ELEMENTS_MAX, ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a tagged proposal")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Proposal, A::Error> {
        let tag: [u8; 4] = element(&mut seq)?;
        match Format::of(tag) {
            Format::V1 => Ok(match element::<_, BodyV1>(&mut seq)? {
                BodyV1::One(envelope) => Proposal::One(envelope),
                BodyV1::Batch(envelopes) => Proposal::Batch(envelopes),
            }),
            Format::Legacy(LEGACY_BATCH_VARIANT) => {
                let members: Vec<LegacyMember> = element(&mut seq)?;
                let envelopes = members.into_iter().map(|m| legacy_envelope(m.0));
                Ok(Proposal::Batch(envelopes.collect()))
            }
            Format::Legacy(variant) => {
                let command = legacy_command(variant, &mut seq)?;
                Ok(Proposal::One(legacy_envelope(command)))
            }
            Format::Unknown => Err(A::Error::custom(unknown(tag))),
        }
    }
}

fn element<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(seq: &mut A) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| A::Error::custom("proposal ends early"))
}

/// A format-0 command: no header, so request ID 0, no user, auth revision 0.
fn legacy_envelope(command: Command) -> Envelope {
    Envelope::new(RequestHeader::default(), command)
}

/// A protobuf message carried as its bytes (as `Command` carries them).
struct Proto<M>(M);

impl<'de, M: prost::Message + Default> Deserialize<'de> for Proto<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::proto_bytes::deserialize(deserializer).map(Proto)
    }
}

/// The fields of format-0 command `variant`, whose index was already read.
fn legacy_command<'de, A: SeqAccess<'de>>(variant: u32, seq: &mut A) -> Result<Command, A::Error> {
    Ok(match variant {
        0 => Command::Put(element::<_, Proto<PutRequest>>(seq)?.0),
        1 => Command::DeleteRange(element::<_, Proto<DeleteRangeRequest>>(seq)?.0),
        2 => Command::Txn(element::<_, Proto<TxnRequest>>(seq)?.0),
        3 => Command::Compact(element::<_, Proto<CompactionRequest>>(seq)?.0),
        4 => {
            let id = element(seq)?;
            let ttl = element(seq)?;
            Command::LeaseGrant { id, ttl }
        }
        5 => Command::LeaseRevoke { id: element(seq)? },
        LEGACY_BATCH_VARIANT => {
            return Err(A::Error::custom(
                "a batch nested in a batch (format 0) is refused",
            ))
        }
        other => {
            return Err(A::Error::invalid_value(
                de::Unexpected::Unsigned(u64::from(other)),
                &"a command variant index 0..=5",
            ))
        }
    })
}

/// One command of a format-0 batch: its variant index, then its fields; never a batch.
struct LegacyMember(Command);

impl<'de> Deserialize<'de> for LegacyMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = LegacyMember;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a format-0 command")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LegacyMember, A::Error> {
                let variant: u32 = element(&mut seq)?;
                legacy_command(variant, &mut seq).map(LegacyMember)
            }
        }
        // The variant index and at most two fields.
        deserializer.deserialize_tuple(3, MemberVisitor)
    }
}

/// Tests build entries from bare commands: one envelope with an empty header.
#[cfg(test)]
impl From<Command> for Proposal {
    fn from(command: Command) -> Self {
        Proposal::One(Envelope::new(RequestHeader::default(), command))
    }
}
