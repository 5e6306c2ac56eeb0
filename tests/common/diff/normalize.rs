//! Normalisation of etcdctl output before two servers' answers are compared.
//!
//! Only what legitimately differs between two correct servers is rewritten:
//! - the cluster ID and member ID (decimal, `%x` and `%016x` forms) → `<cluster_id>`/`<member_id>`;
//! - a non-zero raft term → `<term>` (a zero term stays: inner txn headers carry none);
//! - the server's endpoint and URLs (random ports) → `<endpoint>`, `<client-url>`, `<peer-url>`;
//! - lease IDs granted during the run → `<lease#N>` (N = grant order on that server);
//! - etcdctl's own log noise: the `ts` and `target` fields of its JSON log lines;
//! - `endpoint health`: the measured duration (`took`);
//! - `endpoint status`: db size, raft index and applied index (storage-engine specific), and the
//!   patch level of the version (`3.5.x`); `endpoint hashkv`: the hash value;
//!   `lease timetolive`: the remaining TTL when positive (it ticks while the servers are asked),
//!   and the order of the attached keys (etcd lists them from a hash map, in random order).
//!
//! Everything else — revisions, versions, counts, `more`, order, error texts, exit codes — is
//! compared exactly. Table output (`-w table`) is compared cell by cell, since column widths
//! follow the masked values.
//!
//! Invariant: a value is replaced only when it equals this server's own identity (or is one of
//! the masked fields above), so a wrong ID or a stray number still shows up as a difference.

use serde_json::{Map, Value};

/// What one server is, as far as its output mentions it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
    pub endpoint: String,
    pub client_url: String,
    pub peer_url: String,
    /// Lease IDs granted on this server, in grant order.
    pub leases: Vec<u64>,
}

/// Output families that need field-specific masking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Other,
    EndpointStatus,
    EndpointHealth,
    EndpointHashKv,
    LeaseTimeToLive,
}

/// Classifies a step by its first two positional words (`endpoint status`, ...).
pub fn output_kind(args: &[Vec<u8>]) -> OutputKind {
    let words = positional_words(args);
    match (
        words.first().map(Vec::as_slice),
        words.get(1).map(Vec::as_slice),
    ) {
        (Some(b"endpoint"), Some(b"status")) => OutputKind::EndpointStatus,
        (Some(b"endpoint"), Some(b"health")) => OutputKind::EndpointHealth,
        (Some(b"endpoint"), Some(b"hashkv")) => OutputKind::EndpointHashKv,
        (Some(b"lease"), Some(b"timetolive")) => OutputKind::LeaseTimeToLive,
        _ => OutputKind::Other,
    }
}

/// Words that are neither flags nor the value of `-w`/`--write-out`.
pub fn positional_words(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
        } else if arg == b"-w" || arg == b"--write-out" {
            skip_next = true;
        } else if !arg.starts_with(b"-") {
            words.push(arg.clone());
        }
    }
    words
}

/// Renders bytes as text: valid UTF-8 as is, every invalid byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Normalises one stream (stdout or stderr) of one etcdctl run.
pub fn normalize(bytes: &[u8], ident: &Identity, kind: OutputKind) -> String {
    let text = escape_bytes(bytes);
    let replacements = replacements(ident);
    let mut table_header: Option<Vec<String>> = None;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let trimmed = line.trim_start();
        let is_json = trimmed.starts_with('{') || trimmed.starts_with('[');
        let parsed = if is_json {
            serde_json::from_str::<Value>(line).ok()
        } else {
            None
        };
        let normalized = match parsed {
            Some(value) => {
                let value = normalize_json(value, None, ident, &replacements, kind);
                serde_json::to_string(&value).unwrap_or_else(|_| line.to_string())
            }
            None => {
                let line = replace_tokens(line, &replacements);
                normalize_text_line(&line, kind, &mut table_header)
            }
        };
        out.push(normalized);
    }
    out.join("\n")
}

