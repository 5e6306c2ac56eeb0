//! The serialized form of a `Store` (inside a state machine snapshot).
//!
//! Only the records are written; the key index is rebuilt from them on decode, record by record
//! as they are read (no intermediate list). Decoding a `Store` also checks every invariant, so
//! it is either valid or an error; [`UncheckedStore`] skips that check for images the member
//! wrote itself and whose checksum matched. Layout (serde, as
//! encoded by bincode in `apply`):
//!
//! ```text
//! store   := format:u32 current_revision:i64 compact_revision:i64 records:seq<record>
//! record  := main:i64 sub:i64 key:bytes put:option<put>       (records ascending by revision)
//! put     := value:bytes create_revision:i64 version:i64 lease:i64
//! ```
//!
//! Invariant: encoding is a pure function of the store's content (no map-order dependence).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use imbl::OrdMap;
use prost::bytes::Bytes;
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{KeyHistory, Record, Revision, Store};

/// Version of the layout above.
const STORE_FORMAT: u32 = 1;

/// Serde helpers that write byte strings as one length-prefixed blob (not a sequence of u8).
pub(crate) mod bytes_serde {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(
        bytes: &B,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, B: From<Vec<u8>>>(
        deserializer: D,
    ) -> Result<B, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor).map(B::from)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordImage<'a> {
    main: i64,
    sub: i64,
    #[serde(with = "bytes_serde")]
    key: Cow<'a, [u8]>,
    put: Option<PutImage<'a>>,
}

#[derive(Serialize, Deserialize)]
struct PutImage<'a> {
    #[serde(with = "bytes_serde")]
    value: Cow<'a, [u8]>,
    create_revision: i64,
    version: i64,
    lease: i64,
}

impl<'a> RecordImage<'a> {
    fn borrow(rev: Revision, record: &'a Record) -> Self {
        let put = match record {
            Record::Put {
                value,
                create_revision,
                version,
                lease,
                ..
            } => Some(PutImage {
                value: Cow::Borrowed(value),
                create_revision: *create_revision,
                version: *version,
                lease: *lease,
            }),
            Record::Tombstone { .. } => None,
        };
        RecordImage {
            main: rev.main,
            sub: rev.sub,
            key: Cow::Borrowed(record.key()),
            put,
        }
    }
}

struct Records<'a>(&'a Store);

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.records.len()))?;
        for (rev, record) in self.0.records.iter() {
            seq.serialize_element(&RecordImage::borrow(*rev, record))?;
        }
        seq.end()
    }
}

impl Serialize for Store {
    /// An image never shows how far a compaction got: a pending one is carried out on a copy
    /// first, so every member writes the same image for the same applied state.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.pending.is_some() {
            return self.settled().serialize(serializer);
        }
        let mut image = serializer.serialize_struct("Store", 4)?;
        image.serialize_field("format", &STORE_FORMAT)?;
        image.serialize_field("current_revision", &self.current_revision)?;
        image.serialize_field("compact_revision", &self.compact_revision)?;
        image.serialize_field("records", &Records(self))?;
        image.end()
    }
}

/// A store decoded without its structural check: only for an image this member wrote itself
/// and whose checksum matched (a local restart). The caller owns running [`Store::check`] (for
/// example in the background); images from anywhere else must decode as a plain [`Store`].
pub struct UncheckedStore(pub Store);

impl<'de> Deserialize<'de> for Store {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let UncheckedStore(store) = UncheckedStore::deserialize(deserializer)?;
        store.check().map_err(D::Error::custom)?;
        Ok(store)
    }
}

impl<'de> Deserialize<'de> for UncheckedStore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["format", "current_revision", "compact_revision", "records"];
        deserializer
            .deserialize_struct("Store", FIELDS, StoreVisitor)
            .map(UncheckedStore)
    }
}

/// Decodes the fields in order (bincode writes a struct as a tuple) and restores each record
/// as soon as it is decoded, so no intermediate list of records is ever held.
struct StoreVisitor;

impl<'de> Visitor<'de> for StoreVisitor {
    type Value = Store;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a store image")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Store, A::Error> {
        let missing = |i| A::Error::invalid_length(i, &"4 store fields");
        let format: u32 = seq.next_element()?.ok_or_else(|| missing(0))?;
        if format != STORE_FORMAT {
            return Err(A::Error::custom(format!("unknown store format {format}")));
        }
        let mut store = Store::new();
        store.current_revision = seq.next_element()?.ok_or_else(|| missing(1))?;
        store.compact_revision = seq.next_element()?.ok_or_else(|| missing(2))?;
        let mut histories = Histories::default();
        seq.next_element_seed(RecordsSeed {
            store: &mut store,
            histories: &mut histories,
        })?
        .ok_or_else(|| missing(3))?;
        store.index = sorted_index(histories);
        Ok(store)
    }
}

