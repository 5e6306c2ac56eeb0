//! Events and node views of the v2 store, the watch matching rules over them, and their JSON
//! exactly as etcd 3.4 writes it (Go's `encoding/json`: field order of etcd's structs, empty
//! fields omitted except `value`, HTML-safe string escapes, a newline after each document).
//!
//! ```text
//! event   := {"action":A,"node":NODE[,"prevNode":NODE]}
//! NODE    := {["key":K,]["value":V,]["dir":true,]["expiration":RFC3339Nano,]["ttl":N,]
//!             ["nodes":[NODE,..],]["modifiedIndex":N,]["createdIndex":N]}
//! ```
//! Invariant: a [`Listing`]'s children are in pre-order with depths starting at 1, each at
//! most one deeper than the entry before it, so the writer needs no recursion.

use serde::{Deserialize, Serialize};

use super::NANOS_PER_SECOND;

/// etcd's v2 event actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Get,
    Set,
    Create,
    Update,
    Delete,
    CompareAndSwap,
    CompareAndDelete,
    Expire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Set => "set",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::CompareAndSwap => "compareAndSwap",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }
}

/// A node as an answer shows it. `key` is empty for the root (etcd omits it there); `ttl` is
/// the remaining TTL at the time the view was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub key: String,
    pub value: Option<String>,
    pub dir: bool,
    pub expire_ns: Option<i64>,
    pub ttl: i64,
    pub modified_index: u64,
    pub created_index: u64,
}

/// One change of the store, as kept in the history and sent to watchers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub node: NodeView,
    pub prev_node: Option<NodeView>,
    /// A TTL refresh: kept in the history but never delivered to watchers.
    pub refresh: bool,
}

/// A GET's answer: the node, and its visible descendants in pre-order with their depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub node: NodeView,
    pub children: Vec<(u32, NodeView)>,
    pub etcd_index: u64,
}

fn starts_dir(key: &str, dir: &str) -> bool {
    if dir == "/" {
        return key.starts_with('/') && key != "/";
    }
    key.len() > dir.len() && key.starts_with(dir) && key.as_bytes()[dir.len()] == b'/'
}

/// etcd's `isHidden`: whether `key`, seen from a watch on `watch`, passes a `_` name.
fn is_hidden(watch: &str, key: &str) -> bool {
    if watch.len() > key.len() {
        return false;
    }
    let after = format!("/{}", &key[watch.len()..]);
    let after = super::key_of(&super::clean(&after));
    after.contains("/_")
}

impl Event {
    /// The store index this event made.
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    fn deletes_dir(&self) -> bool {
        matches!(self.action, Action::Delete | Action::Expire)
            && self.prev_node.as_ref().is_some_and(|p| p.dir)
    }

    /// An event of etcd's internal auth nodes (`auth`): it takes an index and a place in the
    /// history, and concerns no watch.
    pub fn is_internal(&self) -> bool {
        !self.node.key.starts_with('/')
    }

    /// etcd's history scan rule: the key itself, its subtree when `recursive`, or a deleted
    /// (or expired) directory whose path is a string prefix of the key.
    pub fn concerns_from_history(&self, key: &str, recursive: bool) -> bool {
        if self.is_internal() {
            return false;
        }
        let k = &self.node.key;
        if k == key {
            return true;
        }
        if recursive {
            let prefix = if key.ends_with('/') {
                key.to_string()
            } else {
                format!("{key}/")
            };
            if k.starts_with(&prefix) {
                return true;
            }
        }
        if self.deletes_dir() {
            if let Some(prev) = &self.prev_node {
                return key.starts_with(prev.key.as_str());
            }
        }
        false
    }

    /// etcd's live notification rule for a watcher registered on `key`: the key itself; its
    /// subtree when `recursive`, unless the path below the watch passes a hidden name; any
    /// node removed by a delete or expiry of an ancestor.
    pub fn concerns_live(&self, key: &str, recursive: bool) -> bool {
        if self.refresh || self.is_internal() {
            return false;
        }
        let k = &self.node.key;
        if k == key {
            return true;
        }
        if recursive && starts_dir(k, key) && !is_hidden(key, k) {
            return true;
        }
        let removes = matches!(
            self.action,
            Action::Delete | Action::Expire | Action::CompareAndDelete
        );
        removes && starts_dir(key, k)
    }

