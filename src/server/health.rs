//! `grpc.health.v1.Health`, which etcd registers on its client port. The server is SERVING
//! while it runs; an unknown service name gets NotFound as in grpc-go's health server.

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::stream::ChannelStream;
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::Health;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};

/// The health service.
#[derive(Debug, Default)]
pub struct HealthService;

fn status_of(service: &str) -> Result<HealthCheckResponse, Status> {
    if service.is_empty() {
        Ok(HealthCheckResponse { status: ServingStatus::Serving as i32 })
    } else {
        Err(Status::not_found("unknown service"))
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        status_of(&request.get_ref().service).map(Response::new)
    }

    type WatchStream = ChannelStream<Result<HealthCheckResponse, Status>>;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let first = status_of(&request.get_ref().service).unwrap_or(HealthCheckResponse {
            status: ServingStatus::ServiceUnknown as i32,
        });
        let (tx, rx) = mpsc::channel(1);
        // The status never changes while the process runs, so the stream sends one message and
        // then stays open until the client goes away (the task ends when the receiver drops).
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_ok() {
                tx.closed().await;
            }
        });
        Ok(Response::new(ChannelStream::new(rx)))
    }
}
