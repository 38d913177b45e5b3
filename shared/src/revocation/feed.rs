//! document-service's subscription to auth-service's revocation feed: a
//! snapshot at start (and whenever the cursor is no longer kept), then
//! `WatchRevocations` from the cursor, reconnecting with backoff. Each
//! heartbeat confirms the state fresh; verifiers trust it only while it is
//! (see `JwksVerifier`).
//!
//! The feed authenticates as a service account: its id and secret buy a
//! short-lived token (`IssueServiceToken`), renewed before it expires.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use secrecy::{ExposeSecret, SecretString};
use tonic::{Code, Status, transport::Channel};

use crate::telemetry::{Propagate, Traced};

use super::{Fact, Revocations};
use crate::proto::auth::v1::{
    IssueServiceTokenRequest, ListRevocationStateRequest, WatchRevocationsRequest,
    auth_service_client::AuthServiceClient, revocation_service_client::RevocationServiceClient,
    watch_revocations_response::Message,
};

/// How the feed proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// A client id and secret (DOCUMENT_CLIENT_ID, DOCUMENT_CLIENT_SECRET).
    Given {
        client_id: String,
        secret: SecretString,
    },
    /// A file holding `client_id:secret`, written by auth-service's
    /// bootstrap (compose and the local stack share it).
    File(PathBuf),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Given { client_id, .. } => write!(f, "Given({client_id}, ***)"),
            Credentials::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl Credentials {
    async fn read(&self) -> Result<(String, SecretString), Status> {
        match self {
            Credentials::Given { client_id, secret } => Ok((client_id.clone(), secret.clone())),
            Credentials::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    Status::unavailable(format!("client credentials {}: {e}", path.display()))
                })?;
                let (id, secret) = text.trim().split_once(':').ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "client credentials {}: not `client_id:secret`",
                        path.display()
                    ))
                })?;
                Ok((id.to_owned(), secret.to_owned().into()))
            }
        }
    }
}

/// The subscription; [`Feed::spawn`] runs it until the task is aborted.
#[derive(Debug)]
pub struct Feed {
    auth: AuthServiceClient<Traced>,
    revocations: RevocationServiceClient<Traced>,
    credentials: Credentials,
    state: Arc<Revocations>,
    /// The service token and when to renew it.
    token: Mutex<Option<(String, Instant)>>,
}

/// Why a subscription ended.
enum Ended {
    /// The cursor is not kept, or the facts did not follow on: resync.
    Resync,
    /// The server ended the stream (OK): reconnect from the cursor.
    Reconnect,
    Failed(Status),
}

impl From<Status> for Ended {
    fn from(status: Status) -> Self {
        if status.code() == Code::FailedPrecondition {
            Ended::Resync
        } else {
            Ended::Failed(status)
        }
    }
}

const PAGE: i32 = 500;
/// How long a stream may send nothing before it is replaced.
const SILENCE: Duration = Duration::from_millis(1500);
/// Well under the default staleness bound (2 s), so that a restarted
/// auth-service is found again before the state goes stale.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

