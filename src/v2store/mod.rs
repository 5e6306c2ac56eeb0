//! v2store/ — etcd's v2 key tree (`/v2/keys`), pure and deterministic: no clock, no I/O. Every
//! time it needs (a TTL's absolute expiration, "now" for the remaining TTL it reports, the
//! expiry cutoff) is handed in by the caller, so replaying the same requests from the same
//! store gives the same store on every member.
//!
//! Owns: the nodes (files with a value, directories), their `createdIndex`/`modifiedIndex` and
//! expiration, the store index (`X-Etcd-Index`), the 1000-event history that watches read from,
//! and etcd's semantics of set/create/update/compareAndSwap/delete/compareAndDelete/expire and
//! of get (recursive, sorted, hidden `_` names). The HTTP side (`http::v2`) parses requests and
//! renders JSON; it never mutates the tree except through [`Store::apply`].
//!
//! Layout: nodes live in one map keyed by their path components, so that map order is a
//! pre-order walk of the tree (a directory, then its subtree, then its next sibling) and
//! nothing here recurses over depth: a 100 000-level path costs a long key, not a deep stack.
//!
//! Invariant: every node's parent exists and is a directory (`check`).
//! Invariant: `ttl_keys` holds exactly the (expiration, path) of the nodes with an expiration.
//! Invariant: history indexes are consecutive, end at `current_index` (when not empty) and the
//!            history holds at most `HISTORY_EVENTS_MAX` events.
//! Invariant: a request that fails changes nothing.

pub mod auth;
pub mod error;
mod event;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

pub use error::V2Error;
pub use event::{push_json_str, rfc3339_nano, Action, Event, Listing, NodeView};

/// Events a watch can still start from (etcd's event history capacity).
pub const HISTORY_EVENTS_MAX: usize = 1000;

/// Nanoseconds per second (TTLs are seconds, times are Unix nanoseconds).
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// A path as its components: `/a/b` is `["a", "b"]`, the root is empty.
pub type Path = Vec<String>;

/// One node of the tree. `value` is `None` for a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub value: Option<String>,
    pub created_index: u64,
    pub modified_index: u64,
    /// Absolute expiration, Unix nanoseconds; `None` = permanent.
    pub expire_ns: Option<i64>,
}

impl Node {
    fn is_dir(&self) -> bool {
        self.value.is_none()
    }
}

/// One v2 write, as replicated through the log. Times are Unix nanoseconds of the member that
/// received the request (`now_ns` only decides the TTL the answer reports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum V2Request {
    /// PUT: set, create (`prev_exist` false), update (`prev_exist` true) or compare-and-swap
    /// (`prev_value`/`prev_index` given), chosen as etcd's v2 applier does.
    Put {
        path: String,
        value: String,
        dir: bool,
        prev_value: String,
        prev_index: u64,
        prev_exist: Option<bool>,
        expire_ns: Option<i64>,
        refresh: bool,
        now_ns: i64,
    },
    /// POST: create an in-order child named by the new index, zero-padded to 20 digits.
    Post {
        path: String,
        value: String,
        dir: bool,
        expire_ns: Option<i64>,
        now_ns: i64,
    },
    /// DELETE: compare-and-delete when `prev_value`/`prev_index` is given, else delete.
    Delete {
        path: String,
        dir: bool,
        recursive: bool,
        prev_value: String,
        prev_index: u64,
        now_ns: i64,
    },
    /// The leader's expiry: removes every node whose expiration is at or before `now_ns`.
    Expire { now_ns: i64 },
    /// A v2 auth change (`/v2/auth/*`), see `auth`.
    Auth(auth::AuthChange),
}

