//! The users table.

use shared::{
    Error, Reason, Result,
    audit::Actor,
    db::{Conn, OnConstraint, Timestamp, Unique},
    on_dialect,
    policy::Role,
    proto::auth::v1 as pb,
};
use sqlx::types::Json;
use uuid::Uuid;

/// The columns of [`User`], for `concat!` (sqlx takes only static SQL).
macro_rules! columns {
    () => {
        "id, email, display_name, password_hash, roles, disabled, token_generation, session_epoch, created_at"
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    roles: Json<Vec<String>>,
    pub disabled: bool,
    pub token_generation: i64,
    /// Bumped when every session of the user ends (password change,
    /// disable): a refresh family from an older epoch is dead.
    pub session_epoch: i64,
    pub created_at: Timestamp,
}

impl User {
    /// The user's roles; names this build does not know are ignored.
    pub fn roles(&self) -> Vec<Role> {
        self.roles.0.iter().filter_map(|r| r.parse().ok()).collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles().iter().map(|r| r.as_str().to_owned()).collect()
    }

    pub fn is_admin(&self) -> bool {
        !self.disabled && self.roles().contains(&Role::ADMIN)
    }

    pub fn to_proto(&self) -> pb::User {
        pb::User {
            id: self.id.to_string(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            roles: self.role_names(),
            disabled: self.disabled,
            created_at: Some(self.created_at.to_proto()),
        }
    }
}

impl From<&User> for Actor {
    fn from(user: &User) -> Self {
        Self {
            id: Some(user.id),
            email: user.email.clone(),
        }
    }
}

/// Role names as stored: sorted, each once.
pub(crate) fn names(roles: &[Role]) -> Json<Vec<String>> {
    let mut names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    Json(names)
}

pub(crate) struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub roles: &'a [Role],
}

/// One account per email (`migrations/auth/*/..._init.sql`).
const EMAIL_KEY: Unique = Unique {
    name: "users_email_key",
    columns: "users.email",
};

/// Inserts a user; a taken email is ALREADY_EXISTS through the unique
/// constraint (no racy look-up first).
#[tracing::instrument(level = "debug", skip(c, user))]
pub(crate) async fn insert(c: Conn<'_>, user: NewUser<'_>, now: Timestamp) -> Result<User> {
    let sql = concat!(
        "INSERT INTO users (id, email, display_name, password_hash, roles, disabled, token_generation, session_epoch, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, 0, 0, $6, $6) RETURNING ",
        columns!()
    );
    let result = on_dialect!(c, c => sqlx::query_as::<_, User>(sql)
        .bind(Uuid::now_v7())
        .bind(user.email)
        .bind(user.display_name)
        .bind(user.password_hash)
        .bind(names(user.roles))
        .bind(now)
        .fetch_one(c)
        .await);
    result.on_constraint(EMAIL_KEY, || Error::AlreadyExists {
        reason: Reason::EmailTaken,
        message: "an account with this email already exists",
    })
}

#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn by_email(c: Conn<'_>, email: &str) -> Result<Option<User>> {
    let sql = concat!("SELECT ", columns!(), " FROM users WHERE email = $1");
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(email).fetch_optional(c).await?))
}

#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn by_id(c: Conn<'_>, id: Uuid) -> Result<Option<User>> {
    let sql = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await?))
}

/// The user, its row locked until the transaction ends (SQLite's one
/// writer serialises transactions already): what a check-then-act on the
/// user reads.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn lock(c: Conn<'_>, id: Uuid) -> Result<Option<User>> {
    let sqlite = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
    let postgres = concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE id = $1 FOR UPDATE"
    );
    Ok(match c {
        shared::db::Dialect::Sqlite(c) => sqlx::query_as(sqlite).bind(id).fetch_optional(c).await?,
        shared::db::Dialect::Postgres(c) => {
            sqlx::query_as(postgres).bind(id).fetch_optional(c).await?
        }
    })
}

