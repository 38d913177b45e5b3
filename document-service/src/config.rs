//! document-service settings: each flag can also be set from the environment.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;
use shared::{
    clock::Clock,
    config::{ServerConfig, duration, duration_or_zero, secret},
    revocation::Credentials,
};

/// How document-service checks access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenValidation {
    /// Verify locally with auth-service's published keys (no call per request).
    Local,
    /// Ask auth-service's ValidateToken for every request.
    Remote,
}

#[derive(Debug, Clone, clap::Args)]
#[group(id = "document_config")]
#[command(next_help_heading = "document-service")]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        id = "document_listen_addr",
        long = "document-listen-addr",
        env = "DOCUMENT_LISTEN_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub listen_addr: SocketAddr,

    /// `sqlite://path` (the embedded default) or `postgres://...`.
    #[arg(
        id = "document_database_url",
        long = "document-database-url",
        env = "DOCUMENT_DATABASE_URL",
        default_value = "sqlite://data/documents.db"
    )]
    pub database_url: String,

    /// Where auth-service is reached (signing keys, remote validation).
    #[arg(
        id = "document_auth_service_url",
        long = "document-auth-service-url",
        env = "AUTH_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_service_url: String,

    /// CA (PEM) that signed auth-service's certificate, for an `https://`
    /// AUTH_SERVICE_URL with a private CA.
    #[arg(
        id = "document_auth_ca_file",
        long = "document-auth-ca-file",
        env = "AUTH_CA_FILE"
    )]
    pub auth_ca_file: Option<std::path::PathBuf>,

    /// `local` (verify with published keys) or `remote` (ask auth-service).
    #[arg(id = "document_token_validation", long = "document-token-validation", env = "TOKEN_VALIDATION", value_enum, default_value_t = TokenValidation::Local)]
    pub token_validation: TokenValidation,

    /// Largest document accepted, in bytes.
    #[arg(id = "document_max_document_bytes", long = "document-max-document-bytes", env = "MAX_DOCUMENT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_document_bytes: u64,

    /// How often the signing keys are fetched again.
    #[arg(id = "document_signing_keys_refresh", long = "document-signing-keys-refresh", env = "SIGNING_KEYS_REFRESH", default_value = "5m", value_parser = duration)]
    pub signing_keys_refresh: Duration,

    /// In `local` mode, the longest the revocation feed may go without a
    /// heartbeat before each token is checked with ValidateToken instead
    /// (and, with auth-service unreachable too, protected RPCs answer
    /// UNAVAILABLE). 0 means always ask auth-service.
    #[arg(id = "document_revocation_max_staleness", long = "document-revocation-max-staleness", env = "REVOCATION_MAX_STALENESS", default_value = "2s", value_parser = duration_or_zero)]
    pub revocation_max_staleness: Duration,

    /// The service account (role `service`) that reads auth-service's
    /// revocation feed: its client id...
    #[arg(
        id = "document_client_id",
        long = "document-client-id",
        env = "DOCUMENT_CLIENT_ID",
        requires = "document_client_secret",
        conflicts_with = "document_client_credentials_file"
    )]
    pub client_id: Option<String>,

    /// ...and its secret.
    #[arg(
        id = "document_client_secret",
        long = "document-client-secret",
        env = "DOCUMENT_CLIENT_SECRET",
        hide_env_values = true,
        requires = "document_client_id",
        value_parser = secret
    )]
    pub client_secret: Option<SecretString>,

    /// Or a file holding `client_id:secret` (auth-service's
    /// BOOTSTRAP_SERVICE_CREDENTIALS_FILE), read when the feed starts.
    #[arg(
        id = "document_client_credentials_file",
        long = "document-client-credentials-file",
        env = "DOCUMENT_CLIENT_CREDENTIALS_FILE"
    )]
    pub client_credentials_file: Option<std::path::PathBuf>,

    /// Maximum database connections.
    #[arg(
        id = "document_db_max_connections",
        long = "document-db-max-connections",
        env = "DOCUMENT_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub db_max_connections: u32,

    /// Limits, TLS, health and shutdown: parsed once per process (see
    /// [`ServerConfig`]) and set by the binary.
    #[arg(skip)]
    pub server: ServerConfig,

    /// The source of time (tests move it by hand).
    #[arg(skip = Clock::system())]
    pub clock: Clock,
}

shared::service_config!(Config, crate::SERVICE, crate::serve);

impl Config {
    /// How the revocation feed authenticates, if it can.
    pub fn credentials(&self) -> Option<Credentials> {
        match (
            &self.client_id,
            &self.client_secret,
            &self.client_credentials_file,
        ) {
            (Some(client_id), Some(secret), _) => Some(Credentials::Given {
                client_id: client_id.clone(),
                secret: secret.clone(),
            }),
            (_, _, Some(path)) => Some(Credentials::File(path.clone())),
            _ => None,
        }
    }
}