impl V2Request {
    /// The operation etcd's applier picks for this request (what its store statistics count).
    pub fn kind(&self) -> Action {
        match self {
            V2Request::Put {
                prev_exist,
                prev_value,
                prev_index,
                ..
            } => {
                let compare = *prev_index > 0 || !prev_value.is_empty();
                match prev_exist {
                    Some(true) if !compare => Action::Update,
                    Some(false) => Action::Create,
                    Some(true) | None if compare => Action::CompareAndSwap,
                    _ => Action::Set,
                }
            }
            V2Request::Post { .. } => Action::Create,
            V2Request::Delete {
                prev_value,
                prev_index,
                ..
            } if *prev_index > 0 || !prev_value.is_empty() => Action::CompareAndDelete,
            V2Request::Delete { .. } => Action::Delete,
            V2Request::Expire { .. } => Action::Expire,
            // Not one action: the store statistics count the node writes it made
            // (`V2Outcome::Auth`), so this is never counted.
            V2Request::Auth(_) => Action::Update,
        }
    }

    /// Bytes the request may add to the data size (for the space quota).
    pub fn cost_bytes(&self) -> u64 {
        match self {
            V2Request::Put { path, value, .. } | V2Request::Post { path, value, .. } => {
                (path.len() + value.len()) as u64 + 64
            }
            V2Request::Delete { .. } | V2Request::Expire { .. } => 0,
            V2Request::Auth(change) => change.cost_bytes(),
        }
    }
}

/// What applying a [`V2Request`] gives: the event (with the store index after it), or etcd's
/// error. An expiry answers with the number of nodes it removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum V2Outcome {
    Event {
        event: Event,
        etcd_index: u64,
    },
    Error(V2Error),
    Expired {
        count: u64,
    },
    /// An auth change: its reply or refusal, the node writes it made (for the store
    /// statistics) and the store index after it.
    Auth {
        result: Result<auth::AuthReply, auth::AuthError>,
        writes: auth::StoreWrites,
        etcd_index: u64,
    },
}

/// The v2 tree. See the module header for its invariants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    nodes: BTreeMap<Path, Node>,
    current_index: u64,
    ttl_keys: BTreeSet<(i64, Path)>,
    history: VecDeque<Event>,
    /// v2 auth. Not in this type's encoding: the state codec writes it as an element of its
    /// own (`apply::codec`), so images from before it still decode.
    #[serde(skip)]
    auth: auth::V2Auth,
}

/// Cleans a path as Go's `path.Clean(path.Join("/", p))` does, into components.
pub fn clean(p: &str) -> Path {
    let mut out: Path = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

/// The path's text: `/a/b`, or `/` for the root.
pub fn key_of(path: &[String]) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut s = String::new();
    for c in path {
        s.push('/');
        s.push_str(c);
    }
    s
}

/// Go's remaining-TTL rule: whole seconds rounded up (`ceil((expire - now) / 1s)`).
pub fn ttl_seconds(expire_ns: i64, now_ns: i64) -> i64 {
    let left = expire_ns.saturating_sub(now_ns);
    let mut ttl = left / NANOS_PER_SECOND;
    if left % NANOS_PER_SECOND > 0 {
        ttl += 1;
    }
    ttl
}

