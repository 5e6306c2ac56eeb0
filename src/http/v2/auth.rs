//! `/v2/auth/*` and the v2 access checks, as etcd 3.4 has them: `enable` (GET, PUT, DELETE),
//! `users` and `roles` (list), `users/<name>` and `roles/<name>` (GET, PUT, DELETE), and the
//! checks the keys and members handlers make before they act (`has_key_prefix_access`,
//! `has_write_root_access`). The state is `v2store::auth`, changed only through the log.
//!
//! Who a request is made by: HTTP basic auth (`Authorization: Basic ...`, the password checked
//! against the user's bcrypt hash off the async workers); without the header and with
//! `--client-cert-auth`, the user named by the verified client certificate's common name;
//! otherwise the `guest` role. Reads (of users, roles, whether auth is on) use this member's
//! applied store, as etcd's handlers do.
//!
//! Invariant: with auth off every check passes without looking at credentials.
//! Invariant: a request body is read up to `AUTH_BODY_BYTES_MAX` + 1 bytes, no further.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;

use super::{cluster_id_header, form, json, method_not_allowed, read_body};
use crate::api::{Api, ReqCtx};
use crate::v2store::auth::{
    role_json, user_json, AuthChange, AuthReply, Perms, V2Auth, GUEST_ROLE,
};
use crate::v2store::{V2Outcome, V2Request};

const AUTH_PREFIX: &str = "/v2/auth";
/// User and role documents are small; etcd reads them without a bound, oxetcd with this one.
const AUTH_BODY_BYTES_MAX: usize = 1024 * 1024;

pub fn claims(path: &str) -> bool {
    path == "/v2/auth/enable"
        || path == "/v2/auth/users"
        || path.starts_with("/v2/auth/users/")
        || path == "/v2/auth/roles"
        || path.starts_with("/v2/auth/roles/")
}

/// etcd's `HTTPError` answer: `{"message":..}` without a trailing newline.
pub(crate) fn message(status: StatusCode, text: &str) -> Response<Body> {
    let mut body = String::from("{\"message\":");
    crate::v2store::push_json_str(&mut body, text);
    body.push('}');
    json(status, body)
}

/// etcd's `writeNoAuth`.
pub(crate) fn no_auth() -> Response<Body> {
    message(StatusCode::UNAUTHORIZED, "Insufficient credentials")
}

fn auth_state(api: &Api) -> V2Auth {
    api.node.state().view().state.v2.auth().clone()
}

/// Whether v2 auth is on (read without copying the users and roles).
fn auth_enabled(api: &Api) -> bool {
    api.node.state().view().state.v2.auth().enabled()
}

/// Go's `Request.BasicAuth`: `None` without the header or when it is not valid basic auth.
fn basic_auth(parts: &http::request::Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.as_bytes();
    const PREFIX: &[u8] = b"basic ";
    if value.len() < PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[PREFIX.len()..])
        .ok()?;
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn has_authorization(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| !v.is_empty())
}

