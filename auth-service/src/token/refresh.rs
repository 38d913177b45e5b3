//! Refresh tokens: opaque 256-bit random strings, stored only as SHA-256
//! hashes, single-use, grouped in families (one family per login).
//!
//! Every family has a row of its own, and everything that spends a token or
//! revokes a family takes that row's lock first (`SELECT ... FOR UPDATE` on
//! PostgreSQL; SQLite has one writer). So a refresh and a revocation of the
//! same family happen one after the other, never interleaved: a successor
//! minted by a refresh that committed first is revoked with its family, and
//! a refresh that comes second sees the family revoked. A family also keeps
//! the user's session epoch from when it was created; a password change,
//! disable or session revocation bumps the user's epoch, so a family from
//! before it (even one a login in flight created concurrently) never
//! refreshes again.
//!
//! Presenting a spent token means it was stolen or replayed (RFC 9700
//! §4.14.2): the whole family is revoked, including the newest token the
//! legitimate holder got.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use shared::{
    Error, Result,
    db::{Conn, Dialect, Timestamp},
    identity::RequestContext,
    on_dialect,
};
use uuid::Uuid;

const TOKEN_BYTES: usize = 32;

/// A freshly minted refresh token (the only time its clear text exists).
pub(crate) struct Minted {
    pub token: String,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minted(***)")
    }
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Starts a family for a login, stamped with the user's current session
/// epoch and with where the login came from.
#[tracing::instrument(level = "debug", skip(c, ctx))]
pub(crate) async fn create_family(
    c: Conn<'_>,
    user_id: Uuid,
    session_epoch: i64,
    ctx: &RequestContext,
    now: Timestamp,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let sql = "INSERT INTO refresh_families (id, user_id, session_epoch, created_at, client_addr, user_agent) \
               VALUES ($1, $2, $3, $4, $5, $6)";
    on_dialect!(c, c => sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .bind(session_epoch)
        .bind(now)
        .bind(ctx.client_addr_string())
        .bind(&ctx.user_agent)
        .execute(c)
        .await
        .map(|_| ()))?;
    Ok(id)
}

/// Records a refresh: when, and from where, the session was last used.
#[tracing::instrument(level = "debug", skip(c, ctx))]
pub(crate) async fn touch_family(
    c: Conn<'_>,
    family_id: Uuid,
    ctx: &RequestContext,
    now: Timestamp,
) -> Result<()> {
    let sql = "UPDATE refresh_families SET last_used_at = $2, client_addr = $3, user_agent = $4 \
               WHERE id = $1";
    on_dialect!(c, c => sqlx::query(sql)
        .bind(family_id)
        .bind(now)
        .bind(ctx.client_addr_string())
        .bind(&ctx.user_agent)
        .execute(c)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// A live session as its owner sees it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub client_addr: String,
    pub user_agent: String,
}

/// The user's live sessions, newest first, after the `before` cursor: not
/// revoked, of the current epoch, with a refresh token still usable.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn live_families(
    c: Conn<'_>,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: u32,
    now: Timestamp,
) -> Result<Vec<SessionRow>> {
    let sql = "SELECT f.id, f.created_at, f.last_used_at, f.client_addr, f.user_agent \
               FROM refresh_families f JOIN users u ON u.id = f.user_id \
               WHERE f.user_id = $1 AND f.revoked_at IS NULL AND f.session_epoch = u.session_epoch \
               AND ($2 IS NULL OR f.id < $2) \
               AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id \
                   AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > $3) \
               ORDER BY f.id DESC LIMIT $4";
    Ok(on_dialect!(c, c => sqlx::query_as(sql)
        .bind(user_id)
        .bind(before)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await?))
}

/// Revokes the family `family_id` if it is the user's and live; whether it was.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn revoke_users_family(
    mut c: Conn<'_>,
    user_id: Uuid,
    family_id: Uuid,
    now: Timestamp,
) -> Result<bool> {
    let family = "UPDATE refresh_families SET revoked_at = $3 \
                  WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL";
    let revoked = on_dialect!(c.reborrow(), c => sqlx::query(family)
        .bind(family_id)
        .bind(user_id)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected());
    if revoked == 0 {
        return Ok(false);
    }
    let tokens =
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
    on_dialect!(c, c => sqlx::query(tokens).bind(family_id).bind(now).execute(c).await.map(|_| ()))?;
    Ok(true)
}

#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn mint(
    c: Conn<'_>,
    user_id: Uuid,
    family_id: Uuid,
    now: Timestamp,
    ttl: std::time::Duration,
) -> Result<Minted> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(Error::internal)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let sql = "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6)";
    on_dialect!(c, c => sqlx::query(sql)
        .bind(Uuid::now_v7())
        .bind(family_id)
        .bind(user_id)
        .bind(digest(&token))
        .bind(now)
        .bind(now.plus(ttl))
        .execute(c)
        .await
        .map(|_| ()))?;
    Ok(Minted { token })
}

