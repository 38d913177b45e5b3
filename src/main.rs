//! The whole docverify stack in one process, for local use: auth-service on
//! :50051 (its signing keys over HTTP on :8080) and document-service on
//! :50052, both on embedded SQLite files under `./data`. Production runs
//! each service's own binary. Its subcommands (`receipt verify`, `audit
//! export`, `audit verify`) are the audit log's offline tools, which every
//! binary has.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "docverify",
    version,
    about = "docverify: auth-service and document-service in one process"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Without one, runs the stack.
    #[command(subcommand)]
    tool: Option<shared::audit::Tool>,
    #[command(flatten)]
    auth: auth_service::Config,
    #[command(flatten)]
    document: document_service::Config,
    #[command(flatten)]
    server: shared::config::ServerConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if let Err(e) = shared::telemetry::init(cli.server.log_format, "docverify") {
        return shared::server::exit(Err(e));
    }
    if let Some(tool) = cli.tool.take() {
        return shared::server::exit(tool.run().await);
    }
    cli.auth.generate_local_admin = true;
    // The keys for gateways and JWT libraries, as compose publishes them.
    cli.auth
        .http_addr
        .get_or_insert(([127, 0, 0, 1], 8080).into());
    // document-service's service account for the revocation feed, shared
    // through a file next to the databases unless configured otherwise.
    if cli.auth.bootstrap_service_credentials_file.is_none() {
        cli.auth.bootstrap_service_credentials_file =
            Some("data/document-service.credentials".into());
    }
    if cli.document.credentials().is_none() {
        cli.document.client_credentials_file = cli.auth.bootstrap_service_credentials_file.clone();
    }
    cli.auth.server = cli.server.clone();
    cli.document.server = cli.server.clone();
    let result = run(cli).await;
    shared::telemetry::shutdown();
    shared::server::exit(result)
}

async fn run(cli: Cli) -> shared::Result<()> {
    use shared::server::bind;
    let auth_listener = bind(cli.auth.listen_addr, "AUTH_LISTEN_ADDR").await?;
    let document_listener = bind(cli.document.listen_addr, "DOCUMENT_LISTEN_ADDR").await?;
    shared::server::spawn_metrics(&cli.server).await?;
    // One signal stops both.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shared::server::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::try_join!(
        auth_service::serve(cli.auth, auth_listener, until_stopped(stopped.clone())),
        document_service::serve(cli.document, document_listener, until_stopped(stopped)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Both services' settings live side by side here: no name may clash.
    #[test]
    fn settings_of_both_services_fit_in_one_command_line() {
        super::Cli::command().debug_assert();
    }
}
