//! The one tower layer in front of every RPC of both services.
//!
//! For each request: take the caller's `x-request-id` (when sane) or make
//! one; open the RPC's span; look the method path up in the policy table
//! (missing means refused); for non-public methods verify the bearer token,
//! put the [`Identity`] in the request extensions and check the permission
//! (a refusal is PERMISSION_DENIED plus an `authz.denied` audit event). The
//! request id goes back in the response metadata.
//!
//! Interceptors cannot see the method path, hence a layer.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
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
    policy::{self, Access},
    verifier::{BoxFuture, TokenVerifier},
};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Clone)]
pub struct RpcLayer {
    shared: Arc<Shared>,
}

struct Shared {
    verifier: Arc<dyn TokenVerifier>,
    db: Db,
    clock: Clock,
}

impl std::fmt::Debug for RpcLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcLayer")
    }
}

impl RpcLayer {
    /// `db` receives the `authz.denied` events.
    pub fn new(verifier: Arc<dyn TokenVerifier>, db: Db, clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                db,
                clock,
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
        let ctx = RequestContext {
            request_id: request_id.clone(),
            client_addr: req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
        };
        let span = tracing::info_span!(
            "rpc",
            method = %req.uri().path(),
            request_id = %request_id,
            user_id = tracing::field::Empty,
        );
        let started = Instant::now();
        let fut = async move {
            let header = HeaderValue::from_str(&request_id).ok();
            let checked = shared.authorize(&mut req, &ctx).await;
            let mut response = match checked {
                Ok(()) => {
                    req.extensions_mut().insert(ctx);
                    REQUEST_ID
                        .scope(request_id.clone(), inner.call(req))
                        .await?
                }
                Err(error) => {
                    REQUEST_ID
                        .scope(request_id.clone(), async {
                            tonic::Status::from(error).into_http()
                        })
                        .await
                }
            };
            if let Some(header) = header {
                response.headers_mut().insert(REQUEST_ID_HEADER, header);
            }
            tracing::debug!(
                latency_us = started.elapsed().as_micros() as u64,
                "rpc done"
            );
            Ok(response)
        };
        Box::pin(fut.instrument(span))
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
        let identity = self.verifier.verify(token).await?;
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

/// The caller's request id when it is sane (1 to 128 of `[A-Za-z0-9._:-]`),
/// otherwise a fresh one: ids end up in logs and audit rows.
fn request_id(headers: &http::HeaderMap) -> String {
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

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
