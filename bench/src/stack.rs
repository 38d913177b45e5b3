//! The servers under test, all in this process on their own runtime (so the
//! load generator's threads are not theirs): a bare tonic server, and
//! auth-service and document-service started the way their tests start them,
//! `serve(config, listener, shutdown)` on port 0 with fresh databases.
//!
//! The bare server is tonic-health's `Check` on a `Server` with no layers: a
//! unary handler that does next to nothing (one map lookup), with the same
//! transport settings docverify's servers have by default (TCP_NODELAY). It
//! is the ceiling of the framework on this machine, and it needs no
//! protobuf build step of its own.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use tokio::{runtime::Handle, sync::watch, task::JoinHandle};
use tonic::transport::{Channel, Endpoint, Server, server::TcpIncoming};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::databases::Databases;

pub(crate) const ADMIN_EMAIL: &str = "bench-admin@example.com";
pub(crate) const ADMIN_PASSWORD: &str = "orchid harbour velvet compass admin";

/// How long a server may take to answer its first health check.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Parser)]
struct AuthArgs {
    #[command(flatten)]
    config: auth_service::Config,
}

#[derive(Parser)]
struct DocumentArgs {
    #[command(flatten)]
    config: document_service::Config,
}

type Task = JoinHandle<Result<(), String>>;

#[derive(Debug)]
pub(crate) struct Stack {
    pub echo: SocketAddr,
    pub auth: SocketAddr,
    pub documents: SocketAddr,
    /// The bare server of `db-read` and `db-page` (see `bare`).
    pub bare: SocketAddr,
    /// document-service's pool settings, for the `free-write` baseline.
    pub document_pool: shared::db::PoolConfig,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, Task)>,
    /// Holds document-service's service account credentials file.
    credentials: tempfile::TempDir,
}

impl Stack {
    /// Starts the three servers on `runtime` and returns once each answers
    /// its health check; a server that fails to start is an error.
    pub(crate) async fn start(runtime: &Handle, dbs: &Databases) -> Result<Self, String> {
        let (stop, stopped) = watch::channel(false);
        // The addresses are filled in as each server is started.
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut stack = Self {
            echo: unbound,
            auth: unbound,
            documents: unbound,
            bare: unbound,
            document_pool: shared::db::PoolConfig::default(),
            stop,
            tasks: Vec::new(),
            credentials: tempfile::tempdir().map_err(|e| e.to_string())?,
        };
        let started = stack.start_all(runtime, dbs, &stopped).await;
        if let Err(e) = started {
            // Whatever did start must not outlive the failure.
            let _ = stack.stop().await;
            return Err(e);
        }
        Ok(stack)
    }

    async fn start_all(
        &mut self,
        runtime: &Handle,
        dbs: &Databases,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), String> {
        let listener = bind()?;
        self.echo = local_addr(&listener)?;
        let shutdown = until(stopped.clone());
        let echo = runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            // Kept for as long as the server runs, like a real service's.
            let (_reporter, health) = tonic_health::server::health_reporter();
            Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
                .map_err(|e| e.to_string())
        });
        self.wait_ready("echo", echo, self.echo).await?;

        let mut auth = AuthArgs::try_parse_from(["auth-service"])
            .map_err(|e| format!("auth-service settings: {e}"))?
            .config;
        auth.database_url = dbs.auth_url.clone();
        auth.bootstrap_admin_email = Some(ADMIN_EMAIL.to_owned());
        auth.bootstrap_admin_password = Some(ADMIN_PASSWORD.into());
        // The load comes from one address: buckets so large that they never
        // refuse, so the limiter's cost is measured but not its refusals.
        let unlimited: shared::layer::limits::LimitSpec = "1000000/1s:1000000".parse()?;
        auth.rate_limit_register = unlimited;
        auth.rate_limit_login = unlimited;
        auth.rate_limit_refresh_token = unlimited;
        auth.rate_limit_logout = unlimited;
        auth.rate_limit_validate_token = unlimited;
        // document-service reads the revocation feed, as in production.
        let credentials = self.credentials.path().join("document-service.credentials");
        auth.bootstrap_service_credentials_file = Some(credentials.clone());
        let listener = bind()?;
        self.auth = local_addr(&listener)?;
        let shutdown = until(stopped.clone());
        let task = runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            auth_service::serve(auth, listener, shutdown)
                .await
                .map_err(|e| e.to_string())
        });
        self.wait_ready("auth-service", task, self.auth).await?;

        let mut documents = DocumentArgs::try_parse_from(["document-service"])
            .map_err(|e| format!("document-service settings: {e}"))?
            .config;
        documents.database_url = dbs.documents_url.clone();
        documents.auth_service_url = format!("http://{}", self.auth);
        documents.client_credentials_file = Some(credentials);
        self.document_pool = shared::cli::ServiceConfig::database(&documents).pool;
        let listener = bind()?;
        self.documents = local_addr(&listener)?;
        let shutdown = until(stopped.clone());
        let task = runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            document_service::serve(documents, listener, shutdown)
                .await
                .map_err(|e| e.to_string())
        });
        self.wait_ready("document-service", task, self.documents)
            .await?;

        // Once document-service has migrated its database.
        let db = shared::db::Db::connect(&dbs.documents_url, &self.document_pool)
            .await
            .map_err(|e| format!("the bare reads' pool: {e}"))?;
        let listener = bind()?;
        self.bare = local_addr(&listener)?;
        let shutdown = until(stopped.clone());
        let bare = runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            let (_reporter, health) = tonic_health::server::health_reporter();
            let served = Server::builder()
                .add_service(health)
                .add_service(
                    shared::proto::document::v1::document_service_server::DocumentServiceServer::new(
                        crate::bare::BareDocuments { db: db.clone() },
                    ),
                )
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
                .map_err(|e| e.to_string());
            db.close().await;
            served
        });
        self.wait_ready("bare reads", bare, self.bare).await
    }

    /// Retries the health check until it answers; a server task that ends
    /// first failed to start, and its error is the answer.
    async fn wait_ready(
        &mut self,
        name: &'static str,
        task: Task,
        addr: SocketAddr,
    ) -> Result<(), String> {
        let mut health = HealthClient::new(lazy_channel(addr)?);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if task.is_finished() {
                let outcome = task.await.map_err(|e| e.to_string()).and_then(|r| r);
                return Err(match outcome {
                    Ok(()) => format!("{name} stopped during start"),
                    Err(e) => format!("{name} did not start: {e}"),
                });
            }
            let check = health.check(HealthCheckRequest {
                service: String::new(),
            });
            if check.await.is_ok() {
                self.tasks.push((name, task));
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                self.tasks.push((name, task));
                return Err(format!("{name} did not answer within {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every server (gracefully) and reports the first that failed.
    pub(crate) async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            let outcome = match tokio::time::timeout(STOP_TIMEOUT, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("did not stop within {STOP_TIMEOUT:?}")),
            };
            if let Err(e) = outcome {
                first_error.get_or_insert(format!("{name}: {e}"));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `n` separate HTTP/2 connections to `addr` (clones of one tonic
/// `Channel` share one connection).
pub(crate) async fn connect(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?;
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
        );
    }
    Ok(channels)
}

fn lazy_channel(addr: SocketAddr) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_lazy())
}

/// A listener on a free loopback port, bound here so that its address is
/// known before its server (on the other runtime) takes it over.
fn bind() -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;
    Ok(listener)
}

fn local_addr(listener: &std::net::TcpListener) -> Result<SocketAddr, String> {
    listener.local_addr().map_err(|e| e.to_string())
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
