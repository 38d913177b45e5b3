//! auth-service settings: each flag can also be set from the environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::SecretString;

use shared::{
    clock::Clock,
    config::{ServerConfig, duration, duration_or_zero},
    layer::limits::{ClientLimits, LimitSpec},
};

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

    /// Address of the plain HTTP/1.1 server that publishes the signing keys
    /// at `/.well-known/jwks.json` for gateways and JWT libraries; off when
    /// unset.
    #[arg(id = "auth_http_addr", long = "auth-http-addr", env = "AUTH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

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

    /// How often keys kept in the database are read again, so that a key
    /// another replica added is served and accepted here too.
    #[arg(id = "auth_signing_keys_reload", long = "auth-signing-keys-reload", env = "AUTH_SIGNING_KEYS_RELOAD", default_value = "60s", value_parser = duration)]
    pub signing_keys_reload: Duration,

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

    /// Grant the admin role to an existing account with
    /// BOOTSTRAP_ADMIN_EMAIL (its password is kept). Off by default: anyone
    /// could have registered that email first.
    #[arg(
        id = "auth_bootstrap_admin_promote_existing",
        long = "auth-bootstrap-admin-promote-existing",
        env = "BOOTSTRAP_ADMIN_PROMOTE_EXISTING",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub bootstrap_admin_promote_existing: bool,

    /// Password of the bootstrap admin.
    #[arg(
        id = "auth_bootstrap_admin_password",
        long = "auth-bootstrap-admin-password",
        env = "BOOTSTRAP_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "auth_bootstrap_admin_email",
        value_parser = secret
    )]
    pub bootstrap_admin_password: Option<SecretString>,

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

    /// Password hashing requests admitted at once (running and queued);
    /// beyond, Login, Register and ChangePassword answer RESOURCE_EXHAUSTED
    /// at once, so a login flood cannot hold every request slot.
    #[arg(
        id = "auth_argon2_queue_limit",
        long = "auth-argon2-queue-limit",
        env = "ARGON2_QUEUE_LIMIT",
        default_value_t = 64
    )]
    pub argon2_queue_limit: usize,

    /// Token bucket per client address for Register: `RATE/PERIOD:BURST`
    /// or `off` (each registration costs a hash and a row).
    #[arg(id = "auth_rate_limit_register", long = "auth-rate-limit-register", env = "RATE_LIMIT_REGISTER", default_value = "5/1m:20", value_parser = limit)]
    pub rate_limit_register: LimitSpec,

    /// Token bucket per client address for Login.
    #[arg(id = "auth_rate_limit_login", long = "auth-rate-limit-login", env = "RATE_LIMIT_LOGIN", default_value = "3/1s:30", value_parser = limit)]
    pub rate_limit_login: LimitSpec,

    /// Token bucket per client address for RefreshToken.
    #[arg(id = "auth_rate_limit_refresh_token", long = "auth-rate-limit-refresh-token", env = "RATE_LIMIT_REFRESH_TOKEN", default_value = "10/1s:50", value_parser = limit)]
    pub rate_limit_refresh_token: LimitSpec,

    /// Token bucket per client address for Logout.
    #[arg(id = "auth_rate_limit_logout", long = "auth-rate-limit-logout", env = "RATE_LIMIT_LOGOUT", default_value = "10/1s:50", value_parser = limit)]
    pub rate_limit_logout: LimitSpec,

    /// Token bucket per client address for ValidateToken (document-service
    /// in remote mode calls it for every request: exempt its addresses).
    #[arg(id = "auth_rate_limit_validate_token", long = "auth-rate-limit-validate-token", env = "RATE_LIMIT_VALIDATE_TOKEN", default_value = "1000/1s:2000", value_parser = limit)]
    pub rate_limit_validate_token: LimitSpec,

    /// Client addresses (CIDR blocks, comma-separated) never rate-limited:
    /// other services, health checkers.
    #[arg(id = "auth_rate_limit_exempt", long = "auth-rate-limit-exempt", env = "RATE_LIMIT_EXEMPT", value_delimiter = ',', value_parser = shared::client::cidr)]
    pub rate_limit_exempt: Vec<ipnet::IpNet>,

    /// Failed logins from one client address (across any emails) before
    /// the address waits: 30 s, doubling per further failure.
    #[arg(
        id = "auth_address_max_failures",
        long = "auth-address-max-failures",
        env = "ADDRESS_MAX_FAILURES",
        default_value_t = 20
    )]
    pub address_max_failures: i64,

    /// The longest an address waits after failed logins.
    #[arg(id = "auth_address_max_lock", long = "auth-address-max-lock", env = "ADDRESS_MAX_LOCK", default_value = "5m", value_parser = duration)]
    pub address_max_lock: Duration,

    /// The longest the revocation state in memory may go without being
    /// confirmed complete (the log polled); beyond, token checks read the
    /// database. 0 means always read it.
    #[arg(id = "auth_revocation_max_staleness", long = "auth-revocation-max-staleness", env = "REVOCATION_MAX_STALENESS", default_value = "2s", value_parser = duration_or_zero)]
    pub revocation_max_staleness: Duration,

    /// How often the revocation log is read for facts other replicas
    /// wrote (the worst-case delay between replicas).
    #[arg(id = "auth_revocation_poll_interval", long = "auth-revocation-poll-interval", env = "REVOCATION_POLL_INTERVAL", default_value = "100ms", value_parser = duration)]
    pub revocation_poll_interval: Duration,

    /// How long revocation facts are kept: at least ACCESS_TOKEN_TTL plus
    /// the 30 s clock skew allowed, after which every token a fact revoked
    /// has expired. A subscriber away for longer resyncs from a snapshot.
    #[arg(id = "auth_revocation_retention", long = "auth-revocation-retention", env = "REVOCATION_RETENTION", default_value = "24h", value_parser = duration)]
    pub revocation_retention: Duration,

    /// A file holding `client_id:secret` of the service account that
    /// document-service uses (role `service`). Read at start, or written
    /// with fresh credentials when it does not exist; the account and the
    /// secret are created when missing. docker-compose and the local stack
    /// share it with document-service, so no one copies a secret by hand.
    #[arg(
        id = "auth_bootstrap_service_credentials_file",
        long = "auth-bootstrap-service-credentials-file",
        env = "BOOTSTRAP_SERVICE_CREDENTIALS_FILE"
    )]
    pub bootstrap_service_credentials_file: Option<PathBuf>,

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
    /// The public RPCs' token buckets.
    pub fn client_limits(&self) -> ClientLimits {
        const AUTH: &str = "/docverify.auth.v1.AuthService/";
        let limits = [
            ("Register", self.rate_limit_register),
            ("Login", self.rate_limit_login),
            ("RefreshToken", self.rate_limit_refresh_token),
            ("Logout", self.rate_limit_logout),
            ("ValidateToken", self.rate_limit_validate_token),
            // The secret is 256 random bits: the bucket bounds the work and
            // the audit rows, not guessing.
            ("IssueServiceToken", self.rate_limit_validate_token),
        ];
        let limits: Vec<(&'static str, LimitSpec)> = limits
            .into_iter()
            .filter_map(|(name, spec)| {
                shared::policy::method(&format!("{AUTH}{name}")).map(|m| (m.path, spec))
            })
            .collect();
        ClientLimits::new(&limits, self.rate_limit_exempt.clone())
    }
}

shared::service_config!(Config, crate::SERVICE, crate::serve);

pub use shared::config::secret;

fn limit(s: &str) -> Result<LimitSpec, String> {
    s.parse()
}
