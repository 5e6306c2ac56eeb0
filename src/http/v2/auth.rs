//! `/v2/auth/*` as etcd 3.4 answers it while v2 auth is disabled: auth off, no users, only
//! the built-in `root` role. Changing v2 auth (enabling it, adding users or roles) is not
//! implemented: those requests are refused with 501 and a message saying so, never accepted.
//!
//! Invariant: nothing here changes state.

use axum::body::Body;
use http::{Method, Response, StatusCode};

use super::{json, method_not_allowed};

const ROOT_ROLE: &str = r#"{"role":"root","permissions":{"kv":{"read":["/*"],"write":["/*"]}}}"#;

pub fn claims(path: &str) -> bool {
    path == "/v2/auth/enable"
        || path == "/v2/auth/users"
        || path.starts_with("/v2/auth/users/")
        || path == "/v2/auth/roles"
        || path.starts_with("/v2/auth/roles/")
}

fn not_implemented() -> Response<Body> {
    json(
        StatusCode::NOT_IMPLEMENTED,
        r#"{"message":"oxetcd: changing v2 auth is not implemented"}"#.to_string(),
    )
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    let mut body = String::from("{\"message\":");
    crate::v2store::push_json_str(&mut body, text);
    body.push('}');
    json(status, body)
}

pub fn serve(method: &Method, path: &str) -> Response<Body> {
    if path == "/v2/auth/enable" {
        return match *method {
            Method::GET => json(StatusCode::OK, "{\"enabled\":false}\n".to_string()),
            Method::DELETE => message(StatusCode::CONFLICT, "auth: already disabled"),
            Method::PUT => not_implemented(),
            _ => method_not_allowed("GET,PUT,DELETE"),
        };
    }
    let (kind, name) = if let Some(rest) = path.strip_prefix("/v2/auth/users") {
        ("User", rest.trim_start_matches('/'))
    } else {
        let rest = path.strip_prefix("/v2/auth/roles").unwrap_or("");
        ("Role", rest.trim_start_matches('/'))
    };
    match (method, kind, name) {
        (&Method::GET, "User", "") => json(StatusCode::OK, "{\"users\":null}\n".to_string()),
        (&Method::GET, "Role", "") => {
            json(StatusCode::OK, format!("{{\"roles\":[{ROOT_ROLE}]}}\n"))
        }
        (&Method::GET, "Role", "root") => json(StatusCode::OK, format!("{ROOT_ROLE}\n")),
        (&Method::GET, _, name) => message(
            StatusCode::NOT_FOUND,
            &format!("auth: {kind} {name} does not exist."),
        ),
        (&Method::PUT, _, _) | (&Method::DELETE, _, _) => not_implemented(),
        _ => method_not_allowed("GET,PUT,DELETE"),
    }
}
