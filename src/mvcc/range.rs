//! Range reads: key span, revision, limit, count, sort, keys/count only and the revision filters,
//! with etcd's exact interplay between them.
//!
//! Invariant: `count` is the number of keys visible in the span at the read revision, whatever
//!            the limit and the min/max filters.
//! Invariant: a read never changes the store.

use std::cmp::Ordering;

use super::{header, KeySpan, KvError, Store};
use crate::mvcc::validate;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::proto::mvccpb::KeyValue;

impl Store {
    /// Serves a `RangeRequest` (validated here too). The header carries only `revision`, the
    /// current revision even when reading an older one.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate::check_range(req)?;
        let at = self.read_revision(req.revision)?;
        Ok(self.read_range(req, at, self.current_revision))
    }

    /// The revision a read asking for `requested` sees: 0 or negative means current; above
    /// current is a future revision; below the compaction point is gone (equal is fine).
    pub(crate) fn read_revision(&self, requested: i64) -> Result<i64, KvError> {
        if requested > self.current_revision {
            return Err(KvError::FutureRev {
                requested,
                current_revision: self.current_revision,
            });
        }
        let at = if requested <= 0 { self.current_revision } else { requested };
        if at < self.compact_revision {
            return Err(KvError::Compacted { requested, compact_revision: self.compact_revision });
        }
        Ok(at)
    }

    /// The range at revision `at` (already checked), answered with `header_revision`.
    pub(crate) fn read_range(&self, req: &RangeRequest, at: i64, header_revision: i64) -> RangeResponse {
        // etcd reads everything when it must sort or filter, otherwise one pair beyond the limit
        // to learn `more`. A sort target without a sort order sorts only what was read (etcd).
        let read_all = req.sort_order != SortOrder::None as i32 || has_revision_filters(req);
        let read_max = match usize::try_from(req.limit) {
            Ok(limit) if limit > 0 && !read_all => limit.saturating_add(1),
            _ => usize::MAX,
        };
        let mut count = 0i64;
        let mut kvs = Vec::new();
        for (_, history) in self.keys_in(KeySpan::new(&req.key, &req.range_end)) {
            let Some(rev) = history.visible_at(at) else { continue };
            count += 1;
            if req.count_only || kvs.len() >= read_max {
                continue;
            }
            if let Some(kv) = self.record(rev).and_then(|record| record.key_value(rev)) {
                kvs.push(kv);
            }
        }
        let mut response = RangeResponse { header: header(header_revision), kvs, more: false, count };
        if req.count_only {
            return response;
        }
        response.kvs.retain(|kv| passes_revision_filters(req, kv));
        if let Some((target, descending)) = sort_plan(req) {
            sort_kvs(&mut response.kvs, target, descending);
        }
        if let Ok(limit) = usize::try_from(req.limit) {
            if limit > 0 && response.kvs.len() > limit {
                response.kvs.truncate(limit);
                response.more = true;
            }
        }
        if req.keys_only {
            response.kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        response
    }
}

fn has_revision_filters(req: &RangeRequest) -> bool {
    req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

/// The inclusive min/max mod and create revision filters; 0 turns a bound off.
fn passes_revision_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    let within = |value: i64, min: i64, max: i64| (min == 0 || value >= min) && (max == 0 || value <= max);
    within(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
        && within(kv.create_revision, req.min_create_revision, req.max_create_revision)
}

/// What to sort by and whether descending; `None` keeps key order. A target other than KEY with
/// order NONE sorts ascending (etcd).
fn sort_plan(req: &RangeRequest) -> Option<(SortTarget, bool)> {
    let target = SortTarget::try_from(req.sort_target).ok()?;
    let order = match SortOrder::try_from(req.sort_order).ok()? {
        SortOrder::None if target != SortTarget::Key => SortOrder::Ascend,
        order => order,
    };
    match order {
        SortOrder::None => None,
        SortOrder::Ascend => Some((target, false)),
        SortOrder::Descend => Some((target, true)),
    }
}

/// Stable sort, so pairs that tie on the target stay in key order in both directions.
fn sort_kvs(kvs: &mut [KeyValue], target: SortTarget, descending: bool) {
    let by_target = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    if descending {
        kvs.sort_by(|a, b| by_target(b, a));
    } else {
        kvs.sort_by(by_target);
    }
}
