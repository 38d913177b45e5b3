//! auth-service settings: each flag can also be set from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use shared::{clock::Clock, config::ServerConfig, db::PoolConfig};

#[derive(Debug, Clone, clap::Args)]
#[group(id = "auth_config")]
#[command(next_help_heading = "auth-service")]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        id = "auth_listen_addr",
        long = "auth-listen-addr",
        env = "AUTH_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,

    /// `sqlite://path` (the embedded default) or `postgres://...`.
    #[arg(
        id = "auth_database_url",
        long = "auth-database-url",
        env = "AUTH_DATABASE_URL",
        default_value = "sqlite://data/auth.db"
    )]
    pub database_url: String,

    /// Ed25519 private keys (PKCS#8 PEM), comma-separated: the first signs,
    /// the others still verify. Without any, a key is generated on first start
    /// and kept in the database.
    #[arg(
        id = "auth_signing_key_files",
        long = "auth-signing-key-file",
        env = "AUTH_SIGNING_KEY_FILE",
        value_delimiter = ','
    )]
    pub signing_key_files: Vec<PathBuf>,

    /// Access-token lifetime.
    #[arg(id = "auth_access_token_ttl", long = "auth-access-token-ttl", env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = duration)]
    pub access_token_ttl: Duration,

    /// Refresh-token lifetime.
    #[arg(id = "auth_refresh_token_ttl", long = "auth-refresh-token-ttl", env = "REFRESH_TOKEN_TTL", default_value = "14d", value_parser = duration)]
    pub refresh_token_ttl: Duration,

    /// Create this admin at start when no admin exists.
    #[arg(
        id = "auth_bootstrap_admin_email",
        long = "auth-bootstrap-admin-email",
        env = "BOOTSTRAP_ADMIN_EMAIL",
        requires = "auth_bootstrap_admin_password"
    )]
    pub bootstrap_admin_email: Option<String>,

    /// Password of the bootstrap admin.
    #[arg(
        id = "auth_bootstrap_admin_password",
        long = "auth-bootstrap-admin-password",
        env = "BOOTSTRAP_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "auth_bootstrap_admin_email"
    )]
    pub bootstrap_admin_password: Option<String>,

    /// Maximum database connections.
    #[arg(
        id = "auth_db_max_connections",
        long = "auth-db-max-connections",
        env = "AUTH_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub db_max_connections: u32,

    /// Password hashes computed at once (default: one per core).
    #[arg(
        id = "auth_argon2_workers",
        long = "auth-argon2-workers",
        env = "ARGON2_WORKERS"
    )]
    pub argon2_workers: Option<usize>,

    /// Create `admin@localhost` with a random password (printed once) when
    /// no admin exists and no bootstrap admin is configured: the local stack.
    #[arg(skip)]
    pub generate_local_admin: bool,

    /// Limits, TLS, health and shutdown: parsed once per process (see
    /// [`ServerConfig`]) and set by the binary.
    #[arg(skip)]
    pub server: ServerConfig,

    /// The source of time (tests move it by hand).
    #[arg(skip = Clock::system())]
    pub clock: Clock,
}

impl Config {
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.db_max_connections,
            acquire_timeout: self.server.db_acquire_timeout,
        }
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    shared::config::duration(s)
}
