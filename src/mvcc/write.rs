//! Writes: `Writer` applies the changes of one write request (put, delete range, txn, lease
//! revoke) under one new main revision, and `Store::{put, delete_range, delete_keys}` wrap it.
//!
//! Invariant: all changes of one `Writer` share main revision `current + 1`, with sub-revisions
//!            0, 1, 2, ... in the order they were made.
//! Invariant: `current_revision` moves (by exactly one) only in `finish`, and only if something
//!            changed.
//! Invariant: reads through the `Writer` see its own earlier changes.

use std::sync::Arc;

use prost::bytes::Bytes;

use super::{header, KeySpan, KvError, Record, Revision, Store, Written};
use crate::mvcc::validate;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

/// The changes of one write request in progress. Finish it with `finish`; dropping a `Writer`
/// that made changes leaves the store half-written, so only do that to a store being discarded.
pub(crate) struct Writer<'s> {
    store: &'s mut Store,
    main: i64,
    changes: i64,
    events: Vec<Event>,
}

impl<'s> Writer<'s> {
    pub fn new(store: &'s mut Store) -> Self {
        let main = store.current_revision + 1;
        Writer {
            store,
            main,
            changes: 0,
            events: Vec::new(),
        }
    }

    /// The revision a read inside this write sees and reports: the new revision once something
    /// changed, the current one before.
    pub fn view_revision(&self) -> i64 {
        if self.changes > 0 {
            self.main
        } else {
            self.store.current_revision
        }
    }

    fn next_revision(&mut self) -> Revision {
        let rev = Revision::new(self.main, self.changes);
        self.changes += 1;
        rev
    }

    /// Writes `key = value` with `lease` (0 = none) as the next change.
    pub fn put(&mut self, key: &[u8], value: Bytes, lease: i64) {
        let rev = self.next_revision();
        let key: Arc<[u8]> = match self.store.index.get_key_value(key) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(key),
        };
        let (create_revision, version) = match self.store.live(&key) {
            Some((
                _,
                Record::Put {
                    create_revision,
                    version,
                    ..
                },
            )) => (*create_revision, version + 1),
            _ => (self.main, 1),
        };
        let record = Record::Put {
            key: Arc::clone(&key),
            value,
            create_revision,
            version,
            lease,
        };
        let kv = record.key_value(rev);
        self.store.insert_record(rev, record);
        Arc::make_mut(self.store.index.entry(key).or_default()).record_put(rev);
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv,
            prev_kv: None,
        });
    }

    /// Deletes every live key in `span` and returns how many.
    pub fn delete(&mut self, span: KeySpan<'_>) -> i64 {
        let doomed: Vec<Arc<[u8]>> = self
            .store
            .keys_in(span)
            .filter(|(_, history)| history.live().is_some())
            .map(|(key, _)| Arc::clone(key))
            .collect();
        for key in &doomed {
            self.delete_live(key);
        }
        doomed.len() as i64
    }

    fn delete_live(&mut self, key: &Arc<[u8]>) {
        let rev = self.next_revision();
        self.store.insert_record(
            rev,
            Record::Tombstone {
                key: Arc::clone(key),
            },
        );
        let history = self.store.index.get_mut(key.as_ref());
        debug_assert!(history.is_some(), "deleting a key without history");
        if let Some(history) = history {
            Arc::make_mut(history).record_delete(rev);
        }
        let kv = KeyValue {
            key: key.to_vec(),
            mod_revision: self.main,
            ..KeyValue::default()
        };
        self.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: None,
        });
    }

    /// A range inside this write; its revision was checked against the store before the write.
    pub fn range_request(&self, req: &RangeRequest) -> RangeResponse {
        let view = self.view_revision();
        let at = if req.revision <= 0 {
            view
        } else {
            req.revision
        };
        debug_assert!(
            at <= view && at >= self.store.compact_revision,
            "range at {at} not checked"
        );
        self.store.read_range(req, at, view)
    }

    /// A put inside this write. Fails only if `ignore_value`/`ignore_lease` finds no live key.
    pub fn put_request(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        let live = self
            .store
            .live(&req.key)
            .and_then(|(rev, record)| record.key_value(rev));
        if (req.ignore_value || req.ignore_lease) && live.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let value = match (&live, req.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => Bytes::copy_from_slice(&req.value),
        };
        let lease = match (&live, req.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => req.lease,
        };
        let prev_kv = if req.prev_kv { live } else { None };
        self.put(&req.key, value, lease);
        Ok(PutResponse {
            header: header(self.main),
            prev_kv,
        })
    }

    /// A delete range inside this write.
    pub fn delete_request(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let span = KeySpan::new(&req.key, &req.range_end);
        let prev_kvs = if req.prev_kv {
            let at = self.main; // sees this write's own changes
            self.store
                .keys_in(span)
                .filter_map(|(key, _)| self.store.visible(key, at))
                .collect()
        } else {
            Vec::new()
        };
        let deleted = self.delete(span);
        DeleteRangeResponse {
            header: header(self.view_revision()),
            deleted,
            prev_kvs,
        }
    }

    /// Ends the write: moves the current revision if anything changed and returns it with the
    /// events, each with its `prev_kv` filled in.
    pub fn finish(self) -> (i64, Vec<Event>) {
        let Writer {
            store,
            main,
            changes,
            mut events,
        } = self;
        if changes == 0 {
            debug_assert!(events.is_empty());
            return (store.current_revision, events);
        }
        debug_assert_eq!(events.len() as i64, changes);
        store.current_revision = main;
        for event in &mut events {
            let Some(kv) = &event.kv else { continue };
            let creation = event.r#type == EventType::Put as i32 && kv.version == 1;
            if !creation {
                event.prev_kv = store.visible(&kv.key, main - 1);
            }
        }
        (main, events)
    }
}

