//! The leader's periodic corruption check (`--experimental-corrupt-check-time`): every
//! interval, `raft::corrupt::leader_check` compares the members' hashes; each member found with
//! other data gets the CORRUPT alarm, proposed through the log, after which every member
//! refuses writes with "etcdserver: corrupt cluster" until the alarm is disarmed.
//!
//! Invariant: the loop ends when `stop` fires; a check never runs on a member that does not
//! lead.

use std::sync::Arc;
use std::time::Duration;

use crate::apply::{Command, Envelope, RequestHeader};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::AlarmType;
use crate::raft::corrupt::leader_check;
use crate::raft::node::RaftNode;

/// Runs the check every `interval` until `stop` fires.
pub async fn run(
    node: Arc<RaftNode>,
    interval: Duration,
    timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(
        local_member_id = %format!("{:x}", node.member_id()),
        interval = %format!("{interval:?}"),
        "enabled corruption checking"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        for member_id in leader_check(&node, timeout).await {
            let alarm = Command::Alarm {
                action: AlarmAction::Activate as i32,
                member_id,
                alarm: AlarmType::Corrupt as i32,
            };
            let header = RequestHeader {
                id: node.next_request_id(),
                user: String::new(),
                auth_revision: 0,
            };
            if let Err(e) = node.propose(Envelope::new(header, alarm)).await {
                tracing::warn!(error = ?e, "could not raise the CORRUPT alarm");
            }
        }
    }
}
