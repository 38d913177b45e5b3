//! Settings both services share (limits, TLS, health, shutdown), parsed once
//! per process: each service binary and the local stack flatten
//! [`ServerConfig`] into their command line and hand it to every service.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

/// Parses durations such as `15m`, `900s`, `14d`; zero is refused.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = duration_or_zero(s)?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(d)
}

/// [`duration`] for settings where `0` has a meaning of its own.
pub fn duration_or_zero(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// A secret from the command line or the environment, kept out of `Debug`.
pub fn secret(s: &str) -> Result<secrecy::SecretString, String> {
    Ok(s.into())
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
#[group(id = "server_config")]
#[command(next_help_heading = "server (both services)")]
pub struct ServerConfig {
    /// Largest request message accepted, in bytes (upload chunks included).
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Concurrent RPCs (HTTP/2 streams) per connection.
    #[arg(long, env = "MAX_CONCURRENT_STREAMS", default_value_t = 128)]
    pub max_concurrent_streams: u32,

    /// RPCs in flight per service; beyond, new ones are refused at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Streaming RPCs (downloads, uploads, health Watch, reflection) in
    /// flight per service. They have a budget of their own, apart from
    /// MAX_CONCURRENT_REQUESTS, so idle streams can never starve unary calls.
    #[arg(long, env = "MAX_CONCURRENT_STREAMING_CALLS", default_value_t = 256)]
    pub max_concurrent_streaming_calls: usize,

    /// Streaming RPCs in flight per client connection.
    #[arg(long, env = "MAX_STREAMING_CALLS_PER_CONNECTION", default_value_t = 16)]
    pub max_streaming_calls_per_connection: usize,

    /// A streamed response that the client does not read for this long
    /// (flow control closed) is ended and its slot freed; each stream is
    /// looked at every quarter of this (10 ms to 1 s), so up to that later.
    #[arg(long, env = "STREAM_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub stream_idle_timeout: Duration,

    /// The longest a streamed response lives; then it ends with
    /// DEADLINE_EXCEEDED (`STREAM_LIFETIME_EXCEEDED`) and the client opens a
    /// new one (as gRPC's max connection age makes it reconnect).
    #[arg(long, env = "STREAM_MAX_LIFETIME", default_value = "30m", value_parser = duration)]
    pub stream_max_lifetime: Duration,

    /// Longest an RPC may run (a shorter `grpc-timeout` from the caller wins).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,

    /// HTTP/2 keepalive ping interval.
    #[arg(long, env = "HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a keepalive ping may go unanswered before the connection closes.
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub http2_keepalive_timeout: Duration,

    /// How long a service waits at start for a database that is not up yet
    /// (PostgreSQL), retrying with backoff, before it exits naming the setting.
    #[arg(long, env = "DB_STARTUP_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub db_startup_timeout: Duration,

    /// How long a request waits for a database connection before UNAVAILABLE.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub db_acquire_timeout: Duration,

    /// PostgreSQL: the longest one statement may run (`statement_timeout`).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub db_statement_timeout: Duration,

    /// PostgreSQL: the longest a statement waits for a lock (`lock_timeout`).
    #[arg(long, env = "DB_LOCK_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub db_lock_timeout: Duration,

    /// PostgreSQL: the longest a transaction may sit idle
    /// (`idle_in_transaction_session_timeout`).
    #[arg(long, env = "DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub db_idle_in_transaction_timeout: Duration,

    /// How often health checks the database (and document-service auth-service).
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = duration)]
    pub health_check_interval: Duration,

    /// How long in-flight RPCs may run on after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_DRAIN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_drain_timeout: Duration,

    /// Origins allowed to call over gRPC-Web from a browser, comma-separated
    /// (`*` for any). Empty: no CORS headers, so browsers on other origins are refused.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Serve TLS with this certificate chain (PEM); needs TLS_KEY_FILE.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Proxies (CIDR blocks or addresses, comma-separated) whose
    /// `x-forwarded-for` / `forwarded` headers name the client; from anyone
    /// else those headers are ignored. Empty: the direct peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client::cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Prometheus metrics on this address (`/metrics`); off when unset.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// `text` or `json` (one object per line).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Ed25519 private key (PKCS#8 PEM) that signs the audit log's
    /// checkpoints. Unset: a key is generated on first start and kept in the
    /// service's database.
    #[arg(long, env = "AUDIT_SIGNING_KEY_FILE")]
    pub audit_signing_key_file: Option<PathBuf>,

    /// The audit logs' name: each service's log is `<name>/<service>` (its
    /// checkpoints' origin and its key's name). Use a name of your own, such
    /// as `audit.example.com`, so checkpoints of your logs are told apart.
    #[arg(long, env = "AUDIT_LOG_NAME", default_value = "docverify", value_parser = crate::audit::log_name)]
    pub audit_log_name: String,

    /// How often each replica looks for audit events to sequence.
    #[arg(long, env = "AUDIT_SEQUENCE_INTERVAL", default_value = "100ms", value_parser = duration)]
    pub audit_sequence_interval: Duration,

    /// Health reports `docverify.audit.v1.Sequencer` NOT_SERVING when events
    /// have waited this long without the log growing.
    #[arg(long, env = "AUDIT_MAX_LAG", default_value = "10s", value_parser = duration)]
    pub audit_max_lag: Duration,
}

impl ServerConfig {
    /// The streaming calls' budget and time bounds.
    pub fn streams(&self) -> crate::layer::streams::StreamConfig {
        crate::layer::streams::StreamConfig {
            per_service: self.max_concurrent_streaming_calls,
            per_connection: self.max_streaming_calls_per_connection,
            idle_timeout: self.stream_idle_timeout,
            max_lifetime: self.stream_max_lifetime,
        }
    }

    /// The pool settings of a service with `max_connections`.
    pub fn pool(&self, max_connections: u32) -> crate::db::PoolConfig {
        crate::db::PoolConfig {
            max_connections,
            acquire_timeout: self.db_acquire_timeout,
            statement_timeout: self.db_statement_timeout,
            lock_timeout: self.db_lock_timeout,
            idle_in_transaction_timeout: self.db_idle_in_transaction_timeout,
        }
    }
}

#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    server: ServerConfig,
}

impl Default for ServerConfig {
    /// The documented defaults, ignoring the environment.
    fn default() -> Self {
        let matches = DefaultsOnly::command_without_env().try_get_matches_from(["defaults"]);
        match matches.and_then(|m| clap::FromArgMatches::from_arg_matches(&m)) {
            Ok(DefaultsOnly { server }) => server,
            Err(e) => panic!("server defaults do not parse: {e}"),
        }
    }
}

impl DefaultsOnly {
    fn command_without_env() -> clap::Command {
        use clap::CommandFactory;
        let command = Self::command();
        let ids: Vec<_> = command
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect();
        ids.into_iter()
            .fold(command, |c, id| c.mut_arg(id, |a| a.env(None::<&str>)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_a_duration_only_where_it_means_something() {
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("2s"), Ok(Duration::from_secs(2)));
        assert!(duration_or_zero("soon").is_err());
        assert!(duration("0").is_err() && duration("0s").is_err());
        assert_eq!(duration("100ms"), Ok(Duration::from_millis(100)));
    }
}
