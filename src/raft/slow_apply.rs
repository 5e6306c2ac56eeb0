//! `--experimental-warning-apply-duration`: the warning etcd logs when applying one request
//! took longer than the threshold (`apply request took too long`, with `took`,
//! `expected-duration`, `prefix`, `request` and the error if any).
//!
//! The request is described in etcd's protobuf text style with values left out (etcd logs a
//! put's `value_size`, never the value); auth commands are named by kind only, so no password
//! hash or token reaches the log.
//!
//! Invariant: describing a request reads only sizes, keys and numbers; nothing here blocks.

use std::time::Duration;

use prost::Message as _;

use crate::apply::{Applied, Command, Outcome, RequestHeader};
use crate::config::{format_duration, GoDuration};

/// etcd's default threshold (100 ms).
pub const WARNING_APPLY_DURATION_DEFAULT: Duration = Duration::from_millis(100);

/// One apply that took too long, recorded under the state lock and logged after it.
pub struct SlowApply {
    pub took: Duration,
    pub request: String,
    /// etcd's `size:N` (the encoded response), empty on error.
    pub response: String,
    pub error: Option<String>,
}

impl SlowApply {
    /// Records `cmd` if `took` exceeds `threshold`.
    pub fn check(
        took: Duration,
        threshold: Duration,
        header: &RequestHeader,
        cmd: &Command,
        applied: &Applied,
    ) -> Option<SlowApply> {
        (took > threshold).then(|| SlowApply {
            took,
            request: format!("header:<ID:{} > {}", header.id, describe(cmd)),
            response: match &applied.result {
                Ok(outcome) => response_size(outcome),
                Err(_) => String::new(),
            },
            error: applied
                .result
                .as_ref()
                .err()
                .map(|e| e.etcd_message().to_string()),
        })
    }

    /// Logs etcd's warning line.
    pub fn log(&self, threshold: Duration) {
        let go = |d: Duration| {
            format_duration(GoDuration {
                nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            })
        };
        match &self.error {
            Some(error) => tracing::warn!(
                took = %go(self.took),
                expected_duration = %go(threshold),
                prefix = "",
                request = %self.request,
                response = %self.response,
                error = %error,
                "apply request took too long"
            ),
            None => tracing::warn!(
                took = %go(self.took),
                expected_duration = %go(threshold),
                prefix = "",
                request = %self.request,
                response = %self.response,
                "apply request took too long"
            ),
        }
    }
}

/// `size:N`: the response's encoded size (its header carries only the revision here, as in
/// etcd's apply).
fn response_size(outcome: &Outcome) -> String {
    let size = match outcome {
        Outcome::Put(r) => r.encoded_len(),
        Outcome::DeleteRange(r) => r.encoded_len(),
        Outcome::Txn(r) => r.encoded_len(),
        Outcome::Compact(r) => r.encoded_len(),
        Outcome::LeaseGrant(r) => r.encoded_len(),
        Outcome::LeaseRevoke(r) => r.encoded_len(),
        Outcome::Alarm(r) => r.encoded_len(),
        Outcome::Auth { .. } | Outcome::V2(_) => return String::new(),
    };
    format!("size:{size}")
}

fn quoted(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// `put:<key:"k" value_size:3 >` and the like.
pub fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Put(p) => {
            let lease = if p.lease != 0 {
                format!(" lease:{}", p.lease)
            } else {
                String::new()
            };
            format!(
                "put:<key:{} value_size:{}{lease} >",
                quoted(&p.key),
                p.value.len()
            )
        }
        Command::DeleteRange(d) if d.range_end.is_empty() => {
            format!("delete_range:<key:{} > ", quoted(&d.key))
        }
        Command::DeleteRange(d) => format!(
            "delete_range:<key:{} range_end:{} > ",
            quoted(&d.key),
            quoted(&d.range_end)
        ),
        Command::Txn(t) => format!(
            "txn:<compare_size:{} success_size:{} failure_size:{} >",
            t.compare.len(),
            t.success.len(),
            t.failure.len()
        ),
        Command::Compact(c) => format!("compaction:<revision:{} >", c.revision),
        Command::LeaseGrant { id, ttl } => format!("lease_grant:<TTL:{ttl} ID:{id} >"),
        Command::LeaseRevoke { id } | Command::LeaseExpire { id, .. } => {
            format!("lease_revoke:<ID:{id} >")
        }
        Command::Alarm {
            action,
            member_id,
            alarm,
        } => format!("alarm:<action:{action} memberID:{member_id} alarm:{alarm} >"),
        Command::Auth(_) => "auth:<>".to_string(),
        // A v2 store write (etcd applies these outside the v3 apply it times).
        Command::V2(_) => "v2:<>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::PutRequest;

    #[test]
    fn put_is_described_without_its_value() {
        let cmd = Command::Put(PutRequest {
            key: b"foo".to_vec(),
            value: b"secret".to_vec(),
            lease: 7,
            ..Default::default()
        });
        let text = describe(&cmd);
        assert_eq!(text, r#"put:<key:"foo" value_size:6 lease:7 >"#);
        assert!(!text.contains("secret"));
    }

    #[test]
    fn only_slower_applies_are_recorded() {
        let cmd = Command::LeaseRevoke { id: 5 };
        let applied = Applied {
            result: Err(crate::mvcc::KvError::EmptyKey),
            events: Vec::new(),
            revision: 1,
        };
        let ms = Duration::from_millis;
        let header = RequestHeader {
            id: 9,
            user: String::new(),
            auth_revision: 0,
        };
        assert!(SlowApply::check(ms(100), ms(100), &header, &cmd, &applied).is_none());
        let slow = SlowApply::check(ms(101), ms(100), &header, &cmd, &applied).unwrap();
        assert_eq!(slow.request, "header:<ID:9 > lease_revoke:<ID:5 >");
        assert_eq!(slow.response, "");
        assert!(slow.error.is_some());
    }
}
