//! `docverify.auth.v1.AuthService`.

use std::sync::Arc;

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event, Outcome},
    db::Timestamp,
    identity::{RequestContext, current_user, request_context},
    proto::auth::v1::{self as pb, auth_service_server::AuthService},
    validate::Violations,
};
use tonic::{Request, Response, Status};

use crate::{
    fields::{self, Email, NewPassword},
    sessions::{self, Spent},
    state::State,
    throttle::{self, Claim},
    users::{self, NewUser},
    verifier,
};

const BAD_CREDENTIALS: Error = Error::Unauthenticated {
    reason: Reason::InvalidCredentials,
    message: "invalid email or password",
};
const BAD_REFRESH_TOKEN: Error = Error::Unauthenticated {
    reason: Reason::InvalidRefreshToken,
    message: "refresh token is invalid, expired or revoked",
};
const MAX_REFRESH_TOKEN_CHARS: usize = 256;

#[derive(Debug, Clone)]
pub struct AuthApi {
    state: Arc<State>,
}

impl AuthApi {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The tokens a successful login or refresh hands out.
struct Session {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
    user: pb::User,
}

impl From<Session> for pb::LoginResponse {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: s.expires_in,
            user: Some(s.user),
        }
    }
}

impl From<Session> for pb::RefreshTokenResponse {
    fn from(s: Session) -> Self {
        Self {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: s.expires_in,
            user: Some(s.user),
        }
    }
}

fn actor(user: &users::User) -> Actor {
    Actor {
        id: Some(user.id),
        email: user.email.clone(),
    }
}

impl AuthApi {
    /// A failed login is recorded in its own transaction (there is no change
    /// to go with it).
    async fn record(&self, ctx: &RequestContext, event: Event) -> Result<()> {
        audit::record(&self.state.db, ctx, self.state.clock.now(), event).await
    }

    /// Claims one password check for `email` from the throttle; refused
    /// while the email is locked (counted for the lock window's one
    /// `auth.login_throttled` event, see `throttle`).
    async fn claim_attempt(&self, ctx: &RequestContext, email: &Email) -> Result<()> {
        let state = &self.state;
        let now = state.clock.now();
        match throttle::claim(&state.db, ctx, email.as_str(), throttle::EMAIL, now).await? {
            Claim::Allowed => Ok(()),
            Claim::Throttled { retry_after } => Err(Error::ResourceExhausted {
                reason: Reason::LoginThrottled,
                message: "too many failed password checks for this account; retry later",
                retry_after: Some(retry_after),
            }),
        }
    }

