//! `get`, `put`, `del`, `compaction`: etcdctl 3.5's key-value commands, flags and outputs.

use std::io::Read;

use clap::Args;

use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse,
};

use super::client::{Client, Global};
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// the key, or the start of the range, and the end of the range [key, range_end)
    #[arg(value_name = "KEY [RANGE_END]")]
    args: Vec<String>,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Get only the keys
    #[arg(long = "keys-only")]
    keys_only: bool,
    /// Get only the count
    #[arg(long = "count-only")]
    count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only")]
    print_value_only: bool,
    /// Restrict results to kvs with modified revision greater or equal than the supplied one
    #[arg(long = "min-mod-rev", default_value_t = 0)]
    min_mod_rev: i64,
    /// Restrict results to kvs with modified revision less or equal than the supplied one
    #[arg(long = "max-mod-rev", default_value_t = 0)]
    max_mod_rev: i64,
    /// Restrict results to kvs with create revision greater or equal than the supplied one
    #[arg(long = "min-create-rev", default_value_t = 0)]
    min_create_rev: i64,
    /// Restrict results to kvs with create revision less or equal than the supplied one
    #[arg(long = "max-create-rev", default_value_t = 0)]
    max_create_rev: i64,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// the key and its value (read from standard input when left out)
    #[arg(value_name = "KEY [VALUE]")]
    args: Vec<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv")]
    prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value")]
    ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease")]
    ignore_lease: bool,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    /// the key, or the start of the range, and the end of the range [key, range_end)
    #[arg(value_name = "KEY [RANGE_END]")]
    args: Vec<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv")]
    prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    from_key: bool,
}

