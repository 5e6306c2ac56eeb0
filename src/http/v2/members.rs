//! The v2 API around the keys: `/v2/members` (list, leader, add, remove, update: mapped onto
//! the membership calls of `api::cluster`), `/v2/machines`, `/v2/stats/{self,leader,store}`,
//! with etcd 3.4's bodies, statuses and `{"message":..}` errors.
//!
//! Invariant: nothing here touches the v2 store; member changes go through raft's
//! membership path exactly as the v3 Cluster service's do.

use std::sync::Arc;

use axum::body::Body;
use http::{header, Method, Response, StatusCode};

use super::{cluster_id_header, json, method_not_allowed, read_body};
use crate::api::Api;
use crate::proto::etcdserverpb::{Member, MemberAddRequest, MemberUpdateRequest};
use crate::raft::membership::MembershipError;

const MEMBERS_PREFIX: &str = "/v2/members";
/// Member requests are tiny JSON documents.
const MEMBER_BODY_BYTES_MAX: usize = 64 * 1024;

pub async fn serve(api: &Arc<Api>, parts: http::request::Parts, body: Body) -> Response<Body> {
    let path = parts.uri.path().to_string();
    let mut r = match path.as_str() {
        "/v2/machines" => machines(api, &parts.method).await,
        "/v2/stats/self" | "/v2/stats/leader" | "/v2/stats/store" => {
            stats(api, &parts.method, &path).await
        }
        p if p == MEMBERS_PREFIX || p.starts_with("/v2/members/") => {
            members(api, parts, body).await
        }
        _ => super::super::text(StatusCode::NOT_FOUND, "404 page not found\n", true),
    };
    if r.status() == StatusCode::OK && path.starts_with("/v2/stats/") {
        return r;
    }
    // etcd refuses before it sets the cluster ID header.
    if path.starts_with(MEMBERS_PREFIX)
        && r.status() != StatusCode::METHOD_NOT_ALLOWED
        && r.status() != StatusCode::UNAUTHORIZED
    {
        cluster_id_header(api, &mut r);
    }
    r
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    let mut body = String::from("{\"message\":");
    crate::v2store::push_json_str(&mut body, text);
    body.push('}');
    json(status, body)
}

/// etcd's v2 member JSON: `{"id":hex,"name":..,"peerURLs":[..],"clientURLs":[..]}`.
fn member_json(m: &Member) -> String {
    let list = |urls: &[String]| {
        let mut s = String::from("[");
        for (i, u) in urls.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            crate::v2store::push_json_str(&mut s, u);
        }
        s.push(']');
        s
    };
    let mut s = format!("{{\"id\":\"{:x}\",\"name\":", m.id);
    crate::v2store::push_json_str(&mut s, &m.name);
    s.push_str(&format!(
        ",\"peerURLs\":{},\"clientURLs\":{}}}",
        list(&m.peer_ur_ls),
        list(&m.client_ur_ls)
    ));
    s
}

async fn member_list(api: &Api) -> Result<Vec<Member>, crate::api::ApiError> {
    crate::api::cluster::member_list(api, false)
        .await
        .map(|r| r.members)
}

async fn machines(api: &Api, method: &Method) -> Response<Body> {
    if *method != Method::GET && *method != Method::HEAD {
        return method_not_allowed("GET,HEAD");
    }
    let mut urls: Vec<String> = match member_list(api).await {
        Ok(ms) => ms.into_iter().flat_map(|m| m.client_ur_ls).collect(),
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.message()),
    };
    urls.sort();
    super::super::text(StatusCode::OK, &urls.join(", "), false)
}

/// The member ID of a `/v2/members/<hex>` path, or etcd's answer when there is none.
fn path_id(path: &str) -> Result<u64, Box<Response<Body>>> {
    let id = path[MEMBERS_PREFIX.len()..].trim_start_matches('/');
    if id.is_empty() {
        return Err(Box::new(super::super::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed\n",
            true,
        )));
    }
    u64::from_str_radix(id, 16).map_err(|_| {
        Box::new(message(
            StatusCode::NOT_FOUND,
            &format!("No such member: {id}"),
        ))
    })
}

/// `{"peerURLs":[..]}` from a JSON body, with etcd's content-type and decoding errors.
async fn peer_urls(
    parts: &http::request::Parts,
    body: Body,
) -> Result<Vec<String>, Box<Response<Body>>> {
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ctype.split(';').next().unwrap_or("");
    if media != "application/json" {
        return Err(Box::new(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Bad Content-Type {ctype}, accept application/json"),
        )));
    }
    let bytes = read_body(body, MEMBER_BODY_BYTES_MAX)
        .await
        .map_err(|e| Box::new(message(StatusCode::BAD_REQUEST, &e)))?;
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(rename = "peerURLs", default)]
        peer_urls: Vec<String>,
    }
    let req: Req = serde_json::from_slice(&bytes)
        .map_err(|e| Box::new(message(StatusCode::BAD_REQUEST, &e.to_string())))?;
    Ok(req.peer_urls)
}

