//! auth-service: who is making this request? Registration, login with
//! argon2id, EdDSA access tokens, rotating refresh tokens with reuse
//! detection, users and roles, login throttling, published signing keys.
//!
//! A library first: [`serve`] takes its listener and shutdown signal, so tests
//! run the real server on port 0 and the local stack runs it beside
//! document-service in one process.

mod auth_api;
mod bootstrap;
pub mod cli;
pub mod config;
pub mod fields;
mod password;
mod sessions;
mod signing;
mod state;
mod throttle;
mod users;
mod users_api;
mod verifier;

use std::{future::Future, sync::Arc};

use shared::{
    Error, Result,
    audit::AuditApi,
    db::{Db, Migrations},
    layer::RpcLayer,
    proto::{
        audit::v1::audit_service_server::AuditServiceServer,
        auth::v1::{
            auth_service_server::AuthServiceServer, user_service_server::UserServiceServer,
        },
    },
    server::Health,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use bootstrap::create_admin;
pub use config::Config;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/auth/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/auth/postgres");

/// auth-service's schema, one folder per dialect.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

const AUTH_SERVICE: &str = "docverify.auth.v1.AuthService";
const USER_SERVICE: &str = "docverify.auth.v1.UserService";
const AUDIT_SERVICE: &str = "docverify.audit.v1.AuditService";

/// Connects to the database and applies the migrations (the `migrate`
/// subcommand, and the first step of [`serve`]).
pub async fn migrate(config: &Config) -> Result<Db> {
    let db = Db::connect_waiting(
        &config.database_url,
        &config.pool(),
        "AUTH_DATABASE_URL",
        config.server.db_startup_timeout,
    )
    .await?;
    db.migrate(MIGRATIONS).await?;
    Ok(db)
}

/// Runs auth-service on `listener` until `shutdown` completes, then drains
/// in-flight RPCs for at most the configured drain timeout.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = migrate(&config).await?;
    shared::audit::check_triggers(&db).await?;
    let state = Arc::new(state::State::build(&config, db.clone()).await?);
    bootstrap::bootstrap_admin(&state, &config).await?;

    let server = &config.server;
    let layer = RpcLayer::new(
        "auth-service",
        Arc::new(verifier::AuthVerifier::new(state.clone())),
        db.clone(),
        config.clock.clone(),
        server,
        config.client_limits(),
    );
    shared::metrics::METRICS.watch_pool("auth-service", &db);
    let (health, health_service) = Health::new(&[AUTH_SERVICE, USER_SERVICE, AUDIT_SERVICE]);
    health.set(true).await;
    let mut background = vec![
        health.follow_database(db.clone(), server.health_check_interval),
        throttle::spawn_window_sweep(db.clone(), config.clock.clone()),
    ];
    background.extend(state.keys.spawn_reload(config.signing_keys_reload));
    let (reflection_v1, reflection_v1alpha) =
        shared::server::reflection(&[AUTH_SERVICE, USER_SERVICE, AUDIT_SERVICE])?;
    let (signal, deadline) =
        shared::server::graceful(shutdown, server.shutdown_drain_timeout, health);

    let max = server.max_message_bytes;
    let router = shared::server::builder(server)?
        .layer(shared::server::cors(server))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(layer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AuthServiceServer::new(auth_api::AuthApi::new(state.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            UserServiceServer::new(users_api::UsersApi::new(state.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AuditServiceServer::new(AuditApi::new(db.clone(), state.page_tokens.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    let addr = listener.local_addr().map_err(Error::internal)?;
    tracing::info!(%addr, "auth-service listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => served.map_err(Error::internal)?,
        () = deadline => {}
    }
    for task in background {
        task.abort();
    }
    db.close().await;
    tracing::info!("auth-service stopped");
    Ok(())
}
