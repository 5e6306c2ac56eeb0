//! Encoding of `State` and the pieces `Command` shares: bincode over serde, with protobuf
//! requests embedded as their protobuf bytes, and the state written as an image that `decode`
//! rebuilds and checks. (Proposals have their own module, `proposal.rs`.)
//!
//! ```text
//! state := format:u32 kv:store leases:seq<(id:i64, ttl:i64)> alarms auth  (store: mvcc/codec.rs)
//! alarms := seq<(member:u64, alarm:i32)>                              ; format 2 on
//! auth   := enabled:bool revision:u64 users roles                     ; format 3 on
//! v2     := nodes:map<path:seq<string>, node> index:u64 ttl_keys:seq<(expire:i64, path)>
//!           history:seq<event>                                        ; format 4 on
//! v2auth := enabled:bool ensured:bool map<name, (hash, option<seq<role>>)>
//!           map<name, (option<seq<pattern>>, option<seq<pattern>>)>  ; format 5 on
//! node   := value:option<string> created:u64 modified:u64 expire:option<i64>
//! users  := map<name:string, (password_hash:string no_password:bool roles:seq<string>)>
//! roles  := map<name:string, perms:seq<(type:u32 key:bytes range_end:bytes)>>
//! ```
//! Lease attachments are not written: they are rebuilt from the live keys' lease fields.
//! Format 1 (no alarms), format 2 (no auth store), format 3 (no v2 store) and format 4 (no v2
//! auth) are still read, as a state without alarms, with a fresh auth store, with an empty v2
//! store, with v2 auth off and empty; only format 5 is written. The v2 store is serde's encoding of `v2store::Store` (events: see `v2store`). `type` is `auth::PermType`'s variant
//! index (Read 0, Write 1, ReadWrite 2). Password hashes are bcrypt's; no password is written.
//!
//! Invariant: a decoded `State` passes `State::check`; an `UncheckedState` is one whose check
//!            is the caller's (a local image with a matching checksum).
//! Invariant: [`decode_bounded`] never reads (or lets a length claim) more than its input.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::State;
use crate::auth::AuthStore;
use crate::lease::LeaseTable;
use crate::mvcc::{Store, UncheckedStore};
use crate::v2store::auth::V2Auth;
use crate::v2store::Store as V2Store;

/// Version of the state layout above (the one written).
const STATE_FORMAT: u32 = 5;
/// The layout before v2 auth, still read.
const STATE_FORMAT_NO_V2_AUTH: u32 = 4;
/// The layout before the v2 store, still read.
const STATE_FORMAT_NO_V2: u32 = 3;
/// The layout before the auth store, still read.
const STATE_FORMAT_NO_AUTH: u32 = 2;
/// The layout before alarms, still read.
const STATE_FORMAT_NO_ALARMS: u32 = 1;

/// Failure to encode or decode a proposal or state.
#[derive(Debug)]
pub enum CodecError {
    Encode(bincode::Error),
    Decode(bincode::Error),
    /// The format tag in front of an encoding names no format this build can read (a newer
    /// version, or not an encoding of this kind at all).
    UnknownFormat {
        what: &'static str,
        tag: [u8; 4],
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Encode(err) => write!(f, "encode: {err}"),
            CodecError::Decode(err) => write!(f, "decode: {err}"),
            CodecError::UnknownFormat { what, tag } => write!(
                f,
                "unknown {what} format: tag {:02x} {:02x} {:02x} {:02x} (a newer version, or not \
                 a {what} at all)",
                tag[0], tag[1], tag[2], tag[3]
            ),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::Encode(err) | CodecError::Decode(err) => Some(err.as_ref()),
            CodecError::UnknownFormat { .. } => None,
        }
    }
}

/// Decodes `bytes` as the whole bincode encoding of a `T` (bincode's default layout, the one
/// `bincode::serialize` writes), refusing trailing bytes and any length that claims more than
/// the input holds before anything is allocated for it.
pub fn decode_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
}

/// Serde helpers carrying a prost message as its protobuf bytes.
pub(super) mod proto_bytes {
    use serde::de::Error as _;
    use serde::{Deserializer, Serializer};

    use crate::mvcc::bytes_serde;

    pub fn serialize<S: Serializer, M: prost::Message>(
        msg: &M,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&msg.encode_to_vec())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, M: prost::Message + Default>(
        deserializer: D,
    ) -> Result<M, D::Error> {
        let bytes: Vec<u8> = bytes_serde::deserialize(deserializer)?;
        M::decode(bytes.as_slice()).map_err(D::Error::custom)
    }
}

#[derive(Serialize)]
struct StateImageRef<'a> {
    format: u32,
    kv: &'a Store,
    leases: Vec<(i64, i64)>,
    alarms: Vec<(u64, i32)>,
    auth: &'a AuthStore,
    v2: &'a V2Store,
    v2auth: &'a V2Auth,
}