fn membership_error(e: &crate::api::ApiError, id: u64) -> Response<Body> {
    use crate::api::ApiError;
    match e {
        ApiError::Membership(MembershipError::MemberNotFound) => {
            message(StatusCode::NOT_FOUND, &format!("No such member: {id:x}"))
        }
        ApiError::Membership(MembershipError::PeerUrlsExist) => {
            message(StatusCode::CONFLICT, "membership: peerURL exists")
        }
        ApiError::Membership(MembershipError::IdExists) => {
            message(StatusCode::CONFLICT, "membership: ID exists")
        }
        ApiError::InvalidPeerUrls => message(StatusCode::BAD_REQUEST, &e.message()),
        _ => message(StatusCode::INTERNAL_SERVER_ERROR, &e.message()),
    }
}

async fn members(api: &Api, parts: http::request::Parts, body: Body) -> Response<Body> {
    let path = parts.uri.path();
    if matches!(parts.method, Method::POST | Method::DELETE | Method::PUT)
        && !super::auth::has_write_root_access(api, &parts).await
    {
        return super::auth::no_auth();
    }
    match parts.method {
        Method::GET => {
            let rest = path[MEMBERS_PREFIX.len()..].trim_start_matches('/');
            let list = match member_list(api).await {
                Ok(l) => l,
                Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.message()),
            };
            match rest {
                "" => {
                    let items: Vec<String> = list.iter().map(member_json).collect();
                    json(
                        StatusCode::OK,
                        format!("{{\"members\":[{}]}}\n", items.join(",")),
                    )
                }
                "leader" => match api
                    .node
                    .current_leader()
                    .and_then(|l| list.iter().find(|m| m.id == l))
                {
                    Some(m) => json(StatusCode::OK, format!("{}\n", member_json(m))),
                    None => message(StatusCode::SERVICE_UNAVAILABLE, "During election"),
                },
                _ => message(StatusCode::NOT_FOUND, "Not found"),
            }
        }
        Method::POST => {
            let urls = match peer_urls(&parts, body).await {
                Ok(u) => u,
                Err(r) => return *r,
            };
            let req = MemberAddRequest {
                peer_ur_ls: urls,
                is_learner: false,
            };
            match crate::api::cluster::member_add(api, req).await {
                Ok(resp) => match resp.member {
                    Some(m) => json(StatusCode::CREATED, format!("{}\n", member_json(&m))),
                    None => message(StatusCode::INTERNAL_SERVER_ERROR, "member not added"),
                },
                Err(e) => membership_error(&e, 0),
            }
        }
        Method::DELETE => {
            let id = match path_id(path) {
                Ok(id) => id,
                Err(r) => return *r,
            };
            match crate::api::cluster::member_remove(api, id).await {
                Ok(_) => {
                    let mut r = Response::new(Body::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                Err(e) => membership_error(&e, id),
            }
        }
        Method::PUT => {
            let id = match path_id(path) {
                Ok(id) => id,
                Err(r) => return *r,
            };
            let urls = match peer_urls(&parts, body).await {
                Ok(u) => u,
                Err(r) => return *r,
            };
            let req = MemberUpdateRequest {
                id,
                peer_ur_ls: urls,
            };
            match crate::api::cluster::member_update(api, req).await {
                Ok(_) => {
                    let mut r = Response::new(Body::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                Err(e) => membership_error(&e, id),
            }
        }
        _ => method_not_allowed("GET,POST,DELETE,PUT"),
    }
}

async fn stats(api: &Api, method: &Method, path: &str) -> Response<Body> {
    if *method != Method::GET {
        return method_not_allowed("GET");
    }
    let me = api.node.member_id();
    let leader = api.node.current_leader();
    match path {
        "/v2/stats/self" => {
            let state = if leader == Some(me) {
                "StateLeader"
            } else {
                "StateFollower"
            };
            let name = member_list(api)
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|m| m.id == me))
                .map(|m| m.name)
                .unwrap_or_default();
            let mut body = String::from("{\"name\":");
            crate::v2store::push_json_str(&mut body, &name);
            body.push_str(&format!(
                ",\"id\":\"{me:x}\",\"state\":\"{state}\",\"leaderInfo\":{{\"leader\":\"{:x}\"}},\
                 \"recvAppendRequestCnt\":0,\"sendAppendRequestCnt\":0}}\n",
                leader.unwrap_or(0)
            ));
            json(StatusCode::OK, body)
        }
        "/v2/stats/leader" => {
            if leader != Some(me) {
                return message(StatusCode::FORBIDDEN, "not current leader");
            }
            let followers: Vec<String> = member_list(api)
                .await
                .unwrap_or_default()
                .iter()
                .filter(|m| m.id != me)
                .map(|m| {
                    format!(
                        "\"{:x}\":{{\"latency\":{{\"current\":0,\"average\":0,\"standardDeviation\":0,\
                         \"minimum\":0,\"maximum\":0}},\"counts\":{{\"fail\":0,\"success\":0}}}}",
                        m.id
                    )
                })
                .collect();
            json(
                StatusCode::OK,
                format!(
                    "{{\"leader\":\"{me:x}\",\"followers\":{{{}}}}}\n",
                    followers.join(",")
                ),
            )
        }
        _ => json(StatusCode::OK, format!("{}\n", api.v2.stats_json())),
    }
}