/// The enabled admins, their rows locked until the transaction ends (in id
/// order, before any other user row, so that two admins demoting or
/// disabling each other at once queue instead of deadlocking, and the second
/// sees the first's change).
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn lock_admins(c: Conn<'_>) -> Result<Vec<Uuid>> {
    let admin = Role::ADMIN.as_str();
    Ok(match c {
        shared::db::Dialect::Sqlite(c) => {
            sqlx::query_scalar(
                "SELECT users.id FROM users, json_each(users.roles) AS r \
                 WHERE r.value = $1 AND NOT users.disabled ORDER BY users.id",
            )
            .bind(admin)
            .fetch_all(c)
            .await?
        }
        shared::db::Dialect::Postgres(c) => {
            sqlx::query_scalar(
                "SELECT id FROM users WHERE roles ? $1 AND NOT disabled ORDER BY id FOR UPDATE",
            )
            .bind(admin)
            .fetch_all(c)
            .await?
        }
    })
}

/// Refuses to take the last enabled admin away (`admins` from [`lock_admins`]).
pub(crate) fn ensure_other_admin(admins: &[Uuid], target: &User) -> Result<()> {
    if target.is_admin() && !admins.iter().any(|a| *a != target.id) {
        return Err(Error::FailedPrecondition {
            reason: Reason::LastAdminProtection,
            message: "the last enabled admin cannot lose the admin role or be disabled",
        });
    }
    Ok(())
}

/// Newest first, after the `before` cursor.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn list(c: Conn<'_>, before: Option<Uuid>, limit: u32) -> Result<Vec<User>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM users WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    );
    Ok(
        on_dialect!(c, c => sqlx::query_as(sql).bind(before).bind(i64::from(limit)).fetch_all(c).await?),
    )
}

/// Replaces the roles and revokes the user's access tokens (generation bump).
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn set_roles(
    c: Conn<'_>,
    id: Uuid,
    roles: &[Role],
    now: Timestamp,
) -> Result<User> {
    let sql = concat!(
        "UPDATE users SET roles = $2, token_generation = token_generation + 1, updated_at = $3 WHERE id = $1 RETURNING ",
        columns!()
    );
    on_dialect!(c, c => sqlx::query_as(sql).bind(id).bind(names(roles)).bind(now).fetch_optional(c).await?)
        .ok_or(Error::not_found("user"))
}

/// Disables or enables; disabling also bumps the token generation and the
/// session epoch.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn set_disabled(
    c: Conn<'_>,
    id: Uuid,
    disabled: bool,
    now: Timestamp,
) -> Result<User> {
    let sql = concat!(
        "UPDATE users SET disabled = $2, token_generation = token_generation + CASE WHEN $2 THEN 1 ELSE 0 END, session_epoch = session_epoch + CASE WHEN $2 THEN 1 ELSE 0 END, updated_at = $3 WHERE id = $1 RETURNING ",
        columns!()
    );
    on_dialect!(c, c => sqlx::query_as(sql).bind(id).bind(disabled).bind(now).fetch_optional(c).await?)
        .ok_or(Error::not_found("user"))
}

/// Sets the password and ends every session (generation and epoch bump).
#[tracing::instrument(level = "debug", skip(c, password_hash))]
pub(crate) async fn set_password(
    c: Conn<'_>,
    id: Uuid,
    password_hash: &str,
    now: Timestamp,
) -> Result<User> {
    let sql = concat!(
        "UPDATE users SET password_hash = $2, token_generation = token_generation + 1, \
         session_epoch = session_epoch + 1, updated_at = $3 WHERE id = $1 RETURNING ",
        columns!()
    );
    on_dialect!(c, c => sqlx::query_as(sql).bind(id).bind(password_hash).bind(now).fetch_optional(c).await?)
        .ok_or(Error::not_found("user"))
}

/// Ends every session of the user: their refresh families (by the epoch)
/// and access tokens (by the generation).
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn end_sessions(c: Conn<'_>, id: Uuid, now: Timestamp) -> Result<User> {
    let sql = concat!(
        "UPDATE users SET token_generation = token_generation + 1, \
         session_epoch = session_epoch + 1, updated_at = $2 WHERE id = $1 RETURNING ",
        columns!()
    );
    on_dialect!(c, c => sqlx::query_as(sql).bind(id).bind(now).fetch_optional(c).await?)
        .ok_or(Error::not_found("user"))
}

/// Whether any enabled user holds the admin role (the admins' query of
/// [`lock_admins`]; its locks, outside a transaction, end with the statement).
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn admin_exists(c: Conn<'_>) -> Result<bool> {
    Ok(!lock_admins(c).await?.is_empty())
}
