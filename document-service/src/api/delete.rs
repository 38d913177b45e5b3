//! DeleteDocument: the rights are part of the DELETE statement, so a review
//! or another delete that commits first wins cleanly.

use serde_json::json;
use shared::{
    Error, Reason, Result,
    audit::{self, Action, Actor, Event},
    identity::{Identity, RequestContext},
    policy::Permission,
};

use super::documents::visible_to;
use crate::{
    documents::{self, DeleteRights},
    fields::DocumentId,
    state::State,
};

pub(super) async fn delete(
    state: &State,
    ctx: &RequestContext,
    me: &Identity,
    DocumentId(id): DocumentId,
) -> Result<()> {
    let now = state.clock.now();
    let rights = DeleteRights {
        caller: me.user_id,
        any: me.can(Permission::DocumentsDeleteAny),
        own_pending: me.can(Permission::DocumentsDeleteOwn),
    };
    let mut tx = state.db.begin().await?;
    let Some(doc) = documents::delete(tx.conn(), id, rights).await? else {
        // Nothing deleted: say why, from the row as it is now.
        let doc = visible_to(me, documents::by_id(tx.conn(), id).await?)?;
        if !(doc.owner_id == me.user_id && rights.own_pending) {
            return Err(Error::PermissionDenied {
                reason: Reason::PermissionDenied,
                message: "you may not delete this document",
            });
        }
        return Err(Error::FailedPrecondition {
            reason: Reason::DocumentNotPending,
            message: "a reviewed document can only be deleted by an administrator",
        });
    };
    let event = Event::new(Action::DocumentDeleted, Actor::from(me), "document", id)
        .details(json!({ "status": doc.status.as_str(), "sha256": doc.sha256 }));
    audit::append(&mut tx, ctx, now, event).await?;
    tx.commit().await?;
    Ok(())
}
