//! Output in etcdctl 3.5's formats: `simple` (its line formats), `json` (what Go's
//! `encoding/json` writes for the client's response structs: proto field names, zero values
//! left out, 64-bit integers as numbers, bytes as base64), `table` (right-aligned cells under
//! centred headers) and `fields` (`"Name" : value` lines).
//!
//! Invariant: every writer here is a pure function of its input; nothing here does I/O, so the
//! formats are unit-tested byte for byte.

use base64::Engine as _;
use comfy_table::{
    Cell, CellAlignment, ColumnConstraint, ContentArrangement, ContentLineStyle, LineStyle, Table,
    TableStyle,
};

use oxetcd::proto::etcdserverpb::ResponseHeader;
use oxetcd::proto::mvccpb::KeyValue;

/// `-w` / `--write-out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
    Table,
    Fields,
    Protobuf,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Table => "table",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
        }
    }
}

/// A JSON object written field by field in a fixed order, as Go's `encoding/json` writes a
/// struct whose fields are all `omitempty`.
#[derive(Default)]
pub struct Obj {
    out: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    fn field(&mut self, name: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push_str(&string(name));
        self.out.push(':');
    }

    /// A field whose value is already JSON text.
    pub fn raw(mut self, name: &str, json: &str) -> Obj {
        self.field(name);
        self.out.push_str(json);
        self
    }

    pub fn u64(self, name: &str, v: u64) -> Obj {
        if v == 0 {
            self
        } else {
            self.raw(name, &v.to_string())
        }
    }

    pub fn i64(self, name: &str, v: i64) -> Obj {
        if v == 0 {
            self
        } else {
            self.raw(name, &v.to_string())
        }
    }

    pub fn bool(self, name: &str, v: bool) -> Obj {
        if v {
            self.raw(name, "true")
        } else {
            self
        }
    }

    pub fn str(self, name: &str, v: &str) -> Obj {
        if v.is_empty() {
            self
        } else {
            self.raw(name, &string(v))
        }
    }

    /// A string field written even when empty (a Go field without `omitempty`).
    pub fn str_always(self, name: &str, v: &str) -> Obj {
        self.raw(name, &string(v))
    }

    pub fn bytes(self, name: &str, v: &[u8]) -> Obj {
        if v.is_empty() {
            self
        } else {
            let encoded = base64::engine::general_purpose::STANDARD.encode(v);
            self.raw(name, &string(&encoded))
        }
    }

    pub fn strings(self, name: &str, v: &[String]) -> Obj {
        if v.is_empty() {
            self
        } else {
            let items: Vec<String> = v.iter().map(|s| string(s)).collect();
            self.raw(name, &format!("[{}]", items.join(",")))
        }
    }

    /// An array of objects (already JSON), left out when empty.
    pub fn objects(self, name: &str, items: Vec<String>) -> Obj {
        if items.is_empty() {
            self
        } else {
            self.raw(name, &format!("[{}]", items.join(",")))
        }
    }

    pub fn finish(self) -> String {
        if self.out.is_empty() {
            "{}".to_string()
        } else {
            self.out + "}"
        }
    }
}

/// A JSON string as Go writes it: `<`, `>`, `&` and U+2028/U+2029 escaped as `\u00XX`.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn header(h: &Option<ResponseHeader>) -> String {
    let h = h.unwrap_or_default();
    header_fields(Obj::new(), &h).finish()
}

/// The four header fields, for structs that embed the header (clientv3's lease responses).
pub fn header_fields(obj: Obj, h: &ResponseHeader) -> Obj {
    obj.u64("cluster_id", h.cluster_id)
        .u64("member_id", h.member_id)
        .i64("revision", h.revision)
        .u64("raft_term", h.raft_term)
}

pub fn key_value(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .i64("create_revision", kv.create_revision)
        .i64("mod_revision", kv.mod_revision)
        .i64("version", kv.version)
        .bytes("value", &kv.value)
        .i64("lease", kv.lease)
        .finish()
}