/// (needle, replacement) pairs, longest forms first so a URL wins over its endpoint.
fn replacements(ident: &Identity) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut push = |needle: String, with: String| {
        if !needle.is_empty() {
            pairs.push((needle, with));
        }
    };
    push(ident.client_url.clone(), "<client-url>".into());
    push(ident.peer_url.clone(), "<peer-url>".into());
    push(ident.endpoint.clone(), "<endpoint>".into());
    let mut ids = vec![
        (ident.member_id, "<member_id>".to_string()),
        (ident.cluster_id, "<cluster_id>".to_string()),
    ];
    for (n, lease) in ident.leases.iter().enumerate() {
        ids.push((*lease, format!("<lease#{}>", n + 1)));
    }
    for (id, name) in ids {
        if id == 0 {
            continue;
        }
        push(format!("{id:016x}"), name.clone());
        push(format!("{id:x}"), name.clone());
        push(id.to_string(), name);
    }
    pairs
}

/// Replaces whole tokens only: the match must not touch an ASCII letter or digit on either side.
fn replace_tokens(text: &str, replacements: &[(String, String)]) -> String {
    let mut text = text.to_string();
    for (needle, with) in replacements {
        text = replace_token(&text, needle, with);
    }
    text
}

fn replace_token(text: &str, needle: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(needle) {
        let before = rest[..pos].chars().next_back();
        let after = rest[pos + needle.len()..].chars().next();
        let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        out.push_str(&rest[..pos]);
        if bounded(before) && bounded(after) {
            out.push_str(with);
        } else {
            out.push_str(needle);
        }
        rest = &rest[pos + needle.len()..];
    }
    out.push_str(rest);
    out
}

fn normalize_json(
    value: Value,
    key: Option<&str>,
    ident: &Identity,
    replacements: &[(String, String)],
    kind: OutputKind,
) -> Value {
    if let Some(key) = key {
        if let Some(masked) = mask_field(key, &value, kind) {
            return masked;
        }
    }
    match value {
        Value::Object(map) => {
            let is_log_line = map.contains_key("level") && map.contains_key("msg");
            let mut out = Map::new();
            for (k, v) in map {
                if is_log_line && (k == "ts" || k == "target") {
                    continue;
                }
                let v = normalize_json(v, Some(&k), ident, replacements, kind);
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| normalize_json(v, None, ident, replacements, kind))
                .collect(),
        ),
        Value::Number(n) => match n.as_u64().and_then(|n| id_name(n, ident)) {
            Some(name) => Value::String(name),
            None => Value::Number(n),
        },
        Value::String(s) => Value::String(replace_tokens(&s, replacements)),
        other => other,
    }
}

fn id_name(n: u64, ident: &Identity) -> Option<String> {
    if n == 0 {
        return None;
    }
    if n == ident.member_id {
        return Some("<member_id>".into());
    }
    if n == ident.cluster_id {
        return Some("<cluster_id>".into());
    }
    let lease = ident.leases.iter().position(|&l| l == n)?;
    Some(format!("<lease#{}>", lease + 1))
}

/// The masked replacement of a JSON field or a `-w fields` line, if this field is masked.
fn mask_field(key: &str, value: &Value, kind: OutputKind) -> Option<Value> {
    let is_zero = value.as_u64() == Some(0) || value.as_str() == Some("0");
    match (kind, key) {
        (_, "raft_term" | "raftTerm" | "RaftTerm") if !is_zero => Some("<term>".into()),
        (
            OutputKind::EndpointStatus,
            "dbSize" | "dbSizeInUse" | "raftIndex" | "raftAppliedIndex" | "DBSize" | "DBSizeInUse"
            | "RaftIndex" | "RaftAppliedIndex",
        ) => Some("<masked>".into()),
        (OutputKind::EndpointStatus, "version" | "Version") => {
            Some(Value::String(minor_version(value.as_str().unwrap_or(""))))
        }
        (OutputKind::EndpointHealth, "took" | "Took") => Some("<took>".into()),
        (OutputKind::EndpointHashKv, "hash" | "Hash") => Some("<hash>".into()),
        (OutputKind::LeaseTimeToLive, "TTL" | "ttl") if value.as_i64().is_some_and(|t| t > 0) => {
            Some("<ttl>".into())
        }
        (OutputKind::LeaseTimeToLive, "keys") => {
            let mut keys = value.as_array()?.clone();
            keys.sort_by_key(|k| k.to_string());
            Some(Value::Array(keys))
        }
        _ => None,
    }
}

