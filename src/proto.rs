//! Generated protobuf and gRPC types (see `proto/`). Owns nothing else: conversions live with
//! the code that needs them.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
pub mod oxraftpb {
    tonic::include_proto!("oxraftpb");
}
