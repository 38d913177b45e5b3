//! `docverify.audit.v1.AuditService` over one service's log: listing and
//! exporting events, checkpoints, proofs, and recomputing the tree.

use std::{pin::Pin, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Log, merkle,
    store::{self, EVENT_COLUMNS, Record},
    verify::verify_log,
};
use crate::{
    db::Timestamp,
    error::{Error, Result},
    identity::current_user,
    on_dialect,
    page::{PageSize, PageTokens},
    proto::audit::v1::{
        self as pb, audit_service_server::AuditService, watch_audit_events_response::Message,
    },
    validate::{self, AllFields, UserId},
};

/// A watch ends with OK after this long, so that the caller comes back with
/// a token checked again (the layer checked this one when the stream opened).
const WATCH_LIFETIME: Duration = Duration::from_secs(300);
const WATCH_BATCH: i64 = 500;

/// `docverify.audit.v1.AuditService` over one service's log.
#[derive(Debug, Clone)]
pub struct AuditApi {
    log: Arc<Log>,
    tokens: PageTokens,
}

impl AuditApi {
    pub fn new(log: Arc<Log>, tokens: PageTokens) -> Self {
        Self { log, tokens }
    }
}

/// Which events a caller asks for.
#[derive(Debug, Clone)]
struct Filter {
    actor_id: Option<Uuid>,
    action: Option<String>,
    target_id: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

/// `AND`s of [`Filter`], binds `$first ..= $first + 4`.
fn filter_sql(first: usize) -> String {
    let [a, b, c, d, e] = [first, first + 1, first + 2, first + 3, first + 4];
    format!(
        "AND (${a} IS NULL OR e.actor_id = ${a}) AND (${b} IS NULL OR e.action = ${b}) \
         AND (${c} IS NULL OR e.target_id = ${c}) AND (${d} IS NULL OR e.occurred_at >= ${d}) \
         AND (${e} IS NULL OR e.occurred_at < ${e})"
    )
}

impl Filter {
    fn parse(actor_id: &str, action: &str, target_id: &str) -> Result<Self> {
        let (actor_id, action, target_id) = (
            UserId::parse_optional("actor_id", actor_id),
            validate::text("action", action, false, 100),
            validate::text("target_id", target_id, false, 200),
        )
            .all()?;
        Ok(Self {
            actor_id: actor_id.map(|UserId(id)| id),
            action: Some(action).filter(|s| !s.is_empty()),
            target_id: Some(target_id).filter(|s| !s.is_empty()),
            since: None,
            until: None,
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

impl TryFrom<&pb::ListAuditEventsRequest> for Filter {
    type Error = Error;

    fn try_from(req: &pb::ListAuditEventsRequest) -> Result<Self> {
        let mut filter = Self::parse(&req.actor_id, &req.action, &req.target_id)?;
        filter.since = req.since.as_ref().map(Timestamp::from_proto);
        filter.until = req.until.as_ref().map(Timestamp::from_proto);
        Ok(filter)
    }
}

/// Binds a [`Filter`] after the query's own parameters.
macro_rules! bind_filter {
    ($q:expr, $f:expr) => {
        $q.bind($f.actor_id)
            .bind(&$f.action)
            .bind(&$f.target_id)
            .bind($f.since)
            .bind($f.until)
    };
}

fn checked_size(field: &str, value: i64) -> Result<i64> {
    if value < 0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    Ok(value)
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchAuditEventsResponse, Status>> + Send>>;

/// Sends sequenced events after `sent` that match `filter`, then the
/// checkpoint that covers them, then waits for the log to grow.
async fn watch(
    log: Arc<Log>,
    filter: Filter,
    mut sent: i64,
    tx: mpsc::Sender<std::result::Result<pb::WatchAuditEventsResponse, Status>>,
) {
    let mut grown = log.subscribe();
    let mut stopping = log.stopping();
    let lifetime = tokio::time::sleep(WATCH_LIFETIME);
    tokio::pin!(lifetime);
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_leaves l JOIN audit_events e ON e.position = l.position \
         WHERE l.sequence > $1 AND l.sequence <= $2 {} ORDER BY l.sequence LIMIT $8",
        filter_sql(3)
    );
    let mut covered = sent;
    loop {
        let result: Result<()> = async {
            let checkpoint = log.latest().await?;
            let known = checkpoint.tree_size;
            while sent < known {
                let mut conn = log.db().read().await?;
                let rows: Vec<Record> = on_dialect!(conn.conn(), c => bind_filter!(
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(sent).bind(known), filter)
                    .bind(WATCH_BATCH)
                    .fetch_all(c)
                    .await?);
                drop(conn);
                let full = rows.len() as i64 == WATCH_BATCH;
                for row in &rows {
                    let event = Message::Event(row.to_proto()?);
                    if tx.send(Ok(pb::WatchAuditEventsResponse { message: Some(event) })).await.is_err() {
                        return Ok(());
                    }
                }
                sent = match rows.last() {
                    Some(last) if full => last.sequence.unwrap_or(known),
                    _ => known,
                };
            }
            if known > covered {
                let message = Message::Checkpoint(checkpoint.to_proto(log.origin()));
                let _ = tx.send(Ok(pb::WatchAuditEventsResponse { message: Some(message) })).await;
                covered = known;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        tokio::select! {
            changed = grown.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
            _ = stopping.wait_for(|s| *s) => return,
            () = &mut lifetime => return,
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type WatchAuditEventsStream = Events;

    #[tracing::instrument(skip_all)]
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> std::result::Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = current_user(&request)?.user_id;
        let req = request.get_ref();
        let (filter, size) = (Filter::try_from(req), PageSize::parse(req.page_size)).all()?;
        let scope = filter.scope(caller);
        let before = match self.tokens.open(&scope, &req.page_token)? {
            Some(cursor) => i64::from_be_bytes(
                cursor
                    .try_into()
                    .map_err(|_| Error::invalid("page_token", "malformed"))?,
            ),
            None => i64::MAX,
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events e LEFT JOIN audit_leaves l ON l.position = e.position \
             WHERE e.position < $1 {} ORDER BY e.position DESC LIMIT $7",
            filter_sql(2)
        );
        let mut rows: Vec<Record> = on_dialect!(self.log.db().reader(), p =>
            bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(before), filter)
                .bind(i64::from(size.fetch()))
                .fetch_all(p)
                .await
                .map_err(Error::from)?);
        let next_page_token = self.tokens.next_page(&scope, &mut rows, size, |r| {
            r.position.to_be_bytes().to_vec()
        });
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: rows.iter().map(Record::to_proto).collect::<Result<_>>()?,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_audit_chain(
        &self,
        _request: Request<pb::VerifyAuditChainRequest>,
    ) -> std::result::Result<Response<pb::VerifyAuditChainResponse>, Status> {
        Ok(Response::new(verify_log(&self.log).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        _request: Request<pb::GetCheckpointRequest>,
    ) -> std::result::Result<Response<pb::GetCheckpointResponse>, Status> {
        let latest = self.log.latest().await?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: Some(latest.to_proto(self.log.origin())),
            verifier_key: self.log.verifier_key(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> std::result::Result<Response<pb::GetInclusionProofResponse>, Status> {
        let req = request.get_ref();
        let (sequence, tree_size) = (
            checked_size("sequence", req.sequence).and_then(|s| {
                if s == 0 {
                    Err(Error::invalid("sequence", "sequences start at 1"))
                } else {
                    Ok(s)
                }
            }),
            checked_size("tree_size", req.tree_size),
        )
            .all()?;
        Ok(Response::new(
            inclusion_proof(&self.log, sequence, tree_size).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> std::result::Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let req = request.get_ref();
        let (first_size, second_size) = (
            checked_size("first_size", req.first_size),
            checked_size("second_size", req.second_size),
        )
            .all()?;
        // Refused whatever checkpoints exist (0 is the latest, judged below).
        if second_size != 0 && first_size > second_size {
            return Err(Error::invalid("first_size", "larger than second_size").into());
        }
        let mut conn = self.log.db().read().await.map_err(Status::from)?;
        let second = store::checkpoint(conn.conn(), second_size).await?;
        if first_size > second.tree_size {
            return Err(Error::invalid("first_size", "larger than second_size").into());
        }
        let first = if first_size == 0 {
            None
        } else {
            Some(store::checkpoint(conn.conn(), first_size).await?)
        };
        let ranges = merkle::consistency_ranges(first_size as u64, second.tree_size as u64);
        let proof = store::range_hashes(conn.conn(), &ranges).await?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            first_size,
            second_size: second.tree_size,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            first: first.map(|c| c.to_proto(self.log.origin())),
            second: Some(second.to_proto(self.log.origin())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_audit_events(
        &self,
        request: Request<pb::WatchAuditEventsRequest>,
    ) -> std::result::Result<Response<Self::WatchAuditEventsStream>, Status> {
        let req = request.get_ref();
        let (after, filter) = (
            checked_size("after_sequence", req.after_sequence),
            Filter::parse(&req.actor_id, &req.action, &req.target_id),
        )
            .all()?;
        let latest = self.log.latest().await?;
        if after > latest.tree_size {
            return Err(
                Error::invalid("after_sequence", "beyond the log's latest checkpoint").into(),
            );
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(watch(self.log.clone(), filter, after, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The inclusion proof of event `sequence` in the checkpoint of
/// `tree_size` (0: the latest).
pub(super) async fn inclusion_proof(
    log: &Log,
    sequence: i64,
    tree_size: i64,
) -> Result<pb::GetInclusionProofResponse> {
    let mut conn = log.db().read().await?;
    let checkpoint = store::checkpoint(conn.conn(), tree_size).await?;
    if sequence > checkpoint.tree_size {
        return Err(if tree_size == 0 {
            Error::not_found("sequenced event")
        } else {
            Error::invalid("sequence", "beyond tree_size")
        });
    }
    let event = store::by_sequence(conn.conn(), sequence)
        .await?
        .ok_or_else(|| Error::internal("a leaf under a checkpoint has no event"))?;
    let index = (sequence - 1) as u64;
    let ranges = merkle::inclusion_ranges(index, checkpoint.tree_size as u64);
    let path = store::range_hashes(conn.conn(), &ranges).await?;
    Ok(pb::GetInclusionProofResponse {
        leaf: event.leaf(sequence)?,
        leaf_index: index as i64,
        tree_size: checkpoint.tree_size,
        audit_path: path.iter().map(|h| h.to_vec()).collect(),
        checkpoint: Some(checkpoint.to_proto(log.origin())),
    })
}
