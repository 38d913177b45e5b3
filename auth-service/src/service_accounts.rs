//! The service_accounts and service_account_secrets tables: identities of
//! other services (the OAuth client credentials grant). A secret is 256
//! random bits shown once and kept as its SHA-256 (a slow hash buys nothing
//! against a secret nobody can guess).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use shared::{
    Error, Reason, Result,
    audit::Actor,
    db::{Conn, Timestamp},
    on_dialect,
    policy::Role,
    proto::auth::v1 as pb,
};
use sqlx::types::Json;
use uuid::Uuid;

macro_rules! columns {
    () => {
        "id, name, roles, disabled, token_generation, created_at"
    };
}

/// Secrets valid at once: the newest and the one it is replacing.
pub(crate) const VALID_SECRETS: i64 = 2;
const SECRET_PREFIX: &str = "dvs_";

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Account {
    pub id: Uuid,
    pub name: String,
    roles: Json<Vec<String>>,
    pub disabled: bool,
    pub token_generation: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SecretRow {
    pub id: Uuid,
    pub created_at: Timestamp,
}

impl Account {
    pub(crate) fn role_names(&self) -> Vec<String> {
        self.roles
            .0
            .iter()
            .filter(|r| r.parse::<Role>().is_ok())
            .cloned()
            .collect()
    }

    /// Its `email` claim and audit name: no user email can look like it.
    pub(crate) fn principal_name(&self) -> String {
        format!("service:{}", self.name)
    }

    pub(crate) fn to_proto(&self, secrets: &[SecretRow]) -> pb::ServiceAccount {
        pb::ServiceAccount {
            client_id: self.id.to_string(),
            name: self.name.clone(),
            roles: self.role_names(),
            disabled: self.disabled,
            created_at: Some(self.created_at.to_proto()),
            secrets: secrets
                .iter()
                .map(|s| pb::ServiceAccountSecret {
                    id: s.id.to_string(),
                    created_at: Some(s.created_at.to_proto()),
                })
                .collect(),
        }
    }
}

impl From<&Account> for Actor {
    fn from(account: &Account) -> Self {
        Self {
            id: Some(account.id),
            email: account.principal_name(),
        }
    }
}

/// A fresh secret: what the caller is shown once.
pub(crate) fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::internal)?;
    Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Inserts the account `id`; `None` when it exists already (replicas
/// bootstrapping at once), ALREADY_EXISTS when another account has `name`.
/// One statement decides; the look-up after it only tells which conflict
/// it was, and sees the committed row it waited for.
pub(crate) async fn insert(
    mut c: Conn<'_>,
    id: Uuid,
    name: &str,
    roles: &[Role],
    now: Timestamp,
) -> Result<Option<Account>> {
    let sql = concat!(
        "INSERT INTO service_accounts (id, name, roles, disabled, token_generation, created_at, updated_at) \
         VALUES ($1, $2, $3, FALSE, 0, $4, $4) ON CONFLICT DO NOTHING RETURNING ",
        columns!()
    );
    let inserted = on_dialect!(c.reborrow(), c => sqlx::query_as::<_, Account>(sql)
        .bind(id)
        .bind(name)
        .bind(crate::users::names(roles))
        .bind(now)
        .fetch_optional(c)
        .await?);
    if inserted.is_some() {
        return Ok(inserted);
    }
    match lock(c, id).await {
        Ok(_) => Ok(None),
        Err(Error::NotFound { .. }) => Err(Error::AlreadyExists {
            reason: Reason::ServiceAccountNameTaken,
            message: "a service account with this name already exists",
        }),
        Err(e) => Err(e),
    }
}

/// Adds `secret` to the account unless it is there already; whether added.
pub(crate) async fn add_secret(
    c: Conn<'_>,
    account: Uuid,
    secret: &str,
    now: Timestamp,
) -> Result<Option<Uuid>> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO service_account_secrets (id, account_id, secret_hash, created_at) \
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
    let added = on_dialect!(c, c => sqlx::query(sql)
        .bind(id)
        .bind(account)
        .bind(digest(secret))
        .bind(now)
        .execute(c)
        .await?
        .rows_affected());
    Ok((added == 1).then_some(id))
}