    async fn login(&self, ctx: &RequestContext, req: pb::LoginRequest) -> Result<Session> {
        let state = &self.state;
        let mut v = Violations::default();
        let email = v.check(Email::parse("email", &req.email));
        let password = v.check(fields::presented_password("password", &req.password));
        v.into_result()?;
        let (Some(email), Some(password)) = (email, password) else {
            return Err(Error::internal("validated fields missing"));
        };

        let permit = state.hasher.reserve()?;
        // The client address first, without counting (a locked address
        // refuses at once); then the email, counted; then the address,
        // counted. A success resets both.
        let address = ctx.client_addr.map(|a| throttle::address_key(a.ip()));
        if let Some(key) = &address
            && let Claim::Throttled { retry_after } =
                throttle::refuse_if_locked(&state.db, ctx, key, state.clock.now()).await?
        {
            return Err(Error::ResourceExhausted {
                reason: Reason::AddressThrottled,
                message: "too many failed logins from this client address; retry later",
                retry_after: Some(retry_after),
            });
        }
        self.claim_attempt(ctx, &email).await?;
        if let Some(key) = &address {
            // Already checked above: only counts (a concurrent attempt may
            // just have locked it; this one was admitted before).
            let now = state.clock.now();
            throttle::claim(&state.db, ctx, key, state.address_policy, now).await?;
        }

        let user = users::by_email(state.db.read().await?.conn(), email.as_str()).await?;
        let matched = state
            .hasher
            .verify(
                &permit,
                password,
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
        drop(permit);
        let user = match (user, matched) {
            (Some(user), true) => user,
            (user, _) => {
                let who = user.as_ref().map_or_else(|| anonymous(&email), actor);
                let event = Event::new(Action::LoginFailed, who, "user", email.as_str())
                    .outcome(Outcome::Failed)
                    .details(json!({ "reason": "invalid_credentials" }));
                self.record(ctx, event).await?;
                return Err(BAD_CREDENTIALS);
            }
        };

        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        // The hash check took milliseconds without a lock: mint only if the
        // password checked is still the user's, read again with the row
        // locked, so that a password change, disable or role change that
        // committed meanwhile is not outlived by this login.
        let Some(user) = users::lock(tx.conn(), user.id)
            .await?
            .filter(|current| current.password_hash == user.password_hash)
        else {
            return Err(BAD_CREDENTIALS);
        };
        throttle::reset(&mut tx, ctx, email.as_str(), now).await?;
        if let Some(key) = &address {
            throttle::reset(&mut tx, ctx, key, now).await?;
        }
        if user.disabled {
            let event = Event::new(Action::LoginFailed, actor(&user), "user", user.id)
                .outcome(Outcome::Denied)
                .details(json!({ "reason": "user_disabled" }));
            audit::append(&mut tx, ctx, now, event).await?;
            tx.commit().await?;
            return Err(Error::PermissionDenied {
                reason: Reason::UserDisabled,
                message: "this account is disabled",
            });
        }
        let family = sessions::create_family(tx.conn(), user.id, user.session_epoch, now).await?;
        let refresh = sessions::mint(tx.conn(), user.id, family, now, state.refresh_ttl).await?;
        let event = Event::new(Action::LoginSucceeded, actor(&user), "user", user.id);
        audit::append(&mut tx, ctx, now, event).await?;
        tx.commit().await?;
        self.session(&user, refresh.token, now)
    }

    fn session(
        &self,
        user: &users::User,
        refresh_token: String,
        now: Timestamp,
    ) -> Result<Session> {
        Ok(Session {
            access_token: self.state.access_token(user, now)?,
            refresh_token,
            expires_in: self.state.access_ttl.as_secs() as i64,
            user: user.to_proto(),
        })
    }

    async fn refresh(&self, ctx: &RequestContext, token: &str) -> Result<Session> {
        if token.is_empty() {
            return Err(Error::invalid("refresh_token", "is required"));
        }
        if token.len() > MAX_REFRESH_TOKEN_CHARS {
            return Err(BAD_REFRESH_TOKEN);
        }
        let state = &self.state;
        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        match sessions::spend(tx.conn(), token, now).await? {
            Spent::Fresh {
                user_id,
                family_id,
                session_epoch,
            } => {
                let user = users::by_id(tx.conn(), user_id).await?;
                let user = match user {
                    Some(user) if !user.disabled && user.session_epoch == session_epoch => user,
                    user => {
                        // Every revocation is audited, this late one too.
                        let reason = match &user {
                            Some(u) if u.disabled => "user_disabled",
                            Some(_) => "sessions_revoked",
                            None => "user_missing",
                        };
                        let revoked = sessions::revoke_family(tx.conn(), family_id, now).await?;
                        let who = user.as_ref().map_or_else(Actor::default, actor);
                        let event =
                            Event::new(Action::TokenFamilyRevoked, who, "token_family", family_id)
                                .outcome(Outcome::Denied)
                                .details(json!({ "reason": reason, "revoked_tokens": revoked }));
                        audit::append(&mut tx, ctx, now, event).await?;
                        tx.commit().await?;
                        return Err(BAD_REFRESH_TOKEN);
                    }
                };
                let refresh =
                    sessions::mint(tx.conn(), user.id, family_id, now, state.refresh_ttl).await?;
                let event = Event::new(Action::TokenRefreshed, actor(&user), "token_family", family_id);
                audit::append(&mut tx, ctx, now, event).await?;
                tx.commit().await?;
                self.session(&user, refresh.token, now)
            }
            Spent::Reused { user_id, family_id } => {
                let revoked = sessions::revoke_family(tx.conn(), family_id, now).await?;
                let who = users::by_id(tx.conn(), user_id)
                    .await?
                    .map_or_else(Actor::default, |u| actor(&u));
                let event = Event::new(Action::TokenReuseDetected, who, "token_family", family_id)
                    .outcome(Outcome::Denied)
                    .details(json!({ "revoked_tokens": revoked }));
                audit::append(&mut tx, ctx, now, event).await?;
                tx.commit().await?;
                tracing::warn!(%family_id, "refresh token reuse detected; family revoked");
                Err(BAD_REFRESH_TOKEN)
            }
            Spent::Invalid => Err(BAD_REFRESH_TOKEN),
        }
    }

    async fn logout(&self, ctx: &RequestContext, token: &str) -> Result<()> {
        if token.is_empty() {
            return Err(Error::invalid("refresh_token", "is required"));
        }
        if token.len() > MAX_REFRESH_TOKEN_CHARS {
            return Ok(());
        }
        let state = &self.state;
        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        // An unknown token is not an error (RFC 7009): nothing to revoke.
        if let Some((user_id, family_id)) = sessions::family_of(tx.conn(), token).await? {
            sessions::revoke_family(tx.conn(), family_id, now).await?;
            let who = users::by_id(tx.conn(), user_id)
                .await?
                .map_or_else(Actor::default, |u| actor(&u));
            audit::append(
                &mut tx,
                ctx,
                now,
                Event::new(Action::Logout, who, "token_family", family_id),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

fn anonymous(email: &Email) -> Actor {
    Actor {
        id: None,
        email: email.as_str().to_owned(),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let ctx = request_context(&request);
        let req = request.into_inner();
        let state = &self.state;
        let mut v = Violations::default();
        let email = v.check(Email::parse("email", &req.email));
        let display_name = v.check(fields::display_name("display_name", &req.display_name));
        let password = v.check(NewPassword::parse(
            "password",
            &req.password,
            email.as_ref(),
        ));
        v.into_result()?;
        let (Some(email), Some(display_name), Some(password)) = (email, display_name, password)
        else {
            return Err(Error::internal("validated fields missing").into());
        };
        let permit = state.hasher.reserve()?;
        state
            .hasher
            .check_strength(&permit, "password", &password, &email, &display_name)
            .await?;
        let password_hash = state.hasher.hash(&permit, &password).await?;
        drop(permit);

        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        let user = users::insert(
            tx.conn(),
            NewUser {
                email: email.as_str(),
                display_name: &display_name,
                password_hash: &password_hash,
                roles: &[shared::policy::Role::DEFAULT],
            },
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            &ctx,
            now,
            Event::new(Action::UserRegistered, actor(&user), "user", user.id),
        )
        .await?;
        tx.commit().await?;
        Ok(Response::new(pb::RegisterResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let ctx = request_context(&request);
        let session = AuthApi::login(self, &ctx, request.into_inner()).await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let ctx = request_context(&request);
        let session = self.refresh(&ctx, &request.get_ref().refresh_token).await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let ctx = request_context(&request);
        AuthApi::logout(self, &ctx, &request.get_ref().refresh_token).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let me = current_user(&request)?;
        let user = users::by_id(
            self.state.db.read().await.map_err(Status::from)?.conn(),
            me.user_id,
        )
        .await?
        .ok_or(Error::not_found("user"))?;
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user.to_proto()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?.clone();
        let req = request.into_inner();
        let state = &self.state;
        let user = users::by_id(state.db.read().await?.conn(), me.user_id)
            .await?
            .ok_or(Error::not_found("user"))?;
        let email = Email::parse("email", &user.email)?;
        let mut v = Violations::default();
        let current = v.check(fields::presented_password(
            "current_password",
            &req.current_password,
        ));
        let new = v.check(NewPassword::parse(
            "new_password",
            &req.new_password,
            Some(&email),
        ));
        v.into_result()?;
        let (Some(current), Some(new)) = (current, new) else {
            return Err(Error::internal("validated fields missing").into());
        };
        if current == new.expose() {
            return Err(
                Error::invalid("new_password", "must differ from the current password").into(),
            );
        }
        let permit = state.hasher.reserve()?;
        state
            .hasher
            .check_strength(&permit, "new_password", &new, &email, &user.display_name)
            .await?;
        // Guessing the current password with a stolen access token is a login
        // attempt like any other.
        self.claim_attempt(&ctx, &email).await?;
        if !state
            .hasher
            .verify(&permit, current, Some(user.password_hash.clone()))
            .await?
        {
            let event = Event::new(Action::PasswordChanged, actor(&user), "user", user.id)
                .outcome(Outcome::Failed)
                .details(json!({ "reason": "invalid_current_password" }));
            self.record(&ctx, event).await?;
            return Err(BAD_CREDENTIALS.into());
        }
        let password_hash = state.hasher.hash(&permit, &new).await?;
        drop(permit);
        let now = state.clock.now();
        let mut tx = state.db.begin().await?;
        // As in login: only if the password checked is still the current one.
        if users::lock(tx.conn(), user.id)
            .await?
            .is_none_or(|current| current.password_hash != user.password_hash)
        {
            return Err(BAD_CREDENTIALS.into());
        }
        users::set_password(tx.conn(), user.id, &password_hash, now).await?;
        let revoked = sessions::revoke_user(tx.conn(), user.id, now).await?;
        throttle::reset(&mut tx, &ctx, email.as_str(), now).await?;
        let event = Event::new(Action::PasswordChanged, actor(&user), "user", user.id)
            .details(json!({ "revoked_refresh_tokens": revoked }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = &request.get_ref().access_token;
        let response = match verifier::check(&self.state, token).await {
            Ok((claims, user)) => pb::ValidateTokenResponse {
                active: true,
                user_id: user.id.to_string(),
                email: user.email.clone(),
                roles: user.role_names(),
                expires_at: Some(
                    Timestamp::from_unix_micros(claims.exp.saturating_mul(1_000_000)).to_proto(),
                ),
            },
            // A broken dependency is an error; a bad token is only inactive.
            Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => return Err(e.into()),
            Err(_) => pb::ValidateTokenResponse::default(),
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        Ok(Response::new(self.state.keys.to_proto()?))
    }
}