fn is_hidden_name(path: &[String]) -> bool {
    path.last().is_some_and(|n| n.starts_with('_'))
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store index: the index of the last successful write.
    pub fn current_index(&self) -> u64 {
        self.current_index
    }

    /// Whether any node has an expiration.
    pub fn has_ttl_keys(&self) -> bool {
        !self.ttl_keys.is_empty()
    }

    /// The earliest expiration of any node (Unix nanoseconds).
    pub fn next_expiration_ns(&self) -> Option<i64> {
        self.ttl_keys.iter().next().map(|(t, _)| *t)
    }

    /// The v2 auth state.
    pub fn auth(&self) -> &auth::V2Auth {
        &self.auth
    }

    /// Puts back the v2 auth state decoded beside the store (`apply::codec`).
    pub fn set_auth(&mut self, auth: auth::V2Auth) {
        self.auth = auth;
    }

    /// Number of nodes (the root not counted).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Applies one replicated request.
    pub fn apply(&mut self, req: &V2Request) -> V2Outcome {
        let result = match req {
            V2Request::Put {
                path,
                value,
                dir,
                prev_value,
                prev_index,
                prev_exist,
                expire_ns,
                refresh,
                now_ns,
            } => {
                let ttl = Ttl {
                    expire_ns: *expire_ns,
                    refresh: *refresh,
                    now_ns: *now_ns,
                };
                let path = clean(path);
                let compare = *prev_index > 0 || !prev_value.is_empty();
                match prev_exist {
                    Some(true) if !compare => self.update(&path, value, ttl),
                    Some(true) => self.compare_and_swap(&path, prev_value, *prev_index, value, ttl),
                    Some(false) => self.create(path, *dir, value, false, ttl),
                    None if compare => {
                        self.compare_and_swap(&path, prev_value, *prev_index, value, ttl)
                    }
                    None => self.set(&path, *dir, value, ttl),
                }
            }
            V2Request::Post {
                path,
                value,
                dir,
                expire_ns,
                now_ns,
            } => {
                let ttl = Ttl {
                    expire_ns: *expire_ns,
                    refresh: false,
                    now_ns: *now_ns,
                };
                self.create(clean(path), *dir, value, true, ttl)
            }
            V2Request::Delete {
                path,
                dir,
                recursive,
                prev_value,
                prev_index,
                now_ns,
            } => {
                let path = clean(path);
                if *prev_index > 0 || !prev_value.is_empty() {
                    self.compare_and_delete(&path, prev_value, *prev_index, *now_ns)
                } else {
                    self.delete(&path, *dir, *recursive, *now_ns)
                }
            }
            V2Request::Expire { now_ns } => {
                let count = self.expire(*now_ns);
                self.debug_check();
                return V2Outcome::Expired { count };
            }
            V2Request::Auth(change) => {
                let mut auth = std::mem::take(&mut self.auth);
                let (result, writes) = auth.apply(change, &mut InternalNodes(self));
                self.auth = auth;
                self.debug_check();
                return V2Outcome::Auth {
                    result,
                    writes,
                    etcd_index: self.current_index,
                };
            }
        };
        self.debug_check();
        match result {
            Ok(event) => V2Outcome::Event {
                event,
                etcd_index: self.current_index,
            },
            Err(err) => V2Outcome::Error(err),
        }
    }

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.check() {
            panic!("v2 store invariant broken: {e}");
        }
    }

    fn err(&self, code: u16, cause: impl Into<String>) -> V2Error {
        V2Error::new(code, cause, self.current_index)
    }

    /// etcd's `internalGet`: walks from the root; a file on the way is "Not a directory", a
    /// missing component "Key not found" (with the path up to it).
    fn lookup(&self, path: &[String]) -> Result<Option<&Node>, V2Error> {
        for i in 1..path.len() {
            match self.nodes.get(&path[..i]) {
                Some(n) if n.is_dir() => {}
                Some(_) => return Err(self.err(error::NOT_DIR, key_of(&path[..i]))),
                None => return Err(self.err(error::KEY_NOT_FOUND, key_of(&path[..=i - 1]))),
            }
        }
        if path.is_empty() {
            return Ok(None);
        }
        match self.nodes.get(path) {
            Some(n) => Ok(Some(n)),
            None => Err(self.err(error::KEY_NOT_FOUND, key_of(path))),
        }
    }

    fn view(&self, path: &[String], node: &Node, now_ns: i64) -> NodeView {
        NodeView {
            key: key_of(path),
            value: node.value.clone(),
            dir: node.is_dir(),
            expire_ns: node.expire_ns,
            ttl: node.expire_ns.map_or(0, |e| ttl_seconds(e, now_ns)),
            modified_index: node.modified_index,
            created_index: node.created_index,
        }
    }

    fn root_view(&self) -> NodeView {
        NodeView {
            key: String::new(),
            value: None,
            dir: true,
            expire_ns: None,
            ttl: 0,
            modified_index: 0,
            created_index: 0,
        }
    }

    /// The descendants of `path` in pre-order, as (path, node).
    fn subtree<'a>(&'a self, path: &'a [String]) -> impl Iterator<Item = (&'a Path, &'a Node)> {
        self.nodes
            .range::<[String], _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
            .take_while(move |(p, _)| p.len() > path.len() && p.starts_with(path))
    }

    /// GET: the node; a directory with its visible children (their subtrees too when
    /// `recursive`), in key order (etcd's order when `sorted`; any order is etcd's otherwise).
    pub fn get(&self, path: &str, recursive: bool, now_ns: i64) -> Result<Listing, V2Error> {
        let path = clean(path);
        let node = self.lookup(&path)?;
        let head = match node {
            Some(n) => self.view(&path, n, now_ns),
            None => self.root_view(),
        };
        let mut children = Vec::new();
        if head.dir {
            let base = path.len();
            let mut hidden_under: Option<&Path> = None;
            for (p, n) in self.subtree(&path) {
                if let Some(h) = hidden_under {
                    if p.starts_with(h) {
                        continue;
                    }
                    hidden_under = None;
                }
                if is_hidden_name(p) {
                    hidden_under = Some(p);
                    continue;
                }
                let depth = p.len() - base;
                if depth > 1 && !recursive {
                    continue;
                }
                children.push((depth as u32, self.view(p, n, now_ns)));
            }
        }
        Ok(Listing {
            node: head,
            children,
            etcd_index: self.current_index,
        })
    }

    /// Checks that `path`'s parents can hold a new child: every existing one is a directory.
    /// Missing ones are created by [`Store::make_parents`].
    fn check_parents(&self, path: &[String]) -> Result<(), V2Error> {
        for i in 1..path.len() {
            if let Some(n) = self.nodes.get(&path[..i]) {
                if !n.is_dir() {
                    return Err(self.err(error::NOT_DIR, key_of(&path[..i])));
                }
            }
        }
        Ok(())
    }

    fn make_parents(&mut self, path: &[String], index: u64) {
        for i in 1..path.len() {
            self.nodes.entry(path[..i].to_vec()).or_insert(Node {
                value: None,
                created_index: index,
                modified_index: index,
                expire_ns: None,
            });
        }
    }

    /// Removes `path` and its subtree; returns how many nodes went.
    fn remove_subtree(&mut self, path: &[String]) -> usize {
        let doomed: Vec<Path> = std::iter::once(path.to_vec())
            .chain(self.subtree(path).map(|(p, _)| p.clone()))
            .collect();
        for p in &doomed {
            if let Some(node) = self.nodes.remove(p) {
                if let Some(e) = node.expire_ns {
                    let removed = self.ttl_keys.remove(&(e, p.clone()));
                    debug_assert!(removed, "ttl index missed {p:?}");
                }
            }
        }
        doomed.len()
    }

    fn set_expiration(&mut self, path: &[String], expire_ns: Option<i64>) {
        let Some(node) = self.nodes.get_mut(path) else {
            return;
        };
        if let Some(old) = node.expire_ns {
            self.ttl_keys.remove(&(old, path.to_vec()));
        }
        node.expire_ns = expire_ns;
        if let Some(new) = expire_ns {
            self.ttl_keys.insert((new, path.to_vec()));
        }
    }

    /// Records a successful write: the store index moves to the event's index.
    fn record(&mut self, event: Event) -> Event {
        let index = event.node.modified_index;
        debug_assert_eq!(index, self.current_index + 1, "indexes must be consecutive");
        self.current_index = index;
        if self.history.len() == HISTORY_EVENTS_MAX {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        event
    }

    /// etcd's `internalCreate` (set, create, in-order create).
    fn create_node(
        &mut self,
        mut path: Path,
        dir: bool,
        value: &str,
        mode: CreateMode,
        ttl: Ttl,
        action: Action,
    ) -> Result<Event, V2Error> {
        let next = self.current_index + 1;
        if mode == CreateMode::InOrder {
            path.push(format!("{next:020}"));
        }
        if path.is_empty() {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        }
        self.check_parents(&path)?;
        let mut prev = None;
        if let Some(existing) = self.nodes.get(&path) {
            if mode != CreateMode::Replace {
                return Err(self.err(error::NODE_EXIST, key_of(&path)));
            }
            if existing.is_dir() {
                return Err(self.err(error::NOT_FILE, key_of(&path)));
            }
            prev = Some(self.view(&path, existing, ttl.now_ns));
            self.remove_subtree(&path);
        }
        self.make_parents(&path, next);
        self.nodes.insert(
            path.clone(),
            Node {
                value: if dir { None } else { Some(value.to_string()) },
                created_index: next,
                modified_index: next,
                expire_ns: None,
            },
        );
        self.set_expiration(&path, ttl.expire_ns);
        let node = self
            .nodes
            .get(&path)
            .map(|n| self.view(&path, n, ttl.now_ns));
        let Some(node) = node else {
            unreachable!("node inserted above");
        };
        Ok(self.record(Event {
            action,
            node,
            prev_node: prev,
            refresh: false,
        }))
    }

    fn set(&mut self, path: &[String], dir: bool, value: &str, ttl: Ttl) -> Result<Event, V2Error> {
        let current = match self.lookup(path) {
            Ok(n) => Ok(n.and_then(|n| n.value.clone())),
            Err(e) if e.code == error::KEY_NOT_FOUND => Err(e),
            Err(e) => return Err(e),
        };
        let value = match (ttl.refresh, current) {
            // A refresh keeps the value and needs the node to exist.
            (true, Ok(v)) => v.unwrap_or_default(),
            (true, Err(missing)) => return Err(missing),
            (false, _) => value.to_string(),
        };
        let mut event = self.create_node(
            path.to_vec(),
            dir,
            &value,
            CreateMode::Replace,
            ttl,
            Action::Set,
        )?;
        if ttl.refresh {
            event.refresh = true;
            if let Some(last) = self.history.back_mut() {
                last.refresh = true;
            }
        }
        Ok(event)
    }

    fn create(
        &mut self,
        path: Path,
        dir: bool,
        value: &str,
        unique: bool,
        ttl: Ttl,
    ) -> Result<Event, V2Error> {
        let mode = if unique {
            CreateMode::InOrder
        } else {
            CreateMode::Refuse
        };
        self.create_node(path, dir, value, mode, ttl, Action::Create)
    }

    fn update(&mut self, path: &[String], value: &str, ttl: Ttl) -> Result<Event, V2Error> {
        if path.is_empty() {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        }
        let node = self.lookup(path)?.cloned();
        let Some(node) = node else {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        };
        if node.is_dir() && !value.is_empty() {
            return Err(self.err(error::NOT_FILE, key_of(path)));
        }
        let next = self.current_index + 1;
        let prev = self.view(path, &node, ttl.now_ns);
        let new_value = if ttl.refresh {
            node.value.clone()
        } else if node.is_dir() {
            None
        } else {
            Some(value.to_string())
        };
        if let Some(n) = self.nodes.get_mut(path) {
            if !n.is_dir() {
                n.value = new_value.clone();
                n.modified_index = next;
            }
        }
        self.set_expiration(path, ttl.expire_ns);
        let mut view = prev.clone();
        view.value = new_value;
        view.modified_index = next;
        view.expire_ns = ttl.expire_ns;
        view.ttl = ttl.expire_ns.map_or(0, |e| ttl_seconds(e, ttl.now_ns));
        Ok(self.record(Event {
            action: Action::Update,
            node: view,
            prev_node: Some(prev),
            refresh: ttl.refresh,
        }))
    }

    fn compare(&self, node: &Node, prev_value: &str, prev_index: u64) -> Result<(), V2Error> {
        let index_ok = prev_index == 0 || node.modified_index == prev_index;
        let current = node.value.as_deref().unwrap_or("");
        let value_ok = prev_value.is_empty() || current == prev_value;
        let cause = match (value_ok, index_ok) {
            (true, true) => return Ok(()),
            (true, false) => format!("[{prev_index} != {}]", node.modified_index),
            (false, true) => format!("[{prev_value} != {current}]"),
            (false, false) => format!(
                "[{prev_value} != {current}] [{prev_index} != {}]",
                node.modified_index
            ),
        };
        Err(self.err(error::TEST_FAILED, cause))
    }

    fn compare_and_swap(
        &mut self,
        path: &[String],
        prev_value: &str,
        prev_index: u64,
        value: &str,
        ttl: Ttl,
    ) -> Result<Event, V2Error> {
        if path.is_empty() {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        }
        let Some(node) = self.lookup(path)?.cloned() else {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        };
        if node.is_dir() {
            return Err(self.err(error::NOT_FILE, key_of(path)));
        }
        self.compare(&node, prev_value, prev_index)?;
        let next = self.current_index + 1;
        let prev = self.view(path, &node, ttl.now_ns);
        let value = if ttl.refresh {
            node.value.clone().unwrap_or_default()
        } else {
            value.to_string()
        };
        if let Some(n) = self.nodes.get_mut(path) {
            n.value = Some(value.clone());
            n.modified_index = next;
        }
        self.set_expiration(path, ttl.expire_ns);
        let mut view = prev.clone();
        view.value = Some(value);
        view.modified_index = next;
        view.expire_ns = ttl.expire_ns;
        view.ttl = ttl.expire_ns.map_or(0, |e| ttl_seconds(e, ttl.now_ns));
        Ok(self.record(Event {
            action: Action::CompareAndSwap,
            node: view,
            prev_node: Some(prev),
            refresh: ttl.refresh,
        }))
    }

    fn deleted_view(&self, path: &[String], node: &Node, next: u64) -> NodeView {
        NodeView {
            key: key_of(path),
            value: None,
            dir: node.is_dir(),
            expire_ns: None,
            ttl: 0,
            modified_index: next,
            created_index: node.created_index,
        }
    }

    fn delete(
        &mut self,
        path: &[String],
        dir: bool,
        recursive: bool,
        now_ns: i64,
    ) -> Result<Event, V2Error> {
        if path.is_empty() {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        }
        let dir = dir || recursive;
        let Some(node) = self.lookup(path)?.cloned() else {
            return Err(self.err(error::ROOT_READ_ONLY, "/"));
        };
        if node.is_dir() {
            if !dir {
                return Err(self.err(error::NOT_FILE, key_of(path)));
            }
            if !recursive && self.subtree(path).next().is_some() {
                return Err(self.err(error::DIR_NOT_EMPTY, key_of(path)));
            }
        }
        let next = self.current_index + 1;
        let prev = self.view(path, &node, now_ns);
        let view = self.deleted_view(path, &node, next);
        self.remove_subtree(path);
        Ok(self.record(Event {
            action: Action::Delete,
            node: view,
            prev_node: Some(prev),
            refresh: false,
        }))
    }

    fn compare_and_delete(
        &mut self,
        path: &[String],
        prev_value: &str,
        prev_index: u64,
        now_ns: i64,
    ) -> Result<Event, V2Error> {
        let Some(node) = self.lookup(path)?.cloned() else {
            // The root is a directory (etcd's cause is the root's path, trimmed to nothing).
            return Err(self.err(error::NOT_FILE, ""));
        };
        if node.is_dir() {
            return Err(self.err(error::NOT_FILE, key_of(path)));
        }
        self.compare(&node, prev_value, prev_index)?;
        let next = self.current_index + 1;
        let prev = self.view(path, &node, now_ns);
        let mut view = self.deleted_view(path, &node, next);
        view.dir = false;
        self.remove_subtree(path);
        Ok(self.record(Event {
            action: Action::CompareAndDelete,
            node: view,
            prev_node: Some(prev),
            refresh: false,
        }))
    }

    /// Removes every node whose expiration is at or before `now_ns`, earliest first, each as
    /// its own `expire` event.
    fn expire(&mut self, now_ns: i64) -> u64 {
        let mut count = 0;
        while let Some((at, path)) = self.ttl_keys.iter().next().cloned() {
            if at > now_ns {
                break;
            }
            let Some(node) = self.nodes.get(&path).cloned() else {
                debug_assert!(false, "ttl index names a missing node {path:?}");
                self.ttl_keys.remove(&(at, path));
                continue;
            };
            let next = self.current_index + 1;
            let prev = self.view(&path, &node, now_ns);
            let view = self.deleted_view(&path, &node, next);
            self.remove_subtree(&path);
            self.record(Event {
                action: Action::Expire,
                node: view,
                prev_node: Some(prev),
                refresh: false,
            });
            count += 1;
        }
        count
    }

    /// The index of the oldest event a watch can still start from (0 with no history).
    pub fn history_start(&self) -> u64 {
        self.history.front().map_or(0, |e| e.index())
    }

    /// etcd's history scan for a watch on `key` from `since`: the first event at or after
    /// `since` that concerns the key, `None` when none happened yet, or 401 when `since` is
    /// older than the history. The error's index is the store index.
    pub fn scan(&self, key: &str, recursive: bool, since: u64) -> Result<Option<&Event>, V2Error> {
        let start = self.history_start();
        if since < start {
            return Err(self.err(
                error::EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{start}/{since}]"),
            ));
        }
        let key = key_of(&clean(key));
        let last = self.history.back().map_or(0, |e| e.index());
        if since > last {
            return Ok(None);
        }
        let offset = usize::try_from(since - start).unwrap_or(usize::MAX);
        Ok(self
            .history
            .iter()
            .skip(offset)
            .find(|e| !e.refresh && e.concerns_from_history(&key, recursive)))
    }

    /// The events after index `after` (for a waiting watch to look at as they arrive).
    pub fn events_after(&self, after: u64) -> impl Iterator<Item = &Event> {
        self.history.iter().filter(move |e| e.index() > after)
    }

    /// Checks the invariants of the module header; O(size).
    pub fn check(&self) -> Result<(), String> {
        for (path, node) in &self.nodes {
            if path.is_empty() {
                return Err("a node at the root path".into());
            }
            if path.len() > 1 {
                match self.nodes.get(&path[..path.len() - 1]) {
                    Some(parent) if parent.is_dir() => {}
                    Some(_) => return Err(format!("parent of {path:?} is a file")),
                    None => return Err(format!("parent of {path:?} missing")),
                }
            }
            if let Some(e) = node.expire_ns {
                if !self.ttl_keys.contains(&(e, path.clone())) {
                    return Err(format!("{path:?} missing from the ttl index"));
                }
            }
        }
        for (e, path) in &self.ttl_keys {
            if self.nodes.get(path).and_then(|n| n.expire_ns) != Some(*e) {
                return Err(format!("ttl index entry {path:?} has no matching node"));
            }
        }
        if self.history.len() > HISTORY_EVENTS_MAX {
            return Err("history over capacity".into());
        }
        for pair in self.history.iter().collect::<Vec<_>>().windows(2) {
            if pair[1].index() != pair[0].index() + 1 {
                return Err("history indexes not consecutive".into());
            }
        }
        if let Some(last) = self.history.back() {
            if last.index() != self.current_index {
                return Err("history does not end at the store index".into());
            }
        }
        Ok(())
    }
}