impl Store {
    /// Applies a put. `lease_exists` answers whether a lease ID is granted.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Written<PutResponse>, KvError> {
        validate::check_put(req)?;
        // etcd checks the lease before the key for a plain put (a txn does the opposite).
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(KvError::LeaseNotFound { id: req.lease });
        }
        if (req.ignore_value || req.ignore_lease) && self.live(&req.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        let mut writer = Writer::new(self);
        let response = writer.put_request(req);
        let (revision, events) = writer.finish();
        debug_assert!(response.is_ok(), "put failed after its checks");
        let mut response = response?;
        response.header = header(revision);
        Ok(Written { response, events })
    }

    /// Applies a delete range; deleting nothing does not move the revision.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<Written<DeleteRangeResponse>, KvError> {
        validate::check_delete_range(req)?;
        let mut writer = Writer::new(self);
        let mut response = writer.delete_request(req);
        let (revision, events) = writer.finish();
        response.header = header(revision);
        Ok(Written { response, events })
    }

    /// Deletes the given keys (those that are live) in one revision, in key order; used by lease
    /// revoke. Returns the number deleted.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Written<i64> {
        let mut sorted: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut writer = Writer::new(self);
        let deleted = sorted
            .into_iter()
            .map(|key| writer.delete(KeySpan::One(key)))
            .sum();
        let (_, events) = writer.finish();
        Written {
            response: deleted,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::range_tests::{delete, fixture, put};

    fn put_req(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn revisions_move_once_per_change_and_not_for_no_ops() {
        let mut store = Store::new();
        assert_eq!(
            store.current_revision(),
            1,
            "an empty store is at revision 1"
        );
        assert_eq!(put(&mut store, "a", "x"), 2);
        assert_eq!(
            put(&mut store, "a", "x"),
            3,
            "a put of the same value still moves the revision"
        );
        assert_eq!(delete(&mut store, "zz", ""), 0);
        assert_eq!(
            store.current_revision(),
            3,
            "deleting nothing keeps the revision"
        );
        let noop = store
            .delete_range(&DeleteRangeRequest {
                key: b"zz".to_vec(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(noop.response.header.unwrap().revision, 3);
        assert!(noop.events.is_empty());
        put(&mut store, "b", "y");
        assert_eq!(delete(&mut store, "a", "c"), 2);
        assert_eq!(
            store.current_revision(),
            5,
            "one revision for a multi-key delete"
        );
        assert_eq!(store.delete_keys(&[]).response, 0);
        assert_eq!(store.current_revision(), 5);
    }

    #[test]
    fn put_options() {
        let mut store = Store::new();
        let leased = PutRequest {
            lease: 5,
            ..put_req("k", "v1")
        };
        store.put(&leased, &|id| id == 5).unwrap();
        // ignore_value keeps the value, ignore_lease the lease; prev_kv returns the old pair.
        let keep_value = PutRequest {
            ignore_value: true,
            prev_kv: true,
            lease: 5,
            ..put_req("k", "")
        };
        let done = store.put(&keep_value, &|id| id == 5).unwrap();
        assert_eq!(done.response.prev_kv.unwrap().value, &b"v1"[..]);
        let now = store.get(b"k").unwrap();
        assert_eq!((&now.value[..], now.lease, now.version), (&b"v1"[..], 5, 2));
        let keep_lease = PutRequest {
            ignore_lease: true,
            ..put_req("k", "v2")
        };
        store.put(&keep_lease, &|_| false).unwrap();
        assert_eq!(
            store.get(b"k").unwrap().lease,
            5,
            "ignore_lease needs no lease lookup"
        );
        // A plain put detaches the lease.
        store.put(&put_req("k", "v3"), &|_| false).unwrap();
        assert_eq!(store.get(b"k").unwrap().lease, 0);
        let no_prev = store.put(&put_req("k", "v4"), &|_| false).unwrap();
        assert_eq!(no_prev.response.prev_kv, None, "prev_kv only when asked");
        // Errors, each leaving the store as it was.
        let before = store.clone();
        let cases = [
            (
                PutRequest {
                    ignore_value: true,
                    ..put_req("missing", "")
                },
                KvError::KeyNotFound,
            ),
            (
                PutRequest {
                    ignore_lease: true,
                    ..put_req("missing", "v")
                },
                KvError::KeyNotFound,
            ),
            (
                PutRequest {
                    ignore_value: true,
                    ..put_req("k", "v")
                },
                KvError::ValueProvided,
            ),
            (
                PutRequest {
                    ignore_lease: true,
                    lease: 5,
                    ..put_req("k", "v")
                },
                KvError::LeaseProvided,
            ),
            (
                PutRequest {
                    lease: 6,
                    ..put_req("k", "v")
                },
                KvError::LeaseNotFound { id: 6 },
            ),
            (put_req("", "v"), KvError::EmptyKey),
            // A plain put checks the lease before the key (a txn does the opposite).
            (
                PutRequest {
                    ignore_value: true,
                    lease: 6,
                    ..put_req("missing", "")
                },
                KvError::LeaseNotFound { id: 6 },
            ),
        ];
        for (req, want) in cases {
            assert_eq!(store.put(&req, &|id| id == 5).unwrap_err(), want, "{req:?}");
            assert_eq!(store, before);
        }
        let empty_value = store.put(&put_req("e", ""), &|_| true).unwrap();
        assert_eq!(
            empty_value.events[0].kv.as_ref().unwrap().value,
            &b""[..],
            "empty values are allowed"
        );
    }

    #[test]
    fn delete_range_options_and_events() {
        let mut store = fixture();
        let req = DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            prev_kv: true,
        };
        let done = store.delete_range(&req).unwrap();
        assert_eq!(done.response.deleted, 2);
        assert_eq!(done.response.header.unwrap().revision, 10);
        let prev: Vec<&[u8]> = done
            .response
            .prev_kvs
            .iter()
            .map(|kv| &kv.value[..])
            .collect();
        assert_eq!(prev, vec![&b"4444"[..], &b"66"[..]]);
        // DELETE events carry only key and mod_revision, plus prev_kv for the watcher to strip.
        let first = &done.events[0];
        assert_eq!(first.r#type, EventType::Delete as i32);
        assert_eq!(
            first.kv,
            Some(KeyValue {
                key: b"a".to_vec(),
                mod_revision: 10,
                ..Default::default()
            })
        );
        assert_eq!(first.prev_kv.as_ref().unwrap().mod_revision, 5);
        let without_prev = store
            .delete_range(&DeleteRangeRequest {
                key: b"c".to_vec(),
                ..Default::default()
            })
            .unwrap();
        assert!(without_prev.response.prev_kvs.is_empty());
        assert_eq!(
            store
                .delete_range(&DeleteRangeRequest::default())
                .unwrap_err(),
            KvError::EmptyKey
        );
        store.check().unwrap();
    }

    #[test]
    fn put_events() {
        let mut store = Store::new();
        let created = store.put(&put_req("k", "1"), &|_| true).unwrap();
        let event = &created.events[0];
        assert_eq!(event.r#type, EventType::Put as i32);
        assert_eq!(event.prev_kv, None, "a creation has no prev_kv");
        let kv = event.kv.as_ref().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
        let updated = store.put(&put_req("k", "2"), &|_| true).unwrap();
        assert_eq!(updated.events[0].prev_kv.as_ref().unwrap().value, &b"1"[..]);
        assert_eq!(updated.events[0].kv.as_ref().unwrap().version, 2);
    }

    #[test]
    fn delete_keys_is_one_revision_in_key_order() {
        let mut store = fixture();
        let keys = vec![
            b"d".to_vec(),
            b"a".to_vec(),
            b"missing".to_vec(),
            b"a".to_vec(),
        ];
        let done = store.delete_keys(&keys);
        assert_eq!(done.response, 2);
        assert_eq!(store.current_revision(), 10);
        let order: Vec<&[u8]> = done
            .events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().key.as_slice())
            .collect();
        assert_eq!(order, vec![&b"a"[..], &b"d"[..]]);
    }
}
