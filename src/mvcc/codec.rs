//! The serialized form of a `Store` (inside a state machine snapshot).
//!
//! Only the records are written; the key index is rebuilt from them on decode, which also
//! checks every invariant, so a decoded store is either valid or an error. Layout (serde, as
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
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Record, Revision, Store};

/// Version of the layout above.
const STORE_FORMAT: u32 = 1;

/// Serde helpers that write byte strings as one length-prefixed blob (not a sequence of u8).
pub(crate) mod bytes_serde {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, B: AsRef<[u8]>>(bytes: &B, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, B: From<Vec<u8>>>(deserializer: D) -> Result<B, D::Error> {
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
            Record::Put { value, create_revision, version, lease, .. } => Some(PutImage {
                value: Cow::Borrowed(value),
                create_revision: *create_revision,
                version: *version,
                lease: *lease,
            }),
            Record::Tombstone { .. } => None,
        };
        RecordImage { main: rev.main, sub: rev.sub, key: Cow::Borrowed(record.key()), put }
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
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut image = serializer.serialize_struct("Store", 4)?;
        image.serialize_field("format", &STORE_FORMAT)?;
        image.serialize_field("current_revision", &self.current_revision)?;
        image.serialize_field("compact_revision", &self.compact_revision)?;
        image.serialize_field("records", &Records(self))?;
        image.end()
    }
}

#[derive(Deserialize)]
struct StoreImage {
    format: u32,
    current_revision: i64,
    compact_revision: i64,
    records: Vec<RecordImage<'static>>,
}

impl<'de> Deserialize<'de> for Store {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let image = StoreImage::deserialize(deserializer)?;
        if image.format != STORE_FORMAT {
            return Err(D::Error::custom(format!("unknown store format {}", image.format)));
        }
        Store::from_image(image).map_err(D::Error::custom)
    }
}

impl Store {
    /// Rebuilds a store from its records, replaying them in order into a fresh index.
    fn from_image(image: StoreImage) -> Result<Store, String> {
        let mut store = Store::new();
        store.current_revision = image.current_revision;
        store.compact_revision = image.compact_revision;
        let mut previous: Option<Revision> = None;
        for record in image.records {
            let rev = Revision::new(record.main, record.sub);
            if previous.is_some_and(|p| p >= rev) || rev.main < 1 || rev.sub < 0 {
                return Err(format!("record at {rev} out of order"));
            }
            previous = Some(rev);
            store.restore_record(rev, record)?;
        }
        store.check()?;
        Ok(store)
    }

    fn restore_record(&mut self, rev: Revision, image: RecordImage<'static>) -> Result<(), String> {
        let key: Arc<[u8]> = match self.index.get_key_value(image.key.as_ref()) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(image.key.into_owned()),
        };
        let live = self.index.get(key.as_ref()).and_then(|h| h.live()).is_some();
        let history = Arc::make_mut(self.index.entry(Arc::clone(&key)).or_default());
        let record = match image.put {
            Some(put) => {
                history.record_put(rev);
                Record::Put {
                    key,
                    value: put.value.into_owned(),
                    create_revision: put.create_revision,
                    version: put.version,
                    lease: put.lease,
                }
            }
            None if live => {
                history.record_delete(rev);
                Record::Tombstone { key }
            }
            None => return Err(format!("tombstone at {rev} for a key that is not live")),
        };
        self.records.insert(rev, Arc::new(record));
        Ok(())
    }
}
