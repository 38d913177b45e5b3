//! RefreshToken: spends a refresh token and mints its successor in the same
//! family; a spent token presented again revokes the family.

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event, Outcome},
    identity::RequestContext,
    proto::auth::v1 as pb,
};

use crate::{
    fields::RefreshToken,
    revocation::{self, log::NewFact},
    state::State,
    token::{
        mint::{self, Session},
        refresh::{self, Spent},
    },
    users,
};

const BAD_REFRESH_TOKEN: Error = Error::Unauthenticated {
    reason: Reason::InvalidRefreshToken,
    message: "refresh token is invalid, expired or revoked",
};

impl TryFrom<pb::RefreshTokenRequest> for RefreshToken {
    type Error = Error;

    fn try_from(req: pb::RefreshTokenRequest) -> Result<Self> {
        RefreshToken::parse("refresh_token", &req.refresh_token)
    }
}

pub(super) async fn refresh_token(
    state: &State,
    ctx: &RequestContext,
    token: RefreshToken,
) -> Result<Session> {
    let token = token.expose().ok_or(BAD_REFRESH_TOKEN)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    match refresh::spend(tx.conn(), token, now).await? {
        Spent::Fresh {
            user_id,
            family_id,
            session_epoch,
        } => {
            let user = match users::by_id(tx.conn(), user_id).await? {
                Some(user) if !user.disabled && user.session_epoch == session_epoch => user,
                user => {
                    // Every revocation is audited, this late one too.
                    let reason = match &user {
                        Some(u) if u.disabled => "user_disabled",
                        Some(_) => "sessions_revoked",
                        None => "user_missing",
                    };
                    let revoked = refresh::revoke_family(tx.conn(), family_id, now).await?;
                    let who = user.as_ref().map_or_else(Actor::default, Actor::from);
                    let event =
                        Event::new(Action::TokenFamilyRevoked, who, "token_family", family_id)
                            .outcome(Outcome::Denied)
                            .details(json!({ "reason": reason, "revoked_tokens": revoked }));
                    audit::append(&mut tx, ctx, now, event).await?;
                    tx.commit().await?;
                    return Err(BAD_REFRESH_TOKEN);
                }
            };
            let minted =
                refresh::mint(tx.conn(), user.id, family_id, now, state.refresh_ttl).await?;
            refresh::touch_family(tx.conn(), family_id, ctx, now).await?;
            let event = Event::new(
                Action::TokenRefreshed,
                Actor::from(&user),
                "token_family",
                family_id,
            );
            audit::append(&mut tx, ctx, now, event).await?;
            tx.commit().await?;
            mint::session(state, &user, family_id, minted.token, now)
        }
        Spent::Reused { user_id, family_id } => {
            let revoked = refresh::revoke_family(tx.conn(), family_id, now).await?;
            // The thief may hold the family's newest access token too.
            let fact =
                revocation::log::append(&mut tx, NewFact::session(user_id, family_id), now).await?;
            let who = users::by_id(tx.conn(), user_id)
                .await?
                .map_or_else(Actor::default, |u| Actor::from(&u));
            let event = Event::new(Action::TokenReuseDetected, who, "token_family", family_id)
                .outcome(Outcome::Denied)
                .details(json!({ "revoked_tokens": revoked }));
            audit::append(&mut tx, ctx, now, event).await?;
            tx.commit().await?;
            state.published(&fact);
            tracing::warn!(%family_id, "refresh token reuse detected; family revoked");
            Err(BAD_REFRESH_TOKEN)
        }
        Spent::Invalid => Err(BAD_REFRESH_TOKEN),
    }
}
