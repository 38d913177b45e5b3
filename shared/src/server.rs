//! Pieces both servers are built from: the server builder with limits, TLS
//! and gRPC-Web; reflection; health that follows the database; and a
//! shutdown that drains in-flight RPCs for a bounded time (tonic alone waits
//! forever).

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    config::ServerConfig,
    db::Db,
    error::{Error, Result},
};

/// A tonic server with the configured limits and TLS; services add the
/// layers ([`cors`], gRPC-Web, the RPC layer) and their routes. The RPC
/// layer, not tonic, enforces REQUEST_TIMEOUT (so that it answers
/// DEADLINE_EXCEEDED).
pub fn builder(config: &ServerConfig) -> Result<Server> {
    let mut server = Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(config.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout));
    if let Some(tls) = server_tls(config)? {
        server = server
            .tls_config(tls)
            .map_err(|e| Error::internal(format!("TLS_CERT_FILE/TLS_KEY_FILE: {e}")))?;
    }
    Ok(server)
}

pub fn read_pem(setting: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::internal(format!("{setting} {}: {e}", path.display())))
}

fn server_tls(config: &ServerConfig) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(
        read_pem("TLS_CERT_FILE", cert)?,
        read_pem("TLS_KEY_FILE", key)?,
    );
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read_pem("TLS_CLIENT_CA_FILE", ca)?));
    }
    Ok(Some(tls))
}

/// CORS for gRPC-Web callers in browsers: only the configured origins.
/// With none configured, no layer: a browser on another origin is refused
/// for want of CORS headers either way, and every other caller is spared
/// the layer (it cloned its settings and built `Vary` on every request:
/// about a microsecond a call).
pub fn cors(config: &ServerConfig) -> Option<CorsLayer> {
    use http::{HeaderName, Method};
    let origins = &config.cors_allowed_origins;
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    let headers = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(headers(&[
            "authorization",
            "content-type",
            "grpc-timeout",
            "x-grpc-web",
            "x-user-agent",
            "x-request-id",
        ]))
        .expose_headers(headers(&[
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "x-request-id",
        ]))
        .max_age(Duration::from_secs(600));
    Some(layer)
}

/// Reflection v1 (buf curl, grpcui) and v1alpha (grpcurl, Python) listing
/// `services` (full names) plus health, over the docverify descriptors and
/// the `google.rpc` error details (so grpcurl prints them decoded).
pub fn reflection(
    services: &[&str],
) -> Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        services
            .iter()
            .fold(builder, |b, name| b.with_service_name(*name))
    };
    let v1 = builder()
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()
        .map_err(Error::internal)?;
    let v1alpha = builder()
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()
        .map_err(Error::internal)?;
    Ok((v1, v1alpha))
}

/// The health of one server: its own services follow its database; a
/// dependency (auth-service, for document-service) is reported under its own
/// name.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Arc<Vec<String>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("services", &self.services)
            .finish()
    }
}

impl Health {
    /// The reporter for `services`, and the health service to add to the router.
    pub fn new(
        services: &[&str],
    ) -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let services = std::iter::once(String::new())
            .chain(services.iter().map(|s| (*s).to_owned()))
            .collect();
        (
            Self {
                reporter,
                services: Arc::new(services),
            },
            service,
        )
    }

    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in self.services.iter() {
            self.reporter.set_service_status(service, status).await;
        }
    }

    /// Checks `db` every `interval`: NOT_SERVING while it does not answer,
    /// SERVING again when it does.
    pub fn follow_database(&self, db: Db, interval: Duration) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        let patience = probe_timeout(interval);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let up = matches!(tokio::time::timeout(patience, db.ping()).await, Ok(Ok(())));
                if last != Some(up) {
                    if !up {
                        tracing::warn!("database unreachable: health NOT_SERVING");
                    } else if last.is_some() {
                        tracing::info!("database reachable again: health SERVING");
                    }
                    health.set(up).await;
                    last = Some(up);
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// Reports `check` under `name`, looked at four times a second.
    pub fn follow_condition(
        &self,
        name: &'static str,
        check: crate::service::Condition,
    ) -> tokio::task::JoinHandle<()> {
        let reporter = self.reporter.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let up = check();
                if last != Some(up) {
                    let status = if up {
                        ServingStatus::Serving
                    } else {
                        ServingStatus::NotServing
                    };
                    reporter.set_service_status(name, status).await;
                    last = Some(up);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    /// Reports whether the server behind `channel` answers its health check,
    /// under `name`.
    pub fn follow_dependency(
        &self,
        name: &'static str,
        channel: tonic::transport::Channel,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response, health_client::HealthClient,
        };
        let reporter = self.reporter.clone();
        tokio::spawn(async move {
            let mut client = HealthClient::new(channel);
            loop {
                let mut request = tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                });
                request.set_timeout(probe_timeout(interval));
                let up = client.check(request).await.is_ok_and(|r| {
                    r.get_ref().status == health_check_response::ServingStatus::Serving as i32
                });
                let status = if up {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(name, status).await;
                tokio::time::sleep(interval).await;
            }
        })
    }
}

