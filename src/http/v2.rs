//! http/v2 — etcd 3.4's v2 HTTP API on the client port, served only with `--enable-v2`:
//! `/v2/keys` (this file), `/v2/members`, `/v2/machines` and `/v2/stats/*` (`members.rs`),
//! `/v2/auth/*` and the v2 access checks of etcd 3.4's v2 auth (`auth.rs`),
//! parameters parsed as Go's `net/http` does (`form.rs`).
//!
//! Life of a request: the path is cleaned as Go's mux does (301 otherwise), the form parsed,
//! the parameters checked in etcd's order with its errors; a write becomes a `V2Request`
//! proposed through raft (`api::v2::write`), a GET reads this member's applied v2 store (after
//! the read-index barrier with `quorum=true`), a `wait=true` GET scans the store's history and
//! then follows applied writes (`api::v2::V2Context`) until its event arrives, the client goes
//! away, or etcd's 5-minute watch timeout passes.
//!
//! Invariant: a watch holds at most `WATCH_QUEUE_EVENTS` undelivered events; a stream that
//!            falls further behind, or whose client is gone, ends.
//! Invariant: a request body is read up to Go's form limit (10 MiB) + 1 byte, no further.

pub mod auth;
pub mod form;
pub mod members;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_core::Stream;
use http::{header, HeaderValue, Method, Response, StatusCode};
use tokio::sync::mpsc;

use self::form::{parse_bool, parse_form, parse_u64, Form, FORM_BODY_BYTES_MAX};
use crate::api::v2::now_unix_ns;
use crate::api::{Api, ReqCtx};
use crate::v2store::error::{self as code, V2Error};
use crate::v2store::{Event, V2Outcome, V2Request, NANOS_PER_SECOND};

/// etcd's `defaultWatchTimeout`: a wait answers nothing after this and ends.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Events a streaming watch may have queued for a slow client before it is ended.
const WATCH_QUEUE_EVENTS: usize = 100;

const KEYS_PREFIX: &str = "/v2/keys";

/// Whether `path` belongs to the v2 API (when it is enabled).
pub fn claims(path: &str) -> bool {
    path == KEYS_PREFIX
        || path.starts_with("/v2/keys/")
        || path == "/v2/machines"
        || path == "/v2/members"
        || path.starts_with("/v2/members/")
        || path.starts_with("/v2/stats/")
        || auth::claims(path)
}

/// Serves one v2 request.
pub async fn serve(api: Arc<Api>, parts: http::request::Parts, body: Body) -> Response<Body> {
    let raw_path = parts.uri.path().to_string();
    if let Some(location) = go_mux_redirect(&raw_path, parts.uri.query()) {
        return redirect(&parts.method, &location);
    }
    if raw_path == KEYS_PREFIX || raw_path.starts_with("/v2/keys/") {
        return keys(api, parts, body).await;
    }
    if auth::claims(&raw_path) {
        return auth::serve(&api, parts, body).await;
    }
    members::serve(&api, parts, body).await
}

/// Go's `ServeMux` cleans paths and redirects to the clean one (a trailing slash is kept).
fn go_mux_redirect(path: &str, query: Option<&str>) -> Option<String> {
    let mut clean = crate::v2store::key_of(&crate::v2store::clean(path));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    if clean == path {
        return None;
    }
    Some(match query {
        Some(q) if !q.is_empty() => format!("{clean}?{q}"),
        _ => clean,
    })
}

