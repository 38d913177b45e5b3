//! The first admin: from `BOOTSTRAP_ADMIN_EMAIL` / `BOOTSTRAP_ADMIN_PASSWORD`,
//! from the `create-admin` subcommand, or (local stack only) generated as
//! `admin@localhost` with a random password shown once.
//!
//! Replicas may start together on an empty database: the check and the
//! insert run under the start-up lock, so exactly one creates the admin and
//! the others find it. An existing account that is not an admin is never
//! promoted silently: anyone could have registered the bootstrap email
//! before the operator started the service. Promotion needs the operator's
//! explicit word (`create-admin --promote-existing`,
//! `BOOTSTRAP_ADMIN_PROMOTE_EXISTING=true`), keeps that account's password,
//! and is audited.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use shared::{
    Error, Result,
    audit::{self, Action, Actor, Event},
    db::StartupLock,
    identity::RequestContext,
    policy::Role,
};

use shared::revocation::Kind;

use crate::{
    api,
    config::Config,
    fields::{Email, NewPassword},
    revocation::{self, log::NewFact},
    service_accounts,
    state::State,
    users::{self, NewUser},
};

const LOCAL_ADMIN: &str = "admin@localhost";
const ADMIN_NAME: &str = "Administrator";

/// What [`ensure_admin`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Promoted,
    AlreadyAdmin,
    /// Another admin exists (only when asked to stop there).
    AdminExists,
}

pub(crate) async fn bootstrap_admin(state: &State, config: &Config) -> Result<()> {
    if users::admin_exists(state.db.read().await?.conn()).await? {
        return Ok(());
    }
    match (
        &config.bootstrap_admin_email,
        &config.bootstrap_admin_password,
    ) {
        (Some(email), Some(password)) => {
            let email = Email::parse("BOOTSTRAP_ADMIN_EMAIL", email)?;
            let password =
                NewPassword::parse("BOOTSTRAP_ADMIN_PASSWORD", password.expose_secret())?
                    .not_email("BOOTSTRAP_ADMIN_PASSWORD", &email)?;
            let outcome = ensure_admin(
                state,
                &email,
                ("BOOTSTRAP_ADMIN_PASSWORD", &password),
                Promote {
                    allowed: config.bootstrap_admin_promote_existing,
                    setting: "BOOTSTRAP_ADMIN_PROMOTE_EXISTING=true",
                },
                true,
            )
            .await?;
            if outcome != Outcome::AdminExists {
                tracing::info!(email = email.as_str(), ?outcome, "bootstrap admin");
            }
        }
        _ if config.generate_local_admin => {
            let mut bytes = [0u8; 18];
            getrandom::fill(&mut bytes).map_err(Error::internal)?;
            let password = URL_SAFE_NO_PAD.encode(bytes);
            let email = Email::parse("email", LOCAL_ADMIN)?;
            let outcome = ensure_admin(
                state,
                &email,
                ("password", &NewPassword::parse("password", &password)?),
                Promote {
                    allowed: false,
                    setting: "BOOTSTRAP_ADMIN_PROMOTE_EXISTING=true",
                },
                true,
            )
            .await?;
            if outcome == Outcome::Created {
                // Shown once, on the terminal, not through the log pipeline.
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "\n  docverify local admin created: {LOCAL_ADMIN} / {password}\n  (shown only now; set BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD to choose your own)\n"
                    );
                }
            }
        }
        _ => tracing::warn!("no admin exists; create one with the create-admin subcommand"),
    }
    Ok(())
}

/// Whether an existing non-admin account may be promoted, and the setting
/// that allows it (named in the refusal).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Promote {
    pub allowed: bool,
    pub setting: &'static str,
}

