//! A fresh, empty database per test, dropped afterwards. SQLite in a temporary folder by default; a
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
    Postgres {
        server: String,
        name: String,
    },
    /// Another handle on a database that its owner drops.
    Borrowed,
}

impl TestDb {
    /// A fresh database; `label` names it for whoever looks at the server.
    pub async fn fresh(label: &str) -> Self {
        match std::env::var(POSTGRES_ENV) {
            // Set but empty is a mistake in the environment, not a request
            // for SQLite: a run that meant PostgreSQL must not pass on SQLite.
            Ok(server) if server.trim().is_empty() => {
                panic!("{POSTGRES_ENV} is set but empty: name a server, or unset it for SQLite")
            }
            Ok(server) => {
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

    /// The same database for another replica; the original drops it, so it
    /// must outlive this handle.
    pub fn another_handle(&self) -> Self {
        Self {
            url: self.url.clone(),
            cleanup: Cleanup::Borrowed,
        }
    }

    /// The bytes column `query` selects, read straight from the database
    /// (as someone with a copy of it would).
    pub async fn bytes(&self, query: &'static str) -> Vec<Vec<u8>> {
        if self.is_postgres() {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(query).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(query).fetch_all(&mut c).await.unwrap()
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.cleanup, Cleanup::Postgres { .. })
    }

    /// For a test (or a part of one) that needs PostgreSQL: `true` when this
    /// is SQLite, after saying SKIPPED where the test run's output shows it
    /// (straight to stderr: the harness captures only `eprintln!`). CI runs
    /// the suite on PostgreSQL too, where nothing is skipped.
    pub fn skips_without_postgres(&self, what: &str) -> bool {
        use std::io::Write;
        if self.is_postgres() {
            return false;
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED on SQLite (needs PostgreSQL, set {POSTGRES_ENV}): {what}"
        );
        true
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
