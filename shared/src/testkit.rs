//! Support for the services' black-box tests: a fresh, empty database per
//! test, dropped afterwards. SQLite in a temporary folder by default; a
//! fresh PostgreSQL database when `DOCVERIFY_TEST_POSTGRES` holds a server
//! URL (for example `postgres://postgres@127.0.0.1:5432`).

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The variable that switches the tests to PostgreSQL.
pub const POSTGRES_ENV: &str = "DOCVERIFY_TEST_POSTGRES";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Postgres { server: String, name: String },
}

impl TestDb {
    /// A fresh database; `label` names it for whoever looks at the server.
    pub async fn fresh(label: &str) -> Self {
        match std::env::var(POSTGRES_ENV) {
            Ok(server) if !server.is_empty() => {
                let server = server.trim_end_matches('/').to_owned();
                let name = format!("dv_{label}_{}", Uuid::now_v7().simple());
                let mut admin = PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={server}: cannot connect: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
                let _ = admin.close().await;
                Self {
                    url: format!("{server}/{name}"),
                    cleanup: Cleanup::Postgres { server, name },
                }
            }
            _ => {
                let dir =
                    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
                let url = format!("sqlite://{}/{label}.db", dir.path().display());
                Self {
                    url,
                    cleanup: Cleanup::Dir(dir),
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }

    /// PostgreSQL only: an outage (refuse new connections and cut the open
    /// ones) with `false`, the end of it with `true`.
    pub async fn set_reachable(&self, reachable: bool) {
        let Cleanup::Postgres { server, name } = &self.cleanup else {
            panic!("set_reachable needs PostgreSQL");
        };
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {server}: {e}"));
        let alter = format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {reachable}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(alter))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot alter {name}: {e}"));
        if !reachable {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot cut connections to {name}: {e}"));
        }
        let _ = admin.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { server, name } = &self.cleanup {
            let (server, db) = (server.clone(), name.clone());
            // Drop runs outside any runtime we may block: use a thread of our own.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
                        .await
                        .ok()?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(()))) {
                eprintln!("warning: could not drop test database {name}");
            }
        }
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Asserts the code and the `ErrorInfo` reason of a failed call, and that
/// the status names the request id.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) -> tonic::Status {
    use tonic_types::StatusExt;
    let status = match result {
        Ok(value) => panic!("the call should have failed with {code:?}, got {value:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("every error carries ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason in {status:?}");
    assert_eq!(info.domain, crate::error::ERROR_DOMAIN);
    assert!(
        details
            .request_info()
            .is_some_and(|r| !r.request_id.is_empty()),
        "every error names its request id: {status:?}"
    );
    status
}

/// The fields named by a `BadRequest` detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Runs the futures at the same time (each on its own task) and returns
/// their outputs in order.
pub async fn concurrently<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => results.push(output),
            Err(e) => panic!("a concurrent task failed: {e}"),
        }
    }
    results
}

/// A channel to `addr`, once its health service answers (retrying the
/// connection, never sleeping blindly beforehand).
pub async fn connect_when_ready(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = match tonic::transport::Channel::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => panic!("bad address {addr}: {e}"),
    };
    let mut health = HealthClient::new(channel.clone());
    for _ in 0..400 {
        let check = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if check.is_ok() {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("server at {addr} did not become ready");
}

/// A service binary running as a child process, its output captured.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
    output: Output,
    pub addr: std::net::SocketAddr,
}

impl Process {
    /// Starts `binary` with `env` (and `NO_COLOR`), waits for its
    /// `<name> listening addr=...` log line and returns with its address
    /// (listen on port 0 and let the process tell).
    pub async fn start(
        binary: &std::path::Path,
        args: &[&str],
        env: &[(&str, String)],
        name: &str,
    ) -> Self {
        let (child, output) = spawn_child(binary, args, env);
        wait_listening(child, output, name).await
    }

    /// Starts one process per environment at the same moment (all are
    /// spawned before any is waited for: replicas racing on an empty
    /// database), then waits for each to listen.
    pub async fn start_together(
        binary: &std::path::Path,
        envs: &[Vec<(&str, String)>],
        name: &str,
    ) -> Vec<Self> {
        let children: Vec<_> = envs
            .iter()
            .map(|env| spawn_child(binary, &[], env))
            .collect();
        let mut started = Vec::with_capacity(children.len());
        for (child, output) in children {
            started.push(wait_listening(child, output, name).await);
        }
        started
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Kills the process outright (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `limit` for the process to exit; its status, or `None`.
    pub async fn wait_for_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Output = std::sync::Arc<std::sync::Mutex<String>>;

/// Spawns `binary` with its output captured.
fn spawn_child(
    binary: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (std::process::Child, Output) {
    use std::{io::Read, process::Stdio};
    let mut command = std::process::Command::new(binary);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let output = Output::default();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout"))),
        Box::new(child.stderr.take().unwrap_or_else(|| panic!("no stderr"))),
    ];
    for mut pipe in pipes {
        let output = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut out) = output.lock() {
                    out.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    (child, output)
}

/// Waits for the `<name> listening addr=...` line; panics with the output
/// when the process exits first or takes longer than 30 s.
async fn wait_listening(mut child: std::process::Child, output: Output, name: &str) -> Process {
    let needle = format!("{name} listening");
    let started = std::time::Instant::now();
    loop {
        let text = output.lock().map(|o| o.clone()).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains(&needle))
            .find_map(|l| l.split("addr").nth(1))
            .and_then(|rest| {
                rest.trim_start_matches(['=', '"', ':', ' '])
                    .split(['"', ' ', ',', '}'])
                    .next()
                    .and_then(|a| a.parse().ok())
            })
        {
            return Process {
                child,
                output,
                addr,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status} before listening:\n{text}");
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            panic!("{name} did not start listening within 30 s:\n{text}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
