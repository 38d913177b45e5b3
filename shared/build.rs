//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no protoc.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "docverify/auth/v1/auth.proto",
    "docverify/document/v1/document.proto",
    "docverify/audit/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;

    // compile_fds writes no descriptor set of its own: reflection needs ours.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("docverify_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // Undecodable requests are INVALID_ARGUMENT (see src/codec.rs).
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
