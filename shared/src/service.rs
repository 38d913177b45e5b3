//! One docverify service assembled, once for both: the database opened and
//! migrated, the audit triggers checked, the RPC layer, health, reflection,
//! CORS and gRPC-Web around the service's own routes, and a bounded drain
//! at shutdown. A service's `lib.rs` says only what is its own: its
//! [`Service`] description, its state and its routes.

use std::{future::Future, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{
    service::Routes,
    transport::{Channel, server::TcpIncoming},
};

use crate::{
    clock::Clock,
    config::ServerConfig,
    db::{Db, Migrations, PoolConfig},
    error::{Error, Result},
    layer::{RpcLayer, limits::ClientLimits},
    server::{self, Health},
    token::TokenVerifier,
};

/// What the shared server needs to know of a service.
#[derive(Debug)]
pub struct Service {
    /// `auth-service`, `document-service`: in logs and metrics.
    pub name: &'static str,
    /// The full names of the gRPC services it serves besides health and
    /// reflection (health reports each, reflection lists each).
    pub grpc_services: &'static [&'static str],
    pub migrations: Migrations,
    /// The settings of its listen address and database, named in errors.
    pub listen_setting: &'static str,
    pub database_setting: &'static str,
}

/// Where a service's database is and how its pool is sized.
#[derive(Debug, Clone)]
pub struct Database<'a> {
    pub url: &'a str,
    pub pool: PoolConfig,
}

/// The parts of a running service that are its own; the rest is shared.
pub struct Parts {
    pub db: Db,
    pub verifier: Arc<dyn TokenVerifier>,
    pub clock: Clock,
    pub limits: ClientLimits,
    /// Tasks that run while the service serves and are stopped with it.
    pub background: Vec<JoinHandle<()>>,
    /// Services this one depends on, reported by health under their names.
    pub dependencies: Vec<(&'static str, Channel)>,
    /// States of its own reported by health under their names (SERVING
    /// while the check says so), such as the revocation feed's freshness.
    pub conditions: Vec<(&'static str, Condition)>,
    /// Its audit log, whose sequencer runs while it serves.
    pub audit: Arc<crate::audit::Log>,
}

/// Health reports whether the audit log keeps up under this name.
pub const AUDIT_SEQUENCER: &str = "docverify.audit.v1.Sequencer";

/// A check of one state, for health.
pub type Condition = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("db", &self.db)
            .field("background", &self.background.len())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Connects (waiting up to DB_STARTUP_TIMEOUT for a database that is not
    /// up yet) and applies the migrations: the `migrate` subcommand.
    pub async fn migrate(&self, database: &Database<'_>, server: &ServerConfig) -> Result<Db> {
        let db = Db::connect_waiting(
            database.url,
            &database.pool,
            self.database_setting,
            server.db_startup_timeout,
        )
        .await?;
        db.migrate(self.migrations).await?;
        Ok(db)
    }

    /// [`Service::migrate`], then refuses to go on when the audit trail is
    /// not append-only: the first step of serving.
    pub async fn open(&self, database: &Database<'_>, server: &ServerConfig) -> Result<Db> {
        let db = self.migrate(database, server).await?;
        crate::audit::check_triggers(&db).await?;
        Ok(db)
    }

    /// Serves `routes` (the service's own gRPC services, their message
    /// limits set) on `listener` behind the shared stack until `shutdown`
    /// completes, then drains in-flight RPCs for at most
    /// SHUTDOWN_DRAIN_TIMEOUT.
    pub async fn serve(
        &self,
        config: &ServerConfig,
        parts: Parts,
        routes: Routes,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Parts {
            db,
            verifier,
            clock,
            limits,
            mut background,
            dependencies,
            conditions,
            audit,
        } = parts;
        background.push(audit.spawn());
        let keeping_up = audit.clone();
        let conditions = conditions.into_iter().chain([(
            AUDIT_SEQUENCER,
            Arc::new(move || keeping_up.is_keeping_up()) as Condition,
        )]);
        let shutdown = async move {
            shutdown.await;
            audit.stop();
        };
        let layer = RpcLayer::new(self.name, verifier, db.clone(), clock, config, limits);
        crate::metrics::METRICS.watch_pool(self.name, &db);
        let (health, health_service) = Health::new(self.grpc_services);
        health.set(true).await;
        background.push(health.follow_database(db.clone(), config.health_check_interval));
        background.extend(dependencies.into_iter().map(|(name, channel)| {
            health.follow_dependency(name, channel, config.health_check_interval)
        }));
        background.extend(conditions.map(|(name, check)| health.follow_condition(name, check)));
        let (reflection_v1, reflection_v1alpha) = server::reflection(self.grpc_services)?;
        let (signal, deadline) = server::graceful(shutdown, config.shutdown_drain_timeout, health);

        let router = server::builder(config)?
            .layer(tower::util::option_layer(server::cors(config)))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(layer)
            .add_routes(routes)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let addr = listener.local_addr().map_err(Error::internal)?;
        tracing::info!(%addr, "{} listening", self.name);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::select! {
            served = router.serve_with_incoming_shutdown(incoming, signal) => served.map_err(Error::internal)?,
            () = deadline => {}
        }
        for task in background {
            task.abort();
        }
        db.close().await;
        tracing::info!("{} stopped", self.name);
        Ok(())
    }
}
