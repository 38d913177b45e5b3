//! The trail's store: appending in the caller's transaction, the
//! append-only triggers' check, and the chain's verification.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Event, Outcome};
use crate::{
    db::{Db, Dialect, Timestamp, Tx},
    error::{Error, Result},
    identity::RequestContext,
    on_dialect,
    proto::audit::v1 as pb,
};

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const VERIFY_BATCH: i64 = 1000;

/// A stored audit row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Record {
    pub sequence: i64,
    pub id: Uuid,
    pub occurred_at: Timestamp,
    pub actor_id: Option<Uuid>,
    pub actor_email: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub outcome: String,
    pub request_id: String,
    pub client_addr: String,
    pub details: Json<Value>,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// SHA-256 over the previous hash and every field, each length-prefixed
    /// so that no two different rows encode alike.
    fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        let actor_id = self.actor_id.map(|u| u.to_string()).unwrap_or_default();
        // serde_json's map keeps keys sorted: a canonical encoding.
        let details = self.details.0.to_string();
        let fields: [&[u8]; 13] = [
            self.prev_hash.as_bytes(),
            &self.sequence.to_be_bytes(),
            self.id.as_bytes(),
            &self.occurred_at.unix_micros().to_be_bytes(),
            actor_id.as_bytes(),
            self.actor_email.as_bytes(),
            self.action.as_bytes(),
            self.target_type.as_bytes(),
            self.target_id.as_bytes(),
            self.outcome.as_bytes(),
            self.request_id.as_bytes(),
            self.client_addr.as_bytes(),
            details.as_bytes(),
        ];
        for field in fields {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        hex(&h.finalize())
    }

    pub(super) fn to_proto(&self) -> pb::AuditEvent {
        pb::AuditEvent {
            sequence: self.sequence,
            id: self.id.to_string(),
            occurred_at: Some(self.occurred_at.to_proto()),
            actor_id: self.actor_id.map(|u| u.to_string()).unwrap_or_default(),
            actor_email: self.actor_email.clone(),
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            outcome: Outcome::to_proto(&self.outcome) as i32,
            request_id: self.request_id.clone(),
            client_addr: self.client_addr.clone(),
            details_json: self.details.0.to_string(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Appends `event` inside `tx`; it commits or rolls back with the change.
#[tracing::instrument(level = "debug", skip(tx, ctx, event), fields(action = %event.action))]
pub async fn append(tx: &mut Tx, ctx: &RequestContext, now: Timestamp, event: Event) -> Result<()> {
    // Bumping the head takes its row lock: concurrent writers queue here.
    let bump =
        "UPDATE audit_head SET sequence = sequence + 1 WHERE id = 1 RETURNING sequence, hash";
    let (sequence, prev_hash): (i64, String) =
        on_dialect!(tx, t => sqlx::query_as(bump).fetch_one(&mut **t).await?);
    let mut record = Record {
        sequence,
        id: Uuid::now_v7(),
        occurred_at: now,
        actor_id: event.actor.id,
        actor_email: event.actor.email,
        action: event.action.as_str().to_owned(),
        target_type: event.target_type.to_owned(),
        target_id: event.target_id,
        outcome: event.outcome.as_str().to_owned(),
        request_id: ctx.request_id.clone(),
        client_addr: ctx.client_addr_string(),
        details: Json(event.details),
        prev_hash,
        hash: String::new(),
    };
    record.hash = record.compute_hash();
    let insert = "INSERT INTO audit_events (sequence, id, occurred_at, actor_id, actor_email, action, \
                  target_type, target_id, outcome, request_id, client_addr, details, prev_hash, hash) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
    let set_head = "UPDATE audit_head SET hash = $1 WHERE id = 1";
    on_dialect!(tx, t => {
        sqlx::query(insert)
            .bind(record.sequence)
            .bind(record.id)
            .bind(record.occurred_at)
            .bind(record.actor_id)
            .bind(&record.actor_email)
            .bind(&record.action)
            .bind(&record.target_type)
            .bind(&record.target_id)
            .bind(&record.outcome)
            .bind(&record.request_id)
            .bind(&record.client_addr)
            .bind(&record.details)
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .execute(&mut **t)
            .await?;
        sqlx::query(set_head).bind(&record.hash).execute(&mut **t).await?;
    });
    Ok(())
}

/// Appends an event that stands alone (a denial, a failed login) in its own
/// transaction.
#[tracing::instrument(level = "debug", skip(db, ctx, event), fields(action = %event.action))]
pub async fn record(db: &Db, ctx: &RequestContext, now: Timestamp, event: Event) -> Result<()> {
    let mut tx = db.begin().await?;
    append(&mut tx, ctx, now, event).await?;
    tx.commit().await
}

const TRIGGERS: [&str; 2] = ["audit_events_no_update", "audit_events_no_delete"];
const PG_TRIGGERS: [&str; 3] = [
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_events_no_truncate",
];

/// Refuses to serve when the append-only triggers were dropped.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn check_triggers(db: &Db) -> Result<()> {
    let (expected, found): (&[&str], Vec<String>) = match db.reader() {
        Dialect::Sqlite(p) => (
            &TRIGGERS,
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'",
            )
            .fetch_all(p)
            .await?,
        ),
        Dialect::Postgres(p) => (
            &PG_TRIGGERS,
            sqlx::query_scalar(
                "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal",
            )
            .fetch_all(p)
            .await?,
        ),
    };
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|t| !found.iter().any(|f| f == t))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "audit_events is not append-only: trigger(s) {} missing; refusing to serve",
            missing.join(", ")
        )))
    }
}