/// The decoded image; `K` is [`Store`] (checked) or [`UncheckedStore`].
struct StateImage<K> {
    format: u32,
    kv: K,
    leases: Vec<(i64, i64)>,
    alarms: Vec<(u64, i32)>,
    auth: AuthStore,
    v2: V2Store,
}

/// Elements of the newest layout: format, store, leases, alarms, auth, v2, v2auth.
const STATE_ELEMENTS_MAX: usize = 7;

fn known_format(format: u32) -> bool {
    matches!(
        format,
        STATE_FORMAT
            | STATE_FORMAT_NO_V2_AUTH
            | STATE_FORMAT_NO_V2
            | STATE_FORMAT_NO_AUTH
            | STATE_FORMAT_NO_ALARMS
    )
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for StateImage<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor<K>(std::marker::PhantomData<K>);
        impl<'de, K: Deserialize<'de>> serde::de::Visitor<'de> for ImageVisitor<K> {
            type Value = StateImage<K>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a state image")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let ends = || A::Error::custom("state image ends early");
                let format: u32 = seq.next_element()?.ok_or_else(ends)?;
                if !known_format(format) {
                    return Err(A::Error::custom(format!("unknown state format {format}")));
                }
                let kv: K = seq.next_element()?.ok_or_else(ends)?;
                let leases: Vec<(i64, i64)> = seq.next_element()?.ok_or_else(ends)?;
                let alarms = if format == STATE_FORMAT_NO_ALARMS {
                    Vec::new()
                } else {
                    seq.next_element()?.ok_or_else(ends)?
                };
                let auth = if format >= STATE_FORMAT_NO_V2 {
                    seq.next_element()?.ok_or_else(ends)?
                } else {
                    AuthStore::new()
                };
                let mut v2: V2Store = if format >= STATE_FORMAT_NO_V2_AUTH {
                    seq.next_element()?.ok_or_else(ends)?
                } else {
                    V2Store::new()
                };
                if format == STATE_FORMAT {
                    let v2auth: V2Auth = seq.next_element()?.ok_or_else(ends)?;
                    v2.set_auth(v2auth);
                }
                Ok(StateImage {
                    format,
                    kv,
                    leases,
                    alarms,
                    auth,
                    v2,
                })
            }
        }
        deserializer.deserialize_tuple(STATE_ELEMENTS_MAX, ImageVisitor(std::marker::PhantomData))
    }
}

/// A state decoded without the store's structural check: only for an image this member wrote
/// itself and whose checksum matched (a local restart). The caller owns running
/// [`State::check`]; anything received from elsewhere must decode as a plain [`State`].
pub struct UncheckedState(pub State);

impl<'de> Deserialize<'de> for UncheckedState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let image = StateImage::<UncheckedStore>::deserialize(deserializer)?;
        let state = state_from_image(
            image.format,
            image.kv.0,
            image.leases,
            image.alarms,
            image.auth,
            image.v2,
        );
        state.map(UncheckedState).map_err(D::Error::custom)
    }
}

/// Rebuilds the lease table (and its attachments, from the live keys' lease fields).
fn state_from_image(
    format: u32,
    kv: Store,
    lease_ttls: Vec<(i64, i64)>,
    alarms: Vec<(u64, i32)>,
    auth: AuthStore,
    v2: V2Store,
) -> Result<State, String> {
    if !known_format(format) {
        return Err(format!("unknown state format {format}"));
    }
    auth.check()?;
    v2.check()?;
    let mut leases = LeaseTable::new();
    for (id, ttl) in lease_ttls {
        leases.grant(id, ttl).map_err(|e| e.to_string())?;
    }
    for (key, lease) in kv.live_leased_keys_by_revision() {
        if !leases.attach(lease, key) {
            return Err(format!("key {key:?} has unknown lease {lease}"));
        }
    }
    Ok(State {
        kv,
        leases,
        alarms: alarms.into_iter().collect(),
        auth: std::sync::Arc::new(auth),
        v2: std::sync::Arc::new(v2),
    })
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let image = StateImageRef {
            format: STATE_FORMAT,
            kv: &self.kv,
            leases: self.leases.leases().collect(),
            alarms: self.alarms.iter().copied().collect(),
            auth: &self.auth,
            v2: &self.v2,
            v2auth: self.v2.auth(),
        };
        image.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let image = StateImage::<Store>::deserialize(deserializer)?;
        let state = state_from_image(
            image.format,
            image.kv,
            image.leases,
            image.alarms,
            image.auth,
            image.v2,
        );
        let state = state.map_err(D::Error::custom)?;
        // The store was fully checked by its own decoder and every attachment above came from
        // it, so `State::check` holds by construction; re-running it doubled the decode time of
        // a large snapshot (it walks every revision).
        debug_assert_eq!(state.check(), Ok(()));
        Ok(state)
    }
}
