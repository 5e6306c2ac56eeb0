//! Generates the gRPC stubs from `proto/` with a vendored protoc, so that a fresh machine builds
//! with nothing but cargo. madsim-tonic-build writes both the real and the simulated stubs.
//!
//! It also writes the proto3-JSON serde impls of the client API's messages (pbjson-build, from
//! a descriptor set protoc writes here) for the JSON gateway: original proto field names on
//! output (`create_revision`, as etcd's gateway writes them), both original and lowerCamel
//! names accepted on input, unknown fields ignored, defaults left out, 64-bit integers as
//! strings, enums as names.
//!
//! `mvccpb.KeyValue.value` is generated as `bytes::Bytes`: the store keeps each value once and
//! every read, event and watch response that carries it shares those bytes.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", &protoc) };
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
    tonic_build::configure()
        .bytes([".mvccpb.KeyValue.value"])
        .compile_protos(&protos, &["proto"])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("gateway_descriptors.bin");
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", descriptors.display()))
        .arg("-Iproto")
        .args(&protos[..5])
        .status()?;
    if !status.success() {
        return Err(format!("protoc (descriptor set) failed: {status}").into());
    }
    let bytes = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3electionpb",
            ".v3lockpb",
        ])?;
    Ok(())
}
