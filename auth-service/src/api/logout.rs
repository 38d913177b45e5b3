//! Logout: revokes the refresh token's whole family. An unknown token is
//! not an error (RFC 7009): there is nothing to revoke.

use shared::{
    Error, Result,
    audit::{self, Action, Actor, Event},
    identity::RequestContext,
    proto::auth::v1 as pb,
};

use crate::{
    fields::RefreshToken,
    revocation::{self, log::NewFact},
    state::State,
    token::refresh,
    users,
};

/// A parsed `LogoutRequest`.
#[derive(Debug)]
pub(super) struct Logout(RefreshToken);

impl TryFrom<pb::LogoutRequest> for Logout {
    type Error = Error;

    fn try_from(req: pb::LogoutRequest) -> Result<Self> {
        RefreshToken::parse("refresh_token", &req.refresh_token).map(Self)
    }
}

pub(super) async fn logout(state: &State, ctx: &RequestContext, cmd: Logout) -> Result<()> {
    let Some(token) = cmd.0.expose() else {
        return Ok(());
    };
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if let Some((user_id, family_id)) = refresh::family_of(tx.conn(), token).await? {
        // Its access tokens end with it, at every verifier.
        refresh::revoke_family(tx.conn(), family_id, now).await?;
        let fact =
            revocation::log::append(&mut tx, NewFact::session(user_id, family_id), now).await?;
        let who = users::by_id(tx.conn(), user_id)
            .await?
            .map_or_else(Actor::default, |u| Actor::from(&u));
        let event = Event::new(Action::Logout, who, "token_family", family_id);
        audit::append(&mut tx, ctx, now, event).await?;
        tx.commit().await?;
        state.published(&fact);
    }
    Ok(())
}
