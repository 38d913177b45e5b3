//! `docverify.auth.v1.AuthService`: each RPC parses its request into a
//! command and calls the function named for it.

use std::sync::Arc;

use shared::{
    Error,
    db::Timestamp,
    identity::{current_user, request_context},
    proto::auth::v1::{self as pb, auth_service_server::AuthService},
};
use tonic::{Request, Response, Status};

use super::{change_password, login, logout, refresh_token, register};
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
        let user = users::by_id(self.state.db.read().await?.conn(), me.user_id)
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
