//! Prometheus metrics, process-wide (the local stack runs both services in
//! one process; every series carries a `service` label). Served over plain
//! HTTP on `METRICS_ADDR`, apart from the gRPC port.

use std::{
    future::Future,
    sync::{LazyLock, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    db::Db,
    error::{Error, Result},
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub service: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyFetchLabels {
    pub service: String,
    pub cause: String,
}

/// Why a service loaded its signing keys again.
#[derive(Debug, Clone, Copy)]
pub enum KeyFetch {
    /// The periodic refresh.
    Refresh,
    /// A token named a `kid` the service did not know (rate-limited).
    UnknownKid,
}

impl KeyFetch {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::UnknownKid => "unknown_kid",
        }
    }
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<CallLabels, Counter>,
    pub latency: HistogramFamily,
    pub in_flight: Family<ServiceLabels, Gauge>,
    pub pool: Family<PoolLabels, Gauge>,
    pub argon2_queue: Gauge,
    pub audit_lag: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    pub audit_tree_size: Family<ServiceLabels, Gauge>,
    key_fetches: Family<KeyFetchLabels, Counter>,
    pools: Mutex<Vec<(String, Db)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("docverify");
    let requests = Family::<CallLabels, Counter>::default();
    let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
    let in_flight = Family::<ServiceLabels, Gauge>::default();
    let pool = Family::<PoolLabels, Gauge>::default();
    let argon2_queue = Gauge::default();
    let audit_lag: Family<ServiceLabels, Histogram, fn() -> Histogram> =
        Family::new_with_constructor(latency_histogram);
    let audit_tree_size = Family::<ServiceLabels, Gauge>::default();
    let key_fetches = Family::<KeyFetchLabels, Counter>::default();
    registry.register(
        "grpc_requests",
        "RPCs handled, by method and status code",
        requests.clone(),
    );
    registry.register(
        "grpc_request_duration_seconds",
        "RPC latency until the last response byte",
        latency.clone(),
    );
    registry.register(
        "grpc_in_flight_requests",
        "RPCs being served now",
        in_flight.clone(),
    );
    registry.register(
        "db_pool_connections",
        "Database connections by state",
        pool.clone(),
    );
    registry.register(
        "argon2_queue_depth",
        "Password hashes waiting for a worker",
        argon2_queue.clone(),
    );
    registry.register(
        "audit_sequencing_lag_seconds",
        "From an audit event's time to its leaf in the log",
        audit_lag.clone(),
    );
    registry.register(
        "audit_tree_size",
        "Leaves in the audit log's latest checkpoint",
        audit_tree_size.clone(),
    );
    registry.register(
        "signing_key_fetches",
        "Signing key set loads (auth-service from its database, document-service from \
         auth-service), by cause: refresh or unknown_kid (junk tokens show up here)",
        key_fetches.clone(),
    );
    Metrics {
        registry,
        requests,
        latency,
        in_flight,
        pool,
        argon2_queue,
        audit_lag,
        audit_tree_size,
        key_fetches,
        pools: Mutex::new(Vec::new()),
    }
});

impl Metrics {
    /// Reports `db`'s pool usage under `service` at every scrape.
    pub fn watch_pool(&self, service: &str, db: &Db) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|(s, _)| s != service);
            pools.push((service.to_owned(), db.clone()));
        }
    }

    /// Counts one load of `service`'s signing keys, tried for `cause`.
    pub fn key_fetch(&self, service: &str, cause: KeyFetch) {
        self.key_fetches
            .get_or_create(&KeyFetchLabels {
                service: service.to_owned(),
                cause: cause.as_str().to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Ok(pools) = self.pools.lock() {
            for (service, db) in pools.iter() {
                let (size, idle, max) = db.pool_usage();
                for (state, value) in [
                    ("used", size.saturating_sub(idle)),
                    ("idle", idle),
                    ("max", max),
                ] {
                    self.pool
                        .get_or_create(&PoolLabels {
                            service: service.clone(),
                            state: state.to_owned(),
                        })
                        .set(i64::from(value));
                }
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use axum::{Router, http::header, response::IntoResponse, routing::get};
    async fn scrape() -> impl IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            METRICS.render(),
        )
    }
    let router = Router::new().route("/metrics", get(scrape));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::internal)
}

/// One service's metrics for one method (a path of the policy table, or
/// `unknown`), resolved once: recording a call touches no label set, no
/// string and no lock but the histogram's.
#[derive(Debug)]
pub struct MethodMetrics {
    service: &'static str,
    method: &'static str,
    latency: Histogram,
    /// By code, made on the code's first call (so that `/metrics` lists
    /// only codes that happened).
    requests: [std::sync::OnceLock<Counter>; 17],
}

impl MethodMetrics {
    pub fn new(service: &'static str, method: &'static str) -> Self {
        let latency = METRICS
            .latency
            .get_or_create(&MethodLabels {
                service: service.to_owned(),
                method: method.to_owned(),
            })
            .clone();
        Self {
            service,
            method,
            latency,
            requests: Default::default(),
        }
    }

    pub fn record(&self, code: tonic::Code, elapsed: std::time::Duration) {
        let counter = self.requests[code as usize % 17].get_or_init(|| {
            METRICS
                .requests
                .get_or_create(&CallLabels {
                    service: self.service.to_owned(),
                    method: self.method.to_owned(),
                    code: code_name(code).to_owned(),
                })
                .clone()
        });
        counter.inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

/// The code's name as its `Debug` prints it (the metrics' and logs'
/// label), without formatting one per call.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_what_debug_prints() {
        for n in 0..17 {
            let code = tonic::Code::from_i32(n);
            assert_eq!(code_name(code), format!("{code:?}"));
            assert_eq!(code as usize, n as usize, "codes index the counters");
        }
    }
}
