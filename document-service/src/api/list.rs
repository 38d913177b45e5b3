//! ListDocuments: a keyset page, newest first, of the documents this caller
//! may see.

use shared::{
    Error, Result,
    identity::Identity,
    page::PageSize,
    policy::Permission,
    proto::document::v1 as pb,
    validate::{AllFields, UserId},
};
use uuid::Uuid;

use crate::{
    documents::{self, Document, Status},
    state::State,
};

/// A parsed `ListDocumentsRequest`.
#[derive(Debug)]
pub(super) struct ListDocuments {
    size: PageSize,
    status: Option<Status>,
    owner: Option<UserId>,
    page_token: String,
}

impl TryFrom<pb::ListDocumentsRequest> for ListDocuments {
    type Error = Error;

    fn try_from(req: pb::ListDocumentsRequest) -> Result<Self> {
        let (size, status, owner) = (
            PageSize::parse(req.page_size),
            pb::DocumentStatus::try_from(req.status)
                .map(Status::from_proto)
                .map_err(|_| Error::invalid("status", "unknown document status")),
            UserId::parse_optional("owner_id", &req.owner_id),
        )
            .all()?;
        Ok(Self {
            size,
            status,
            owner,
            page_token: req.page_token,
        })
    }
}

/// Binds a page token to the caller and the filters it was issued for.
fn scope(me: &Identity, owner: Option<Uuid>, status: Option<Status>) -> String {
    format!(
        "documents|{}|{}|{}",
        me.user_id,
        owner.map(|o| o.to_string()).unwrap_or_default(),
        status.map(Status::as_str).unwrap_or_default()
    )
}

pub(super) async fn list(
    state: &State,
    me: &Identity,
    cmd: ListDocuments,
) -> Result<pb::ListDocumentsResponse> {
    let owner = cmd.owner.map(|UserId(id)| id);
    // Callers who may read only their own documents see only those,
    // whatever owner they ask for.
    let owner = if me.can(Permission::DocumentsReadAny) {
        owner
    } else if owner.is_none_or(|o| o == me.user_id) {
        Some(me.user_id)
    } else {
        return Ok(pb::ListDocumentsResponse::default());
    };
    let scope = scope(me, owner, cmd.status);
    let tokens = &state.page_tokens;
    let before = tokens.open_uuid(&scope, &cmd.page_token)?;
    let mut rows = documents::list(
        state.db.read().await?.conn(),
        owner,
        cmd.status,
        before,
        cmd.size.fetch(),
    )
    .await?;
    let next_page_token =
        tokens.next_page(&scope, &mut rows, cmd.size, |d| d.id.as_bytes().to_vec());
    Ok(pb::ListDocumentsResponse {
        documents: rows.iter().map(Document::to_proto).collect(),
        next_page_token,
    })
}
