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

/// Signs an access token for `user` in session `session_id` at `now`, and
/// pairs it with the refresh token just minted for the same session.
pub(crate) fn session(
    state: &State,
    user: &User,
    session_id: Uuid,
    refresh_token: String,
    now: Timestamp,
) -> Result<Session> {
    let subject = Subject {
        id: user.id,
        email: user.email.clone(),
        roles: user.role_names(),
        token_generation: user.token_generation,
        session_id: Some(session_id),
    };
    Ok(Session {
        access_token: access_token(state, subject, now)?,
        refresh_token,
        expires_in: state.access_ttl.as_secs() as i64,
        user: user.to_proto(),
    })
}

/// Whom an access token is for.
#[derive(Debug)]
pub(crate) struct Subject {
    pub id: Uuid,
    /// A user's email; `service:<name>` for a service account.
    pub email: String,
    pub roles: Vec<String>,
    pub token_generation: i64,
    /// `None` for a service account (it has no session).
    pub session_id: Option<Uuid>,
}

pub(crate) fn access_token(state: &State, subject: Subject, now: Timestamp) -> Result<String> {
    let iat = now.unix_seconds();
    state.keys.sign(&AccessClaims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: subject.id.to_string(),
        email: subject.email,
        roles: subject.roles,
        iat,
        nbf: iat,
        exp: iat + state.access_ttl.as_secs() as i64,
        jti: Uuid::now_v7().to_string(),
        tgen: subject.token_generation,
        sid: subject.session_id.map(|s| s.to_string()),
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
