//! `txn [-i]`: etcdctl 3.5's transaction from standard input, in three blank-line-terminated
//! sections (compares, success operations, failure operations), with its parsing rules,
//! messages and outputs.
//!
//! Compares read `<target>("<key>") <op> "<value>"` with targets `ver`/`version`, `c`/`create`,
//! `m`/`mod`, `val`/`value` and `lease`, and ops `=`, `!=`, `<`, `>`. Operations are get, put
//! and del command lines with their flags, split into arguments as etcdctl does (double quotes
//! with Go escapes, single quotes taken literally).
//! Where etcdctl crashes (an unknown op, a non-numeric lease value) this reports an error.

use std::io::BufRead;

use clap::{Args, Parser};

use oxetcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxetcd::proto::etcdserverpb::kv_client::KvClient;
use oxetcd::proto::etcdserverpb::request_op::Request;
use oxetcd::proto::etcdserverpb::response_op::Response;
use oxetcd::proto::etcdserverpb::{Compare, RequestOp, TxnRequest, TxnResponse};

use super::client::{Client, Global};
use super::kv::{self, unsupported};
use super::print::{self, Format, Obj};
use super::CtlError;

#[derive(Debug, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(hide = true)]
    args: Vec<String>,
}

/// One operation line, parsed with the get/put/del commands' own flags.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum TxnOp {
    Get(kv::GetArgs),
    Put(kv::PutArgs),
    Del(kv::DelArgs),
}

pub async fn txn(g: &Global, a: TxnArgs) -> Result<(), CtlError> {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |text: &str| {
        if a.interactive {
            println!("{text}");
        }
    };
    prompt("compares:");
    let mut compare = Vec::new();
    for line in section(&mut input)? {
        compare.push(parse_compare(&line)?);
    }
    prompt("success requests (get, put, del):");
    let success = operations(g, section(&mut input)?)?;
    prompt("failure requests (get, put, del):");
    let failure = operations(g, section(&mut input)?)?;
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    let client = Client::connect(g).await?;
    let response = client
        .call(|c, r| async move { KvClient::new(c).txn(r).await }, request)
        .await?;
    if g.write_out == Format::Protobuf {
        return print::write_raw(&print::protobuf(&response));
    }
    print!("{}", show(g, &response)?);
    Ok(())
}

/// The trimmed lines up to the next blank one. Running out of input first is etcdctl's
/// `EOF` error: every section, the last one too, ends with a blank line.
fn section(input: &mut impl BufRead) -> Result<Vec<String>, CtlError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = input
            .read_line(&mut line)
            .map_err(|e| CtlError::invalid_input(e.to_string()))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(CtlError::invalid_input("EOF"));
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_string());
    }
}

fn operations(g: &Global, lines: Vec<String>) -> Result<Vec<RequestOp>, CtlError> {
    lines.iter().map(|line| parse_operation(g, line)).collect()
}

fn parse_operation(g: &Global, line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::invalid_input(format!(
            "invalid txn compare request: {line}"
        )));
    }
    let op = TxnOp::try_parse_from(&args)
        .map_err(|_| CtlError::invalid_input(format!("invalid txn request: {line}")))?;
    let request = match op {
        TxnOp::Get(a) => Request::RequestRange(kv::get_request(g, &a)?),
        TxnOp::Put(a) => Request::RequestPut(kv::put_request(&a, false)?),
        TxnOp::Del(a) => Request::RequestDeleteRange(kv::del_request(&a)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// Splits an operation line into arguments: `"..."` with Go's escapes, `'...'` literally,
/// anything else up to the next white space.
pub fn argify(line: &str) -> Result<Vec<String>, CtlError> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        match c {
            '"' => {
                let mut quoted = String::new();
                quoted.push(chars.next().unwrap_or('"'));
                let mut escaped = false;
                for c in chars.by_ref() {
                    quoted.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                let (value, _) = go_unquote(&quoted).ok_or_else(|| {
                    CtlError::invalid_input(format!("bad quoted argument {quoted}"))
                })?;
                arg.push_str(&value);
            }
            '\'' => {
                chars.next();
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    arg.push(c);
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    arg.push(c);
                    chars.next();
                }
            }
        }
        args.push(arg);
    }
    Ok(args)
}

/// Reads a Go double-quoted string at the start of `text`: its value and the rest after it.
fn go_unquote(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                    }
                    _ => return None,
                }
            }
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// What `fmt.Sscanf("%q) %s %q")` got before it stopped, for etcdctl's error text.
#[derive(Default)]
struct Scanned {
    key: String,
    op: String,
    value: String,
    count: usize,
}

fn scan(rest: &str) -> Scanned {
    let mut got = Scanned::default();
    let Some((key, rest)) = go_unquote(rest.trim_start()) else {
        return got;
    };
    got.key = key;
    got.count = 1;
    let Some(rest) = rest.strip_prefix(')') else {
        return got;
    };
    let rest = rest.trim_start();
    let op: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    if op.is_empty() {
        return got;
    }
    let rest = &rest[op.len()..];
    got.op = op;
    got.count = 2;
    if let Some((value, _)) = go_unquote(rest.trim_start()) {
        got.value = value;
        got.count = 3;
    }
    got
}