/// The outcome of recomputing the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainReport {
    pub valid: bool,
    pub events_checked: i64,
    pub first_invalid_sequence: i64,
}

/// Recomputes the chain up to the head as it stands when the check starts,
/// a batch at a time (memory stays bounded), every read in one snapshot: events
/// that writers commit meanwhile are not part of this check, so an intact
/// chain under load is reported intact, with the size that was checked.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn verify_chain(db: &Db) -> Result<ChainReport> {
    let batch_sql = "SELECT sequence, id, occurred_at, actor_id, actor_email, action, target_type, \
                     target_id, outcome, request_id, client_addr, details, prev_hash, hash \
                     FROM audit_events WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3";
    let mut snapshot = db.snapshot().await?;
    let (head_seq, head_hash): (i64, String) = on_dialect!(snapshot.conn(), c =>
        sqlx::query_as("SELECT sequence, hash FROM audit_head WHERE id = 1").fetch_one(c).await?);
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1;
    let mut checked = 0;
    loop {
        let batch: Vec<Record> = on_dialect!(snapshot.conn(), c => sqlx::query_as(batch_sql)
            .bind(expected_seq - 1)
            .bind(head_seq)
            .bind(VERIFY_BATCH)
            .fetch_all(c)
            .await?);
        if batch.is_empty() {
            break;
        }
        for record in batch {
            if record.sequence != expected_seq
                || record.prev_hash != expected_prev
                || record.compute_hash() != record.hash
            {
                return Ok(ChainReport {
                    valid: false,
                    events_checked: checked,
                    first_invalid_sequence: expected_seq.min(record.sequence),
                });
            }
            checked += 1;
            expected_seq += 1;
            expected_prev = record.hash;
        }
    }
    // A deletion of the newest rows shows as a head that runs ahead; a row
    // inserted past the head (which writers move in the same transaction as
    // every insert, so no such row exists in this snapshot otherwise) as
    // rows beyond it.
    let beyond: i64 = on_dialect!(snapshot.conn(), c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE sequence > $1",
    )
    .bind(head_seq)
    .fetch_one(c)
    .await?);
    let valid = head_seq == checked && head_hash == expected_prev && beyond == 0;
    Ok(ChainReport {
        valid,
        events_checked: checked,
        first_invalid_sequence: if valid { 0 } else { checked + 1 },
    })
}
