//! The auth-service binary: `serve` (the default), `migrate`, `create-admin`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "auth-service", version, about = "docverify auth-service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: auth_service::Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Create an admin account, or grant the admin role to an existing one.
    CreateAdmin {
        #[arg(long, env = "ADMIN_EMAIL")]
        email: String,
        #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match tokio::net::TcpListener::bind(cli.config.listen_addr).await {
            Ok(listener) => {
                auth_service::serve(cli.config, listener, shared::server::shutdown_signal()).await
            }
            Err(e) => Err(shared::Error::internal(format!(
                "AUTH_LISTEN_ADDR {}: {e}",
                cli.config.listen_addr
            ))),
        },
        Command::Migrate => auth_service::migrate(&cli.config).await.map(|_| ()),
        Command::CreateAdmin { email, password } => {
            auth_service::create_admin(&cli.config, &email, &password).await
        }
    };
    shared::server::exit(result)
}