/// etcd's `userFromBasicAuth`: the user whose password matches, or `None`.
async fn user_from_basic_auth(
    api: &Api,
    auth: &V2Auth,
    parts: &http::request::Parts,
) -> Option<crate::v2store::auth::User> {
    let (name, password) = basic_auth(parts)?;
    let user = auth.user(&name)?;
    let hash = user.password_hash.clone();
    let ok = crate::api::auth::off_worker(api, move || {
        bcrypt::verify(password, &hash).unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    if !ok {
        tracing::warn!(user = %name, "v2 auth: incorrect password");
    }
    ok.then_some(user)
}

/// etcd's `userFromClientCertificate`: the user named by the verified certificate.
fn user_from_certificate(
    auth: &V2Auth,
    parts: &http::request::Parts,
) -> Option<crate::v2store::auth::User> {
    let cn = parts
        .extensions
        .get::<crate::net::transport::ConnInfo>()?
        .common_name
        .as_deref()?;
    auth.user(cn)
}

/// etcd's `hasRootAccess`: auth off, or a user with the `root` role.
pub async fn has_root_access(api: &Api, parts: &http::request::Parts) -> bool {
    if !auth_enabled(api) {
        return true;
    }
    let auth = auth_state(api);
    let user = if !has_authorization(parts) && api.auth.client_cert_auth {
        user_from_certificate(&auth, parts)
    } else {
        user_from_basic_auth(api, &auth, parts).await
    };
    user.is_some_and(|u| u.has_role(crate::v2store::auth::ROOT_ROLE))
}

/// etcd's `hasWriteRootAccess`: reads pass, anything else needs root access.
pub async fn has_write_root_access(api: &Api, parts: &http::request::Parts) -> bool {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return true;
    }
    has_root_access(api, parts).await
}

/// etcd's `hasKeyPrefixAccess` for `key` (the path after `/v2/keys`).
pub async fn has_key_prefix_access(
    api: &Api,
    parts: &http::request::Parts,
    key: &str,
    recursive: bool,
) -> bool {
    if !auth_enabled(api) {
        return true;
    }
    let auth = auth_state(api);
    let write = parts.method != Method::GET && parts.method != Method::HEAD;
    let user = if has_authorization(parts) {
        match user_from_basic_auth(api, &auth, parts).await {
            Some(u) => u,
            None => return false,
        }
    } else {
        let by_cert = if api.auth.client_cert_auth {
            user_from_certificate(&auth, parts)
        } else {
            None
        };
        match by_cert {
            Some(u) => u,
            // etcd's guest check is never recursive.
            None => return auth.role_allows(GUEST_ROLE, key, write, false),
        }
    };
    let allowed = user
        .role_names()
        .iter()
        .any(|role| auth.role_allows(role, key, write, recursive));
    if !allowed {
        tracing::warn!(key, "v2 auth: invalid access");
    }
    allowed
}

/// Serves one `/v2/auth/*` request (`claims` holds for its path).
pub async fn serve(api: &Arc<Api>, parts: http::request::Parts, body: Body) -> Response<Body> {
    let raw = parts.uri.path().to_string();
    if raw == "/v2/auth/enable" {
        return enable(api, &parts).await;
    }
    // The mux has cleaned the path already: `users/` lists, `users/<name>` is one user,
    // anything deeper is refused.
    let sub = match form::path_unescape(&raw[AUTH_PREFIX.len()..]) {
        Ok(s) => s,
        Err(_) => return message(StatusCode::BAD_REQUEST, "Invalid path"),
    };
    let sub = sub.trim_end_matches('/');
    let pieces: Vec<&str> = sub.split('/').collect();
    let users = pieces.get(1) == Some(&"users");
    match pieces.len() {
        2 if users => list_users(api, &parts).await,
        2 => list_roles(api, &parts).await,
        3 if users => user(api, parts, body, pieces[2].to_string()).await,
        3 => role(api, parts, body, pieces[2].to_string()).await,
        _ => message(StatusCode::BAD_REQUEST, "Invalid path"),
    }
}

/// The headers etcd's auth handlers set once access is granted.
fn granted(api: &Api, mut r: Response<Body>) -> Response<Body> {
    cluster_id_header(api, &mut r);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn empty_ok() -> Response<Body> {
    Response::new(Body::empty())
}

async fn enable(api: &Api, parts: &http::request::Parts) -> Response<Body> {
    if !matches!(parts.method, Method::GET | Method::PUT | Method::DELETE) {
        return method_not_allowed("GET,PUT,DELETE");
    }
    if !has_write_root_access(api, parts).await {
        return no_auth();
    }
    let r = match parts.method {
        Method::GET => json(
            StatusCode::OK,
            format!("{{\"enabled\":{}}}\n", auth_state(api).enabled()),
        ),
        Method::PUT => propose(api, AuthChange::Enable).await,
        _ => propose(api, AuthChange::Disable).await,
    };
    granted(api, r)
}

/// etcd's checks before a list: GET only, then root access; the state to list from.
async fn list_guard(api: &Api, parts: &http::request::Parts) -> Result<V2Auth, Response<Body>> {
    if parts.method != Method::GET {
        return Err(method_not_allowed("GET"));
    }
    if !has_root_access(api, parts).await {
        return Err(no_auth());
    }
    Ok(auth_state(api))
}

/// The roles of `names` that exist, as JSON.
fn roles_json(auth: &V2Auth, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter_map(|r| auth.role(r).map(|p| role_json(r, &p)))
        .collect()
}

async fn list_users(api: &Api, parts: &http::request::Parts) -> Response<Body> {
    let auth = match list_guard(api, parts).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut items = Vec::new();
    for name in auth.user_names() {
        let Some(user) = auth.user(name) else {
            continue;
        };
        // Roles that no longer exist are left out of the list (one user's GET refuses them).
        let roles = roles_json(&auth, user.role_names());
        items.push(user_with_roles(name, &roles));
    }
    let body = if items.is_empty() {
        "{\"users\":null}\n".to_string()
    } else {
        format!("{{\"users\":[{}]}}\n", items.join(","))
    };
    granted(api, json(StatusCode::OK, body))
}

/// etcd's `userWithRoles`: roles omitted when there are none.
fn user_with_roles(name: &str, roles: &[String]) -> String {
    let mut s = String::from("{\"user\":");
    crate::v2store::push_json_str(&mut s, name);
    if !roles.is_empty() {
        s.push_str(",\"roles\":[");
        s.push_str(&roles.join(","));
        s.push(']');
    }
    s.push('}');
    s
}

async fn list_roles(api: &Api, parts: &http::request::Parts) -> Response<Body> {
    let auth = match list_guard(api, parts).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let items = roles_json(&auth, &auth.role_names());
    granted(
        api,
        json(
            StatusCode::OK,
            format!("{{\"roles\":[{}]}}\n", items.join(",")),
        ),
    )
}

/// Reads the JSON document of a PUT as Go's `json.Decoder.Decode` would see it: the first
/// value of the body (what follows it is ignored). `None`: not JSON.
async fn read_document(body: Body) -> Option<Value> {
    let bytes = read_body(body, AUTH_BODY_BYTES_MAX + 1).await.ok()?;
    if bytes.len() > AUTH_BODY_BYTES_MAX {
        return None;
    }
    serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Value>()
        .next()?
        .ok()
}

/// A field of a decoded object as Go finds it: the exact name, else one that matches it
/// ignoring case.
fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Go's rules for a string field: absent or `null` leave it empty, another type fails.
fn string_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<String, ()> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(()),
    }
}

