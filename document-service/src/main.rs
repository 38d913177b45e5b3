//! The document-service binary: `serve` (the default), `migrate`,
//! `healthcheck`.

use clap::{Parser, Subcommand};
use shared::config::ServerConfig;

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
    #[command(flatten)]
    server: ServerConfig,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Exit 0 when the running service reports SERVING, 1 otherwise
    /// (for container health checks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    shared::telemetry::init(cli.server.log_format);
    cli.config.server = cli.server.clone();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => document_service::migrate(&cli.config).await.map(|_| ()),
        Command::Healthcheck => {
            return shared::server::healthcheck_exit(cli.config.listen_addr, &cli.server).await;
        }
    };
    shared::server::exit(result)
}

async fn serve(config: document_service::Config) -> shared::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| {
            shared::Error::internal(format!("DOCUMENT_LISTEN_ADDR {}: {e}", config.listen_addr))
        })?;
    shared::server::spawn_metrics(&config.server).await?;
    document_service::serve(config, listener, shared::server::shutdown_signal()).await
}
