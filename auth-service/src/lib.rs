//! auth-service: who is making this request? Registration, login with
//! argon2id, EdDSA access tokens, rotating refresh tokens with reuse
//! detection, users and roles, login throttling, published signing keys.
//!
//! A library first: [`serve`] takes its listener and shutdown signal, so tests
//! run the real server on port 0 and the local stack runs it beside
//! document-service in one process. What every service shares (the layer,
//! health, reflection, the drain) is assembled by `shared::service`.

mod api;
mod bootstrap;
pub mod cli;
pub mod config;
pub mod fields;
mod jwks;
mod password;
mod revocation;
mod service_accounts;
mod state;
mod throttle;
mod token;
mod user_cache;
mod users;

use std::{future::Future, sync::Arc};

use shared::{
    Result,
    audit::{AuditApi, Log},
    cli::ServiceConfig,
    db::{Db, Migrations},
    proto::{
        audit::v1::audit_service_server::AuditServiceServer,
        auth::v1::{
            auth_service_server::AuthServiceServer,
            revocation_service_server::RevocationServiceServer,
            service_account_service_server::ServiceAccountServiceServer,
            user_service_server::UserServiceServer,
        },
    },
    service::{Parts, Service},
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use bootstrap::create_admin;
pub use config::Config;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/auth/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/auth/postgres");

/// auth-service as the shared server sees it.
pub static SERVICE: Service = Service {
    name: "auth-service",
    grpc_services: &[
        "docverify.auth.v1.AuthService",
        "docverify.auth.v1.UserService",
        "docverify.auth.v1.RevocationService",
        "docverify.auth.v1.ServiceAccountService",
        "docverify.audit.v1.AuditService",
    ],
    migrations: Migrations {
        sqlite: &SQLITE_MIGRATIONS,
        postgres: &POSTGRES_MIGRATIONS,
    },
    listen_setting: "AUTH_LISTEN_ADDR",
    database_setting: "AUTH_DATABASE_URL",
};

/// Connects to the database and applies the migrations (the `migrate`
/// subcommand).
pub async fn migrate(config: &Config) -> Result<Db> {
    SERVICE.migrate(&config.database(), &config.server).await
}

/// Runs auth-service on `listener` until `shutdown` completes, then drains
/// in-flight RPCs for at most the configured drain timeout.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = SERVICE.open(&config.database(), &config.server).await?;
    let audit = Log::open(&db, SERVICE.name, &config.server, config.clock.clone()).await?;
    let state = Arc::new(state::State::build(&config, db.clone()).await?);
    bootstrap::bootstrap_admin(&state, &config).await?;
    bootstrap::bootstrap_service_account(&state, &config).await?;
    revocation::prune(&state, config.revocation_retention).await?;
    let keys_http = match config.http_addr {
        Some(addr) => Some(jwks::bind(addr).await?),
        None => None,
    };

    let max = config.server.max_message_bytes;
    let routes = Routes::new(
        AuthServiceServer::new(api::auth::AuthApi::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        UserServiceServer::new(api::users::UsersApi::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        RevocationServiceServer::new(revocation::api::RevocationApi::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        ServiceAccountServiceServer::new(api::service_accounts::ServiceAccountsApi::new(
            state.clone(),
        ))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max),
    )
    .add_service(
        AuditServiceServer::new(AuditApi::new(audit.clone(), state.page_tokens.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    );
    let mut background = vec![throttle::spawn_window_sweep(
        db.clone(),
        config.clock.clone(),
    )];
    background.extend(state.keys.spawn_reload(config.signing_keys_reload));
    background.extend(
        keys_http
            .map(|listener| jwks::spawn(listener, state.keys.clone(), config.signing_keys_reload)),
    );
    background.push(revocation::spawn_poller(
        &state,
        config.revocation_poll_interval,
    ));
    background.push(revocation::spawn_pruner(
        &state,
        config.revocation_retention,
    ));
    let parts = Parts {
        db,
        verifier: Arc::new(token::verifier::AuthVerifier::new(state.clone())),
        clock: config.clock.clone(),
        limits: config.client_limits(),
        background,
        dependencies: Vec::new(),
        conditions: Vec::new(),
        audit,
    };
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    SERVICE
        .serve(&config.server, parts, routes, listener, shutdown)
        .await
}