/// What presenting a refresh token amounted to.
#[derive(Debug)]
pub(crate) enum Spent {
    /// It was live and is now spent: rotate within this family, if the
    /// user's session epoch is still `session_epoch`.
    Fresh {
        user_id: Uuid,
        family_id: Uuid,
        session_epoch: i64,
    },
    /// It had been spent before: a replay. Its family must be revoked.
    Reused { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    user_id: Uuid,
    family_id: Uuid,
    used_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct FamilyRow {
    session_epoch: i64,
    revoked_at: Option<Timestamp>,
}

/// Locks the family row until the transaction ends.
async fn lock_family(c: Conn<'_>, family_id: Uuid) -> Result<Option<FamilyRow>> {
    let sqlite = "SELECT session_epoch, revoked_at FROM refresh_families WHERE id = $1";
    let postgres =
        "SELECT session_epoch, revoked_at FROM refresh_families WHERE id = $1 FOR UPDATE";
    Ok(match c {
        Dialect::Sqlite(c) => {
            sqlx::query_as(sqlite)
                .bind(family_id)
                .fetch_optional(c)
                .await?
        }
        Dialect::Postgres(c) => {
            sqlx::query_as(postgres)
                .bind(family_id)
                .fetch_optional(c)
                .await?
        }
    })
}

/// Spends `token` inside the caller's transaction, holding its family's lock.
#[tracing::instrument(level = "debug", skip(c, token))]
pub(crate) async fn spend(mut c: Conn<'_>, token: &str, now: Timestamp) -> Result<Spent> {
    let hash = digest(token);
    let look = "SELECT user_id, family_id, used_at FROM refresh_tokens WHERE token_hash = $1";
    let Some(found) = on_dialect!(c.reborrow(), c => sqlx::query_as::<_, TokenRow>(look)
        .bind(&hash)
        .fetch_optional(c)
        .await?)
    else {
        return Ok(Spent::Invalid);
    };
    let Some(family) = lock_family(c.reborrow(), found.family_id).await? else {
        return Ok(Spent::Invalid);
    };
    let spend = "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                 RETURNING user_id";
    let spent: Option<Uuid> = if family.revoked_at.is_none() {
        on_dialect!(c.reborrow(), c => sqlx::query_scalar(spend)
            .bind(&hash)
            .bind(now)
            .fetch_optional(c)
            .await?)
    } else {
        None
    };
    if spent.is_some() {
        return Ok(Spent::Fresh {
            user_id: found.user_id,
            family_id: found.family_id,
            session_epoch: family.session_epoch,
        });
    }
    // Read again under the lock: a concurrent use may have spent it meanwhile.
    let used: Option<Option<Timestamp>> = on_dialect!(c, c => sqlx::query_scalar(
        "SELECT used_at FROM refresh_tokens WHERE token_hash = $1")
        .bind(&hash)
        .fetch_optional(c)
        .await?);
    Ok(match used.flatten().or(found.used_at) {
        Some(_) => Spent::Reused {
            user_id: found.user_id,
            family_id: found.family_id,
        },
        None => Spent::Invalid,
    })
}

/// The family of a token whose family is live (for logout), without
/// spending it.
#[tracing::instrument(level = "debug", skip(c, token))]
pub(crate) async fn family_of(c: Conn<'_>, token: &str) -> Result<Option<(Uuid, Uuid)>> {
    let sql = "SELECT t.user_id, t.family_id FROM refresh_tokens t \
               JOIN refresh_families f ON f.id = t.family_id \
               WHERE t.token_hash = $1 AND f.revoked_at IS NULL";
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(digest(token)).fetch_optional(c).await?))
}

/// Revokes one family and its tokens; the number of tokens revoked. The
/// family row is updated first: that takes its lock, so a refresh in flight
/// commits its successor before the tokens are revoked (and is seen by the
/// second statement's fresh snapshot).
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn revoke_family(mut c: Conn<'_>, family_id: Uuid, now: Timestamp) -> Result<u64> {
    let family = "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
    let tokens =
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
    on_dialect!(c.reborrow(), c => sqlx::query(family).bind(family_id).bind(now).execute(c).await.map(|_| ())?);
    Ok(
        on_dialect!(c, c => sqlx::query(tokens).bind(family_id).bind(now).execute(c).await?.rows_affected()),
    )
}

/// What revoking a user's sessions ended.
#[derive(Debug)]
pub(crate) struct Revoked {
    /// The families (sessions) revoked.
    pub sessions: Vec<Uuid>,
    /// Their refresh tokens that were still live.
    pub tokens: u64,
}

/// Revokes every family of a user but `keep`, with their tokens. With the
/// session epoch the caller bumped (no `keep`), families created
/// concurrently are dead too. Each family's row lock is taken by the update.
#[tracing::instrument(level = "debug", skip(c))]
pub(crate) async fn revoke_user(
    mut c: Conn<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
    now: Timestamp,
) -> Result<Revoked> {
    let families = "UPDATE refresh_families SET revoked_at = $2 \
                    WHERE user_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3) RETURNING id";
    let sessions: Vec<Uuid> = on_dialect!(c.reborrow(), c => sqlx::query_scalar(families)
        .bind(user_id)
        .bind(now)
        .bind(keep)
        .fetch_all(c)
        .await?);
    let tokens = "UPDATE refresh_tokens SET revoked_at = $2 \
                  WHERE user_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR family_id <> $3)";
    let tokens = on_dialect!(c, c => sqlx::query(tokens)
        .bind(user_id)
        .bind(now)
        .bind(keep)
        .execute(c)
        .await?
        .rows_affected());
    Ok(Revoked { sessions, tokens })
}