/// The `records` sequence, replayed in order into a store's records and into key histories
/// held in a hash map while decoding: a B-tree lookup per record would compare the key with
/// some twenty others, each behind its own pointer, which made the index the bulk of a large
/// snapshot's load time. The index is built once at the end, in key order.
struct RecordsSeed<'s> {
    store: &'s mut Store,
    histories: &'s mut Histories,
}

/// Key histories by key while a snapshot decodes.
type Histories = HashMap<Arc<[u8]>, KeyHistory, BuildHasherDefault<KeyHasher>>;

/// A cheap hash for the decode-time key map (SipHash was a fifth of the decode time): one
/// multiply per 8 bytes, then a full-avalanche finalizer so every bit of the key reaches the
/// low bits the table indexes by. Images come from the member itself or its cluster's leader,
/// both checksummed, so resistance to crafted collisions is not needed.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut previous: Option<Revision> = None;
        while let Some(record) = seq.next_element::<RecordImage<'static>>()? {
            let rev = Revision::new(record.main, record.sub);
            if previous.is_some_and(|p| p >= rev) || rev.main < 1 || rev.sub < 0 {
                return Err(A::Error::custom(format!("record at {rev} out of order")));
            }
            previous = Some(rev);
            let restored = restore_record(self.histories, rev, record);
            self.store
                .insert_record(rev, restored.map_err(A::Error::custom)?);
        }
        Ok(())
    }
}

/// Adds one decoded record (records arrive in ascending revision order) to its key's history
/// and returns it, sharing the key's name with the key's earlier records.
fn restore_record(
    histories: &mut Histories,
    rev: Revision,
    image: RecordImage<'static>,
) -> Result<Record, String> {
    let known = histories
        .get_key_value(image.key.as_ref())
        .map(|(k, _)| Arc::clone(k));
    let key = match known {
        Some(key) => key,
        None => {
            if image.put.is_none() {
                return Err(format!("tombstone at {rev} for a key that is not live"));
            }
            let key: Arc<[u8]> = Arc::from(image.key.into_owned());
            histories.insert(Arc::clone(&key), KeyHistory::default());
            key
        }
    };
    let Some(history) = histories.get_mut(key.as_ref()) else {
        return Err(format!("key of the record at {rev} vanished"));
    };
    match image.put {
        Some(put) => {
            history.record_put(rev);
            Ok(put.into_record(key))
        }
        None if history.live().is_some() => {
            history.record_delete(rev);
            Ok(Record::Tombstone { key })
        }
        None => Err(format!("tombstone at {rev} for a key that is not live")),
    }
}

/// The key index from the decoded histories. Sorting by an 8-byte prefix first keeps most
/// comparisons off the keys' own allocations; inserting in key order keeps the tree's insert
/// path in cache.
fn sorted_index(histories: Histories) -> OrdMap<Arc<[u8]>, Arc<KeyHistory>> {
    let prefix = |key: &[u8]| {
        let mut head = [0u8; 8];
        let n = key.len().min(8);
        head[..n].copy_from_slice(&key[..n]);
        u64::from_be_bytes(head)
    };
    let mut sorted: Vec<(u64, Arc<[u8]>, KeyHistory)> = histories
        .into_iter()
        .map(|(key, history)| (prefix(&key), key, history))
        .collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    sorted
        .into_iter()
        .map(|(_, key, history)| (key, Arc::new(history)))
        .collect()
}

impl Store {
    /// Every live key that has a lease, as (key, lease ID), in the revision order of their live
    /// puts. One pass over the records, with an index lookup only for leased puts: far cheaper
    /// on a large store than [`Store::leased_keys`], which looks up every key's live record.
    pub fn live_leased_keys_by_revision(&self) -> impl Iterator<Item = (&[u8], i64)> + '_ {
        self.records
            .iter()
            .filter_map(move |(rev, record)| match record.as_ref() {
                Record::Put { key, lease, .. }
                    if *lease != 0
                        && self.index.get(key.as_ref()).and_then(|h| h.live()) == Some(*rev) =>
                {
                    Some((key.as_ref(), *lease))
                }
                _ => None,
            })
    }
}

/// Builds a store from records given one by one in ascending revision order, for a store
/// imported from another format (an etcd backend file). The result is checked like a decoded
/// image.
pub struct StoreBuilder {
    store: Store,
    histories: Histories,
    previous: Option<Revision>,
}

/// One record handed to [`StoreBuilder::push`]: a put with its fields, or a tombstone.
pub struct PutFields {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl Default for StoreBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreBuilder {
    pub fn new() -> Self {
        StoreBuilder {
            store: Store::new(),
            histories: Histories::default(),
            previous: None,
        }
    }

