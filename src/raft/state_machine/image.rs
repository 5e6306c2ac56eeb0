//! The snapshot image: what a `snap/` file's data and a snapshot sent to a follower hold.
//!
//! ```text
//! image     := tag meta state
//! tag       := "OXS" version:u8                 ; 4 bytes; version 1 is the only one
//! meta      := openraft `SnapshotMeta` (bincode): last_log_id:option membership snapshot_id
//! state     := `apply::State` (its own format word first, see apply/codec.rs)
//! ```
//! The image before version tags ("format 0") was `meta state`. Its first byte is the option
//! tag of `last_log_id` (0 or 1), which no tag starts with, so both are read; format 0 is
//! never written.
//!
//! Invariant: the meta can be read without decoding the state ([`decode_meta`]).

use std::marker::PhantomData;

use openraft::storage::SnapshotMeta;
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{LogId, MemberNode, NodeId, StoredMembership};
use crate::apply::CodecError;

/// The tag of image format version 1 (the current one).
pub const IMAGE_TAG_V1: [u8; 4] = *b"OXS\x01";

/// A snapshot image with state `S`: [`crate::apply::State`], or
/// [`crate::apply::UncheckedState`] for a local file (see `load.rs`), or [`MetaOnly`].
pub(crate) struct SnapshotImage<S> {
    pub meta: SnapshotMeta<NodeId, MemberNode>,
    pub state: S,
}

/// In place of the state: reads nothing, for a caller that only wants the meta.
pub(crate) struct MetaOnly;

impl<'de> Deserialize<'de> for MetaOnly {
    fn deserialize<D: Deserializer<'de>>(_deserializer: D) -> Result<Self, D::Error> {
        Ok(MetaOnly)
    }
}

/// Reads only the meta at the front of an image of any known version.
pub(crate) fn decode_meta(image: &[u8]) -> bincode::Result<SnapshotMeta<NodeId, MemberNode>> {
    use bincode::Options;
    let head: SnapshotImage<MetaOnly> = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(image.len() as u64)
        .deserialize(image)?;
    Ok(head.meta)
}

impl<S: Serialize> Serialize for SnapshotImage<S> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut tuple = serializer.serialize_tuple(3)?;
        tuple.serialize_element(&IMAGE_TAG_V1)?;
        tuple.serialize_element(&self.meta)?;
        tuple.serialize_element(&self.state)?;
        tuple.end()
    }
}

/// Most elements an image is read as: four tag bytes, meta and state (version 1), or the
/// option byte, log ID, membership, snapshot ID and state (format 0).
const IMAGE_ELEMENTS_MAX: usize = 6;

impl<'de, S: Deserialize<'de>> Deserialize<'de> for SnapshotImage<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(IMAGE_ELEMENTS_MAX, ImageVisitor(PhantomData))
    }
}

struct ImageVisitor<S>(PhantomData<S>);

fn element<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(seq: &mut A) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| A::Error::custom("snapshot image ends early"))
}

impl<'de, S: Deserialize<'de>> Visitor<'de> for ImageVisitor<S> {
    type Value = SnapshotImage<S>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a snapshot image")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first: u8 = element(&mut seq)?;
        let meta = match first {
            // Format 0: `first` is the option tag of `meta.last_log_id`.
            0 | 1 => {
                let last_log_id: Option<LogId> = match first {
                    1 => Some(element(&mut seq)?),
                    _ => None,
                };
                let last_membership: StoredMembership = element(&mut seq)?;
                let snapshot_id: String = element(&mut seq)?;
                SnapshotMeta {
                    last_log_id,
                    last_membership,
                    snapshot_id,
                }
            }
            _ => {
                let rest: [u8; 3] = element(&mut seq)?;
                let tag = [first, rest[0], rest[1], rest[2]];
                if tag != IMAGE_TAG_V1 {
                    let what = "snapshot image";
                    return Err(A::Error::custom(CodecError::UnknownFormat { what, tag }));
                }
                element(&mut seq)?
            }
        };
        let state = element(&mut seq)?;
        Ok(SnapshotImage { meta, state })
    }
}
