//! VerifyDocument and RejectDocument: one conditional UPDATE decides which
//! of concurrent reviews wins; the loser is told why from the row as it is.

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, RequestContext},
    proto::document::v1 as pb,
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
) -> Result<Document> {
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
    let (action, details) = match decision {
        Status::Rejected => (Action::DocumentRejected, json!({ "reason": note.as_str() })),
        _ => (Action::DocumentVerified, json!({ "note": note.as_str() })),
    };
    let event = Event::new(action, Actor::from(me), "document", id).details(details);
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok(doc)
}
