//! The document-service binary; everything lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    document_service::cli::run().await
}
