//! `docverify.auth.v1.AuthService`: each RPC parses its request into a
//! command and calls the function named for it.

use std::sync::Arc;

use shared::{
    Error,
    db::Timestamp,
    identity::{current_user, request_context},
    proto::auth::v1::{self as pb, auth_service_server::AuthService},
    validate::uuid,
};
use tonic::{Request, Response, Status};

use super::{change_password, login, logout, refresh_token, register, service_accounts, sessions};
use crate::{state::State, token::verifier, users};

#[derive(Debug, Clone)]
pub(crate) struct AuthApi {
    state: Arc<State>,
}

impl AuthApi {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
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
        let cmd = request.into_inner().try_into()?;
        let user = register::register(&self.state, &ctx, cmd).await?;
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
        let cmd = request.into_inner().try_into()?;
        let session = login::login(&self.state, &ctx, cmd).await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let ctx = request_context(&request);
        let token = request.into_inner().try_into()?;
        let session = refresh_token::refresh_token(&self.state, &ctx, token).await?;
        Ok(Response::new(session.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let ctx = request_context(&request);
        let cmd = request.into_inner().try_into()?;
        logout::logout(&self.state, &ctx, cmd).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let me = current_user(&request)?;
        // The cache is only as good as the revocation state that empties it.
        let state = &self.state;
        let fresh = state.revocations.is_fresh(state.revocation_max_staleness);
        if fresh
            && let Some(generation) = me.token_generation
            && let Some(user) = state.users_cache.get(me.user_id, generation)
        {
            return Ok(Response::new(pb::GetCurrentUserResponse {
                user: Some(user),
            }));
        }
        let row = users::by_id(state.db.read().await?.conn(), me.user_id)
            .await?
            .ok_or(Error::not_found("user"))?;
        let user = row.to_proto();
        if fresh {
            state
                .users_cache
                .put(me.user_id, row.token_generation, user.clone());
        }
        Ok(Response::new(pb::GetCurrentUserResponse {
            user: Some(user),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?.clone();
        let cmd = request.into_inner().try_into()?;
        change_password::change_password(&self.state, &ctx, &me, cmd).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = &request.get_ref().access_token;
        // Roles come from the token: a role change bumps the generation, so
        // a token with old roles is no longer active.
        let response = match verifier::check(&self.state, token).await {
            Ok(claims) => pb::ValidateTokenResponse {
                active: true,
                user_id: claims.sub,
                email: claims.email,
                roles: claims.roles,
                expires_at: Some(
                    Timestamp::from_unix_micros(claims.exp.saturating_mul(1_000_000)).to_proto(),
                ),
                session_id: claims.sid.unwrap_or_default(),
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

    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let me = current_user(&request)?;
        let req = request.get_ref();
        let (sessions, next_page_token) =
            sessions::list(&self.state, me, me.user_id, req.page_size, &req.page_token).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let session = uuid("session_id", &request.get_ref().session_id)?;
        sessions::revoke_one(&self.state, &ctx, me, me.user_id, session).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_all_sessions(
        &self,
        request: Request<pb::RevokeAllSessionsRequest>,
    ) -> Result<Response<pb::RevokeAllSessionsResponse>, Status> {
        let ctx = request_context(&request);
        let me = current_user(&request)?;
        let keep = if request.get_ref().keep_current {
            Some(me.session_id.ok_or(Error::invalid(
                "keep_current",
                "this access token belongs to no session",
            ))?)
        } else {
            None
        };
        let revoked_sessions =
            sessions::revoke_all(&self.state, &ctx, me, me.user_id, keep).await?;
        Ok(Response::new(pb::RevokeAllSessionsResponse {
            revoked_sessions,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        let ctx = request_context(&request);
        let response = service_accounts::issue_token(&self.state, &ctx, request.get_ref()).await?;
        Ok(Response::new(response))
    }
}
