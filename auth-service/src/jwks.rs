//! The published signing keys over plain HTTP/1.1 (`AUTH_HTTP_ADDR`, off
//! unless set): `GET /.well-known/jwks.json`, for API gateways (Envoy's
//! `jwt_authn`, Kong, nginx, Traefik) and JWT libraries in any language that
//! verify docverify's access tokens without a gRPC client.
//!
//! `Cache-Control: max-age` is the interval at which replicas reload the
//! keys (`AUTH_SIGNING_KEYS_RELOAD`): a cache never holds a key set longer
//! than a replica would. The `ETag` is a digest of the key set, so a
//! revalidation (`If-None-Match`) answers 304 with no body.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use shared::{Error, Result};

use crate::token::keys::SigningKeys;

pub(crate) const PATH: &str = "/.well-known/jwks.json";

/// The listener, bound before the gRPC server says it is listening, so
/// that a bad address stops the start.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::internal(format!("AUTH_HTTP_ADDR {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(Error::internal)?;
    tracing::info!(addr = %bound, "auth-service keys over HTTP on {PATH}");
    Ok(listener)
}

struct Published {
    keys: Arc<SigningKeys>,
    cache_control: HeaderValue,
}

/// Serves the keys on `listener` until the task is aborted.
pub(crate) fn spawn(
    listener: TcpListener,
    keys: Arc<SigningKeys>,
    reload: Duration,
) -> tokio::task::JoinHandle<()> {
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", reload.as_secs()))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let router = Router::new()
        .route(PATH, get(jwks))
        .with_state(Arc::new(Published {
            keys,
            cache_control,
        }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the keys' HTTP server failed");
        }
    })
}

async fn jwks(State(published): State<Arc<Published>>, request: HeaderMap) -> Response {
    let body = match published.keys.to_proto() {
        Ok(keys) => keys.jwks_json,
        Err(e) => {
            tracing::error!(error = %e, "could not publish the keys");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", shared::audit::hex(&digest[..16]));
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, published.cache_control.clone());
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Public keys: any origin may read them (a browser's JWT library).
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if matches(&request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, headers, body).into_response()
}

/// Whether `If-None-Match` names `etag` (weakly, as RFC 9110 has it for
/// this header) or is `*`.
fn matches(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}
