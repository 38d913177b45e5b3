//! The first admin: from `BOOTSTRAP_ADMIN_EMAIL` / `BOOTSTRAP_ADMIN_PASSWORD`,
//! from the `create-admin` subcommand, or (local stack only) generated as
//! `admin@localhost` with a random password shown once.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;
use shared::{
    Error, Result,
    audit::{self, Actor, Event},
    identity::RequestContext,
    policy::Role,
};

use crate::{
    config::Config,
    fields::{Email, NewPassword},
    state::State,
    users::{self, NewUser},
};

const LOCAL_ADMIN: &str = "admin@localhost";

pub async fn bootstrap_admin(state: &State, config: &Config) -> Result<()> {
    if users::admin_exists(state.db.read().await?.conn()).await? {
        return Ok(());
    }
    match (
        &config.bootstrap_admin_email,
        &config.bootstrap_admin_password,
    ) {
        (Some(email), Some(password)) => {
            let email = Email::parse("BOOTSTRAP_ADMIN_EMAIL", email)?;
            let password = NewPassword::parse("BOOTSTRAP_ADMIN_PASSWORD", password, Some(&email))?;
            ensure_admin(state, &email, &password).await?;
            tracing::info!(email = email.as_str(), "bootstrap admin created");
        }
        _ if config.generate_local_admin => {
            let mut bytes = [0u8; 18];
            getrandom::fill(&mut bytes).map_err(Error::internal)?;
            let password = URL_SAFE_NO_PAD.encode(bytes);
            let email = Email::parse("email", LOCAL_ADMIN)?;
            ensure_admin(
                state,
                &email,
                &NewPassword::parse("password", &password, Some(&email))?,
            )
            .await?;
            // Shown once, on the terminal, not through the log pipeline.
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "\n  docverify local admin created: {LOCAL_ADMIN} / {password}\n  (shown only now; set BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD to choose your own)\n"
                );
            }
        }
        _ => tracing::warn!("no admin exists; create one with the create-admin subcommand"),
    }
    Ok(())
}

/// Creates the admin, or grants the admin role to an existing account.
pub async fn ensure_admin(state: &State, email: &Email, password: &NewPassword) -> Result<()> {
    let ctx = RequestContext {
        request_id: "bootstrap".to_owned(),
        client_addr: None,
    };
    let system = Actor {
        id: None,
        email: "system".to_owned(),
    };
    let now = state.clock.now();
    if let Some(user) = users::by_email(state.db.read().await?.conn(), email.as_str()).await? {
        let mut roles = user.roles();
        if roles.contains(&Role::ADMIN) {
            return Ok(());
        }
        let old = user.role_names();
        roles.push(Role::ADMIN);
        let mut tx = state.db.begin().await?;
        let user = users::set_roles(tx.conn(), user.id, &roles, now).await?;
        let event = Event::new("user.roles_changed", system, "user", user.id)
            .details(json!({ "old_roles": old, "new_roles": user.role_names() }));
        audit::append(&mut tx, &ctx, now, event).await?;
        return tx.commit().await;
    }
    let hash = state.hasher.hash(password).await?;
    let mut tx = state.db.begin().await?;
    let user = users::insert(
        tx.conn(),
        NewUser {
            email: email.as_str(),
            display_name: "Administrator",
            password_hash: &hash,
            roles: &[Role::ADMIN],
        },
        now,
    )
    .await?;
    let event = Event::new("user.registered", system, "user", user.id)
        .details(json!({ "roles": user.role_names() }));
    audit::append(&mut tx, &ctx, now, event).await?;
    tx.commit().await
}

/// The `create-admin` subcommand.
pub async fn create_admin(config: &Config, email: &str, password: &str) -> Result<()> {
    let db = crate::migrate(config).await?;
    let state = State::build(config, db.clone()).await?;
    let email = Email::parse("email", email)?;
    let password = NewPassword::parse("password", password, Some(&email))?;
    ensure_admin(&state, &email, &password).await?;
    db.close().await;
    Ok(())
}
