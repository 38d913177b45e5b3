//! `docverify.audit.v1.AuditService`: listing events a page at a time and
//! verifying the chain, over one service's trail.

use uuid::Uuid;

use super::store::{Record, verify_chain};
use crate::{
    db::{Db, Timestamp},
    error::{Error, Result},
    identity::current_user,
    on_dialect,
    page::{PageSize, PageTokens},
    proto::audit::v1::{self as pb, audit_service_server::AuditService},
    validate::{self, AllFields, UserId},
};

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

impl TryFrom<&pb::ListAuditEventsRequest> for ListFilter {
    type Error = Error;

    fn try_from(req: &pb::ListAuditEventsRequest) -> Result<Self> {
        let (actor_id, action, target_id) = (
            UserId::parse_optional("actor_id", &req.actor_id),
            validate::text("action", &req.action, false, 100),
            validate::text("target_id", &req.target_id, false, 200),
        )
            .all()?;
        Ok(Self {
            actor_id: actor_id.map(|UserId(id)| id),
            action: Some(action).filter(|s| !s.is_empty()),
            target_id: Some(target_id).filter(|s| !s.is_empty()),
            since: req.since.as_ref().map(Timestamp::from_proto),
            until: req.until.as_ref().map(Timestamp::from_proto),
        })
    }
}

impl ListFilter {
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
        let (filter, size) = (ListFilter::try_from(req), PageSize::parse(req.page_size)).all()?;
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
            .bind(i64::from(size.fetch()))
            .fetch_all(p)
            .await
            .map_err(Error::from)?);
        let next_page_token = self.tokens.next_page(&scope, &mut rows, size, |r| {
            r.sequence.to_be_bytes().to_vec()
        });
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
