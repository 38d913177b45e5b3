//! The command line of the auth-service binary: settings (each also an
//! environment variable) and subcommands.

use clap::{Parser, Subcommand};
use shared::config::ServerConfig;

#[derive(Debug, Parser)]
#[command(name = "auth-service", version, about = "docverify auth-service")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: crate::Config,
    #[command(flatten)]
    server: ServerConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Create an admin account (or, with --promote-existing, grant the
    /// admin role to an existing one).
    CreateAdmin {
        #[arg(long, env = "ADMIN_EMAIL")]
        email: String,
        #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Grant the admin role to an existing account with this email (its
        /// own password stays); without it, an existing account is refused.
        #[arg(long)]
        promote_existing: bool,
    },
    /// Exit 0 when the running service reports SERVING, 1 otherwise
    /// (for container health checks).
    Healthcheck,
}

/// Parses the command line and runs the chosen subcommand.
pub async fn run() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Err(e) = shared::telemetry::init(cli.server.log_format) {
        return shared::server::exit(Err(e));
    }
    cli.config.server = cli.server.clone();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => crate::migrate(&cli.config).await.map(|_| ()),
        Command::CreateAdmin {
            email,
            password,
            promote_existing,
        } => crate::create_admin(&cli.config, &email, &password, promote_existing).await,
        Command::Healthcheck => {
            return shared::server::healthcheck_exit(cli.config.listen_addr, &cli.server).await;
        }
    };
    shared::server::exit(result)
}

async fn serve(config: crate::Config) -> shared::Result<()> {
    let listener = shared::server::bind(config.listen_addr, "AUTH_LISTEN_ADDR").await?;
    shared::server::spawn_metrics(&config.server).await?;
    crate::serve(config, listener, shared::server::shutdown_signal()).await
}
