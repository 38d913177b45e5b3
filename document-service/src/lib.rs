//! document-service: users upload documents, verifiers verify or reject them,
//! auditors later answer "who verified it, when, and what was done?".
//!
//! A library first: [`serve`] takes its listener and shutdown signal. In the
//! default mode it never calls auth-service on the request path: tokens are
//! verified locally with the published keys.

mod api;
pub mod config;
mod documents;
mod upload;

use std::{future::Future, sync::Arc};

use shared::{
    Error, Result,
    audit::AuditApi,
    db::{Db, Migrations},
    layer::RpcLayer,
    page::PageTokens,
    proto::{
        audit::v1::audit_service_server::AuditServiceServer,
        document::v1::document_service_server::DocumentServiceServer,
    },
    verifier::{JwksVerifier, RemoteVerifier, TokenVerifier},
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};

pub use config::{Config, TokenValidation};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/document/postgres");

/// document-service's schema, one folder per dialect.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// Largest message accepted: upload chunks and small requests.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Download chunks are at most this big on the wire.
const MAX_SEND_BYTES: usize = 4 * 1024 * 1024;

pub async fn migrate(config: &Config) -> Result<Db> {
    let db = Db::connect(&config.database_url, &config.pool()).await?;
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

    let auth = Endpoint::from_shared(config.auth_service_url.clone())
        .map_err(|e| Error::internal(format!("AUTH_SERVICE_URL {}: {e}", config.auth_service_url)))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let mut refresher = None;
    let verifier: Arc<dyn TokenVerifier> = match config.token_validation {
        TokenValidation::Local => {
            let jwks = Arc::new(JwksVerifier::new(auth, config.clock.clone()));
            refresher = Some(jwks.spawn_refresh(config.signing_keys_refresh));
            jwks
        }
        TokenValidation::Remote => Arc::new(RemoteVerifier::new(auth)),
    };
    let layer = RpcLayer::new(verifier, db.clone(), config.clock.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DocumentServiceServer<api::DocumentApi>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = shared::server::reflection(&[
        "docverify.document.v1.DocumentService",
        "docverify.audit.v1.AuditService",
    ])?;
    let (signal, deadline) = shared::server::graceful(shutdown, config.shutdown_drain_timeout);

    let documents = api::DocumentApi::new(
        db.clone(),
        config.clock.clone(),
        page_tokens.clone(),
        config.max_document_bytes,
    );
    let router = Server::builder()
        .layer(layer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            DocumentServiceServer::new(documents)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_SEND_BYTES),
        )
        .add_service(
            AuditServiceServer::new(AuditApi::new(db.clone(), page_tokens))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    let addr = listener.local_addr().map_err(Error::internal)?;
    tracing::info!(%addr, "document-service listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => served.map_err(Error::internal)?,
        () = deadline => {}
    }
    if let Some(task) = refresher {
        task.abort();
    }
    db.close().await;
    tracing::info!("document-service stopped");
    Ok(())
}
