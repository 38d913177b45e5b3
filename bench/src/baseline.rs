//! The yardsticks measured in the same run: the time of one argon2id hash
//! (what bounds `login`) and, on PostgreSQL, the rate of single-row INSERT
//! transactions the database takes at the benchmark's concurrency (what
//! bounds `upload`).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use argon2::{Argon2, PasswordHasher};
use sqlx::{Connection, PgConnection};

const HASH_SAMPLES: usize = 7;
const SCRATCH_TABLE: &str =
    "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text NOT NULL)";
/// One transaction: one small row, committed (autocommit).
const INSERT: &str = "INSERT INTO bench_insert (payload) VALUES (md5(random()::text))";

/// The median time of one argon2id hash with the parameters auth-service
/// uses (`Argon2::default()`: m = 19456 KiB, t = 2, p = 1), with `threads`
/// threads hashing at once (memory bandwidth and caches are shared, so one
/// per core is slower than one alone). Blocking: call it off the runtime,
/// with the machine otherwise idle.
pub(crate) fn argon2_hash_time(threads: usize) -> Result<Duration, String> {
    let hashers: Vec<_> = (0..threads.max(1))
        .map(|_| std::thread::spawn(hash_samples))
        .collect();
    let mut samples = Vec::with_capacity(threads * HASH_SAMPLES);
    for hasher in hashers {
        samples.extend(
            hasher
                .join()
                .map_err(|_| "an argon2 thread panicked".to_owned())??,
        );
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

fn hash_samples() -> Result<Vec<Duration>, String> {
    let argon2 = Argon2::default();
    let salt = [7u8; 16];
    let mut samples = Vec::with_capacity(HASH_SAMPLES);
    for _ in 0..HASH_SAMPLES {
        let started = Instant::now();
        argon2
            .hash_password_with_salt(b"quartz violin meadow lantern", &salt)
            .map_err(|e| format!("argon2: {e}"))?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

#[derive(Debug, Clone)]
pub(crate) struct InsertRate {
    pub tps: f64,
    pub clients: usize,
    /// `pgbench`, or the sqlx loop when pgbench is not installed.
    pub tool: &'static str,
}

/// Single-row INSERT transactions per second into a scratch table of the
/// scratch database `url`, for `duration` from each number of `clients`.
pub(crate) async fn postgres_inserts(
    url: &str,
    clients: &[usize],
    duration: Duration,
) -> Result<Vec<InsertRate>, String> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(|e| format!("scratch database: {e}"))?;
    sqlx::raw_sql(SCRATCH_TABLE)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("scratch table: {e}"))?;
    let _ = conn.close().await;
    let have_pgbench = Command::new("pgbench").arg("--version").output().is_ok();
    let mut rates = Vec::with_capacity(clients.len());
    for &clients in clients {
        rates.push(if have_pgbench {
            let url = url.to_owned();
            tokio::task::spawn_blocking(move || pgbench(&url, clients, duration))
                .await
                .map_err(|e| e.to_string())??
        } else {
            sqlx_loop(url, clients, duration).await?
        });
    }
    Ok(rates)
}

fn pgbench(url: &str, clients: usize, duration: Duration) -> Result<InsertRate, String> {
    let script = tempfile::Builder::new()
        .suffix(".sql")
        .tempfile()
        .map_err(|e| e.to_string())?;
    std::fs::write(script.path(), format!("{INSERT};\n")).map_err(|e| e.to_string())?;
    let seconds = duration.as_secs().max(1).to_string();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(clients);
    let output = Command::new("pgbench")
        .args(["--no-vacuum", "--client", &clients.to_string()])
        .args(["--jobs", &threads.to_string(), "--time", &seconds, "--file"])
        .arg(script.path())
        .arg(url)
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "tps = 5098.844740 (without initial connection time)"
    let tps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "pgbench gave no tps: {}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok(InsertRate {
        tps,
        clients,
        tool: "pgbench",
    })
}

/// The same transactions from sqlx, one connection per task.
async fn sqlx_loop(url: &str, clients: usize, duration: Duration) -> Result<InsertRate, String> {
    let end = Instant::now() + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut done = 0u64;
                while Instant::now() < end {
                    sqlx::query(INSERT)
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    done += 1;
                }
                let _ = conn.close().await;
                Ok::<_, String>(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(InsertRate {
        tps: total as f64 / duration.as_secs_f64(),
        clients,
        tool: "sqlx loop",
    })
}
