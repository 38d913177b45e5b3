//! A caller's access token, kept fresh.
//!
//! The token is renewed shortly before it expires (when a fifth of its
//! life, at most a minute, is left), by the first call that finds it due;
//! the calls that arrive meanwhile wait for that one renewal instead of
//! making their own. That matters: refresh tokens rotate, and a refresh
//! token presented twice is taken for a stolen one (the whole session is
//! revoked). A user's session renews with its refresh token, a service
//! account's by asking for a new token with its secret.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http::HeaderValue;
use tonic::{Status, transport::Channel};

use crate::proto::auth::v1::{
    IssueServiceTokenRequest, LoginRequest, RefreshTokenRequest,
    auth_service_client::AuthServiceClient,
};

/// How long a renewal may take before the calls waiting for it give up.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a token's life left when it is renewed.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// A signed-in caller; cheap to clone (clones share the token).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    auth: AuthServiceClient<Channel>,
    current: RwLock<Token>,
    /// Held while renewing: the one renewal in flight. It guards what
    /// renews the token (a refresh token is used once).
    renewal: tokio::sync::Mutex<Renewal>,
    renewals: AtomicU64,
}

enum Renewal {
    Refresh { refresh_token: String },
    ServiceAccount { client_id: String, secret: String },
}

/// The access token as sent (`Bearer ...`) and its timing.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) header: HeaderValue,
    /// Counts renewals, so that a call refused with an older token knows
    /// whether someone renewed it since.
    pub(crate) generation: u64,
    renew_at: Instant,
    expires_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("renewals", &self.renewals())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Signs in with an email and password (auth-service's `Login`); the
    /// password is not kept.
    pub async fn login(auth: Channel, email: &str, password: &str) -> Result<Self, Status> {
        let mut client = AuthServiceClient::new(auth.clone());
        let response = client
            .login(timed(LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
            }))
            .await?
            .into_inner();
        Self::new(
            client,
            &response.access_token,
            response.expires_in,
            Renewal::Refresh {
                refresh_token: response.refresh_token,
            },
        )
    }

    /// A service account's session (`IssueServiceToken`); the secret is kept
    /// to ask for the next token.
    pub async fn service_account(
        auth: Channel,
        client_id: &str,
        secret: &str,
    ) -> Result<Self, Status> {
        let mut client = AuthServiceClient::new(auth);
        let renewal = Renewal::ServiceAccount {
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
        };
        let (access_token, expires_in) = renewal.issue(&mut client).await?;
        Self::new(client, &access_token, expires_in, renewal)
    }

    /// A session from tokens obtained elsewhere (a previous run, another
    /// login flow); `expires_in` in seconds, as auth-service gives it.
    pub fn from_tokens(
        auth: Channel,
        access_token: &str,
        refresh_token: String,
        expires_in: i64,
    ) -> Result<Self, Status> {
        Self::new(
            AuthServiceClient::new(auth),
            access_token,
            expires_in,
            Renewal::Refresh { refresh_token },
        )
    }

    fn new(
        auth: AuthServiceClient<Channel>,
        access_token: &str,
        expires_in: i64,
        renewal: Renewal,
    ) -> Result<Self, Status> {
        Ok(Self {
            inner: Arc::new(Inner {
                auth,
                current: RwLock::new(Token::new(access_token, expires_in, 0)?),
                renewal: tokio::sync::Mutex::new(renewal),
                renewals: AtomicU64::new(0),
            }),
        })
    }

    /// The access token to send now, renewed first when it is due.
    pub async fn access_token(&self) -> Result<String, Status> {
        let token = self.token().await?;
        Ok(token
            .header
            .to_str()
            .map_err(|_| Status::internal("the access token is not ASCII"))?
            .trim_start_matches("Bearer ")
            .to_owned())
    }

    /// How many times the token was renewed.
    pub fn renewals(&self) -> u64 {
        self.inner.renewals.load(Ordering::Relaxed)
    }

    fn current(&self) -> Token {
        match self.inner.current.read() {
            Ok(token) => token.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The token, renewed when due. A renewal that fails while the token
    /// still has life left is logged and the token used: the next call
    /// tries again.
    pub(crate) async fn token(&self) -> Result<Token, Status> {
        let token = self.current();
        let now = now();
        if now < token.renew_at {
            return Ok(token);
        }
        match self.renew(token.generation).await {
            Ok(token) => Ok(token),
            Err(status) if now < token.expires_at => {
                tracing::warn!(error = %status, "could not renew the access token yet");
                Ok(token)
            }
            Err(status) => Err(status),
        }
    }

    /// Renews the token unless someone already did since `seen` (the
    /// generation of the token that was found due or refused).
    pub(crate) async fn renew(&self, seen: u64) -> Result<Token, Status> {
        let mut renewal = self.inner.renewal.lock().await;
        let token = self.current();
        if token.generation != seen {
            return Ok(token);
        }
        let mut auth = self.inner.auth.clone();
        let (access_token, expires_in) = renewal.renew(&mut auth).await?;
        let token = Token::new(&access_token, expires_in, seen + 1)?;
        match self.inner.current.write() {
            Ok(mut current) => *current = token.clone(),
            Err(poisoned) => *poisoned.into_inner() = token.clone(),
        }
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }
}

impl Renewal {
    /// A new access token and its lifetime in seconds; a refresh token is
    /// replaced by the one that comes with it.
    async fn renew(
        &mut self,
        auth: &mut AuthServiceClient<Channel>,
    ) -> Result<(String, i64), Status> {
        match self {
            Renewal::Refresh { refresh_token } => {
                let response = auth
                    .refresh_token(timed(RefreshTokenRequest {
                        refresh_token: refresh_token.clone(),
                    }))
                    .await?
                    .into_inner();
                *refresh_token = response.refresh_token;
                Ok((response.access_token, response.expires_in))
            }
            Renewal::ServiceAccount { .. } => self.issue(auth).await,
        }
    }

    async fn issue(&self, auth: &mut AuthServiceClient<Channel>) -> Result<(String, i64), Status> {
        let Renewal::ServiceAccount { client_id, secret } = self else {
            return Err(Status::internal("not a service account"));
        };
        let response = auth
            .issue_service_token(timed(IssueServiceTokenRequest {
                client_id: client_id.clone(),
                client_secret: secret.clone(),
            }))
            .await?
            .into_inner();
        Ok((response.access_token, response.expires_in))
    }
}

impl Token {
    fn new(access_token: &str, expires_in: i64, generation: u64) -> Result<Self, Status> {
        let header = format!("Bearer {access_token}")
            .parse()
            .map_err(|_| Status::internal("auth-service returned a token that is not ASCII"))?;
        let life = Duration::from_secs(expires_in.max(0).unsigned_abs());
        let margin = (life / 5).min(MAX_MARGIN);
        let now = now();
        Ok(Self {
            header,
            generation,
            renew_at: now + life - margin,
            expires_at: now + life,
        })
    }
}

fn timed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(RENEWAL_TIMEOUT);
    request
}

/// A token's life is measured on this machine's monotonic clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}