/// etcdctl's `--hex` form of bytes: `\x` before every two hex digits.
pub fn hex_escaped(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// Key and value lines of the simple format.
pub fn simple_kv(kv: &KeyValue, hex: bool, value_only: bool) -> String {
    let show = |b: &[u8]| {
        if hex {
            hex_escaped(b)
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    };
    if value_only {
        format!("{}\n", show(&kv.value))
    } else {
        format!("{}\n{}\n", show(&kv.key), show(&kv.value))
    }
}

/// `"Name" : value` lines of the fields format for a header.
pub fn fields_header(h: &Option<ResponseHeader>) -> String {
    let h = h.unwrap_or_default();
    format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term
    )
}

/// `"Name" : value` lines of the fields format for one key-value; `prefix` is `"Prev"` for
/// the previous key-values of put and del.
pub fn fields_kv(kv: &KeyValue, hex: bool, prefix: &str) -> String {
    let show = |b: &[u8]| {
        if hex {
            format!("\"{}\"", hex_escaped(b))
        } else {
            go_quote(&String::from_utf8_lossy(b))
        }
    };
    format!(
        "\"{prefix}Key\" : {}\n\"{prefix}CreateRevision\" : {}\n\"{prefix}ModRevision\" : {}\n\
         \"{prefix}Version\" : {}\n\"{prefix}Value\" : {}\n\"{prefix}Lease\" : {}\n",
        show(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        show(&kv.value),
        kv.lease
    )
}

/// Go's `%q` of a string (printable ASCII kept, the rest escaped).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table as etcdctl draws it: `+---+` rules, headers centred, every cell right-aligned,
/// one space of padding.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    const ETCDCTL: TableStyle = TableStyle::new()
        .top_border(LineStyle::new('+', '-', '+', '+'))
        .header_lines(ContentLineStyle::new('|', '|', '|'))
        .header_separator(LineStyle::new('+', '-', '+', '+'))
        .content_lines(ContentLineStyle::new('|', '|', '|'))
        .bottom_border(LineStyle::new('+', '-', '+', '+'));
    // Centred with the odd space after the text (comfy-table would put it before).
    let centred = headers.iter().enumerate().map(|(i, h)| {
        let width = rows
            .iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain(std::iter::once(h.chars().count()))
            .max()
            .unwrap_or(0);
        let gap = width - h.chars().count();
        let text = format!("{}{h}{}", " ".repeat(gap / 2), " ".repeat(gap - gap / 2));
        Cell::new(text).set_alignment(CellAlignment::Left)
    });
    let mut t = Table::new();
    t.load_style(ETCDCTL)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(centred)
        .add_rows(rows.iter().map(|r| r.iter().map(Cell::new)));
    for column in t.column_iter_mut() {
        column.set_cell_alignment(CellAlignment::Right);
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    let mut out = t.to_string();
    out.push('\n');
    out
}

/// The `protobuf` format: the response's own encoding, nothing around it.
pub fn protobuf(message: &impl prost::Message) -> Vec<u8> {
    message.encode_to_vec()
}

/// Writes bytes to stdout as they are.
pub fn write_raw(bytes: &[u8]) -> Result<(), super::CtlError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| super::CtlError::io(format!("writing the output: {e}")))
}

/// go-humanize's `Bytes`: SI units, one decimal below 10 of a unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

/// Go's `time.Duration.String()` for a measured time.
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    oxetcd::config::goparse::format_duration(oxetcd::config::goparse::GoDuration { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_etcdctl_byte_for_byte() {
        // etcdctl 3.5.1 `member list -w table`.
        let expected = "\
+------------------+---------+---------+------------------------+------------------------+------------+
|        ID        | STATUS  |  NAME   |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+---------+------------------------+------------------------+------------+
| bdae9bbc11dd390d | started | default | http://127.0.0.1:23801 | http://127.0.0.1:23791 |      false |
+------------------+---------+---------+------------------------+------------------------+------------+
";
        let got = table(
            &[
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER",
            ],
            &[vec![
                "bdae9bbc11dd390d".into(),
                "started".into(),
                "default".into(),
                "http://127.0.0.1:23801".into(),
                "http://127.0.0.1:23791".into(),
                "false".into(),
            ]],
        );
        assert_eq!(got, expected);
        // Odd gaps put the extra space after a centred header.
        let expected = "\
+-----------------+--------+------------+-------+
|    ENDPOINT     | HEALTH |    TOOK    | ERROR |
+-----------------+--------+------------+-------+
| 127.0.0.1:23791 |   true | 3.473095ms |       |
+-----------------+--------+------------+-------+
";
        let got = table(
            &["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
            &[vec![
                "127.0.0.1:23791".into(),
                "true".into(),
                "3.473095ms".into(),
                String::new(),
            ]],
        );
        assert_eq!(got, expected);
    }

    #[test]
    fn json_objects_leave_out_zero_values_and_escape_as_go() {
        let kv = KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec().into(),
            lease: 0,
        };
        assert_eq!(
            key_value(&kv),
            r#"{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}"#
        );
        assert_eq!(string("a<b>&\"\n"), r#""a\u003cb\u003e\u0026\"\n""#);
        assert_eq!(Obj::new().u64("x", 0).finish(), "{}");
    }

    #[test]
    fn sizes_print_as_go_humanize_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(2_101_248), "2.1 MB");
        assert_eq!(human_bytes(999), "999 B");
    }

    #[test]
    fn hex_and_quoting_follow_etcdctl() {
        assert_eq!(hex_escaped(b"fo"), "\\x66\\x6f");
        assert_eq!(go_quote("b z\u{1}"), "\"b z\\x01\"");
    }
}