/// A `[]string` field: `null`/absent is nil (`None`), a `null` element is an empty string.
fn list_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, ()> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                _ => Err(()),
            })
            .collect::<Result<Vec<_>, ()>>()
            .map(Some),
        Some(_) => Err(()),
    }
}

/// The top-level object (`null` decodes as an empty one, as in Go).
fn object(doc: &Value) -> Result<serde_json::Map<String, Value>, ()> {
    match doc {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(serde_json::Map::new()),
        _ => Err(()),
    }
}

/// A `Permissions` value: `{"kv":{"read":[..],"write":[..]}}`; `None` for `null`.
fn perms_value(v: Option<&Value>) -> Result<Option<Perms>, ()> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(()),
    };
    let kv = match field(obj, "kv") {
        None | Some(Value::Null) => return Ok(Some(Perms::default())),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(()),
    };
    Ok(Some(Perms {
        read: list_field(kv, "read")?,
        write: list_field(kv, "write")?,
    }))
}

async fn user(api: &Api, parts: http::request::Parts, body: Body, name: String) -> Response<Body> {
    if !matches!(parts.method, Method::GET | Method::PUT | Method::DELETE) {
        return method_not_allowed("GET,PUT,DELETE");
    }
    if !has_root_access(api, &parts).await {
        return no_auth();
    }
    let r = match parts.method {
        Method::GET => {
            let auth = auth_state(api);
            match auth.user(&name) {
                None => message(
                    StatusCode::NOT_FOUND,
                    &format!("auth: User {name} does not exist."),
                ),
                Some(user) => {
                    let mut roles = Vec::new();
                    let mut missing = None;
                    for r in user.role_names() {
                        match auth.role(r) {
                            Some(p) => roles.push(role_json(r, &p)),
                            None => {
                                missing = Some(r.clone());
                                break;
                            }
                        }
                    }
                    match missing {
                        Some(r) => message(
                            StatusCode::NOT_FOUND,
                            &format!("auth: Role {r} does not exist."),
                        ),
                        None => json(
                            StatusCode::OK,
                            format!("{}\n", user_with_roles(&name, &roles)),
                        ),
                    }
                }
            }
        }
        Method::PUT => put_user(api, body, &name).await,
        _ => propose(api, AuthChange::DeleteUser { name }).await,
    };
    granted(api, r)
}

fn invalid_json() -> Response<Body> {
    message(StatusCode::BAD_REQUEST, "Invalid JSON in request body.")
}

