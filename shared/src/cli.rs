//! The command line both service binaries share: every setting (each also
//! an environment variable), `serve` (the default), `migrate`,
//! `healthcheck`, and the subcommands a service adds of its own.

use std::{future::Future, net::SocketAddr, process::ExitCode};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::{
    config::ServerConfig,
    error::Result,
    server,
    service::{Database, Service},
};

/// What the shared command line needs of a service's own settings.
pub trait ServiceConfig: clap::Args + Send + Sized + 'static {
    const SERVICE: &'static Service;

    fn listen_addr(&self) -> SocketAddr;

    fn database(&self) -> Database<'_>;

    /// Hands the process-wide settings to the service.
    fn set_server(&mut self, server: ServerConfig);

    /// Runs the service on `listener` until `shutdown` completes.
    fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Implements [`ServiceConfig`] for a service's `Config`, whose fields
/// `listen_addr`, `database_url`, `db_max_connections` and `server` every
/// service has (under setting names of its own), served by `$serve`.
#[macro_export]
macro_rules! service_config {
    ($config:ty, $service:expr, $serve:path) => {
        impl $crate::cli::ServiceConfig for $config {
            const SERVICE: &'static $crate::service::Service = &$service;

            fn listen_addr(&self) -> ::std::net::SocketAddr {
                self.listen_addr
            }

            fn database(&self) -> $crate::service::Database<'_> {
                $crate::service::Database {
                    url: &self.database_url,
                    pool: self.server.pool(self.db_max_connections),
                }
            }

            fn set_server(&mut self, server: $crate::config::ServerConfig) {
                self.server = server;
            }

            async fn serve(
                self,
                listener: ::tokio::net::TcpListener,
                shutdown: impl ::std::future::Future<Output = ()> + Send + 'static,
            ) -> $crate::Result<()> {
                $serve(self, listener, shutdown).await
            }
        }
    };
}

/// Subcommands of a service's own, run with its settings.
pub trait OwnCommands<C>: Subcommand + Send {
    fn run(self, config: C) -> impl Future<Output = Result<()>> + Send;
}

/// A service with no subcommands of its own.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum NoOwnCommands {}

impl<C: Send> OwnCommands<C> for NoOwnCommands {
    async fn run(self, _config: C) -> Result<()> {
        match self {}
    }
}

#[derive(Debug, Parser)]
#[command(version)]
struct Cli<C: clap::Args, X: Subcommand> {
    #[command(subcommand)]
    command: Option<Command<X>>,
    #[command(flatten)]
    config: C,
    #[command(flatten)]
    server: ServerConfig,
}

#[derive(Debug, Subcommand)]
enum Command<X: Subcommand> {
    /// Serve gRPC (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Exit 0 when the running service reports SERVING, 1 otherwise
    /// (for container health checks).
    Healthcheck,
    #[command(flatten)]
    Tool(crate::audit::Tool),
    #[command(flatten)]
    Own(X),
}

/// The binary's command line, named for the service.
pub fn command<C: ServiceConfig, X: OwnCommands<C>>() -> clap::Command {
    let name = C::SERVICE.name;
    Cli::<C, X>::command()
        .name(name)
        .bin_name(name)
        .about(format!("docverify {name}"))
}

/// Parses the command line and runs the chosen subcommand.
pub async fn run<C: ServiceConfig, X: OwnCommands<C>>() -> ExitCode {
    let command = command::<C, X>();
    let cli = command
        .clone()
        .try_get_matches()
        .and_then(|matches| Cli::<C, X>::from_arg_matches(&matches))
        .unwrap_or_else(|e| {
            if let Some(setting) = failed_setting(&command, &e) {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("error: the setting {setting} is invalid");
                }
            }
            e.exit()
        });
    if let Err(e) = crate::telemetry::init(cli.server.log_format, C::SERVICE.name) {
        return server::exit(Err(e));
    }
    let mut config = cli.config;
    config.set_server(cli.server.clone());
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, &cli.server).await,
        Command::Migrate => C::SERVICE
            .migrate(&config.database(), &cli.server)
            .await
            .map(|_| ()),
        Command::Healthcheck => {
            return server::healthcheck_exit(config.listen_addr(), &cli.server).await;
        }
        Command::Tool(tool) => tool.run().await,
        Command::Own(own) => own.run(config).await,
    };
    crate::telemetry::shutdown();
    server::exit(result)
}

/// The environment variable (and flag) of the argument a parse error is
/// about: operators set the variables, while clap's own message names only
/// the flag.
fn failed_setting(command: &clap::Command, error: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(invalid) =
        error.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let long = invalid.strip_prefix("--")?.split([' ', '=']).next()?;
    command
        .get_arguments()
        .chain(command.get_subcommands().flat_map(|c| c.get_arguments()))
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| format!("{} (--{long})", env.to_string_lossy()))
}

async fn serve<C: ServiceConfig>(config: C, server: &ServerConfig) -> Result<()> {
    let listener = server::bind(config.listen_addr(), C::SERVICE.listen_setting).await?;
    server::spawn_metrics(server).await?;
    config.serve(listener, server::shutdown_signal()).await
}