/// Revokes all but the newest [`VALID_SECRETS`] secrets; how many.
pub(crate) async fn keep_newest_secrets(c: Conn<'_>, account: Uuid, now: Timestamp) -> Result<u64> {
    let sql = "UPDATE service_account_secrets SET revoked_at = $2 \
               WHERE account_id = $1 AND revoked_at IS NULL AND id NOT IN \
               (SELECT id FROM service_account_secrets WHERE account_id = $1 AND revoked_at IS NULL \
                ORDER BY id DESC LIMIT $3)";
    Ok(on_dialect!(c, c => sqlx::query(sql)
        .bind(account)
        .bind(now)
        .bind(VALID_SECRETS)
        .execute(c)
        .await?
        .rows_affected()))
}

/// Revokes one secret of the account; whether it was valid.
pub(crate) async fn revoke_secret(
    c: Conn<'_>,
    account: Uuid,
    secret: Uuid,
    now: Timestamp,
) -> Result<bool> {
    let sql = "UPDATE service_account_secrets SET revoked_at = $3 \
               WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL";
    Ok(on_dialect!(c, c => sqlx::query(sql)
        .bind(secret)
        .bind(account)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected())
        == 1)
}

/// Revokes the account's tokens so far (a generation bump), disabling it
/// too when asked; the account after.
pub(crate) async fn revoke_tokens(
    c: Conn<'_>,
    account: Uuid,
    disable: bool,
    now: Timestamp,
) -> Result<Account> {
    let sql = concat!(
        "UPDATE service_accounts SET token_generation = token_generation + 1, \
         disabled = (disabled OR $2), updated_at = $3 WHERE id = $1 RETURNING ",
        columns!()
    );
    on_dialect!(c, c => sqlx::query_as(sql).bind(account).bind(disable).bind(now).fetch_optional(c).await?)
        .ok_or(Error::not_found("service account"))
}

/// The account, its row locked until the transaction ends.
pub(crate) async fn lock(c: Conn<'_>, id: Uuid) -> Result<Account> {
    let sqlite = concat!(
        "SELECT ",
        columns!(),
        " FROM service_accounts WHERE id = $1"
    );
    let postgres = concat!(
        "SELECT ",
        columns!(),
        " FROM service_accounts WHERE id = $1 FOR UPDATE"
    );
    let found = match c {
        shared::db::Dialect::Sqlite(c) => sqlx::query_as(sqlite).bind(id).fetch_optional(c).await?,
        shared::db::Dialect::Postgres(c) => {
            sqlx::query_as(postgres).bind(id).fetch_optional(c).await?
        }
    };
    found.ok_or(Error::not_found("service account"))
}

/// The valid secrets of an account, newest first.
pub(crate) async fn secrets(c: Conn<'_>, account: Uuid) -> Result<Vec<SecretRow>> {
    let sql = "SELECT id, created_at FROM service_account_secrets \
               WHERE account_id = $1 AND revoked_at IS NULL ORDER BY id DESC";
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(account).fetch_all(c).await?))
}

/// The enabled account `client_id` when `secret` is one of its valid secrets.
pub(crate) async fn authenticate(
    c: Conn<'_>,
    client_id: Uuid,
    secret: &str,
) -> Result<Option<Account>> {
    let sql = "SELECT a.id, a.name, a.roles, a.disabled, a.token_generation, a.created_at \
               FROM service_accounts a JOIN service_account_secrets s ON s.account_id = a.id \
               WHERE a.id = $1 AND s.secret_hash = $2 AND s.revoked_at IS NULL AND NOT a.disabled";
    Ok(
        on_dialect!(c, c => sqlx::query_as(sql).bind(client_id).bind(digest(secret)).fetch_optional(c).await?),
    )
}

/// Newest first, after the `before` cursor.
pub(crate) async fn list(c: Conn<'_>, before: Option<Uuid>, limit: u32) -> Result<Vec<Account>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM service_accounts WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    );
    Ok(
        on_dialect!(c, c => sqlx::query_as(sql).bind(before).bind(i64::from(limit)).fetch_all(c).await?),
    )
}
