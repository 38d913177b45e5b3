//! auth-service verifies access tokens with its own keys (remembering the
//! signature checks it already made) and then asks whether a revocation
//! fact refuses the token: a disabled user or service account, a token from
//! before the principal's last password, role or secret change (an older
//! token generation), or a revoked session. The facts are in memory (see
//! `crate::revocation`), so a check reads no database; while they are
//! stale (the log unreadable for REVOCATION_MAX_STALENESS) the principal's
//! row and the session's row are read instead. The same check answers
//! `ValidateToken`.

use std::sync::Arc;

use shared::{
    Result,
    identity::Identity,
    token::{AccessClaims, BoxFuture, INVALID_TOKEN, TokenVerifier},
};
use uuid::Uuid;

use crate::{revocation::log, state::State};

#[derive(Debug)]
pub(crate) struct AuthVerifier {
    state: Arc<State>,
}

impl AuthVerifier {
    pub(crate) fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The claims of `token` when it is valid and not revoked. A database
/// failure is an error, not a verdict.
pub(crate) async fn check(state: &State, token: &str) -> Result<AccessClaims> {
    let now = state.clock.now();
    let claims = match state.verified_tokens.get(token, now) {
        Some(claims) => claims,
        None => {
            let claims = state.keys.verify(token, now).await?;
            state.verified_tokens.put(token, claims.clone(), claims.exp);
            claims
        }
    };
    let principal = Uuid::parse_str(&claims.sub).map_err(|_| INVALID_TOKEN)?;
    let session = claims.session_id()?;
    if state.revocations.is_fresh(state.revocation_max_staleness) {
        state.revocations.check(principal, claims.tgen, session)?;
        return Ok(claims);
    }
    let mut conn = state.db.read().await?;
    let (generation, disabled) = log::principal(conn.conn(), principal)
        .await?
        .ok_or(INVALID_TOKEN)?;
    if disabled || generation != claims.tgen {
        return Err(INVALID_TOKEN);
    }
    if let Some(session) = session
        && log::session_revoked(conn.conn(), session).await?
    {
        return Err(INVALID_TOKEN);
    }
    Ok(claims)
}

impl TokenVerifier for AuthVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        _deadline: Option<std::time::Duration>,
    ) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(async move { Ok(check(&self.state, token).await?.identity()?) })
    }
}
