//! The audit trail: append-only, hash-chained, written in the same
//! transaction as the change it records.
//!
//! Threat model: someone with database access edits, inserts or deletes audit
//! rows to hide what was done. Triggers refuse UPDATE, DELETE (and, in
//! PostgreSQL, TRUNCATE) on `audit_events`, and the service refuses to start
//! when they are missing. Each row's `hash` is SHA-256 over the previous
//! row's hash and this row's fields in a fixed, length-prefixed encoding, so
//! an edit, insertion or deletion that got past the triggers breaks the chain
//! at that row, and `VerifyAuditChain` names it. Writers serialise on the
//! single-row `audit_head` (an UPDATE takes its row lock), which keeps the
//! sequence gapless and the chain linear under concurrency; a rolled-back
//! transaction takes its event and its sequence number with it.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use uuid::Uuid;

use crate::{
    db::{Db, Dialect, Timestamp, Tx},
    error::{Error, Result},
    identity::{Identity, RequestContext, current_user},
    on_dialect,
    page::{PageTokens, page_size},
    proto::audit::v1::{self as pb, AuditOutcome, audit_service_server::AuditService},
    validate,
};

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const VERIFY_BATCH: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    fn to_proto(s: &str) -> AuditOutcome {
        match s {
            "success" => AuditOutcome::Success,
            "denied" => AuditOutcome::Denied,
            "failed" => AuditOutcome::Failed,
            _ => AuditOutcome::Unspecified,
        }
    }
}

/// Who did it: a user, or an anonymous caller named by what they claimed.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub id: Option<Uuid>,
    pub email: String,
}

impl From<&Identity> for Actor {
    fn from(identity: &Identity) -> Self {
        Self {
            id: Some(identity.user_id),
            email: identity.email.clone(),
        }
    }
}

/// One event to append. `details` must hold no secret.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: &'static str,
    pub actor: Actor,
    pub target_type: &'static str,
    pub target_id: String,
    pub outcome: Outcome,
    pub details: Value,
}

impl Event {
    pub fn new(
        action: &'static str,
        actor: Actor,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        Self {
            action,
            actor,
            target_type,
            target_id: target_id.to_string(),
            outcome: Outcome::Success,
            details: Value::Object(Default::default()),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored audit row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Record {
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

    fn to_proto(&self) -> pb::AuditEvent {
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
        action: event.action.to_owned(),
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
    // A deletion of the newest rows shows as a head that runs ahead.
    let valid = head_seq == checked && head_hash == expected_prev;
    Ok(ChainReport {
        valid,
        events_checked: checked,
        first_invalid_sequence: if valid { 0 } else { checked + 1 },
    })
}

/// `docverify.audit.v1.AuditService` over one service's trail.
#[derive(Debug, Clone)]
pub struct AuditApi {
    db: Db,
    tokens: PageTokens,
}

impl AuditApi {
    pub fn new(db: Db, tokens: PageTokens) -> Self {
        Self { db, tokens }
    }
}

struct ListFilter {
    actor_id: Option<Uuid>,
    action: Option<String>,
    target_id: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

impl ListFilter {
    fn parse(req: &pb::ListAuditEventsRequest) -> Result<Self> {
        let mut v = validate::Violations::default();
        let actor_id = if req.actor_id.is_empty() {
            None
        } else {
            v.check(validate::uuid("actor_id", &req.actor_id))
        };
        let action = v.check(validate::text("action", &req.action, false, 100));
        let target_id = v.check(validate::text("target_id", &req.target_id, false, 200));
        let since = req.since.as_ref().map(Timestamp::from_proto);
        let until = req.until.as_ref().map(Timestamp::from_proto);
        v.into_result()?;
        Ok(Self {
            actor_id,
            action: action.filter(|s| !s.is_empty()),
            target_id: target_id.filter(|s| !s.is_empty()),
            since,
            until,
        })
    }

    /// Binds a page token to the filters it was issued for.
    fn scope(&self, caller: Uuid) -> String {
        format!(
            "audit|{caller}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.actor_id,
            self.action,
            self.target_id,
            self.since.map(Timestamp::unix_micros),
            self.until.map(Timestamp::unix_micros)
        )
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    #[tracing::instrument(skip_all)]
    async fn list_audit_events(
        &self,
        request: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> Result<tonic::Response<pb::ListAuditEventsResponse>, tonic::Status> {
        let caller = current_user(&request)?.user_id;
        let req = request.get_ref();
        let filter = ListFilter::parse(req)?;
        let size = page_size(req.page_size)?;
        let scope = filter.scope(caller);
        let before = match self.tokens.open(&scope, &req.page_token)? {
            Some(cursor) => i64::from_be_bytes(
                cursor
                    .try_into()
                    .map_err(|_| Error::invalid("page_token", "malformed"))?,
            ),
            None => i64::MAX,
        };
        let sql = "SELECT sequence, id, occurred_at, actor_id, actor_email, action, target_type, \
                   target_id, outcome, request_id, client_addr, details, prev_hash, hash \
                   FROM audit_events WHERE sequence < $1 \
                   AND ($2 IS NULL OR actor_id = $2) AND ($3 IS NULL OR action = $3) \
                   AND ($4 IS NULL OR target_id = $4) AND ($5 IS NULL OR occurred_at >= $5) \
                   AND ($6 IS NULL OR occurred_at < $6) \
                   ORDER BY sequence DESC LIMIT $7";
        let mut rows: Vec<Record> = on_dialect!(self.db.reader(), p => sqlx::query_as(sql)
            .bind(before)
            .bind(filter.actor_id)
            .bind(&filter.action)
            .bind(&filter.target_id)
            .bind(filter.since)
            .bind(filter.until)
            .bind(i64::from(size) + 1)
            .fetch_all(p)
            .await
            .map_err(Error::from)?);
        let next_page_token = if rows.len() > size as usize {
            rows.truncate(size as usize);
            rows.last()
                .map(|r| self.tokens.seal(&scope, &r.sequence.to_be_bytes()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(tonic::Response::new(pb::ListAuditEventsResponse {
            events: rows.iter().map(Record::to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_audit_chain(
        &self,
        _request: tonic::Request<pb::VerifyAuditChainRequest>,
    ) -> Result<tonic::Response<pb::VerifyAuditChainResponse>, tonic::Status> {
        let report = verify_chain(&self.db).await?;
        Ok(tonic::Response::new(pb::VerifyAuditChainResponse {
            valid: report.valid,
            events_checked: report.events_checked,
            first_invalid_sequence: report.first_invalid_sequence,
        }))
    }
}
