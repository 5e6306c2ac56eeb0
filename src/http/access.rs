//! `--host-whitelist` and `--cors` on the client port's plain-HTTP endpoints, as etcd 3.5's
//! access controller applies them before its HTTP mux (gRPC is never checked):
//!
//! 1. a plaintext request whose Host names no whitelisted host (the port stripped, as Go's
//!    `net.SplitHostPort` does) gets `421 Misdirected Request` with etcd's explanation, and
//!    nothing else happens (no CORS headers); TLS requests are never checked;
//! 2. the CORS headers: `Access-Control-Allow-Origin: *` when `--cors` is `*` (the default),
//!    else the request's `Origin` echoed when it is one of the listed origins (compared as the
//!    URL strings etcd keeps), else none;
//! 3. `OPTIONS` is answered `200` with an empty body right there (a preflight).
//!
//! The rules are pure functions of the settings and the request's headers, tested here.
//!
//! Invariant: a request refused by the whitelist never reaches a handler.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

use crate::api::HttpAccess;

/// The host name a Host header names (Go's `httputil.GetHostname`: the host of `host:port`,
/// or the whole value when it has no port).
pub fn hostname(host_header: &str) -> &str {
    if let Some(rest) = host_header.strip_prefix('[') {
        // "[::1]:2379" -> "::1"; a bracket without a port is not host:port, kept whole.
        return match rest.split_once("]:") {
            Some((host, _)) => host,
            None => host_header,
        };
    }
    match host_header.rsplit_once(':') {
        // More than one colon without brackets is not host:port either.
        Some((host, _)) if !host.contains(':') => host,
        _ => host_header,
    }
}

/// Whether a plaintext request naming `host_header` may be served.
pub fn host_allowed(access: &HttpAccess, host_header: &str) -> bool {
    access.host_whitelist.is_empty()
        || access
            .host_whitelist
            .iter()
            .any(|h| h == hostname(host_header))
}

/// etcd's answer to a Host it does not know (its text, Go's `http.Error` framing).
pub fn misdirected(host_header: &str) -> Response<Body> {
    let host = hostname(host_header);
    let quoted = serde_json::Value::from(host).to_string();
    let body = format!(
        "\netcd received your request, but the Host header was unrecognized.\n\n\
         To fix this, choose one of the following options:\n\
         - Enable TLS, then any HTTPS request will be allowed.\n\
         - Add the hostname you want to use to the whitelist in settings.\n  \
         - e.g. etcd --host-whitelist {quoted}\n\n\
         This requirement has been added to help prevent \"DNS Rebinding\" attacks \
         (CVE-2018-5702).\n\n"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
pub fn allowed_origin(access: &HttpAccess, origin: Option<&str>) -> Option<String> {
    match &access.cors_origins {
        None => Some("*".to_string()),
        Some(list) => origin
            .filter(|o| list.iter().any(|allowed| allowed == o))
            .map(str::to_string),
    }
}

/// Adds etcd's CORS headers allowing `origin` to `r`.
pub fn with_cors(mut r: Response<Body>, origin: Option<&str>) -> Response<Body> {
    let Some(value) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return r;
    };
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(cors: Option<&[&str]>, hosts: &[&str]) -> HttpAccess {
        HttpAccess {
            cors_origins: cors.map(|c| c.iter().map(|s| s.to_string()).collect()),
            host_whitelist: hosts.iter().map(|s| s.to_string()).collect(),
            gateway_disabled: false,
        }
    }

    #[test]
    fn host_names_lose_their_port_as_go_strips_it() {
        assert_eq!(hostname("a.example:2379"), "a.example");
        assert_eq!(hostname("a.example"), "a.example");
        assert_eq!(hostname("[::1]:2379"), "::1");
        assert_eq!(hostname("::1"), "::1");
        assert_eq!(hostname(""), "");
        let a = access(None, &["good.example", "127.0.0.1"]);
        assert!(host_allowed(&a, "good.example:2379"));
        assert!(host_allowed(&a, "127.0.0.1"));
        assert!(!host_allowed(&a, "bad.example:2379"));
        assert!(!host_allowed(&a, ""));
        assert!(
            host_allowed(&access(None, &[]), "anything"),
            "no list: any host"
        );
    }

    #[test]
    fn origins_are_echoed_only_when_listed() {
        let any = access(None, &[]);
        assert_eq!(allowed_origin(&any, None).as_deref(), Some("*"));
        assert_eq!(
            allowed_origin(&any, Some("http://x:1")).as_deref(),
            Some("*")
        );
        let listed = access(Some(&["http://a.example:80"]), &[]);
        assert_eq!(
            allowed_origin(&listed, Some("http://a.example:80")).as_deref(),
            Some("http://a.example:80")
        );
        assert_eq!(allowed_origin(&listed, Some("http://a.example")), None);
        assert_eq!(allowed_origin(&listed, None), None);
        let r = with_cors(Response::new(Body::empty()), None);
        assert!(r
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }

    #[test]
    fn the_misdirected_answer_names_the_host_quoted() {
        let r = misdirected("bad.example:2379");
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(
            r.headers().get(header::X_CONTENT_TYPE_OPTIONS),
            Some(&HeaderValue::from_static("nosniff"))
        );
    }
}