impl Feed {
    pub fn new(channel: Channel, credentials: Credentials, state: Arc<Revocations>) -> Self {
        Self {
            auth: AuthServiceClient::with_interceptor(channel.clone(), Propagate),
            revocations: RevocationServiceClient::with_interceptor(channel, Propagate),
            credentials,
            state,
            token: Mutex::new(None),
        }
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(&self) {
        let mut resync = true;
        let mut backoff = Duration::from_millis(100);
        let mut last_error: Option<String> = None;
        loop {
            let started = crate::clock::monotonic();
            let ended = self.subscribe(&mut resync).await;
            match ended {
                Ended::Resync => resync = true,
                Ended::Reconnect => {
                    // Its token may be what ended it (its lifetime, or a
                    // revocation of this account): ask for a new one.
                    self.forget_token();
                    backoff = Duration::from_millis(100);
                }
                Ended::Failed(status) => {
                    if status.code() == Code::Unauthenticated {
                        self.forget_token();
                    }
                    // One line per kind of failure, not one per retry.
                    let error = format!("{:?}: {}", status.code(), status.message());
                    if last_error.as_ref() != Some(&error) {
                        // Before the first subscription, auth-service not being
                        // up yet is start-up order, not an incident.
                        if self.state.staleness().is_none() {
                            tracing::info!(%error, "waiting for auth-service's revocation feed; tokens are verified with ValidateToken meanwhile");
                        } else {
                            tracing::warn!(%error, "revocation feed interrupted; tokens are verified with ValidateToken once it is stale");
                        }
                        last_error = Some(error);
                    }
                }
            }
            // A subscription that lasted was healthy: start again quickly.
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_millis(100);
                last_error = None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription is one trace: the token, the snapshot and the watch
    /// are its children at auth-service.
    #[tracing::instrument(name = "revocation feed", skip_all)]
    async fn subscribe(&self, resync: &mut bool) -> Ended {
        let token = match self.token().await {
            Ok(token) => token,
            Err(status) => return Ended::Failed(status),
        };
        if *resync {
            if let Err(ended) = self.snapshot(&token).await {
                return ended;
            }
            *resync = false;
        }
        match self.watch(&token).await {
            Ok(()) => Ended::Reconnect,
            Err(ended) => ended,
        }
    }

    fn forget_token(&self) {
        if let Ok(mut token) = self.token.lock() {
            *token = None;
        }
    }

    async fn token(&self) -> Result<String, Status> {
        if let Ok(token) = self.token.lock()
            && let Some((token, renew_at)) = token.as_ref()
            && crate::clock::monotonic() < *renew_at
        {
            return Ok(token.clone());
        }
        let (client_id, secret) = self.credentials.read().await?;
        let response = self
            .auth
            .clone()
            .issue_service_token(IssueServiceTokenRequest {
                client_id,
                client_secret: secret.expose_secret().to_owned(),
            })
            .await?
            .into_inner();
        // Renewed at 80% of its life, so a slow answer never leaves us without.
        let life = Duration::from_secs(response.expires_in.max(1) as u64);
        let renew_at = crate::clock::monotonic() + life.mul_f32(0.8);
        if let Ok(mut token) = self.token.lock() {
            *token = Some((response.access_token.clone(), renew_at));
        }
        Ok(response.access_token)
    }

    fn request<T>(message: T, token: &str) -> Result<tonic::Request<T>, Status> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("service token is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }

    async fn snapshot(&self, token: &str) -> Result<(), Ended> {
        let mut facts = Vec::new();
        let mut page_token = String::new();
        let mut cursor = None;
        loop {
            let request = Self::request(
                ListRevocationStateRequest {
                    page_size: PAGE,
                    page_token: page_token.clone(),
                },
                token,
            )?;
            let page = self
                .revocations
                .clone()
                .list_revocation_state(request)
                .await
                .map_err(Ended::Failed)?
                .into_inner();
            cursor.get_or_insert(page.cursor);
            for event in &page.events {
                facts.push(Fact::from_proto(event).ok_or(Ended::Resync)?);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let cursor = i64::try_from(cursor.unwrap_or(0)).map_err(|_| Ended::Resync)?;
        self.state.replace(&facts, cursor);
        let (principals, sessions) = self.state.len();
        tracing::info!(
            cursor,
            principals,
            sessions,
            "revocation state loaded from a snapshot"
        );
        Ok(())
    }

    async fn watch(&self, token: &str) -> Result<(), Ended> {
        let request = Self::request(
            WatchRevocationsRequest {
                after_cursor: self.state.cursor() as u64,
            },
            token,
        )?;
        let mut stream = self
            .revocations
            .clone()
            .watch_revocations(request)
            .await?
            .into_inner();
        loop {
            // A stream that goes quiet (its server half gone, a proxy that
            // holds it open) is given up for a new one before the state
            // goes stale: heartbeats come every 500 ms.
            let Ok(message) = tokio::time::timeout(SILENCE, stream.message()).await else {
                return Err(Ended::Failed(Status::unavailable("the feed went quiet")));
            };
            let Some(message) = message? else {
                return Ok(());
            };
            match message.message {
                Some(Message::Event(event)) => {
                    let fact = Fact::from_proto(&event).ok_or(Ended::Resync)?;
                    self.state.extend(&[fact]).map_err(|_| Ended::Resync)?;
                }
                Some(Message::Heartbeat(beat)) => {
                    let cursor = i64::try_from(beat.cursor).map_err(|_| Ended::Resync)?;
                    let oldest = i64::try_from(beat.oldest_cursor).map_err(|_| Ended::Resync)?;
                    self.state
                        .confirm(cursor, oldest)
                        .map_err(|_| Ended::Resync)?;
                }
                None => {}
            }
        }
    }
}
