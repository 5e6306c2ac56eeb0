//! gateway/ — etcd's grpc-gateway JSON API on the client port: `POST /v3/<service>/<call>`
//! with a proto3-JSON body, answered with the call's response in proto3 JSON, as etcd 3.5
//! serves it (`/v3beta/...` is rewritten to `/v3/...`).
//!
//! Encoding (pbjson impls generated in build.rs, see `proto`): original proto field names on
//! output, fields holding their default value left out, 64-bit integers as strings, bytes as
//! standard base64, enums as names; input accepts original or lowerCamel names, strings or
//! numbers for integers, names or numbers for enums, and ignores unknown fields.
//!
//! Errors: a unary call that fails answers `{"error":msg,"code":grpc_code,"message":msg}`
//! with the HTTP status grpc-gateway maps the code to ([`http_status`]); a body that does not
//! decode is InvalidArgument (400); an unknown path under `/v3/` is `404 Not Found`, a known
//! path with another method than POST `405 Method Not Allowed`, both as Go's `http.Error`.
//! Streams (`stream`): `200`, chunked, one `{"result":{...}}\n` per chunk.
//!
//! Maintenance.HashKV has no route: etcd 3.5.1 answers `/v3/maintenance/hashkv` with 404
//! (the call is reachable over gRPC only), and so does this gateway.
//!
//! Auth: every Auth call has its route, served by `api::auth` as over gRPC. The
//! `Authorization` header carries the token, raw (no "Bearer"); the client certificate's CN
//! names no user here, as with etcd's gateway. Cluster member changes need the root role
//! (`Api::check_admin`), Defragment/Hash/Snapshot/MoveLeader too, refused with the auth
//! package's raw text (`Api::check_admin_raw`), as their gRPC twins.
//!
//! Invariant: every call goes through `api/` with the same checks as its gRPC twin; nothing
//!   here touches state directly.
//! Invariant: a request body is read up to [`body_bytes_max`] and no further; a decoded
//!   request larger than the gRPC receive limit is refused as gRPC refuses it.
//! Not in the simulated build (there is no HTTP server under madsim).

pub mod stream;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    auth, cluster, election, kv, lease, lock, maintenance, Api, ApiError, Code, ReqCtx,
};

/// One call of the gateway, by path (aliases map to the same call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
    Watch,
    LeaseGrant,
    LeaseRevoke,
    LeaseKeepAlive,
    LeaseTimeToLive,
    LeaseLeases,
    MemberAdd,
    MemberRemove,
    MemberUpdate,
    MemberList,
    MemberPromote,
    Alarm,
    Status,
    Defragment,
    Hash,
    Snapshot,
    MoveLeader,
    Downgrade,
    AuthEnable,
    AuthDisable,
    AuthStatus,
    Authenticate,
    UserAdd,
    UserGet,
    UserList,
    UserDelete,
    UserChangePassword,
    UserGrantRole,
    UserRevokeRole,
    RoleAdd,
    RoleGet,
    RoleList,
    RoleDelete,
    RoleGrantPermission,
    RoleRevokePermission,
    Campaign,
    Proclaim,
    Leader,
    Observe,
    Resign,
    Lock,
    Unlock,
}

/// The routes of the gateway, by path after `/v3`.
const ROUTES: &[(&str, Route)] = &[
    ("/kv/range", Route::Range),
    ("/kv/put", Route::Put),
    ("/kv/deleterange", Route::DeleteRange),
    ("/kv/txn", Route::Txn),
    ("/kv/compaction", Route::Compact),
    ("/watch", Route::Watch),
    ("/lease/grant", Route::LeaseGrant),
    ("/lease/revoke", Route::LeaseRevoke),
    ("/kv/lease/revoke", Route::LeaseRevoke),
    ("/lease/keepalive", Route::LeaseKeepAlive),
    ("/lease/timetolive", Route::LeaseTimeToLive),
    ("/kv/lease/timetolive", Route::LeaseTimeToLive),
    ("/lease/leases", Route::LeaseLeases),
    ("/kv/lease/leases", Route::LeaseLeases),
    ("/cluster/member/add", Route::MemberAdd),
    ("/cluster/member/remove", Route::MemberRemove),
    ("/cluster/member/update", Route::MemberUpdate),
    ("/cluster/member/list", Route::MemberList),
    ("/cluster/member/promote", Route::MemberPromote),
    ("/maintenance/alarm", Route::Alarm),
    ("/maintenance/status", Route::Status),
    ("/maintenance/defragment", Route::Defragment),
    ("/maintenance/hash", Route::Hash),
    ("/maintenance/snapshot", Route::Snapshot),
    ("/maintenance/transfer-leadership", Route::MoveLeader),
    ("/maintenance/downgrade", Route::Downgrade),
    ("/auth/enable", Route::AuthEnable),
    ("/auth/disable", Route::AuthDisable),
    ("/auth/status", Route::AuthStatus),
    ("/auth/authenticate", Route::Authenticate),
    ("/auth/user/add", Route::UserAdd),
    ("/auth/user/get", Route::UserGet),
    ("/auth/user/list", Route::UserList),
    ("/auth/user/delete", Route::UserDelete),
    ("/auth/user/changepw", Route::UserChangePassword),
    ("/auth/user/grant", Route::UserGrantRole),
    ("/auth/user/revoke", Route::UserRevokeRole),
    ("/auth/role/add", Route::RoleAdd),
    ("/auth/role/get", Route::RoleGet),
    ("/auth/role/list", Route::RoleList),
    ("/auth/role/delete", Route::RoleDelete),
    ("/auth/role/grant", Route::RoleGrantPermission),
    ("/auth/role/revoke", Route::RoleRevokePermission),
    ("/election/campaign", Route::Campaign),
    ("/election/proclaim", Route::Proclaim),
    ("/election/leader", Route::Leader),
    ("/election/observe", Route::Observe),
    ("/election/resign", Route::Resign),
    ("/lock/lock", Route::Lock),
    ("/lock/unlock", Route::Unlock),
];