    /// Whether `key` has a live value among the records pushed so far.
    pub fn is_live(&self, key: &[u8]) -> bool {
        self.histories
            .get(key)
            .is_some_and(|history| history.live().is_some())
    }

    /// Adds the record at `rev`: a put (`Some`) or a tombstone (`None`). Revisions must
    /// increase; a tombstone needs a live key.
    pub fn push(
        &mut self,
        rev: Revision,
        key: &[u8],
        put: Option<PutFields>,
    ) -> Result<(), String> {
        if self.previous.is_some_and(|p| p >= rev) || rev.main < 1 || rev.sub < 0 {
            return Err(format!("record at {rev} out of order"));
        }
        let image = RecordImage {
            main: rev.main,
            sub: rev.sub,
            key: Cow::Owned(key.to_vec()),
            put: put.map(|p| PutImage {
                value: Cow::Owned(p.value),
                create_revision: p.create_revision,
                version: p.version,
                lease: p.lease,
            }),
        };
        let record = restore_record(&mut self.histories, rev, image)?;
        self.previous = Some(rev);
        self.store.insert_record(rev, record);
        Ok(())
    }

    /// The store at `current_revision` (at least the last record's), compacted at
    /// `compact_revision` (`NEVER_COMPACTED` if it never was): the records must already be
    /// what that compaction keeps. Fails if any invariant does not hold.
    pub fn finish(mut self, current_revision: i64, compact_revision: i64) -> Result<Store, String> {
        self.store.current_revision = current_revision.max(super::FIRST_REVISION);
        self.store.compact_revision = compact_revision;
        self.store.index = sorted_index(self.histories);
        self.store.check()?;
        Ok(self.store)
    }
}

impl PutImage<'static> {
    fn into_record(self, key: Arc<[u8]>) -> Record {
        Record::Put {
            key,
            value: Bytes::from(self.value.into_owned()),
            create_revision: self.create_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(main: i64, key: &[u8], create_revision: i64, version: i64) -> RecordImage<'static> {
        RecordImage {
            main,
            sub: 0,
            key: Cow::Owned(key.to_vec()),
            put: Some(PutImage {
                value: Cow::Owned(b"v".to_vec()),
                create_revision,
                version,
                lease: 0,
            }),
        }
    }

    fn image(current_revision: i64, records: Vec<RecordImage<'static>>) -> Vec<u8> {
        bincode::serialize(&(STORE_FORMAT, current_revision, NEVER, records)).unwrap()
    }

    const NEVER: i64 = super::super::NEVER_COMPACTED;

    #[test]
    fn a_structural_defect_is_rejected_by_the_checked_decoder_only() {
        // Version 2 at the key's first put (nothing compacted): the records replay into an
        // index, but the store breaks an invariant that only the check sees.
        let bytes = image(3, vec![put(2, b"k", 2, 1), put(3, b"j", 3, 2)]);
        let err = bincode::deserialize::<Store>(&bytes).unwrap_err();
        assert!(err.to_string().contains("put at 3.0"), "{err}");
        let UncheckedStore(unchecked) = bincode::deserialize(&bytes).unwrap();
        assert!(unchecked.check().is_err());
        assert_eq!(unchecked.record_count(), 2);
        // A record beyond the current revision is also a check failure, not a replay one.
        let beyond = image(2, vec![put(2, b"k", 2, 1), put(3, b"k", 2, 2)]);
        assert!(bincode::deserialize::<Store>(&beyond).is_err());
        assert!(bincode::deserialize::<UncheckedStore>(&beyond).is_ok());
    }

    #[test]
    fn replay_failures_are_rejected_by_both_decoders() {
        let unordered = image(5, vec![put(3, b"k", 3, 1), put(2, b"j", 2, 1)]);
        let tombstone_of_absent = image(
            5,
            vec![RecordImage {
                main: 2,
                sub: 0,
                key: Cow::Owned(b"k".to_vec()),
                put: None,
            }],
        );
        let mut wrong_format = image(5, vec![put(2, b"k", 2, 1)]);
        wrong_format[0] ^= 0xff;
        for bytes in [unordered, tombstone_of_absent, wrong_format] {
            assert!(bincode::deserialize::<Store>(&bytes).is_err());
            assert!(bincode::deserialize::<UncheckedStore>(&bytes).is_err());
        }
        let good = image(3, vec![put(2, b"k", 2, 1), put(3, b"k", 2, 2)]);
        let checked: Store = bincode::deserialize(&good).unwrap();
        let UncheckedStore(unchecked) = bincode::deserialize(&good).unwrap();
        assert_eq!(checked, unchecked);
        assert_eq!(bincode::serialize(&checked).unwrap(), good);
    }
}