/// Creates the admin, or (when `promote` allows it) grants the admin role to
/// an existing account. With `only_if_none`, stops when any admin exists
/// (checked again under the lock: another replica may have just made one).
/// The password meets the same policy as Register's (`field` names the
/// setting in the refusal).
pub(crate) async fn ensure_admin(
    state: &State,
    email: &Email,
    (field, password): (&'static str, &NewPassword),
    promote: Promote,
    only_if_none: bool,
) -> Result<Outcome> {
    let (ctx, system) = system();
    // Hashed before the lock, so that the lock is held for milliseconds.
    let permit = state.hasher.reserve()?;
    state
        .hasher
        .check_strength(&permit, field, password, email, ADMIN_NAME)
        .await?;
    let hash = state.hasher.hash(&permit, password).await?;
    drop(permit);
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    tx.lock_startup(StartupLock::BootstrapAdmin).await?;
    if only_if_none && users::admin_exists(tx.conn()).await? {
        tx.commit().await?;
        return Ok(Outcome::AdminExists);
    }
    if let Some(user) = users::by_email(tx.conn(), email.as_str()).await? {
        let mut roles = user.roles();
        if roles.contains(&Role::ADMIN) {
            tx.commit().await?;
            return Ok(Outcome::AlreadyAdmin);
        }
        if !promote.allowed {
            return Err(Error::internal(format!(
                "{} already belongs to an account that is not an admin; it is not promoted, \
                 since anyone could have registered it (its password is not the one given). \
                 To grant it the admin role anyway, set {}",
                email.as_str(),
                promote.setting
            )));
        }
        let old = user.role_names();
        roles.push(Role::ADMIN);
        let user = users::set_roles(tx.conn(), user.id, &roles, now).await?;
        let fact = NewFact::principal(
            Kind::RolesChanged,
            user.id,
            user.token_generation,
            user.disabled,
        );
        let fact = revocation::log::append(&mut tx, fact, now).await?;
        let event = Event::new(Action::RolesChanged, system, "user", user.id).details(json!({
            "old_roles": old,
            "new_roles": user.role_names(),
            "promoted_existing": true,
        }));
        audit::append(&mut tx, &ctx, now, event).await?;
        tx.commit().await?;
        state.published(&fact);
        tracing::warn!(
            email = email.as_str(),
            "an existing account was promoted to admin; its own password stays"
        );
        return Ok(Outcome::Promoted);
    }
    let user = users::insert(
        tx.conn(),
        NewUser {
            email: email.as_str(),
            display_name: ADMIN_NAME,
            password_hash: &hash,
            roles: &[Role::ADMIN],
        },
        now,
    )
    .await?;
    let event = Event::new(Action::UserRegistered, system, "user", user.id)
        .details(json!({ "roles": user.role_names() }));
    audit::append(&mut tx, &ctx, now, event).await?;
    tx.commit().await?;
    Ok(Outcome::Created)
}

/// Who acts at start-up, for the audit trail.
fn system() -> (RequestContext, Actor) {
    let ctx = RequestContext {
        request_id: "bootstrap".to_owned(),
        ..RequestContext::default()
    };
    let system = Actor {
        id: None,
        email: "system".to_owned(),
    };
    (ctx, system)
}

/// The service account document-service uses, from
/// BOOTSTRAP_SERVICE_CREDENTIALS_FILE: the file is read, or written with
/// fresh credentials when it does not exist (by one replica: the others
/// read what it wrote), and the account and secret are created when
/// missing. Replicas starting at once insert with ON CONFLICT DO NOTHING.
pub(crate) async fn bootstrap_service_account(state: &State, config: &Config) -> Result<()> {
    let Some(path) = &config.bootstrap_service_credentials_file else {
        return Ok(());
    };
    let (client_id, secret) = credentials_file(path)?;
    let (ctx, system) = system();
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let account = (client_id, SERVICE_ACCOUNT_NAME, &[Role::Service][..]);
    api::service_accounts::create(&mut tx, &ctx, &system, account, now)
        .await
        .map_err(|e| match e {
            Error::AlreadyExists { .. } => Error::internal(format!(
                "BOOTSTRAP_SERVICE_CREDENTIALS_FILE {}: another service account is named \
                 {SERVICE_ACCOUNT_NAME}; its client id is not the one in this file",
                path.display()
            )),
            e => e,
        })?;
    let secret = secret.expose_secret();
    api::service_accounts::add_secret(&mut tx, &ctx, &system, client_id, secret, now).await?;
    tx.commit().await?;
    tracing::info!(%client_id, file = %path.display(), "service account for document-service ready");
    Ok(())
}

/// The name of the bootstrapped service account.
const SERVICE_ACCOUNT_NAME: &str = "document-service";

/// Reads `client_id:secret` from `path`, writing fresh ones first when the
/// file does not exist. Written to a temporary file and hard-linked into
/// place, so no reader ever sees half a file and only one writer wins.
fn credentials_file(path: &std::path::Path) -> Result<(uuid::Uuid, SecretString)> {
    let setting = |e: &dyn std::fmt::Display| {
        Error::internal(format!(
            "BOOTSTRAP_SERVICE_CREDENTIALS_FILE {}: {e}",
            path.display()
        ))
    };
    if !path.exists() {
        let text = format!(
            "{}:{}\n",
            uuid::Uuid::now_v7(),
            service_accounts::generate_secret()?
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| setting(&e))?;
        }
        // Random, not the pid: replicas in containers all run as pid 1.
        let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
        write_private(&temporary, &text).map_err(|e| setting(&e))?;
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(setting(&e)),
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| setting(&e))?;
    let (id, secret) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| setting(&"not `client_id:secret`"))?;
    let id = uuid::Uuid::parse_str(id).map_err(|_| setting(&"the client id is not a UUID"))?;
    if secret.len() < 32 {
        return Err(setting(&"the secret is shorter than 32 characters"));
    }
    Ok((id, secret.to_owned().into()))
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The `create-admin` subcommand.
pub async fn create_admin(
    config: &Config,
    email: &str,
    password: &SecretString,
    promote_existing: bool,
) -> Result<()> {
    let db = crate::migrate(config).await?;
    let state = State::build(config, db.clone()).await?;
    let email = Email::parse("email", email)?;
    let password =
        NewPassword::parse("password", password.expose_secret())?.not_email("password", &email)?;
    let promote = Promote {
        allowed: promote_existing,
        setting: "--promote-existing",
    };
    let outcome = ensure_admin(&state, &email, ("--password", &password), promote, false).await;
    db.close().await;
    tracing::info!(email = email.as_str(), outcome = ?outcome.as_ref().ok(), "create-admin");
    outcome.map(|_| ())
}
