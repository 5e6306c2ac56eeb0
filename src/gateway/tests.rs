//! The gateway's encoding against what etcd 3.5's gateway was observed to write and accept
//! (reference: clients.md §0): original field names, defaults left out, 64-bit integers as
//! strings, both name styles and both number forms on input.

use super::*;
use crate::proto::etcdserverpb::{
    compare, LeaseKeepAliveResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

fn header() -> ResponseHeader {
    ResponseHeader {
        cluster_id: 324952591200643719,
        member_id: 3319814642761637952,
        revision: 2,
        raft_term: 2,
    }
}

#[test]
fn responses_are_written_as_etcds_gateway_writes_them() {
    let resp = RangeResponse {
        header: Some(header()),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec().into(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    // Byte for byte what etcd 3.5.1 answered for the same range.
    assert_eq!(
        serde_json::to_string(&resp).unwrap(),
        r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
    );
    // A failed txn is only its header: Patroni reads a present `succeeded` as success.
    let failed = TxnResponse {
        header: Some(header()),
        succeeded: false,
        responses: vec![],
    };
    assert_eq!(
        serde_json::to_string(&failed).unwrap(),
        r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"}}"#
    );
    // An unknown lease's keep-alive has no TTL (a "0" string would read as alive).
    let ka = LeaseKeepAliveResponse {
        header: None,
        id: 123,
        ttl: 0,
    };
    assert_eq!(serde_json::to_string(&ka).unwrap(), r#"{"ID":"123"}"#);
}

#[test]
fn requests_accept_both_name_styles_and_number_forms() {
    let a: RangeRequest = serde_json::from_str(
        r#"{"key":"Zm9v","range_end":"Zm9w","limit":"5","sort_order":"DESCEND"}"#,
    )
    .unwrap();
    let b: RangeRequest = serde_json::from_str(
        r#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":5,"sortOrder":2,"bogus":[1]}"#,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.limit, 5);
    assert_eq!(a.range_end, b"fop");
    // etcd3gw sends lease IDs above 2^53 as JSON numbers: parsed exactly.
    let ka: LeaseKeepAliveRequest = serde_json::from_str(r#"{"ID": 4390625070491679029}"#).unwrap();
    assert_eq!(ka.id, 4390625070491679029);
    // Patroni's create-if-absent: no `result` means EQUAL.
    let txn: TxnRequest = serde_json::from_str(
        r#"{"compare":[{"target":"CREATE","create_revision":0,"key":"Zm9v"}],"success":[{"request_put":{"key":"Zm9v","value":""}}]}"#,
    )
    .unwrap();
    assert_eq!(txn.compare[0].result, compare::CompareResult::Equal as i32);
    assert_eq!(txn.compare[0].target, compare::CompareTarget::Create as i32);
    assert_eq!(
        txn.compare[0].target_union,
        Some(compare::TargetUnion::CreateRevision(0))
    );
    assert_eq!(txn.success.len(), 1);
}

#[test]
fn bad_bodies_do_not_decode() {
    for bad in [
        r#"{"key":"#,
        r#"{"key":5}"#,
        r#"{"key":"!!!"}"#,
        "[1]",
        r#"{"limit":"x"}"#,
    ] {
        assert!(serde_json::from_str::<RangeRequest>(bad).is_err(), "{bad}");
    }
}

use crate::proto::etcdserverpb::LeaseKeepAliveRequest;

#[test]
fn routes_cover_etcds_paths_and_aliases() {
    assert_eq!(route("/v3/kv/range"), Some(Route::Range));
    assert_eq!(route("/v3beta/kv/range"), Some(Route::Range));
    assert_eq!(
        route("/v3/kv/lease/timetolive"),
        Some(Route::LeaseTimeToLive)
    );
    assert_eq!(route("/v3/lease/timetolive"), Some(Route::LeaseTimeToLive));
    assert_eq!(route("/v3/kv/lease/revoke"), Some(Route::LeaseRevoke));
    assert_eq!(route("/v3/maintenance/hashkv"), None);
    assert_eq!(route("/v3/lock/lock"), Some(Route::Lock));
    assert_eq!(route("/v3/kv/nothing"), None);
    assert_eq!(route("/v3alpha/kv/range"), None);
    assert!(claims("/v3/x") && claims("/v3beta/x") && !claims("/v3alpha/x"));
}

#[test]
fn errors_are_written_as_grpc_gateway_v1_writes_them() {
    assert_eq!(
        error_json(3, "etcdserver: key is not provided"),
        r#"{"error":"etcdserver: key is not provided","code":3,"message":"etcdserver: key is not provided"}"#
    );
    assert_eq!(
        http_status(Code::FailedPrecondition),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
    assert_eq!(
        http_status(Code::Unknown),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        http_status(Code::ResourceExhausted),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn decoder_texts_clients_read_are_gos() {
    let text = |body: &str| go_text(&serde_json::from_str::<RangeRequest>(body).unwrap_err());
    assert_eq!(text(r#"{"key":"#), "unexpected EOF");
    assert_eq!(
        text(r#"{"key":"!!!"}"#),
        "illegal base64 data at input byte 0"
    );
    assert_eq!(
        text(r#"{"key":"Zm9v=="}"#),
        "illegal base64 data at input byte 4"
    );
}
