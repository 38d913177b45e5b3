//! How the layer turns a bearer token into an [`Identity`]. Each service
//! plugs in the verifier that suits it: auth-service checks its own keys and
//! the user's current state; document-service verifies locally with the
//! published keys or asks auth-service.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use tonic::transport::Channel;

use crate::telemetry::{Propagate, Traced};
use uuid::Uuid;

use crate::{
    clock::Clock,
    error::{Error, Result},
    identity::Identity,
    metrics::{KeyFetch, METRICS},
    policy::Role,
    proto::auth::v1::{
        ListSigningKeysRequest, ValidateTokenRequest, auth_service_client::AuthServiceClient,
    },
    revocation::Revocations,
    token::{KeySet, TokenError, VerifiedTokens, token_kid},
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait TokenVerifier: Send + Sync + 'static {
    /// The identity `token` stands for, or UNAUTHENTICATED (UNAVAILABLE when
    /// the verifier cannot decide yet, for example before it has keys).
    /// `deadline` is what is left of the caller's `grpc-timeout`, for a
    /// verifier that has to ask someone.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Identity>>;
}

/// Verifies tokens locally with auth-service's published keys, and refuses
/// revoked ones with the facts of the revocation feed.
///
/// The keys are fetched at start (retried until auth-service answers; until
/// then every protected RPC fails closed with UNAVAILABLE), refreshed every
/// few minutes, and fetched again when a token names an unknown `kid` (a
/// key just rotated in), at most once every 5 s so that junk tokens cannot
/// turn into a flood. With auth-service down it keeps the keys it has.
///
/// Fail safe, not open: while the feed has not been confirmed fresh within
/// `max_staleness` (auth-service down, a resync, no credentials), each
/// token is checked with `ValidateToken` instead; when that cannot answer
/// either, the RPC is UNAVAILABLE.
#[derive(Debug)]
pub struct JwksVerifier {
    /// The service verifying, for its metrics.
    service: &'static str,
    client: AuthServiceClient<Traced>,
    clock: Clock,
    keys: RwLock<Option<KeySet>>,
    /// When an unknown `kid` last caused a fetch. The periodic refresh does
    /// not count: a key rotated in just after it must not wait a minute.
    last_refetch: Mutex<Option<Instant>>,
    /// Signature checks made: the identity and the token's generation.
    verified: VerifiedTokens<(Identity, i64)>,
    revocations: Arc<Revocations>,
    max_staleness: Duration,
    remote: RemoteVerifier,
}

/// Refetches for unknown `kid`s are at most this frequent.
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(5);
/// Retry interval while there are no keys yet.
const INITIAL_RETRY: Duration = Duration::from_millis(500);

impl JwksVerifier {
    pub fn new(
        service: &'static str,
        channel: Channel,
        clock: Clock,
        revocations: Arc<Revocations>,
        max_staleness: Duration,
    ) -> Self {
        Self {
            service,
            client: AuthServiceClient::with_interceptor(channel.clone(), Propagate),
            clock,
            keys: RwLock::new(None),
            last_refetch: Mutex::new(None),
            verified: VerifiedTokens::default(),
            revocations,
            max_staleness,
            remote: RemoteVerifier::new(channel),
        }
    }

    fn current(&self) -> Option<KeySet> {
        self.keys.read().ok().and_then(|k| k.clone())
    }

    /// In a span of its own: auth-service's side of the call is its child.
    #[tracing::instrument(name = "fetch signing keys", skip_all)]
    async fn fetch(&self) -> Result<()> {
        let response = self
            .client
            .clone()
            .list_signing_keys(ListSigningKeysRequest {})
            .await
            .map_err(|s| {
                Error::unavailable(format!("auth-service ListSigningKeys: {}", s.message()))
            })?
            .into_inner();
        let keys = KeySet::new(
            response
                .keys
                .iter()
                .filter(|k| k.algorithm == "EdDSA")
                .map(|k| (k.kid.clone(), k.public_key.as_slice())),
        );
        if keys.is_empty() {
            return Err(Error::unavailable("auth-service published no usable keys"));
        }
        if let Ok(mut current) = self.keys.write() {
            *current = Some(keys);
        }
        Ok(())
    }

