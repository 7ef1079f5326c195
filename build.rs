//! Compiles `proto/` in pure Rust (protox) and generates the tonic services, so a fresh machine
//! needs no system `protoc`. The descriptor set is kept in `OUT_DIR` for server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/keyward/v1/api_key.proto",
    "proto/keyward/v1/verify.proto",
    "proto/keyward/v1/manage.proto",
    // Envoy's ext_authz service, vendored (subset): see proto/envoy/README.md.
    "proto/envoy/service/auth/v3/external_auth.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("keyward_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, but an undecodable request is INVALID_ARGUMENT rather than INTERNAL.
        .codec_path("crate::grpc::codec::KeywardCodec")
        // These carry a raw key; their Debug is written by hand in src/proto.rs to redact it.
        // google.rpc.Status is tonic-types' (the same message, already generated).
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Envoy's header and context maps are small: a B-tree (one node, no hashing) decodes
        // them with fewer allocations than a HashMap.
        .btree_map(".envoy")
        .skip_debug([
            ".keyward.v1.VerifyRequest",
            ".keyward.v1.ReportLeakedKeysRequest",
            // Envoy's request headers carry the raw key.
            ".envoy.service.auth.v3.AttributeContext.HttpRequest",
            ".envoy.config.core.v3.HeaderValue",
            ".keyward.v1.CreateKeyResponse",
            ".keyward.v1.RotateKeyResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