/// `3.5.1` → `3.5.x`; anything else unchanged.
fn minor_version(version: &str) -> String {
    let version = version.trim_matches('"');
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()) {
        format!("{}.{}.x", parts[0], parts[1])
    } else {
        version.to_string()
    }
}

fn normalize_text_line(line: &str, kind: OutputKind, header: &mut Option<Vec<String>>) -> String {
    if line.starts_with('+') {
        return "+".into();
    }
    if line.starts_with('|') {
        return normalize_table_row(line, kind, header);
    }
    if let Some(line) = normalize_fields_line(line, kind) {
        return line;
    }
    let line = mask_took(line);
    match kind {
        OutputKind::LeaseTimeToLive => sort_attached_keys(&mask_remaining(&line)),
        OutputKind::EndpointStatus => mask_columns(&line, &[2, 3, 6, 7, 8], &STATUS_MASKS),
        OutputKind::EndpointHashKv => mask_columns(&line, &[1], &["<hash>"]),
        _ => line,
    }
}

/// `"Key" : value` lines of `-w fields`.
fn normalize_fields_line(line: &str, kind: OutputKind) -> Option<String> {
    let rest = line.strip_prefix('"')?;
    let (key, value) = rest.split_once("\" : ")?;
    let parsed = value
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(value.to_string()));
    let masked = mask_field(key, &parsed, kind)?;
    let shown = match masked {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some(format!("\"{key}\" : {shown}"))
}

/// `... took = 1.23ms` (health output) → `... took = <took>`.
fn mask_took(line: &str) -> String {
    const MARK: &str = "took = ";
    match line.find(MARK) {
        Some(pos) => {
            let after = &line[pos + MARK.len()..];
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            format!("{}<took>{}", &line[..pos + MARK.len()], &after[end..])
        }
        None => line.to_string(),
    }
}

/// `..., remaining(599s)` (lease timetolive) → `..., remaining(<ttl>)`.
fn mask_remaining(line: &str) -> String {
    const MARK: &str = "remaining(";
    let Some(pos) = line.find(MARK) else {
        return line.to_string();
    };
    let after = &line[pos + MARK.len()..];
    match after.find(')') {
        Some(end) => format!("{}<ttl>{}", &line[..pos + MARK.len()], &after[end..]),
        None => line.to_string(),
    }
}

/// `attached keys([lb la])` → `attached keys([la lb])`.
fn sort_attached_keys(line: &str) -> String {
    const MARK: &str = "attached keys([";
    let Some(pos) = line.find(MARK) else {
        return line.to_string();
    };
    let after = &line[pos + MARK.len()..];
    let Some(end) = after.find("])") else {
        return line.to_string();
    };
    let mut keys: Vec<&str> = after[..end].split(' ').collect();
    keys.sort_unstable();
    format!(
        "{}{}{}",
        &line[..pos + MARK.len()],
        keys.join(" "),
        &after[end..]
    )
}

/// Replacements for the simple `endpoint status` columns 2, 3, 6, 7, 8:
/// version, db size, raft term, raft index, raft applied index.
const STATUS_MASKS: [&str; 5] = ["", "<masked>", "<term>", "<masked>", "<masked>"];

/// Masks comma-separated columns of a simple-format line that starts with `<endpoint>, `.
fn mask_columns(line: &str, columns: &[usize], masks: &[&str]) -> String {
    if !line.starts_with("<endpoint>, ") {
        return line.to_string();
    }
    let mut cells: Vec<String> = line.split(", ").map(String::from).collect();
    for (&column, mask) in columns.iter().zip(masks) {
        if let Some(cell) = cells.get_mut(column) {
            *cell = if mask.is_empty() {
                minor_version(cell)
            } else if *mask == "<term>" && cell == "0" {
                cell.clone()
            } else {
                (*mask).to_string()
            };
        }
    }
    cells.join(", ")
}

