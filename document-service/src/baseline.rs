//! The reads of GetDocument and ListDocuments with nothing around them: the
//! same statements through a pool on the same database, for the
//! benchmark's `db-read` and `db-page` yardsticks (a bare tonic server
//! serves them). Not part of the service's API.

use shared::{Result, db::Db, proto::document::v1 as pb};
use uuid::Uuid;

use crate::documents::{self, Document};

/// GetDocument's read: one document by id.
pub async fn read_one(db: &Db, id: Uuid) -> Result<Option<pb::Document>> {
    let doc = documents::by_id(db.read().await?.conn(), id).await?;
    Ok(doc.as_ref().map(Document::to_proto))
}

/// ListDocuments' read of a caller's own first page: `owner`'s newest
/// `limit` documents.
pub async fn read_page(db: &Db, owner: Uuid, limit: u32) -> Result<Vec<pb::Document>> {
    let rows = documents::list(db.read().await?.conn(), Some(owner), None, None, limit).await?;
    Ok(rows.iter().map(Document::to_proto).collect())
}