    /// The event as etcd writes it (with the trailing newline). `omit_nodes` drops `node` and
    /// `prevNode` (`noValueOnSuccess`).
    pub fn to_json(&self, omit_nodes: bool) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("{\"action\":");
        push_json_str(&mut out, self.action.as_str());
        if !omit_nodes {
            out.push_str(",\"node\":");
            push_node(&mut out, &self.node);
            if let Some(prev) = &self.prev_node {
                out.push_str(",\"prevNode\":");
                push_node(&mut out, prev);
            }
        }
        out.push_str("}\n");
        out
    }
}

impl Listing {
    /// The GET answer as etcd writes it: `{"action":"get","node":{..}}` and a newline.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.children.len() * 96);
        out.push_str("{\"action\":\"get\",\"node\":");
        let mut entries: Vec<(u32, &NodeView)> = Vec::with_capacity(self.children.len() + 1);
        entries.push((0, &self.node));
        entries.extend(self.children.iter().map(|(d, n)| (*d, n)));
        push_tree(&mut out, &entries);
        out.push_str("}\n");
        out
    }
}

/// Writes a pre-order list of (depth, node) as nested JSON objects, iteratively.
fn push_tree(out: &mut String, entries: &[(u32, &NodeView)]) {
    // Each open node's closing text (its fields after `nodes`), innermost last.
    let mut open: Vec<(u32, String)> = Vec::new();
    for (i, (depth, node)) in entries.iter().enumerate() {
        while let Some((d, _)) = open.last() {
            if *d < *depth {
                break;
            }
            if let Some((_, tail)) = open.pop() {
                out.push(']');
                out.push_str(&tail);
            }
        }
        if let Some((d, _)) = open.last() {
            if *d + 1 == *depth && !out.ends_with('[') {
                out.push(',');
            }
        }
        let has_children = entries.get(i + 1).is_some_and(|(d, _)| *d == depth + 1);
        if has_children {
            let mut head = String::new();
            push_node_head(&mut head, node);
            out.push_str(&head);
            out.push_str(",\"nodes\":[");
            open.push((*depth, node_tail(node)));
        } else {
            push_node(out, node);
        }
    }
    while let Some((_, tail)) = open.pop() {
        out.push(']');
        out.push_str(&tail);
    }
}

fn push_node(out: &mut String, node: &NodeView) {
    push_node_head(out, node);
    out.push_str(&node_tail(node));
}

/// The fields up to `ttl`, without the closing brace (and without a trailing comma).
fn push_node_head(out: &mut String, node: &NodeView) {
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    if !node.key.is_empty() {
        sep(out);
        out.push_str("\"key\":");
        push_json_str(out, &node.key);
    }
    if let Some(v) = &node.value {
        sep(out);
        out.push_str("\"value\":");
        push_json_str(out, v);
    }
    if node.dir {
        sep(out);
        out.push_str("\"dir\":true");
    }
    if let Some(e) = node.expire_ns {
        sep(out);
        out.push_str("\"expiration\":\"");
        out.push_str(&rfc3339_nano(e));
        out.push('"');
    }
    if node.ttl != 0 {
        sep(out);
        out.push_str(&format!("\"ttl\":{}", node.ttl));
    }
    // Every node has a key or is the root directory, so the tail's leading comma is right.
    debug_assert!(!first, "a node view with no field before its indexes");
}

/// `modifiedIndex`, `createdIndex` and the closing brace, with the separator they need.
fn node_tail(node: &NodeView) -> String {
    let mut t = String::new();
    if node.modified_index != 0 {
        t.push_str(&format!(",\"modifiedIndex\":{}", node.modified_index));
    }
    if node.created_index != 0 {
        t.push_str(&format!(",\"createdIndex\":{}", node.created_index));
    }
    t.push('}');
    t
}

/// Go's `encoding/json` string: quotes, `\"` `\\` `\n` `\r` `\t`, other controls as `\u00XX`,
/// and the HTML-safe escapes of `<`, `>`, `&`, U+2028 and U+2029.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `time.RFC3339Nano` in UTC: fraction without trailing zeros, `Z`.
pub fn rfc3339_nano(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(NANOS_PER_SECOND);
    let nanos = unix_ns.rem_euclid(NANOS_PER_SECOND);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
