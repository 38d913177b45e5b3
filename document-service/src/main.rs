//! The document-service binary: `serve` (the default) and `migrate`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "document-service",
    version,
    about = "docverify document-service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: document_service::Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match tokio::net::TcpListener::bind(cli.config.listen_addr).await {
            Ok(listener) => {
                document_service::serve(cli.config, listener, shared::server::shutdown_signal())
                    .await
            }
            Err(e) => Err(shared::Error::internal(format!(
                "DOCUMENT_LISTEN_ADDR {}: {e}",
                cli.config.listen_addr
            ))),
        },
        Command::Migrate => document_service::migrate(&cli.config).await.map(|_| ()),
    };
    shared::server::exit(result)
}
