//! Writes: `Writer` applies the changes of one write request (put, delete range, txn, lease
//! revoke) under one new main revision, and `Store::{put, delete_range, delete_keys}` wrap it.
//!
//! Invariant: all changes of one `Writer` share main revision `current + 1`, with sub-revisions
//!            0, 1, 2, ... in the order they were made.
//! Invariant: `current_revision` moves (by exactly one) only in `finish`, and only if something
//!            changed.
//! Invariant: reads through the `Writer` see its own earlier changes.

use std::sync::Arc;

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
        Writer { store, main, changes: 0, events: Vec::new() }
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
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) {
        let rev = self.next_revision();
        let key: Arc<[u8]> = match self.store.index.get_key_value(key) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(key),
        };
        let (create_revision, version) = match self.store.live(&key) {
            Some((_, Record::Put { create_revision, version, .. })) => (*create_revision, version + 1),
            _ => (self.main, 1),
        };
        let record = Record::Put { key: Arc::clone(&key), value, create_revision, version, lease };
        let kv = record.key_value(rev);
        self.store.records.insert(rev, Arc::new(record));
        Arc::make_mut(self.store.index.entry(key).or_default()).record_put(rev);
        self.events.push(Event { r#type: EventType::Put as i32, kv, prev_kv: None });
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
        self.store.records.insert(rev, Arc::new(Record::Tombstone { key: Arc::clone(key) }));
        let history = self.store.index.get_mut(key.as_ref());
        debug_assert!(history.is_some(), "deleting a key without history");
        if let Some(history) = history {
            Arc::make_mut(history).record_delete(rev);
        }
        let kv = KeyValue { key: key.to_vec(), mod_revision: self.main, ..KeyValue::default() };
        self.events.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None });
    }

    /// A range inside this write; its revision was checked against the store before the write.
    pub fn range_request(&self, req: &RangeRequest) -> RangeResponse {
        let view = self.view_revision();
        let at = if req.revision <= 0 { view } else { req.revision };
        debug_assert!(at <= view && at >= self.store.compact_revision, "range at {at} not checked");
        self.store.read_range(req, at, view)
    }

    /// A put inside this write. Fails only if `ignore_value`/`ignore_lease` finds no live key.
    pub fn put_request(&mut self, req: &PutRequest) -> Result<PutResponse, KvError> {
        let live = self.store.live(&req.key).and_then(|(rev, record)| record.key_value(rev));
        if (req.ignore_value || req.ignore_lease) && live.is_none() {
            return Err(KvError::KeyNotFound);
        }
        let value = match (&live, req.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&live, req.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => req.lease,
        };
        let prev_kv = if req.prev_kv { live } else { None };
        self.put(&req.key, value, lease);
        Ok(PutResponse { header: header(self.main), prev_kv })
    }

    /// A delete range inside this write.
    pub fn delete_request(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let span = KeySpan::new(&req.key, &req.range_end);
        let prev_kvs = if req.prev_kv {
            let at = self.main; // sees this write's own changes
            self.store.keys_in(span).filter_map(|(key, _)| self.store.visible(key, at)).collect()
        } else {
            Vec::new()
        };
        let deleted = self.delete(span);
        DeleteRangeResponse { header: header(self.view_revision()), deleted, prev_kvs }
    }

    /// Ends the write: moves the current revision if anything changed and returns it with the
    /// events, each with its `prev_kv` filled in.
    pub fn finish(self) -> (i64, Vec<Event>) {
        let Writer { store, main, changes, mut events } = self;
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
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<Written<DeleteRangeResponse>, KvError> {
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
        let deleted = sorted.into_iter().map(|key| writer.delete(KeySpan::One(key))).sum();
        let (_, events) = writer.finish();
        Written { response: deleted, events }
    }
}
