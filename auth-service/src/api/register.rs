//! Register: a new account with the default role.

use shared::{
    Error, Result,
    audit::{self, Action, Actor, Event},
    identity::RequestContext,
    policy::Role,
    proto::auth::v1 as pb,
    validate::AllFields,
};

use crate::{
    fields::{DisplayName, Email, NewPassword},
    state::State,
    users::{self, NewUser, User},
};

/// A parsed `RegisterRequest`.
#[derive(Debug)]
pub(super) struct Register {
    email: Email,
    display_name: DisplayName,
    password: NewPassword,
}

impl TryFrom<pb::RegisterRequest> for Register {
    type Error = Error;

    fn try_from(req: pb::RegisterRequest) -> Result<Self> {
        let email = Email::parse("email", &req.email);
        let password =
            NewPassword::parse("password", &req.password).and_then(|password| match &email {
                Ok(email) => password.not_email("password", email),
                Err(_) => Ok(password),
            });
        let (email, display_name, password) = (
            email,
            DisplayName::parse("display_name", &req.display_name),
            password,
        )
            .all()?;
        Ok(Self {
            email,
            display_name,
            password,
        })
    }
}

pub(super) async fn register(state: &State, ctx: &RequestContext, cmd: Register) -> Result<User> {
    let permit = state.hasher.reserve()?;
    state
        .hasher
        .check_strength(
            &permit,
            "password",
            &cmd.password,
            &cmd.email,
            cmd.display_name.as_str(),
        )
        .await?;
    let password_hash = state.hasher.hash(&permit, &cmd.password).await?;
    drop(permit);

    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let user = users::insert(
        tx.conn(),
        NewUser {
            email: cmd.email.as_str(),
            display_name: cmd.display_name.as_str(),
            password_hash: &password_hash,
            roles: &[Role::DEFAULT],
        },
        now,
    )
    .await?;
    let event = Event::new(Action::UserRegistered, Actor::from(&user), "user", user.id);
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok(user)
}
