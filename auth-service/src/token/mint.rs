//! Minting: the access token (signed claims for a user, now) and the
//! session a login or refresh hands out with it.

use shared::{
    Result,
    db::Timestamp,
    token::{AUDIENCE, AccessClaims, ISSUER},
};
use uuid::Uuid;

use crate::{state::State, users::User};

/// The tokens a successful login or refresh hands out.
pub struct Session {
    access_token: String,
    refresh_token: String,
    expires_in: i64,
    user: shared::proto::auth::v1::User,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// Signs an access token for `user` at `now`, and pairs it with the
/// refresh token just minted for the same session.
pub(crate) fn session(
    state: &State,
    user: &User,
    refresh_token: String,
    now: Timestamp,
) -> Result<Session> {
    Ok(Session {
        access_token: access_token(state, user, now)?,
        refresh_token,
        expires_in: state.access_ttl.as_secs() as i64,
        user: user.to_proto(),
    })
}

fn access_token(state: &State, user: &User, now: Timestamp) -> Result<String> {
    let iat = now.unix_seconds();
    state.keys.sign(&AccessClaims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: user.id.to_string(),
        email: user.email.clone(),
        roles: user.role_names(),
        iat,
        nbf: iat,
        exp: iat + state.access_ttl.as_secs() as i64,
        jti: Uuid::now_v7().to_string(),
        tgen: user.token_generation,
    })
}

macro_rules! into_response {
    ($($response:ty),+) => {$(
        impl From<Session> for $response {
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
    )+};
}

into_response!(
    shared::proto::auth::v1::LoginResponse,
    shared::proto::auth::v1::RefreshTokenResponse
);
