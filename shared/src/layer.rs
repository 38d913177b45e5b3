//! The one tower layer in front of every RPC of both services.
//!
//! For each request: take the caller's `x-request-id` (when sane) or make
//! one; open the RPC's span; shed load beyond the configured number of RPCs
//! in flight (RESOURCE_EXHAUSTED at once, never an unbounded queue); look the
//! method path up in the policy table (missing means refused); for
//! non-public methods verify the bearer token, put the [`Identity`] in the
//! request extensions and check the permission (a refusal is
//! PERMISSION_DENIED plus an `authz.denied` audit event). The response gets
//! the request id; when its last frame is sent, the status code and latency
//! go to the span and the metrics.
//!
//! Interceptors cannot see the method path, hence a layer.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, transport::server::TcpConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Event, Outcome},
    clock::Clock,
    db::Db,
    error::Error,
    identity::{Identity, REQUEST_ID, RequestContext},
    metrics::{CallLabels, METRICS, MethodLabels, ServiceLabels},
    policy::{self, Access},
    verifier::{BoxFuture, TokenVerifier},
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
    /// This service's in-flight gauge, looked up once rather than per RPC.
    in_flight_gauge: Gauge,
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
    /// events; at most `max_in_flight` RPCs run at once.
    pub fn new(
        service: &'static str,
        verifier: Arc<dyn TokenVerifier>,
        db: Db,
        clock: Clock,
        max_in_flight: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                service,
                verifier,
                db,
                clock,
                in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
                in_flight_gauge: METRICS
                    .in_flight
                    .get_or_create(&ServiceLabels {
                        service: service.to_owned(),
                    })
                    .clone(),
            }),
        }
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
        let method: Arc<str> = req.uri().path().into();
        let ctx = RequestContext {
            request_id: request_id.clone(),
            client_addr: req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
        };
        let span = tracing::info_span!(
            "rpc",
            service = shared.service,
            method = %method,
            request_id = %request_id,
            user_id = tracing::field::Empty,
            code = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let scoped_id = request_id.clone();
        let fut = async move {
            let mut finish = Finish::start(
                shared.service,
                method,
                shared.in_flight_gauge.clone(),
                tracing::Span::current(),
            );
            let header = HeaderValue::from_str(&request_id).ok();
            let admitted = match shared.in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    finish.permit = Some(permit);
                    shared.authorize(&mut req, &ctx).await
                }
                Err(_) => Err(Error::ResourceExhausted {
                    reason: "OVERLOADED",
                    message: "the service is at capacity; retry shortly",
                    retry_after: Some(SHED_RETRY),
                }),
            };
            let response = match admitted {
                Ok(()) => {
                    req.extensions_mut().insert(ctx);
                    inner.call(req).await?
                }
                Err(error) => tonic::Status::from(error).into_http(),
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
            Ok(Response::from_parts(
                parts,
                Body::new(Observed {
                    inner: body,
                    finish: Some(finish),
                }),
            ))
        };
        // Errors built anywhere below name the request id.
        Box::pin(REQUEST_ID.scope(scoped_id, fut).instrument(span))
    }
}

impl Shared {
    async fn authorize(&self, req: &mut Request<Body>, ctx: &RequestContext) -> Result<(), Error> {
        let path = req.uri().path();
        let access = policy::access(path).ok_or(Error::PermissionDenied {
            reason: "METHOD_NOT_ALLOWED",
            message: "this method is not open to any caller",
        })?;
        if access == Access::Public {
            return Ok(());
        }
        let token = bearer(req.headers()).ok_or(Error::Unauthenticated {
            reason: "MISSING_TOKEN",
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
                reason: "PERMISSION_DENIED",
                message: "your roles do not allow this method",
            });
        }
        req.extensions_mut().insert(identity);
        Ok(())
    }

    async fn record_denial(&self, identity: &Identity, path: &str, ctx: &RequestContext) {
        let event = Event::new("authz.denied", Actor::from(identity), "method", path)
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "method": path }));
        // The caller is refused either way; a lost audit row is logged loudly.
        if let Err(e) = audit::record(&self.db, ctx, self.clock.now(), event).await {
            tracing::error!(error = %e, "could not record authz.denied");
        }
    }
}

/// Records the end of one RPC: code and latency into its span and the
/// metrics, once; releases its in-flight slot.
struct Finish {
    service: &'static str,
    in_flight: Gauge,
    method: Arc<str>,
    span: tracing::Span,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
    recorded: bool,
}

impl Finish {
    fn start(
        service: &'static str,
        method: Arc<str>,
        in_flight: Gauge,
        span: tracing::Span,
    ) -> Self {
        in_flight.inc();
        Self {
            service,
            in_flight,
            method,
            span,
            started: Instant::now(),
            permit: None,
            recorded: false,
        }
    }

    fn done(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let code_name = format!("{code:?}");
        self.span.record("code", code_name.as_str());
        self.span
            .record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        METRICS
            .requests
            .get_or_create(&CallLabels {
                service: self.service.to_owned(),
                method: self.method.to_string(),
                code: code_name,
            })
            .inc();
        METRICS
            .latency
            .get_or_create(&MethodLabels {
                service: self.service.to_owned(),
                method: self.method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
        self.in_flight.dec();
        self.permit = None;
        let _entered = self.span.enter();
        tracing::debug!(
            ?code,
            latency_us = elapsed.as_micros() as u64,
            "rpc finished"
        );
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away.
        self.done(tonic::Code::Cancelled);
    }
}

/// A response body that reports the status from the trailers when the last
/// frame passes.
struct Observed {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(f)) => f
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown)),
            Some(Err(status)) => Some(status.code()),
            None => Some(tonic::Code::Ok),
        };
        if let (Some(code), Some(mut finish)) = (code, code.and_then(|_| self.finish.take())) {
            finish.done(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
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