fn redirect(method: &Method, location: &str) -> Response<Body> {
    let body = if *method == Method::GET {
        format!("<a href=\"{location}\">Moved Permanently</a>.\n\n")
    } else {
        String::new()
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if *method == Method::GET || *method == Method::HEAD {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    r
}

/// Go's `allowMethod` refusal.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = super::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n", true);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

pub(crate) fn cluster_id_header(api: &Api, r: &mut Response<Body>) {
    if let Ok(v) = HeaderValue::from_str(&format!("{:x}", api.node.cluster_id())) {
        r.headers_mut().insert("x-etcd-cluster-id", v);
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// etcd's v2 error answer: status by code, `X-Etcd-Index`, the JSON body.
fn error_response(api: &Api, e: &V2Error) -> Response<Body> {
    let mut body = format!("{{\"errorCode\":{},\"message\":", e.code);
    crate::v2store::push_json_str(&mut body, e.message());
    if !e.cause.is_empty() {
        body.push_str(",\"cause\":");
        crate::v2store::push_json_str(&mut body, &e.cause);
    }
    body.push_str(&format!(",\"index\":{}}}\n", e.index));
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json(status, body);
    index_header(&mut r, "x-etcd-index", e.index);
    cluster_id_header(api, &mut r);
    r
}

fn index_header(r: &mut Response<Body>, name: &'static str, value: u64) {
    r.headers_mut().insert(name, HeaderValue::from(value));
}

/// A request error (etcd's `NewRequestError`: index 0).
fn request_error(code: u16, cause: &str) -> V2Error {
    V2Error::new(code, cause, 0)
}

/// The parameters of a keys request, checked in etcd's order.
struct KeyRequest {
    path: String,
    value: String,
    dir: bool,
    prev_value: String,
    prev_index: u64,
    prev_exist: Option<bool>,
    wait: bool,
    wait_index: u64,
    recursive: bool,
    quorum: bool,
    stream: bool,
    ttl: Option<u64>,
    refresh: bool,
    no_value_on_success: bool,
}

fn get_bool(form: &Form, key: &str) -> Result<bool, V2Error> {
    match form.first(key) {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| {
            request_error(code::INVALID_FIELD, &format!("invalid value for \"{key}\""))
        }),
    }
}

fn get_u64(form: &Form, key: &str, code: u16) -> Result<u64, V2Error> {
    match form.first(key) {
        None => Ok(0),
        Some(v) => {
            parse_u64(v).ok_or_else(|| request_error(code, &format!("invalid value for \"{key}\"")))
        }
    }
}

fn parse_key_request(method: &Method, key: String, form: &Form) -> Result<KeyRequest, V2Error> {
    let prev_index = get_u64(form, "prevIndex", code::INDEX_NAN)?;
    let wait_index = get_u64(form, "waitIndex", code::INDEX_NAN)?;
    let recursive = get_bool(form, "recursive")?;
    let _sorted = get_bool(form, "sorted")?;
    let wait = get_bool(form, "wait")?;
    let dir = get_bool(form, "dir")?;
    let quorum = get_bool(form, "quorum")?;
    let stream = get_bool(form, "stream")?;
    if wait && *method != Method::GET {
        return Err(request_error(
            code::INVALID_FIELD,
            "\"wait\" can only be used with GET requests",
        ));
    }
    let prev_value = form.value("prevValue").to_string();
    if form.has("prevValue") && prev_value.is_empty() {
        return Err(request_error(
            code::PREV_VALUE_REQUIRED,
            "\"prevValue\" cannot be empty",
        ));
    }
    let no_value_on_success = get_bool(form, "noValueOnSuccess")?;
    let ttl = if form.value("ttl").is_empty() {
        None
    } else {
        Some(get_u64(form, "ttl", code::TTL_NAN)?)
    };
    let prev_exist = match form.first("prevExist") {
        None => None,
        Some(v) => Some(
            parse_bool(v)
                .ok_or_else(|| request_error(code::INVALID_FIELD, "invalid value for prevExist"))?,
        ),
    };
    let mut refresh = false;
    if let Some(v) = form.first("refresh") {
        refresh = parse_bool(v)
            .ok_or_else(|| request_error(code::INVALID_FIELD, "invalid value for refresh"))?;
        if refresh {
            if form.has("value") && !form.value("value").is_empty() {
                return Err(request_error(
                    code::REFRESH_VALUE,
                    "A value was provided on a refresh",
                ));
            }
            if ttl.is_none() {
                return Err(request_error(
                    code::REFRESH_TTL_REQUIRED,
                    "No TTL value set",
                ));
            }
        }
    }
    Ok(KeyRequest {
        path: key,
        value: form.value("value").to_string(),
        dir,
        prev_value,
        prev_index,
        prev_exist,
        wait,
        wait_index,
        recursive,
        quorum,
        stream,
        ttl,
        refresh,
        no_value_on_success,
    })
}

async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, String> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk: Bytes = chunk.map_err(|e| e.to_string())?;
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

async fn keys(api: Arc<Api>, parts: http::request::Parts, body: Body) -> Response<Body> {
    let method = parts.method.clone();
    if !matches!(
        method,
        Method::HEAD | Method::GET | Method::PUT | Method::POST | Method::DELETE
    ) {
        return method_not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    let body = if matches!(method, Method::PUT | Method::POST) {
        match read_body(body, FORM_BODY_BYTES_MAX + 1).await {
            Ok(b) => b,
            Err(e) => return error_response(&api, &request_error(code::INVALID_FORM, &e)),
        }
    } else {
        Vec::new()
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (form, form_err) = parse_form(
        method.as_str(),
        content_type,
        parts.uri.query().unwrap_or(""),
        &body,
    );
    if let Some(e) = form_err {
        return error_response(&api, &request_error(code::INVALID_FORM, &e));
    }
    let raw = &parts.uri.path()[KEYS_PREFIX.len()..];
    let key = match form::path_unescape(raw) {
        Ok(k) => k,
        Err(e) => return error_response(&api, &request_error(code::INVALID_FORM, &e)),
    };
    let req = match parse_key_request(&method, key.clone(), &form) {
        Ok(r) => r,
        Err(e) => return error_response(&api, &e),
    };
    if !auth::has_key_prefix_access(&api, &parts, &key, req.recursive).await {
        return error_response(
            &api,
            &request_error(code::UNAUTHORIZED, "Insufficient credentials"),
        );
    }
    let mut response = match method {
        // etcd turns a quorum GET into a read through raft before it looks at `wait`.
        Method::GET if req.wait && !req.quorum => return watch(api, req).await,
        Method::GET | Method::HEAD => get(&api, &req).await,
        _ => write(&api, &method, req).await,
    };
    cluster_id_header(&api, &mut response);
    if method == Method::HEAD {
        // Go reports the length the GET body would have had.
        use axum::body::HttpBody;
        let length = response.body().size_hint().exact();
        let (mut parts, _) = response.into_parts();
        if let Some(n) = length {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        return Response::from_parts(parts, Body::empty());
    }
    response
}

/// A proposal that failed before it had an outcome: etcd's "Raft Internal Error" with the
/// server error's text.
fn raft_error(api: &Api, e: &crate::api::ApiError) -> Response<Body> {
    error_response(api, &V2Error::new(code::RAFT_INTERNAL, e.message(), 0))
}

async fn raft_headers(api: &Api, r: &mut Response<Body>) {
    let committed = api.node.committed_index().await.unwrap_or(0);
    index_header(r, "x-raft-index", committed);
    index_header(r, "x-raft-term", api.node.term());
}

async fn get(api: &Api, req: &KeyRequest) -> Response<Body> {
    match crate::api::v2::get(api, &req.path, req.recursive, req.quorum).await {
        Err(e) => raft_error(api, &e),
        Ok(Err(e)) => error_response(api, &e),
        Ok(Ok(listing)) => {
            let mut r = json(StatusCode::OK, listing.to_json());
            index_header(&mut r, "x-etcd-index", listing.etcd_index);
            raft_headers(api, &mut r).await;
            r
        }
    }
}

async fn write(api: &Api, method: &Method, req: KeyRequest) -> Response<Body> {
    let now_ns = now_unix_ns();
    let expire_ns = req.ttl.map(|t| {
        let secs = i64::try_from(t).unwrap_or(i64::MAX);
        now_ns.saturating_add(secs.saturating_mul(NANOS_PER_SECOND))
    });
    let v2req = match *method {
        Method::POST => V2Request::Post {
            path: req.path,
            value: req.value,
            dir: req.dir,
            expire_ns,
            now_ns,
        },
        Method::DELETE => V2Request::Delete {
            path: req.path,
            dir: req.dir,
            recursive: req.recursive,
            prev_value: req.prev_value,
            prev_index: req.prev_index,
            now_ns,
        },
        _ => V2Request::Put {
            path: req.path,
            value: req.value,
            dir: req.dir,
            prev_value: req.prev_value,
            prev_index: req.prev_index,
            prev_exist: req.prev_exist,
            expire_ns,
            refresh: req.refresh,
            now_ns,
        },
    };
    match crate::api::v2::write(api, &ReqCtx::internal(), v2req).await {
        Err(e) => raft_error(api, &e),
        Ok(V2Outcome::Error(e)) => error_response(api, &e),
        Ok(V2Outcome::Expired { .. } | V2Outcome::Auth { .. }) => raft_error(
            api,
            &crate::api::ApiError::Internal("unexpected outcome for a keys request".into()),
        ),
        Ok(V2Outcome::Event { event, etcd_index }) => {
            let created = event.action == crate::v2store::Action::Create
                || (event.action == crate::v2store::Action::Set && event.prev_node.is_none());
            let omit = req.no_value_on_success
                && matches!(
                    event.action,
                    crate::v2store::Action::Set
                        | crate::v2store::Action::CompareAndSwap
                        | crate::v2store::Action::Create
                        | crate::v2store::Action::Update
                );
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut r = json(status, event.to_json(omit));
            index_header(&mut r, "x-etcd-index", etcd_index);
            raft_headers(api, &mut r).await;
            r
        }
    }
}

/// A body fed by the watch task; dropping it (the client went away) ends the task.
struct WatchBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Stream for WatchBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

async fn watch(api: Arc<Api>, req: KeyRequest) -> Response<Body> {
    let mut applied = api.v2.subscribe();
    let key = crate::v2store::key_of(&crate::v2store::clean(&req.path));
    let (start_index, since, first) = {
        let view = api.node.state().view();
        let store = &view.state.v2;
        let current = store.current_index();
        let since = if req.wait_index == 0 {
            current + 1
        } else {
            req.wait_index
        };
        match store.scan(&key, req.recursive, since) {
            Err(e) => return error_response(&api, &e),
            Ok(first) => (current, since, first.cloned()),
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(WATCH_QUEUE_EVENTS);
    let mut r = json(StatusCode::OK, String::new());
    *r.body_mut() = Body::from_stream(WatchBody { rx });
    index_header(&mut r, "x-etcd-index", start_index);
    raft_headers(&api, &mut r).await;
    cluster_id_header(&api, &mut r);
    let stream = req.stream;
    let recursive = req.recursive;
    api.v2.count_watcher(true);
    tokio::spawn(async move {
        let _count = WatcherCount(api.clone());
        let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
        if let Some(event) = first {
            if !send(&tx, &event).await || !stream {
                return;
            }
        }
        let mut seen = start_index;
        loop {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
            let batch: Vec<Event> = {
                let view = api.node.state().view();
                let store = &view.state.v2;
                if store.history_start() > seen + 1 && seen != 0 {
                    // More writes than the history holds went by: etcd ends such a watch.
                    return;
                }
                let found = store
                    .events_after(seen)
                    .filter(|e| e.index() >= since && e.concerns_live(&key, recursive))
                    .cloned()
                    .collect();
                seen = store.current_index();
                found
            };
            for event in batch {
                if !send(&tx, &event).await || !stream {
                    return;
                }
            }
        }
    });
    r
}

/// Counts a watch in the store statistics for as long as it lives.
struct WatcherCount(Arc<Api>);

impl Drop for WatcherCount {
    fn drop(&mut self) {
        self.0.v2.count_watcher(false);
    }
}

async fn send(tx: &mpsc::Sender<Bytes>, event: &Event) -> bool {
    tx.send(Bytes::from(event.to_json(false))).await.is_ok()
}
