//! The one tower layer in front of every RPC of both services.
//!
//! For each request: take the caller's `x-request-id` (when sane) or make
//! one; open the RPC's span; admit it into its budget (unary calls beyond the
//! configured number in flight, and streaming calls beyond theirs, see
//! [`streams`], are refused at once with RESOURCE_EXHAUSTED, never queued);
//! look the method path up in the policy table (missing means refused); for
//! non-public methods verify the bearer token, put the [`Identity`] in the
//! request extensions and check the permission (a refusal is
//! PERMISSION_DENIED plus an `authz.denied` audit event, bounded per caller by
//! [`windows`]). Public RPCs given a limit take a token of their client
//! address's bucket first ([`limits`]); the client address is the peer's, or
//! behind `TRUSTED_PROXIES` the forwarded one ([`crate::client`]). The
//! response gets the request id; when its last frame is sent, the status
//! code and latency go to the span and the metrics, labelled by the policy
//! table's method name (every other path is `unknown`, so junk paths cannot
//! grow the metrics). A streaming request the client resets fails, where
//! tonic would end it cleanly (see `body::Resettable`).
//!
//! Interceptors cannot see the method path, hence a layer.

mod body;
pub mod limits;
pub mod streams;
pub mod windows;

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderValue, Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tonic::{body::Body, transport::server::TcpConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;
use uuid::Uuid;

use ipnet::IpNet;
use serde_json::json;

use self::{
    body::{Finish, Observed, Resettable, Slot, Watched, grpc_status},
    limits::ClientLimits,
    streams::StreamBudget,
    windows::{WINDOW, Windows, refusal},
};
use crate::{
    audit::{self, Action, Actor, Event},
    clock::Clock,
    config::ServerConfig,
    db::Db,
    error::{Error, Reason},
    identity::{Identity, REQUEST_ID, RequestContext},
    metrics::{METRICS, MethodMetrics, ServiceLabels},
    policy::{self, Access, UNKNOWN_METHOD},
    token::{BoxFuture, TokenVerifier},
};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;
/// How long a shed caller is told to wait.
const SHED_RETRY: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct RpcLayer {
    shared: Arc<Shared>,
}

struct Shared {
    service: &'static str,
    verifier: Arc<dyn TokenVerifier>,
    db: Db,
    clock: Clock,
    in_flight: Arc<Semaphore>,
    streams: StreamBudget,
    trusted_proxies: Vec<IpNet>,
    limits: ClientLimits,
    denials: Windows<(Uuid, &'static str)>,
    rate_limited: Windows<(std::net::IpAddr, &'static str)>,
    /// This service's in-flight gauge, looked up once rather than per RPC.
    in_flight_gauge: Gauge,
    /// The policy table by path, each method with its metrics resolved.
    methods: HashMap<&'static str, (policy::Method, Arc<MethodMetrics>)>,
    /// The metrics of every path that is not in the table.
    unknown: Arc<MethodMetrics>,
    request_timeout: Duration,
}

impl std::fmt::Debug for RpcLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcLayer")
            .field("service", &self.shared.service)
            .finish()
    }
}

impl RpcLayer {
    /// `service` labels logs and metrics; `db` receives the `authz.denied`
    /// and `auth.rate_limited` events; `server` sets the budgets (unary and
    /// streaming) and the trusted proxies; `limits` the public RPCs' token
    /// buckets. Starts the task that writes the refusal windows' summaries
    /// and forgets idle buckets (it ends with the layer).
    pub fn new(
        service: &'static str,
        verifier: Arc<dyn TokenVerifier>,
        db: Db,
        clock: Clock,
        server: &ServerConfig,
        limits: ClientLimits,
    ) -> Self {
        let shared = Arc::new(Shared {
            service,
            verifier,
            db,
            clock,
            in_flight: Arc::new(Semaphore::new(server.max_concurrent_requests.max(1))),
            streams: StreamBudget::new(server.streams()),
            trusted_proxies: server.trusted_proxies.clone(),
            limits,
            denials: Windows::default(),
            rate_limited: Windows::default(),
            in_flight_gauge: METRICS
                .in_flight
                .get_or_create(&ServiceLabels {
                    service: service.to_owned(),
                })
                .clone(),
            methods: policy::methods()
                .map(|m| (m.path, (m, Arc::new(MethodMetrics::new(service, m.path)))))
                .collect(),
            unknown: Arc::new(MethodMetrics::new(service, UNKNOWN_METHOD)),
            request_timeout: server.request_timeout,
        });
        tokio::spawn(housekeeping(Arc::downgrade(&shared)));
        Self { shared }
    }
}

/// Writes the summaries of refusal windows that ended and forgets full
/// buckets, until the layer is gone.
async fn housekeeping(shared: Weak<Shared>) {
    let ctx = RequestContext {
        request_id: "refusal-windows".to_owned(),
        ..RequestContext::default()
    };
    loop {
        tokio::time::sleep(WINDOW / 6).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.clock.now();
        let ended = shared.denials.expired(now);
        for event in ended.into_iter().chain(shared.rate_limited.expired(now)) {
            shared.write_refusal(&ctx, event).await;
        }
        shared.limits.shrink();
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for RpcService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcService")
    }
}

impl<S> Service<Request<Body>> for RpcService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let request_id = request_id(req.headers());
        let (method, metrics) = match shared.methods.get(req.uri().path()) {
            Some((method, metrics)) => (Some(*method), metrics.clone()),
            None => (None, shared.unknown.clone()),
        };
        let label = method.map_or(UNKNOWN_METHOD, |m| m.path);
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let client_addr = crate::client::resolve(peer, req.headers(), &shared.trusted_proxies);
        // The log formats a span's fields when it opens (and each record):
        // without an exporter, only what a log line within the RPC shows.
        let traced = crate::telemetry::enabled();
        let span = if traced {
            tracing::info_span!(
                "rpc",
                otel.name = label,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                service = shared.service,
                method = %req.uri().path(),
                request_id = %request_id,
                client = %crate::client::Shown(client_addr),
                user_id = tracing::field::Empty,
                code = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "rpc",
                service = shared.service,
                method = req.uri().path(),
                request_id = request_id.as_str(),
                client = %crate::client::Shown(client_addr),
                user_id = tracing::field::Empty,
            )
        };
        let trace_id = crate::telemetry::extract(&span, req.headers());
        if let Some(trace_id) = &trace_id {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        let ctx = RequestContext {
            request_id: request_id.clone(),
            client_addr,
            user_agent: crate::identity::user_agent(req.headers()),
            trace_id,
        };
        let scoped_id = request_id.clone();
        let deadline = deadline(req.headers(), shared.request_timeout);
        let fut = async move {
            let mut finish = Finish::start(
                metrics,
                shared.in_flight_gauge.clone(),
                tracing::Span::current(),
                traced,
            );
            let header = HeaderValue::from_str(&request_id).ok();
            let streaming = method.is_some_and(|m| m.streaming);
            let call = async {
                let admitted = match shared.admit(method, peer) {
                    Ok(slot) => {
                        finish.slot = Some(slot);
                        match shared.limit(label, &ctx).await {
                            Ok(()) => shared.authorize(&mut req, &ctx, method).await,
                            Err(limited) => Err(limited),
                        }
                    }
                    Err(refused) => Err(refused),
                };
                match admitted {
                    Ok(()) => {
                        req.extensions_mut().insert(ctx);
                        if streaming {
                            req = req.map(|inner| Body::new(Resettable { inner }));
                        }
                        inner.call(req).await
                    }
                    Err(error) => Ok(tonic::Status::from(error).into_http()),
                }
            };
            // A deadline within a millisecond cannot be answered before
            // tonic's own timer on the same header (the runtime's timers
            // tick in milliseconds): it is answered at once.
            let answered = if deadline.is_zero() {
                drop(call);
                None
            } else {
                tokio::time::timeout(deadline, call).await.ok()
            };
            let response = match answered {
                Some(response) => response?,
                // The handler is dropped (cancelled) with the timer.
                None => tonic::Status::from(DEADLINE_PASSED).into_http(),
            };
            let (mut parts, body) = response.into_parts();
            if let Some(header) = header {
                parts.headers.insert(REQUEST_ID_HEADER, header);
            }
            // Trailers-only responses carry the status in the headers.
            if let Some(code) = grpc_status(&parts.headers) {
                finish.done(code);
                return Ok(Response::from_parts(parts, body));
            }
            let body = if streaming {
                let limits = &shared.streams.config;
                Body::new(Watched::new(
                    body,
                    finish,
                    request_id,
                    limits.idle_timeout,
                    limits.max_lifetime,
                ))
            } else {
                Body::new(Observed {
                    inner: body,
                    finish: Some(finish),
                })
            };
            Ok(Response::from_parts(parts, body))
        };
        // Errors built anywhere below name the request id.
        Box::pin(REQUEST_ID.scope(scoped_id, fut).instrument(span))
    }
}

