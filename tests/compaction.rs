//! Compaction carried out in batches (`--experimental-compaction-batch-limit`), against real
//! etcd 3.5 on the same script.
//!
//! The script writes a few hundred keys twice, deletes some, compacts in the middle of that
//! history with `physical: true` while more writes go on, then reads and watches around the
//! compaction point. With a small batch limit the compaction takes many batches; every answer
//! must be what etcd gives, and the records dropped (`etcd_debugging_mvcc_db_compaction_keys_total`)
//! must be the number etcd's backend drops. The member must also log etcd's "finished scheduled
//! compaction" with the point.
#![cfg(not(madsim))]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{require_etcd_tools, Server, ServerKind};
use etcd_client::{Client, CompactionOptions, EventType, GetOptions, WatchOptions, WatchResponse};

const KEYS: usize = 120;
const BATCH_LIMIT: &str = "7";

fn key(i: usize) -> String {
    format!("/registry/pods/k{i:03}")
}

/// The value of one unlabelled series in a Prometheus text page.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn scrape(server: &Server) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("{}/metrics", server.client_url),
        ])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn events_text(out: &mut String, resp: &WatchResponse) {
    for e in resp.events() {
        let kv = e.kv().expect("an event has its kv");
        let prev = e
            .prev_kv()
            .map(|p| format!("{}@{}", p.value_str().unwrap_or("?"), p.mod_revision()));
        let _ = write!(
            out,
            " {}:{}@{} prev={prev:?};",
            if e.event_type() == EventType::Put {
                "PUT"
            } else {
                "DEL"
            },
            kv.key_str().unwrap_or("?"),
            kv.mod_revision()
        );
    }
}

/// Key, value, create revision, mod revision, version.
type KvFields = (Vec<u8>, Vec<u8>, i64, i64, i64);

fn kv_list(kvs: &[etcd_client::KeyValue]) -> Vec<KvFields> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}

/// An outcome as a client sees it: `ok`, or the gRPC code and message.
fn outcome<T>(r: Result<T, etcd_client::Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error: {e}"),
    }
}

/// Runs the script; returns its transcript and the compaction point.
async fn script(endpoint: &str) -> (Vec<String>, i64) {
    let mut c = Client::connect([endpoint], None).await.expect("connect");
    let mut out = Vec::new();
    for round in 0..2 {
        for i in 0..KEYS {
            c.put(key(i), format!("v{round}"), None).await.expect("put");
        }
    }
    for i in (0..KEYS).step_by(3) {
        c.delete(key(i), None).await.expect("delete");
    }
    // A key deleted exactly at the compaction point, and one rewritten there.
    c.put("/registry/pods/gone", "x", None).await.expect("put");
    c.put("/registry/pods/again", "a", None).await.expect("put");
    c.put("/registry/pods/again", "b", None).await.expect("put");
    let at = c
        .delete("/registry/pods/gone", None)
        .await
        .expect("delete")
        .header()
        .expect("header")
        .revision();
    // Writes after the point, some on keys with history below it.
    for i in 0..KEYS / 4 {
        c.put(key(i), "v2", None).await.expect("put");
    }
    let before = c
        .get(
            "/registry/",
            Some(GetOptions::new().with_prefix().with_revision(at)),
        )
        .await
        .expect("get at the point");
    let compacted = c
        .compact(at, Some(CompactionOptions::new().with_physical()))
        .await;
    out.push(format!(
        "compact physical: {}",
        outcome(compacted, |_| "ok".into())
    ));
    let below = c
        .get(
            "/registry/",
            Some(GetOptions::new().with_prefix().with_revision(at - 1)),
        )
        .await;
    out.push(format!(
        "read below: {}",
        outcome(below, |r| r.count().to_string())
    ));
    let after = c
        .get(
            "/registry/",
            Some(GetOptions::new().with_prefix().with_revision(at)),
        )
        .await
        .expect("get at the point after compaction");
    out.push(format!(
        "read at the point: count {} same as before {}",
        after.count(),
        kv_list(after.kvs()) == kv_list(before.kvs())
    ));
    let now = c
        .get(
            "/registry/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    out.push(format!("count now: {}", now.count()));
    // Replay from the point, with prev_kv: what is below the point is gone from it.
    let last = now.header().expect("header").revision();
    let mut stream = c
        .watch(
            "/registry/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_start_revision(at),
            ),
        )
        .await
        .expect("watch");
    let mut replay = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_up_to = 0;
    while seen_up_to < last {
        assert!(
            Instant::now() < deadline,
            "replay stalled at {seen_up_to} of {last}: {replay}"
        );
        let Ok(Some(resp)) = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("replay answers in time")
        else {
            panic!("watch stream ended: {replay}");
        };
        if let Some(e) = resp.events().last() {
            seen_up_to = e.kv().map_or(seen_up_to, |kv| kv.mod_revision());
        }
        events_text(&mut replay, &resp);
    }
    out.push(format!("replay from the point:{replay}"));
    let stale = c.compact(at, None).await;
    out.push(format!(
        "compact again: {}",
        outcome(stale, |_| "ok".into())
    ));
    (out, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_in_small_batches_answers_and_frees_like_etcd_35() {
    if require_etcd_tools("a_compaction_in_small_batches_answers_and_frees_like_etcd_35").is_none()
    {
        return;
    }
    let args = ["--experimental-compaction-batch-limit", BATCH_LIMIT];
    let etcd = Server::start_with(ServerKind::Etcd35, "compaction", &args)
        .unwrap_or_else(|e| panic!("{e}"));
    let ours = Server::start_with(ServerKind::Oxetcd, "compaction", &args)
        .unwrap_or_else(|e| panic!("{e}"));
    let (reference, etcd_at) = script(&etcd.endpoint).await;
    let (candidate, ours_at) = script(&ours.endpoint).await;
    assert_eq!(etcd_at, ours_at, "the compaction point");
    assert!(
        reference[0].ends_with("ok") && reference[1].contains("compacted"),
        "reference run: {reference:#?}"
    );
    for (r, c) in reference.iter().zip(&candidate) {
        assert_eq!(c, r, "oxetcd vs etcd 3.5");
    }
    assert_eq!(candidate.len(), reference.len());

    // The physical compaction was done when it answered: the counters are final.
    let (etcd_text, ours_text) = (scrape(&etcd), scrape(&ours));
    let dropped = "etcd_debugging_mvcc_db_compaction_keys_total";
    let theirs = metric(&etcd_text, dropped);
    assert!(theirs.is_some_and(|n| n > KEYS as f64), "etcd: {theirs:?}");
    assert_eq!(metric(&ours_text, dropped), theirs, "records dropped");
    let batches = metric(
        &ours_text,
        "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count",
    )
    .unwrap_or(0.0);
    let limit: f64 = BATCH_LIMIT.parse().expect("a number");
    // Each batch does at most `limit` units (plus the one key that spends the last of it):
    // the keys looked at and the records dropped need at least this many batches.
    let units = KEYS as f64 + theirs.unwrap_or(0.0);
    assert!(
        batches >= (units / (limit + 16.0)).floor(),
        "{batches} batches for {units} units"
    );
    assert_eq!(
        metric(
            &ours_text,
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count"
        ),
        Some(1.0)
    );
    let log = ours.log_tail(usize::MAX);
    let finished = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == "finished scheduled compaction");
    let finished = finished.unwrap_or_else(|| panic!("no finished line:\n{}", ours.log_tail(40)));
    assert_eq!(finished["compact-revision"], ours_at, "{finished}");
}