/// How long one health probe may take: the interval, but never so short
/// that a loaded machine's slow answer reads as an outage.
fn probe_timeout(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(1))
}

/// Splits a shutdown signal into the future tonic waits on (health goes
/// NOT_SERVING, the listener closes, in-flight RPCs drain) and a deadline
/// that fires `drain` after the signal. Serve with `tokio::select!` over both,
/// so a stuck client cannot hold the process.
pub fn graceful(
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    health: Health,
) -> (
    impl Future<Output = ()> + Send,
    impl Future<Output = ()> + Send,
) {
    let (tx, mut rx) = watch::channel(false);
    let signal = async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let deadline = async move {
        shutdown.await;
        health.set(false).await;
        let _ = tx.send(true);
        tokio::time::sleep(drain).await;
        tracing::warn!(
            ?drain,
            "drain timeout reached; closing remaining connections"
        );
    };
    (signal, deadline)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// The `healthcheck` subcommand: asks the server at `addr` (its own listen
/// address) for its overall health; `Ok(true)` when SERVING. With TLS on, it
/// trusts the certificates in TLS_CERT_FILE (put the CA there) and presents
/// them as its client certificate when mutual TLS is required.
pub async fn healthcheck(addr: std::net::SocketAddr, config: &ServerConfig) -> Result<bool> {
    use tonic::transport::{ClientTlsConfig, Endpoint};
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response, health_client::HealthClient,
    };
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    let target = std::net::SocketAddr::new(ip, addr.port());
    let mut endpoint = Endpoint::from_shared(format!(
        "{}://{target}",
        if config.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    ))
    .map_err(Error::internal)?
    .connect_timeout(Duration::from_secs(2))
    .timeout(Duration::from_secs(2));
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        let pem = read_pem("TLS_CERT_FILE", cert)?;
        let tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(&pem))
            .identity(Identity::from_pem(&pem, read_pem("TLS_KEY_FILE", key)?));
        endpoint = endpoint.tls_config(tls).map_err(Error::internal)?;
    }
    let channel = endpoint.connect().await.map_err(Error::unavailable)?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| Error::unavailable(s.message().to_owned()))?;
    Ok(response.get_ref().status == health_check_response::ServingStatus::Serving as i32)
}

/// The process exit code for a binary's result; a startup failure names its
/// cause (the setting or the dependency) on stderr.
pub fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!("{message}");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {message}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds a listener; a failure names the setting that chose the address.
pub async fn bind(addr: std::net::SocketAddr, setting: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("{setting} {addr}: {e}")))
}

/// Runs the `healthcheck` subcommand and turns its answer into an exit code.
pub async fn healthcheck_exit(
    addr: std::net::SocketAddr,
    config: &ServerConfig,
) -> std::process::ExitCode {
    match healthcheck(addr, config).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            tracing::warn!(%addr, "not serving");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "health check failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves Prometheus metrics on METRICS_ADDR, when set, for the life of the
/// process.
pub async fn spawn_metrics(config: &ServerConfig) -> Result<()> {
    let Some(addr) = config.metrics_addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("METRICS_ADDR {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(Error::internal)?;
    tracing::info!(addr = %bound, "metrics on /metrics");
    tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve(listener, shutdown_signal()).await {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok(())
}
