//! Storage on two real dialects with native drivers: SQLite (embedded default,
//! WAL, one writer connection so writes never fight over the lock) and
//! PostgreSQL. Queries whose SQL is the same in both dialects are written once
//! and compiled for each driver by [`on_dialect!`](crate::on_dialect).

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Decode, Encode, PgPool, Postgres, Sqlite, SqlitePool, Transaction, Type,
    encode::IsNull,
    error::BoxDynError,
    migrate::{MigrateError, Migrator},
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Runs the same code against whichever dialect `$target` holds.
///
/// `$target` is a [`Dialect`] of two values (pools, transactions, ...);
/// `$body` is compiled once per driver with `$c` bound to that driver's value.
#[macro_export]
macro_rules! on_dialect {
    ($target:expr, $c:ident => $body:expr) => {
        match $target {
            $crate::db::Dialect::Sqlite($c) => $body,
            $crate::db::Dialect::Postgres($c) => $body,
        }
    };
}

/// One value per dialect: a pool, a transaction, a migrator.
#[derive(Debug)]
pub enum Dialect<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// A write transaction on either dialect.
pub type Tx = Dialect<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>;

/// A connection borrowed from a transaction or a pool: what store functions
/// take, so one function serves both reads and writes.
pub type Conn<'a> = Dialect<&'a mut sqlx::SqliteConnection, &'a mut sqlx::PgConnection>;

impl Conn<'_> {
    /// A shorter borrow of the same connection, for one more statement.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Dialect::Sqlite(c) => Dialect::Sqlite(&mut **c),
            Dialect::Postgres(c) => Dialect::Postgres(&mut **c),
        }
    }
}

/// A connection checked out of a pool.
pub type Pooled = Dialect<PoolConnection<Sqlite>, PoolConnection<Postgres>>;

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Dialect::Sqlite(c) => Dialect::Sqlite(&mut **c),
            Dialect::Postgres(c) => Dialect::Postgres(&mut **c),
        }
    }
}

/// The migrations of one service, one folder per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// How long a write may wait for SQLite's single writer connection.
const SQLITE_WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pool limits, from configuration.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before it answers UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest one statement may run.
    pub statement_timeout: Duration,
    /// PostgreSQL: the longest a statement may wait for a lock.
    pub lock_timeout: Duration,
    /// PostgreSQL: the longest a transaction may sit idle before the server
    /// ends its session.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PoolConfig {
    /// The documented defaults of the settings, with 10 connections.
    fn default() -> Self {
        crate::config::ServerConfig::default().pool(10)
    }
}

