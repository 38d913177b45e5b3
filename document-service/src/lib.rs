//! document-service: users upload documents, verifiers verify or reject them,
//! auditors later answer "who verified it, when, and what was done?".
//!
//! A library first: [`serve`] takes its listener and shutdown signal. In the
//! default mode it never calls auth-service on the request path: tokens are
//! verified locally with the published keys. What every service shares (the
//! layer, health, reflection, the drain) is assembled by `shared::service`.

mod api;
mod auth_channel;
#[doc(hidden)]
pub mod baseline;
pub mod cli;
pub mod config;
mod documents;
mod fields;
mod state;

use std::{future::Future, sync::Arc};

use shared::{
    Result,
    audit::{AuditApi, Log},
    cli::ServiceConfig,
    db::{Db, Migrations},
    layer::limits::ClientLimits,
    page::PageTokens,
    proto::{
        audit::v1::audit_service_server::AuditServiceServer,
        document::v1::document_service_server::DocumentServiceServer,
    },
    revocation::{Feed, Revocations},
    service::{Condition, Parts, Service},
    token::{JwksVerifier, RemoteVerifier, TokenVerifier},
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::{Config, TokenValidation};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/postgres");

/// document-service as the shared server sees it.
pub static SERVICE: Service = Service {
    name: "document-service",
    grpc_services: &[
        "docverify.document.v1.DocumentService",
        "docverify.audit.v1.AuditService",
    ],
    migrations: Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    },
    listen_setting: "DOCUMENT_LISTEN_ADDR",
    database_setting: "DOCUMENT_DATABASE_URL",
};

/// document-service reports auth-service's reachability under this name.
const AUTH_SERVICE: &str = "docverify.auth.v1.AuthService";
/// ...and whether its revocation feed is fresh (SERVING) or tokens are
/// being checked with ValidateToken (NOT_SERVING), under this one.
const REVOCATION_FEED: &str = "docverify.auth.v1.RevocationService";
/// Download chunks (256 KiB) and audit pages must always fit.
const MIN_SEND_BYTES: usize = 1024 * 1024;

/// Connects to the database and applies the migrations (the `migrate`
/// subcommand).
pub async fn migrate(config: &Config) -> Result<Db> {
    SERVICE.migrate(&config.database(), &config.server).await
}

/// Runs document-service on `listener` until `shutdown` completes, then
/// drains in-flight RPCs for at most the configured drain timeout.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = SERVICE.open(&config.database(), &config.server).await?;
    let now = config.clock.now();
    let page_tokens = PageTokens::new(&db.secret("page_tokens", now).await?);
    let audit = Log::open(&db, SERVICE.name, &config.server, config.clock.clone()).await?;

    let auth = auth_channel::connect(&config)?;
    let mut background = Vec::new();
    let mut conditions: Vec<(&'static str, Condition)> = Vec::new();
    let verifier: Arc<dyn TokenVerifier> = match config.token_validation {
        TokenValidation::Local => {
            let revocations = Arc::new(Revocations::default());
            match config.credentials() {
                Some(credentials) => {
                    let feed = Feed::new(auth.clone(), credentials, revocations.clone());
                    background.push(feed.spawn());
                }
                None => tracing::warn!(
                    "no DOCUMENT_CLIENT_ID / DOCUMENT_CLIENT_SECRET (or DOCUMENT_CLIENT_CREDENTIALS_FILE): \
                     no revocation feed, so every token is checked with auth-service's ValidateToken"
                ),
            }
            let bound = config.revocation_max_staleness;
            let feed_state = revocations.clone();
            conditions.push((
                REVOCATION_FEED,
                Arc::new(move || feed_state.is_fresh(bound)),
            ));
            let jwks = Arc::new(JwksVerifier::new(
                SERVICE.name,
                auth.clone(),
                config.clock.clone(),
                revocations,
                bound,
            ));
            background.push(jwks.spawn_refresh(config.signing_keys_refresh));
            jwks
        }
        TokenValidation::Remote => Arc::new(RemoteVerifier::new(auth.clone())),
    };

    let state = Arc::new(state::State {
        db: db.clone(),
        clock: config.clock.clone(),
        page_tokens: page_tokens.clone(),
        max_document_bytes: config.max_document_bytes,
        request_timeout: config.server.request_timeout,
        audit: audit.clone(),
    });
    let max = config.server.max_message_bytes;
    let routes = Routes::new(
        DocumentServiceServer::new(api::documents::DocumentApi::new(state))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max.max(MIN_SEND_BYTES)),
    )
    .add_service(
        AuditServiceServer::new(AuditApi::new(audit.clone(), page_tokens))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max.max(MIN_SEND_BYTES)),
    );
    let parts = Parts {
        db,
        verifier,
        clock: config.clock.clone(),
        // No public RPC here needs a bucket: health, reflection only.
        limits: ClientLimits::new(&[], Vec::new()),
        background,
        dependencies: vec![(AUTH_SERVICE, auth)],
        conditions,
        audit,
    };
    SERVICE
        .serve(&config.server, parts, routes, listener, shutdown)
        .await
}