/// Whether `path` belongs to the gateway (`/v3/...`, or `/v3beta/...` which 3.5 rewrites).
pub fn claims(path: &str) -> bool {
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// The route of a gateway path; `None`: no such call (404).
pub fn route(path: &str) -> Option<Route> {
    let rest = path
        .strip_prefix("/v3beta")
        .or_else(|| path.strip_prefix("/v3"))?;
    ROUTES.iter().find(|(p, _)| *p == rest).map(|(_, r)| *r)
}

/// The largest request body read: room for a request at the gRPC receive limit in base64
/// (4/3 of it) plus JSON's punctuation. Larger bodies are refused unread.
pub fn body_bytes_max(api: &Api) -> usize {
    api.limits.grpc_max_recv_bytes.saturating_mul(2)
}

/// Answers one gateway request (the caller has checked [`claims`]).
pub async fn serve(api: Arc<Api>, parts: http::request::Parts, body: Body) -> Response<Body> {
    let Some(route) = route(parts.uri.path()) else {
        return go_http_error(StatusCode::NOT_FOUND);
    };
    if parts.method != Method::POST {
        return go_http_error(StatusCode::METHOD_NOT_ALLOWED);
    }
    let body = match read_body(body, body_bytes_max(&api)).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let ctx = req_ctx(&parts);
    match route {
        Route::Watch => stream::watch(&api, &ctx, &body),
        Route::LeaseKeepAlive => stream::keep_alive(api, ctx, &body),
        Route::Snapshot => stream::snapshot(&api, &ctx, &body),
        Route::Observe => stream::observe(api, ctx, &body),
        _ => unary(&api, &ctx, route, &body).await,
    }
}

/// The request context of a gateway call: the connection's address and the token of the
/// `Authorization` header, raw (etcd's gateway hands the header on as `authorization`
/// metadata, which the server reads as the token). The client certificate's common name is
/// not an identity here: etcd's server ignores it for gateway calls (CVE-2018-16886).
fn req_ctx(parts: &http::request::Parts) -> ReqCtx {
    let conn = parts.extensions.get::<crate::net::transport::ConnInfo>();
    let mut ctx = ReqCtx::internal();
    ctx.peer = conn.and_then(|c| c.remote_addr);
    ctx.token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ctx
}

/// Reads the body up to `max` bytes; beyond it, gRPC's "message larger than max".
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    use futures_core::Stream;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk: Bytes =
            chunk.map_err(|e| ApiError::Internal(format!("reading the request body: {e}")))?;
        if out.len() + chunk.len() > max {
            return Err(ApiError::MessageTooLarge {
                size: out.len() + chunk.len(),
                max,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decodes one request; an empty body is the empty message, as grpc-gateway reads it. Like
/// Go's JSON decoder, only the first JSON value of the body is read (anything after it is
/// ignored).
pub fn decode<T: DeserializeOwned + Default + prost::Message>(
    api: &Api,
    body: &[u8],
) -> Result<T, ApiError> {
    let text = trim_ascii(body);
    let req: T = if text.is_empty() || text == b"null" {
        T::default()
    } else {
        match serde_json::Deserializer::from_slice(text)
            .into_iter::<T>()
            .next()
        {
            Some(Ok(req)) => req,
            Some(Err(e)) => return Err(bad_json(&e)),
            None => T::default(),
        }
    };
    let size = req.encoded_len();
    let max = api.limits.grpc_max_recv_bytes;
    if size > max {
        return Err(ApiError::MessageTooLarge { size, max });
    }
    Ok(req)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// A body that is not the request message: InvalidArgument with the decoder's text.
pub fn bad_json(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest(go_text(e))
}

/// The decoder's text, in Go's words where clients may read them: a cut-off body is
/// "unexpected EOF", bad base64 is "illegal base64 data at input byte N" (N: the offset of the
/// bad symbol, or of the 4-byte group a bad ending starts). Other texts are serde's, without
/// the position suffix.
pub fn go_text(e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".to_string();
    }
    let full = e.to_string();
    let text = full
        .rfind(" at line ")
        .map_or(full.as_str(), |at| &full[..at]);
    let offset = |t: &str| -> Option<usize> {
        let rest = &t[t.rfind("offset ")? + "offset ".len()..];
        rest.trim_end_matches('.').parse().ok()
    };
    if text.starts_with("Invalid symbol ") {
        if let Some(n) = offset(text) {
            return format!("illegal base64 data at input byte {n}");
        }
    }
    if text.starts_with("Invalid last symbol ") {
        if let Some(n) = offset(text) {
            return format!("illegal base64 data at input byte {}", n / 4 * 4);
        }
    }
    if text.starts_with("Invalid input length") || text.starts_with("Invalid padding") {
        return "illegal base64 data at input byte 0".to_string();
    }
    text.to_string()
}

async fn unary(api: &Arc<Api>, ctx: &ReqCtx, route: Route, body: &[u8]) -> Response<Body> {
    macro_rules! call {
        (|$req:ident $(: $ty:ty)?| $call:expr) => {
            match decode$(::<$ty>)?(api, body) {
                Ok($req) => answer($call.await),
                Err(e) => error_response(&e),
            }
        };
    }
    match route {
        Route::Range => call!(|r| kv::range(api, ctx, r)),
        Route::Put => call!(|r| kv::put(api, ctx, r)),
        Route::DeleteRange => call!(|r| kv::delete_range(api, ctx, r)),
        Route::Txn => call!(|r| kv::txn(api, ctx, r)),
        Route::Compact => call!(|r| kv::compact(api, ctx, r)),
        Route::LeaseGrant => call!(|r| lease::grant(api, ctx, r)),
        Route::LeaseRevoke => call!(|r| lease_revoke(api, ctx, r)),
        Route::LeaseTimeToLive => call!(|r| lease::time_to_live(api, ctx, r)),
        Route::LeaseLeases => call!(|r| lease_leases(api, ctx, r)),
        Route::MemberAdd => call!(|r| admin(api.check_admin(ctx), cluster::member_add(api, r))),
        Route::MemberRemove => call!(|r| admin(api.check_admin(ctx), member_remove(api, r))),
        Route::MemberUpdate => {
            call!(|r| admin(api.check_admin(ctx), cluster::member_update(api, r)))
        }
        Route::MemberList => call!(|r| member_list(api, r)),
        Route::MemberPromote => call!(|r| admin(api.check_admin(ctx), member_promote(api, r))),
        Route::Alarm => call!(|r| maintenance::alarm(api, ctx, r)),
        Route::Status => call!(|r| status(api, r)),
        Route::Defragment => call!(|r| admin(api.check_admin_raw(ctx), defragment(api, r))),
        Route::Hash => call!(|r| admin(api.check_admin_raw(ctx), hash(api, r))),
        Route::MoveLeader => call!(|r| admin(api.check_admin_raw(ctx), move_leader(api, r))),
        Route::Downgrade => call!(|r| maintenance::downgrade(api, r)),
        Route::AuthEnable => call!(|_r: pb::AuthEnableRequest| auth::auth_enable(api, ctx)),
        Route::AuthDisable => call!(|_r: pb::AuthDisableRequest| auth::auth_disable(api, ctx)),
        Route::AuthStatus => call!(|_r: pb::AuthStatusRequest| auth::auth_status(api, ctx)),
        Route::Authenticate => call!(|r| auth::authenticate(api, ctx, r)),
        Route::UserAdd => call!(|r| auth::user_add(api, ctx, r)),
        Route::UserGet => call!(|r| auth::user_get(api, ctx, r)),
        Route::UserList => call!(|_r: pb::AuthUserListRequest| auth::user_list(api, ctx)),
        Route::UserDelete => call!(|r| auth::user_delete(api, ctx, r)),
        Route::UserChangePassword => call!(|r| auth::user_change_password(api, ctx, r)),
        Route::UserGrantRole => call!(|r| auth::user_grant_role(api, ctx, r)),
        Route::UserRevokeRole => call!(|r| auth::user_revoke_role(api, ctx, r)),
        Route::RoleAdd => call!(|r| auth::role_add(api, ctx, r)),
        Route::RoleGet => call!(|r| auth::role_get(api, ctx, r)),
        Route::RoleList => call!(|_r: pb::AuthRoleListRequest| auth::role_list(api, ctx)),
        Route::RoleDelete => call!(|r| auth::role_delete(api, ctx, r)),
        Route::RoleGrantPermission => call!(|r| auth::role_grant_permission(api, ctx, r)),
        Route::RoleRevokePermission => call!(|r| auth::role_revoke_permission(api, ctx, r)),
        Route::Campaign => call!(|r| election::campaign(api, ctx, r)),
        Route::Proclaim => call!(|r| election::proclaim(api, ctx, r)),
        Route::Leader => call!(|r| election::leader(api, ctx, r)),
        Route::Resign => call!(|r| election::resign(api, ctx, r)),
        Route::Lock => call!(|r| lock::lock(api, ctx, r)),
        Route::Unlock => call!(|r| lock::unlock(api, ctx, r)),
        Route::Watch | Route::LeaseKeepAlive | Route::Snapshot | Route::Observe => {
            error_response(&ApiError::Internal("a stream routed as unary".to_string()))
        }
    }
}

use crate::proto::etcdserverpb as pb;

/// A call made only after its admin check passed (the request decoded first, as the gateway
/// decodes before the server checks).
async fn admin<T>(
    check: Result<(), ApiError>,
    call: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    check?;
    call.await
}

async fn lease_revoke(
    api: &Api,
    ctx: &ReqCtx,
    r: pb::LeaseRevokeRequest,
) -> Result<pb::LeaseRevokeResponse, ApiError> {
    lease::revoke(api, ctx, r.id).await
}

async fn lease_leases(
    api: &Api,
    ctx: &ReqCtx,
    _r: pb::LeaseLeasesRequest,
) -> Result<pb::LeaseLeasesResponse, ApiError> {
    lease::leases(api, ctx).await
}

async fn member_remove(
    api: &Api,
    r: pb::MemberRemoveRequest,
) -> Result<pb::MemberRemoveResponse, ApiError> {
    cluster::member_remove(api, r.id).await
}

async fn member_list(
    api: &Api,
    r: pb::MemberListRequest,
) -> Result<pb::MemberListResponse, ApiError> {
    cluster::member_list(api, r.linearizable).await
}

async fn member_promote(
    api: &Api,
    r: pb::MemberPromoteRequest,
) -> Result<pb::MemberPromoteResponse, ApiError> {
    cluster::member_promote(api, r.id).await
}

async fn status(api: &Api, _r: pb::StatusRequest) -> Result<pb::StatusResponse, ApiError> {
    maintenance::status(api).await
}

async fn defragment(
    api: &Api,
    _r: pb::DefragmentRequest,
) -> Result<pb::DefragmentResponse, ApiError> {
    maintenance::defragment(api).await
}

async fn hash(api: &Api, _r: pb::HashRequest) -> Result<pb::HashResponse, ApiError> {
    maintenance::hash(api).await
}

async fn move_leader(
    api: &Api,
    r: pb::MoveLeaderRequest,
) -> Result<pb::MoveLeaderResponse, ApiError> {
    maintenance::move_leader(api, r.target_id).await
}

/// A successful unary answer, or the error's JSON.
fn answer<T: Serialize>(result: Result<T, ApiError>) -> Response<Body> {
    match result {
        Ok(resp) => match serde_json::to_vec(&resp) {
            Ok(bytes) => {
                let mut r = json_response(StatusCode::OK, bytes);
                r.headers_mut().insert(
                    "grpc-metadata-content-type",
                    HeaderValue::from_static("application/grpc"),
                );
                r
            }
            Err(e) => error_response(&ApiError::Internal(format!("encoding the response: {e}"))),
        },
        Err(e) => error_response(&e),
    }
}

/// The HTTP status grpc-gateway (v1) gives a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        // grpc-gateway 1.16 (etcd 3.5) answers FailedPrecondition with 400, not 412 as
        // the gateway of etcd 3.4 did.
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error":msg,"code":N,"message":msg}` in grpc-gateway's field order.
pub fn error_json(code: i32, message: &str) -> String {
    let msg = serde_json::Value::from(message).to_string();
    format!(r#"{{"error":{msg},"code":{code},"message":{msg}}}"#)
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = e.code();
    json_response(
        http_status(code),
        error_json(code as i32, &e.message()).into_bytes(),
    )
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Go's `http.Error`: the status text and a newline, as plain text.
fn go_http_error(status: StatusCode) -> Response<Body> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
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

#[cfg(test)]
mod tests;
