//! Login: a password check behind two throttles (the email and the client
//! address), then a new refresh family and a session.

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event, Outcome},
    identity::RequestContext,
    proto::auth::v1 as pb,
    validate::AllFields,
};

use crate::{
    fields::{Email, Password},
    state::State,
    throttle::{self, Claim},
    token::{
        mint::{self, Session},
        refresh,
    },
    users,
};

pub(super) const BAD_CREDENTIALS: Error = Error::Unauthenticated {
    reason: Reason::InvalidCredentials,
    message: "invalid email or password",
};

/// A parsed `LoginRequest`.
#[derive(Debug)]
pub(super) struct Login {
    email: Email,
    password: Password,
}

impl TryFrom<pb::LoginRequest> for Login {
    type Error = Error;

    fn try_from(req: pb::LoginRequest) -> Result<Self> {
        let (email, password) = (
            Email::parse("email", &req.email),
            Password::parse("password", &req.password),
        )
            .all()?;
        Ok(Self { email, password })
    }
}

/// Claims one password check for `email` from the throttle; refused
/// while the email is locked (counted for the lock window's one
/// `auth.login_throttled` event, see `throttle`).
pub(super) async fn claim_attempt(
    state: &State,
    ctx: &RequestContext,
    email: &Email,
) -> Result<()> {
    let now = state.clock.now();
    match throttle::claim(&state.db, ctx, email.as_str(), throttle::EMAIL, now).await? {
        Claim::Allowed => Ok(()),
        Claim::Throttled { retry_after } => Err(Error::ResourceExhausted {
            reason: Reason::LoginThrottled,
            message: "too many failed password checks for this account; retry later",
            retry_after: Some(retry_after),
        }),
    }
}

pub(super) async fn login(state: &State, ctx: &RequestContext, cmd: Login) -> Result<Session> {
    let Login { email, password } = cmd;
    let permit = state.hasher.reserve()?;
    // The client address first, without counting (a locked address
    // refuses at once); then the email, counted; then the address,
    // counted. A success resets both.
    let address = ctx.client_addr.map(|a| throttle::address_key(a.ip()));
    if let Some(key) = &address
        && let Claim::Throttled { retry_after } =
            throttle::refuse_if_locked(&state.db, ctx, key, state.clock.now()).await?
    {
        return Err(Error::ResourceExhausted {
            reason: Reason::AddressThrottled,
            message: "too many failed logins from this client address; retry later",
            retry_after: Some(retry_after),
        });
    }
    claim_attempt(state, ctx, &email).await?;
    if let Some(key) = &address {
        // Already checked above: only counts (a concurrent attempt may
        // just have locked it; this one was admitted before).
        let now = state.clock.now();
        throttle::claim(&state.db, ctx, key, state.address_policy, now).await?;
    }

    let user = users::by_email(state.db.read().await?.conn(), email.as_str()).await?;
    let matched = state
        .hasher
        .verify(
            &permit,
            &password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    drop(permit);
    let user = match (user, matched) {
        (Some(user), true) => user,
        (user, _) => {
            let who = user.as_ref().map_or_else(
                || Actor {
                    id: None,
                    email: email.as_str().to_owned(),
                },
                Actor::from,
            );
            let event = Event::new(Action::LoginFailed, who, "user", email.as_str())
                .outcome(Outcome::Failed)
                .details(json!({ "reason": "invalid_credentials" }));
            audit::record(&state.db, ctx, state.clock.now(), event).await?;
            return Err(BAD_CREDENTIALS);
        }
    };

    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    // The hash check took milliseconds without a lock: mint only if the
    // password checked is still the user's, read again with the row
    // locked, so that a password change, disable or role change that
    // committed meanwhile is not outlived by this login.
    let Some(user) = users::lock(tx.conn(), user.id)
        .await?
        .filter(|current| current.password_hash == user.password_hash)
    else {
        return Err(BAD_CREDENTIALS);
    };
    throttle::reset(&mut tx, ctx, email.as_str(), now).await?;
    if let Some(key) = &address {
        throttle::reset(&mut tx, ctx, key, now).await?;
    }
    if user.disabled {
        let event = Event::new(Action::LoginFailed, Actor::from(&user), "user", user.id)
            .outcome(Outcome::Denied)
            .details(json!({ "reason": "user_disabled" }));
        audit::append(&mut tx, ctx, now, event).await?;
        tx.commit().await?;
        return Err(Error::PermissionDenied {
            reason: Reason::UserDisabled,
            message: "this account is disabled",
        });
    }
    let family = refresh::create_family(tx.conn(), user.id, user.session_epoch, ctx, now).await?;
    let minted = refresh::mint(tx.conn(), user.id, family, now, state.refresh_ttl).await?;
    let event = Event::new(Action::LoginSucceeded, Actor::from(&user), "user", user.id);
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    mint::session(state, &user, family, minted.token, now)
}
