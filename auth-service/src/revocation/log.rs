//! The revocation log: one row per fact, written in the transaction of the
//! change it records. The cursor comes from `revocation_head`, bumped under
//! its row lock, so it is gapless and facts commit in cursor order: a reader
//! that saw fact N has seen every fact before it.
//!
//! One lock order, so that PostgreSQL never deadlocks two changes: a
//! transaction takes user and refresh-family rows first, then appends its
//! fact (the revocation head), then its audit events (the audit head).

use shared::{
    Result,
    db::{Conn, Db, Timestamp, Tx},
    on_dialect,
    revocation::{Fact, Kind},
};
use uuid::Uuid;

macro_rules! columns {
    () => {
        "seq, kind, principal_id, token_generation, disabled, session_id, occurred_at"
    };
}

/// A fact before the log gives it a cursor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFact {
    pub kind: Kind,
    pub principal_id: Uuid,
    /// The principal's generation after the change.
    pub token_generation: i64,
    pub disabled: bool,
    pub session_id: Option<Uuid>,
}

impl NewFact {
    /// A change of the principal's own state.
    pub(crate) fn principal(kind: Kind, id: Uuid, token_generation: i64, disabled: bool) -> Self {
        Self {
            kind,
            principal_id: id,
            token_generation,
            disabled,
            session_id: None,
        }
    }

    /// One session of `user` ended.
    pub(crate) fn session(user: Uuid, session: Uuid) -> Self {
        Self {
            kind: Kind::SessionRevoked,
            principal_id: user,
            token_generation: 0,
            disabled: false,
            session_id: Some(session),
        }
    }
}

/// Appends `fact` inside `tx`; it commits or rolls back with the change.
#[tracing::instrument(level = "debug", skip(tx))]
pub(crate) async fn append(tx: &mut Tx, fact: NewFact, now: Timestamp) -> Result<Fact> {
    let bump = "UPDATE revocation_head SET seq = seq + 1 WHERE id = 1 RETURNING seq";
    let seq: i64 = on_dialect!(tx, t => sqlx::query_scalar(bump).fetch_one(&mut **t).await?);
    let insert = "INSERT INTO revocations (seq, kind, principal_id, token_generation, disabled, session_id, occurred_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_dialect!(tx, t => sqlx::query(insert)
        .bind(seq)
        .bind(fact.kind.as_str())
        .bind(fact.principal_id)
        .bind(fact.token_generation)
        .bind(fact.disabled)
        .bind(fact.session_id)
        .bind(now)
        .execute(&mut **t)
        .await
        .map(|_| ()))?;
    Ok(Fact {
        seq,
        kind: fact.kind,
        principal_id: fact.principal_id,
        token_generation: fact.token_generation,
        disabled: fact.disabled,
        session_id: fact.session_id,
        occurred_at: now,
    })
}

/// The facts after `cursor`, in order, at most `limit`.
pub(crate) async fn after(c: Conn<'_>, cursor: i64, limit: u32) -> Result<Vec<Fact>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2"
    );
    Ok(
        on_dialect!(c, c => sqlx::query_as(sql).bind(cursor).bind(i64::from(limit)).fetch_all(c).await?),
    )
}

/// The newest cursor and the oldest one kept.
pub(crate) async fn head(c: Conn<'_>) -> Result<(i64, i64)> {
    let sql = "SELECT seq, oldest FROM revocation_head WHERE id = 1";
    Ok(on_dialect!(c, c => sqlx::query_as(sql).fetch_one(c).await?))
}

/// A page of the snapshot up to `upto`: the newest fact of each principal
/// (as of `upto`) and every session fact, after `after`, in cursor order.
pub(crate) async fn snapshot(c: Conn<'_>, after: i64, upto: i64, limit: u32) -> Result<Vec<Fact>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM revocations r WHERE seq > $1 AND seq <= $2 AND (session_id IS NOT NULL OR seq = \
         (SELECT MAX(seq) FROM revocations n WHERE n.principal_id = r.principal_id \
          AND n.session_id IS NULL AND n.seq <= $2)) ORDER BY seq LIMIT $3"
    );
    Ok(
        on_dialect!(c, c => sqlx::query_as(sql).bind(after).bind(upto).bind(i64::from(limit)).fetch_all(c).await?),
    )
}

/// Deletes the facts that occurred before `before` (their tokens have all
/// expired) and moves the oldest cursor kept past them; how many went.
/// Replicas may prune at once: the head's lock puts them in a row.
pub(crate) async fn prune(db: &Db, before: Timestamp) -> Result<u64> {
    let mut tx = db.begin().await?;
    let lock = "UPDATE revocation_head SET oldest = oldest WHERE id = 1";
    on_dialect!(&mut tx, t => sqlx::query(lock).execute(&mut **t).await.map(|_| ()))?;
    let last = "SELECT MAX(seq) FROM revocations WHERE occurred_at < $1";
    let last: Option<i64> =
        on_dialect!(&mut tx, t => sqlx::query_scalar(last).bind(before).fetch_one(&mut **t).await?);
    let Some(last) = last else {
        return Ok(0);
    };
    let delete = "DELETE FROM revocations WHERE seq <= $1";
    let deleted = on_dialect!(&mut tx, t => sqlx::query(delete).bind(last).execute(&mut **t).await?.rows_affected());
    let oldest = "UPDATE revocation_head SET oldest = CASE WHEN oldest > $1 THEN oldest ELSE $1 END WHERE id = 1";
    on_dialect!(&mut tx, t => sqlx::query(oldest).bind(last + 1).execute(&mut **t).await.map(|_| ()))?;
    tx.commit().await?;
    Ok(deleted)
}

/// The current generation and disabled flag of a user or service account,
/// for token checks while the state in memory is stale.
pub(crate) async fn principal(c: Conn<'_>, id: Uuid) -> Result<Option<(i64, bool)>> {
    let sql = "SELECT token_generation, disabled FROM users WHERE id = $1 \
               UNION ALL SELECT token_generation, disabled FROM service_accounts WHERE id = $1";
    Ok(on_dialect!(c, c => sqlx::query_as(sql).bind(id).fetch_optional(c).await?))
}

/// Whether the session (refresh family) `id` has been revoked.
pub(crate) async fn session_revoked(c: Conn<'_>, id: Uuid) -> Result<bool> {
    let sql = "SELECT revoked_at FROM refresh_families WHERE id = $1";
    let revoked: Option<Option<Timestamp>> =
        on_dialect!(c, c => sqlx::query_scalar(sql).bind(id).fetch_optional(c).await?);
    Ok(matches!(revoked, Some(Some(_))))
}