fn normalize_table_row(line: &str, kind: OutputKind, header: &mut Option<Vec<String>>) -> String {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells: Vec<String> = inner.split('|').map(|c| c.trim().to_string()).collect();
    let is_header = cells
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| !ch.is_ascii_lowercase()));
    if header.is_none() && is_header {
        *header = Some(cells.clone());
    } else if let Some(names) = header.as_ref() {
        for (cell, name) in cells.iter_mut().zip(names) {
            if let Some(mask) = table_mask(kind, name, cell) {
                *cell = mask;
            }
        }
    }
    format!("| {} |", cells.join(" | "))
}

fn table_mask(kind: OutputKind, column: &str, cell: &str) -> Option<String> {
    match (kind, column) {
        (_, "RAFT TERM") if cell != "0" => Some("<term>".into()),
        (OutputKind::EndpointStatus, "DB SIZE" | "DB SIZE IN USE" | "RAFT INDEX") => {
            Some("<masked>".into())
        }
        (OutputKind::EndpointStatus, "RAFT APPLIED INDEX") => Some("<masked>".into()),
        (OutputKind::EndpointStatus, "VERSION") => Some(minor_version(cell)),
        (OutputKind::EndpointHealth, "TOOK") => Some("<took>".into()),
        (OutputKind::EndpointHashKv, "HASH") => Some("<hash>".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            cluster_id: 13455796455940752355,
            member_id: 443629905751424238,
            endpoint: "127.0.0.1:32379".into(),
            client_url: "http://127.0.0.1:32379".into(),
            peer_url: "http://127.0.0.1:32380".into(),
            leases: vec![0x694d7a5b8c2e0a0b],
        }
    }

    #[test]
    fn json_header_ids_and_term_are_replaced_but_revision_is_kept() {
        let out = br#"{"header":{"cluster_id":13455796455940752355,"member_id":443629905751424238,"revision":4,"raft_term":2},"count":1}"#;
        let got = normalize(out, &ident(), OutputKind::Other);
        assert_eq!(
            got,
            r#"{"count":1,"header":{"cluster_id":"<cluster_id>","member_id":"<member_id>","raft_term":"<term>","revision":4}}"#
        );
    }

    #[test]
    fn foreign_ids_are_not_replaced() {
        let out = br#"{"header":{"cluster_id":42,"member_id":7,"revision":4}}"#;
        let got = normalize(out, &ident(), OutputKind::Other);
        assert!(got.contains("\"cluster_id\":42"), "{got}");
        assert!(got.contains("\"member_id\":7"), "{got}");
    }

    #[test]
    fn log_lines_lose_timestamp_and_target_only() {
        let err = br#"{"level":"warn","ts":"2026-11-26T19:20:08.802Z","logger":"etcd-client","caller":"v3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"etcd-endpoints://0xc00057a000/127.0.0.1:32379","attempt":0,"error":"rpc error: code = OutOfRange desc = x"}
Error: x"#;
        let got = normalize(err, &ident(), OutputKind::Other);
        assert!(!got.contains("ts\""), "{got}");
        assert!(!got.contains("0xc00057a000"), "{got}");
        assert!(got.contains("code = OutOfRange"), "{got}");
        assert!(got.ends_with("\nError: x"), "{got}");
    }

    #[test]
    fn simple_status_line_masks_storage_columns() {
        let line = b"127.0.0.1:32379, 628170c800dbcee, 3.5.1, 20 kB, true, false, 2, 4, 4, \n";
        let got = normalize(line, &ident(), OutputKind::EndpointStatus);
        assert_eq!(
            got,
            "<endpoint>, <member_id>, 3.5.x, <masked>, true, false, <term>, <masked>, <masked>, \n"
        );
    }

    #[test]
    fn health_duration_is_masked_in_text_json_and_table() {
        let text = b"127.0.0.1:32379 is healthy: successfully committed proposal: took = 2.05ms";
        let got = normalize(text, &ident(), OutputKind::EndpointHealth);
        assert_eq!(
            got,
            "<endpoint> is healthy: successfully committed proposal: took = <took>"
        );
        let json = br#"[{"endpoint":"127.0.0.1:32379","health":true,"took":"3.1ms"}]"#;
        let got = normalize(json, &ident(), OutputKind::EndpointHealth);
        assert_eq!(
            got,
            r#"[{"endpoint":"<endpoint>","health":true,"took":"<took>"}]"#
        );
        let table = "+----+\n|    ENDPOINT     | HEALTH |    TOOK    | ERROR |\n+--+\n\
                     | 127.0.0.1:32379 |   true | 2.851826ms |       |\n+---+";
        let got = normalize(table.as_bytes(), &ident(), OutputKind::EndpointHealth);
        assert_eq!(
            got,
            "+\n| ENDPOINT | HEALTH | TOOK | ERROR |\n+\n| <endpoint> | true | <took> |  |\n+"
        );
    }

    #[test]
    fn fields_lines_mask_term_but_keep_zero_terms() {
        let text = b"\"RaftTerm\" : 2\n\"Revision\" : 7\n\"RaftTerm\" : 0";
        let got = normalize(text, &ident(), OutputKind::Other);
        assert_eq!(
            got,
            "\"RaftTerm\" : <term>\n\"Revision\" : 7\n\"RaftTerm\" : 0"
        );
    }

    #[test]
    fn tokens_replace_only_whole_words() {
        let text = b"lease 694d7a5b8c2e0a0b granted; 1694d7a5b8c2e0a0b stays; 127.0.0.1:323790";
        let got = normalize(text, &ident(), OutputKind::Other);
        assert_eq!(
            got,
            "lease <lease#1> granted; 1694d7a5b8c2e0a0b stays; 127.0.0.1:323790"
        );
    }

    #[test]
    fn remaining_lease_ttl_is_masked_but_expiry_is_not() {
        let text = b"lease 694d7a5b8c2e0a0b granted with TTL(600s), remaining(599s)";
        let got = normalize(text, &ident(), OutputKind::LeaseTimeToLive);
        assert_eq!(
            got,
            "lease <lease#1> granted with TTL(600s), remaining(<ttl>)"
        );
        let json = br#"{"ID":7587862346,"TTL":-1}"#;
        let got = normalize(json, &ident(), OutputKind::LeaseTimeToLive);
        assert_eq!(got, r#"{"ID":7587862346,"TTL":-1}"#);
        let text =
            b"lease 694d7a5b8c2e0a0b granted with TTL(9s), remaining(8s), attached keys([b a])";
        let got = normalize(text, &ident(), OutputKind::LeaseTimeToLive);
        assert!(got.ends_with("attached keys([a b])"), "{got}");
        let json = br#"{"TTL":599,"grantedTTL":600}"#;
        let got = normalize(json, &ident(), OutputKind::LeaseTimeToLive);
        assert_eq!(got, r#"{"TTL":"<ttl>","grantedTTL":600}"#);
        let json = br#"{"granted-ttl":600,"ttl":598}"#;
        let got = normalize(json, &ident(), OutputKind::LeaseTimeToLive);
        assert_eq!(got, r#"{"granted-ttl":600,"ttl":"<ttl>"}"#);
    }

    #[test]
    fn invalid_utf8_is_escaped_not_lost() {
        assert_eq!(escape_bytes(b"a\xff\xfeb"), "a\\xff\\xfeb");
        let a = normalize(b"\xff", &ident(), OutputKind::Other);
        let b = normalize(b"\xfe", &ident(), OutputKind::Other);
        assert_ne!(a, b);
    }

    #[test]
    fn output_kind_skips_flags_and_format_values() {
        let args: Vec<Vec<u8>> = ["-w", "json", "endpoint", "--cluster", "status"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(output_kind(&args), OutputKind::EndpointStatus);
        let args = vec![b"get".to_vec(), b"endpoint".to_vec()];
        assert_eq!(output_kind(&args), OutputKind::Other);
    }
}
