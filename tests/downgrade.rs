//! Maintenance.Downgrade over raw gRPC, compared with etcd 3.5 (etcdctl 3.5 has no
//! `downgrade` command): every action with a spread of target versions gets the same answer
//! (code and text, or the reported cluster version) from both servers, except ENABLE of the
//! one valid target, which etcd starts and oxetcd refuses (it cannot run as etcd 3.4). With
//! auth on, etcd 3.5.1 checks no permission for it (any caller, even without a token, gets the
//! same answers), and neither does oxetcd.
//!
//! Invariant: servers are owned by `Server` (killed on drop).
#![cfg(not(madsim))]

mod common;

use std::ffi::OsString;

use common::{etcdctl, require_etcd_tools, CtlVersion, Server, ServerKind};
use oxetcd::proto::etcdserverpb::auth_client::AuthClient;
use oxetcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd::proto::etcdserverpb::{AuthenticateRequest, DowngradeRequest};

const VALIDATE: i32 = 0;
const ENABLE: i32 = 1;
const CANCEL: i32 = 2;

/// What one call answered: the reported version, or the status code and message.
type Answer = Result<String, (tonic::Code, String)>;

async fn call(endpoint: &str, token: Option<&str>, action: i32, version: &str) -> Answer {
    let mut client = MaintenanceClient::connect(format!("http://{endpoint}"))
        .await
        .unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    let mut request = tonic::Request::new(DowngradeRequest {
        action,
        version: version.to_string(),
    });
    if let Some(token) = token {
        let value = token.parse().expect("token metadata");
        request.metadata_mut().insert("token", value);
    }
    match client.downgrade(request).await {
        Ok(resp) => {
            let resp = resp.into_inner();
            assert!(resp.header.is_some(), "no header");
            Ok(resp.version)
        }
        Err(status) => Err((status.code(), status.message().to_string())),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// The calls of the comparison: (action, target version).
const CASES: &[(i32, &str)] = &[
    (VALIDATE, "3.4"),
    (VALIDATE, "3.4.0"),
    (VALIDATE, "3.4.27-rc.1+build"),
    (VALIDATE, "3.5"),
    (VALIDATE, "3.6.0"),
    (VALIDATE, "3.3"),
    (VALIDATE, "2.4"),
    (VALIDATE, "v3.4"),
    (VALIDATE, "abc"),
    (VALIDATE, ""),
    (ENABLE, "3.5"),
    (ENABLE, "3.3.0"),
    (ENABLE, "junk"),
    (ENABLE, ""),
    (CANCEL, ""),
    (CANCEL, "3.4"),
    (7, "3.4"),
];

fn answers(kind: ServerKind) -> Vec<Answer> {
    let server = Server::start_with(kind, "downgrade", &[]).unwrap_or_else(|e| panic!("{e}"));
    runtime().block_on(async {
        let mut out = Vec::new();
        for (action, version) in CASES {
            out.push(call(&server.endpoint, None, *action, version).await);
        }
        out
    })
}

#[test]
fn every_action_answers_like_etcd() {
    if require_etcd_tools("every_action_answers_like_etcd").is_none() {
        return;
    }
    let ours = answers(ServerKind::Oxetcd);
    let theirs = answers(ServerKind::Etcd35);
    for (i, case) in CASES.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "action {} version {:?}", case.0, case.1);
    }
    assert_eq!(ours[0], Ok("3.5.0".to_string()));
    assert_eq!(
        ours[3],
        Err((
            tonic::Code::InvalidArgument,
            "etcdserver: invalid downgrade target version".to_string()
        ))
    );
    // The one place oxetcd differs on purpose: etcd would start a downgrade job to 3.4.
    let server =
        Server::start_with(ServerKind::Oxetcd, "enable", &[]).unwrap_or_else(|e| panic!("{e}"));
    runtime().block_on(async {
        let (code, text) = call(&server.endpoint, None, ENABLE, "3.4")
            .await
            .expect_err("ENABLE 3.4 must be refused");
        assert_eq!(code, tonic::Code::Unimplemented);
        assert!(text.contains("not supported"), "{text}");
        // Nothing was started: there is still no job to cancel.
        assert_eq!(
            call(&server.endpoint, None, CANCEL, "").await,
            Err((
                tonic::Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job".to_string()
            ))
        );
    });
}

fn ctl(server: &Server, args: &[&str]) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let out = etcdctl(CtlVersion::V35, &server.endpoint, &args, b"");
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr_text());
}

/// With auth on: no token, a non-root user's token and root's token.
fn auth_answers(kind: ServerKind) -> Vec<Answer> {
    let server = Server::start_with(kind, "auth", &[]).unwrap_or_else(|e| panic!("{e}"));
    ctl(&server, &["user", "add", "root:rootpw"]);
    ctl(&server, &["user", "add", "alice:alicepw"]);
    ctl(&server, &["auth", "enable"]);
    runtime().block_on(async {
        let token = |name: &'static str, password: &'static str| {
            let endpoint = server.endpoint.clone();
            async move {
                let mut auth = AuthClient::connect(format!("http://{endpoint}"))
                    .await
                    .unwrap_or_else(|e| panic!("connect: {e}"));
                auth.authenticate(AuthenticateRequest {
                    name: name.into(),
                    password: password.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("authenticate {name}: {e}"))
                .into_inner()
                .token
            }
        };
        let alice = token("alice", "alicepw").await;
        let root = token("root", "rootpw").await;
        vec![
            call(&server.endpoint, None, VALIDATE, "3.4").await,
            call(&server.endpoint, Some(&alice), VALIDATE, "3.4").await,
            call(&server.endpoint, Some(&root), VALIDATE, "3.4").await,
            call(&server.endpoint, Some(&root), CANCEL, "").await,
        ]
    })
}

#[test]
fn auth_does_not_guard_downgrade_like_etcd() {
    if require_etcd_tools("auth_does_not_guard_downgrade_like_etcd").is_none() {
        return;
    }
    let ours = auth_answers(ServerKind::Oxetcd);
    let theirs = auth_answers(ServerKind::Etcd35);
    assert_eq!(ours, theirs);
    for answer in &ours[..3] {
        assert_eq!(answer, &Ok("3.5.0".to_string()));
    }
}
