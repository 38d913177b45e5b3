//! Fresh, empty databases for one run: SQLite files in a temporary folder by
//! default, or new databases on a PostgreSQL server (the same way as
//! `testkit::TestDb`, which panics instead of reporting and reads its
//! server from an environment variable), dropped at the end.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

#[derive(Debug)]
pub(crate) struct Databases {
    pub auth_url: String,
    pub documents_url: String,
    /// A third database for the single-row insert baseline (PostgreSQL only).
    pub scratch_url: Option<String>,
    /// What the report says about the storage.
    pub description: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// Dropping the folder deletes the files.
    Dir(tempfile::TempDir),
    Postgres {
        server: String,
        names: Vec<String>,
    },
}

impl Databases {
    /// SQLite when `server` is `None`, otherwise three new databases on the
    /// PostgreSQL server `server` (a URL without a database name; one that
    /// names a database has it ignored).
    pub(crate) async fn create(server: Option<&str>) -> Result<Self, String> {
        let Some(server) = server else {
            let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
            let url = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
            return Ok(Self {
                auth_url: url("auth"),
                documents_url: url("documents"),
                scratch_url: None,
                description: "SQLite (files in a temporary folder, WAL)".to_owned(),
                cleanup: Cleanup::Dir(dir),
            });
        };
        let server = server_url(server);
        let mut admin = PgConnection::connect(&server.at("postgres"))
            .await
            .map_err(|e| format!("--database-url {}: cannot connect: {e}", server.base))?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut admin)
            .await
            .map_err(|e| format!("PostgreSQL server version: {e}"))?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let names: Vec<String> = ["auth", "documents", "scratch"]
            .iter()
            .map(|role| format!("dv_bench_{role}_{}_{stamp}", std::process::id()))
            .collect();
        let mut created = Vec::new();
        for name in &names {
            let sql = format!("CREATE DATABASE \"{name}\"");
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
            {
                drop_databases(&server.at("postgres"), &created).await;
                return Err(format!("cannot create database {name}: {e}"));
            }
            created.push(name.clone());
        }
        let _ = admin.close().await;
        let [auth, documents, scratch] = [0, 1, 2].map(|i| server.at(&names[i]));
        Ok(Self {
            auth_url: auth,
            documents_url: documents,
            scratch_url: Some(scratch),
            description: format!("PostgreSQL {version} at {}", server.base),
            cleanup: Cleanup::Postgres {
                server: server.at("postgres"),
                names: created,
            },
        })
    }

    /// Deletes the databases (a failure is reported on stderr: it leaves a
    /// database behind but changes no figure).
    pub(crate) async fn remove(self) {
        match self.cleanup {
            Cleanup::Dir(dir) => {
                if let Err(e) = dir.close() {
                    eprintln!("warning: could not delete the SQLite files: {e}");
                }
            }
            Cleanup::Postgres { server, names } => drop_databases(&server, &names).await,
        }
    }
}

async fn drop_databases(admin_url: &str, names: &[String]) {
    let mut admin = match PgConnection::connect(admin_url).await {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("warning: could not drop databases {names:?}: {e}");
            return;
        }
    };
    for name in names {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            eprintln!("warning: could not drop database {name}: {e}");
        }
    }
    let _ = admin.close().await;
}

/// A server URL split around the database name, so that any other database
/// on it can be named: `postgres://u@h:5432/x?sslmode=disable` has base
/// `postgres://u@h:5432` and query `?sslmode=disable`.
struct ServerUrl {
    base: String,
    query: String,
}

impl ServerUrl {
    fn at(&self, database: &str) -> String {
        format!("{}/{database}{}", self.base, self.query)
    }
}

fn server_url(url: &str) -> ServerUrl {
    let (rest, query) = match url.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = rest.find("://").map_or(0, |i| i + 3);
    let base = match rest[authority_start..].find('/') {
        Some(slash) => &rest[..authority_start + slash],
        None => rest,
    };
    ServerUrl {
        base: base.to_owned(),
        query,
    }
}
