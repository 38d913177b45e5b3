//! The clients' stubs, compiled from `proto/` (a link to the workspace's) by
//! protox, so that a fresh machine needs no protoc. Clients only.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "docverify/auth/v1/auth.proto",
    "docverify/document/v1/document.proto",
    "docverify/audit/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true);
    compiler.open_files(PROTOS)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
