//! Request parameters as Go's `net/http` reads them for etcd's v2 handlers: `ParseForm` (an
//! `application/x-www-form-urlencoded` body of POST/PUT/PATCH first, then the query string;
//! `FormValue` is the first value), `url.ParseQuery`'s errors, `strconv.ParseBool` and
//! `strconv.ParseUint(s, 10, 64)`.
//!
//! Invariant: parsing never allocates more than the input it is given; the body is bounded by
//! the caller (Go's 10 MiB form limit).

use std::collections::HashMap;

/// Go's `maxFormSize`: a larger urlencoded body is "http: POST too large".
pub const FORM_BODY_BYTES_MAX: usize = 10 << 20;

/// Parsed parameters: every value of every key, in order (body values before query values).
#[derive(Debug, Default, Clone)]
pub struct Form {
    values: HashMap<String, Vec<String>>,
}

impl Form {
    /// Go's `FormValue`: the first value, or "".
    pub fn value(&self, key: &str) -> &str {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map_or("", |s| s.as_str())
    }

    /// Whether the key was given at all (even empty).
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The first value when the key was given.
    pub fn first(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(|s| s.as_str())
    }

    fn append(&mut self, other: Form) {
        for (k, mut v) in other.values {
            self.values.entry(k).or_default().append(&mut v);
        }
    }
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; anything else after `%` fails with
/// `invalid URL escape "%.."`. Bytes that are not UTF-8 become U+FFFD.
pub fn query_unescape(s: &str) -> Result<String, String> {
    unescape(s, true)
}

/// Go's `url.PathUnescape` (no `+` rule).
pub fn path_unescape(s: &str) -> Result<String, String> {
    unescape(s, false)
}

fn unescape(s: &str, plus_is_space: bool) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).and_then(|c| hex(*c)),
                    b.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        let end = (i + 3).min(b.len());
                        let bad = String::from_utf8_lossy(&b[i..end]);
                        return Err(format!("invalid URL escape {}", go_quote(&bad)));
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `strconv.Quote` for the short texts errors quote.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `url.ParseQuery`: keeps what parses, reports the first error.
pub fn parse_query(query: &str) -> (Form, Option<String>) {
    let mut form = Form::default();
    let mut err = None;
    for pair in query.split('&') {
        if pair.contains(';') {
            err.get_or_insert_with(|| "invalid semicolon separator in query".to_string());
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = match query_unescape(k) {
            Ok(k) => k,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        let value = match query_unescape(v) {
            Ok(v) => v,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        form.values.entry(key).or_default().push(value);
    }
    (form, err)
}

/// Go's `Request.ParseForm` for a request with `method`, `content_type`, query and body (the
/// body read up to [`FORM_BODY_BYTES_MAX`] + 1 bytes). Returns the form and its first error.
pub fn parse_form(
    method: &str,
    content_type: Option<&str>,
    query: &str,
    body: &[u8],
) -> (Form, Option<String>) {
    let mut form = Form::default();
    let mut err = None;
    if matches!(method, "POST" | "PUT" | "PATCH") {
        let ct = content_type.unwrap_or("application/octet-stream");
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media.is_empty() {
            err = Some("mime: no media type".to_string());
        } else if media == "application/x-www-form-urlencoded" {
            if body.len() > FORM_BODY_BYTES_MAX {
                err = Some("http: POST too large".to_string());
            } else {
                let text = String::from_utf8_lossy(body);
                let (body_form, e) = parse_query(&text);
                form = body_form;
                err = e;
            }
        }
    }
    let (query_form, e) = parse_query(query);
    if err.is_none() {
        err = e;
    }
    form.append(query_form);
    (form, err)
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`: ASCII digits only, no sign, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_values_come_before_query_values() {
        let (f, e) = parse_form(
            "PUT",
            Some("application/x-www-form-urlencoded"),
            "value=q&ttl=5",
            b"value=b+x%21",
        );
        assert_eq!(e, None);
        assert_eq!(f.value("value"), "b x!");
        assert_eq!(f.value("ttl"), "5");
    }

    #[test]
    fn go_errors() {
        let (_, e) = parse_query("a=%zz");
        assert_eq!(e.as_deref(), Some("invalid URL escape \"%zz\""));
        let (_, e) = parse_query("a=1;b=2");
        assert_eq!(e.as_deref(), Some("invalid semicolon separator in query"));
        let (f, _) = parse_form("GET", None, "x", b"value=ignored");
        assert!(f.has("x") && !f.has("value"));
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
    }
}
