//! The servers under test. auth-service and document-service are the
//! shipped binaries (built beside this one) as child processes on port 0
//! with fresh databases, so that their memory and CPU are read from their
//! own processes; the yardsticks run in this process on a runtime of their
//! own (so the load generator's threads are not theirs): a bare tonic
//! server, and the bare reads of `db-read` and `db-page` (see `bare`).
//!
//! The bare server is tonic-health's `Check` on a `Server` with no layers: a
//! unary handler that does next to nothing (one map lookup), with the same
//! transport settings docverify's servers have by default (TCP_NODELAY). It
//! is the ceiling of the framework on this machine, and it needs no
//! protobuf build step of its own.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use testkit::Process;
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
/// How the binaries are built beside this one.
const BUILD: &str = "cargo build --release -p bench -p auth-service -p document-service";

#[derive(Parser)]
struct DocumentArgs {
    #[command(flatten)]
    config: document_service::Config,
}

/// A service binary running as a child process.
#[derive(Debug)]
pub(crate) struct Service {
    pub name: &'static str,
    pub process: Process,
    /// Its resident set once it first answered, KiB.
    pub idle_kib: u64,
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
    /// The service binaries, as they were started.
    pub services: Vec<Service>,
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
            services: Vec::new(),
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

        let dir = binaries()?;
        // The load comes from one address: buckets so large that they never
        // refuse, so the limiter's cost is measured but not its refusals.
        let unlimited = "1000000/1s:1000000".to_owned();
        // document-service reads the revocation feed, as in production.
        let credentials = self.credentials.path().join("document-service.credentials");
        let mut auth = vec![
            ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("AUTH_DATABASE_URL", dbs.auth_url.clone()),
            ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            (
                "BOOTSTRAP_SERVICE_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
        ];
        for limit in [
            "RATE_LIMIT_REGISTER",
            "RATE_LIMIT_LOGIN",
            "RATE_LIMIT_REFRESH_TOKEN",
            "RATE_LIMIT_LOGOUT",
            "RATE_LIMIT_VALIDATE_TOKEN",
        ] {
            auth.push((limit, unlimited.clone()));
        }
        let process = Process::start(&dir.join("auth-service"), &[], &auth, "auth-service").await;
        self.auth = process.addr;
        self.add_service("auth-service", process).await?;

        let documents = [
            ("DOCUMENT_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("DOCUMENT_DATABASE_URL", dbs.documents_url.clone()),
            ("AUTH_SERVICE_URL", format!("http://{}", self.auth)),
            (
                "DOCUMENT_CLIENT_CREDENTIALS_FILE",
                credentials.display().to_string(),
            ),
        ];
        let binary = dir.join("document-service");
        let process = Process::start(&binary, &[], &documents, "document-service").await;
        self.documents = process.addr;
        self.add_service("document-service", process).await?;
        crate::cpu::count_processes(self.services.iter().map(|s| s.process.id()).collect());
        self.document_pool = DocumentArgs::try_parse_from(["document-service"])
            .map(|args| shared::cli::ServiceConfig::database(&args.config).pool)
            .map_err(|e| format!("document-service settings: {e}"))?;

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

    /// Keeps a started binary once its health check answers, with its
    /// resident set at that moment.
    async fn add_service(&mut self, name: &'static str, process: Process) -> Result<(), String> {
        let addr = process.addr;
        let pid = process.id();
        // Stopped with the others should the check fail.
        self.services.push(Service {
            name,
            process,
            idle_kib: 0,
        });
        healthy(name, addr, || false).await?;
        let idle_kib = crate::rss::status_kib(pid, "VmRSS")?;
        if let Some(service) = self.services.last_mut() {
            service.idle_kib = idle_kib;
        }
        Ok(())
    }

    /// Retries the health check until it answers; a server task that ends
    /// first failed to start, and its error is the answer.
    async fn wait_ready(
        &mut self,
        name: &'static str,
        task: Task,
        addr: SocketAddr,
    ) -> Result<(), String> {
        let answered = healthy(name, addr, || task.is_finished()).await;
        if matches!(answered, Ok(false)) {
            let outcome = task.await.map_err(|e| e.to_string()).and_then(|r| r);
            return Err(match outcome {
                Ok(()) => format!("{name} stopped during start"),
                Err(e) => format!("{name} did not start: {e}"),
            });
        }
        self.tasks.push((name, task));
        answered.map(drop)
    }

    /// Stops every server (gracefully: SIGTERM for the binaries) and
    /// reports the first that failed.
    pub(crate) async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        // document-service first: it holds a feed from auth-service.
        for Service {
            name, mut process, ..
        } in self.services.into_iter().rev()
        {
            process.terminate();
            match process.wait_for_exit(STOP_TIMEOUT).await {
                Some(status) if status.success() => {}
                Some(status) => {
                    first_error.get_or_insert(format!(
                        "{name} exited with {status}:\n{}",
                        process.output()
                    ));
                }
                None => {
                    first_error
                        .get_or_insert(format!("{name}: did not stop within {STOP_TIMEOUT:?}"));
                }
            }
        }
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

/// Retries `addr`'s health check until it answers (`true`), `gone` says
/// the server ended (`false`), or READY_TIMEOUT passes (an error).
async fn healthy(name: &str, addr: SocketAddr, gone: impl Fn() -> bool) -> Result<bool, String> {
    let mut health = HealthClient::new(lazy_channel(addr)?);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if gone() {
            return Ok(false);
        }
        let check = health.check(HealthCheckRequest {
            service: String::new(),
        });
        if check.await.is_ok() {
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{name} did not answer within {READY_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The folder of the service binaries: this one's, where cargo builds
/// every binary of the workspace for one profile.
fn binaries() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for name in ["auth-service", "document-service"] {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} not found beside the bench; build the binaries with it: {BUILD}",
                dir.join(name).display()
            ));
        }
    }
    Ok(dir)
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