/// The database of one service.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a
    /// SQLite file and its folder when missing.
    pub async fn connect(url: &str, pool: &PoolConfig) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Set on every pooled connection at its start: a stuck lock or
            // query ends (as UNAVAILABLE, see `error`) instead of holding a
            // connection and its caller forever.
            let millis = |d: Duration| d.as_millis().max(1).to_string();
            let options = PgConnectOptions::from_str(url)
                .map_err(Error::internal)?
                .options([
                    ("statement_timeout", millis(pool.statement_timeout)),
                    ("lock_timeout", millis(pool.lock_timeout)),
                    (
                        "idle_in_transaction_session_timeout",
                        millis(pool.idle_in_transaction_timeout),
                    ),
                ]);
            let pool = PgPoolOptions::new()
                .max_connections(pool.max_connections)
                .acquire_timeout(pool.acquire_timeout)
                .connect_with(options)
                .await?;
            return Ok(Db::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(Error::internal(format!(
                "unsupported database URL scheme (expected sqlite:// or postgres://): {}",
                url.split(':').next().unwrap_or_default()
            )));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(Error::internal)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(pool.acquire_timeout)
            .foreign_keys(true);
        if let Some(dir) = options
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            create_dir(dir)?;
        }
        // The one writer connection is a queue, not an outage: waiting for it
        // is bounded by the RPC's own deadline rather than the short acquire
        // timeout meant for an unreachable server.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pool.acquire_timeout.max(SQLITE_WRITE_QUEUE_TIMEOUT))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Db::Sqlite { writer, reader })
    }

    /// Connects like [`Db::connect`], waiting for a PostgreSQL server that is
    /// not up yet (a container that starts before its database): retries
    /// with backoff, logging each failure, for up to `patience`, then fails
    /// naming `setting`. Errors that waiting cannot cure (a bad password, a
    /// bad URL) fail at once.
    pub async fn connect_waiting(
        url: &str,
        pool: &PoolConfig,
        setting: &str,
        patience: Duration,
    ) -> Result<Self> {
        let started = crate::clock::monotonic();
        let mut delay = Duration::from_millis(250);
        let mut retried = false;
        loop {
            match Self::connect(url, pool).await {
                Ok(db) => {
                    if retried {
                        tracing::info!(setting, "database reachable");
                    }
                    return Ok(db);
                }
                Err(Error::Unavailable(cause))
                    if !url.starts_with("sqlite:") && started.elapsed() + delay < patience =>
                {
                    tracing::warn!(setting, error = %cause, retry_in = ?delay, "database not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    retried = true;
                }
                Err(Error::Unavailable(cause)) => {
                    return Err(Error::internal(format!(
                        "{setting}: the database is not reachable (waited {:?}, DB_STARTUP_TIMEOUT): {cause}",
                        started.elapsed()
                    )));
                }
                Err(Error::Internal(cause)) => {
                    return Err(Error::internal(format!("{setting}: {cause}")));
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Pools for reads outside a transaction.
    pub fn reader(&self) -> Dialect<&SqlitePool, &PgPool> {
        match self {
            Db::Sqlite { reader, .. } => Dialect::Sqlite(reader),
            Db::Postgres(pool) => Dialect::Postgres(pool),
        }
    }

    /// Pools for single-statement writes outside a transaction.
    pub fn writer(&self) -> Dialect<&SqlitePool, &PgPool> {
        match self {
            Db::Sqlite { writer, .. } => Dialect::Sqlite(writer),
            Db::Postgres(pool) => Dialect::Postgres(pool),
        }
    }

    /// A connection for reads outside a transaction (on SQLite, one of the
    /// read-only connections, so reads never wait for the writer).
    pub async fn read(&self) -> Result<Pooled> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Dialect::Sqlite(reader.acquire().await?),
            Db::Postgres(pool) => Dialect::Postgres(pool.acquire().await?),
        })
    }

    /// A read-only transaction whose statements all see one snapshot
    /// (REPEATABLE READ on PostgreSQL; on SQLite a WAL read transaction),
    /// for reads that must agree with each other while writes go on.
    pub async fn snapshot(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Dialect::Sqlite(reader.begin().await?),
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                Dialect::Postgres(tx)
            }
        })
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { writer, .. } => Dialect::Sqlite(writer.begin().await?),
            Db::Postgres(pool) => Dialect::Postgres(pool.begin().await?),
        })
    }

    /// Applies the service's migrations. Refuses a database that has a
    /// migration this build does not know: it was written by a newer version.
    pub async fn migrate(&self, migrations: Migrations) -> Result<()> {
        let outcome = match self {
            Db::Sqlite { writer, .. } => migrations.sqlite.run(writer).await,
            Db::Postgres(pool) => migrations.postgres.run(pool).await,
        };
        outcome.map_err(|e| match e {
            MigrateError::VersionMissing(v) => Error::internal(format!(
                "the database schema is newer than this build: migration {v} is applied but unknown here"
            )),
            other => Error::internal(other),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Answers whether the database takes a query now.
    pub async fn ping(&self) -> Result<()> {
        on_dialect!(self.reader(), p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// A random secret that every replica of a service shares, created on
    /// first use (page-token MAC keys, for example).
    pub async fn secret(&self, name: &str, now: Timestamp) -> Result<Vec<u8>> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(Error::internal)?;
        let sql_insert = "INSERT INTO service_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                          ON CONFLICT (name) DO NOTHING";
        let sql_select = "SELECT value FROM service_secrets WHERE name = $1";
        let value: Vec<u8> = on_dialect!(self.writer(), p => {
            sqlx::query(sql_insert).bind(name).bind(&fresh[..]).bind(now).execute(p).await?;
            sqlx::query_scalar(sql_select).bind(name).fetch_one(p).await?
        });
        Ok(value)
    }
}

/// What a start-up write serialises on, when replicas start together.
#[derive(Debug, Clone, Copy)]
pub enum StartupLock {
    SigningKeys = 1,
    BootstrapAdmin = 2,
    /// Not a start-up write: the audit log's sequencer, one batch at a time.
    AuditSequencer = 3,
}

impl StartupLock {
    /// Advisory-lock keys of docverify: 0x6476 ("dv") in the high bits.
    fn key(self) -> i64 {
        0x6476_0000_i64 | self as i64
    }
}

impl Tx {
    /// Holds the start-up lock `which` until this transaction ends, so that
    /// of replicas starting at the same moment one writes and the others
    /// read what it wrote: a PostgreSQL advisory lock; on SQLite, a write
    /// that takes the database's write lock at once.
    pub async fn lock_startup(&mut self, which: StartupLock) -> Result<()> {
        let key = which.key();
        match self {
            Dialect::Sqlite(t) => {
                sqlx::query("UPDATE service_secrets SET name = name WHERE 0 = 1")
                    .execute(&mut **t)
                    .await?;
            }
            Dialect::Postgres(t) => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(key)
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(())
    }

    /// [`Tx::lock_startup`] without waiting: false when another transaction
    /// (of any replica) holds the lock on PostgreSQL. SQLite has one writer,
    /// whom this waits for as any write does.
    pub async fn try_lock(&mut self, which: StartupLock) -> Result<bool> {
        match self {
            Dialect::Sqlite(_) => {
                self.lock_startup(which).await?;
                Ok(true)
            }
            Dialect::Postgres(t) => Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(which.key())
                .fetch_one(&mut **t)
                .await?),
        }
    }

    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Dialect::Sqlite(t) => Dialect::Sqlite(&mut **t),
            Dialect::Postgres(t) => Dialect::Postgres(&mut **t),
        }
    }

    pub async fn commit(self) -> Result<()> {
        on_dialect!(self, t => t.commit().await)?;
        Ok(())
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))
}

