//! The tower layer that makes every call of a typed client authenticated.
//!
//! Each call gets the session's current access token (renewed first when
//! due, see [`Session`]). A call refused with UNAUTHENTICATED (the token
//! was revoked, or expired under a skewed clock) renews the token and is
//! sent once more, when its request could be kept: a unary request, or a
//! stream of at most [`REPLAY_LIMIT`] bytes. A larger upload is sent as it
//! is produced (never held in memory whole) and is not retried: it was
//! started with a fresh token anyway.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use crate::session::Session;

/// The most of a request body kept so that the call can be sent again.
pub const REPLAY_LIMIT: usize = 64 * 1024;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Adds a [`Session`]'s token to the calls of the service it wraps.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    session: Session,
}

impl AuthLayer {
    pub fn new(session: Session) -> Self {
        Self { session }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            session: self.session.clone(),
        }
    }
}

/// A channel (or any gRPC service) whose calls carry the session's token.
#[derive(Debug, Clone)]
pub struct Authenticated<S = tonic::transport::Channel> {
    inner: S,
    session: Session,
}

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone may not be ready; this call takes the one that is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let session = self.session.clone();
        Box::pin(async move {
            let token = match session.token().await {
                Ok(token) => token,
                Err(status) => return Ok(status.into_http()),
            };
            let (parts, body) = request.into_parts();
            let (body, kept) = match keep(body).await {
                Ok(kept) => kept,
                Err(status) => return Ok(status.into_http()),
            };
            let again = kept.map(|bytes| {
                let mut request = Request::new(Body::new(Full::new(bytes)));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.version_mut() = parts.version;
                *request.headers_mut() = parts.headers.clone();
                *request.extensions_mut() = parts.extensions.clone();
                request
            });
            let mut first = Request::from_parts(parts, body);
            authorize(&mut first, &token.header);
            let response = inner.call(first).await?;
            let Some(mut again) = again.filter(|_| refused(&response)) else {
                return Ok(response);
            };
            let Ok(token) = session.renew(token.generation).await else {
                return Ok(response);
            };
            authorize(&mut again, &token.header);
            // The ready clone was used; wait for another.
            let mut inner = inner.clone();
            tower::ServiceExt::ready(&mut inner).await?;
            inner.call(again).await
        })
    }
}

fn authorize(request: &mut Request<Body>, header: &HeaderValue) {
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, header.clone());
}

/// Whether the answer is UNAUTHENTICATED (16), which gRPC servers send as
/// a trailers-only response: the status is in the headers.
fn refused(response: &Response<Body>) -> bool {
    response
        .headers()
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"16")
}

/// Reads `body` up to [`REPLAY_LIMIT`]: the whole of it as bytes that can
/// be sent twice, or, when it is longer, a body that sends what was read
/// and then the rest as it comes (and `None`).
async fn keep(mut body: Body) -> Result<(Body, Option<Bytes>), Status> {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            // gRPC requests end without trailers; anything else is sent
            // as it is, once.
            return Ok((Body::new(Prefixed::new(read.freeze(), body)), None));
        };
        read.extend_from_slice(&data);
        if read.len() > REPLAY_LIMIT {
            return Ok((Body::new(Prefixed::new(read.freeze(), body)), None));
        }
    }
    let bytes = read.freeze();
    Ok((Body::new(Full::new(bytes.clone())), Some(bytes)))
}

/// Bytes already read from a body, then the rest of it.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl Prefixed {
    fn new(prefix: Bytes, rest: Body) -> Self {
        Self {
            prefix: Some(prefix).filter(|p| !p.is_empty()),
            rest,
        }
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}
