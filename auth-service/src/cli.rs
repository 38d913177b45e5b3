//! The command line of the auth-service binary: the shared one
//! (`shared::cli`) with auth-service's settings and `create-admin`.

use clap::Subcommand;
use secrecy::SecretString;
use shared::cli::OwnCommands;

use crate::Config;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Create an admin account (or, with --promote-existing, grant the
    /// admin role to an existing one).
    CreateAdmin {
        #[arg(long, env = "ADMIN_EMAIL")]
        email: String,
        #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true, value_parser = crate::config::secret)]
        password: SecretString,
        /// Grant the admin role to an existing account with this email (its
        /// own password stays); without it, an existing account is refused.
        #[arg(long)]
        promote_existing: bool,
    },
}

impl OwnCommands<Config> for AuthCommand {
    async fn run(self, config: Config) -> shared::Result<()> {
        match self {
            AuthCommand::CreateAdmin {
                email,
                password,
                promote_existing,
            } => crate::create_admin(&config, &email, &password, promote_existing).await,
        }
    }
}

/// The binary's command line (for `--help` and the README's settings table).
pub fn command() -> clap::Command {
    shared::cli::command::<Config, AuthCommand>()
}

/// Parses the command line and runs the chosen subcommand.
pub async fn run() -> std::process::ExitCode {
    shared::cli::run::<Config, AuthCommand>().await
}
