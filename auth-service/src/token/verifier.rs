//! auth-service verifies access tokens with its own keys (remembering the
//! signature checks it already made) and then checks the user's current
//! state, on every request: a disabled user, or a token from before the user's
//! last password or role change (an older token generation), is refused at
//! once. The same check answers `ValidateToken`.

use std::sync::Arc;

use shared::{
    Result,
    identity::Identity,
    token::{AccessClaims, BoxFuture, INVALID_TOKEN, TokenVerifier},
};

use crate::{state::State, users};

#[derive(Debug)]
pub(crate) struct AuthVerifier {
    state: Arc<State>,
}

impl AuthVerifier {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The claims of `token` when it is valid and its user still stands behind
/// it. A database failure is an error, not a verdict.
pub(crate) async fn check(state: &State, token: &str) -> Result<(AccessClaims, users::User)> {
    let now = state.clock.now();
    let claims = match state.verified_tokens.get(token, now) {
        Some(claims) => claims,
        None => {
            let claims = state.keys.verify(token, now).await?;
            state.verified_tokens.put(token, claims.clone(), claims.exp);
            claims
        }
    };
    let user_id = uuid::Uuid::parse_str(&claims.sub).map_err(|_| INVALID_TOKEN)?;
    let user = users::by_id(state.db.read().await?.conn(), user_id)
        .await?
        .ok_or(INVALID_TOKEN)?;
    if user.disabled || user.token_generation != claims.tgen {
        return Err(INVALID_TOKEN);
    }
    Ok((claims, user))
}

impl TokenVerifier for AuthVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        _deadline: Option<std::time::Duration>,
    ) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(async move {
            let (claims, _) = check(&self.state, token).await?;
            Ok(claims.identity()?)
        })
    }
}
