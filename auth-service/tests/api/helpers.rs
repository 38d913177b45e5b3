//! The shared test kit, as auth-service's tests use it.

pub(crate) use testkit::{assert_error, auth::*, bearer, concurrently, violated_fields};

use shared::proto::auth::v1::{
    LoginRequest, LoginResponse, auth_service_client::AuthServiceClient,
};

/// The bootstrap admin's login, on any channel to auth-service (a child
/// process, a replica).
pub(crate) async fn admin_login(channel: &tonic::transport::Channel) -> LoginResponse {
    AuthServiceClient::new(channel.clone())
        .login(LoginRequest {
            email: ADMIN_EMAIL.into(),
            password: ADMIN_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
}