/// A unique constraint as both dialects name it in a violation: PostgreSQL
/// by the constraint's name, SQLite by its columns (`UNIQUE constraint
/// failed: users.email`). Migrations name constraints, so each maps to one
/// domain error ([`OnConstraint`]).
#[derive(Debug, Clone, Copy)]
pub struct Unique {
    pub name: &'static str,
    /// `table.column[, table.column]` as SQLite spells them.
    pub columns: &'static str,
}

impl Unique {
    fn violated_by(&self, e: &sqlx::Error) -> bool {
        let Some(db) = e.as_database_error() else {
            return false;
        };
        db.is_unique_violation()
            && match db.constraint() {
                Some(name) => name == self.name,
                None => db
                    .message()
                    .strip_prefix("UNIQUE constraint failed: ")
                    .is_some_and(|columns| columns == self.columns),
            }
    }
}

/// Turns the violation of one named constraint into its domain error; any
/// other database failure converts as usual.
pub trait OnConstraint<T> {
    fn on_constraint(self, constraint: Unique, error: impl FnOnce() -> Error) -> Result<T>;
}

impl<T> OnConstraint<T> for std::result::Result<T, sqlx::Error> {
    fn on_constraint(self, constraint: Unique, error: impl FnOnce() -> Error) -> Result<T> {
        self.map_err(|e| {
            if constraint.violated_by(&e) {
                error()
            } else {
                Error::from(e)
            }
        })
    }
}

/// A point in time with microsecond precision (what PostgreSQL keeps), so a
/// value reads back exactly as written and hashes the same afterwards.
/// PostgreSQL stores it as TIMESTAMPTZ, SQLite as INTEGER microseconds (which,
/// unlike text, orders correctly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn unix_micros(self) -> i64 {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// How long from `self` until `later`; zero when `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn to_proto(self) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.0.div_euclid(1_000_000),
            nanos: i32::try_from(self.0.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
        }
    }

    pub fn from_proto(ts: &prost_types::Timestamp) -> Self {
        Self(
            ts.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(ts.nanos) / 1_000),
        )
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        Self(i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX))
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<i64 as Decode<Sqlite>>::decode(value)?))
    }
}

impl Type<Postgres> for Timestamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode(self.to_offset_date_time(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self::from(<OffsetDateTime as Decode<Postgres>>::decode(
            value,
        )?))
    }
}

impl Db {
    /// Open connections, idle ones, and the maximum (readers and writer together).
    pub fn pool_usage(&self) -> (u32, u32, u32) {
        match self {
            Db::Sqlite { writer, reader } => (
                writer.size() + reader.size(),
                u32::try_from(writer.num_idle() + reader.num_idle()).unwrap_or(u32::MAX),
                writer.options().get_max_connections() + reader.options().get_max_connections(),
            ),
            Db::Postgres(pool) => (
                pool.size(),
                u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                pool.options().get_max_connections(),
            ),
        }
    }
}