#[derive(Debug, Args)]
pub struct CompactionArgs {
    #[arg(value_name = "REVISION")]
    args: Vec<String>,
    /// Use physical compaction
    #[arg(long)]
    physical: bool,
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn range_end(
    key: &str,
    explicit: Option<&String>,
    prefix: bool,
    from_key: bool,
    command: &str,
) -> Result<Vec<u8>, CtlError> {
    if prefix && from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if let Some(end) = explicit {
        if prefix || from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` \
                 is set",
            ));
        }
        return Ok(end.as_bytes().to_vec());
    }
    let _ = command;
    if prefix {
        if key.is_empty() {
            return Ok(vec![0]);
        }
        return Ok(prefix_end(key.as_bytes()));
    }
    if from_key {
        return Ok(vec![0]);
    }
    Ok(Vec::new())
}

fn sort_order(order: &str) -> Result<SortOrder, CtlError> {
    match order.to_uppercase().as_str() {
        "ASCEND" => Ok(SortOrder::Ascend),
        "DESCEND" => Ok(SortOrder::Descend),
        "" => Ok(SortOrder::None),
        _ => Err(CtlError::bad_feature(format!("bad sort order {order}"))),
    }
}

fn sort_target(by: &str) -> Result<SortTarget, CtlError> {
    match by.to_uppercase().as_str() {
        "CREATE" => Ok(SortTarget::Create),
        "KEY" | "" => Ok(SortTarget::Key),
        "MODIFY" => Ok(SortTarget::Mod),
        "VALUE" => Ok(SortTarget::Value),
        "VERSION" => Ok(SortTarget::Version),
        _ => Err(CtlError::bad_feature(format!("bad sort target {by}"))),
    }
}

/// The key and optional range end of get and del (etcdctl ignores further arguments).
fn key_and_end(args: &[String], command: &str) -> Result<(String, Option<String>), CtlError> {
    match args {
        [] => Err(CtlError::bad_args(format!(
            "{command} command needs one argument as key and an optional argument as range_end"
        ))),
        [key] => Ok((key.clone(), None)),
        [key, end, ..] => Ok((key.clone(), Some(end.clone()))),
    }
}

/// The range request of a get command line (shared with txn's operations).
pub fn get_request(g: &Global, a: &GetArgs) -> Result<RangeRequest, CtlError> {
    let (key, end) = key_and_end(&a.args, "get")?;
    let serializable = match a.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => {
            return Err(CtlError::bad_feature(format!(
                "unknown consistency flag {other:?}"
            )))
        }
    };
    if a.print_value_only && g.write_out != Format::Simple {
        return Err(CtlError::bad_args(
            "print-value-only is only for `--write-out=simple`",
        ));
    }
    if a.count_only && g.write_out != Format::Fields {
        return Err(CtlError::bad_args(
            "--count-only is only for `--write-out=fields`",
        ));
    }
    if a.print_value_only && a.keys_only {
        return Err(CtlError::bad_args(
            "`--print-value-only` and `--keys-only` cannot be set at the same time, choose one",
        ));
    }
    let mut order = sort_order(&a.order)?;
    let target = sort_target(&a.sort_by)?;
    // clientv3's WithSort: ascending by key is the server's own order, sent as "none".
    if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end(&key, end.as_ref(), a.prefix, a.from_key, "get")?,
        limit: a.limit,
        revision: a.rev,
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        min_mod_revision: a.min_mod_rev,
        max_mod_revision: a.max_mod_rev,
        min_create_revision: a.min_create_rev,
        max_create_revision: a.max_create_rev,
    };
    Ok(request)
}

pub async fn get(g: &Global, a: GetArgs) -> Result<(), CtlError> {
    let request = get_request(g, &a)?;
    let client = Client::connect(g).await?;
    let response = client
        .call(
            |c, r| async move { KvClient::new(c).range(r).await },
            request,
        )
        .await?;
    if g.write_out == Format::Protobuf {
        return print::write_raw(&print::protobuf(&response));
    }
    print!("{}", show_get(g, &response, a.print_value_only)?);
    Ok(())
}

pub fn show_get(g: &Global, r: &RangeResponse, value_only: bool) -> Result<String, CtlError> {
    Ok(match g.write_out {
        Format::Simple => r
            .kvs
            .iter()
            .map(|kv| print::simple_kv(kv, g.hex, value_only))
            .collect(),
        Format::Json => range_json(r) + "\n",
        Format::Fields => {
            let mut out = print::fields_header(&r.header);
            for kv in &r.kvs {
                out.push_str(&print::fields_kv(kv, g.hex, ""));
            }
            out.push_str(&format!("\"More\" : {}\n\"Count\" : {}\n", r.more, r.count));
            out
        }
        other => return Err(unsupported(other)),
    })
}

pub fn range_json(r: &RangeResponse) -> String {
    let kvs = r.kvs.iter().map(print::key_value).collect();
    Obj::new()
        .raw("header", &print::header(&r.header))
        .objects("kvs", kvs)
        .bool("more", r.more)
        .i64("count", r.count)
        .finish()
}

pub fn put_json(r: &PutResponse) -> String {
    let mut obj = Obj::new().raw("header", &print::header(&r.header));
    if let Some(kv) = &r.prev_kv {
        obj = obj.raw("prev_kv", &print::key_value(kv));
    }
    obj.finish()
}

pub fn del_json(r: &DeleteRangeResponse) -> String {
    let kvs = r.prev_kvs.iter().map(print::key_value).collect();
    Obj::new()
        .raw("header", &print::header(&r.header))
        .i64("deleted", r.deleted)
        .objects("prev_kvs", kvs)
        .finish()
}

/// etcdctl's error for a format a command has no printer for.
pub fn unsupported(format: Format) -> CtlError {
    CtlError::bad_feature(format!("{} not supported as output format", format.name()))
}

fn read_stdin() -> Result<String, CtlError> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| CtlError::io(format!("reading the value from standard input: {e}")))?;
    Ok(value)
}

/// The put request of a put command line; `stdin` says whether a missing value may be read
/// from standard input (not inside txn, whose operations come from there).
pub fn put_request(a: &PutArgs, stdin: bool) -> Result<PutRequest, CtlError> {
    let lease = i64::from_str_radix(&a.lease, 16).map_err(|e| {
        CtlError::bad_args(format!(
            "bad lease ID ({}), expecting ID in Hex",
            go_parse_error("ParseInt", &a.lease, &e)
        ))
    })?;
    let (key, value) = match a.args.as_slice() {
        [key] => (key.clone(), None),
        [key, value, ..] => (key.clone(), Some(value.clone())),
        [] => {
            return Err(CtlError::bad_args(
                "put command needs 1 argument and input from stdin or 2 arguments",
            ))
        }
    };
    let value = match (&value, a.ignore_value) {
        (Some(_), true) => {
            return Err(CtlError::bad_args(
                "put command needs only 1 argument when 'ignore-value' is set",
            ))
        }
        (Some(v), false) => v.clone(),
        (None, true) => String::new(),
        (None, false) if stdin => read_stdin()?,
        (None, false) => {
            return Err(CtlError::bad_args(
                "put command needs 1 argument and input from stdin or 2 arguments",
            ))
        }
    };
    let request = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.into_bytes(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    };
    Ok(request)
}

pub async fn put(g: &Global, a: PutArgs) -> Result<(), CtlError> {
    let request = put_request(&a, true)?;
    let client = Client::connect(g).await?;
    let response = client
        .call(|c, r| async move { KvClient::new(c).put(r).await }, request)
        .await?;
    if g.write_out == Format::Protobuf {
        return print::write_raw(&print::protobuf(&response));
    }
    print!("{}", show_put(g, &response)?);
    Ok(())
}

pub fn show_put(g: &Global, r: &PutResponse) -> Result<String, CtlError> {
    Ok(match g.write_out {
        Format::Simple => {
            let mut out = String::from("OK\n");
            if let Some(kv) = &r.prev_kv {
                out.push_str(&print::simple_kv(kv, g.hex, false));
            }
            out
        }
        Format::Json => put_json(r) + "\n",
        Format::Fields => {
            let mut out = print::fields_header(&r.header);
            if let Some(kv) = &r.prev_kv {
                out.push_str(&print::fields_kv(kv, g.hex, "Prev"));
            }
            out
        }
        other => return Err(unsupported(other)),
    })
}

/// The delete request of a del command line.
pub fn del_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    let (key, end) = key_and_end(&a.args, "del")?;
    let request = DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end(&key, end.as_ref(), a.prefix, a.from_key, "del")?,
        prev_kv: a.prev_kv,
    };
    Ok(request)
}

pub async fn del(g: &Global, a: DelArgs) -> Result<(), CtlError> {
    let request = del_request(&a)?;
    let client = Client::connect(g).await?;
    let response = client
        .call(
            |c, r| async move { KvClient::new(c).delete_range(r).await },
            request,
        )
        .await?;
    if g.write_out == Format::Protobuf {
        return print::write_raw(&print::protobuf(&response));
    }
    print!("{}", show_del(g, &response)?);
    Ok(())
}

pub fn show_del(g: &Global, r: &DeleteRangeResponse) -> Result<String, CtlError> {
    Ok(match g.write_out {
        Format::Simple => {
            let mut out = format!("{}\n", r.deleted);
            for kv in &r.prev_kvs {
                out.push_str(&print::simple_kv(kv, g.hex, false));
            }
            out
        }
        Format::Json => del_json(r) + "\n",
        Format::Fields => {
            let mut out = print::fields_header(&r.header);
            out.push_str(&format!("\"Deleted\" : {}\n", r.deleted));
            for kv in &r.prev_kvs {
                out.push_str(&print::fields_kv(kv, g.hex, "Prev"));
            }
            out
        }
        other => return Err(unsupported(other)),
    })
}

pub async fn compaction(g: &Global, a: CompactionArgs) -> Result<(), CtlError> {
    let [text, ..] = a.args.as_slice() else {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    };
    let revision: i64 = text.parse().map_err(|e: std::num::ParseIntError| {
        CtlError::general(go_parse_error("ParseInt", text, &e))
    })?;
    let request = CompactionRequest {
        revision,
        physical: a.physical,
    };
    let client = Client::connect(g).await?;
    client
        .call(
            |c, r| async move { KvClient::new(c).compact(r).await },
            request,
        )
        .await?;
    println!("compacted revision {revision}");
    Ok(())
}

/// Go's `strconv` error text: `strconv.ParseInt: parsing "x": invalid syntax`.
pub fn go_parse_error(func: &str, input: &str, e: &std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    let reason = match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    };
    format!(
        "strconv.{func}: parsing {}: {reason}",
        print::go_quote(input)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_etcd() {
        assert_eq!(prefix_end(b"a"), b"b".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn conflicting_range_flags_are_refused() {
        assert!(range_end("a", None, true, true, "get").is_err());
        assert!(range_end("a", Some(&"b".to_string()), true, false, "get").is_err());
        assert_eq!(range_end("", None, true, false, "get").ok(), Some(vec![0]));
        assert_eq!(range_end("a", None, false, true, "get").ok(), Some(vec![0]));
    }
}