pub fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(CtlError::invalid_input(format!(
            "malformed comparison: {line}"
        )));
    };
    let got = scan(rest);
    if got.count != 3 {
        return Err(CtlError::invalid_input(format!(
            "malformed comparison: {line}; got {target}({}) {} {}",
            go_quoted(&got.key),
            got.op,
            go_quoted(&got.value)
        )));
    }
    let invalid = || CtlError::invalid_input(format!("invalid txn compare request: {line}"));
    let number = |v: &str| v.parse::<i64>().map_err(|_| invalid());
    let (target, union) = match target {
        "ver" | "version" => (
            CompareTarget::Version,
            TargetUnion::Version(number(&got.value)?),
        ),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(&got.value)?),
        ),
        "m" | "mod" => (
            CompareTarget::Mod,
            TargetUnion::ModRevision(number(&got.value)?),
        ),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(got.value.clone().into_bytes()),
        ),
        "lease" => (
            CompareTarget::Lease,
            TargetUnion::Lease(number(&got.value)?),
        ),
        other => {
            return Err(CtlError::invalid_input(format!(
                "malformed comparison: {line} (unknown target {other})"
            )))
        }
    };
    let result = match got.op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        other => {
            return Err(CtlError::invalid_input(format!(
                "malformed comparison: {line} (unknown op {other})"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: got.key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// Go's `%q`, with the empty string as `""`.
fn go_quoted(s: &str) -> String {
    print::go_quote(s)
}

fn show(g: &Global, r: &TxnResponse) -> Result<String, CtlError> {
    let mut out = String::new();
    match g.write_out {
        Format::Simple | Format::Fields => {
            if g.write_out == Format::Simple {
                out.push_str(if r.succeeded {
                    "SUCCESS\n"
                } else {
                    "FAILURE\n"
                });
            } else {
                out.push_str(&print::fields_header(&r.header));
                out.push_str(&format!("\"Succeeded\" : {}\n", r.succeeded));
            }
            for response in &r.responses {
                if g.write_out == Format::Simple {
                    out.push('\n');
                }
                match &response.response {
                    Some(Response::ResponseRange(v)) => out.push_str(&kv::show_get(g, v, false)?),
                    Some(Response::ResponsePut(v)) => out.push_str(&kv::show_put(g, v)?),
                    Some(Response::ResponseDeleteRange(v)) => out.push_str(&kv::show_del(g, v)?),
                    Some(Response::ResponseTxn(v)) => out.push_str(&show(g, v)?),
                    None => out.push_str("unexpected response <nil>\n"),
                }
            }
        }
        Format::Json => {
            out = json(r) + "\n";
        }
        other => return Err(unsupported(other)),
    }
    Ok(out)
}

fn json(r: &TxnResponse) -> String {
    let responses = r
        .responses
        .iter()
        .map(|response| {
            let inner = match &response.response {
                Some(Response::ResponseRange(v)) => Obj::new()
                    .raw("response_range", &kv::range_json(v))
                    .finish(),
                Some(Response::ResponsePut(v)) => {
                    Obj::new().raw("response_put", &kv::put_json(v)).finish()
                }
                Some(Response::ResponseDeleteRange(v)) => Obj::new()
                    .raw("response_delete_range", &kv::del_json(v))
                    .finish(),
                Some(Response::ResponseTxn(v)) => Obj::new().raw("response_txn", &json(v)).finish(),
                None => "{}".to_string(),
            };
            Obj::new().raw("Response", &inner).finish()
        })
        .collect();
    Obj::new()
        .raw("header", &print::header(&r.header))
        .bool("succeeded", r.succeeded)
        .objects("responses", responses)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse_as_etcdctl_parses_them() {
        let c = parse_compare(r#"mod("foo") > "0""#).expect("parses");
        assert_eq!(c.key, b"foo");
        assert_eq!(c.target, CompareTarget::Mod as i32);
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        let c = parse_compare(r#"val("a b") != "x\"y""#).expect("parses");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"x\"y".to_vec())));
        let e = parse_compare(r#"mod(foo) > "0""#).expect_err("unquoted key");
        assert_eq!(
            e.message,
            r#"malformed comparison: mod(foo) > "0"; got mod("")  """#
        );
        let e = parse_compare(r#"val("foo") = bar"#).expect_err("unquoted value");
        assert_eq!(
            e.message,
            r#"malformed comparison: val("foo") = bar; got val("foo") = """#
        );
        let e = parse_compare(r#"bad("foo") > "0""#).expect_err("unknown target");
        assert_eq!(
            e.message,
            r#"malformed comparison: bad("foo") > "0" (unknown target bad)"#
        );
        assert!(parse_compare(r#"mod("foo") > "x""#).is_err());
    }

    #[test]
    fn operation_lines_split_like_etcdctl() {
        assert_eq!(
            argify(r#"put k1 "v \"1\"" 'x y'"#).expect("splits"),
            vec!["put", "k1", "v \"1\"", "x y"]
        );
    }

    #[test]
    fn sections_end_at_blank_lines_and_running_out_is_an_error() {
        let mut input: &[u8] = b"a\n b \n\nc\n";
        assert_eq!(section(&mut input).expect("first"), vec!["a", "b"]);
        assert_eq!(
            section(&mut input).expect_err("no blank line").message,
            "EOF"
        );
    }
}