    /// Keeps the keys fresh until the returned task is aborted.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut waiting = false;
            loop {
                let Some(verifier) = this.upgrade() else {
                    return;
                };
                let had_keys = verifier.current().is_some();
                METRICS.key_fetch(verifier.service, KeyFetch::Refresh);
                let wait = match verifier.fetch().await {
                    Ok(()) => {
                        if !had_keys {
                            tracing::info!(
                                "signing keys fetched from auth-service; tokens verify locally"
                            );
                        }
                        every
                    }
                    Err(e) if had_keys => {
                        tracing::warn!(error = %e, "cannot fetch signing keys; keeping the ones we have");
                        every.min(Duration::from_secs(30))
                    }
                    Err(e) => {
                        // One line says what start-up waits for, not one per retry.
                        if !std::mem::replace(&mut waiting, true) {
                            tracing::info!(error = %e, retry_every = ?INITIAL_RETRY, "waiting for auth-service's signing keys; protected RPCs answer UNAVAILABLE until they arrive");
                        }
                        INITIAL_RETRY
                    }
                };
                drop(verifier);
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Whether an unknown `kid` may trigger a refetch now; claims it if so
    /// (one check and one update under the lock: concurrent junk tokens
    /// cause one fetch, not one each).
    fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_refetch.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH) {
            return false;
        }
        *last = Some(crate::clock::monotonic());
        true
    }
}

impl TokenVerifier for JwksVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(async move {
            let (identity, generation) = self.signed(token).await?;
            if self.revocations.is_fresh(self.max_staleness) {
                self.revocations
                    .check(identity.user_id, generation, identity.session_id)?;
                return Ok(identity);
            }
            self.remote.verify(token, deadline).await
        })
    }
}

impl JwksVerifier {
    /// The identity and generation of a token whose signature and times
    /// check out (revocation aside).
    async fn signed(&self, token: &str) -> Result<(Identity, i64)> {
        if let Some(verified) = self.verified.get(token, self.clock.now()) {
            return Ok(verified);
        }
        let kid = token_kid(token)?;
        let mut keys = self.current().ok_or_else(|| {
            Error::unavailable("token signing keys not yet fetched from auth-service")
        })?;
        if !keys.contains(&kid) && self.may_refetch() {
            METRICS.key_fetch(self.service, KeyFetch::UnknownKid);
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "refetch for an unknown key id failed");
            }
            keys = self.current().unwrap_or(keys);
        }
        let claims = keys.verify(token, self.clock.now())?;
        let verified = (claims.identity()?, claims.tgen);
        self.verified.put(token, verified.clone(), claims.exp);
        Ok(verified)
    }
}

/// Asks auth-service's `ValidateToken` for every request: disabling a user
/// or changing roles takes effect at once, at the cost of a call.
#[derive(Debug)]
pub struct RemoteVerifier {
    client: AuthServiceClient<Traced>,
}

impl RemoteVerifier {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: AuthServiceClient::with_interceptor(channel, Propagate),
        }
    }
}

impl TokenVerifier for RemoteVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        deadline: Option<Duration>,
    ) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(async move {
            // Refuse what cannot be a token before spending a call on it.
            token_kid(token)?;
            let mut request = tonic::Request::new(ValidateTokenRequest {
                access_token: token.to_owned(),
            });
            // The caller's deadline travels on to auth-service.
            if let Some(deadline) = deadline {
                request.set_timeout(deadline);
            }
            if let Some(id) = crate::identity::current_request_id().and_then(|id| id.parse().ok()) {
                request
                    .metadata_mut()
                    .insert(crate::layer::REQUEST_ID_HEADER, id);
            }
            let response = self
                .client
                .clone()
                .validate_token(request)
                .await
                .map_err(|s| {
                    Error::unavailable(format!("auth-service ValidateToken: {}", s.message()))
                })?
                .into_inner();
            if !response.active {
                return Err(TokenError::Signature.into());
            }
            let user_id = Uuid::parse_str(&response.user_id).map_err(|_| TokenError::Claims)?;
            let roles = response
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect();
            let session = Uuid::parse_str(&response.session_id).ok();
            Ok(Identity::new(user_id, response.email, roles).in_session(session))
        })
    }
}
