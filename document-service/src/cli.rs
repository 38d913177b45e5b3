//! The command line of the document-service binary: the shared one
//! (`shared::cli`) with document-service's settings.

use shared::cli::NoOwnCommands;

use crate::Config;

/// The binary's command line (for `--help` and the README's settings table).
pub fn command() -> clap::Command {
    shared::cli::command::<Config, NoOwnCommands>()
}

/// Parses the command line and runs the chosen subcommand.
pub async fn run() -> std::process::ExitCode {
    shared::cli::run::<Config, NoOwnCommands>().await
}
