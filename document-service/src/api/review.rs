//! VerifyDocument and RejectDocument: one conditional UPDATE decides which
//! of concurrent reviews wins; the loser is told why from the row as it is.

use std::time::Duration;

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, RequestContext},
    proto::{audit::v1 as pb_audit, document::v1 as pb},
    validate::AllFields,
};

use crate::{
    documents::{self, Document, Status},
    fields::{DocumentId, Note},
    state::State,
};

/// A parsed `VerifyDocumentRequest` or `RejectDocumentRequest`.
#[derive(Debug)]
pub(super) struct Review {
    id: DocumentId,
    decision: Status,
    /// The verifier's note, or the reason for a rejection (required).
    note: Note,
}

impl TryFrom<pb::VerifyDocumentRequest> for Review {
    type Error = Error;

    fn try_from(req: pb::VerifyDocumentRequest) -> Result<Self> {
        let (id, note) = (
            DocumentId::parse(&req.document_id),
            Note::parse("note", &req.note, false),
        )
            .all()?;
        Ok(Self {
            id,
            decision: Status::Verified,
            note,
        })
    }
}

impl TryFrom<pb::RejectDocumentRequest> for Review {
    type Error = Error;

    fn try_from(req: pb::RejectDocumentRequest) -> Result<Self> {
        let (id, note) = (
            DocumentId::parse(&req.document_id),
            Note::parse("reason", &req.reason, true),
        )
            .all()?;
        Ok(Self {
            id,
            decision: Status::Rejected,
            note,
        })
    }
}

pub(super) async fn review(
    state: &State,
    ctx: &RequestContext,
    me: &Identity,
    cmd: Review,
) -> Result<(Document, i64)> {
    let Review {
        id: DocumentId(id),
        decision,
        note,
    } = cmd;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let Some(doc) =
        documents::review(tx.conn(), id, me.user_id, decision, note.as_str(), now).await?
    else {
        let doc = documents::by_id(tx.conn(), id)
            .await?
            .ok_or(Error::not_found("document"))?;
        if doc.owner_id == me.user_id {
            return Err(Error::PermissionDenied {
                reason: Reason::SelfReview,
                message: "you cannot review your own document",
            });
        }
        return Err(Error::FailedPrecondition {
            reason: Reason::DocumentNotPending,
            message: "only a pending document can be reviewed",
        });
    };
    // The event names what was reviewed by its hash, so that its receipt
    // proves a decision about these very bytes.
    let (action, details) = match decision {
        Status::Rejected => (
            Action::DocumentRejected,
            json!({ "sha256": doc.sha256, "reason": note.as_str() }),
        ),
        _ => (
            Action::DocumentVerified,
            json!({ "sha256": doc.sha256, "note": note.as_str() }),
        ),
    };
    let event = Event::new(action, Actor::from(me), "document", id).details(details);
    let position = audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok((doc, position))
}

/// The audit events whose receipts prove a review.
pub(super) const REVIEWS: [Action; 2] = [Action::DocumentVerified, Action::DocumentRejected];

/// Longest a review waits for its receipt, within the caller's deadline.
const RECEIPT_WAIT: Duration = Duration::from_secs(5);

/// The receipt of the review event at `position`, waiting for the
/// sequencer for at most four fifths of what is left of the call's
/// deadline (the caller's `grpc-timeout` or REQUEST_TIMEOUT), counted from
/// `started`: the review itself is committed, and must not be answered with
/// DEADLINE_EXCEEDED for want of its receipt.
pub(super) async fn receipt(
    state: &State,
    position: i64,
    started: std::time::Instant,
    caller: Option<Duration>,
) -> Result<Option<pb_audit::Receipt>> {
    let deadline = caller.map_or(state.request_timeout, |c| c.min(state.request_timeout));
    let left = deadline.saturating_sub(started.elapsed());
    let wait = (left * 4 / 5).min(RECEIPT_WAIT);
    audit::receipt::receipt(&state.audit, position, wait).await
}