async fn put_user(api: &Api, body: Body, name: &str) -> Response<Body> {
    let Some(doc) = read_document(body).await else {
        return invalid_json();
    };
    let parsed = object(&doc).and_then(|obj| {
        Ok((
            string_field(&obj, "user")?,
            string_field(&obj, "password")?,
            list_field(&obj, "roles")?,
            list_field(&obj, "grant")?.unwrap_or_default(),
            list_field(&obj, "revoke")?.unwrap_or_default(),
        ))
    });
    let Ok((user, password, roles, grant, revoke)) = parsed else {
        return invalid_json();
    };
    if user != name {
        return message(
            StatusCode::BAD_REQUEST,
            "User JSON name does not match the name in the URL",
        );
    }
    let has_roles = roles.as_ref().is_some_and(|r| !r.is_empty());
    if (!grant.is_empty() || !revoke.is_empty()) && has_roles {
        return message(
            StatusCode::BAD_REQUEST,
            "User JSON contains both roles and grant/revoke",
        );
    }
    let password_hash = if password.is_empty() {
        None
    } else {
        match crate::api::auth::hash(api, password).await {
            Ok(h) => Some(h),
            Err(_) => return internal_error(),
        }
    };
    let change = if !grant.is_empty() || !revoke.is_empty() {
        AuthChange::UpdateUser {
            name: user,
            password_hash,
            grant,
            revoke,
        }
    } else if has_roles {
        AuthChange::CreateUser {
            name: user,
            password_hash,
            roles,
        }
    } else {
        AuthChange::CreateOrUpdateUser {
            name: user,
            password_hash,
            roles,
        }
    };
    propose(api, change).await
}

async fn role(api: &Api, parts: http::request::Parts, body: Body, name: String) -> Response<Body> {
    if !matches!(parts.method, Method::GET | Method::PUT | Method::DELETE) {
        return method_not_allowed("GET,PUT,DELETE");
    }
    if !has_root_access(api, &parts).await {
        return no_auth();
    }
    let r = match parts.method {
        Method::GET => match auth_state(api).role(&name) {
            Some(p) => json(StatusCode::OK, format!("{}\n", role_json(&name, &p))),
            None => message(
                StatusCode::NOT_FOUND,
                &format!("auth: Role {name} does not exist."),
            ),
        },
        Method::PUT => put_role(api, body, &name).await,
        _ => propose(api, AuthChange::DeleteRole { name }).await,
    };
    granted(api, r)
}

async fn put_role(api: &Api, body: Body, name: &str) -> Response<Body> {
    let Some(doc) = read_document(body).await else {
        return invalid_json();
    };
    let parsed = object(&doc).and_then(|obj| {
        Ok((
            string_field(&obj, "role")?,
            perms_value(field(&obj, "permissions"))?.unwrap_or_default(),
            perms_value(field(&obj, "grant"))?,
            perms_value(field(&obj, "revoke"))?,
        ))
    });
    let Ok((role, perms, grant, revoke)) = parsed else {
        return invalid_json();
    };
    if role != name {
        return message(
            StatusCode::BAD_REQUEST,
            "Role JSON name does not match the name in the URL",
        );
    }
    let empty = |p: &Option<Perms>| p.as_ref().is_none_or(Perms::is_empty);
    let change = if empty(&grant) && empty(&revoke) {
        AuthChange::CreateRole { name: role, perms }
    } else {
        if !perms.is_empty() {
            return message(
                StatusCode::BAD_REQUEST,
                "Role JSON contains both permissions and grant/revoke",
            );
        }
        AuthChange::UpdateRole {
            name: role,
            grant,
            revoke,
        }
    };
    propose(api, change).await
}

/// etcd's answer to a failure that is not an auth refusal (a timeout, no leader...).
fn internal_error() -> Response<Body> {
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// Proposes a change and answers as etcd's handler does.
async fn propose(api: &Api, change: AuthChange) -> Response<Body> {
    let outcome = crate::api::v2::write(api, &ReqCtx::internal(), V2Request::Auth(change)).await;
    let result = match outcome {
        Ok(V2Outcome::Auth { result, .. }) => result,
        Ok(_) | Err(_) => return internal_error(),
    };
    match result {
        Err(e) => message(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.message,
        ),
        Ok(AuthReply::Done) => empty_ok(),
        Ok(AuthReply::User {
            name,
            roles,
            created,
        }) => json(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            format!("{}\n", user_json(&name, &roles)),
        ),
        Ok(AuthReply::Role {
            name,
            perms,
            created,
        }) => json(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            format!("{}\n", role_json(&name, &perms)),
        ),
    }
}
