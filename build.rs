//! Generates the gRPC stubs from `proto/` with a vendored protoc, so that a fresh machine builds
//! with nothing but cargo. madsim-tonic-build writes both the real and the simulated stubs.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = [
        "proto/kv.proto",
        "proto/auth.proto",
        "proto/rpc.proto",
        "proto/election.proto",
        "proto/lock.proto",
        "proto/health.proto",
        "proto/raft.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