/// The answer when the caller's deadline or REQUEST_TIMEOUT passes before
/// the handler answered.
const DEADLINE_PASSED: Error = Error::DeadlineExceeded {
    reason: Reason::DeadlineExceeded,
    message: "the deadline passed before the call completed",
};

/// When this call must have answered: the caller's `grpc-timeout` or
/// REQUEST_TIMEOUT, whichever is shorter. tonic's own timer (which answers
/// CANCELLED, not the DEADLINE_EXCEEDED a gRPC server owes) runs on the
/// same header outside this layer, so this one fires a millisecond earlier
/// to answer first.
fn deadline(headers: &HeaderMap, request_timeout: Duration) -> Duration {
    let early = Duration::from_millis(1);
    match grpc_timeout(headers) {
        Some(caller) if caller < request_timeout => caller.saturating_sub(early),
        _ => request_timeout,
    }
}

/// The answer when the unary budget is full.
const OVERLOADED: Error = Error::ResourceExhausted {
    reason: Reason::Overloaded,
    message: "the service is at capacity; retry shortly",
    retry_after: Some(SHED_RETRY),
};

impl Shared {
    /// A slot in the budget the call belongs to: streaming calls in theirs
    /// (public and authenticated apart), everything else in the unary one.
    fn admit(
        &self,
        method: Option<policy::Method>,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Slot, Error> {
        match method {
            Some(m) if m.streaming => Ok(Slot::Stream {
                _slot: self.streams.admit(m.access == Access::Public, peer)?,
            }),
            _ => match self.in_flight.clone().try_acquire_owned() {
                Ok(permit) => Ok(Slot::Unary { _permit: permit }),
                Err(_) => Err(OVERLOADED),
            },
        }
    }

    /// `method` is the call's entry in the policy table, looked up once by
    /// the caller.
    async fn authorize(
        &self,
        req: &mut Request<Body>,
        ctx: &RequestContext,
        method: Option<policy::Method>,
    ) -> Result<(), Error> {
        let policy::Method { path, access, .. } = method.ok_or(Error::PermissionDenied {
            reason: Reason::MethodNotAllowed,
            message: "this method is not open to any caller",
        })?;
        if access == Access::Public {
            return Ok(());
        }
        let token = bearer(req.headers()).ok_or(Error::Unauthenticated {
            reason: Reason::MissingToken,
            message: "authorization: Bearer <access token> required",
        })?;
        let identity = self
            .verifier
            .verify(token, grpc_timeout(req.headers()))
            .await?;
        tracing::Span::current().record("user_id", tracing::field::display(identity.user_id));
        if !access.allows(identity.permissions()) {
            self.record_denial(&identity, path, ctx).await;
            return Err(Error::PermissionDenied {
                reason: Reason::PermissionDenied,
                message: "your roles do not allow this method",
            });
        }
        req.extensions_mut().insert(identity);
        Ok(())
    }

    /// Takes a token of the client address's bucket for `method`, if the
    /// method has a limit; a refusal is audited once per address and window.
    async fn limit(&self, method: &'static str, ctx: &RequestContext) -> Result<(), Error> {
        let client = ctx.client_addr.map(|a| a.ip());
        let Err(limited) = self.limits.check(method, client) else {
            return Ok(());
        };
        if let (Some(ip), Error::RateLimited { description, .. }) = (client, &limited) {
            let key = (crate::client::limit_key(ip), method);
            let event = || {
                let actor = Actor {
                    id: None,
                    email: String::new(),
                };
                let details = json!({ "method": method, "limit": description });
                refusal(Action::RateLimited, actor, method, details)
            };
            let now = self.clock.now();
            for event in self.rate_limited.note(key, event, &ctx.request_id, now) {
                self.write_refusal(ctx, event).await;
            }
        }
        Err(limited)
    }

    async fn record_denial(&self, identity: &Identity, method: &'static str, ctx: &RequestContext) {
        let event = || {
            let details = json!({ "method": method });
            refusal(Action::AccessDenied, Actor::from(identity), method, details)
        };
        let now = self.clock.now();
        let key = (identity.user_id, method);
        for event in self.denials.note(key, event, &ctx.request_id, now) {
            self.write_refusal(ctx, event).await;
        }
    }

    async fn write_refusal(&self, ctx: &RequestContext, event: Event) {
        let action = event.action;
        // The caller is refused either way; a lost audit row is logged loudly.
        if let Err(e) = audit::record(&self.db, ctx, self.clock.now(), event).await {
            tracing::error!(error = %e, %action, "could not record a refusal");
        }
    }
}

/// The caller's deadline (`grpc-timeout`: an integer and a unit, H M S m u n).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.is_empty() || value.len() > 9 {
        return None;
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The caller's request id when it is sane (1 to 128 of `[A-Za-z0-9._:-]`),
/// otherwise a fresh one: ids end up in logs and audit rows.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    fn timeout(value: &str) -> Option<Duration> {
        grpc_timeout(&headers("grpc-timeout", value))
    }

    #[test]
    fn grpc_timeouts_are_read_in_each_unit_and_refused_when_malformed() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout("5m"), Some(Duration::from_millis(5)));
        assert_eq!(timeout("6u"), Some(Duration::from_micros(6)));
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
        // The spec's limit is 8 digits and a unit.
        assert_eq!(timeout("99999999S"), Some(Duration::from_secs(99_999_999)));
        for bad in [
            "",
            "S",
            "100000000S",
            "12345678901S",
            "5",
            "5s",
            "-5S",
            "5 S",
        ] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn the_deadline_is_the_shorter_of_the_callers_and_request_timeout() {
        let limit = Duration::from_secs(30);
        let early = Duration::from_millis(1);
        let deadline_of = |value| deadline(&headers("grpc-timeout", value), limit);
        assert_eq!(deadline_of("100m"), Duration::from_millis(100) - early);
        assert_eq!(deadline_of("60S"), limit);
        assert_eq!(deadline_of("30S"), limit);
        assert_eq!(deadline(&HeaderMap::new(), limit), limit);
    }

    #[test]
    fn callers_request_ids_are_kept_only_when_sane() {
        let id = |value: &str| request_id(&headers(REQUEST_ID_HEADER, value));
        for sane in ["a", "req-1.2_3:4", &"x".repeat(MAX_REQUEST_ID_LEN)] {
            assert_eq!(id(sane), sane);
        }
        for insane in [
            "",
            "a b",
            "a/b",
            "line\tbreak",
            "é",
            &"x".repeat(MAX_REQUEST_ID_LEN + 1),
        ] {
            let fresh = id(insane);
            assert_ne!(fresh, insane);
            assert!(Uuid::parse_str(&fresh).is_ok(), "{fresh}");
        }
        assert!(Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }

    #[test]
    fn bearer_tokens_need_the_scheme_and_a_token() {
        let token = |value: &str| bearer(&headers("authorization", value)).map(str::to_owned);
        assert_eq!(token("Bearer abc.def"), Some("abc.def".to_owned()));
        assert_eq!(token("bearer   abc "), Some("abc".to_owned()));
        for refused in ["Basic abc", "Bearer ", "Bearer", "abc", "Bearerabc"] {
            assert_eq!(token(refused), None, "{refused:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