/// The v2 store as the auth store's node writer: each write of etcd's internal auth nodes
/// takes the next index and leaves an internal event in the history.
struct InternalNodes<'a>(&'a mut Store);

impl InternalNodes<'_> {
    fn record(&mut self, action: Action, key: String, dir: bool) {
        let index = self.0.current_index + 1;
        let node = NodeView {
            key,
            value: None,
            dir,
            expire_ns: None,
            ttl: 0,
            modified_index: index,
            created_index: index,
        };
        debug_assert!(
            !node.key.starts_with('/'),
            "internal keys have no leading slash"
        );
        self.0.record(Event {
            action,
            node,
            prev_node: None,
            refresh: false,
        });
    }
}

impl auth::NodeWriter for InternalNodes<'_> {
    fn make_directory(&mut self) {
        for (i, key) in auth::DIRECTORY_NODES.iter().enumerate() {
            // `2`, `2/users` and `2/roles` are directories, `2/enabled` a file.
            self.record(Action::Create, key.to_string(), i < 3);
        }
    }

    fn write(&mut self, action: Action, resource: auth::Resource) {
        self.record(action, resource.internal_key(), false);
    }
}

/// What a create does about an existing node: replace a file (set), refuse (create), or
/// name a new in-order child (POST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CreateMode {
    Replace,
    Refuse,
    InOrder,
}

/// The TTL part of a write: the absolute expiration (`None`: permanent), whether it only
/// renews the TTL, and the time the remaining TTL is reported against.
#[derive(Clone, Copy, Debug)]
struct Ttl {
    expire_ns: Option<i64>,
    refresh: bool,
    now_ns: i64,
}
