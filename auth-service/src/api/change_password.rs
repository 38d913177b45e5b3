//! ChangePassword: the current password checked (and throttled) like a
//! login, the new one judged like Register's; every session of the user ends.

use serde_json::json;
use shared::{
    Error, Result,
    audit::{self, Action, Actor, Event, Outcome},
    identity::{Identity, RequestContext},
    proto::auth::v1 as pb,
    revocation::Kind,
    validate::AllFields,
};

use super::login::{BAD_CREDENTIALS, claim_attempt};
use crate::{
    fields::{Email, NewPassword, Password},
    revocation::{self, log::NewFact},
    state::State,
    throttle,
    token::refresh,
    users,
};

/// A parsed `ChangePasswordRequest`.
#[derive(Debug)]
pub(super) struct ChangePassword {
    current: Password,
    new: NewPassword,
}

impl TryFrom<pb::ChangePasswordRequest> for ChangePassword {
    type Error = Error;

    fn try_from(req: pb::ChangePasswordRequest) -> Result<Self> {
        let (current, new) = (
            Password::parse("current_password", &req.current_password),
            NewPassword::parse("new_password", &req.new_password),
        )
            .all()?;
        if current.expose() == new.expose() {
            return Err(Error::invalid(
                "new_password",
                "must differ from the current password",
            ));
        }
        Ok(Self { current, new })
    }
}

pub(super) async fn change_password(
    state: &State,
    ctx: &RequestContext,
    me: &Identity,
    cmd: ChangePassword,
) -> Result<()> {
    let user = users::by_id(state.db.read().await?.conn(), me.user_id)
        .await?
        .ok_or(Error::not_found("user"))?;
    let email = Email::parse("email", &user.email)?;
    let new = cmd.new.not_email("new_password", &email)?;
    let permit = state.hasher.reserve()?;
    state
        .hasher
        .check_strength(&permit, "new_password", &new, &email, &user.display_name)
        .await?;
    // Guessing the current password with a stolen access token is a login
    // attempt like any other.
    claim_attempt(state, ctx, &email).await?;
    if !state
        .hasher
        .verify(&permit, &cmd.current, Some(user.password_hash.clone()))
        .await?
    {
        let event = Event::new(Action::PasswordChanged, Actor::from(&user), "user", user.id)
            .outcome(Outcome::Failed)
            .details(json!({ "reason": "invalid_current_password" }));
        audit::record(&state.db, ctx, state.clock.now(), event).await?;
        return Err(BAD_CREDENTIALS);
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
        return Err(BAD_CREDENTIALS);
    }
    let changed = users::set_password(tx.conn(), user.id, &password_hash, now).await?;
    let fact = NewFact::principal(
        Kind::PasswordChanged,
        user.id,
        changed.token_generation,
        changed.disabled,
    );
    let revoked = refresh::revoke_user(tx.conn(), user.id, None, now)
        .await?
        .tokens;
    let fact = revocation::log::append(&mut tx, fact, now).await?;
    throttle::reset(&mut tx, ctx, email.as_str(), now).await?;
    let event = Event::new(Action::PasswordChanged, Actor::from(&user), "user", user.id)
        .details(json!({ "revoked_refresh_tokens": revoked }));
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    state.published(&fact);
    Ok(())
}
