//! The auth-service binary; everything lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auth_service::cli::run().await
}
