//! Refresh tokens: opaque 256-bit random strings, stored only as SHA-256
//! hashes, single-use, grouped in families (one family per login).
//!
//! Using a token spends it with one atomic `UPDATE ... WHERE used_at IS NULL
//! RETURNING`: of two concurrent uses exactly one wins. Presenting a spent
//! token means it was stolen or replayed (RFC 9700 §4.14.2): the whole family
//! is revoked, including the newest token the legitimate holder got.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use shared::{
    Error, Result,
    db::{Conn, Timestamp},
    on_dialect,
};
use uuid::Uuid;

const TOKEN_BYTES: usize = 32;

/// A freshly minted refresh token (the only time its clear text exists).
pub struct Minted {
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

pub async fn mint(
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
pub enum Spent {
    /// It was live and is now spent: rotate within this family.
    Fresh { user_id: Uuid, family_id: Uuid },
    /// It had been spent before: a replay. Its family must be revoked.
    Reused { user_id: Uuid, family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct Row {
    user_id: Uuid,
    family_id: Uuid,
    used_at: Option<Timestamp>,
}

pub async fn spend(c: Conn<'_>, token: &str, now: Timestamp) -> Result<Spent> {
    let hash = digest(token);
    let spend = "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                 RETURNING user_id, family_id, used_at";
    let look = "SELECT user_id, family_id, used_at FROM refresh_tokens WHERE token_hash = $1";
    on_dialect!(c, c => {
        if let Some(row) = sqlx::query_as::<_, Row>(spend).bind(&hash).bind(now).fetch_optional(&mut *c).await? {
            return Ok(Spent::Fresh { user_id: row.user_id, family_id: row.family_id });
        }
        Ok(match sqlx::query_as::<_, Row>(look).bind(&hash).fetch_optional(&mut *c).await? {
            Some(Row { user_id, family_id, used_at: Some(_) }) => Spent::Reused { user_id, family_id },
            _ => Spent::Invalid,
        })
    })
}

/// The family of a live token (for logout), without spending it.
pub async fn family_of(c: Conn<'_>, token: &str) -> Result<Option<(Uuid, Uuid)>> {
    let sql = "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND revoked_at IS NULL";
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(digest(token)).fetch_optional(c).await?))
}

pub async fn revoke_family(c: Conn<'_>, family_id: Uuid, now: Timestamp) -> Result<u64> {
    let sql =
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";
    Ok(
        on_dialect!(c, c => sqlx::query(sql).bind(family_id).bind(now).execute(c).await?.rows_affected()),
    )
}

pub async fn revoke_user(c: Conn<'_>, user_id: Uuid, now: Timestamp) -> Result<u64> {
    let sql = "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
    Ok(
        on_dialect!(c, c => sqlx::query(sql).bind(user_id).bind(now).execute(c).await?.rows_affected()),
    )
}
