//! `grpc.health.v1.Health`, which etcd registers on its client port. As etcd's gRPC health
//! server, it answers SERVING while the member runs (it does not check for a leader: that is
//! the HTTP `/health` endpoint's job), and NOT_SERVING once the member can no longer serve: its
//! raft core stopped on a fatal error (a failed WAL fsync) or it is shutting down. An unknown
//! service name gets NotFound as in grpc-go's health server.
//!
//! Invariant: the status reported is the probe's answer at the time of the call (a watch
//! stream sends it again whenever it changes).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::stream::ChannelStream;
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::Health;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::raft::node::RaftNode;

/// Whether the member can serve.
pub trait ServingProbe: Send + Sync {
    fn serving(&self) -> bool;
}

impl ServingProbe for RaftNode {
    fn serving(&self) -> bool {
        self.is_serving()
    }
}

/// How often a health watch stream looks at the member's status.
const WATCH_POLL: Duration = Duration::from_millis(500);

/// The health service.
#[derive(Clone)]
pub struct HealthService {
    probe: Arc<dyn ServingProbe>,
}

impl HealthService {
    pub fn new(probe: Arc<dyn ServingProbe>) -> Self {
        HealthService { probe }
    }
}

fn status_of(service: &str, probe: &dyn ServingProbe) -> Result<HealthCheckResponse, Status> {
    if !service.is_empty() {
        return Err(Status::not_found("unknown service"));
    }
    let status = if probe.serving() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    Ok(HealthCheckResponse {
        status: status as i32,
    })
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        status_of(&request.get_ref().service, self.probe.as_ref()).map(Response::new)
    }

    type WatchStream = ChannelStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let probe = self.probe.clone();
        let (tx, rx) = mpsc::channel(1);
        // One message now and one whenever the status changes; the task ends when the client
        // goes away (the receiver drops).
        tokio::spawn(async move {
            let current = |probe: &dyn ServingProbe| {
                status_of(&service, probe).unwrap_or(HealthCheckResponse {
                    status: ServingStatus::ServiceUnknown as i32,
                })
            };
            let mut last = current(probe.as_ref());
            if tx.send(Ok(last)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
                let now = current(probe.as_ref());
                if now != last {
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        Ok(Response::new(ChannelStream::new(rx)))
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(AtomicBool);

    impl ServingProbe for Flag {
        fn serving(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// Bug guarded against: the service answered SERVING whatever happened to the member, so
    /// a member whose raft core had stopped (failed fsync) looked alive to load balancers.
    #[test]
    fn a_member_that_cannot_serve_is_not_serving() {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let health = HealthService::new(flag.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let check = |health: &HealthService| {
            rt.block_on(health.check(Request::new(HealthCheckRequest::default())))
                .unwrap()
                .into_inner()
                .status
        };
        assert_eq!(check(&health), ServingStatus::Serving as i32);
        flag.0.store(false, Ordering::Relaxed);
        assert_eq!(check(&health), ServingStatus::NotServing as i32);
        let unknown = rt.block_on(health.check(Request::new(HealthCheckRequest {
            service: "nope".into(),
        })));
        assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    }
}
