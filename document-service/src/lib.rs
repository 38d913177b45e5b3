//! document-service: users upload documents, verifiers verify or reject them,
//! auditors later answer "who verified it, when, and what was done?".
//!
//! A library first: [`serve`] takes its listener and shutdown signal. In the
//! default mode it never calls auth-service on the request path: tokens are
//! verified locally with the published keys.

mod api;
pub mod cli;
pub mod config;
mod documents;
mod upload;

use std::{future::Future, sync::Arc};

use shared::{
    Error, Result,
    audit::AuditApi,
    db::{Db, Migrations},
    layer::{RpcLayer, limits::ClientLimits},
    page::PageTokens,
    proto::{
        audit::v1::audit_service_server::AuditServiceServer,
        document::v1::document_service_server::DocumentServiceServer,
    },
    server::Health,
    verifier::{JwksVerifier, RemoteVerifier, TokenVerifier},
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, server::TcpIncoming,
};

pub use config::{Config, TokenValidation};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/postgres");

/// document-service's schema, one folder per dialect.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

const DOCUMENT_SERVICE: &str = "docverify.document.v1.DocumentService";
const AUDIT_SERVICE: &str = "docverify.audit.v1.AuditService";
/// document-service reports auth-service's reachability under this name.
const AUTH_SERVICE: &str = "docverify.auth.v1.AuthService";
/// Download chunks (256 KiB) and audit pages must always fit.
const MIN_SEND_BYTES: usize = 1024 * 1024;

pub async fn migrate(config: &Config) -> Result<Db> {
    let db = Db::connect_waiting(
        &config.database_url,
        &config.pool(),
        "DOCUMENT_DATABASE_URL",
        config.server.db_startup_timeout,
    )
    .await?;
    db.migrate(MIGRATIONS).await?;
    Ok(db)
}

/// Runs document-service on `listener` until `shutdown` completes, then
/// drains in-flight RPCs for at most the configured drain timeout.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = migrate(&config).await?;
    shared::audit::check_triggers(&db).await?;
    let now = config.clock.now();
    let page_tokens = PageTokens::new(&db.secret("page_tokens", now).await?);

    let server = &config.server;
    let auth = auth_channel(&config)?;
    let mut refresher = None;
    let verifier: Arc<dyn TokenVerifier> = match config.token_validation {
        TokenValidation::Local => {
            let jwks = Arc::new(JwksVerifier::new(auth.clone(), config.clock.clone()));
            refresher = Some(jwks.spawn_refresh(config.signing_keys_refresh));
            jwks
        }
        TokenValidation::Remote => Arc::new(RemoteVerifier::new(auth.clone())),
    };
    let layer = RpcLayer::new(
        "document-service",
        verifier,
        db.clone(),
        config.clock.clone(),
        server,
        // No public RPC here needs a bucket: health, reflection only.
        ClientLimits::new(&[], Vec::new()),
    );
    shared::metrics::METRICS.watch_pool("document-service", &db);

    let (health, health_service) = Health::new(&[DOCUMENT_SERVICE, AUDIT_SERVICE]);
    health.set(true).await;
    let monitors = [
        health.follow_database(db.clone(), server.health_check_interval),
        health.follow_dependency(AUTH_SERVICE, auth, server.health_check_interval),
    ];
    let (reflection_v1, reflection_v1alpha) =
        shared::server::reflection(&[DOCUMENT_SERVICE, AUDIT_SERVICE])?;
    let (signal, deadline) =
        shared::server::graceful(shutdown, server.shutdown_drain_timeout, health);

    let documents = api::DocumentApi::new(
        db.clone(),
        config.clock.clone(),
        page_tokens.clone(),
        config.max_document_bytes,
    );
    let max = server.max_message_bytes;
    let router = shared::server::builder(server)?
        .layer(shared::server::cors(server))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(layer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            DocumentServiceServer::new(documents)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max.max(MIN_SEND_BYTES)),
        )
        .add_service(
            AuditServiceServer::new(AuditApi::new(db.clone(), page_tokens))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max.max(MIN_SEND_BYTES)),
        );
    let addr = listener.local_addr().map_err(Error::internal)?;
    tracing::info!(%addr, "document-service listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => served.map_err(Error::internal)?,
        () = deadline => {}
    }
    for task in monitors.into_iter().chain(refresher) {
        task.abort();
    }
    db.close().await;
    tracing::info!("document-service stopped");
    Ok(())
}

/// The channel to auth-service: TLS when its URL is `https://` (trusting
/// AUTH_CA_FILE, else the public web roots), presenting TLS_CERT_FILE as the
/// client certificate when auth-service requires mutual TLS.
fn auth_channel(config: &Config) -> Result<Channel> {
    let url = &config.auth_service_url;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Error::internal(format!("AUTH_SERVICE_URL {url}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(5));
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &config.auth_ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(shared::server::read_pem(
                "AUTH_CA_FILE",
                ca,
            )?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file)
        {
            tls = tls.identity(Identity::from_pem(
                shared::server::read_pem("TLS_CERT_FILE", cert)?,
                shared::server::read_pem("TLS_KEY_FILE", key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::internal(format!("AUTH_SERVICE_URL {url}: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}
